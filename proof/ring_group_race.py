"""Proof: three agents answering a ring-group call at the same instant, with "create call when answered" on (S-3.7),
make exactly one call record and one activity, every time, on SQLite and on PostgreSQL.

How: the real CRM (`callcenter serve`) on a fresh SQLite file, then on a throwaway PostgreSQL database, with the demo
data (agents 100, 101 and 199; incoming calls get a "Phone call" activity), "create call when answered" switched on
and three bridges registered (`callcenter add-bridge`). For each trial a call rings all three agents (the ringing
posted ahead, a hundred calls per batch); then three threads, one per bridge, each with its own keep-alive HTTP
connection, post the CallAnswered of their own agent's leg, signed as a bridge signs, released together by a barrier.
Every other trial is "cold": nothing of the call is stored yet, and each racer posts its leg's ringing and answer
together, so the three create their legs and then their call rows at once (the database's unique answer group settles
it); in the others the legs exist and their row locks order the answers. After the trials the database is read with
plain SQL: per trial, how many call rows the call made, how many activities they have, and how many of the three legs
point at a row.

Figure: trials, the histogram of call records per trial, and the trials with anything but one record, one activity and
one linked leg; PASS when that is 0 of 1,000 on each database (`--quick`: 100 trials).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from callcenter import wire
from proof._stack import (
    CALLCENTER,
    DEFAULT_PG_URL,
    ROOT,
    CrmServer,
    Database,
    Results,
    crm_environment,
    database,
    log,
    prepare_crm,
    run_proof_module,
)

NAME = "ring_group_race"
AGENTS = ("100", "101", "199")  # the demo's agents, Carol (199) included
BRIDGES = ("office", "race-b", "race-c")  # `office` comes with prepare_crm
RING_BATCH = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, help="trials per database (default 1,000; --quick 100)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)


def execute(db: Database, sql: str) -> None:
    """One statement written to the CRM's database, as an administrator's script would."""
    if db.kind == "sqlite":
        with contextlib.closing(sqlite3.connect(db.url.removeprefix("sqlite:///"), timeout=30)) as conn:
            conn.execute(sql)
            conn.commit()
        return
    import psycopg

    with psycopg.connect(db.url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type] - plain SQL of our own


class Poster:
    """One bridge's keep-alive connection to the CRM's /bridge/v1/events, signing each batch with its secret."""

    def __init__(self, port: int, bridge_id: str, secret: str) -> None:
        self.port, self.bridge_id, self.secret = port, bridge_id, secret
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, events: Sequence[wire.Event]) -> wire.BatchReceipt:
        body = wire.encode(wire.EventBatch(bridge_id=self.bridge_id, events=list(events)))
        headers = {"Content-Type": "application/json", wire.BRIDGE_HEADER: self.bridge_id,
                   wire.SIGNATURE_HEADER: wire.sign(self.secret, body, int(time.time()))}
        for attempt in range(3):
            try:
                self.conn.request("POST", "/bridge/v1/events", body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                if attempt == 2:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        if response.status != 200:
            raise RuntimeError(f"the CRM answered {response.status} to {self.bridge_id}: {data[:300]!r}")
        return wire.decode_receipt(data)

    def close(self) -> None:
        self.conn.close()


def run_trials(crm: CrmServer, secrets: dict[str, str], trials: int, prefix: str) -> tuple[float, int]:
    """``trials`` races; returns the seconds they took and in how many trials the three requests were all in flight
    at one moment (each was sent before any of the three had its answer)."""
    posters = [Poster(crm.port, bridge, secrets[bridge]) for bridge in BRIDGES]
    ringer = Poster(crm.port, BRIDGES[0], secrets[BRIDGES[0]])
    start = time.time() - 30
    barrier = threading.Barrier(len(AGENTS))
    work: list[str | None] = []
    failures: list[BaseException] = []
    ready = threading.Semaphore(0)
    go = [threading.Semaphore(0) for _agent in AGENTS]
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(AGENTS)
    overlapping = 0

    def racer(index: int) -> None:
        poster, extension = posters[index], AGENTS[index]
        while True:
            go[index].acquire()
            call_id = work[-1]
            if call_id is None:
                return
            events: list[wire.Event] = [wire.CallAnswered(event_id=f"{call_id}:{extension}:a",
                                                          occurred_at=time.time(), call_id=call_id,
                                                          extension=extension)]
            if int(call_id.rsplit("-", 1)[1]) % 2:  # a cold trial: nothing stored yet, each brings its ringing too
                events.insert(0, wire.CallRinging(event_id=f"{call_id}:{extension}:r", occurred_at=start,
                                                  call_id=call_id, extension=extension,
                                                  direction=wire.Direction.INBOUND, remote_number="2101234567"))
            try:
                barrier.wait(timeout=60)
                sent = time.monotonic()
                poster.post(events)
                spans[index] = (sent, time.monotonic())
            except BaseException as exc:  # noqa: BLE001 - reported by the proof
                failures.append(exc)
            finally:
                ready.release()

    threads = [threading.Thread(target=racer, args=(index,), daemon=True) for index in range(len(AGENTS))]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    try:
        for first in range(0, trials, RING_BATCH):
            numbers = range(first, min(trials, first + RING_BATCH))
            ringer.post([wire.CallRinging(event_id=f"{prefix}{n}:{ext}:r", occurred_at=start, call_id=f"{prefix}{n}",
                                          extension=ext, direction=wire.Direction.INBOUND,
                                          remote_number="2101234567") for n in numbers if n % 2 == 0
                                                                              for ext in AGENTS])
            for n in numbers:
                work.append(f"{prefix}{n}")
                for semaphore in go:
                    semaphore.release()
                for _agent in AGENTS:
                    ready.acquire()
                overlapping += max(begin for begin, _end in spans) < min(end for _begin, end in spans)
                if failures:
                    raise RuntimeError(f"a racer failed: {failures[0]!r}") from failures[0]
            log(f"{n + 1}/{trials} trials")
    finally:
        work.append(None)
        for semaphore in go:
            semaphore.release()
        for thread in threads:
            thread.join(timeout=10)
        for poster in [*posters, ringer]:
            poster.close()
    return time.monotonic() - began, overlapping


def check(db: Database, trials: int, prefix: str) -> tuple[Counter[int], list[str]]:
    """Per trial: call records, their activities and the legs linked to one; the histogram of records per trial
    and what was wrong with each trial that was not exactly one of each."""
    calls = dict(db.query(f"SELECT pbx_call_id, count(*) FROM calls_call WHERE pbx_call_id LIKE '{prefix}%' "
                          "GROUP BY pbx_call_id"))
    activities = dict(db.query(
        "SELECT c.pbx_call_id, count(a.id) FROM calls_call c JOIN activities_activity a ON a.call_id = c.id "
        f"WHERE c.pbx_call_id LIKE '{prefix}%' GROUP BY c.pbx_call_id"))
    linked = dict(db.query(f"SELECT pbx_call_id, count(call_id) FROM calls_callleg WHERE pbx_call_id LIKE '{prefix}%'"
                           " GROUP BY pbx_call_id"))
    answered = dict(db.query("SELECT pbx_call_id, count(*) FROM calls_call WHERE answered_at IS NOT NULL AND "
                             f"pbx_call_id LIKE '{prefix}%' GROUP BY pbx_call_id"))
    histogram: Counter[int] = Counter()
    wrong = []
    for n in range(trials):
        call_id = f"{prefix}{n}"
        records = int(calls.get(call_id, 0))
        histogram[records] += 1
        found = (records, int(activities.get(call_id, 0)), int(linked.get(call_id, 0)), int(answered.get(call_id, 0)))
        if found != (1, 1, 1, 1):
            wrong.append(f"{call_id}: {found[0]} records, {found[1]} activities, {found[2]} legs linked, "
                         f"{found[3]} answered")
    return histogram, wrong


@dataclass
class Outcome:
    trials: int
    histogram: Counter[int]
    wrong: list[str]
    overlapping: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.wrong and self.histogram == Counter({1: self.trials})


def race_on(kind: str, directory: Path, trials: int, pg_url: str = DEFAULT_PG_URL) -> Outcome:
    """The whole race on a fresh database of ``kind``: the CRM prepared, served, raced ``trials`` times, read back."""
    directory.mkdir(parents=True, exist_ok=True)
    with database(kind, directory, pg_url) as db:
        secret_files = {BRIDGES[0]: prepare_crm(db, directory)}
        for bridge in BRIDGES[1:]:
            secret_files[bridge] = directory / f"{bridge}.secret"
            subprocess.run([*CALLCENTER, "add-bridge", bridge, "--secret-file", str(secret_files[bridge])],  # noqa: S603
                           env=crm_environment(db), cwd=ROOT, check=True, capture_output=True, timeout=300)
        secrets = {bridge: path.read_text(encoding="utf-8").strip() for bridge, path in secret_files.items()}
        execute(db, "UPDATE resources_callcentersettings SET create_call_when_answered = TRUE")
        crm = CrmServer(db, directory)
        crm.start()
        prefix = f"race-{kind}-"
        try:
            seconds, overlapping = run_trials(crm, secrets, trials, prefix)
        finally:
            crm.stop()
        histogram, wrong = check(db, trials, prefix)
    for line in wrong[:20]:
        log(f"{kind}: {line}")
    return Outcome(trials, histogram, wrong, overlapping, seconds)


def one_database(kind: str, options: argparse.Namespace, results: Results, workdir: Path, trials: int) -> None:
    outcome = race_on(kind, workdir / kind, trials, options.pg_url)
    shown = ", ".join(f"{records} record{'s' if records != 1 else ''}: {count}"
                      for records, count in sorted(outcome.histogram.items()))
    results.add(f"{kind}: {trials} trials, 3 agents answering one ring-group call at once over HTTP, "
                "create-when-answered on",
                f"records per trial {{{shown}}}; {len(outcome.wrong)} trials not exactly 1 record + 1 activity + "
                f"1 linked leg; {outcome.overlapping} trials with all 3 posts in flight at once "
                f"({outcome.seconds:.0f}s)", outcome.ok)


def run(options: argparse.Namespace, results: Results, workdir: Path) -> None:
    trials = options.trials or (100 if options.quick else 1000)
    for kind in ("sqlite", "postgres"):
        if options.db in (kind, "both"):
            one_database(kind, options, results, workdir, trials)


def main(argv: Sequence[str] | None = None) -> int:
    return run_proof_module(NAME, __doc__ or "", add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
