"""S-3.7 under real concurrency: three agents answer the same ring-group call at the same instant, with "create call
when answered" on. Each answer arrives from a bridge of its own, in a thread of its own with its own database
connection, all released by one barrier: exactly one call row, one activity, and the two other legs left without a
row, every time. The thread race needs a database that waits for locks (the PostgreSQL pass; the in-memory SQLite
test database does not); on SQLite the same race runs over HTTP against the real CRM on a file, as
proof/ring_group_race.py does 1,000 times per database."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection, connections

from callcenter import wire
from callcenter.activities.models import Activity, ActivityKind, ActivityType
from callcenter.calls.actions import receive_events
from callcenter.calls.models import Bridge, Call, CallLeg
from callcenter.resources.models import CallCenterSettings, PhoneSystem

from ..conftest import _resource

AGENTS = ("100", "101", "102")
TRIALS = 15


def _race(call_id: str, bridges: list[Bridge], at: float, *, cold: bool = False) -> list[BaseException]:
    """Each agent's CallAnswered posted by its own bridge in its own thread, all at once; ``cold``: with its leg's
    ringing in the same batch (nothing of the call stored yet, so the call rows are inserted at once)."""
    barrier = threading.Barrier(len(AGENTS))
    errors: list[BaseException] = []

    def answer(extension: str, bridge: Bridge) -> None:
        try:
            events: list[wire.Event] = [wire.CallAnswered(event_id=f"{call_id}:{extension}:a", occurred_at=at,
                                                          call_id=call_id, extension=extension)]
            if cold:
                events.insert(0, _ringing(call_id, extension, at - 1))
            connection.ensure_connection()  # connected before the barrier, so the race is the answers' own
            barrier.wait(timeout=30)
            receive_events(bridge, events)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=answer, args=pair) for pair in zip(AGENTS, bridges, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def _ringing(call_id: str, extension: str, at: float) -> wire.CallRinging:
    return wire.CallRinging(event_id=f"{call_id}:{extension}:r", occurred_at=at, call_id=call_id, extension=extension,
                            direction=wire.Direction.INBOUND, remote_number="2101234567")


def _shared_memory_sqlite() -> bool:
    return connection.vendor == "sqlite" and connection.is_in_memory_db()


@pytest.mark.django_db(transaction=True)
def test_three_agents_answering_at_once_make_one_call_and_one_activity(caplog: pytest.LogCaptureFixture) -> None:
    """Half the trials pre-rung (the legs' row locks order the answers), half cold (the unique answer group settles
    the inserts): one record and one activity each time, and the expected race is one log line, no traceback."""
    caplog.set_level(logging.INFO, logger="callcenter")
    if _shared_memory_sqlite():
        pytest.skip("the in-memory SQLite test database does not wait for locks (SQLITE_LOCKED); the PostgreSQL pass "
                    "runs this, and proof/ring_group_race.py races the real CRM on a SQLite file")
    phone = ActivityType.objects.create(name="Phone call", kind=ActivityKind.PHONE_CALL)
    settings = CallCenterSettings.load()
    settings.phone_system = PhoneSystem.ASTERISK
    settings.create_call_when_answered = True
    settings.incoming_activity_type = phone
    settings.save()
    resources = [_resource(f"agent{ext}", "Agent", ext, ext) for ext in AGENTS]
    bridges = [Bridge.objects.create(bridge_id=f"b{index}", name=f"B{index}", secret="s" * 32) for index in range(3)]
    start = time.time() - 60
    records: Counter[int] = Counter()
    for trial in range(TRIALS):
        call_id = f"race.{trial}"
        cold = trial % 2 == 1
        if not cold:
            receive_events(bridges[0], [_ringing(call_id, ext, start + trial) for ext in AGENTS])
        assert _race(call_id, bridges, start + trial + 1, cold=cold) == []
        calls = list(Call.objects.filter(pbx_call_id=call_id))
        records[len(calls)] += 1
        assert len(calls) == 1, f"trial {trial}: {len(calls)} call records"
        [call] = calls
        assert call.resource in resources and call.answered_at is not None
        assert list(Activity.objects.filter(call=call).values_list("activity_type", "resource")) == [
            (phone.pk, call.resource_id)]
        legs = list(CallLeg.objects.filter(pbx_call_id=call_id).values_list("extension", "call_id"))
        assert sorted(extension for extension, _call in legs) == sorted(AGENTS)
        assert sorted(str(call_ref) for _ext, call_ref in legs) == sorted([str(call.pk), "None", "None"])
    assert records == Counter({1: TRIALS})
    assert Activity.objects.count() == TRIALS
    assert [record.getMessage() for record in caplog.records if record.exc_info] == []


@pytest.mark.slow
def test_three_bridges_racing_over_http_on_a_sqlite_file(tmp_path: Path) -> None:
    """The same race against the real CRM (`callcenter serve`) on a SQLite file: the three answers posted at once by
    three bridges over HTTP (proof/ring_group_race.py, a few trials)."""
    from proof._stack import reap_all
    from proof.ring_group_race import race_on

    try:
        outcome = race_on("sqlite", tmp_path / "crm", trials=12)
    finally:
        reap_all()
    assert outcome.wrong == []
    assert outcome.histogram == Counter({1: 12})
