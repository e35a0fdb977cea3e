"""receive_events' batch path (calls.actions._Batch: legs, calls and matches read once, rows written in bulk, pushes
as one commit hook) gives exactly what applying the same batches event by event in one transaction gives (the path
it replaced, still there for one event at a time): the same rows, the same receipts, the same pushes in the same
order to the same groups. Checked on realistic and shuffled traffic, with duplicates, transfers, internal calls,
unknown extensions, agent and link states in the middle, and under each setting that changes the rules.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from callcenter import wire
from callcenter.activities.models import Activity, ActivityItem, ActivityKind, ActivityType
from callcenter.bridge import synthetic
from callcenter.calls import actions, live
from callcenter.calls.actions import receive_events
from callcenter.calls.models import Bridge, Call, CallLeg, ProcessedEvent
from callcenter.campaigns.models import Campaign, CampaignItem, CampaignType
from callcenter.contacts.actions import create_contact
from callcenter.resources.models import CallCenterSettings, PhoneSystem, Resource

from .conftest import T0, Events

pytestmark = pytest.mark.django_db(transaction=True)


class _OneByOne:
    """The batch path as it was: every event through the row-by-row rules, in the batch's one transaction."""

    def __init__(self, context: Any, bridge: Bridge | None, events: Any) -> None:
        self.context, self.bridge = context, bridge

    def apply(self, events: Any) -> None:
        for event in events:
            actions._apply(self.context, self.bridge, event)

    def release(self) -> None:
        """Nothing to let go: each row was saved and dropped as its event was applied."""


class _Pushes:
    """A channel layer that records what is sent, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.raw_count = 0  # before _once_per_call()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))


def _call_key(call_id: int | None) -> tuple[str, str] | None:
    if call_id is None:
        return None
    call = Call.objects.filter(pk=call_id).first()
    return None if call is None else (call.pbx_call_id, call.extension)


def _row(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields
            if field.attname not in ("id", "created_at", "updated_at", "received_at", *skip)}


def _snapshot(pushes: _Pushes) -> dict[str, Any]:
    calls = sorted(
        ({**_row(call), "activity": _activity_of(call)} for call in Call.objects.all()),
        key=lambda row: (row["pbx_call_id"], row["extension"]),
    )
    legs = sorted(({**_row(leg, ("call_id",)), "call": _call_key(leg.call_id)} for leg in CallLeg.objects.all()),
                  key=lambda row: (row["pbx_call_id"], row["extension"]))
    processed = sorted((event.event_id, event.event_type, event.failed, event.error, event.occurred_at,
                        event.bridge_id, str(event.payload))
                       for event in ProcessedEvent.objects.all())
    resources = sorted((r.extension, r.pbx_busy, r.pbx_logged_in, r.pbx_state_at) for r in Resource.objects.all())
    bridges = [_row(bridge, ("secret",)) for bridge in Bridge.objects.order_by("bridge_id")]
    sent = []
    for group, message in pushes.sent:
        message = {key: value for key, value in message.items() if key != "push_id"}
        if message.get("type") == "call.changed":
            message["call_id"] = _call_key(message["call_id"])
            message["activity_id"] = message.get("activity_id") is not None
        group = group if not group.startswith("resource-") else Resource.objects.get(
            pk=int(group.split("-")[1])).extension
        sent.append((group, message))
    return {"calls": calls, "legs": legs, "processed": processed, "resources": resources, "bridges": bridges,
            "pushes": sent, "raw_pushes": pushes.raw_count}


def _activity_of(call: Call) -> Any:
    activity = Activity.objects.filter(call=call).first()
    if activity is None:
        return None
    items = [(item.description, item.quantity, item.unit_price, item.campaign_item_id, item.position)
             for item in ActivityItem.objects.filter(activity=activity).order_by("position", "id")]
    return {**_row(activity, ("call_id",)), "items": items}


def _forget_everything(resources: list[Resource], bridges: list[Bridge]) -> None:
    """Back to the state before the first run (the rows as they were, no calls)."""
    ActivityItem.objects.all().delete()
    Activity.objects.all().delete()
    CallLeg.objects.all().delete()
    Call.objects.all().delete()
    ProcessedEvent.objects.all().delete()
    for row in [*resources, *bridges]:
        row.save()


def _no_fallback(bridge: Bridge | None, event: wire.Event) -> str:
    raise AssertionError(f"the batch failed as a whole and fell back to one event at a time (at {event.event_id})")


def _run(batches: list[list[wire.Event]], bridge: Bridge, monkeypatch: pytest.MonkeyPatch,
         path: type | None) -> tuple[list[tuple[int, int, int]], dict[str, Any]]:
    pushes = _Pushes()
    with monkeypatch.context() as patch:
        patch.setattr(live, "get_channel_layer", lambda: pushes)
        if path is not None:
            patch.setattr(actions, "_Batch", path)
        else:
            # The batch path itself, not its fallback (one event at a time, which would give the same result).
            patch.setattr(actions, "receive_event", _no_fallback)
        receipts = []
        for batch in batches:
            before = len(pushes.sent)
            receipt = receive_events(bridge, batch)
            receipts.append((receipt.accepted, receipt.duplicates, receipt.failed))
            pushes.raw_count += len(pushes.sent) - before
            pushes.sent[before:] = _once_per_call(pushes.sent[before:])
    return receipts, _snapshot(pushes)


def _once_per_call(sent: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """One commit's pushes with each call's call.changed messages folded into the first, marked new if any was,
    between two agent or bridge messages (the batch path sends each call once per such stretch, live.calls_changed;
    the one-by-one path once per event). The dropped ones are checked to repeat the kept one, as they must: all are
    read from the same committed row."""
    kept: list[tuple[str, dict[str, Any]]] = []
    first: dict[tuple[str, int], int] = {}
    for group, message in sent:
        if message.get("type") != "call.changed":
            if not message.get("type", "").startswith("leg."):
                first.clear()
            kept.append((group, message))
            continue
        key = (group, message["call_id"])
        if key not in first:
            first[key] = len(kept)
            kept.append((group, message))
            continue
        earlier = kept[first[key]][1]
        ignored = ("push_id", "new")
        assert {k: v for k, v in message.items() if k not in ignored} == \
            {k: v for k, v in earlier.items() if k not in ignored}, (earlier, message)
        kept[first[key]] = (group, {**earlier, "new": earlier["new"] or message["new"]})
    return kept


def _assert_same(batches: list[list[wire.Event]], bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    assert not transaction.get_connection().in_atomic_block  # real commits: the pushes leave as in production
    resources, bridges = list(Resource.objects.all()), list(Bridge.objects.all())
    expected = _run(batches, bridge, monkeypatch, _OneByOne)
    _forget_everything(resources, bridges)
    got = _run(batches, bridge, monkeypatch, None)
    assert got[0] == expected[0]
    for part in expected[1]:
        if part != "raw_pushes":
            assert got[1][part] == expected[1][part], part
    # The batch path sends each call once where the one-by-one path repeats it at each of its events (fewer
    # messages, unless there was nothing to fold).
    sent, repeated = got[1]["raw_pushes"], expected[1]["raw_pushes"]
    assert sent < repeated or sent == repeated == len(expected[1]["pushes"]), (sent, repeated)
    return got[1]


def _batches(events: list[wire.Event], rng: random.Random, largest: int = 60) -> list[list[wire.Event]]:
    batches = []
    while events:
        size = rng.randint(1, largest)
        batches.append(events[:size])
        events = events[size:]
    return batches


@pytest.fixture
def world(alice, bob, carol, cc_settings) -> Bridge:
    phone_call = ActivityType.objects.create(name="Phone call", kind=ActivityKind.PHONE_CALL)
    sale = ActivityType.objects.create(name="Sale opportunity", kind=ActivityKind.SALE_OPPORTUNITY)
    ctype = CampaignType.objects.create(name="Call center")
    winter = Campaign.objects.create(campaign_type=ctype, name="Winter offer", active=True)
    CampaignItem.objects.create(campaign=winter, description="Fibre 200", quantity=1, unit_price=Decimal("30"))
    CampaignItem.objects.create(campaign=winter, description="Router", quantity=2, unit_price=Decimal("5"))
    summer = Campaign.objects.create(campaign_type=ctype, name="Summer", active=True,
                                     available_from=dt.date(2020, 6, 1), available_to=dt.date(2020, 8, 31))
    alice.working_campaign = winter
    alice.save()
    bob.working_campaign = summer
    bob.save()
    cc_settings.phone_system = PhoneSystem.ASTERISK
    cc_settings.incoming_activity_type = sale
    cc_settings.outgoing_activity_type = phone_call
    cc_settings.campaign_type = ctype
    cc_settings.insert_campaign_items = True
    cc_settings.save()
    # Callers the traffic uses: some known once, one known twice (no contact chosen), most unknown.
    for index in (0, 3, 7, 12):
        create_contact(first_name=f"Πελάτης {index}", phones=[synthetic._remote_number(index)])
    for name in ("Twin A", "Twin B"):
        create_contact(first_name=name, phones=[synthetic._remote_number(5)])
    return Bridge.objects.create(bridge_id="office", secret="s3cret-bridge-token-for-tests-only")


def _special_events() -> list[wire.Event]:
    """Transfers, internal calls, an unknown extension, replays out of order, agent and link states."""
    a, b, c = Events("900.1"), Events("900.2"), Events("900.3")
    link = wire.LinkState(event_id="link-1", occurred_at=T0 + 1, phone_system=wire.PhoneSystem.ASTERISK,
                          pbx_connected=True, extensions=("100", "101"), bridge_version="1.0")
    return [
        a.ringing("100", 0, number="2101234567", name="Caller"),
        wire.AgentState(event_id="agent-1", occurred_at=T0 + 0.5, extension="100", dnd=True),
        a.answered("100", 2),
        a.transferred("100", 10, target="101"),
        link,
        a.ringing("101", 10, number="2101234567", transferred_from="100"),
        a.ended("100", 10),
        a.answered("101", 12),
        b.ringing("100", 1, number="101", direction=wire.Direction.INTERNAL, internal_direction="out"),
        b.ringing("101", 1, number="100", direction=wire.Direction.INTERNAL, internal_direction="in"),
        b.answered("101", 3),
        wire.AgentState(event_id="agent-2", occurred_at=T0 + 0.2, extension="100", dnd=False),  # older: ignored
        c.ended("555", 9),  # an extension nobody owns, its end before its ringing
        c.ringing("555", 0, number="6970000000"),
        b.ended("100", 30),
        b.ended("101", 30),
        a.ended("101", 80),
        c.answered("555", 2),
        wire.AgentState(event_id="agent-3", occurred_at=T0 + 20, extension="101", logged_in=True),
    ]


@pytest.mark.parametrize("shuffled", [False, True], ids=["as-reported", "shuffled-with-duplicates"])
def test_realistic_traffic_gives_the_same_rows_receipts_and_pushes(world, monkeypatch, shuffled):
    rng = random.Random(4)
    events = list(synthetic.traffic(60, prefix="eq")) + _special_events()
    if shuffled:
        events += rng.sample(events, 40)  # redelivered events
        rng.shuffle(events)
    got = _assert_same(_batches(events, rng), world, monkeypatch)
    assert len(got["calls"]) > 90 and len(got["pushes"]) > 200  # the comparison compared something


@pytest.mark.parametrize(
    "setting",
    ["create_call_when_answered", "update_from_internal_calls", "no_activities", "phone_system_none"],
)
def test_each_rule_changing_setting_gives_the_same_result(world, monkeypatch, setting):
    settings = CallCenterSettings.load()
    if setting == "no_activities":
        settings.incoming_activity_type = settings.outgoing_activity_type = None
    elif setting == "phone_system_none":
        settings.phone_system = PhoneSystem.NONE
    else:
        setattr(settings, setting, True)
    settings.save()
    rng = random.Random(setting)
    events = list(synthetic.traffic(40, prefix="eq")) + _special_events()
    late_answer = Events("900.9")  # a group call two agents answer: the database lets one row in
    events += [late_answer.ringing("100", 0), late_answer.ringing("101", 0), late_answer.answered("101", 4),
               late_answer.answered("100", 4.1), late_answer.ended("100", 5), late_answer.ended("101", 9)]
    _assert_same(_batches(events, rng, largest=25), world, monkeypatch)


def test_one_batch_holding_everything_gives_the_same_result(world, monkeypatch):
    events = list(synthetic.traffic(50, prefix="eq")) + _special_events()
    _assert_same([events], world, monkeypatch)


def test_the_pushes_of_a_batch_read_their_calls_in_a_fixed_number_of_queries(world, monkeypatch,
                                                                              django_assert_max_num_queries):
    """However many calls a batch pushes, their messages come from one read (and the settings): a field the message
    uses but live._MESSAGE_FIELDS leaves out would cost a query per call here."""
    events = list(synthetic.traffic(40, prefix="q"))
    hooks: list[Any] = []
    monkeypatch.setattr(live, "get_channel_layer", lambda: _Pushes())
    monkeypatch.setattr(live.transaction, "on_commit", hooks.append)
    receive_events(world, events)
    [send] = hooks
    with django_assert_max_num_queries(3):
        send()
