"""The CRM's side of call control: find a resource's bridge, tell whether it is logged in (S-4.5), and send it
signed commands (dial, answer, hang up, transfer, busy).

A command goes to the bridge at the resource's service address and port (S-2.2/2.3), signed with the secret of the
bridge that follows the resource's extension. Every failure comes back as a ``wire.CommandResult`` with a stable
``error_id`` and a message for people; nothing here raises for a bridge or PBX problem.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from django.utils import timezone
from django.utils.translation import gettext as _

from callcenter import hosts, wire
from callcenter.calls.models import Bridge
from callcenter.crm.models import ErrorLogEntry
from callcenter.resources.models import CallCenterSettings, PhoneSystem, Resource

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 30.0
COMMAND_TIMEOUT = 10.0
_client = httpx.Client(timeout=COMMAND_TIMEOUT, trust_env=False)


def new_command_id() -> str:
    return uuid.uuid4().hex


def bridge_for(resource: Resource) -> Bridge | None:
    """The active bridge that follows the resource's extension (one that follows every extension counts too)."""
    if not resource.extension:
        return None
    candidates = list(Bridge.objects.filter(active=True).order_by("-last_seen_at", "pk"))
    for bridge in candidates:
        if resource.extension in (bridge.extensions or []):
            return bridge
    for bridge in candidates:
        if not bridge.extensions:
            return bridge
    return None


@dataclass(frozen=True)
class LinkStatus:
    logged_in: bool
    reason: str  # for people: why not, or "" when logged in


def link_status(resource: Resource, *, now: dt.datetime | None = None) -> LinkStatus:
    """S-4.5: logged in while the resource is Active, its bridge reported a live PBX link recently, and the bridge's
    addresses and ports agree with the resource's S-2.2–2.5."""
    now = now or timezone.now()
    if not CallCenterSettings.load().enabled:
        return LinkStatus(False, _("The call center is off (CRM settings → Call center → Phone system)."))
    if not resource.cc_active:
        return LinkStatus(False, _("The link to the bridge is off (Call center options → Active)."))
    if not resource.extension:
        return LinkStatus(False, _("This resource has no extension."))
    bridge = bridge_for(resource)
    if bridge is None or bridge.last_seen_at is None:
        return LinkStatus(False, _("No bridge has reported for extension %(ext)s.") % {"ext": resource.extension})
    heartbeat = float((bridge.link or {}).get("heartbeat_seconds") or DEFAULT_HEARTBEAT)
    if (now - bridge.last_seen_at).total_seconds() > heartbeat * 2 + 10:
        return LinkStatus(False, _("The bridge has not reported since %(when)s; is it running?")
                          % {"when": timezone.localtime(bridge.last_seen_at).strftime("%H:%M:%S")})
    if not bridge.pbx_connected:
        return LinkStatus(False, _("The bridge is not connected to the PBX."))
    mismatch = address_mismatch(resource, bridge)
    if mismatch:
        return LinkStatus(False, mismatch)
    return LinkStatus(True, "")


@dataclass(frozen=True)
class Disagreement:
    """One of a resource's S-2 options that the bridge's report contradicts."""

    field: str  # the LinkState field: service_address, service_port, callback_address, callback_port
    ours: object
    theirs: object

    @property
    def label(self) -> str:
        return {
            "service_address": _("Service address"),
            "service_port": _("Service port"),
            "callback_address": _("Internal service address"),
            "callback_port": _("Internal communication port"),
        }[self.field]


def address_disagreement(resource: Resource, bridge: Bridge) -> Disagreement | None:
    """The first of the resource's addresses and ports (S-2.2-2.5) that the bridge's report contradicts, or None.
    Addresses are compared by what they resolve to (hosts.same_host, as the bridge compares its own): ``localhost``,
    ``127.0.0.1``, ``::1`` and ``[::1]`` agree, and a bridge listening on every address agrees with the loopback."""
    link = bridge.link or {}
    checks: list[tuple[str, object, object, Callable[[Any, Any], bool]]] = [
        ("service_address", resource.service_address, link.get("service_address"), hosts.same_host),
        ("service_port", resource.service_port, link.get("service_port"), hosts.same_port),
        ("callback_address", resource.internal_address, link.get("callback_address"), hosts.same_host),
        ("callback_port", resource.internal_port, link.get("callback_port"), hosts.same_port),
    ]
    for field, ours, theirs, same in checks:
        if theirs in (None, "", 0):
            continue  # the bridge did not say
        if not same(str(ours), str(theirs)):
            return Disagreement(field, ours, theirs)
    return None


def address_mismatch(resource: Resource, bridge: Bridge) -> str:
    """'' when the bridge's reported addresses agree with the resource's options, else what disagrees."""
    found = address_disagreement(resource, bridge)
    if found is None:
        return ""
    return _("%(field)s is %(ours)s here but the bridge uses %(theirs)s; make them agree.") % {
        "field": found.label,
        "ours": found.ours,
        "theirs": found.theirs,
    }


def phone_system_warning(bridge: Bridge | None, settings: CallCenterSettings | None = None) -> str:
    """S-3.1: '' unless the bridge reports another phone system than CRM settings → Call center; then what to do."""
    settings = settings or CallCenterSettings.load()
    if bridge is None or not bridge.active or not bridge.phone_system or not settings.enabled:
        return ""
    if bridge.phone_system == settings.phone_system:
        return ""
    return _(
        "Bridge %(bridge)s reports the phone system %(theirs)s, but CRM settings → Call center says %(ours)s; "
        "make them the same."
    ) % {"bridge": bridge, "theirs": _system_label(bridge.phone_system), "ours": _system_label(settings.phone_system)}


def phone_system_warnings() -> list[str]:
    """S-3.1 for every active bridge that has reported (the call-center settings page shows them)."""
    settings = CallCenterSettings.load()
    return [text for bridge in Bridge.objects.filter(active=True).exclude(phone_system="")
            if (text := phone_system_warning(bridge, settings))]


def _system_label(value: str) -> str:
    try:
        return str(PhoneSystem(value).label)
    except ValueError:
        return value


def record_link_problems(bridge: Bridge) -> None:
    """After a bridge's LinkState: write the CRM's error log once per change (not per heartbeat), S-4.5 and S-3.1.
    A resource whose addresses or ports disagree with the bridge's report gets an entry when the disagreement
    appears or changes, and one when it is gone; the same for a bridge reporting another phone system."""
    bridge = Bridge.objects.get(pk=bridge.pk)
    settings = CallCenterSettings.load()
    followers = [b for b in Bridge.objects.filter(active=True).exclude(pk=bridge.pk) if b.extensions]
    followed_elsewhere = {ext for b in followers for ext in b.extensions}
    resources = [
        resource
        for resource in Resource.objects.filter(cc_active=True).exclude(extension__isnull=True).exclude(extension="")
        .select_related("user")
        if resource.extension in (bridge.extensions or [])
        or (not bridge.extensions and resource.extension not in followed_elsewhere)
    ]
    phone_subject = f"phone_system:bridge:{bridge.pk}"
    subjects = {f"address:resource:{resource.pk}" for resource in resources} | {phone_subject}
    last: dict[str, ErrorLogEntry] = {}
    for entry in ErrorLogEntry.objects.filter(subject__in=subjects).order_by("-at", "-pk"):  # one query
        last.setdefault(entry.subject, entry)
    for resource in resources:
        found = address_disagreement(resource, bridge)
        subject = f"address:resource:{resource.pk}"
        if found is not None:
            params = {"resource": str(resource), "extension": str(resource.extension), "field": found.field,
                      "ours": str(found.ours), "theirs": str(found.theirs), "bridge": str(bridge)}
            if _log_change(last, subject, ErrorLogEntry.ADDRESS_MISMATCH, params):
                log.error("resource %s (extension %s) is not logged in: %s is %s in its options but bridge %s uses "
                          "%s", resource, resource.extension, found.field, found.ours, bridge, found.theirs)
        else:
            _log_change(last, subject, ErrorLogEntry.ADDRESS_AGREE,
                        {"resource": str(resource), "bridge": str(bridge)}, only_after=ErrorLogEntry.ADDRESS_MISMATCH)
    if phone_system_warning(bridge, settings):
        params = {"bridge": str(bridge), "theirs": _system_label(bridge.phone_system),
                  "ours": _system_label(settings.phone_system)}
        if _log_change(last, phone_subject, ErrorLogEntry.PHONE_SYSTEM_MISMATCH, params):
            log.error("bridge %s reports phone system %s but the CRM is set to %s; fix CRM settings -> Call center "
                      "or the bridge's settings", bridge, bridge.phone_system, settings.phone_system)
    else:
        _log_change(last, phone_subject, ErrorLogEntry.PHONE_SYSTEM_AGREE, {"bridge": str(bridge)},
                    only_after=ErrorLogEntry.PHONE_SYSTEM_MISMATCH)


def _log_change(
    last_entries: dict[str, ErrorLogEntry], subject: str, code: str, params: dict[str, str], *, only_after: str = ""
) -> bool:
    """Write an error-log entry unless the last one about ``subject`` says the same; with ``only_after``, only when
    the last one has that code (a problem that is now gone). Whether it wrote one."""
    last = last_entries.get(subject)
    if only_after and (last is None or last.code != only_after):
        return False
    if last is not None and last.code == code and last.params == params:
        return False
    ErrorLogEntry.objects.create(subject=subject, code=code, params=params)
    return True


def send_command(resource: Resource, command: wire.Command) -> wire.CommandResult:
    def failed(error_id: str, message: str) -> wire.CommandResult:
        return wire.CommandResult(command_id=command.command_id, ok=False, error_id=error_id, message=message)

    if not resource.cc_active:
        return failed("inactive", _("The link to the bridge is off (Call center options → Active)."))
    bridge = bridge_for(resource)
    if bridge is None:
        return failed("no_bridge", _("No bridge follows extension %(ext)s.") % {"ext": resource.extension or "—"})
    host = resource.service_address
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    url = f"http://{host}:{resource.service_port}/v1/commands"
    body = wire.encode(command)
    headers = {
        "Content-Type": "application/json",
        wire.BRIDGE_HEADER: bridge.bridge_id,
        wire.SIGNATURE_HEADER: wire.sign(bridge.secret, body, int(time.time())),
    }
    where = f"{resource.service_address}:{resource.service_port}"
    try:
        response = _client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        log.warning("command %s to the bridge at %s timed out", type(command).__name__, where)
        return failed("timeout", _("The bridge at %(where)s did not answer in time.") % {"where": where})
    except httpx.HTTPError as exc:
        log.warning("command %s: bridge at %s unreachable: %s", type(command).__name__, where, exc)
        return failed(
            "bridge_unreachable",
            _("The bridge at %(where)s cannot be reached; is it running, and are the service address and port "
              "right?") % {"where": where},
        )
    if response.status_code == 401:
        log.error("bridge at %s refused our signature: %s", where, response.text[:200])
        return failed("unauthenticated", _("The bridge refused the CRM's signature; check the bridge secret."))
    if response.status_code != 200:
        return failed("bridge_error", _("The bridge answered %(status)s.") % {"status": response.status_code})
    try:
        result = wire.decode_result(response.content)
    except wire.WireError as exc:
        log.error("bridge at %s answered something that is not a command result: %s", where, exc)
        return failed("bridge_error", _("The bridge answered something the CRM does not understand."))
    if result.ok:
        log.info("command %s for extension %s: %s", type(command).__name__, command.extension, result.message)
        return result
    # The bridge's own text names channels and AMI actions: it goes to the log; the agent reads what it means.
    log.info("command %s for extension %s refused by the bridge: %s: %s", type(command).__name__, command.extension,
             result.error_id, result.message)
    return failed(result.error_id, refusal_text(result.error_id, command, result.message))


def refusal_text(error_id: str, command: wire.Command, said: str = "") -> str:
    """What a bridge's refusal means to the agent, in the agent's words (the details are in the log). The error ids
    are those of wire.CommandResult; ``said`` is the bridge's own text, quoted only for a refusal by the PBX."""
    if error_id == "pbx_refused" and said:
        return _("The phone system refused it (%(reason)s).") % {"reason": said[:200]}
    if error_id == "not_supported" and isinstance(command, wire.Answer):
        return _("This phone cannot be answered from the CRM; pick up the handset.")
    texts = {
        "no_such_call": _("Your phone has no such call any more; it may have just ended."),
        "not_supported": _("Your phone system cannot do this from the CRM; use the phone itself."),
        "pbx_unavailable": _("The bridge is not connected to the phone system right now; try again once it is back."),
        "pbx_refused": _("The phone system refused it; ask your administrator to look at the bridge's log."),
        "timeout": _("The phone system did not answer in time; try again."),
        "invalid_command": _("The bridge cannot do this for your extension; ask your administrator to check the "
                           "bridge's settings."),
    }
    return texts.get(error_id, _("The bridge refused the command."))
