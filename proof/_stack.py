"""What the fault proofs (crm_outage, bridge_kills, scale_out) share: the real CRM (`callcenter serve`) on SQLite or a
throwaway PostgreSQL database, the real bridge (`callcenter bridge run`), the simulated PBX in a thread of this
process (its AMI on a real TCP port on loopback) with a call driver and a record of every call leg it rang, and the
comparison of that record with the CRM's rows.

Not a proof itself (scripts/run_proof.py skips names starting with "_"). Child processes are spawned as the live
tests spawn them (tests/live/labs.py: registered, `setpriv --pdeathsig TERM`, so they die with this process even when
it is killed) and stopped by `run_proof_module` whatever happens; the PostgreSQL database comes from bench/_common.py
(`throwaway_postgres`: dropped at the end, even on Ctrl-C).

The PBX's record is the truth a proof compares against: every DialBegin to an agent's phone is one leg
(Linkedid, extension) that the CRM must store as one call row (with the demo settings every leg that rang is a row:
answered or missed), never twice, and end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import PostgresUnreachable, fmt_ms, percentile, throwaway_postgres
from tests.live.labs import free_tcp_port, reap_all, spawn, stop_process, wait_until
from tests.live.stack import BridgeControlPort

__all__ = ["PostgresUnreachable", "fmt_ms", "free_tcp_port", "percentile", "wait_until"]

ROOT = Path(__file__).resolve().parent.parent
CALLCENTER = [sys.executable, "-m", "callcenter"]
SECRET_KEY = "proof-suite-throwaway-key-" + "0123456789abcdef" * 2
BRIDGE_ID = "office"
AMI_USER = "crm"
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/postgres"
STARTED = time.monotonic()
_NAME = "proof"


def log(message: str) -> None:
    """A progress line on stderr, stamped with the seconds since the proof started."""
    print(f"[{_NAME} {time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


# ---- results and the module's life ----------------------------------------------------------------------------------


@dataclass
class Results:
    """The PROOF lines of one module, printed last on stdout."""

    name: str
    lines: list[tuple[str, str, bool]] = field(default_factory=list)

    def add(self, what: str, figure: str, ok: bool) -> None:
        self.lines.append((what, figure, ok))
        log(f"{'PASS' if ok else 'FAIL'}: {what}: {figure}")

    def finish(self) -> int:
        for what, figure, ok in self.lines:
            print(f"PROOF {self.name} | {what} | {figure} | {'PASS' if ok else 'FAIL'}", flush=True)
        return 0 if self.lines and all(ok for _w, _f, ok in self.lines) else 1


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_options(name: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                  argv: Sequence[str]) -> argparse.Namespace:
    """The module's options: --quick, --keep and its own."""
    parser = argparse.ArgumentParser(prog=f"python -m proof.{name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a shorter smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, logs)")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def run_proof_module(name: str, doc: str, add_arguments: Callable[[argparse.ArgumentParser], None],
                     run: Callable[[argparse.Namespace, Results, Path], None], argv: Sequence[str] | None) -> int:
    """Parse the arguments (--quick, --keep and the module's own), run ``run(options, results, workdir)`` and print
    the PROOF lines. Whatever happens (an exception, Ctrl-C, SIGTERM) every child is stopped and the work directory
    removed; an exception is one FAIL line naming it (its traceback on stderr)."""
    global _NAME
    _NAME = name
    options = parse_options(name, doc, add_arguments, sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    results = Results(name)
    workdir = Path(tempfile.mkdtemp(prefix=f"proof-{name}-"))
    try:
        run(options, results, workdir)
    except KeyboardInterrupt:
        log("interrupted")
        results.add("interrupted", "stopped before the end", False)
    except Exception as exc:  # noqa: BLE001 - reported as a FAIL line; the traceback goes to stderr
        traceback.print_exc()
        results.add("the proof ran to its end", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    [:300], False)
    finally:
        left = reap_all()
        if left:
            log(f"stopped {len(left)} children still running")
        if options.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return results.finish()


# ---- the database -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """The CRM's database: a SQLite file or a PostgreSQL database, read back with plain SQL."""

    url: str

    @property
    def kind(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgres"

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
                return db.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(self.url.replace("postgres://", "postgresql://", 1), connect_timeout=10) as db:
            return list(db.execute(sql).fetchall())  # type: ignore[arg-type] - plain SQL of our own


@contextlib.contextmanager
def database(kind: str, workdir: Path, pg_admin_url: str = DEFAULT_PG_URL) -> Iterator[Database]:
    """A fresh SQLite file in ``workdir``, or a throwaway PostgreSQL database (dropped when the block ends)."""
    if kind == "sqlite":
        yield Database(f"sqlite:///{workdir / 'crm.sqlite3'}")
        return
    with throwaway_postgres(pg_admin_url, f"callcenter_proof_{_NAME}_{os.getpid()}", log=log) as url:
        yield Database(url)


def crm_environment(db: Database, **extra: str) -> dict[str, str]:
    """The environment of someone starting the CRM: none of ours, the database, the key, logs at WARNING."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CALLCENTER_"))}
    env.update(CALLCENTER_DATABASE_URL=db.url, CALLCENTER_SECRET_KEY=SECRET_KEY, CALLCENTER_LOG_LEVEL="WARNING",
               PYTHONUNBUFFERED="1", **extra)
    return env


def prepare_crm(db: Database, workdir: Path) -> Path:
    """`callcenter migrate`, `add-bridge office --secret-file` and `seed-demo`; returns the bridge secret's file."""
    secret_file = workdir / "bridge.secret"
    for args in (["migrate", "--no-input", "-v", "0"], ["add-bridge", BRIDGE_ID, "--secret-file", str(secret_file)],
                 ["seed-demo"]):
        done = subprocess.run([*CALLCENTER, *args], env=crm_environment(db), capture_output=True, text=True,  # noqa: S603
                              cwd=ROOT, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"callcenter {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return secret_file


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def established_to(port: int) -> int:
    """How many TCP connections to 127.0.0.1:``port`` are established right now, read from /proc/net/tcp (the
    server's side of each): when a client such as the bridge first gets in touch, whatever it then sends."""
    count = 0
    suffix = f":{port:04X}"
    with contextlib.suppress(OSError), open("/proc/net/tcp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] == "01":
                count += 1
    return count


class _Child:
    """A child process of the proof: killed without any clean-up, or stopped (SIGTERM, then SIGKILL after
    ``grace`` seconds)."""

    process: subprocess.Popen[bytes] | None = None
    grace: float = 15

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        stop_process(self.process)

    def stop(self) -> None:
        stop_process(self.process, grace=self.grace)


class CrmServer(_Child):
    """`callcenter serve` on 127.0.0.1:``port`` for ``db`` (the same port across restarts)."""

    def __init__(self, db: Database, workdir: Path, *, label: str = "crm", port: int | None = None,
                 **env: str) -> None:
        self.db = db
        self.port = port or free_tcp_port()
        self.log_path = workdir / f"{label}.log"
        self.label = label
        self.env = crm_environment(db, **env)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> float:
        """Start it; returns the time.time() at which it accepted its first connection."""
        self.process = spawn([*CALLCENTER, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                              "--no-access-log"], log=self.log_path, env=self.env, cwd=ROOT)
        process = self.process

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the CRM ({self.label}) exited with {process.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            return listening(self.port)

        wait_until(up, f"the CRM ({self.label}) to listen on port {self.port}", timeout=timeout, interval=0.01)
        return time.time()



# ---- the bridge ---------------------------------------------------------------------------------------------------


class BridgeProcess(_Child, BridgeControlPort):
    """`callcenter bridge run` with its settings file (following every 3-digit extension of the PBX at
    ``ami_port``, delivering to the CRM at ``crm_port``), data (outbox, logs) and output in ``workdir``."""

    grace = 30.0  # its final delivery of the outbox may take a while

    def __init__(self, workdir: Path, *, crm_port: int, secret_file: Path, ami_port: int, ami_secret: str) -> None:
        self.port = free_tcp_port()
        self.data = workdir / "bridge-data"
        self.log_path = workdir / "bridge.out"
        self.config = workdir / "bridge.toml"
        ami_secret_file = workdir / "ami.secret"
        ami_secret_file.write_text(ami_secret + "\n", encoding="utf-8")
        ami_secret_file.chmod(0o600)
        settings = {
            "bridge": {
                "phone_system": "asterisk", "bridge_id": BRIDGE_ID, "address": "127.0.0.1", "port": self.port,
                "callback_address": "127.0.0.1", "callback_port": crm_port, "callback_scheme": "http",
                "secret_file": str(secret_file), "data_dir": str(self.data), "extensions": [],
                "internal_digits": 3, "external_log": True, "extended_log": False, "run_at_startup": False,
            },
            "asterisk": {
                "host": "127.0.0.1", "port": ami_port, "username": AMI_USER, "secret_file": str(ami_secret_file),
                "originate_context": "from-internal", "originate_channel": "PJSIP/{ext}", "status_timeout": 10.0,
            },
        }
        lines: list[str] = []
        for table, values in settings.items():
            lines.append(f"[{table}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
            lines.append("")
        self.config.write_text("\n".join(lines), encoding="utf-8")
        self.config.chmod(0o600)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 120.0) -> float:
        """Start it and wait until its /health says it is connected to the PBX; returns that moment (time.time())."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLCENTER_", "DJANGO_"))}
        env["PYTHONUNBUFFERED"] = "1"
        self.process = spawn([*CALLCENTER, "bridge", "run", "--config", str(self.config)], log=self.log_path,
                             env=env, cwd=ROOT)
        self.starts += 1
        process = self.process

        def connected() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the bridge exited with {process.returncode}:\n{self.output()}")
            try:
                return bool(self.health().get("pbx_connected"))
            except (OSError, ValueError):
                return False

        wait_until(connected, "the bridge to connect to the PBX", timeout=timeout, interval=0.02, detail=self.output)
        return time.time()


    def output(self) -> str:
        parts = [self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""]
        errors = self.data / "errors.log"
        if errors.exists():
            parts.append("--- errors.log (end)\n" + "\n".join(errors.read_text(errors="replace").splitlines()[-20:]))
        return "\n".join(parts)

    def outbox_contents(self, into: Path) -> tuple[list[str], list[str]]:
        """(event ids queued, event ids set aside as dead letters) in the outbox, read from a copy of its files.
        Only while the bridge is not running (killed or stopped): the copy is what a new start would find."""
        into.mkdir(parents=True, exist_ok=True)
        source = self.data / "outbox.sqlite3"
        if not source.exists():
            return [], []
        target = into / "outbox.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
            if Path(str(source) + suffix).exists():
                shutil.copyfile(str(source) + suffix, str(target) + suffix)
        with contextlib.closing(sqlite3.connect(target)) as db:
            queued = [row[0] for row in db.execute("SELECT event_id FROM events")]
            dead = [row[0] for row in db.execute("SELECT event_id FROM dead_letters")]
        return queued, dead


# ---- the PBX: the simulator in a thread of this process, a call driver and its record --------------------------------


@dataclass
class Leg:
    """One agent's phone rung by the PBX: (linkedid, extension), when it began ringing and when it hung up."""

    call_id: str
    extension: str
    rang_at: float
    ended_at: float | None = None


class LegRecord:
    """A sink of the simulator's event stream: every leg it rang to an agent's phone, and when it ended."""

    def __init__(self, agents: Sequence[str]) -> None:
        self.agents = frozenset(agents)
        self.legs: dict[tuple[str, str], Leg] = {}
        self._by_uniqueid: dict[str, Leg] = {}
        self.rang_by_number: dict[str, float] = {}  # caller's last 10 digits -> first DialBegin (time.time())

    def __call__(self, event: Any) -> None:
        if event.name == "DialBegin":
            headers = dict(event.headers)
            channel = headers.get("DestChannel", "")
            ext = channel.removeprefix("PJSIP/").partition("-")[0]
            if not channel.startswith("PJSIP/") or ext not in self.agents:
                return
            now = time.time()
            leg = Leg(headers.get("DestLinkedid", ""), ext, now)
            self.legs.setdefault((leg.call_id, ext), leg)
            self._by_uniqueid[headers.get("DestUniqueid", "")] = leg
            digits = "".join(ch for ch in headers.get("CallerIDNum", "") if ch.isdigit())[-10:]
            self.rang_by_number.setdefault(digits, now)
        elif event.name == "Hangup":
            leg = self._by_uniqueid.pop(dict(event.headers).get("Uniqueid", ""), None)
            if leg is not None:
                leg.ended_at = time.time()


class CallDriver:
    """Inbound calls at ``rate`` per second to the agents in turn (so no phone is ever busy: each gets a call every
    len(agents)/rate seconds, longer than a call lasts). Four in five are answered after ``ring`` s and last ``talk``
    s; one in five is missed (the caller gives up after ``abandon`` s, before the phone would answer). Every call
    comes from a number of its own (last 10 digits unique in the run), every third from a contact of the demo data's
    kind of number. Runs in the PBX's event loop (PbxThread.driver)."""

    def __init__(self, pbx: Any, agents: Sequence[str], *, talk: Sequence[float] = (1.0, 1.5, 2.0, 2.5),
                 abandon: float = 0.3, first_number: int = 0) -> None:
        self.pbx = pbx
        self.agents = list(agents)
        self.talk = list(talk)
        self.abandon = abandon
        self.started = 0
        self.numbers: list[str] = []
        self._next_number = first_number
        self._rate = 0.0
        self._anchor = 0.0
        self._anchor_count = 0
        self._timer: Any = None

    def set_rate(self, rate: float) -> None:
        """From now on ``rate`` calls per second (0 stops)."""
        clock = self.pbx.clock
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._rate = rate
        self._anchor = clock.now()
        self._anchor_count = self.started
        if rate > 0:
            self._schedule()

    def _schedule(self) -> None:
        due = self._anchor + (self.started - self._anchor_count) / self._rate
        self._timer = self.pbx.clock.call_at(due, self._tick)

    def _tick(self) -> None:
        self._timer = None
        index = self.started
        self.started += 1
        number = f"69{(self._next_number + index) % 100_000_000:08d}"
        if index % 3 == 0:
            number = "0030" + number
        self.numbers.append(number[-10:])
        ext = self.agents[index % len(self.agents)]
        if index % 5 == 4:
            self.pbx.inbound_call(number, ext, abandon_after=self.abandon)
        else:
            self.pbx.inbound_call(number, ext, name="Πελάτης" if index % 2 else "",
                                  hangup_after=self.talk[index % len(self.talk)])
        if self._rate > 0:
            self._schedule()


class PbxThread:
    """The simulated Asterisk (SimulatedPBX) serving AMI on a loopback port, its event loop in a thread of this
    process; agents answer after ``ring`` seconds of ringing. ``record`` is the PBX's own account of the legs."""

    def __init__(self, agents: Sequence[str], ami_secret: str, *, ring: float = 0.6,
                 talk: Sequence[float] = (1.0, 1.5, 2.0, 2.5)) -> None:
        from callcenter.pbxsim import Behaviour, SimulatedPBX

        # A killed bridge's connection is written to until the simulator notices it is gone: asyncio says so once per
        # write ("socket.send() raised exception."), which buries the proof's progress.
        logging.getLogger("asyncio").setLevel(logging.ERROR)

        self.agents = list(agents)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="pbxsim", daemon=True)
        self._thread.start()
        self.record = LegRecord(agents)

        async def start() -> Any:
            pbx = SimulatedPBX(users={AMI_USER: ami_secret}, agents={ext: "" for ext in agents},
                               behaviour=Behaviour(answer_after=ring), ring_timeout=120.0)
            await pbx.start()
            pbx.core.sinks.append(self.record)
            return pbx

        self.pbx = self.run(start())
        self.driver = CallDriver(self.pbx, agents, talk=talk, first_number=int(time.time()) % 10_000 * 10_000)

    @property
    def port(self) -> int:
        return int(self.pbx.port)

    def run(self, coroutine: Any, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def call(self, function: Callable[[], Any], timeout: float = 60.0) -> Any:
        async def wrapper() -> Any:
            return function()

        return self.run(wrapper(), timeout)

    def set_rate(self, rate: float) -> None:
        self.call(lambda: self.driver.set_rate(rate))

    @property
    def calls_started(self) -> int:
        return int(self.call(lambda: self.driver.started))

    def channels(self) -> int:
        return int(self.call(lambda: len(self.pbx.channels())))

    def wait_idle(self, timeout: float = 120.0) -> None:
        wait_until(lambda: self.channels() == 0, "the PBX to have no channel left", timeout=timeout, interval=0.2)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(lambda: self.driver.set_rate(0))
            self.run(self.pbx.stop(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


# ---- comparing the PBX's record with the CRM's rows ---------------------------------------------------------------


@dataclass
class Comparison:
    """The PBX's legs against the CRM's call rows and legs."""

    pbx_legs: int
    stored: int  # PBX legs with exactly one call row
    missing: list[tuple[str, str]]  # PBX legs without a call row
    duplicated: int  # call rows beyond one per PBX leg, and rows of no leg the PBX rang
    open_rows: int  # call rows not ended
    open_legs: int  # CRM legs not ended
    failed_events: int  # events the CRM could not apply (kept for an administrator)

    @property
    def open_after(self) -> int:
        return self.open_rows + self.open_legs


def compare(record: LegRecord, db: Database, *, prefix: str = "") -> Comparison:
    rows = db.query("SELECT pbx_call_id, extension, state FROM calls_call")
    legs = db.query("SELECT pbx_call_id, extension, ended_at FROM calls_callleg")
    failed = db.query("SELECT count(*) FROM calls_processedevent WHERE failed")[0][0]
    expected = {key for key in record.legs if key[0].startswith(prefix)}
    counts: dict[tuple[str, str], int] = {}
    for call_id, ext, _state in rows:
        counts[(str(call_id), str(ext))] = counts.get((str(call_id), str(ext)), 0) + 1
    duplicated = sum(n - 1 for n in counts.values() if n > 1) + sum(1 for key in counts if key not in expected)
    missing = sorted(key for key in expected if key not in counts)
    return Comparison(
        pbx_legs=len(expected), stored=sum(1 for key in expected if counts.get(key) == 1), missing=missing,
        duplicated=duplicated, open_rows=sum(1 for row in rows if row[2] != "ended"),
        open_legs=sum(1 for leg in legs if leg[2] is None), failed_events=int(failed),
    )


def processed_event_ids(db: Database) -> set[str]:
    return {str(row[0]) for row in db.query("SELECT event_id FROM calls_processedevent")}


def settle(pbx: PbxThread, bridge: BridgeProcess, db: Database, timeout: float = 300.0) -> None:
    """Until the PBX has no channel, the bridge has delivered everything it produced (outbox empty, nothing new read
    between two looks) and the CRM has no open leg."""
    pbx.wait_idle(timeout)
    last: tuple[float, float] | None = None

    def quiet() -> bool:
        nonlocal last
        metrics = bridge.metrics()
        now = (metrics["callcenter_bridge_events_in_total"], metrics["callcenter_bridge_events_delivered_total"])
        open_legs = db.query("SELECT count(*) FROM calls_callleg WHERE ended_at IS NULL")[0][0]
        done = metrics["callcenter_bridge_outbox_depth"] == 0 and open_legs == 0 and now == last
        last = now
        return done

    wait_until(quiet, "the bridge to deliver everything and the CRM to close every leg", timeout=timeout,
               interval=0.5, detail=bridge.output)


def agents(count: int, first: int = 100) -> list[str]:
    if not 1 <= count <= 999 - first + 1:
        raise ValueError(f"{count} agents do not fit in 3-digit extensions from {first}")
    return [str(first + index) for index in range(count)]
