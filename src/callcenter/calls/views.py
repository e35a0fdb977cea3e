"""The Call Center screen (S-4): one page, and the partials and posts that htmx exchanges with it.

Rules
- Views read through calls.queries and write through calls.actions; they hold no business rule.
- A call id in any URL is looked up among the calls the user sees (queries.visible_calls): another agent's id is a
  404, whatever the method.
- Every post is CSRF-checked and answers htmx with the pieces to swap plus the message for the flash area (an
  out-of-band swap), and HX-Trigger events the screen's script acts on; a browser without htmx gets the same message
  on the full page after a redirect.
- Nothing from the data is marked safe: templates escape it, and the script writes it with textContent.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from callcenter import numbers, wire
from callcenter.activities.models import ActivityType
from callcenter.calls import actions, queries
from callcenter.calls.commands import LinkStatus, bridge_for, link_status, phone_system_warning
from callcenter.calls.forms import (
    ActivityTypeForm,
    BusyForm,
    CampaignForm,
    ContactChoiceForm,
    FiltersForm,
    LinkForm,
    NewContactForm,
    NumberForm,
    selected_ids,
)
from callcenter.calls.models import Call, format_duration
from callcenter.campaigns.actions import available_campaigns
from callcenter.contacts.actions import AllSlotsFull, MatchRules, match_caller
from callcenter.contacts.models import PHONE_SLOTS, Contact
from callcenter.resources.models import CallCenterSettings, Resource
from callcenter.resources.permissions import is_administrator, resource_of

LEVELS = {"success": messages.SUCCESS, "error": messages.ERROR, "warning": messages.WARNING, "info": messages.INFO}


# ---- helpers ----------------------------------------------------------------------------------------------------


def _call_or_404(request: HttpRequest, pk: int) -> Call:
    return get_object_or_404(
        queries.visible_calls(request.user).select_related("contact", "resource__user", "campaign"), pk=pk
    )


def _decorate(calls: list[Call], region: str) -> list[Call]:
    """What the templates show of each call, computed once: number for people, talk time, live-count start."""
    now = timezone.now()
    for call in calls:
        call.number_display = numbers.display(call.number, region)  # type: ignore[attr-defined]
        call.duration_display = format_duration(call.talk_seconds(now))  # type: ignore[attr-defined]
        call.counting = call.in_progress and call.answered_at is not None  # type: ignore[attr-defined]
    return calls


def _filters(request: HttpRequest) -> tuple[FiltersForm, Any, str]:
    form = FiltersForm(request.GET)
    from_date, search = form.filters()
    return form, from_date, search


def _screen_url(call: Call | None = None) -> str:
    url = reverse("calls:screen")
    return f"{url}?call={call.pk}" if call is not None else url


def _reply(
    request: HttpRequest,
    message: str = "",
    level: str = "info",
    *,
    template: str | None = None,
    context: dict[str, Any] | None = None,
    triggers: dict[str, Any] | None = None,
    call: Call | None = None,
) -> HttpResponse:
    """htmx: ``template`` rendered (the swap target's new content) + the message as an out-of-band flash, and
    ``triggers`` as HX-Trigger. Otherwise: the message for the next page, and a redirect to the screen."""
    if not request.htmx:  # type: ignore[attr-defined]
        if message:
            messages.add_message(request, LEVELS[level], message)
        return redirect(_screen_url(call))
    html = render_to_string(template, context or {}, request) if template else ""
    if message:
        html += render_to_string("calls/_flash.html", {"flash": message, "level": level, "oob": True}, request)
    response = HttpResponse(html)
    if template is None:
        response["HX-Reswap"] = "none"  # only the flash (out of band) and the triggers: the target stays as it is
    if triggers:
        response["HX-Trigger"] = json.dumps(triggers)
    return response


def _form_error(form: Any) -> str:
    errors: list[Any] = form.errors.get("__all__") or next(iter(form.errors.values()), [])
    return " ".join(str(error) for error in errors) or _("Check what you entered.")


def _command_reply(request: HttpRequest, result: wire.CommandResult, done: str, *,
                   call: Call | None = None) -> HttpResponse:
    if result.ok:
        return _reply(request, done, "success", triggers={"cc-status-changed": {}}, call=call)
    return _reply(request, result.message or _("The bridge refused the command."), "error", call=call)


def _not_a_resource(request: HttpRequest) -> HttpResponse:
    return _reply(request, _("Your user is not a resource; ask an administrator to make it one."), "error")


def _resource_post(view: Callable[[HttpRequest, Resource], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """A post that the user makes as a resource: login and POST required, and the view gets the user's resource; a
    user who is not one gets the error reply instead."""

    @login_required
    @require_POST
    @functools.wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        resource = resource_of(request.user)
        if resource is None:
            return _not_a_resource(request)
        return view(request, resource)

    return wrapped


# What a command view states of its own: given the resource and its form's cleaned data, the action's CommandResult
# and the message to show when the bridge accepts it.
_CommandView = Callable[[HttpRequest, Resource, dict[str, Any]], tuple[wire.CommandResult, str]]


def _command(form_class: type[forms.Form] | None = None, *, invalid: Callable[[forms.Form], str] = _form_error
             ) -> Callable[[_CommandView], Callable[[HttpRequest], HttpResponse]]:
    """A call-control post (S-4.6, S-4.10-4.13): a resource's post (``_resource_post``) with ``form_class`` validated
    (``invalid``: the error message when it is not), then the view's command, its CommandResult as the reply."""

    def decorate(view: _CommandView) -> Callable[[HttpRequest], HttpResponse]:
        @_resource_post
        @functools.wraps(view)
        def wrapped(request: HttpRequest, resource: Resource) -> HttpResponse:
            data: dict[str, Any] = {}
            if form_class is not None:
                form = form_class(request.POST)
                if not form.is_valid():
                    return _reply(request, invalid(form), "error")
                data = form.cleaned_data
            result, done = view(request, resource, data)
            return _command_reply(request, result, done)

        return wrapped

    return decorate


# ---- the page and its parts -------------------------------------------------------------------------------------


def _status_context(resource: Resource | None) -> dict[str, Any]:
    if resource is None:
        return {"resource": None, "link": LinkStatus(False, _("Your user is not a resource.")), "phone": None}
    resource.refresh_from_db(fields=["pbx_busy", "pbx_logged_in", "last_dialled"])
    settings = CallCenterSettings.load()
    phone = queries.phone_state(resource)
    ringing_call = current_call = None
    for leg, name in ((phone.ringing, "ringing"), (phone.current, "current")):
        if leg is not None and leg.call_id is not None:
            found = Call.objects.select_related("contact").filter(pk=leg.call_id).first()
            if name == "ringing":
                ringing_call = found
            else:
                current_call = found
    return {
        "resource": resource,
        "link": link_status(resource),
        # S-3.1: the resource's bridge reports another phone system than CRM settings → Call center.
        "phone_warning": phone_system_warning(bridge_for(resource), settings),
        "phone": phone,
        "ringing_number": numbers.display(phone.ringing.remote_number, settings.phone_region) if phone.ringing else "",
        "current_number": numbers.display(phone.current.remote_number, settings.phone_region) if phone.current else "",
        "ringing_call": ringing_call,
        "current_call": current_call,
    }


def _campaign_context(resource: Resource | None) -> dict[str, Any]:
    settings = CallCenterSettings.load()
    if resource is None or settings.campaign_type is None:
        return {"campaign_shown": False}
    current = actions.fill_in_working_campaign(resource)
    return {
        "campaign_shown": True,
        "campaign_type": settings.campaign_type,
        "campaigns": list(available_campaigns(settings.campaign_type, timezone.localdate())),
        "working_campaign": current,
        "stored_unavailable": resource.working_campaign if current is None else None,
    }


def _list_context(request: HttpRequest, *, from_date: Any, search: str, cursor: queries.Cursor | None = None
                  ) -> dict[str, Any]:
    settings = CallCenterSettings.load()
    page = queries.call_list(request.user, from_date=from_date, search=search, cursor=cursor,
                             rules=MatchRules(settings.digits_to_scan, settings.call_prefix, settings.internal_digits))
    return {
        "calls": _decorate(page.calls, settings.phone_region),
        "next_cursor": page.next_cursor.encode() if page.next_cursor else "",
        "from_date": from_date,
        "search": search,
        "show_resource": is_administrator(request.user),
        "appending": cursor is not None,
    }


def _details_context(request: HttpRequest, call: Call | None) -> dict[str, Any]:
    if call is None:
        return {"call": None}
    settings = CallCenterSettings.load()
    _decorate([call], settings.phone_region)
    activity = getattr(call, "activity", None)
    candidates: list[Contact] = []
    if call.contact is None and call.number:
        candidates = match_caller(call.number, dialled=call.direction == "out", limit=10)
    return {
        "call": call,
        "activity": activity,
        "candidates": candidates,
        "activity_types": list(ActivityType.objects.filter(active=True)),
        "show_resource": is_administrator(request.user),
    }


def _config(request: HttpRequest, resource: Resource | None) -> dict[str, Any]:
    settings = CallCenterSettings.load()
    return {
        "ws": "/ws/callcenter/",
        "server_now": timezone.now().timestamp(),
        "urls": {
            "rows": reverse("calls:rows"),
            "row": reverse("calls:row", args=[0]),
            "details": reverse("calls:details", args=[0]),
            "open": reverse("calls:open", args=[0]),
            "status": reverse("calls:status"),
            "answer": reverse("calls:answer"),
            "link": reverse("calls:link", args=[0]),
            "activity_dialog": reverse("calls:activity", args=[0]),
            "activity": reverse("activities:detail", args=[0]),
        },
        "resource_id": resource.pk if resource else None,
        "notify": bool(resource and resource.notify_new_call),
        "notify_seconds": resource.notification_seconds if resource else 10,
        "auto_show": settings.auto_show_screen,
        "auto_open": settings.auto_open_activity,
        "strings": {
            "incoming_call": _("Incoming call"),
            "outgoing_call": _("Outgoing call"),
            "unknown_caller": _("Unknown caller"),
            "answer": _("Answer"),
            "close": _("Close"),
            "open_activity": _("Open activity"),
            "reconnecting": _("Live updates interrupted; reconnecting…"),
            "live": _("Live"),
            "notifications_on": _("Desktop notifications are on."),
            "notifications_blocked": _("The browser blocks notifications for this site."),
            "show": _("Show"),
            "select_a_call": _("Select a call in the list to see its details."),
            "forbidden": _("Refused: the page may be out of date; reload it."),
            "server_error": _("The server could not do this; try again."),
            "offline": _("The server cannot be reached; check the network."),
        },
    }


@login_required
def screen(request: HttpRequest) -> HttpResponse:
    """The Call Center screen (also the home page of every resource and administrator)."""
    resource = resource_of(request.user)
    if resource is None and not is_administrator(request.user):
        raise Http404(_("Your user is not a resource; ask an administrator to make it one."))
    form, from_date, search = _filters(request)
    selected = None
    raw = request.GET.get("call", "")
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        selected = queries.visible_calls(request.user).select_related("contact", "resource__user", "campaign").filter(
            pk=int(raw)).first()
    context: dict[str, Any] = {
        "filters": form,
        "from_date": from_date,
        "search": search,
        "is_admin": is_administrator(request.user),
        "config": _config(request, resource),
        "settings": CallCenterSettings.load(),
        **_status_context(resource),
        **_campaign_context(resource),
        **_list_context(request, from_date=from_date, search=search),
        **_details_context(request, selected),
    }
    if form.errors:
        messages.error(request, _form_error(form))
    return render(request, "calls/screen.html", context)


@login_required
@require_GET
def rows(request: HttpRequest) -> HttpResponse:
    """S-4.14 Refresh (and the next page): the list as filtered. Refused while a campaign is required and missing."""
    form, from_date, search = _filters(request)
    if form.errors:
        return _reply(request, _form_error(form), "error", template="calls/_rows.html",
                      context=_list_context(request, from_date=from_date, search=""))
    resource = resource_of(request.user)
    campaign = _campaign_context(resource)
    if campaign["campaign_shown"] and campaign["working_campaign"] is None:
        return _reply(request, _("Choose a campaign first: the list is refreshed only once a campaign is chosen "
                                 "(Campaign, above)."), "warning")
    cursor = queries.Cursor.decode(form.cleaned_data.get("cursor") if form.is_valid() else None)
    return _reply(request, template="calls/_rows.html",
                  context=_list_context(request, from_date=from_date, search=search, cursor=cursor))


@login_required
@require_GET
def row(request: HttpRequest, pk: int) -> HttpResponse:
    """One row, for a live update; 204 when the call is not in the list as filtered."""
    call = get_object_or_404(queries.visible_calls(request.user).select_related(
        "contact", "activity__activity_type", "resource__user"), pk=pk)
    _form, from_date, search = _filters(request)
    if not queries.matches_filters(call, request.user, from_date=from_date, search=search):
        return HttpResponse(status=204)
    settings = CallCenterSettings.load()
    return render(request, "calls/_row.html", {
        "call": _decorate([call], settings.phone_region)[0], "show_resource": is_administrator(request.user),
    })


@login_required
@require_GET
def details(request: HttpRequest, pk: int) -> HttpResponse:
    """S-4.7: the selected call's details, with Caller, Link to contact and Create activity."""
    call = _call_or_404(request, pk)
    return render(request, "calls/_details.html", _details_context(request, call))


@login_required
@require_GET
def status(request: HttpRequest) -> HttpResponse:
    """S-4.5 Logged in, S-4.6 Busy and what the phone is doing (which enables Answer, End call, Transfer)."""
    return render(request, "calls/_status.html", _status_context(resource_of(request.user)))


@login_required
@require_GET
def contact_search(request: HttpRequest) -> HttpResponse:
    """Contacts by name or number, for Caller (``purpose=caller``: options) and Link to contact (a list)."""
    text = request.GET.get("q", "")
    purpose = "link" if request.GET.get("purpose") == "link" else "caller"
    call = None
    raw = request.GET.get("call", "")
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        call = _call_or_404(request, int(raw))
    if call is None:
        purpose = "caller"  # linking needs the call to link
    too_long = len(text) > queries.MAX_SEARCH_LENGTH
    found = [] if too_long or "\x00" in text else queries.search_contacts(text)
    return render(request, f"calls/_contacts_{purpose}.html", {
        "contacts": found, "q": text.strip(), "too_long": too_long, "call": call,
        "max_length": queries.MAX_SEARCH_LENGTH,
    })


# ---- what the agent does ----------------------------------------------------------------------------------------


@_resource_post
def set_campaign(request: HttpRequest, resource: Resource) -> HttpResponse:
    """S-4.2: the working campaign."""
    form = CampaignForm(request.POST)
    if not form.is_valid():
        return _reply(request, _form_error(form), "error", template="calls/_campaign.html",
                      context=_campaign_context(resource))
    campaign = form.cleaned_data["campaign"]
    try:
        actions.set_working_campaign(resource, campaign)
    except actions.Refused as exc:
        return _reply(request, exc.message, "error", template="calls/_campaign.html",
                      context=_campaign_context(resource))
    message = (_("Working campaign: %(campaign)s. New activities are linked to it.") % {"campaign": campaign.name}
               if campaign else _("No working campaign: new activities are created without a campaign."))
    return _reply(request, message, "success", template="calls/_campaign.html", context=_campaign_context(resource))


@login_required
@require_POST
def set_contact(request: HttpRequest, pk: int) -> HttpResponse:
    """S-4.8 Update: the chosen contact becomes the call's contact."""
    call = _call_or_404(request, pk)
    form = ContactChoiceForm(request.POST)
    if not form.is_valid():
        return _reply(request, _form_error(form), "error", call=call)
    try:
        updated = actions.set_call_contact(call, form.cleaned_data["contact"])
    except actions.Refused as exc:
        return _reply(request, exc.message, "error", call=call)
    assert updated.contact is not None
    return _reply(request, _("The call's contact is now %(contact)s.") % {"contact": updated.contact.display_name},
                  "success", triggers={"cc-call-changed": {"id": call.pk}}, call=call)


@login_required
def link_contact(request: HttpRequest, pk: int) -> HttpResponse:
    """S-4.17 Link to contact: GET the dialog; POST an existing contact (with the slot choice when all are full)."""
    call = _call_or_404(request, pk)
    context: dict[str, Any] = {"call": call, "new_contact": NewContactForm(), "max_length": queries.MAX_SEARCH_LENGTH}
    if request.method == "GET":
        if call.contact is not None:
            context["already"] = call.contact
        return render(request, "calls/_link_dialog.html", context)
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    form = LinkForm(request.POST)
    if not form.is_valid():
        return _reply(request, _form_error(form), "error", call=call)
    contact = form.cleaned_data["contact"]
    try:
        return _linked_reply(request, call, lambda: actions.link_call_to_contact(
            call, contact, replace_slot=form.cleaned_data["replace_slot"],
            store_number=form.cleaned_data["store_number"]))
    except AllSlotsFull as full:
        return _reply(request, template="calls/_link_slots.html", call=call, context={
            "call": call, "contact": full.contact,
            "slots": {phone.slot: phone for phone in full.contact.phones.all()}, "slot_numbers": PHONE_SLOTS,
            "number": actions.number_to_store(call),
        })


def _linked_reply(request: HttpRequest, call: Call, link: Callable[[], actions.Linked]) -> HttpResponse:
    """S-4.17's reply, whichever way the call is linked: ``link()`` done, refused, or invalid."""
    try:
        linked = link()
    except actions.Refused as exc:
        return _reply(request, exc.message, "error", call=call, triggers={"cc-call-changed": {"id": call.pk}})
    except ValidationError as exc:
        return _reply(request, " ".join(exc.messages), "error", call=call)
    return _reply(request, _linked_message(linked), "success", call=call,
                  triggers={"cc-call-changed": {"id": call.pk}, "cc-dialog-close": {}})


def _linked_message(linked: actions.Linked) -> str:
    name = linked.contact.display_name
    if linked.slot is not None:
        return _("Linked to %(contact)s; the number is saved in phone slot %(slot)s.") % {
            "contact": name, "slot": linked.slot}
    return _("Linked to %(contact)s.") % {"contact": name}


@login_required
@require_POST
def link_new_contact(request: HttpRequest, pk: int) -> HttpResponse:
    """S-4.17 with a new contact, created with the call's number."""
    call = _call_or_404(request, pk)
    form = NewContactForm(request.POST)
    if not form.is_valid():
        return _reply(request, _form_error(form), "error", call=call)
    return _linked_reply(request, call, lambda: actions.link_call_to_new_contact(call, **form.cleaned_data))


@login_required
def create_activity(request: HttpRequest, pk: int) -> HttpResponse:
    """S-4.18 Create activity: GET the type chooser; POST a type."""
    call = _call_or_404(request, pk)
    if request.method == "GET":
        return render(request, "calls/_activity_dialog.html", {
            "call": call, "activity_types": list(ActivityType.objects.filter(active=True)),
            "activity": getattr(call, "activity", None),
        })
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    form = ActivityTypeForm(request.POST)
    if not form.is_valid():
        return _reply(request, _form_error(form), "error", call=call)
    return _created_activity(request, call, form.cleaned_data["activity_type"])


def _created_activity(request: HttpRequest, call: Call, activity_type: ActivityType) -> HttpResponse:
    try:
        activity = actions.create_activity_for_call(call, activity_type, user=request.user)  # type: ignore[arg-type]
    except actions.Refused as exc:
        return _reply(request, exc.message, "error", call=call, triggers={"cc-call-changed": {"id": call.pk}})
    return _reply(request, _("Activity “%(subject)s” created.") % {"subject": activity.subject}, "success",
                  call=call, triggers={"cc-call-changed": {"id": call.pk}, "cc-dialog-close": {}})


@login_required
@require_POST
def open_call(request: HttpRequest, pk: int) -> HttpResponse:
    """Double-click (S-4.18/S-3.6): open the call's activity; without one, create one of the default type; with no
    default type, the chooser."""
    call = _call_or_404(request, pk)
    activity = getattr(call, "activity", None)
    if activity is not None:
        url = reverse("activities:detail", args=[activity.pk])
        if not request.htmx:  # type: ignore[attr-defined]
            return redirect(url)
        return _reply(request, triggers={"cc-open-activity": {"url": url}})
    default = CallCenterSettings.load().default_activity_type
    if default is not None and default.active:
        return _created_activity(request, call, default)
    return _reply(request, template="calls/_activity_dialog.html", call=call, context={
        "call": call, "activity_types": list(ActivityType.objects.filter(active=True)), "activity": None,
    }, triggers={"cc-dialog-open": {}})


@login_required
@require_POST
def clear_selected(request: HttpRequest) -> HttpResponse:
    """S-4.15 Clear selected."""
    ids = selected_ids(request.POST.getlist("ids"))
    if not ids:
        return _reply(request, _("Select the calls to clear first (the boxes in the list)."), "warning")
    return _cleared_reply(request, actions.clear_calls(request.user, ids))


@_resource_post
def clear_all(request: HttpRequest, resource: Resource) -> HttpResponse:
    """S-4.16 Clear all: the user's own calls, whatever the filters."""
    return _cleared_reply(request, actions.clear_all(resource))


def _cleared_reply(request: HttpRequest, result: actions.Cleared) -> HttpResponse:
    message = ngettext("%(count)d call cleared.", "%(count)d calls cleared.", result.cleared) % {
        "count": result.cleared}
    if result.in_progress:
        message += " " + ngettext(
            "%(count)d call in progress was left alone.", "%(count)d calls in progress were left alone.",
            result.in_progress) % {"count": result.in_progress}
    return _reply(request, message, "success" if result.cleared else "info", triggers={"cc-refresh-list": {}})


def _selected_call(request: HttpRequest) -> Call | None:
    raw = request.POST.get("call", "")
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return _call_or_404(request, int(raw))
    return None


@_command(NumberForm)
def dial(request: HttpRequest, resource: Resource, data: dict[str, Any]) -> tuple[wire.CommandResult, str]:
    """S-4.10 Call."""
    number = data["number"]
    return actions.dial(resource, number), _("Calling %(number)s…") % {"number": number}


@_command()
def redial(request: HttpRequest, resource: Resource, data: dict[str, Any]) -> tuple[wire.CommandResult, str]:
    """S-4.10 Redial: the selected call's number, or the last number dialled."""
    call = _selected_call(request)
    number = call.number if call is not None and call.number else resource.last_dialled
    return actions.redial(resource, call), _("Calling %(number)s…") % {"number": number}


@_command()
def answer(request: HttpRequest, resource: Resource, data: dict[str, Any]) -> tuple[wire.CommandResult, str]:
    """S-4.11 Answer."""
    return actions.answer(resource, _selected_call(request)), _("Answering…")


@_command()
def hangup(request: HttpRequest, resource: Resource, data: dict[str, Any]) -> tuple[wire.CommandResult, str]:
    """S-4.12 End call."""
    return actions.hangup(resource, _selected_call(request)), _("Ending the call…")


@_command(NumberForm)
def transfer(request: HttpRequest, resource: Resource, data: dict[str, Any]) -> tuple[wire.CommandResult, str]:
    """S-4.13 Transfer to the internal number in Number."""
    target = data["number"]
    return (actions.transfer(resource, target, _selected_call(request)),
            _("Transferring to %(number)s…") % {"number": target})


@_command(BusyForm, invalid=lambda form: _("Busy is either on or off."))
def busy(request: HttpRequest, resource: Resource, data: dict[str, Any]) -> tuple[wire.CommandResult, str]:
    """S-4.6 Busy: on or off on the PBX; the toggle follows what the PBX then reports."""
    wanted = data["busy"]
    done = (_("Busy sent to the PBX; the switch shows what the PBX reports.") if wanted
            else _("Available sent to the PBX; the switch shows what the PBX reports."))
    return actions.set_busy(resource, wanted), done
