from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from callcenter.resources.models import CallCenterSettings
from callcenter.resources.permissions import resource_of


@login_required
def home(request: HttpRequest) -> HttpResponse:
    resource = resource_of(request.user)
    return render(
        request,
        "crm/home.html",
        {"resource": resource, "settings": CallCenterSettings.load()},
    )
