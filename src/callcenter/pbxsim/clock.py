"""Simulated time: the simulator's clock runs ``speed`` times faster than the wall clock, and a scheduled step happens
exactly when the scenario says, however late the machine runs it.

Rules:
- Every delay inside the simulator (ring time, talk time, scenario ``at`` times) is given in *simulated* seconds and
  turned into real seconds by dividing by ``speed``: with ``speed=50`` a 6 s call takes 0.12 s of real time.
- A timer has a *due* simulated time (``Timer.due``). While its callback runs, ``now()`` is that due time, not the
  moment the event loop got round to it: the AMI ``Timestamp`` headers of its events, the channel times behind CDR
  durations and the due times of the timers it schedules in turn all follow the scenario, so a 3 s ring shows as
  exactly 3 s even on a machine so busy that the timer fired 1 s late.
- Outside a timer (an AMI action, a test), ``now()`` is simulated epoch time: it starts at the wall clock and advances
  ``speed`` times faster, except that it never passes the due time of a timer that has not run yet (in simulated time
  that step has not happened yet) and never goes back. Timers run in order of due time (then of scheduling), so the
  timestamps of the event stream never go backwards, as Asterisk's do not.
- Timers that are due run in batches, one per turn of the event loop, so that a backlog (a rate the machine cannot
  keep) never starves the sockets: what a timer schedules for a time already past waits for the next turn.
- Timer callbacks never raise into the event loop: an exception is logged and kept in ``errors`` so that tests can
  assert that the simulator itself did not fail.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable

log = logging.getLogger("callcenter.pbxsim")


class Timer:
    """A cancellable callback due at simulated time ``due``."""

    __slots__ = ("callback", "cancelled", "due", "seq")

    def __init__(self, due: float, seq: int, callback: Callable[[], object]) -> None:
        self.due = due
        self.seq = seq
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class Clock:
    def __init__(self, speed: float = 1.0, *, epoch: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        self.speed = float(speed)
        self._epoch = time.time() if epoch is None else float(epoch)
        self._mono0 = time.monotonic()
        self.errors: list[BaseException] = []
        self._timers: list[Timer] = []  # a heap by (due, seq); cancelled ones are dropped when they reach the top
        self._seq = itertools.count()
        self._current: float | None = None  # the due time of the timer running now
        self._last = self._epoch  # the latest time now() has given: it never goes back
        self._handle: asyncio.TimerHandle | None = None
        self._handle_due = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._firing = False

    def wall(self) -> float:
        """Simulated time as the wall clock has it, ignoring the timers (how late a step runs: ``wall() - now()``)."""
        return self._epoch + (time.monotonic() - self._mono0) * self.speed

    def now(self) -> float:
        """Simulated seconds since the epoch: a running timer's due time, else the wall clock's (see the rules)."""
        if self._current is not None:
            return self._current
        t = self.wall()
        pending = self._next()
        if pending is not None and pending.due < t:
            t = pending.due
        if t < self._last:
            t = self._last
        self._last = t
        return t

    def real_delay(self, sim_seconds: float) -> float:
        return max(0.0, sim_seconds) / self.speed

    def call_later(self, sim_seconds: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` ``sim_seconds`` simulated seconds after ``now()``."""
        return self.call_at(self.now() + max(0.0, sim_seconds), callback)

    def call_at(self, due: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` at simulated time ``due``: as soon as possible if that has passed, stamped ``due`` unless
        the clock has already given a later time (it never goes back)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (a new test): the old one's handle is of no use
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._loop = loop
        timer = Timer(max(due, self._last), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        if not self._firing:
            self._arm()
        return timer

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(self.real_delay(sim_seconds))

    # ---- the scheduler ----------------------------------------------------------------------------------------

    def _next(self) -> Timer | None:
        timers = self._timers
        while timers and timers[0].cancelled:
            heapq.heappop(timers)
        return timers[0] if timers else None

    def _arm(self) -> None:
        """One event-loop handle, for the earliest pending timer."""
        first = self._next()
        if first is None:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            return
        if self._handle is not None:
            if self._handle_due <= first.due:
                return
            self._handle.cancel()
        assert self._loop is not None
        self._handle_due = first.due
        self._handle = self._loop.call_later(self.real_delay(first.due - self.wall()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        # Due now: what the wall clock has reached, or what this handle was armed for (the loop may wake a hair
        # early). Only timers scheduled before this turn run in it; they run in order of due time.
        limit = max(self.wall(), self._handle_due)
        last_seq = next(self._seq)
        self._firing = True
        try:
            while True:
                timer = self._next()
                if timer is None or timer.due > limit or timer.seq > last_seq:
                    break
                heapq.heappop(self._timers)
                self._run(timer)
        finally:
            self._firing = False
            self._arm()

    def _run(self, timer: Timer) -> None:
        self._current = max(timer.due, self._last)
        self._last = self._current
        try:
            timer.callback()
        except Exception as exc:  # a bug in a call flow must not kill the loop, but it must be visible
            log.exception("pbxsim: a scheduled step failed")
            self.errors.append(exc)
        finally:
            self._current = None
