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
from dataclasses import dataclass

import httpx
from django.utils import timezone
from django.utils.translation import gettext as _

from callcenter import wire
from callcenter.calls.models import Bridge
from callcenter.resources.models import CallCenterSettings, Resource

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


def address_mismatch(resource: Resource, bridge: Bridge) -> str:
    """'' when the bridge's reported addresses agree with the resource's options, else what disagrees."""
    link = bridge.link or {}
    checks = [
        (_("Service address"), resource.service_address, link.get("service_address")),
        (_("Service port"), resource.service_port, link.get("service_port")),
        (_("Internal service address"), resource.internal_address, link.get("callback_address")),
        (_("Internal communication port"), resource.internal_port, link.get("callback_port")),
    ]
    for label, ours, theirs in checks:
        if theirs in (None, "", 0):
            continue  # the bridge did not say
        if str(ours).strip().lower() != str(theirs).strip().lower():
            return _("%(field)s is %(ours)s here but the bridge uses %(theirs)s; make them agree.") % {
                "field": label,
                "ours": ours,
                "theirs": theirs,
            }
    return ""


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
