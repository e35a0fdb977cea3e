from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from callcenter.calls.views import screen
from callcenter.resources.models import CallCenterSettings
from callcenter.resources.permissions import is_administrator, resource_of


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The Call Center screen for resources and administrators; for anyone else, a page saying what is missing."""
    resource = resource_of(request.user)
    if resource is not None or is_administrator(request.user):
        return screen(request)
    return render(
        request,
        "crm/home.html",
        {"resource": resource, "settings": CallCenterSettings.load()},
    )
