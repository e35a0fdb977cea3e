"""Delivery of the outbox to the CRM: ``POST {crm_url}/bridge/v1/events``, in order, in batches, until confirmed.

Rules (docs/bridge-interfaces.md, "CRM link")
- One ``httpx.AsyncClient`` with HTTP keep-alive; every request signed with ``wire.sign`` (the secret itself never
  leaves this process and never appears in a log line, an exception or ``repr()``).
- The oldest ``batch_size`` events go in one request. They are removed from the outbox only after a 200 whose
  BatchReceipt counts every one of them (accepted + duplicates == batch size); anything else leaves them queued.
- 401: wrong secret or clock; an error saying so, then retry with back-off (the events stay).
- 400/413: the batch is refused as a whole; it is split in halves, each sent on its own, until the event the CRM
  refuses alone is found; that one is moved to the outbox's dead-letter table and logged as an error.
- 5xx, any other status, timeouts, refused or dropped connections, and answers that are not a receipt: retry.
- Retries wait a capped exponential back-off with full jitter: attempt n waits a random time in
  [0, min(cap, first * 2**(n-1))], so the first retry is quick and a fleet of bridges does not retry in step.
  A success resets it.
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
SPLIT_STATUSES: Final = frozenset({400, 413})
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
    """This attempt failed in a way that may pass: back off and send the same events again."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


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
        backoff_cap: float = 30.0,
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
            try:
                batch = await self.outbox.peek_async(self.batch_size)
                if not batch:
                    await self._until_stopped_or(self.outbox.committed.wait())
                    continue
                await self._deliver(batch)
            except _RetryLaterError as failure:
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
        status, answer = await self._post(batch)
        if status == 200:
            await self.outbox.remove_through_async(batch[-1][0])
            self.delivered_total += len(batch)
            return
        # 400/413: refused as a whole. Halve until the event refused on its own is found.
        if len(batch) > 1:
            middle = len(batch) // 2
            await self._deliver(batch[:middle])
            await self._deliver(batch[middle:])
            return
        seq = batch[0][0]
        letter = await self.outbox.dead_letter_async(seq, status=status, reason=answer)
        if letter is not None:
            self.dead_letters_total += 1
            log.error("the CRM refused event %s on its own (HTTP %d: %s); it is kept in the outbox's dead letters",
                      letter.event_id, status, answer)

    async def _post(self, batch: Sequence[tuple[int, bytes]]) -> tuple[int, str]:
        """(200, "") once the CRM confirmed every event; (400|413, what it said) when it refused the batch;
        raises _RetryLaterError otherwise."""
        body = self._batch_prefix + b",".join(encoded for _seq, encoded in batch) + b"]}"
        headers = {
            "Content-Type": "application/json",
            wire.BRIDGE_HEADER: self.bridge_id,
            wire.SIGNATURE_HEADER: wire.sign(self._secret, body, int(self._clock())),
        }
        self.requests_total += 1
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            self.crm_reachable = False
            raise _RetryLaterError(
                "timeout", f"the CRM at {self._safe_url} did not answer in time ({type(exc).__name__})"
            ) from None
        except httpx.HTTPError as exc:
            self.crm_reachable = False
            reason = str(exc) or type(exc).__name__
            raise _RetryLaterError("unreachable", f"cannot reach the CRM at {self._safe_url}: {reason}") from None
        status = response.status_code
        if status == 200:
            try:
                receipt = wire.decode_receipt(response.content)
            except wire.WireError as exc:
                self.crm_reachable = False
                raise _RetryLaterError(
                    "garbage", f"the CRM at {self._safe_url} answered 200 without a batch receipt ({exc})"
                ) from None
            if receipt.accepted + receipt.duplicates != len(batch):
                self.crm_reachable = False
                raise _RetryLaterError(
                    "garbage",
                    f"the CRM's receipt counts {receipt.accepted} accepted + {receipt.duplicates} duplicates for a "
                    f"batch of {len(batch)} events; sending the batch again",
                )
            self.crm_reachable = True
            self.duplicates_total += receipt.duplicates
            return 200, ""
        if status in SPLIT_STATUSES:
            self.crm_reachable = True
            return status, _snippet(response)
        self.crm_reachable = False
        if status == 401:
            raise _RetryLaterError(
                "unauthenticated",
                f"the CRM refused the bridge's signature (HTTP 401: {_snippet(response)}); check the bridge secret / "
                f"clock: the secret must be the one `callcenter add-bridge {self.bridge_id}` gave, and both clocks "
                "must be right (NTP)",
            )
        raise _RetryLaterError(f"http-{status}", f"the CRM answered HTTP {status} ({_snippet(response)})")

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
        await self._until_stopped_or(self._sleep(delay))

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
