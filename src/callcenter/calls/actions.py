"""The call rules (SPEC S-3): how the bridge's wire events become calls, contacts links and activities.

Every write about calls goes through this module, inside a transaction; pushes to browsers leave after commit.

Rules
- Events are taken once: each event id is recorded in ProcessedEvent; a redelivered id is acknowledged and skipped.
- Facts about one call at one extension are merged into its CallLeg in whatever order they arrive (an answer that
  arrives before the ringing still counts; the earliest ringing time wins). The Call row is then *projected* from
  the leg, so the outcome does not depend on the order or on repetitions.
- No row while the phone system is None (the call center is off, S-3.1), nor for internal calls unless "update call
  center from internal calls" is on (S-3.11). An outside call transferred between agents stays external.
- "Create call when answered" (S-3.7): an inbound call that rang a group is stored only for the first agent who
  answers; the unique Call.answer_group settles a race between two answers in the database. Unanswered inbound
  calls are then stored for nobody. Outgoing calls and calls that came by transfer are stored either way.
- Type (S-4.4): outgoing for outbound legs; incoming for inbound legs, missed once an inbound leg ended unanswered;
  internal for internal calls when they are recorded.
- Caller matching (S-3.2): the contact is set when exactly one contact matches; with several the call keeps none
  and the screen offers the choice.
- Activities (S-3.3/3.4): an activity of the configured type is created with the row, linked to the call, its
  contact, its resource and the resource's working campaign when that campaign is still available (S-4.2); a
  sale-opportunity activity gets the campaign's items when "insert campaign items" is on (S-3.13).
- Duration is talk time: answer to end (S-4.4). A transfer ends the transferring agent's talk on its own leg.
- An event for an extension that belongs to no resource still makes a row (resource empty): administrators see it;
  nothing is dropped silently.
- Cleared calls (S-4.16) keep their leg marked cleared, so a replayed event cannot bring them back.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Right
from django.utils import timezone

from callcenter import numbers, wire
from callcenter.activities.models import Activity, ActivityItem, ActivityType
from callcenter.calls import live
from callcenter.calls.models import Bridge, Call, CallDirection, CallKind, CallLeg, CallState, ProcessedEvent
from callcenter.campaigns.models import Campaign
from callcenter.contacts.actions import MatchRules, match_caller
from callcenter.contacts.models import Contact
from callcenter.resources.models import CallCenterSettings, Resource

log = logging.getLogger(__name__)


def _when(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


# ---- receiving events from a bridge ------------------------------------------------------------------------------


@dataclass
class Receipt:
    accepted: int = 0
    duplicates: int = 0
    failed: int = 0

    def as_wire(self) -> wire.BatchReceipt:
        return wire.BatchReceipt(accepted=self.accepted + self.failed, duplicates=self.duplicates)


def receive_events(bridge: Bridge | None, events: Sequence[wire.Event]) -> Receipt:
    """Apply a batch of wire events in order, each at most once. The whole batch runs in one transaction; if
    anything in it fails, the events are retried one by one, and an event whose rules fail on its own is kept
    (payload and error) for an administrator and acknowledged, so one bad event never blocks a bridge's outbox."""
    receipt = Receipt()
    unique: dict[str, wire.Event] = {}
    for event in events:
        if event.event_id in unique:
            receipt.duplicates += 1
        else:
            unique[event.event_id] = event
    seen = set(
        ProcessedEvent.objects.filter(event_id__in=list(unique)).values_list("event_id", flat=True)
    )
    fresh = [event for event_id, event in unique.items() if event_id not in seen]
    receipt.duplicates += len(seen)
    if not fresh:
        return receipt
    try:
        with transaction.atomic():
            context = _Context.load()
            for event in fresh:
                _apply(context, bridge, event)
            ProcessedEvent.objects.bulk_create([_processed(bridge, event) for event in fresh])
        receipt.accepted += len(fresh)
        return receipt
    except Exception:  # noqa: BLE001 - retried event by event below, where a failure is recorded, not lost
        log.warning("batch of %d events failed as a whole; applying them one by one", len(fresh), exc_info=True)
    for event in fresh:
        outcome = receive_event(bridge, event)
        if outcome == "accepted":
            receipt.accepted += 1
        elif outcome == "duplicate":
            receipt.duplicates += 1
        else:
            receipt.failed += 1
    return receipt


def receive_event(bridge: Bridge | None, event: wire.Event) -> str:
    """Apply one event in its own transaction: 'accepted', 'duplicate' or 'failed' (kept for an administrator)."""
    try:
        with transaction.atomic():
            _processed(bridge, event).save()
            _apply(_Context.load(), bridge, event)
        return "accepted"
    except IntegrityError:
        if ProcessedEvent.objects.filter(event_id=event.event_id).exists():
            return "duplicate"
        error = "integrity error"
        log.exception("event %s broke a database rule; kept for an administrator", event.event_id)
    except Exception as exc:  # noqa: BLE001 - recorded below with its payload: nothing is lost
        error = f"{type(exc).__name__}: {exc}"
        log.exception("event %s could not be applied; kept for an administrator", event.event_id)
    try:
        ProcessedEvent.objects.create(
            event_id=event.event_id,
            bridge=bridge,
            event_type=_event_type(event),
            occurred_at=_when(event.occurred_at),
            failed=True,
            error=error[:2000],
            payload=wire.to_builtins(event),
        )
    except IntegrityError:
        return "duplicate"
    return "failed"


def _event_type(event: wire.Event) -> str:
    return type(event).__struct_config__.tag  # type: ignore[return-value]


def _processed(bridge: Bridge | None, event: wire.Event) -> ProcessedEvent:
    return ProcessedEvent(
        event_id=event.event_id, bridge=bridge, event_type=_event_type(event), occurred_at=_when(event.occurred_at)
    )


@dataclass
class _Context:
    """What the rules read for every event of a batch, read once per batch."""

    settings: CallCenterSettings
    rules: MatchRules

    @classmethod
    def load(cls) -> _Context:
        settings = CallCenterSettings.load()
        return cls(
            settings=settings,
            rules=MatchRules(
                digits_to_scan=settings.digits_to_scan,
                prefix=settings.call_prefix,
                internal_digits=settings.internal_digits,
            ),
        )


def _apply(context: _Context, bridge: Bridge | None, event: wire.Event) -> None:
    if isinstance(event, wire.AgentState):
        _apply_agent_state(event)
    elif isinstance(event, wire.LinkState):
        _apply_link_state(bridge, event)
    else:
        leg = _merge_into_leg(event)
        if leg is not None:
            project(context, leg)


# ---- merging facts into legs -------------------------------------------------------------------------------------


def _merge_into_leg(event: wire.CallRinging | wire.CallAnswered | wire.CallTransferred | wire.CallEnded) -> CallLeg:
    leg, _created = CallLeg.objects.select_for_update().get_or_create(
        pbx_call_id=event.call_id, extension=event.extension
    )
    when = _when(event.occurred_at)
    if event.leg_id and not leg.pbx_leg_id:
        leg.pbx_leg_id = event.leg_id
    if isinstance(event, wire.CallRinging):
        if leg.rang_at is None or when <= leg.rang_at:
            leg.rang_at = when
            leg.direction = _leg_direction(event)
            leg.remote_number = event.remote_number or leg.remote_number
            leg.remote_name = event.remote_name or leg.remote_name
            leg.transferred_from = event.transferred_from or leg.transferred_from
        if event.direction == wire.Direction.INTERNAL:
            leg.direction = _leg_direction(event)
    elif isinstance(event, wire.CallAnswered):
        if leg.answered_at is None or when < leg.answered_at:
            leg.answered_at = when
    elif isinstance(event, wire.CallTransferred):
        leg.transferred_to = event.target
    elif isinstance(event, wire.CallEnded):
        if leg.ended_at is None or when < leg.ended_at:
            leg.ended_at = when
        leg.cause = event.cause
        leg.answered_elsewhere = leg.answered_elsewhere or event.answered_elsewhere
        leg.reconciled = leg.reconciled or event.reconciled
    leg.save()
    return leg


def _leg_direction(event: wire.CallRinging) -> str:
    """'in', 'out', 'internal-in' or 'internal-out' (an internal call whose side is unknown counts as inbound)."""
    if event.direction == wire.Direction.INTERNAL:
        return f"internal-{event.internal_direction or 'in'}"
    return str(event.direction)


# ---- projecting a leg onto the Call row --------------------------------------------------------------------------


def project(context: _Context, leg: CallLeg) -> Call | None:
    """Create or update the Call row that ``leg`` stands for, by the rules at the top of this module."""
    settings = context.settings
    if leg.cleared or not settings.enabled or leg.rang_at is None:
        # Cleared stays cleared; with the call center off nothing is stored; without the ringing we do not know
        # the direction or the number yet (the row is made when it arrives).
        return None
    internal = leg.direction.startswith("internal")
    if internal and not settings.update_from_internal_calls:
        return None
    inbound = leg.direction in ("in", "internal-in")
    call = leg.call
    if call is None:
        if inbound and settings.create_call_when_answered and not leg.transferred_from:
            if leg.answered_at is None:
                return None
            call = _create_call(context, leg, answer_group=leg.pbx_call_id)
            if call is None:
                return None  # another agent answered first
        else:
            call = _create_call(context, leg, answer_group=None)
            if call is None:
                return None
        new = True
    else:
        new = False
    _update_call_from_leg(call, leg, inbound=inbound, internal=internal)
    live.call_changed(call, new=new)
    return call


def _create_call(context: _Context, leg: CallLeg, *, answer_group: str | None) -> Call | None:
    assert leg.rang_at is not None, "project() creates rows only for legs that rang"
    resource = Resource.objects.filter(extension=leg.extension).first()
    if resource is None:
        log.warning(
            "call %s on extension %s, which belongs to no resource: stored without resource for administrators",
            leg.pbx_call_id,
            leg.extension,
        )
    internal = leg.direction.startswith("internal")
    inbound = leg.direction in ("in", "internal-in")
    contact = _matching_contact(context, leg.remote_number, dialled=not inbound, internal=internal)
    call = Call(
        resource=resource,
        kind=CallKind.INTERNAL if internal else (CallKind.INCOMING if inbound else CallKind.OUTGOING),
        direction=CallDirection.INBOUND if inbound else CallDirection.OUTBOUND,
        state=CallState.RINGING,
        started_at=leg.rang_at,
        number=leg.remote_number,
        number_key=context.rules.key(leg.remote_number, dialled=not inbound),
        number_digits=numbers.strip_prefix(
            leg.remote_number, context.rules.prefix if not inbound else "", context.rules.internal_digits
        )[: numbers.MAX_RAW_LENGTH],
        caller_name=leg.remote_name,
        contact=contact,
        extension=leg.extension,
        pbx_call_id=leg.pbx_call_id,
        pbx_leg_id=leg.pbx_leg_id,
        transferred_from=leg.transferred_from,
        answer_group=answer_group,
    )
    if resource is not None and context.settings.campaign_type_id:
        call.campaign = _working_campaign(resource, context.settings)
    try:
        with transaction.atomic():
            call.save()
    except IntegrityError:
        if answer_group is not None and Call.objects.filter(answer_group=answer_group).exists():
            log.info("call %s: %s answered too, but another agent was first", leg.pbx_call_id, leg.extension)
            return None
        raise
    leg.call = call
    leg.save(update_fields=["call", "updated_at"])
    activity_type = context.settings.incoming_activity_type if inbound else context.settings.outgoing_activity_type
    if activity_type is not None and not internal:
        create_call_activity(call, activity_type, settings=context.settings)
    return call


def _update_call_from_leg(call: Call, leg: CallLeg, *, inbound: bool, internal: bool) -> None:
    call.answered_at = leg.answered_at if leg.answered_at and leg.answered_at >= call.started_at else call.answered_at
    if leg.ended_at is not None:
        call.ended_at = max(leg.ended_at, call.started_at)
        call.state = CallState.ENDED
    elif call.answered_at is not None:
        call.state = CallState.UP
    if call.ended_at is not None and call.answered_at is not None:
        call.duration = call.talk_seconds()
    if inbound and not internal:
        call.kind = CallKind.MISSED if (call.ended_at is not None and call.answered_at is None) else CallKind.INCOMING
    call.transferred_to = leg.transferred_to
    call.reconciled = leg.reconciled
    call.save()


def _matching_contact(context: _Context, number: str, *, dialled: bool, internal: bool) -> Contact | None:
    if internal or not number:
        return None
    found = match_caller(number, rules=context.rules, dialled=dialled, limit=2)
    return found[0] if len(found) == 1 else None


def _working_campaign(resource: Resource, settings: CallCenterSettings) -> Campaign | None:
    campaign = resource.working_campaign
    if campaign is None or campaign.campaign_type_id != settings.campaign_type_id:
        return None
    if not campaign.is_available(timezone.localdate()):
        log.info("working campaign %s of %s is no longer available; activity made without it", campaign, resource)
        return None
    return campaign


def rekey_calls(digits_to_scan: int) -> int:
    """Recompute every call's match key after "digits to scan" changed: one UPDATE from the stored digits."""
    if not numbers.MIN_DIGITS_TO_SCAN <= digits_to_scan <= numbers.MAX_DIGITS_TO_SCAN:
        raise ValueError(f"digits to scan must be 4-15, not {digits_to_scan}")
    return Call.objects.update(number_key=Right("number_digits", digits_to_scan))


# ---- activities --------------------------------------------------------------------------------------------------


def create_call_activity(call: Call, activity_type: ActivityType, *, settings: CallCenterSettings | None = None,
                         created_by: User | None = None) -> Activity | None:
    """S-4.18 / S-3.3 / S-3.4: the call's activity, linked to its resource, contact, time and campaign, with the
    campaign's items for a sale opportunity when S-3.13 is on. None when the call already has one (the one-to-one
    link makes the database refuse a second, whoever asks at the same time)."""
    settings = settings or CallCenterSettings.load()
    contact_name = call.contact.display_name if call.contact else (call.caller_name or call.number)
    activity = Activity(
        activity_type=activity_type,
        subject=f"{call.get_kind_display()} {contact_name}".strip()[:200],
        starts_at=call.started_at,
        contact=call.contact,
        resource=call.resource,
        call=call,
        campaign=call.campaign,
        created_by=created_by,
    )
    try:
        with transaction.atomic():
            activity.save()
    except IntegrityError:
        return None
    if (
        settings.insert_campaign_items
        and settings.campaign_type_id
        and call.campaign is not None
        and activity_type.is_sale_opportunity
    ):
        ActivityItem.objects.bulk_create(
            ActivityItem(
                activity=activity,
                description=item.description,
                quantity=item.quantity,
                unit_price=item.unit_price,
                campaign_item=item,
                position=item.position,
            )
            for item in call.campaign.items.all()
        )
    return activity


# ---- agent and bridge state --------------------------------------------------------------------------------------


def _apply_agent_state(event: wire.AgentState) -> None:
    when = _when(event.occurred_at)
    changes: dict[str, object] = {"pbx_state_at": when}
    if event.dnd is not None:
        changes["pbx_busy"] = event.dnd
    if event.logged_in is not None:
        changes["pbx_logged_in"] = event.logged_in
    updated = Resource.objects.filter(
        Q(pbx_state_at__isnull=True) | Q(pbx_state_at__lte=when), extension=event.extension
    ).update(**changes)
    if updated:
        for resource in Resource.objects.filter(extension=event.extension):
            live.agent_changed(resource)
    elif not Resource.objects.filter(extension=event.extension).exists():
        log.info("agent state for extension %s, which belongs to no resource", event.extension)


def _apply_link_state(bridge: Bridge | None, event: wire.LinkState) -> None:
    if bridge is None:
        return
    when = _when(event.occurred_at)
    Bridge.objects.filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lte=when), pk=bridge.pk).update(
        pbx_connected=event.pbx_connected,
        phone_system=str(event.phone_system),
        extensions=list(event.extensions),
        version=event.bridge_version,
        detail=event.detail,
        link=wire.to_builtins(event),
        last_seen_at=when,
    )
    settings = CallCenterSettings.load()
    if settings.enabled and str(event.phone_system) != settings.phone_system:
        log.error(
            "bridge %s reports phone system %s but the CRM is set to %s; fix CRM settings -> Call center or the "
            "bridge's settings",
            bridge,
            event.phone_system,
            settings.phone_system,
        )
    live.bridge_changed(bridge, extensions=event.extensions)
