from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _

from callcenter.resources import actions
from callcenter.resources.forms import CallCenterOptionsForm, CallCenterSettingsForm
from callcenter.resources.models import CallCenterSettings, Resource
from callcenter.resources.permissions import is_administrator, require_administrator, resource_of


@login_required
def resource_list(request: HttpRequest) -> HttpResponse:
    require_administrator(request.user)
    resources = Resource.objects.select_related("user").order_by("user__username")
    return render(request, "resources/list.html", {"resources": resources})


@login_required
def own_options(request: HttpRequest) -> HttpResponse:
    resource = resource_of(request.user)
    if resource is None:
        raise Http404(_("Your user is not a resource; ask an administrator to make it one."))
    return _options_page(request, resource)


@login_required
def resource_options(request: HttpRequest, pk: int) -> HttpResponse:
    require_administrator(request.user)
    return _options_page(request, get_object_or_404(Resource.objects.select_related("user"), pk=pk))


def _options_page(request: HttpRequest, resource: Resource) -> HttpResponse:
    full_access = is_administrator(request.user)
    if request.method == "POST":
        form = CallCenterOptionsForm(request.POST, instance=resource, full_access=full_access)
        if form.is_valid():
            actions.save_call_center_options(form)
            messages.success(request, _("Call center options saved."))
            return redirect(request.path)
    else:
        form = CallCenterOptionsForm(instance=resource, full_access=full_access)
    return render(
        request,
        "resources/options.html",
        {"form": form, "resource": resource, "full_access": full_access},
        status=400 if form.errors else 200,
    )


ERROR_LOG_SHOWN = 50  # newest entries of the CRM's error log on the settings page


@login_required
def call_center_settings(request: HttpRequest) -> HttpResponse:
    require_administrator(request.user)
    instance = CallCenterSettings.load()
    if request.method == "POST":
        form = CallCenterSettingsForm(request.POST, instance=instance)
        if form.is_valid():
            actions.save_call_center_settings(form)
            messages.success(request, _("Call center settings saved."))
            return redirect("call_center_settings")
    else:
        form = CallCenterSettingsForm(instance=instance)
    from callcenter.calls.commands import phone_system_warnings  # calls builds on resources, not the reverse
    from callcenter.crm.models import ErrorLogEntry

    context = {
        "form": form,
        "warnings": phone_system_warnings(),  # S-3.1
        "error_log": ErrorLogEntry.objects.all()[:ERROR_LOG_SHOWN],  # S-4.5, S-3.1: newest first
    }
    return render(request, "resources/settings.html", context, status=400 if form.errors else 200)
