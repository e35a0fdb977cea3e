"""What the benchmarks in bench/ share: figures (percentile, milliseconds), progress on stderr, signals, ports, child
processes (the CRM or a receiver, served until the block ends; their CPU time), the throwaway PostgreSQL database,
and the Django set-up, bulk-load and cached-database helpers of the database benchmarks.

Not a benchmark itself (scripts/run_benches.py skips names starting with "_"). A benchmark runs as
`python bench/NAME.py`, which puts bench/ first on sys.path, so it imports this as `_common`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
EXIT_POSTGRES_UNREACHABLE = 3
STARTED = time.monotonic()  # when the benchmark started (it imports this first)


# ---- figures and progress -----------------------------------------------------------------------------------------


def log(message: str) -> None:
    """A progress line on stderr, stamped with the seconds since the start."""
    print(f"[{time.monotonic() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        raise ValueError("no samples")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def fmt_ms(seconds: float, small_decimals: int = 2) -> str:
    """Milliseconds: whole from 100 ms, one decimal from 10 ms, ``small_decimals`` below."""
    ms = seconds * 1000
    if ms >= 100:
        return f"{ms:.0f}ms"
    if ms >= 10:
        return f"{ms:.1f}ms"
    return f"{ms:.{small_decimals}f}ms"


# ---- signals, ports, child processes ------------------------------------------------------------------------------


def raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def interrupt_on_signals() -> None:
    """SIGTERM and SIGHUP end the benchmark as Ctrl-C does, so that its clean-up (finally blocks) runs."""
    signal.signal(signal.SIGTERM, raise_interrupt)
    signal.signal(signal.SIGHUP, raise_interrupt)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_environment(database_url: str, secret_key: str) -> dict[str, str]:
    """This environment without its Django and Callcenter settings, then a CRM's: its database and key, logs at
    WARNING."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CALLCENTER_"))}
    env.update(CALLCENTER_DATABASE_URL=database_url, CALLCENTER_SECRET_KEY=secret_key, CALLCENTER_LOG_LEVEL="WARNING")
    return env


@contextlib.contextmanager
def serving(command: list[str], port: int, env: dict[str, str], log_path: Path, *, name: str | None = None,
            timeout: float = 120.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (its output appended to ``log_path``) until the block ends; yields the child process once it
    accepts connections on ``port``. At the end: SIGTERM, then SIGKILL after 20 s."""
    with log_path.open("ab") as output:
        child = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"{name or ' '.join(command[:4])} exited with {child.returncode}; see {log_path}:\n"
                                   f"{log_path.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name or command[0]} did not listen on port {port} within {timeout:g} s") \
                        from None
                time.sleep(0.05)
        yield child
    finally:
        child.terminate()  # SIGTERM; like kill(), nothing once the child has ended
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=20)
        child.kill()
        child.wait()


# ---- a throwaway PostgreSQL database ------------------------------------------------------------------------------


class PostgresUnreachable(Exception):
    """The PostgreSQL server could not be connected to."""

    def __init__(self, admin_url: str, error: Exception) -> None:
        parts = urlsplit(admin_url)
        self.host = parts.hostname
        self.port = parts.port or 5432
        self.detail = str(error).strip()
        self.reason = self.detail.splitlines()[0] if self.detail else type(error).__name__
        super().__init__(f"PostgreSQL is unreachable at {self.host}:{self.port} ({self.reason})")


@contextlib.contextmanager
def throwaway_postgres(admin_url: str, name: str, *, connect_timeout: int = 5,
                       log: Callable[[str], None] = log) -> Iterator[str]:
    """Create the database ``name`` on the server of ``admin_url`` (an existing database to connect to first) and
    yield its URL; drop it when the block ends, even on failure or Ctrl-C. Raises PostgresUnreachable (nothing
    created) when the server cannot be reached."""
    import psycopg
    from psycopg import sql

    try:
        admin = psycopg.connect(admin_url.replace("postgres://", "postgresql://", 1), autocommit=True,
                                connect_timeout=connect_timeout)
    except psycopg.OperationalError as exc:
        raise PostgresUnreachable(admin_url, exc) from exc
    created = False
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created = True
        log(f"postgres: created the throwaway database {name}")
        parts = urlsplit(admin_url)
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        if created:
            try:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                log(f"postgres: dropped {name}")
            except psycopg.Error as exc:
                log(f"postgres: could not drop {name} ({exc}); drop it by hand: DROP DATABASE {name};")
        admin.close()


def run_on_throwaway_postgres(benchmark: str, admin_url: str, run: Callable[[str], int]) -> int:
    """``run`` on a throwaway database (its URL), Django's connections closed before it is dropped; its exit
    status. An unreachable server is one summary line and EXIT_POSTGRES_UNREACHABLE."""
    try:
        with throwaway_postgres(admin_url, f"callcenter_bench_{os.getpid()}") as url:
            try:
                return run(url)
            finally:
                with contextlib.suppress(Exception):
                    from django.db import connections

                    connections.close_all()
    except PostgresUnreachable as unreachable:
        print(f"{benchmark} postgres: SKIPPED - {unreachable}; start it (pg_ctlcluster <version> main start) or pass "
              "--pg-url", flush=True)
        return EXIT_POSTGRES_UNREACHABLE


# ---- the database benchmarks: Django in this process, bulk loads, the cached SQLite database ----------------------


def setup_django(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "callcenter.crm.settings"
    os.environ["CALLCENTER_SECRET_KEY"] = "bench-only-throwaway-key-" + os.urandom(8).hex()
    os.environ["CALLCENTER_DATABASE_URL"] = database_url
    os.environ.setdefault("CALLCENTER_LOG_LEVEL", "WARNING")
    import django

    django.setup()


def column_plan(model: Any, generated: Sequence[str], script: str) -> tuple[list[str], tuple[Any, ...]]:
    """Column names in insert order: the generated fields first, then every other concrete field with the value an
    unsaved instance holds (its default), adapted for the database as a save would. ``script`` is named when the
    model no longer has a generated field."""
    from django.db import connection

    by_attname = {field.attname: field for field in model._meta.concrete_fields}
    missing = [name for name in generated if name not in by_attname]
    if missing:
        raise SystemExit(f"{model.__name__} no longer has {missing}; update {script}")
    columns = [by_attname[name].column for name in generated]
    constants = []
    for attname, field in by_attname.items():
        if attname not in generated:
            columns.append(field.column)
            constants.append(field.get_db_prep_save(field.get_default(), connection))
    return columns, tuple(constants)


def cached_sqlite(path: Path, expected_fingerprint: str, counts: dict[str, str]) -> tuple[dict[str, str] | None, str]:
    """The ``bench_meta`` of the database at ``path`` when it is completely loaded with this fingerprint: each query
    of ``counts`` (name: SQL giving one number) gives what bench_meta holds under that name. Otherwise None and
    why. Read without Django."""
    if not path.exists():
        return None, "no cached database"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            meta = dict(db.execute("SELECT k, v FROM bench_meta").fetchall())
            if meta.get("fingerprint") != expected_fingerprint:
                return None, "cached database is from another version or size"
            found = {name: db.execute(query).fetchone()[0] for name, query in counts.items()}
    except sqlite3.Error as exc:
        return None, f"cached database unreadable or incomplete ({exc})"
    if any(str(value) != meta.get(name) for name, value in found.items()):
        return None, f"cached database changed ({', '.join(f'{value} {name}' for name, value in found.items())})"
    return meta, ""


def setup_cached_sqlite(cache_dir: str, name: str) -> Path:
    """The path of the cached database ``name`` in ``cache_dir`` (made if missing), with Django set up on it."""
    path = Path(cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    path /= name
    setup_django(f"sqlite:///{path}")  # four slashes: absolute path
    return path


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def sqlite_for_bulk_load(cache_kib: int) -> None:
    """Django's SQLite connection without a journal or syncs, with a larger cache: a failed load is thrown away, so
    it needs no journal (sqlite_after_bulk_load brings WAL back)."""
    from django.db import connection

    connection.ensure_connection()
    with connection.cursor() as c:
        c.execute("PRAGMA journal_mode=OFF")
        c.execute("PRAGMA synchronous=OFF")
        c.execute(f"PRAGMA cache_size=-{cache_kib}")


def sqlite_after_bulk_load(meta: dict[str, str]) -> None:
    """Record ``meta`` (the fingerprint and the counts cached_sqlite checks) in bench_meta; the product's journal,
    syncs and cache again."""
    from django.db import connection

    with connection.cursor() as c:
        c.execute("CREATE TABLE IF NOT EXISTS bench_meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        c.executemany("INSERT OR REPLACE INTO bench_meta (k, v) VALUES (%s, %s)", list(meta.items()))
        c.execute("PRAGMA cache_size=-2000")
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")


def fsync(path: Path) -> None:
    """Written with synchronous=OFF: flush now, or the kernel's write-back lands in the timings."""
    with open(path, "rb+") as db_file:
        os.fsync(db_file.fileno())


def run_children(script: str, benchmark: str, argv: list[str]) -> int:
    """--db both: ``script`` again for each database in a child process of its own (a Django process has one
    settings module), with the other arguments; its stdout passes through. An unreachable PostgreSQL server is
    reported by the child, not a failure."""
    passthrough, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--db":
            skip = i + 1 < len(argv)
            continue
        if not arg.startswith("--db="):
            passthrough.append(arg)
    failures = 0
    for db in ("sqlite", "postgres"):
        child = subprocess.Popen([sys.executable, script, "--db", db, *passthrough], stdout=subprocess.PIPE,
                                 text=True)
        previous = signal.signal(signal.SIGTERM, lambda signum, _f, c=child: c.send_signal(signum))
        try:
            assert child.stdout is not None
            for line in child.stdout:
                print(line, end="", flush=True)
            code = child.wait()
        except KeyboardInterrupt:
            child.wait()  # it got the same Ctrl-C; let it drop its database
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
        if code == EXIT_POSTGRES_UNREACHABLE and db == "postgres":
            continue  # asked for "both": an absent server is reported, not a failure
        if code != 0:
            print(f"{benchmark} {db}: FAILED (exit {code})", flush=True)
            failures += 1
    return 1 if failures else 0


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """--cache-dir and --rebuild: the SQLite database is kept between runs."""
    parser.add_argument("--cache-dir", default=str(ROOT / "var" / "bench"), help="where the SQLite database is kept")
    parser.add_argument("--rebuild", action="store_true", help="load the SQLite database again even if cached")


def add_postgres_arguments(parser: argparse.ArgumentParser) -> None:
    """--pg-url and --check-targets."""
    parser.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server to create the throwaway database on (an existing database to "
                             "connect to first)")
    parser.add_argument("--check-targets", action="store_true", help="exit 1 when a target is missed")


def run_database_benchmark(benchmark: str, script: str, parse: Callable[[list[str]], Any],
                           run_sqlite: Callable[[Any], int], run_postgres: Callable[[Any, str], int],
                           argv: list[str] | None = None) -> int:
    """The entry point of a benchmark with --db sqlite|postgres|both and --pg-url: both databases in child processes
    of their own, or ``run_sqlite(options)``, or ``run_postgres(options, url)`` on a throwaway database; SIGTERM and
    SIGHUP end it as Ctrl-C does (its databases dropped)."""
    argv = sys.argv[1:] if argv is None else argv
    options = parse(argv)
    if options.db == "both":
        return run_children(script, benchmark, argv)
    interrupt_on_signals()
    try:
        if options.db == "sqlite":
            return run_sqlite(options)
        return run_on_throwaway_postgres(benchmark, options.pg_url, lambda url: run_postgres(options, url))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
