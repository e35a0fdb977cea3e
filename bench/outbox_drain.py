"""Outbox drain: how long 240,000 queued call events take to reach the CRM (issue 4: target < 60 s).

What it does:
- Queues N (default 240,000) realistic call events in a bridge outbox (callcenter.bridge.synthetic: calls ringing a
  group of two agents, answered, missed and outgoing, interleaved by time as a PBX reports them, ~4.3 events per
  call), as a CRM outage would leave them. The filled outbox file is copied for every target.
- Drains a copy with the product's Deliverer (batches of --batch-size, by default the bridge's own; signed; one
  keep-alive connection) to:
  * anchor: a receiver that only verifies the signature, decodes the batch and acknowledges it (uvicorn, no
    database; bench/_drain_receiver.py) -- the transport ceiling;
  * crm-sqlite: the real CRM (`callcenter serve` in a child process) on a fresh SQLite file with the demo data
    (migrate, add-bridge, seed-demo), so every event goes through calls.actions.receive_events;
  * crm-postgres: the same on a throwaway PostgreSQL database, when the server is reachable (--pg-url); dropped at
    the end, even on failure or Ctrl-C.
- Times each drain from the deliverer's start to an empty outbox, then checks that the CRM stored every event once
  (its processed-event rows) and failed none.

Output: progress on stderr; on stdout one summary line per target, starting with "outbox_drain <target>:", with
events/s, seconds, the ratio to the anchor, and for the CRM whether the 60 s target (scaled to N) is met. Each line
also gives the CPU time the receiving process used during the drain (Linux): on a shared machine the wall time
depends on what else runs, the CPU time much less (events/cpu-s is the rate one free core would reach). The
PostgreSQL line adds the CPU time of the server's backends for the throwaway database when the server runs on this
machine: the CRM waits for them, one batch at a time, so on an idle machine the drain takes about the sum of both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import _common
from _common import ROOT, PostgresUnreachable, child_environment, free_port, serving, throwaway_postgres

RECEIVER = Path(__file__).with_name("_drain_receiver.py")
CALLCENTER = [sys.executable, "-m", "callcenter"]
TARGET_SECONDS = 60.0
TARGET_EVENTS = 240_000
PREFIX = "drain"
SECRET_KEY = "outbox-drain-bench-key-0123456789"


def log(message: str) -> None:
    print(f"[outbox_drain] {message}", file=sys.stderr, flush=True)


@dataclass
class Drained:
    seconds: float
    requests: int
    failures: int
    server_cpu: float | None = None  # CPU seconds the receiving process used during the drain (Linux)
    database_cpu: float | None = None  # CPU seconds its PostgreSQL backends used (a server on this machine)

    def rate(self, events: int) -> float:
        return events / self.seconds if self.seconds else float("inf")


# ---- the outbox ---------------------------------------------------------------------------------------------------


def fill_outbox(path: Path, events: int) -> int:
    from callcenter.bridge import synthetic
    from callcenter.bridge.outbox import Outbox

    async def fill() -> int:
        outbox = Outbox(path)
        await outbox.start()
        try:
            for count, event in enumerate(synthetic.traffic(synthetic.calls_for_events(events), prefix=PREFIX),
                                          start=1):
                outbox.put(event)
                if count == events:
                    break
            await outbox.flush()
            return outbox.depth
        finally:
            await outbox.close()

    return asyncio.run(fill())


def drain(template: Path, workdir: Path, url: str, secret: str, batch_size: int, timeout: float) -> Drained:
    from callcenter.bridge.delivery import Deliverer
    from callcenter.bridge.outbox import Outbox

    copy = workdir / f"outbox-{time.monotonic_ns()}.sqlite3"
    shutil.copyfile(template, copy)

    async def run() -> Drained:
        outbox = Outbox(copy)
        await outbox.start()
        deliverer = Deliverer(outbox, url, "office", secret, batch_size=batch_size, timeout=120,
                              backoff_first=0.05, backoff_cap=1.0)
        try:
            started = time.perf_counter()
            deliverer.start()
            deadline = started + timeout
            last_report = started
            while outbox.depth:
                await asyncio.sleep(0.02)
                now = time.perf_counter()
                if now - last_report >= 10:
                    last_report = now
                    log(f"  {deliverer.delivered_total:,} delivered, {outbox.depth:,} waiting "
                        f"({deliverer.delivered_total / (now - started):,.0f}/s)")
                if now > deadline:
                    raise RuntimeError(f"the outbox did not drain within {timeout:.0f} s "
                                       f"({outbox.depth:,} events left; last error: {deliverer.last_error})")
            seconds = time.perf_counter() - started
            return Drained(seconds, deliverer.requests_total, deliverer.failures_total)
        finally:
            await deliverer.stop()
            await outbox.close()
            copy.unlink(missing_ok=True)

    return asyncio.run(run())


# ---- child processes ----------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux /proc), None where that cannot be read."""
    try:
        return _common.cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None


def prepare_crm(database_url: str, workdir: Path) -> str:
    """Migrate, add the bridge and load the demo data; returns the bridge secret."""
    env = child_environment(database_url, SECRET_KEY)
    secret_file = workdir / f"secret-{time.monotonic_ns()}"
    for args in (["migrate", "--no-input", "-v", "0"], ["add-bridge", "office", "--secret-file", str(secret_file)],
                 ["seed-demo"]):
        done = subprocess.run([*CALLCENTER, *args], env=env, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"callcenter {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return secret_file.read_text(encoding="utf-8").strip()


# ---- targets ------------------------------------------------------------------------------------------------------


class BackendCpu:
    """The CPU time the PostgreSQL backends serving the database at ``url`` use from start() to stop(), when the
    server runs on this machine (Linux /proc): pg_stat_activity is read every half second for the backends of that
    database, each one's CPU taken from /proc, less what it had used at start(). A backend that ends between two
    reads loses its last half second; the server's shared processes (WAL writer, checkpointer) are not counted."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("postgres://", "postgresql://", 1)
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        if urlsplit(self.url).hostname not in ("127.0.0.1", "localhost", "::1") or not Path("/proc/self/stat").exists():
            self.error = "not a server on this machine"
            return
        self._read(starting=True)
        self.thread = threading.Thread(target=self._run, name="backend-cpu", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.5):
            self._read()

    def _read(self, *, starting: bool = False) -> None:
        import psycopg

        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as db:
                pids = [row[0] for row in db.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        except psycopg.Error as exc:
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return
        for pid in pids:
            used = cpu_seconds(pid)
            if used is None:
                continue
            self.first.setdefault(pid, used if starting else 0.0)
            self.last[pid] = used

    def stop(self) -> float | None:
        if self.thread is None:
            return None
        self.stopping.set()
        self.thread.join()
        self._read()
        if self.error is not None and not self.last:
            return None
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def timed_drain(pid: int, template: Path, workdir: Path, url: str, secret: str,
                options: argparse.Namespace, database_url: str | None = None) -> Drained:
    backends = BackendCpu(database_url) if database_url is not None else None
    if backends is not None:
        backends.start()
    before = cpu_seconds(pid)
    try:
        drained = drain(template, workdir, url, secret, options.batch_size, options.timeout)
    finally:
        database_cpu = backends.stop() if backends is not None else None
    after = cpu_seconds(pid)
    if before is not None and after is not None:
        drained.server_cpu = after - before
    drained.database_cpu = database_cpu
    return drained


def run_anchor(template: Path, workdir: Path, options: argparse.Namespace) -> Drained:
    secret = "anchor-secret-0123456789-abcdef"
    secret_file = workdir / "anchor.secret"
    secret_file.write_text(secret, encoding="utf-8")
    port = free_port()
    env = child_environment("sqlite:///unused.sqlite3", SECRET_KEY)
    with serving([sys.executable, str(RECEIVER), str(port), str(secret_file)], port, env, workdir / "anchor.log") \
            as receiver:
        return timed_drain(receiver.pid, template, workdir, f"http://127.0.0.1:{port}", secret, options)


def run_crm(label: str, database_url: str, count_stored: Callable[[], tuple[int, int]], template: Path,
            workdir: Path, options: argparse.Namespace) -> tuple[Drained, int, int]:
    log(f"{label}: migrate, add-bridge, seed-demo...")
    secret = prepare_crm(database_url, workdir)
    port = free_port()
    command = [*CALLCENTER, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    url = f"http://127.0.0.1:{port}"
    with serving(command, port, child_environment(database_url, SECRET_KEY), workdir / f"{label}.log") as crm:
        log(f"{label}: draining {options.events:,} events to {url} ...")
        postgres = database_url if database_url.startswith(("postgres://", "postgresql://")) else None
        drained = timed_drain(crm.pid, template, workdir, url, secret, options, postgres)
    stored, failed = count_stored()
    return drained, stored, failed


def sqlite_counts(path: Path) -> Callable[[], tuple[int, int]]:
    def count() -> tuple[int, int]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            stored, failed = db.execute(
                "SELECT count(*), coalesce(sum(failed), 0) FROM calls_processedevent WHERE event_id LIKE ?",
                (f"{PREFIX}:%",),
            ).fetchone()
        return int(stored), int(failed)

    return count


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str | None]:
    """A throwaway database on the server at ``admin_url`` (its URL), or None when the server is unreachable."""
    try:
        import psycopg  # noqa: F401 - only whether it is there
    except ImportError:
        log("postgres: psycopg is not installed; skipped")
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            url: str | None = stack.enter_context(
                throwaway_postgres(admin_url, f"callcenter_bench_drain_{os.getpid()}", connect_timeout=3, log=log))
        except PostgresUnreachable as unreachable:
            log(f"postgres: unreachable at {urlsplit(admin_url).hostname} ({unreachable.detail}); skipped")
            url = None
        yield url


def postgres_counts(url: str) -> Callable[[], tuple[int, int]]:
    def count() -> tuple[int, int]:
        import psycopg

        with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as db:
            row = db.execute(
                "SELECT count(*), count(*) FILTER (WHERE failed) FROM calls_processedevent WHERE event_id LIKE %s",
                (f"{PREFIX}:%",),
            ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    return count


# ---- report -------------------------------------------------------------------------------------------------------


def cpu_note(events: int, drained: Drained) -> str:
    if drained.server_cpu is None:
        return "cpu n/a"
    if drained.server_cpu < 0.1:  # below what /proc's clock ticks resolve well
        return "cpu <0.1s"
    note = f"cpu {drained.server_cpu:.1f}s = {events / drained.server_cpu:,.0f} events/cpu-s"
    if drained.database_cpu is not None:
        note += f", its PostgreSQL backends {drained.database_cpu:.1f}s"
    return note


def anchor_line(events: int, drained: Drained, batch_size: int) -> str:
    return (f"outbox_drain anchor: {events:,} events in {drained.seconds:.1f}s = {drained.rate(events):,.0f} events/s "
            f"| {cpu_note(events, drained)} "
            f"(batch {batch_size}, {drained.requests} requests; receiver verifies, decodes, acknowledges)")


def crm_line(label: str, events: int, drained: Drained, anchor: Drained | None, stored: int, failed: int) -> str:
    target = TARGET_SECONDS * events / TARGET_EVENTS
    ratio = f"{drained.seconds / anchor.seconds:.1f}x the anchor's time" if anchor else "no anchor"
    verdict = "OK" if drained.seconds < target else "MISSED"
    shown_target = f"{target:.0f}" if target >= 10 else f"{target:.1f}"
    return (f"outbox_drain {label}: {events:,} events in {drained.seconds:.1f}s = {drained.rate(events):,.0f} events/s"
            f" | {cpu_note(events, drained)} | crm/anchor {ratio} | target < {shown_target}s for {events:,}: {verdict}"
            f" | stored {stored:,} once, failed {failed}, retries {drained.failures}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    from callcenter.bridge.delivery import DEFAULT_BATCH_SIZE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=TARGET_EVENTS, help="events to queue (default 240,000)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"events per request (default {DEFAULT_BATCH_SIZE}, the bridge's own)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both",
                        help="CRM database(s); postgres is skipped when unreachable (default both)")
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL database to connect to for creating the throwaway one")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up a drain after this many seconds")
    # scripts/run_benches.py passes the same extra arguments to every benchmark: ignore the ones meant for others.
    options, ignored = parser.parse_known_args(argv)
    if ignored:
        log(f"ignoring arguments for other benchmarks: {' '.join(ignored)}")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    if options.events < 1:
        raise SystemExit("--events must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="outbox-drain-"))
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        template = workdir / "filled-outbox.sqlite3"
        started = time.perf_counter()
        queued = fill_outbox(template, options.events)
        log(f"queued {queued:,} events in {time.perf_counter() - started:.1f}s "
            f"({template.stat().st_size / 2**20:.0f} MiB outbox)")

        log("anchor: draining to the decode-and-acknowledge receiver...")
        anchor = run_anchor(template, workdir, options)
        print(anchor_line(queued, anchor, options.batch_size), flush=True)

        if options.db in ("sqlite", "both"):
            database = workdir / "crm.sqlite3"
            drained, stored, failed = run_crm("crm-sqlite", f"sqlite:///{database}", sqlite_counts(database),
                                              template, workdir, options)
            print(crm_line("crm-sqlite", queued, drained, anchor, stored, failed), flush=True)
            if (stored, failed) != (queued, 0):
                log(f"crm-sqlite: stored {stored:,} (expected {queued:,}), failed {failed}")
                return 1
        if options.db in ("postgres", "both"):
            with postgres_database(options.pg_url) as url:
                if url is not None:
                    drained, stored, failed = run_crm("crm-postgres", url, postgres_counts(url), template, workdir,
                                                      options)
                    print(crm_line("crm-postgres", queued, drained, anchor, stored, failed), flush=True)
                    if (stored, failed) != (queued, 0):
                        log(f"crm-postgres: stored {stored:,} (expected {queued:,}), failed {failed}")
                        return 1
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
