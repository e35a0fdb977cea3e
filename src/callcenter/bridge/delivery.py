"""Delivery of the outbox to the CRM: ``POST {crm_url}/bridge/v1/events``, in order, in batches, until confirmed.

Rules (docs/bridge-interfaces.md, "CRM link")
- One ``httpx.AsyncClient`` with HTTP keep-alive; every request signed with ``wire.sign`` (the secret itself never
  leaves this process and never appears in a log line, an exception or ``repr()``).
- The oldest ``batch_size`` events go in one request. The CRM answers per event (wire.BatchReceipt): accepted,
  duplicates, or refused with a reason. Refused events move to the outbox's dead-letter table with that reason (one
  error line each); the rest leave the outbox. A receipt that does not account for every event (accepted +
  duplicates + refused == batch size) leaves them all queued.
- 401: wrong secret or clock; an error saying so, then retry with back-off (the events stay).
- 400/413: the batch is refused as a whole; it is split in halves, each sent on its own, until the event the CRM
  refuses alone is found; that one is moved to the outbox's dead-letter table and logged as an error.
- A CRM that is down (refused or dropped connections, timeouts, 502/503/504 from a proxy, a failing health check)
  never costs an event: the deliverer waits and retries.
- A server error (500 and other 5xx but 502/503/504) that repeats for the same batch ``split_after`` times while the
  CRM's health check answers is taken for a poison event: the batch is split in halves, each half split again at its
  first server error, and the one event that still fails ``split_after`` times on its own while the CRM is healthy
  goes to the dead letters with the CRM's answer. Delivery goes on with the next events.
- Retries wait a capped exponential back-off with full jitter: attempt n waits a random time in
  [0, min(cap, first * 2**(n-1))] (cap 5 s), so the first retry is quick and a fleet of bridges does not retry in
  step. A success resets it. While it waits after the CRM looked down, it probes ``GET {crm_url}/bridge/v1/health``
  every ``probe_every`` seconds and retries as soon as that answers 200, so delivery resumes well within a second of
  the CRM coming back.
- When the outbox is empty the deliverer sleeps until the outbox commits new events (no polling delay).
- Errors are logged when a failure starts or changes kind, then at most every ``log_every`` seconds while it lasts,
  and once more when delivery works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec

from callcenter import wire
from callcenter.bridge.outbox import Outbox

log = logging.getLogger(__name__)

EVENTS_PATH: Final = "/bridge/v1/events"
HEALTH_PATH: Final = "/bridge/v1/health"
SPLIT_STATUSES: Final = frozenset({400, 413})
# What a proxy or a CRM that is down or restarting answers for every request: never a reason to suspect an event.
DOWN_STATUSES: Final = frozenset({502, 503, 504})
# Events per request, at most: the bridge sends what is waiting, so this only matters when a backlog drains (after
# a CRM outage). The CRM takes at most 5000 (wire.EventBatch); a call event encodes to ~240 bytes (at most ~280), so
# 5000 is ~1.3 MB, under the CRM's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default); a batch that is still too large
# gets a 413 and is split in halves. Larger batches cost the CRM less per event (bench/outbox_drain.py, 240k events:
# PostgreSQL 104 -> 89 s from 2000 to 5000), each in one transaction of about a second.
DEFAULT_BATCH_SIZE: Final = 5000


@dataclass(frozen=True)
class DeliveryMetrics:
    delivered_total: int  # events the CRM confirmed (accepted or already had)
    duplicates_total: int  # of which the CRM already had
    failures_total: int  # failed attempts (each followed by a back-off)
    dead_letters_total: int  # events set aside because the CRM refused them on their own
    requests_total: int
    last_error: str
    crm_reachable: bool | None  # None before the first attempt
    consecutive_failures: int


class _RetryLaterError(Exception):
    """This attempt failed in a way that may pass: back off and send the same events again. ``down``: the CRM looked
    down or unreachable (probe its health while waiting); ``status``: the HTTP status it answered, 0 for none."""

    def __init__(self, kind: str, message: str, *, down: bool = False, status: int = 0, answer: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.down = down
        self.status = status
        self.answer = answer


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _snippet(response: httpx.Response) -> str:
    """What the CRM said, for a log line: its JSON error message, or the start of the body."""
    try:
        answer = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        text = str(answer["message"])
        if isinstance(answer.get("error_id"), str):
            text = f"{answer['error_id']}: {text}"
    else:
        text = response.content[:200].decode("utf-8", errors="replace")
    return " ".join(text.split())[:300] or "(empty body)"


def _event_type(event: wire.Event) -> str:
    return str(type(event).__struct_config__.tag)


class Deliverer:
    def __init__(
        self,
        outbox: Outbox,
        crm_url: str,
        bridge_id: str,
        secret: str,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        backoff_first: float = 0.2,
        backoff_cap: float = 5.0,
        probe_every: float | None = 0.3,
        split_after: int = 3,
        log_every: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= batch_size <= 5000:
            raise ValueError("batch_size is between 1 and 5000 (the CRM takes at most 5000 events per batch)")
        wire.sign(secret, b"", 0)  # refuses a short secret now rather than at the first delivery
        self.outbox = outbox
        self.url = crm_url.rstrip("/") + EVENTS_PATH
        self.health_url = crm_url.rstrip("/") + HEALTH_PATH
        self.probe_every = probe_every
        self.split_after = max(1, split_after)
        self.bridge_id = bridge_id
        self.batch_size = batch_size
        self.backoff_first = backoff_first
        self.backoff_cap = backoff_cap
        self.log_every = log_every
        self._secret = secret
        self._safe_url = _without_credentials(self.url)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self._timeout = timeout
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self._batch_prefix = b'{"bridge_id":' + msgspec.json.encode(bridge_id) + b',"events":['
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

        self.delivered_total = 0
        self.duplicates_total = 0
        self.failures_total = 0
        self.dead_letters_total = 0
        self.requests_total = 0
        self.last_error = ""
        self.crm_reachable: bool | None = None
        self.consecutive_failures = 0
        self._failure_kind = ""
        self._failing_since = 0.0
        self._logged_at = float("-inf")
        # Finding a poison event (a server error that repeats while the CRM is healthy): the batch that failed,
        # how often in a row, and while isolating, the largest batch to send and the last seq under suspicion.
        self._failing_batch: tuple[int, int] = (0, 0)
        self._server_errors = 0
        self._limit: int | None = None
        self._suspect_through = 0
        self.health_probes_total = 0

    def __repr__(self) -> str:
        return f"Deliverer(url={self._safe_url!r}, bridge_id={self.bridge_id!r})"

    # ---- life cycle -------------------------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="outbox-delivery")
        return self._task

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop after the request in flight (or cancel it after ``timeout``; its events are sent again later)."""
        self._stopping = True
        self._stop_requested.set()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._own_client:
            await self._client.aclose()

    async def run(self) -> None:
        """Deliver until stop()."""
        while not self._stopping:
            self.outbox.committed.clear()
            batch: Sequence[tuple[int, bytes]] = ()
            try:
                batch = await self.outbox.peek_async(self._limit or self.batch_size)
                if not batch:
                    await self._until_stopped_or(self.outbox.committed.wait())
                    continue
                if self._limit is not None and batch[0][0] > self._suspect_through:
                    self._limit = None  # past the events under suspicion: full batches again
                    batch = await self.outbox.peek_async(self.batch_size)
                await self._deliver(batch)
            except _RetryLaterError as failure:
                await self._server_error(failure, batch)
                await self._failed(failure)
            except sqlite3.Error as exc:
                await self._failed(_RetryLaterError("outbox", f"the outbox could not be read or updated: {exc}"))
            else:
                self._succeeded()

    async def _until_stopped_or(self, waiting: Awaitable[object]) -> None:
        waiter = asyncio.ensure_future(waiting)
        stopper = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (waiter, stopper):
                future.cancel()

    # ---- one batch --------------------------------------------------------------------------------------------------

    async def _deliver(self, batch: Sequence[tuple[int, bytes]]) -> None:
        status, answer, receipt = await self._post(batch)
        if status == 200:
            assert receipt is not None
            for refused in receipt.refused:
                await self._dead_letter(batch[refused.index], 400, refused.reason)
            await self.outbox.remove_through_async(batch[-1][0])
            self.delivered_total += len(batch) - len(receipt.refused)
            self._failing_batch, self._server_errors = (0, 0), 0
            return
        # 400/413: refused as a whole. Halve until the event refused on its own is found.
        if len(batch) > 1:
            middle = len(batch) // 2
            await self._deliver(batch[:middle])
            await self._deliver(batch[middle:])
            return
        await self._dead_letter(batch[0], status, answer)

    async def _dead_letter(self, row: tuple[int, bytes], status: int, reason: str) -> None:
        seq, encoded = row
        letter = await self.outbox.dead_letter_async(seq, status=status, reason=reason, quiet=True)
        if letter is None:
            return
        self.dead_letters_total += 1
        try:
            event = wire.decode_event(encoded)
            what = f"{_event_type(event)} at {event.occurred_at!r}"
        except wire.WireError:
            what = "(not readable)"
        log.error(
            "the CRM refused event %s %s on its own (HTTP %d: %s); kept in the outbox's dead letters (seq %d): "
            "see the bridge's page to queue it again once the cause is fixed",
            letter.event_id, what, status, reason[:300], seq,
        )

    async def _server_error(self, failure: _RetryLaterError, batch: Sequence[tuple[int, bytes]]) -> None:
        """Count a server error for this batch; split the batch, or set its one event aside, when it repeats while
        the CRM's health check answers (a poison event, not an outage)."""
        if not batch or failure.status < 500 or failure.status in DOWN_STATUSES:
            if failure.down or failure.status in DOWN_STATUSES:
                self._server_errors = 0  # an outage is not the batch's fault
            return
        key = (batch[0][0], len(batch))
        if key != self._failing_batch:
            self._failing_batch, self._server_errors = key, 0
        self._server_errors += 1
        isolating = self._limit is not None and len(batch) > 1
        if self._server_errors < (1 if isolating else self.split_after):
            return
        if await self._probe() != 200:
            self._server_errors = 0  # the CRM is not healthy: wait for it, suspect nothing
            return
        self._failing_batch, self._server_errors = (0, 0), 0
        if len(batch) > 1:
            self._limit = len(batch) // 2
            self._suspect_through = max(self._suspect_through, batch[-1][0])
            log.warning(
                "the CRM answered HTTP %d %d times for the same %d events while its health check answers; sending "
                "them in smaller batches to find the event that causes it", failure.status, self.split_after,
                len(batch),
            )
            return
        await self._dead_letter(batch[0], failure.status, f"HTTP {failure.status} {self.split_after} times while "
                                f"the CRM was healthy: {failure.answer}")

    async def _post(self, batch: Sequence[tuple[int, bytes]]) -> tuple[int, str, wire.BatchReceipt | None]:
        """(200, "", receipt) once the CRM answered for every event; (400|413, what it said, None) when it refused
        the batch; raises _RetryLaterError otherwise."""
        body = self._batch_prefix + b",".join(encoded for _seq, encoded in batch) + b"]}"
        headers = {
            "Content-Type": "application/json",
            wire.BRIDGE_HEADER: self.bridge_id,
            wire.RECEIPT_HEADER: wire.PER_EVENT_RECEIPT,
            wire.SIGNATURE_HEADER: wire.sign(self._secret, body, int(self._clock())),
        }
        self.requests_total += 1
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            self.crm_reachable = False
            raise _RetryLaterError(
                "timeout", f"the CRM at {self._safe_url} did not answer in time ({type(exc).__name__})", down=True
            ) from None
        except httpx.HTTPError as exc:
            self.crm_reachable = False
            reason = str(exc) or type(exc).__name__
            raise _RetryLaterError(
                "unreachable", f"cannot reach the CRM at {self._safe_url}: {reason}", down=True
            ) from None
        status = response.status_code
        if status == 200:
            try:
                receipt = wire.decode_receipt(response.content)
            except wire.WireError as exc:
                self.crm_reachable = False
                raise _RetryLaterError(
                    "garbage", f"the CRM at {self._safe_url} answered 200 without a batch receipt ({exc})"
                ) from None
            indexes = {refused.index for refused in receipt.refused}
            if (
                receipt.accepted + receipt.duplicates + len(receipt.refused) != len(batch)
                or len(indexes) != len(receipt.refused)
                or not all(0 <= index < len(batch) for index in indexes)
            ):
                self.crm_reachable = False
                raise _RetryLaterError(
                    "garbage",
                    f"the CRM's receipt counts {receipt.accepted} accepted + {receipt.duplicates} duplicates + "
                    f"{len(receipt.refused)} refused for a batch of {len(batch)} events; sending the batch again",
                )
            self.crm_reachable = True
            self.duplicates_total += receipt.duplicates
            return 200, "", receipt
        if status in SPLIT_STATUSES:
            self.crm_reachable = True
            return status, _snippet(response), None
        self.crm_reachable = False
        if status == 401:
            raise _RetryLaterError(
                "unauthenticated",
                f"the CRM refused the bridge's signature (HTTP 401: {_snippet(response)}); check the bridge secret / "
                f"clock: the secret must be the one `callcenter add-bridge {self.bridge_id}` gave, and both clocks "
                "must be right (NTP)",
            )
        answer = _snippet(response)
        raise _RetryLaterError(f"http-{status}", f"the CRM answered HTTP {status} ({answer})",
                               down=status in DOWN_STATUSES, status=status, answer=answer)

    async def _probe(self) -> int:
        """The status of the CRM's health check (0 when it cannot be reached); cheap, unauthenticated."""
        self.health_probes_total += 1
        try:
            response = await self._client.get(self.health_url, timeout=min(self._timeout, 2.0))
        except httpx.HTTPError:
            return 0
        return response.status_code

    # ---- success, failure, back-off ---------------------------------------------------------------------------------

    def _succeeded(self) -> None:
        if self.consecutive_failures:
            log.warning(
                "delivering to the CRM again after %d failed attempts over %.0f s; %d events wait in the outbox",
                self.consecutive_failures, time.monotonic() - self._failing_since, self.outbox.depth,
            )
        self.consecutive_failures = 0
        self._failure_kind = ""
        self.last_error = ""

    async def _failed(self, failure: _RetryLaterError) -> None:
        now = time.monotonic()
        if not self.consecutive_failures:
            self._failing_since = now
        self.consecutive_failures += 1
        self.failures_total += 1
        self.last_error = failure.message
        delay = self.backoff_delay(self.consecutive_failures)
        if failure.kind != self._failure_kind or now - self._logged_at >= self.log_every:
            self._failure_kind = failure.kind
            self._logged_at = now
            log.error(
                "%s; %d events kept in the outbox, retry %d in %.1f s", failure.message, self.outbox.depth,
                self.consecutive_failures, delay,
            )
        await self._until_stopped_or(self._wait_or_crm_back(delay, failure.down))

    async def _wait_or_crm_back(self, delay: float, down: bool) -> None:
        """Wait ``delay`` seconds; meanwhile, when the CRM looked down, probe its health every ``probe_every``
        seconds and end the wait as soon as it answers 200 after having been down (a healthy CRM that fails our
        requests gets the full back-off, not a tight loop)."""
        if self.probe_every is None or not down:
            await self._sleep(delay)
            return
        sleeper = asyncio.ensure_future(self._sleep(delay))
        try:
            while not sleeper.done():
                await asyncio.wait({sleeper}, timeout=self.probe_every)
                if sleeper.done():
                    break
                status = await self._probe()
                if status == 200 and down:
                    log.info("the CRM's health check answers again; retrying now")
                    return
                down = down or status != 200
        finally:
            sleeper.cancel()

    def backoff_delay(self, attempt: int) -> float:
        """Full jitter: a random wait in [0, min(cap, first * 2**(attempt-1))]."""
        ceiling: float = min(self.backoff_cap, self.backoff_first * 2.0 ** min(attempt - 1, 60))
        return ceiling * self._jitter()

    # ---- metrics ----------------------------------------------------------------------------------------------------

    def metrics(self) -> DeliveryMetrics:
        return DeliveryMetrics(
            delivered_total=self.delivered_total,
            duplicates_total=self.duplicates_total,
            failures_total=self.failures_total,
            dead_letters_total=self.dead_letters_total,
            requests_total=self.requests_total,
            last_error=self.last_error,
            crm_reachable=self.crm_reachable,
            consecutive_failures=self.consecutive_failures,
        )
