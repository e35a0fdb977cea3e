"""Live pushes to browsers: leave only after commit, and each names its recipients.

Groups: ``resource-<id>`` (the resource's own screens) and ``administrators`` (every administrator's screen). A call
with no resource (an extension nobody owns) goes to administrators only.

Messages (each carries a ``push_id``, so a screen in two groups - an administrator's own call - takes it once):
- ``call.changed``: a call row was created or changed. What the notification window needs (S-4.19) is read from the
  committed row when the transaction commits: number as displayed, contact, kind, state, whether it is new and
  incoming, its activity (for auto-open, S-3.10). The browser renders these as text, never as markup.
- ``leg.ringing`` / ``leg.ended``: with "create call when answered" (S-3.7) an inbound group call has no row until
  someone answers, so each ringing agent's pop comes from its leg instead: ``leg.ringing`` (number as displayed,
  contact when exactly one matches, caller name) while its phone rings, ``leg.ended`` once that leg is answered
  (its row follows as ``call.changed``), answered elsewhere or ended. Keyed by ``pbx_call_id`` + ``extension``; sent
  to the resource that owns the extension only (nobody when no resource owns it).
- ``calls.cleared``: rows removed by Clear selected / Clear all (S-4.15/4.16).
- ``agent.changed``: the PBX reported Busy (DND) for a resource (S-4.6).
- ``bridge.changed``: a bridge reported its link (S-4.5).
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from callcenter import numbers
from callcenter.activities.models import Activity
from callcenter.calls import bulk
from callcenter.calls.models import Bridge, Call, CallDirection, kind_label
from callcenter.contacts.models import display_name
from callcenter.resources.models import CallCenterSettings, Resource

log = logging.getLogger(__name__)

ADMINISTRATORS = "administrators"


def resource_group(resource_id: int) -> str:
    return f"resource-{resource_id}"


def _send_on_commit(groups: Iterable[str], message: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
    targets = sorted(set(groups))

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            payload = message() if callable(message) else message
        except Exception:  # noqa: BLE001 - a push is best effort; the screen reloads on reconnect
            log.warning("live push could not be built", exc_info=True)
            return
        payload = {**payload, "push_id": uuid.uuid4().hex}
        for group in targets:
            try:
                async_to_sync(layer.group_send)(group, payload)
            except Exception:  # noqa: BLE001 - a push is best effort; the screen reloads on reconnect
                log.warning("live push to %s failed", group, exc_info=True)

    transaction.on_commit(send)


def _groups_for(resource_id: int | None) -> list[str]:
    groups = [ADMINISTRATORS]
    if resource_id is not None:
        groups.append(resource_group(resource_id))
    return groups


def call_message(call_id: int, *, new: bool, resource_id: int | None) -> dict[str, Any]:
    """The ``call.changed`` message for the call as committed (only ids when it is gone already)."""
    row = _message_rows([call_id]).get(call_id)
    region = CallCenterSettings.load().phone_region if row is not None else ""
    return _call_message(call_id, new=new, resource_id=resource_id, row=row, region=region)


# What _call_message() reads of a call, as plain values (no model objects: a batch of bridge events pushes thousands
# of calls). Name a field here when the message starts using it (before activity__id, which _message_rows reads
# apart).
_MESSAGE_FIELDS = ("id", "resource_id", "kind", "state", "direction", "number", "contact_id", "caller_name",
                   "started_at", "answered_at", "pbx_call_id", "extension", "contact__first_name",
                   "contact__last_name", "contact__company", "activity__id")


def _message_rows(call_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The committed rows of ``call_ids`` (those that still exist), as _MESSAGE_FIELDS values, in two queries: the
    calls with their contacts by primary key, then their activities by call. (One query joining both was planned on
    PostgreSQL as a scan of the whole activity table for every batch of bridge events; bulk.values_in probes its
    index once per call.)"""
    rows = {row["id"]: row for row in Call.objects.filter(pk__in=list(call_ids)).values(*_MESSAGE_FIELDS[:-1])}
    for row in rows.values():
        row["activity__id"] = None
    for call_id, activity_id in bulk.values_in(Activity, "call_id", list(rows), ("call_id", "id")):
        rows[call_id]["activity__id"] = activity_id
    return rows


def _call_message(call_id: int, *, new: bool, resource_id: int | None, row: dict[str, Any] | None, region: str,
                  display: Callable[[str, str], str] = numbers.display,
                  label: Callable[[str], str] = kind_label) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "call.changed", "call_id": call_id, "new": new, "resource_id": resource_id}
    if row is None:
        return message
    answered_at = row["answered_at"]
    message.update(
        resource_id=row["resource_id"],
        kind=row["kind"],
        kind_label=label(row["kind"]),
        state=row["state"],
        incoming=row["direction"] == CallDirection.INBOUND,
        number=display(row["number"], region),
        contact=display_name(row["contact__first_name"], row["contact__last_name"], row["contact__company"])
        if row["contact_id"] is not None else "",
        caller_name=row["caller_name"],
        activity_id=row["activity__id"],
        started_at=row["started_at"].isoformat(),
        answered_at=answered_at.isoformat() if answered_at else None,
        pbx_call_id=row["pbx_call_id"],  # with extension: the key of a leg.ringing pop this row follows
        extension=row["extension"],
    )
    return message


def leg_message(ringing: bool, *, pbx_call_id: str, extension: str, resource_id: int, number: str = "",
                contact: str = "", caller_name: str = "") -> dict[str, Any]:
    """A ``leg.ringing`` or ``leg.ended`` message (built when the rules run: there is no row to read at commit)."""
    message: dict[str, Any] = {"type": "leg.ringing" if ringing else "leg.ended", "pbx_call_id": pbx_call_id,
                               "extension": extension, "resource_id": resource_id}
    if ringing:
        message.update(incoming=True, state="ringing", number=number, contact=contact, caller_name=caller_name)
    return message


def leg_changed(message: dict[str, Any]) -> None:
    _send_on_commit([resource_group(message["resource_id"])], message)


def call_changed(call: Call, *, new: bool) -> None:
    call_id, resource_id = call.pk, call.resource_id
    _send_on_commit(_groups_for(resource_id), lambda: call_message(call_id, new=new, resource_id=resource_id))


# A call is pushed at its ringing, answer and end, often from different batches: parsing its number once saves the
# other two parses (phonenumbers takes ~50 us a number). The display of a number in a region never changes.
_remembered_display = functools.lru_cache(maxsize=4096)(numbers.display)


def calls_changed(changes: Sequence[tuple[Call, bool] | dict[str, Any]]) -> None:
    """call_changed() for each (call, new), as one commit hook: the committed rows read in one query and one hop to
    the event loop for all the sends (what a batch of bridge events needs). A call changed several times in the
    batch is pushed once, where it first changed, as new if it was new: its messages would all be read from the same
    committed row, so the later ones would only repeat it. A dict is a leg message, sent in its place as
    leg_changed() sends it."""
    pending: list[tuple[int, bool, int | None] | dict[str, Any]] = []
    position: dict[int, int] = {}
    for change in changes:
        if isinstance(change, dict):
            pending.append(change)
            continue
        call, new = change
        at = position.get(call.pk)
        if at is None:
            position[call.pk] = len(pending)
            pending.append((call.pk, new, call.resource_id))
        elif new:
            pending[at] = (call.pk, True, call.resource_id)
    if not pending:
        return

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            rows = _message_rows({item[0] for item in pending if not isinstance(item, dict)})
            region = CallCenterSettings.load().phone_region
        except Exception:  # noqa: BLE001 - a push is best effort; the screen reloads on reconnect
            log.warning("live pushes could not be built", exc_info=True)
            return
        labels = functools.lru_cache(maxsize=None)(kind_label)  # in this send's language
        outgoing: list[tuple[list[str], dict[str, Any]]] = []
        for item in pending:
            if isinstance(item, dict):
                outgoing.append(([resource_group(item["resource_id"])], {**item, "push_id": uuid.uuid4().hex}))
                continue
            call_id, new, resource_id = item
            try:
                message = _call_message(call_id, new=new, resource_id=resource_id, row=rows.get(call_id),
                                        region=region, display=_remembered_display, label=labels)
            except Exception:  # noqa: BLE001 - a push is best effort; the screen reloads on reconnect
                log.warning("live push could not be built", exc_info=True)
                continue
            outgoing.append((_groups_for(resource_id), {**message, "push_id": uuid.uuid4().hex}))

        async def send_all() -> None:
            for groups, payload in outgoing:
                for group in sorted(set(groups)):
                    try:
                        await layer.group_send(group, payload)
                    except Exception:  # noqa: BLE001 - a push is best effort; the screen reloads on reconnect
                        log.warning("live push to %s failed", group, exc_info=True)

        async_to_sync(send_all)()

    transaction.on_commit(send)


def calls_cleared(cleared: Iterable[tuple[int, int | None]]) -> None:
    """``cleared``: (call id, resource id) of each removed row."""
    by_group: dict[str, list[int]] = {}
    for call_id, resource_id in cleared:
        for group in _groups_for(resource_id):
            by_group.setdefault(group, []).append(call_id)
    for group, call_ids in by_group.items():
        _send_on_commit([group], {"type": "calls.cleared", "call_ids": sorted(call_ids)})


def agent_changed(resource: Resource) -> None:
    _send_on_commit(
        [resource_group(resource.pk)],
        {"type": "agent.changed", "resource_id": resource.pk, "busy": resource.pbx_busy},
    )


def bridge_changed(bridge: Bridge, *, extensions: Iterable[str]) -> None:
    resource_ids = Resource.objects.filter(extension__in=list(extensions)).values_list("pk", flat=True)
    bridge_id = bridge.pk

    def message() -> dict[str, Any]:
        # As committed: the rules update the row, not the object they were given.
        connected = Bridge.objects.filter(pk=bridge_id).values_list("pbx_connected", flat=True).first()
        return {"type": "bridge.changed", "bridge_id": bridge_id, "connected": bool(connected)}

    _send_on_commit([ADMINISTRATORS, *(resource_group(pk) for pk in resource_ids)], message)
