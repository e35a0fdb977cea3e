"""The bridge's durable outbox: every wire event is kept in SQLite until the CRM confirms it.

Rules
- ``put()`` is the connectors' EmitFn: it encodes the event and appends it to an in-memory queue. It never touches the
  disk, so the PBX socket reader never waits on it. Before it stores them, the writer checks every event against
  the wire schema, its bounds and its time range (wire.all_valid for a whole transaction in one decode, then
  wire.check_event: a Struct built in Python is not checked by msgspec): an event a translator built wrong is
  repaired (texts cut to their bounds, an absurd time replaced by the time it was put; one warning line), never
  stored as it is for the CRM to refuse; one that cannot be repaired is counted in ``dropped_total``, with an error.
  One writer thread commits the queue to SQLite in transactions of at most ``max_batch`` events; while it commits,
  new events gather for the next transaction (group commit).
- An event is *accepted* once its transaction is committed. ``flush()`` waits until everything put so far is
  accepted; ``accepted_total`` counts accepted events.
- Durability: WAL journal with ``synchronous=NORMAL`` (the default). A committed transaction is in the WAL file, in the
  operating system's hands, before ``COMMIT`` returns, so it survives the bridge process dying in any way (``kill -9``,
  a crash, a power-off of the *process*). It is fsync'ed at the next checkpoint, so an *operating-system* crash or a
  power cut can lose the last transactions committed before it. ``synchronous="FULL"`` fsyncs the WAL at every commit
  and closes that gap too, at the price of one fsync per writer transaction (fine on an SSD, slow on an SD card).
- Events leave in order: ``peek(limit)`` returns the oldest, ``remove_through(seq)`` deletes them once the CRM has
  confirmed. ``seq`` only grows (AUTOINCREMENT), even across restarts and an emptied table.
- An event the CRM refuses on its own (HTTP 400 for a single event) is moved to the ``dead_letters`` table with the
  status and reason, logged as an error and kept; ``requeue_dead_letters()`` puts them back (at the end) once the
  cause is fixed. Nothing is ever dropped silently.
- Size guard: past ``max_events`` events or ``max_bytes`` of queued events the outbox keeps accepting (the events are
  the point of the bridge) but logs an error saying how much is queued, how much disk it uses and how much is free,
  again at most every ``guard_log_seconds`` while it stays over. ``over_limit`` reports it.
- Only if the disk itself refuses writes (full, read-only, I/O error) do events wait in memory; the writer retries
  with back-off and logs each failure. Past ``max_pending`` such events, new ones are refused: counted in
  ``dropped_total`` and logged as errors, never silently.
- The file: ``PRAGMA application_id`` marks it as an outbox and ``PRAGMA user_version`` holds the schema version;
  creation and migrations run in one transaction each, so a crash halfway leaves the previous version. A file from a
  newer bridge, or a database that is not an outbox, is refused with a clear error and never modified. The database
  is opened in exclusive locking mode: a second bridge process on the same file gets a clear error instead of
  delivering the same events in parallel. After a crash SQLite recovers the WAL on open; nothing else is needed.

No Django here (import-linter contract): the bridge runs without the CRM installed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from callcenter import wire

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
APPLICATION_ID: Final = 0x43434258  # "CCBX": this SQLite file is a callcenter bridge outbox

DEFAULT_MAX_EVENTS: Final = 5_000_000  # ~16 h of a busy call center (20 calls/s) without the CRM
DEFAULT_MAX_BYTES: Final = 2 * 1024**3
DEFAULT_MAX_PENDING: Final = 200_000  # events held in memory while the disk refuses writes
BUSY_TIMEOUT_MS: Final = 1_000
VACUUM_FREE_PAGES: Final = 1_024  # an emptied outbox gives its pages back to the file system past 4 MiB

_WRITE_RETRY_FIRST: Final = 0.05
_WRITE_RETRY_CAP: Final = 5.0


class OutboxError(Exception):
    """The outbox file cannot be used; the message says why and what to do."""


class OutboxClosedError(OutboxError):
    """put() after close(): a bug in the caller, events must not be handed over after shutdown."""


@dataclass(frozen=True)
class DeadLetter:
    """An event the CRM refused on its own, set aside with the reason."""

    seq: int
    event_id: str
    accepted_at: float
    failed_at: float
    status: int
    reason: str
    body: bytes


@dataclass(frozen=True)
class OutboxMetrics:
    depth: int  # events not yet confirmed by the CRM (on disk + waiting for the writer)
    pending: int  # events put but not yet committed
    queued_bytes: int  # encoded size of the events on disk
    bytes_on_disk: int  # database + WAL files
    disk_free_bytes: int | None
    oldest_age_seconds: float | None
    accepted_total: int
    dropped_total: int
    dead_letters: int
    over_limit: bool


_Queued = tuple[str, float, bytes, wire.Event]  # (event id, time put, encoded event, event)


# ---- schema ---------------------------------------------------------------------------------------------------------

_TABLES: Final = ("events", "dead_letters", "sqlite_sequence")


def _create_version_1(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE events ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " event_id TEXT NOT NULL,"
        " accepted_at REAL NOT NULL,"
        " body BLOB NOT NULL)"
    )
    db.execute(
        "CREATE TABLE dead_letters ("
        " seq INTEGER PRIMARY KEY,"
        " event_id TEXT NOT NULL,"
        " accepted_at REAL NOT NULL,"
        " failed_at REAL NOT NULL,"
        " status INTEGER NOT NULL,"
        " reason TEXT NOT NULL,"
        " body BLOB NOT NULL)"
    )


# MIGRATIONS[n] takes a file from version n to n + 1. Append, never edit: old files in the field run these in order.
MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (_create_version_1,)
assert len(MIGRATIONS) == SCHEMA_VERSION


def _open_database(path: Path, synchronous: str) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open the outbox {path}: {exc}; check that the directory exists and is writable") \
            from exc
    try:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if application_id not in (0, APPLICATION_ID) or (application_id == 0 and tables - set(_TABLES)):
            raise OutboxError(f"{path} is an SQLite database but not a bridge outbox; give the outbox its own file")
        if version > SCHEMA_VERSION:
            raise OutboxError(
                f"the outbox {path} has schema version {version}, written by a newer bridge; this bridge understands "
                f"up to {SCHEMA_VERSION}: run the newer bridge until the outbox is empty, or upgrade this one"
            )
        if version == 0 and not tables:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only possible before the first table exists
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(
                f"the outbox {path} cannot use a write-ahead log (journal mode stays {mode!r}); put the bridge's "
                "data directory on a local disk"
            )
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA journal_size_limit=67108864")  # a checkpointed WAL shrinks back to 64 MiB
        for step in range(version, SCHEMA_VERSION):
            db.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[step](db)
                db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                db.execute(f"PRAGMA user_version={step + 1}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            log.info("outbox %s: schema version %d", path, step + 1)
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc):
            raise OutboxError(
                f"the outbox {path} is in use by another bridge process; stop it, or give this bridge another "
                "data directory"
            ) from exc
        raise OutboxError(f"cannot use the outbox {path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        db.close()
        raise OutboxError(
            f"the outbox {path} is damaged ({exc}); move it aside to start a new one (its undelivered events stay in "
            "the moved file)"
        ) from exc
    except BaseException:
        db.close()
        raise
    return db


# ---- the outbox ---------------------------------------------------------------------------------------------------


class Outbox:
    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = 500,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_pending: int = DEFAULT_MAX_PENDING,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        guard_log_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError("synchronous is 'NORMAL' or 'FULL'")
        self.path = Path(path)
        self.max_batch = max_batch
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_pending = max_pending
        self.guard_log_seconds = guard_log_seconds
        self._clock = clock
        self._db = _open_database(self.path, synchronous)
        self._db_lock = threading.Lock()
        with self._db_lock:
            stored, queued_bytes, oldest = self._db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0), min(accepted_at) FROM events"
            ).fetchone()
            self._dead_letters: int = self._db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        self._stored: int = stored
        self._queued_bytes: int = queued_bytes
        self._oldest_stored_at: float | None = oldest
        if stored:
            log.info("outbox %s: %d events from before the restart wait for delivery", self.path, stored)
        if self._dead_letters:
            log.warning("outbox %s: %d events set aside as refused by the CRM (dead letters)", self.path,
                        self._dead_letters)

        # (event id, time put, encoded event, event); filled by put() on any thread, emptied by the writer thread
        self._queue: collections.deque[_Queued] = collections.deque()
        self._in_flight = 0
        self._write_failing = False
        self._wake = threading.Event()
        self._stopping = False
        self._closed = False
        self._db_closed = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []

        self._put_total = 0
        self._accepted_total = 0
        self._dropped_total = 0
        self._over_limit = False
        self._guard_logged_at = float("-inf")
        self._drop_logged_at = float("-inf")
        # Set (on the event loop) after every commit; the deliverer clears it before peeking and waits on it when
        # the outbox is empty, so it wakes as soon as a new event is accepted.
        self.committed = asyncio.Event()

    # ---- life cycle -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._thread is not None:
            return
        if self._closed:
            raise OutboxClosedError("the outbox is closed; open a new Outbox")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer_main, name="outbox-writer", daemon=True)
        self._thread.start()
        if self._stored or self._queue:
            self.committed.set()

    async def close(self, timeout: float = 30.0) -> None:
        """Commit what was put, stop the writer and close the file. Events the disk still refuses after ``timeout``
        seconds are lost and said so in an error."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is None and self._queue:  # put() but never start()ed: write them now
            thread = threading.Thread(target=self._writer_main, name="outbox-writer", daemon=True)
            thread.start()
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout)
        lost = len(self._queue) + self._in_flight
        if lost:
            log.error("outbox %s: the disk refused writes until shutdown; %d events put were not stored",
                      self.path, lost)
            self._queue.clear()
        self._resolve_flush_waiters()
        if thread is not None and thread.is_alive():
            return  # the writer still holds the connection; it ends on its own once its write fails
        with self._db_lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._db_closed = True

    # ---- accepting events -------------------------------------------------------------------------------------------

    def put(self, event: wire.Event) -> None:
        """Queue ``event`` for the writer; never blocks. It is accepted once committed (see flush())."""
        if self._closed:
            raise OutboxClosedError(f"event {event.event_id} put after the outbox was closed")
        self._put_total += 1
        if self._write_failing and len(self._queue) >= self.max_pending:
            self._dropped_total += 1
            now = time.monotonic()
            if now - self._drop_logged_at >= 10.0:
                self._drop_logged_at = now
                log.error(
                    "outbox %s: the disk has refused writes for a while and %d events wait in memory; event %s and "
                    "further events are NOT stored (%d so far); free disk space or fix the data directory",
                    self.path, len(self._queue), event.event_id, self._dropped_total,
                )
            return
        self._queue.append((event.event_id, self._clock(), wire.encode(event), event))
        self._wake.set()

    def _checked(self, chunk: list[_Queued]) -> list[tuple[str, float, bytes]]:
        """The rows to store for ``chunk``: every event checked against the wire format (schema and bounds in one
        decode for the whole chunk, then times and NUL characters: wire.all_valid, wire.check_event); one that is
        not valid is repaired (_repaired) or, if even that fails, left out (counted as dropped once stored)."""
        try:
            return self._checked_rows(chunk)
        except Exception:  # noqa: BLE001 - a bug in the checks must never stop the writer nor lose the events
            log.exception("outbox %s: checking %d events failed; storing them unchecked", self.path, len(chunk))
            return [(event_id, at, body) for event_id, at, body, _event in chunk]

    def _checked_rows(self, chunk: list[_Queued]) -> list[tuple[str, float, bytes]]:
        valid = wire.all_valid([body for _id, _at, body, _event in chunk])
        earliest, ahead, live_calls = wire.EARLIEST_TIME, wire.MAX_AHEAD, wire.LiveCalls
        rows = []
        for event_id, at, body, event in chunk:
            when = event.occurred_at
            if valid and earliest <= when <= at + ahead and b"\\u0000" not in body and type(event) is not live_calls:
                rows.append((event_id, at, body))  # the common case, without a call: two comparisons, one search
                continue
            judge = wire.sane_now(at)
            try:
                if valid:
                    wire.check_event(event, judge, body)
                else:
                    wire.checked_event(body, judge)
            except wire.WireError as problem:
                body = self._repaired(event, judge, problem)
                if not body:
                    continue
            rows.append((event_id, at, body))
        return rows

    def _repaired(self, event: wire.Event, now: float, problem: wire.WireError) -> bytes:
        """``event`` (which is not valid wire format: a translator built it wrong) with its texts cut to their bounds
        and an absurd time replaced by now, so the call is not lost and the CRM does not refuse it; b"" (counted as
        dropped, logged) if even that is not valid."""
        fixed = wire.bounded(event, now)
        encoded = wire.encode(fixed)
        try:
            wire.checked_event(encoded, now)
        except wire.WireError as still:
            log.error("event %s is not valid wire format (%s) and cannot be repaired; NOT stored (a bug in the "
                      "connector: report it)", event.event_id[:200], still)
            return b""
        log.warning("event %s was not valid wire format (%s); stored with its texts cut to their bounds and an "
                    "absurd time replaced by the time it arrived", fixed.event_id, problem)
        return encoded

    async def flush(self) -> None:
        """Wait until every event put so far is committed (accepted) or refused (see dropped_total)."""
        target = self._put_total
        if self._accepted_total + self._dropped_total >= target:
            return
        if self._thread is None:
            raise OutboxError("flush() before start(): nothing writes the events yet")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((target, future))
        await future

    # ---- the writer thread ------------------------------------------------------------------------------------------

    def _writer_main(self) -> None:
        failures = 0
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._queue:
                chunk = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                self._in_flight = len(chunk)
                rows = self._checked(chunk)
                try:
                    if rows:
                        self._insert(rows)
                except sqlite3.Error as exc:
                    self._queue.extendleft(reversed(chunk))
                    self._in_flight = 0
                    self._write_failing = True
                    failures += 1
                    delay = min(_WRITE_RETRY_CAP, _WRITE_RETRY_FIRST * 2 ** min(failures, 10))
                    log.error("outbox %s: cannot store %d events (%s); retrying in %.1f s, %d events wait in memory",
                              self.path, len(chunk), exc, delay, len(self._queue))
                    if self._stopping and failures > 3:
                        return  # close() reports what is lost
                    time.sleep(delay)
                    continue
                if failures:
                    log.warning("outbox %s: storing events again after %d failed attempts", self.path, failures)
                failures = 0
                self._write_failing = False
                self._in_flight = 0
                self._accepted_total += len(rows)
                self._dropped_total += len(chunk) - len(rows)  # not valid and not repairable: said in _repaired
                self._check_size_guard()
                self._notify_loop()
            if self._stopping:
                return

    def _insert(self, chunk: list[tuple[str, float, bytes]]) -> None:
        with self._db_lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO events (event_id, accepted_at, body) VALUES (?, ?, ?)", chunk)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            self._stored += len(chunk)
            self._queued_bytes += sum(len(body) for _id, _at, body in chunk)
            if self._oldest_stored_at is None:
                self._oldest_stored_at = chunk[0][1]

    def _notify_loop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._after_commit)

    def _after_commit(self) -> None:
        self.committed.set()
        self._resolve_flush_waiters()

    def _resolve_flush_waiters(self) -> None:
        done = self._accepted_total + self._dropped_total
        waiting = []
        for target, future in self._flush_waiters:
            if future.done():
                continue
            if target <= done or self._closed:
                future.set_result(None)
            else:
                waiting.append((target, future))
        self._flush_waiters = waiting

    def _check_size_guard(self) -> None:
        over = self._stored > self.max_events or self._queued_bytes > self.max_bytes
        if not over:
            if self._over_limit:
                log.warning("outbox %s: back under its limits (%d events, %.1f MiB)", self.path, self._stored,
                            self._queued_bytes / 2**20)
            self._over_limit = False
            return
        now = time.monotonic()
        if self._over_limit and now - self._guard_logged_at < self.guard_log_seconds:
            return
        self._over_limit = True
        self._guard_logged_at = now
        free = self.disk_free_bytes
        age = self.oldest_age_seconds
        log.error(
            "outbox %s holds %d events (%.1f MiB; %.1f MiB on disk, %s free), over its limit of %d events / %.1f "
            "MiB; the oldest waits for %s. Events are still kept: check that the CRM is up and reachable",
            self.path, self._stored, self._queued_bytes / 2**20, self.bytes_on_disk / 2**20,
            "unknown" if free is None else f"{free / 2**20:.0f} MiB", self.max_events, self.max_bytes / 2**20,
            "?" if age is None else f"{age:.0f} s",
        )

    # ---- delivering -------------------------------------------------------------------------------------------------

    def peek(self, limit: int) -> list[tuple[int, bytes]]:
        """The oldest ``limit`` accepted events, oldest first, as (seq, encoded event). Runs on the calling thread
        and may wait for the writer's transaction; from the event loop use peek_async()."""
        with self._db_lock:
            self._check_open()
            rows = self._db.execute("SELECT seq, body FROM events ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, bytes(body)) for seq, body in rows]

    def remove_through(self, seq: int) -> int:
        """Forget every event up to and including ``seq`` (the CRM confirmed them); returns how many."""
        with self._db_lock:
            self._check_open()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                removed_bytes, removed = db.execute(
                    "SELECT coalesce(sum(length(body)), 0), count(*) FROM events WHERE seq <= ?", (seq,)
                ).fetchone()
                db.execute("DELETE FROM events WHERE seq <= ?", (seq,))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            self._stored -= removed
            self._queued_bytes -= removed_bytes
            self._refresh_oldest()
            if self._stored == 0:
                self._give_back_space()
        if self._over_limit:
            self._check_size_guard()
        return int(removed)

    def dead_letter(self, seq: int, *, status: int, reason: str, quiet: bool = False) -> DeadLetter | None:
        """Move event ``seq`` to the dead-letter table (the CRM refused it on its own); None if it is not queued.
        Logs an error line unless ``quiet`` (the caller logs its own, with more to say)."""
        now = self._clock()
        with self._db_lock:
            self._check_open()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT event_id, accepted_at, body FROM events WHERE seq = ?", (seq,)).fetchone()
                if row is None:
                    db.execute("ROLLBACK")
                    return None
                event_id, accepted_at, body = row
                db.execute(
                    "INSERT INTO dead_letters (seq, event_id, accepted_at, failed_at, status, reason, body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (seq, event_id, accepted_at, now, status, reason[:2000], body),
                )
                db.execute("DELETE FROM events WHERE seq = ?", (seq,))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            self._stored -= 1
            self._queued_bytes -= len(body)
            self._dead_letters += 1
            self._refresh_oldest()
        if not quiet:
            log.error("event %s (outbox seq %d) refused by the CRM with status %d: %s; set aside as a dead letter "
                      "in %s", event_id, seq, status, reason[:300], self.path)
        return DeadLetter(seq, event_id, accepted_at, now, status, reason[:2000], bytes(body))

    def dead_letter_list(self, limit: int = 100) -> list[DeadLetter]:
        with self._db_lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT seq, event_id, accepted_at, failed_at, status, reason, body FROM dead_letters ORDER BY seq "
                "LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6])) for row in rows]

    def requeue_dead_letters(self) -> int:
        """Queue every dead letter again, after the events waiting now (once the CRM accepts them); how many."""
        with self._db_lock:
            self._check_open()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute("SELECT event_id, accepted_at, body FROM dead_letters ORDER BY seq").fetchall()
                db.executemany("INSERT INTO events (event_id, accepted_at, body) VALUES (?, ?, ?)", rows)
                db.execute("DELETE FROM dead_letters")
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
            self._stored += len(rows)
            self._queued_bytes += sum(len(body) for _id, _at, body in rows)
            self._dead_letters = 0
            self._refresh_oldest()
        if rows:
            log.warning("outbox %s: %d dead letters queued again for delivery", self.path, len(rows))
            self._notify_loop()
        return len(rows)

    async def peek_async(self, limit: int) -> list[tuple[int, bytes]]:
        return await asyncio.to_thread(self.peek, limit)

    async def remove_through_async(self, seq: int) -> int:
        return await asyncio.to_thread(self.remove_through, seq)

    async def dead_letter_async(self, seq: int, *, status: int, reason: str, quiet: bool = False) -> DeadLetter | None:
        return await asyncio.to_thread(lambda: self.dead_letter(seq, status=status, reason=reason, quiet=quiet))

    def _check_open(self) -> None:
        if self._db_closed:
            raise OutboxClosedError("the outbox is closed")

    def _refresh_oldest(self) -> None:
        """Called with the lock held."""
        if self._stored == 0:
            self._oldest_stored_at = None
        else:
            row = self._db.execute("SELECT accepted_at FROM events ORDER BY seq LIMIT 1").fetchone()
            self._oldest_stored_at = None if row is None else float(row[0])

    def _give_back_space(self) -> None:
        """Called with the lock held, when the queue is empty: after a long outage the file would otherwise keep
        its peak size for ever."""
        try:
            free_pages = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            if free_pages >= VACUUM_FREE_PAGES:
                # executescript runs the pragma to completion; execute() would free a single page
                self._db.executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
        except sqlite3.Error as exc:
            log.warning("outbox %s: could not give free space back to the disk: %s", self.path, exc)

    # ---- metrics ----------------------------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Events not yet confirmed by the CRM: on disk, being written, and waiting for the writer."""
        return self._stored + self._in_flight + len(self._queue)

    @property
    def pending(self) -> int:
        """Events put but not yet accepted."""
        return self._in_flight + len(self._queue)

    @property
    def stored(self) -> int:
        return self._stored

    @property
    def accepted_total(self) -> int:
        return self._accepted_total

    @property
    def dropped_total(self) -> int:
        return self._dropped_total

    @property
    def dead_letters(self) -> int:
        return self._dead_letters

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    @property
    def over_limit(self) -> bool:
        return self._over_limit

    @property
    def bytes_on_disk(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(f"{self.path}{suffix}")
        return total

    @property
    def disk_free_bytes(self) -> int | None:
        try:
            return shutil.disk_usage(self.path.parent).free
        except OSError:
            return None

    @property
    def oldest_age_seconds(self) -> float | None:
        oldest = self._oldest_stored_at
        if oldest is None:
            try:
                oldest = self._queue[0][1]
            except IndexError:
                return None
        return max(0.0, self._clock() - oldest)

    def metrics(self) -> OutboxMetrics:
        return OutboxMetrics(
            depth=self.depth,
            pending=self.pending,
            queued_bytes=self._queued_bytes,
            bytes_on_disk=self.bytes_on_disk,
            disk_free_bytes=self.disk_free_bytes,
            oldest_age_seconds=self.oldest_age_seconds,
            accepted_total=self._accepted_total,
            dropped_total=self._dropped_total,
            dead_letters=self._dead_letters,
            over_limit=self._over_limit,
        )
