"""The durable outbox: order, acceptance, survival across restarts and kill -9, dead letters, the size guard and the
file's own checks."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from callcenter import wire
from callcenter.bridge import synthetic
from callcenter.bridge.outbox import APPLICATION_ID, SCHEMA_VERSION, Outbox, OutboxClosedError, OutboxError

CHILD = Path(__file__).with_name("outbox_child.py")


def _events(count: int, prefix: str = "ob") -> list[wire.Event]:
    events = list(synthetic.traffic(synthetic.calls_for_events(count), prefix=prefix))
    return events[:count]


def _ids(rows: list[tuple[int, bytes]]) -> list[str]:
    return [wire.decode_event(body).event_id for _seq, body in rows]


@pytest.fixture
async def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    await box.start()
    yield box
    await box.close()


async def test_events_come_out_oldest_first_exactly_as_they_were_put(outbox: Outbox) -> None:
    events = _events(1200)
    for event in events:
        outbox.put(event)
    await outbox.flush()
    assert outbox.accepted_total == outbox.depth == 1200
    rows = outbox.peek(500)
    assert len(rows) == 500
    assert [seq for seq, _body in rows] == sorted(seq for seq, _body in rows)
    assert [wire.decode_event(body) for _seq, body in rows] == events[:500]
    everything = outbox.peek(5000)
    assert _ids(everything) == [event.event_id for event in events]


async def test_only_confirmed_events_are_removed(outbox: Outbox) -> None:
    events = _events(30)
    for event in events:
        outbox.put(event)
    await outbox.flush()
    first = outbox.peek(10)
    assert outbox.remove_through(first[-1][0]) == 10
    assert outbox.depth == 20
    assert _ids(outbox.peek(100)) == [event.event_id for event in events[10:]]
    assert outbox.remove_through(first[-1][0]) == 0  # confirming twice removes nothing more


async def test_put_only_queues_in_memory_and_never_waits_for_the_disk(outbox: Outbox) -> None:
    events = _events(2000)
    # Hold the database as a slow disk would: the writer cannot commit while we hold it.
    with outbox._db_lock:
        for event in events:
            outbox.put(event)
        assert outbox.pending >= 1500  # at most one writer transaction (max_batch) taken, and it is stuck
        assert outbox.accepted_total == 0
        assert outbox.depth == 2000
    await outbox.flush()
    assert outbox.accepted_total == 2000 and outbox.pending == 0
    assert _ids(outbox.peek(5000)) == [event.event_id for event in events]


async def test_flush_waits_for_the_commit_and_the_committed_signal_is_set(outbox: Outbox) -> None:
    outbox.committed.clear()
    outbox.put(_events(1)[0])
    assert outbox.accepted_total == 0 or outbox.pending == 0
    await outbox.flush()
    assert outbox.accepted_total == 1
    await asyncio.wait_for(outbox.committed.wait(), 5)


async def test_accepted_events_survive_a_restart_and_seq_keeps_growing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path)
    await first.start()
    for event in _events(50, "a"):
        first.put(event)
    await first.flush()
    last_seq = first.peek(100)[-1][0]
    first.remove_through(last_seq)  # the table is empty now
    for event in _events(5, "b"):
        first.put(event)
    await first.close()

    again = Outbox(path)
    await again.start()
    try:
        assert again.depth == 5
        rows = again.peek(10)
        assert _ids(rows) == [event.event_id for event in _events(5, "b")]
        assert rows[0][0] > last_seq  # a seq is never handed out twice, even after the table was emptied
    finally:
        await again.close()


async def test_events_put_before_start_are_stored_at_close(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    for event in _events(3):
        box.put(event)
    await box.close()
    with pytest.raises(OutboxClosedError):
        box.put(_events(1)[0])
    again = Outbox(tmp_path / "outbox.sqlite3")
    assert again.depth == 3
    await again.close()


async def test_an_event_the_crm_refuses_alone_is_set_aside_and_can_be_queued_again(outbox: Outbox, caplog) -> None:
    events = _events(5)
    for event in events:
        outbox.put(event)
    await outbox.flush()
    rows = outbox.peek(5)
    with caplog.at_level(logging.ERROR, logger="callcenter.bridge.outbox"):
        letter = outbox.dead_letter(rows[2][0], status=400, reason="invalid event batch: occurred_at")
    assert letter is not None and letter.event_id == events[2].event_id
    assert f"event {events[2].event_id}" in caplog.text and "dead letter" in caplog.text
    assert outbox.depth == 4 and outbox.dead_letters == 1
    assert _ids(outbox.peek(10)) == [event.event_id for event in events[:2] + events[3:]]
    [kept] = outbox.dead_letter_list()
    assert (kept.status, kept.reason, wire.decode_event(kept.body)) == (400, "invalid event batch: occurred_at",
                                                                        events[2])
    assert outbox.dead_letter(rows[2][0], status=400, reason="again") is None  # no longer queued

    assert outbox.requeue_dead_letters() == 1
    assert outbox.dead_letters == 0
    assert _ids(outbox.peek(10))[-1] == events[2].event_id  # after what was waiting


async def test_past_its_limits_it_keeps_every_event_and_says_so_loudly(tmp_path: Path, caplog) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3", max_events=10, max_batch=5, guard_log_seconds=3600)
    await box.start()
    try:
        with caplog.at_level(logging.WARNING, logger="callcenter.bridge.outbox"):
            for event in _events(25):
                box.put(event)
            await box.flush()
            assert box.depth == 25 and box.over_limit
            errors = [record for record in caplog.records if record.levelno == logging.ERROR]
            assert len(errors) == 1  # once, not once per event (again after guard_log_seconds)
            message = errors[0].getMessage()
            assert re.search(r"holds 1[1-5] events", message), message
            assert "over its limit of 10 events" in message
            assert "MiB on disk" in message and "free" in message
            assert "Events are still kept" in message
            box.remove_through(box.peek(20)[-1][0])
            assert not box.over_limit
            assert "back under its limits" in caplog.text
    finally:
        await box.close()


async def test_metrics_report_depth_bytes_and_the_oldest_waiting_event(tmp_path: Path) -> None:
    now = [1_000.0]
    box = Outbox(tmp_path / "outbox.sqlite3", clock=lambda: now[0])
    await box.start()
    try:
        assert box.oldest_age_seconds is None
        box.put(_events(1)[0])
        now[0] += 30
        box.put(_events(2)[1])
        await box.flush()
        now[0] += 12
        metrics = box.metrics()
        assert metrics.depth == 2 and metrics.accepted_total == 2 and metrics.dropped_total == 0
        assert metrics.oldest_age_seconds == pytest.approx(42)
        assert metrics.bytes_on_disk > metrics.queued_bytes > 0
        box.remove_through(box.peek(1)[0][0])
        assert box.oldest_age_seconds == pytest.approx(12)
    finally:
        await box.close()


async def test_a_disk_that_refuses_writes_delays_acceptance_without_losing_events(outbox: Outbox, monkeypatch,
                                                                                  caplog) -> None:
    real = outbox._insert
    failures = [2]

    def failing_insert(chunk):
        if failures[0]:
            failures[0] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return real(chunk)

    monkeypatch.setattr(outbox, "_insert", failing_insert)
    events = _events(20)
    with caplog.at_level(logging.ERROR, logger="callcenter.bridge.outbox"):
        for event in events:
            outbox.put(event)
        await asyncio.wait_for(outbox.flush(), 10)
    assert "database or disk is full" in caplog.text and "retrying" in caplog.text
    assert _ids(outbox.peek(100)) == [event.event_id for event in events]
    assert outbox.dropped_total == 0


async def test_while_the_disk_refuses_writes_memory_is_bounded_and_every_refusal_is_counted(tmp_path, monkeypatch,
                                                                                           caplog) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3", max_pending=50)

    def broken_disk(chunk):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(box, "_insert", broken_disk)
    await box.start()
    with caplog.at_level(logging.ERROR, logger="callcenter.bridge.outbox"):
        first = _events(1)[0]
        box.put(first)
        for _ in range(200):  # let the writer fail once
            if box._write_failing:
                break
            await asyncio.sleep(0.01)
        for event in _events(120)[1:]:
            box.put(event)
    assert box.dropped_total == 120 - 50
    assert box.pending == 50
    assert "are NOT stored" in caplog.text
    await box.close(timeout=1)
    assert "were not stored" in caplog.text


def test_a_file_from_a_newer_bridge_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    before = path.read_bytes()
    with pytest.raises(OutboxError, match="written by a newer bridge"):
        Outbox(path)
    assert path.read_bytes() == before


def test_another_sqlite_database_is_not_taken_for_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "crm.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY)")
    with pytest.raises(OutboxError, match="not a bridge outbox"):
        Outbox(path)


def test_a_damaged_file_is_reported_as_such(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="damaged|cannot use"):
        Outbox(path)


async def test_two_bridges_cannot_share_one_outbox(outbox: Outbox) -> None:
    with pytest.raises(OutboxError, match="in use by another bridge process"):
        Outbox(outbox.path)


async def test_the_file_is_a_write_ahead_log_database_with_a_schema_version(outbox: Outbox) -> None:
    db = outbox._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: see the module's docstring
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


async def test_full_synchronous_mode_can_be_chosen(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3", synchronous="FULL")
    try:
        assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        await box.close()


async def test_an_emptied_outbox_gives_its_space_back(outbox: Outbox) -> None:
    for event in _events(30_000):
        outbox.put(event)
    await outbox.flush()
    full = outbox.bytes_on_disk
    outbox.remove_through(outbox.peek(30_000)[-1][0])
    assert outbox.depth == 0
    assert outbox.bytes_on_disk < full / 10


@pytest.mark.slow
def test_kill_9_loses_nothing_the_outbox_reported_accepted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), "http://127.0.0.1:9", str(tmp_path / "none"), "kill", "5000",
         "--no-delivery"],
        stdout=subprocess.PIPE, text=True,
    )
    reported = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            reported = int(line.split()[1])
            if reported >= 3000:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert reported >= 3000

    async def reopen() -> list[tuple[int, bytes]]:
        box = Outbox(path)
        try:
            return box.peek(100_000)
        finally:
            await box.close()

    rows = asyncio.run(reopen())
    expected = [event.event_id for event in synthetic.traffic(5000, prefix="kill")]
    assert len(rows) >= reported
    assert _ids(rows) == expected[: len(rows)]  # every accepted event, in order, each once


# ---- every event is checked before it enters the outbox (issue 11) ------------------------------------------------


async def test_an_event_a_translator_built_wrong_is_repaired_at_entry_not_refused_later(outbox: Outbox,
                                                                                       caplog) -> None:
    now = time.time()
    wrong = wire.CallRinging(event_id="bad-1", occurred_at=1e300, call_id="c1", extension="100",
                             direction=wire.Direction.INBOUND, remote_name="N" * 10_000 + "\x00",
                             remote_number="1" * 500)
    fine = _events(1)[0]
    with caplog.at_level(logging.WARNING, logger="callcenter.bridge.outbox"):
        outbox.put(wrong)
        outbox.put(fine)
        await outbox.flush()
    first, second = outbox.peek(10)
    stored = wire.checked_event(first[1], now)  # what the CRM will get passes its own checks
    assert isinstance(stored, wire.CallRinging) and stored.event_id == "bad-1"
    assert stored.remote_name == "N" * 200 and stored.remote_number == "1" * 80
    assert now - 5 <= stored.occurred_at <= time.time() + 5
    assert wire.decode_event(second[1]) == fine
    [line] = [r for r in caplog.records if "bad-1" in r.getMessage()]
    assert line.levelno == logging.WARNING and "not valid wire format" in line.getMessage()
    assert outbox.dropped_total == 0


@pytest.mark.parametrize("occurred_at", [float("nan"), float("inf"), -5.0, 5.0, 946_684_799.0])
async def test_an_absurd_time_becomes_the_time_the_event_arrived(outbox: Outbox, occurred_at: float) -> None:
    outbox.put(wire.AgentState(event_id="t", occurred_at=occurred_at, extension="100", dnd=True))
    await outbox.flush()
    [(_seq, body)] = outbox.peek(1)
    assert not wire.time_problem(wire.decode_event(body).occurred_at, time.time())


async def test_an_event_that_cannot_be_repaired_is_counted_and_said_never_queued(outbox: Outbox, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="callcenter.bridge.outbox"):
        outbox.put(wire.AgentState(event_id="x", occurred_at=time.time(), extension="100", device_state=7))  # type: ignore[arg-type]
        await outbox.flush()
    assert outbox.depth == 0 and outbox.dropped_total == 1
    assert "cannot be repaired; NOT stored" in caplog.text


async def test_a_machine_clock_that_is_itself_absurd_loses_nothing(tmp_path: Path) -> None:
    """A bridge whose clock says 1970 (a dead CMOS battery) cannot judge event times: it keeps them as they are."""
    box = Outbox(tmp_path / "outbox.sqlite3", clock=lambda: 1_000.0)
    await box.start()
    try:
        event = _events(1)[0]
        box.put(event)
        await box.flush()
        assert box.dropped_total == 0 and wire.decode_event(box.peek(1)[0][1]) == event
    finally:
        await box.close()
