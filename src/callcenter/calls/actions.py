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

What users do on the Call Center screen (S-4), at the end of this module:
- Working campaign (S-4.2): only a campaign of the configured type that is available today; with exactly one such
  campaign and none (or an expired one) chosen, it is filled in.
- Update (S-4.8) sets the call's contact, and its activity's contact when that has none; no number is stored.
- Link to contact (S-4.17) claims the call with a conditional update (only a call with no contact is linked), so two
  agents linking the same call at once get one link and one clear refusal; the number goes into a free phone slot,
  into the slot the agent chose to replace, or nowhere when the agent declines (AllSlotsFull asks).
- Create activity (S-4.18): one per call (the one-to-one link), with the call's campaign, or the working campaign of
  the call's resource when the call has none.
- Clear (S-4.15/4.16) removes ended calls only, keeps activities and contacts, and marks each call's leg cleared.
  Clear all takes the acting resource's own calls, administrators included.
- Commands (S-4.6, S-4.9-4.13) go to the resource's bridge and return its CommandResult; refusals made here (no
  number, not logged in, nothing ringing, a transfer to an outside number) come back the same way, with a message.
  Dialled numbers get the call prefix unless internal (numbers.dial_string); the number as typed is kept for Redial.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Model, Q
from django.db.models.functions import Right
from django.utils import timezone
from django.utils.translation import gettext as _

from callcenter import numbers, wire
from callcenter.activities.models import Activity, ActivityItem, ActivityType
from callcenter.calls import bulk, commands, live, queries
from callcenter.calls.models import Bridge, Call, CallDirection, CallKind, CallLeg, CallState, ProcessedEvent
from callcenter.campaigns.actions import available_campaigns
from callcenter.campaigns.models import Campaign, CampaignItem
from callcenter.contacts.actions import MatchRules, create_contact, match_caller, put_number_in_slot, sole_callers
from callcenter.contacts.models import Contact
from callcenter.resources.models import CallCenterSettings, Resource

log = logging.getLogger(__name__)


_EARLIEST: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST: Final = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)


def _when(seconds: float) -> dt.datetime:
    """The moment ``seconds`` after 1970 (UTC); never raises: a time no datetime can hold (the endpoint refuses such
    times, wire.time_problem; a replay or a test may not) becomes the nearest one that can."""
    try:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return _LATEST if seconds > 0 else _EARLIEST  # NaN compares false: the earliest


# ---- receiving events from a bridge ------------------------------------------------------------------------------


@dataclass
class Receipt:
    accepted: int = 0
    duplicates: int = 0
    failed: int = 0  # applied with an error, kept in ProcessedEvent for an administrator: acknowledged as accepted
    refused: dict[str, str] = field(default_factory=dict)  # event id -> why it could not even be kept

    def as_wire(self, index: dict[str, int] | None = None) -> wire.BatchReceipt:
        """The receipt for the bridge; ``index`` gives each event id's position in its batch."""
        positions = index or {}
        refused = [
            wire.RefusedEvent(index=positions.get(event_id, -1), event_id=event_id, reason=reason)
            for event_id, reason in self.refused.items()
        ]
        return wire.BatchReceipt(accepted=self.accepted + self.failed, duplicates=self.duplicates, refused=refused)


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
    seen = bulk.present(ProcessedEvent, "event_id", list(unique))
    fresh = [event for event_id, event in unique.items() if event_id not in seen]
    receipt.duplicates += len(seen)
    if not fresh:
        return receipt
    try:
        with _collector_paused(), transaction.atomic():
            batch = _Batch(_Context.load(), bridge, fresh)
            try:
                batch.apply(fresh)
            finally:
                batch.release()
            bulk.insert_values(ProcessedEvent, _PROCESSED_FIELDS, _processed_values(bridge, fresh))
        receipt.accepted += len(fresh)
        return receipt
    except IntegrityError as exc:
        # Another writer took a row of this batch first (two agents answering one ring-group call at once, the same
        # events delivered twice at once): expected, settled row by row below, where a real failure is still logged.
        log.info("batch of %d events met a concurrent writer (%s); applying them one by one", len(fresh),
                 str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
    except Exception:  # noqa: BLE001 - retried event by event below, where a failure is recorded, not lost
        log.warning("batch of %d events failed as a whole; applying them one by one", len(fresh), exc_info=True)
    for event in fresh:
        outcome = receive_event(bridge, event)
        if outcome == "accepted":
            receipt.accepted += 1
        elif outcome == "duplicate":
            receipt.duplicates += 1
        elif outcome == "failed":
            receipt.failed += 1
        else:
            receipt.refused[event.event_id] = outcome.removeprefix("refused: ")
    return receipt


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is applied. A batch makes about 50 rows for every 100 events (legs,
    calls, activities; a leg and its call refer to each other), all alive until the batch ends: the collector would
    walk them again and again (a fifth of the CPU time of a 2,000-event batch) to find nothing to free. The batch
    breaks its own cycles when it ends (_Batch.release), so the collection that follows finds little to do. The
    collector is process-wide: a request in another thread meanwhile frees its garbage by reference counting, as
    always, and its cycles at the next collection."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def receive_event(bridge: Bridge | None, event: wire.Event) -> str:
    """Apply one event in its own transaction: 'accepted', 'duplicate', 'failed' (kept for an administrator) or,
    when even keeping it fails, 'refused: <reason>' (the bridge keeps it as a dead letter). Never raises for an
    event, only when the database itself is unavailable."""
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
    except (ValueError, TypeError, OverflowError) as exc:  # a value this database cannot hold, even as a record
        log.error("event %s could not be kept for an administrator either (%s); refused", event.event_id, exc)
        return f"refused: {error[:300]}; and it could not be kept: {type(exc).__name__}: {str(exc)[:300]}"
    return "failed"


def _event_type(event: wire.Event) -> str:
    return type(event).__struct_config__.tag  # type: ignore[return-value]


_PROCESSED_FIELDS = ("event_id", "bridge_id", "event_type", "occurred_at")


def _processed_values(bridge: Bridge | None, events: Sequence[wire.Event]) -> list[tuple[object, ...]]:
    """What _processed() gives each of ``events``, as values of _PROCESSED_FIELDS."""
    bridge_id = bridge.pk if bridge is not None else None
    return [(event.event_id, bridge_id, _event_type(event), _when(event.occurred_at)) for event in events]


def _processed(bridge: Bridge | None, event: wire.Event) -> ProcessedEvent:
    [values] = _processed_values(bridge, [event])
    return ProcessedEvent(**dict(zip(_PROCESSED_FIELDS, values, strict=True)))


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
    elif isinstance(event, wire.LiveCalls):
        for end in gone_legs(event):
            project(context, _merge_into_leg(end))
    else:
        leg = _merge_into_leg(event)
        if leg is not None:
            project(context, leg)


# ---- merging facts into legs -------------------------------------------------------------------------------------


_CallEvent = wire.CallRinging | wire.CallAnswered | wire.CallTransferred | wire.CallEnded


def _merge_into_leg(event: _CallEvent) -> CallLeg:
    leg, _created = CallLeg.objects.select_for_update().get_or_create(
        pbx_call_id=event.call_id, extension=event.extension
    )
    _merge_event(leg, event)
    leg.save()
    return leg


def _merge_event(leg: CallLeg, event: _CallEvent) -> None:
    """Merge one event's facts into ``leg`` (in memory; the caller saves it)."""
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


def _leg_direction(event: wire.CallRinging) -> str:
    """'in', 'out', 'internal-in' or 'internal-out' (an internal call whose side is unknown counts as inbound)."""
    if event.direction == wire.Direction.INTERNAL:
        return f"internal-{event.internal_direction or 'in'}"
    return str(event.direction)


# ---- projecting a leg onto the Call row --------------------------------------------------------------------------


def project(context: _Context, leg: CallLeg, store: _Store | None = None) -> Call | None:
    """Create or update the Call row that ``leg`` stands for, by the rules at the top of this module. ``store`` does
    the reads and writes: at once (the default) or gathered for a whole batch."""
    store = store or _RowByRow()
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
            # No row yet: the ringing agent's pop comes from the leg, and goes once the leg is answered or ends.
            _push_leg(context, leg, store, ringing=leg.answered_at is None and leg.ended_at is None)
            if leg.answered_at is None:
                return None
            call = _create_call(context, leg, store, answer_group=leg.pbx_call_id)
            if call is None:
                return None  # another agent answered first
        else:
            call = _create_call(context, leg, store, answer_group=None)
            if call is None:
                return None
        new = True
    else:
        new = False
    _update_call_from_leg(call, leg, inbound=inbound, internal=internal)
    store.save_call(call)
    store.changed(call, new=new)
    return call


def _push_leg(context: _Context, leg: CallLeg, store: _Store, *, ringing: bool) -> None:
    """``leg.ringing`` (what the pop shows) or ``leg.ended`` for the resource owning the leg's extension, if any."""
    resource = store.resource(leg.extension)
    if resource is None:
        return
    if not ringing:
        store.leg_changed(live.leg_message(False, pbx_call_id=leg.pbx_call_id, extension=leg.extension,
                                           resource_id=resource.pk))
        return
    contact = store.contact(context, leg.remote_number, dialled=False, internal=leg.direction.startswith("internal"))
    store.leg_changed(live.leg_message(
        True, pbx_call_id=leg.pbx_call_id, extension=leg.extension, resource_id=resource.pk,
        number=numbers.display(leg.remote_number, context.settings.phone_region),
        contact=contact.display_name if contact is not None else "", caller_name=leg.remote_name,
    ))


def _create_call(context: _Context, leg: CallLeg, store: _Store, *, answer_group: str | None) -> Call | None:
    assert leg.rang_at is not None, "project() creates rows only for legs that rang"
    resource = store.resource(leg.extension)
    if resource is None:
        log.warning(
            "call %s on extension %s, which belongs to no resource: stored without resource for administrators",
            leg.pbx_call_id,
            leg.extension,
        )
    internal = leg.direction.startswith("internal")
    inbound = leg.direction in ("in", "internal-in")
    contact = store.contact(context, leg.remote_number, dialled=not inbound, internal=internal)
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
    if not store.add_call(call):
        log.info("call %s: %s answered too, but another agent was first", leg.pbx_call_id, leg.extension)
        return None
    leg.call = call
    store.linked(leg)
    activity_type = context.settings.incoming_activity_type if inbound else context.settings.outgoing_activity_type
    if activity_type is not None and not internal:
        store.add_activity(call, activity_type, context.settings)
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
    activity = _call_activity(call, activity_type, created_by=created_by)
    try:
        with transaction.atomic():
            activity.save()
    except IntegrityError:
        return None
    if call.campaign is not None and _gets_campaign_items(settings, call, activity_type):
        ActivityItem.objects.bulk_create(_campaign_items(activity, list(call.campaign.items.all())))
    return activity


def _call_activity(call: Call, activity_type: ActivityType, *, created_by: User | None = None) -> Activity:
    """The (unsaved) activity of ``call``; its subject names the call's type as it is now."""
    contact_name = call.contact.display_name if call.contact else (call.caller_name or call.number)
    return Activity(
        activity_type=activity_type,
        subject=f"{call.kind_label()} {contact_name}".strip()[:200],
        starts_at=call.started_at,
        contact=call.contact,
        resource=call.resource,
        call=call,
        campaign=call.campaign,
        created_by=created_by,
    )


def _gets_campaign_items(settings: CallCenterSettings, call: Call, activity_type: ActivityType) -> bool:
    return bool(
        settings.insert_campaign_items
        and settings.campaign_type_id
        and call.campaign is not None
        and activity_type.is_sale_opportunity
    )


def _campaign_items(activity: Activity, items: Sequence[CampaignItem]) -> list[ActivityItem]:
    return [
        ActivityItem(
            activity=activity,
            description=item.description,
            quantity=item.quantity,
            unit_price=item.unit_price,
            campaign_item=item,
            position=item.position,
        )
        for item in items
    ]


# ---- where the rules read and write: row by row, or gathered for a batch ---------------------------------------


class _Store(Protocol):
    def resource(self, extension: str) -> Resource | None: ...
    def contact(self, context: _Context, number: str, *, dialled: bool, internal: bool) -> Contact | None: ...
    def add_call(self, call: Call) -> bool: ...  # False: another agent of the answer group was first
    def linked(self, leg: CallLeg) -> None: ...  # leg.call was just set
    def add_activity(self, call: Call, activity_type: ActivityType, settings: CallCenterSettings) -> None: ...
    def save_call(self, call: Call) -> None: ...
    def changed(self, call: Call, *, new: bool) -> None: ...
    def leg_changed(self, message: dict[str, Any]) -> None: ...  # a leg.ringing / leg.ended push


class _RowByRow:
    """Every read and write at once: one event on its own (receive_event)."""

    def resource(self, extension: str) -> Resource | None:
        return Resource.objects.filter(extension=extension).first()

    def contact(self, context: _Context, number: str, *, dialled: bool, internal: bool) -> Contact | None:
        return _matching_contact(context, number, dialled=dialled, internal=internal)

    def add_call(self, call: Call) -> bool:
        try:
            with transaction.atomic():
                call.save()
        except IntegrityError:
            if call.answer_group is not None and Call.objects.filter(answer_group=call.answer_group).exists():
                return False
            raise
        return True

    def linked(self, leg: CallLeg) -> None:
        leg.save(update_fields=["call", "updated_at"])

    def add_activity(self, call: Call, activity_type: ActivityType, settings: CallCenterSettings) -> None:
        create_call_activity(call, activity_type, settings=settings)

    def save_call(self, call: Call) -> None:
        call.save()

    def changed(self, call: Call, *, new: bool) -> None:
        live.call_changed(call, new=new)

    def leg_changed(self, message: dict[str, Any]) -> None:
        live.leg_changed(message)


def _chunks(items: Sequence[str], size: int = 500) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _Batch:
    """A batch's events, applied by the same rules as one at a time (project() and _merge_event() are shared), but
    each leg, call, resource and caller match is read once and the rows are written together: new rows inserted in
    bulk, changed rows updated in bulk. The writes happen before each agent or link event and at the end, so every
    push is registered in the order the one-at-a-time path registers it. Anything unexpected (a concurrent writer
    taking a leg or an answer group first, a broken rule) raises, the batch's transaction rolls back and
    receive_events() applies the events one at a time, where such cases are settled row by row."""

    def __init__(self, context: _Context, bridge: Bridge | None, events: Sequence[wire.Event]) -> None:
        self.context = context
        self.bridge = bridge
        self._made: list[Model] = []  # every call and activity the batch made or read, for release()
        call_ids = sorted({event.call_id for event in events if isinstance(event, wire.CALL_EVENTS)})
        self.legs: dict[tuple[str, str], CallLeg] = {}
        for leg in bulk.rows_in(CallLeg, "pbx_call_id", call_ids, related="call", lock=True):
            self.legs[(leg.pbx_call_id, leg.extension)] = leg
        # Each row as last read or written, so an update writes only the fields that changed since.
        self._stored: dict[int, tuple[Model, tuple[object, ...]]] = {}
        for leg in self.legs.values():
            self._remember(leg)
            if leg.call is not None:
                self._remember(leg.call)
                self._made.append(leg.call)
        self.taken_answer_groups: set[str] = set()
        if context.settings.create_call_when_answered:
            for chunk in _chunks(call_ids):
                self.taken_answer_groups.update(
                    group for group in Call.objects.filter(answer_group__in=chunk).values_list("answer_group",
                                                                                              flat=True)
                    if group is not None
                )
        self._resources: dict[str, Resource | None] = {}
        # The caller matches the batch will need, in two queries: every outside number that rings in it, and those
        # of legs still waiting for their row (create when answered).
        wanted = [(event.remote_number, event.direction != wire.Direction.INBOUND) for event in events
                  if isinstance(event, wire.CallRinging) and event.direction != wire.Direction.INTERNAL]
        wanted += [(leg.remote_number, leg.direction == "out") for leg in self.legs.values()
                   if leg.call_id is None and leg.direction in ("in", "out")]
        self._callers = sole_callers([(number, dialled) for number, dialled in wanted if number],
                                     rules=context.rules)
        self._contacts: dict[tuple[str, bool, bool], Contact | None] = {}
        self._campaign_items: dict[int, list[CampaignItem]] = {}
        self._legs_to_save: dict[int, CallLeg] = {}
        self._calls_to_save: dict[int, Call] = {}
        self._activities: list[tuple[Activity, bool]] = []
        self._pushes: list[tuple[Call, bool] | dict[str, Any]] = []

    def apply(self, events: Sequence[wire.Event]) -> None:
        for event in events:
            if isinstance(event, wire.AgentState):
                self.write()
                _apply_agent_state(event)
            elif isinstance(event, wire.LinkState):
                self.write()
                _apply_link_state(self.bridge, event)
            elif isinstance(event, wire.LiveCalls):
                self.write()  # the open legs are read from the database: everything before this event is in it
                for end in gone_legs(event):
                    self._call_event(end)
            else:
                self._call_event(event)
        self.write()

    def _call_event(self, event: _CallEvent) -> None:
        key = (event.call_id, event.extension)
        leg = self.legs.get(key)
        if leg is None and isinstance(event, wire.CallEnded) and event.reconciled:
            # A leg closed by a LiveCalls event may belong to no call of this batch: read it now.
            leg = (CallLeg.objects.select_for_update(of=("self",)).select_related("call")
                   .filter(pbx_call_id=event.call_id, extension=event.extension).first())
            if leg is not None:
                self.legs[key] = leg
                self._remember(leg)
                if leg.call is not None:
                    self._remember(leg.call)
                    self._made.append(leg.call)
        if leg is None:
            leg = CallLeg(pbx_call_id=event.call_id, extension=event.extension)
            self.legs[key] = leg
        _merge_event(leg, event)
        self._legs_to_save[id(leg)] = leg
        project(self.context, leg, self)

    # _Store
    def resource(self, extension: str) -> Resource | None:
        if extension not in self._resources:
            self._resources[extension] = Resource.objects.filter(extension=extension).first()
        return self._resources[extension]

    def contact(self, context: _Context, number: str, *, dialled: bool, internal: bool) -> Contact | None:
        if not internal and (number, dialled) in self._callers:
            return self._callers[(number, dialled)]
        key = (number, dialled, internal)
        if key not in self._contacts:
            self._contacts[key] = _matching_contact(context, number, dialled=dialled, internal=internal)
        return self._contacts[key]

    def add_call(self, call: Call) -> bool:
        if call.answer_group is not None:
            if call.answer_group in self.taken_answer_groups:
                return False
            self.taken_answer_groups.add(call.answer_group)
        self._calls_to_save[id(call)] = call
        self._made.append(call)
        return True

    def linked(self, leg: CallLeg) -> None:
        self._legs_to_save[id(leg)] = leg

    def add_activity(self, call: Call, activity_type: ActivityType, settings: CallCenterSettings) -> None:
        activity = _call_activity(call, activity_type)
        self._activities.append((activity, _gets_campaign_items(settings, call, activity_type)))
        self._made.append(activity)

    def save_call(self, call: Call) -> None:
        self._calls_to_save[id(call)] = call

    def changed(self, call: Call, *, new: bool) -> None:
        self._pushes.append((call, new))

    def leg_changed(self, message: dict[str, Any]) -> None:
        self._pushes.append(message)

    def release(self) -> None:
        """Forget the related rows each row of the batch keeps (a leg its call and the call its leg, a call its
        activity), so the rows are freed by reference counting when the batch ends instead of waiting for a full
        garbage collection."""
        for row in [*self.legs.values(), *self._made]:
            row._state.fields_cache.clear()
        self._made.clear()
        self._stored.clear()

    # writing
    def write(self) -> None:
        calls = list(self._calls_to_save.values())
        saved_calls = [call for call in calls if call.pk is not None]
        new_calls = bulk.insert_returning_ids(Call, [call for call in calls if call.pk is None])
        self._update(Call, saved_calls)
        legs = list(self._legs_to_save.values())
        for leg in legs:
            call = leg.call
            if leg.call_id is None and call is not None:
                # A call inserted just above: assigning the row takes its new id and keeps it cached (setting
                # call_id would drop the cache, and the next event of the call would read the row again).
                leg.call = call
        saved_legs = [leg for leg in legs if leg.pk is not None]
        new_legs = bulk.insert_returning_ids(CallLeg, [leg for leg in legs if leg.pk is None])
        self._update(CallLeg, saved_legs)
        for row in [*new_calls, *new_legs]:
            self._remember(row)
        bulk.insert_returning_ids(Activity, [activity for activity, _items in self._activities])
        items: list[ActivityItem] = []
        for activity, with_items in self._activities:
            if with_items and activity.campaign is not None:
                items += _campaign_items(activity, self._items_of(activity.campaign))
        ActivityItem.objects.bulk_create(items)
        live.calls_changed(self._pushes)
        self._calls_to_save.clear()
        self._legs_to_save.clear()
        self._activities.clear()
        self._pushes.clear()

    def _remember(self, row: Model) -> None:
        self._stored[id(row)] = (row, bulk.values(row))

    def _update(self, model: type[_Row], rows: Sequence[_Row]) -> None:
        """Save ``rows``: the fields that changed since they were read or written, and updated_at (as save() sets
        it), one statement run per set of changed fields."""
        by_fields: dict[tuple[str, ...], list[_Row]] = {}
        names = bulk.attnames(model)
        for row in rows:
            stored = self._stored.get(id(row))
            now = bulk.values(row)
            if stored is None:
                changed = tuple(name for name in names if name != "id")
            else:
                changed = tuple(name for name, value, before in zip(names, now, stored[1], strict=True)
                                if value != before and name != "id")
            if "updated_at" not in changed:
                changed += ("updated_at",)
            by_fields.setdefault(changed, []).append(row)
        for fields, group in by_fields.items():
            bulk.update_rows(model, group, fields)
        for row in rows:
            self._remember(row)

    def _items_of(self, campaign: Campaign) -> list[CampaignItem]:
        if campaign.pk not in self._campaign_items:
            self._campaign_items[campaign.pk] = list(campaign.items.all())
        return self._campaign_items[campaign.pk]


_Row = TypeVar("_Row", Call, CallLeg)


# ---- agent and bridge state --------------------------------------------------------------------------------------


GONE_CAUSE_TEXT: Final = "ended while the bridge was not following the PBX"


def gone_legs(event: wire.LiveCalls) -> list[wire.CallEnded]:
    """The ends of the legs a bridge's ``LiveCalls`` says are over: every leg still open in the CRM, of the
    extensions it covers, that began before the list was taken and is not in it. Each ends at ``gone_at`` (never
    before its own ringing or answer), as reconciled: the PBX ended it while the bridge could not see it."""
    live = {(leg.call_id, leg.extension) for leg in event.legs}
    taken = _when(event.occurred_at)
    open_legs = CallLeg.objects.filter(Q(rang_at__isnull=True) | Q(rang_at__lte=taken), ended_at__isnull=True)
    if event.extensions:
        open_legs = open_legs.filter(extension__in=list(event.extensions))
    ends = []
    for call_id, extension, leg_id, rang_at, answered_at in open_legs.values_list(
        "pbx_call_id", "extension", "pbx_leg_id", "rang_at", "answered_at"
    ).order_by("pk"):
        if (call_id, extension) in live:
            continue
        known = [moment.timestamp() for moment in (rang_at, answered_at) if moment is not None]
        ends.append(wire.CallEnded(
            event_id=f"{event.event_id}:{call_id}:{extension}",
            occurred_at=max([event.gone_at, *known]),
            call_id=call_id,
            extension=extension,
            leg_id=leg_id,
            cause_text=GONE_CAUSE_TEXT,
            reconciled=True,
        ))
    if ends:
        log.info("the bridge's PBX no longer has %d open leg(s); closing them as of %s", len(ends),
                 _when(event.gone_at).isoformat())
    return ends



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
    # S-4.5 and S-3.1: a disagreement of addresses/ports or of the phone system goes to the CRM's error log, once
    # per change (the log line too), and shows on the settings page and the screen.
    commands.record_link_problems(bridge)
    live.bridge_changed(bridge, extensions=event.extensions)


# ---- the Call Center screen: what users do (S-4) ---------------------------------------------------------------


class Refused(Exception):
    """A user action that cannot be done as asked; ``message`` (translated) says why and what to do instead."""

    def __init__(self, message: str, *, error_id: str = "refused") -> None:
        super().__init__(message)
        self.message = message
        self.error_id = error_id


@transaction.atomic
def set_working_campaign(resource: Resource, campaign: Campaign | None, *, today: dt.date | None = None) -> Resource:
    """S-4.2: the resource's working campaign (None: none). Refused unless it is of the call-center campaign type
    and available today."""
    if campaign is not None:
        settings = CallCenterSettings.load()
        if settings.campaign_type_id is None:
            raise Refused(_("No call-center campaign type is set (CRM settings → Call center), so there is no "
                            "campaign to choose."), error_id="no_campaign_type")
        if campaign.campaign_type_id != settings.campaign_type_id:
            raise Refused(_("“%(campaign)s” is not a campaign of the call-center type; choose one from the list.")
                          % {"campaign": campaign.name}, error_id="wrong_campaign_type")
        if not campaign.is_available(today or timezone.localdate()):
            raise Refused(_("“%(campaign)s” is not available today (inactive or outside its dates); choose "
                            "another campaign.") % {"campaign": campaign.name}, error_id="campaign_unavailable")
    Resource.objects.filter(pk=resource.pk).update(working_campaign=campaign)
    resource.working_campaign = campaign
    log.info("working campaign of %s: %s", resource, campaign or "none")
    return resource


@transaction.atomic
def fill_in_working_campaign(resource: Resource, *, today: dt.date | None = None) -> Campaign | None:
    """S-4.2: the resource's working campaign if it is still usable; else, when exactly one campaign of the type is
    available today, that one, stored for the resource. None: the agent has to choose."""
    settings = CallCenterSettings.load()
    if settings.campaign_type_id is None:
        return None
    today = today or timezone.localdate()
    current = resource.working_campaign
    if current is not None and current.campaign_type_id == settings.campaign_type_id and current.is_available(today):
        return current
    assert settings.campaign_type is not None
    candidates = list(available_campaigns(settings.campaign_type, today)[:2])
    if len(candidates) != 1:
        return None
    only = candidates[0]
    # Conditional: if the agent chose meanwhile (another tab), their choice stays.
    if Resource.objects.filter(pk=resource.pk, working_campaign=current).update(working_campaign=only) == 1:
        resource.working_campaign = only
        return only
    resource.refresh_from_db(fields=["working_campaign"])
    return resource.working_campaign


def _lock_contact(contact: Contact) -> Contact:
    locked = Contact.objects.select_for_update().filter(pk=contact.pk).first()
    if locked is None:
        raise Refused(_("That contact no longer exists (it was deleted meanwhile); search again."),
                      error_id="no_such_contact")
    return locked


def _gone() -> Refused:
    return Refused(_("This call no longer exists (it was cleared); refresh the list."), error_id="no_such_call")


@transaction.atomic
def set_call_contact(call: Call, contact: Contact) -> Call:
    """S-4.8 Update: ``contact`` becomes the call's contact, and its activity's when that has none. No number is
    stored in the contact."""
    contact = _lock_contact(contact)
    locked = Call.objects.select_for_update().filter(pk=call.pk).first()
    if locked is None:
        raise _gone()
    locked.contact = contact
    locked.save(update_fields=["contact", "updated_at"])
    Activity.objects.filter(call=locked, contact__isnull=True).update(contact=contact)
    live.call_changed(locked, new=False)
    return locked


@dataclass(frozen=True)
class Linked:
    call: Call
    contact: Contact
    slot: int | None  # the phone slot the number went into; None when it was there already or not stored


def number_to_store(call: Call, settings: CallCenterSettings | None = None) -> str:
    """The call's number as a contact keeps it: as received for an inbound call; a dialled number without the
    call prefix (S-3.8). '' for a call without digits (an anonymous caller)."""
    if not numbers.digits_only(call.number):
        return ""
    if call.direction == CallDirection.INBOUND:
        return call.number.strip()
    settings = settings or CallCenterSettings.load()
    return numbers.strip_prefix(call.number, settings.call_prefix, settings.internal_digits)


@transaction.atomic
def link_call_to_contact(call: Call, contact: Contact, *, replace_slot: int | None = None,
                         store_number: bool = True) -> Linked:
    """S-4.17: link a call that has no contact to ``contact`` and save the call's number in one of its phone slots
    (unless already there). Raises AllSlotsFull (nothing changed) when all slots are full and no ``replace_slot`` was
    named; with ``store_number=False`` the call is linked and no number stored. Refused when the call got a contact
    meanwhile (two agents linking at once: the first wins), or is gone."""
    contact = _lock_contact(contact)
    claimed = Call.objects.filter(pk=call.pk, contact__isnull=True).update(contact=contact, updated_at=timezone.now())
    if claimed != 1:
        current = Call.objects.select_related("contact").filter(pk=call.pk).first()
        if current is None:
            raise _gone()
        assert current.contact is not None
        raise Refused(_("This call is already linked to %(contact)s.") % {"contact": current.contact.display_name},
                      error_id="already_linked")
    linked = Call.objects.get(pk=call.pk)
    slot = None
    number = number_to_store(linked)
    if store_number and number:
        slot = put_number_in_slot(contact, number, replace_slot=replace_slot)  # AllSlotsFull rolls all of this back
    Activity.objects.filter(call=linked, contact__isnull=True).update(contact=contact)
    live.call_changed(linked, new=False)
    log.info("call %s linked to contact %s (number %s)", linked.pk, contact.pk,
             f"in slot {slot}" if slot else "not stored")
    return Linked(call=linked, contact=contact, slot=slot)


@transaction.atomic
def link_call_to_new_contact(call: Call, *, first_name: str = "", last_name: str = "", company: str = "",
                             email: str = "") -> Linked:
    """S-4.17 with a new contact: created with the call's number in its first slot, in one transaction with the link
    (if the call got a contact meanwhile, no contact is created)."""
    contact = create_contact(first_name=first_name, last_name=last_name, company=company, email=email)
    return link_call_to_contact(call, contact)


@transaction.atomic
def create_activity_for_call(call: Call, activity_type: ActivityType, *, user: User | None = None) -> Activity:
    """S-4.18: the call's activity of ``activity_type``, with the call's campaign, or the working campaign of the
    call's resource when the call has none (S-4.2). Refused when the call has one already."""
    if not activity_type.active:
        raise Refused(_("The activity type “%(type)s” is not active; choose another.") % {"type": activity_type.name},
                      error_id="inactive_type")
    locked = Call.objects.select_for_update().filter(pk=call.pk).first()
    if locked is None:
        raise _gone()
    if Activity.objects.filter(call=locked).exists():
        raise Refused(_("This call has an activity already."), error_id="has_activity")
    settings = CallCenterSettings.load()
    if locked.campaign_id is None and locked.resource is not None and settings.campaign_type_id:
        campaign = _working_campaign(locked.resource, settings)
        if campaign is not None:
            locked.campaign = campaign
            locked.save(update_fields=["campaign", "updated_at"])
    activity = create_call_activity(locked, activity_type, settings=settings, created_by=user)
    if activity is None:
        raise Refused(_("This call has an activity already."), error_id="has_activity")
    live.call_changed(locked, new=False)
    return activity


@dataclass(frozen=True)
class Cleared:
    cleared: int
    in_progress: int  # asked for but not cleared: still ringing or up


CLEAR_CHUNK = 500


def clear_calls(user: Any, call_ids: Sequence[int]) -> Cleared:
    """S-4.15 Clear selected: the calls among ``call_ids`` that ``user`` sees (an administrator: anyone's)."""
    return _clear(queries.visible_calls(user).filter(pk__in=list(call_ids)[:10_000]))


def clear_all(resource: Resource | None) -> Cleared:
    """S-4.16 Clear all: every call recorded for ``resource`` itself, whatever the filters (an administrator too
    clears only its own calls this way)."""
    if resource is None:
        return Cleared(0, 0)
    return _clear(Call.objects.filter(resource=resource))


def _clear(calls: Any) -> Cleared:
    """Remove ended calls among ``calls``; keep activities (their call link empties) and contacts; mark each call's
    leg cleared so its events, replayed, make no row again. Locks legs before calls, as the event rules do."""
    ids = list(calls.order_by().values_list("pk", flat=True))
    cleared = in_progress = 0
    for start in range(0, len(ids), CLEAR_CHUNK):
        chunk = ids[start:start + CLEAR_CHUNK]
        with transaction.atomic():
            list(CallLeg.objects.select_for_update().filter(call_id__in=chunk).values_list("pk", flat=True))
            rows = list(Call.objects.select_for_update().filter(pk__in=chunk)
                        .values_list("pk", "state", "resource_id", "pbx_call_id", "extension"))
            ended = [row for row in rows if row[1] == CallState.ENDED]
            in_progress += len(rows) - len(ended)
            ended_ids = [row[0] for row in ended]
            with_leg = set(CallLeg.objects.filter(call_id__in=ended_ids).values_list("call_id", flat=True))
            CallLeg.objects.filter(call_id__in=ended_ids).update(cleared=True)
            for pk, _state, _resource_id, pbx_call_id, extension in ended:
                if pk not in with_leg:  # a row without its leg: remember the call's identity all the same
                    CallLeg.objects.update_or_create(pbx_call_id=pbx_call_id, extension=extension,
                                                     defaults={"cleared": True})
            Call.objects.filter(pk__in=ended_ids).delete()
            live.calls_cleared((pk, resource_id) for pk, _state, resource_id, _id, _ext in ended)
            cleared += len(ended)
    if cleared:
        log.info("%d calls cleared (%d in progress left alone)", cleared, in_progress)
    return Cleared(cleared, in_progress)


# ---- call control: commands to the resource's bridge (S-4.6, S-4.9-4.13) ----------------------------------------


# What a person may type as a number to dial: digits, the keypad's * and #, a leading +, and spaces, dots, dashes,
# slashes and parentheses as formatting. Anything else is refused rather than reduced to its digits.
_DIALLABLE = re.compile(r"\+?[0-9*#][0-9*#\s().\-/]*", re.ASCII)


def _diallable(number: str) -> bool:
    return len(number) <= numbers.MAX_RAW_LENGTH and _DIALLABLE.fullmatch(number) is not None


def _not_a_number(number: str) -> wire.CommandResult:
    return _refused("invalid_number", _("“%(number)s” is not a phone number; type digits, such as 2101234567.")
                    % {"number": number[:40]})


def _refused(error_id: str, message: str) -> wire.CommandResult:
    return wire.CommandResult(command_id="", ok=False, error_id=error_id, message=message)


def _no_extension(resource: Resource) -> wire.CommandResult | None:
    if not resource.extension:
        return _refused("no_extension", _("This resource has no extension; ask an administrator to set one."))
    return None


def dial(resource: Resource, number: str) -> wire.CommandResult:
    """S-4.10 Call: dial ``number`` from the resource's extension, with the call prefix unless it is internal."""
    number = (number or "").strip()
    if not number:
        return _refused("no_number", _("Type a number to call."))
    if (refused := _no_extension(resource)) is not None:
        return refused
    if not _diallable(number):
        return _not_a_number(number)
    settings = CallCenterSettings.load()
    if "*" in number or "#" in number:
        target = "".join(ch for ch in number if ch.isdigit() or ch in "*#")  # a feature code: dialled as typed
    else:
        try:
            target = numbers.dial_string(number, prefix=settings.call_prefix,
                                         internal_digits=settings.internal_digits)
        except ValueError:
            return _not_a_number(number)
    if len(target) > numbers.MAX_RAW_LENGTH:
        return _refused("invalid_number", _("A phone number has at most %(max)d digits.")
                        % {"max": numbers.MAX_RAW_LENGTH})
    status = commands.link_status(resource)
    if not status.logged_in:
        return _refused("not_logged_in", _("Not logged in: %(reason)s") % {"reason": status.reason})
    with transaction.atomic():
        Resource.objects.filter(pk=resource.pk).update(last_dialled=number[: numbers.MAX_RAW_LENGTH])
    resource.last_dialled = number[: numbers.MAX_RAW_LENGTH]
    log.info("%s dials %s", resource, target)
    return commands.send_command(
        resource, wire.Dial(command_id=commands.new_command_id(), extension=str(resource.extension), number=target)
    )


def redial(resource: Resource, call: Call | None = None) -> wire.CommandResult:
    """S-4.10 Redial: the selected call's number again, or else the last number dialled."""
    number = call.number if call is not None and call.number else resource.last_dialled
    if not number:
        return _refused("no_number", _("There is no number to redial yet: select a call or dial a number."))
    return dial(resource, number)


def _own_leg(resource: Resource, call: Call | None) -> CallLeg | None:
    if call is None or call.resource_id != resource.pk:
        return None
    return CallLeg.objects.filter(call=call, ended_at__isnull=True).first()


def answer(resource: Resource, call: Call | None = None) -> wire.CommandResult:
    """S-4.11: answer the ringing call (the selected one if it is this resource's and rings)."""
    if (refused := _no_extension(resource)) is not None:
        return refused
    leg = _own_leg(resource, call)
    if leg is None or leg.answered_at is not None:
        leg = queries.phone_state(resource).ringing
    if leg is None:
        return _refused("no_ringing_call", _("No call is ringing."))
    return commands.send_command(resource, wire.Answer(command_id=commands.new_command_id(),
                                                       extension=str(resource.extension), call_id=leg.pbx_call_id))


def hangup(resource: Resource, call: Call | None = None) -> wire.CommandResult:
    """S-4.12 End call: hang up the current call (the selected one if it is this resource's and in progress)."""
    if (refused := _no_extension(resource)) is not None:
        return refused
    leg = _own_leg(resource, call) or queries.phone_state(resource).current
    if leg is None:
        return _refused("no_current_call", _("There is no call in progress."))
    return commands.send_command(resource, wire.Hangup(command_id=commands.new_command_id(),
                                                       extension=str(resource.extension), call_id=leg.pbx_call_id))


def transfer(resource: Resource, target: str, call: Call | None = None) -> wire.CommandResult:
    """S-4.13: blind-transfer the current call to ``target``, an internal number only."""
    if (refused := _no_extension(resource)) is not None:
        return refused
    target = (target or "").strip()
    settings = CallCenterSettings.load()
    if not target:
        return _refused("no_number", _("Type the internal number to transfer to in Number."))
    if not _diallable(target) or not numbers.is_internal(target, settings.internal_digits):
        return _refused("not_internal", _("A call is transferred to an internal number of %(digits)d digits only; "
                                          "“%(number)s” is not one.")
                        % {"digits": settings.internal_digits, "number": target[:40]})
    leg = _own_leg(resource, call)
    if leg is None or leg.answered_at is None:
        leg = queries.phone_state(resource).current
    if leg is None or leg.answered_at is None:
        return _refused("no_current_call", _("There is no answered call to transfer."))
    return commands.send_command(resource, wire.Transfer(
        command_id=commands.new_command_id(), extension=str(resource.extension),
        target=numbers.digits_only(target), call_id=leg.pbx_call_id,
    ))


def set_busy(resource: Resource, busy: bool) -> wire.CommandResult:
    """S-4.6: declare the agent busy (or available) on the PBX; the screen shows what the PBX then reports."""
    if (refused := _no_extension(resource)) is not None:
        return refused
    return commands.send_command(resource, wire.SetBusy(command_id=commands.new_command_id(),
                                                        extension=str(resource.extension), busy=busy))
