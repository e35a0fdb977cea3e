"""bench/outbox_drain.py still runs end to end: a small SQLite run prints a well-formed line for the anchor and one
for the CRM, and the CRM stored every event once.

No timing is asserted (speed belongs in the benchmark's own figures); this only keeps the script from rotting.
"""

from __future__ import annotations

import re

import pytest

from tests.bench.smoke import run_bench

NUMBER = r"[\d,]+(?:\.\d+)?"
CPU = rf"(?:cpu {NUMBER}s = {NUMBER} events/cpu-s|cpu <0\.1s|cpu n/a)"
ANCHOR = re.compile(
    rf"^outbox_drain anchor: 1,500 events in {NUMBER}s = {NUMBER} events/s \| {CPU} \(batch 200, 8 requests; "
    r"receiver verifies, decodes, acknowledges\)$"
)
CRM = re.compile(
    rf"^outbox_drain crm-sqlite: 1,500 events in {NUMBER}s = {NUMBER} events/s \| {CPU} \| crm/anchor {NUMBER}x the "
    rf"anchor's "
    rf"time \| target < {NUMBER}s for 1,500: (?:OK|MISSED) \| stored 1,500 once, failed 0, retries 0$"
)


@pytest.mark.slow
def test_a_small_sqlite_run_prints_the_anchor_and_the_crm_and_stores_every_event_once() -> None:
    done = run_bench("outbox_drain", "--events", "1500", "--batch-size", "200", "--db", "sqlite")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert ANCHOR.match(lines[0]), lines[0]
    assert CRM.match(lines[1]), lines[1]
    assert "queued 1,500 events" in done.stderr
