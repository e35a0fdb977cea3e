"""The guard that keeps tests from running across local midnight (tests/conftest.py) waits only near midnight."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from tests.conftest import wait_past_midnight

ATHENS = zoneinfo.ZoneInfo("Europe/Athens")


@pytest.mark.parametrize(("clock", "wait"), [
    ("12:00:00", 0), ("00:03:00", 0), ("23:57:59", 0), ("23:58:00", 300), ("23:59:30", 210), ("00:00:00", 180),
    ("00:02:59", 1),
])
def test_it_waits_until_three_minutes_past_midnight_only_near_midnight(clock: str, wait: float) -> None:
    now = dt.datetime.combine(dt.date(2026, 12, 3), dt.time.fromisoformat(clock), tzinfo=ATHENS)
    assert wait_past_midnight(now) == pytest.approx(wait)
