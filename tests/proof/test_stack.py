"""proof/_stack.py's judge: the PBX's record of the legs it rang against the CRM's rows. A proof is only as good as
its comparison, so each way of losing, doubling or leaving open a call must show."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from proof._stack import Database, LegRecord, compare

from callcenter.pbxsim.model import AMIEvent


def dial_begin(linkedid: str, uniqueid: str, ext: str, caller: str = "00302101234567") -> AMIEvent:
    return AMIEvent("DialBegin", "call,all", (("Channel", "PJSIP/trunk-00000001"), ("CallerIDNum", caller),
                                              ("DestChannel", f"PJSIP/{ext}-0000000a"), ("DestUniqueid", uniqueid),
                                              ("DestLinkedid", linkedid)), 0.0)


def hangup(uniqueid: str) -> AMIEvent:
    return AMIEvent("Hangup", "call,all", (("Uniqueid", uniqueid), ("Cause", "16")), 0.0)


def crm(tmp_path: Path, calls: list[tuple[str, str, str]], legs: list[tuple[str, str, str | None]],
        failed: int = 0) -> Database:
    path = tmp_path / "crm.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE calls_call (pbx_call_id TEXT, extension TEXT, state TEXT)")
        db.execute("CREATE TABLE calls_callleg (pbx_call_id TEXT, extension TEXT, ended_at TEXT)")
        db.execute("CREATE TABLE calls_processedevent (event_id TEXT, failed INTEGER)")
        db.executemany("INSERT INTO calls_call VALUES (?, ?, ?)", calls)
        db.executemany("INSERT INTO calls_callleg VALUES (?, ?, ?)", legs)
        db.executemany("INSERT INTO calls_processedevent VALUES (?, 1)", [(f"e{n}",) for n in range(failed)])
    return Database(f"sqlite:///{path}")


def record_of_two_legs() -> LegRecord:
    record = LegRecord(["100", "101"])
    for event in (dial_begin("1.1", "1.2", "100"), dial_begin("1.1", "1.3", "101", caller="6944123456"),
                  dial_begin("1.1", "1.4", "999"), hangup("1.2")):
        record(event)
    return record


def test_the_record_keeps_each_agent_leg_once_with_its_end_and_the_callers_number() -> None:
    record = record_of_two_legs()

    assert sorted(record.legs) == [("1.1", "100"), ("1.1", "101")]  # 999 is not an agent's phone
    assert record.legs[("1.1", "100")].ended_at is not None
    assert record.legs[("1.1", "101")].ended_at is None
    assert sorted(record.rang_by_number) == ["2101234567", "6944123456"]


def test_every_leg_stored_once_and_ended_is_a_clean_comparison(tmp_path: Path) -> None:
    db = crm(tmp_path, [("1.1", "100", "ended"), ("1.1", "101", "ended")],
             [("1.1", "100", "t"), ("1.1", "101", "t")])

    seen = compare(record_of_two_legs(), db)

    assert (seen.pbx_legs, seen.stored, seen.missing, seen.duplicated, seen.open_after, seen.failed_events) == (
        2, 2, [], 0, 0, 0)


def test_a_lost_a_doubled_a_phantom_and_an_open_call_all_show(tmp_path: Path) -> None:
    db = crm(tmp_path, [("1.1", "100", "ended"), ("1.1", "100", "ended"), ("9.9", "100", "ringing")],
             [("1.1", "100", None)], failed=2)

    seen = compare(record_of_two_legs(), db)

    assert seen.missing == [("1.1", "101")]
    assert seen.stored == 0  # the one stored leg is stored twice
    assert seen.duplicated == 2  # the second row of 1.1@100, and 9.9@100 that the PBX never rang
    assert (seen.open_rows, seen.open_legs, seen.open_after) == (1, 1, 2)
    assert seen.failed_events == 2
