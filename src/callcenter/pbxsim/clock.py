"""Simulated time: the simulator's clock runs ``speed`` times faster than the wall clock.

Rules:
- Every delay inside the simulator (ring time, talk time, scenario ``at`` times) is given in *simulated* seconds and
  turned into real seconds by dividing by ``speed``: with ``speed=50`` a 6 s call takes 0.12 s of real time.
- ``now()`` is simulated epoch time: it starts at the wall clock and advances ``speed`` times faster, so the AMI
  ``Timestamp`` headers of a compressed call still show its simulated durations (answered at +3 s, ended at +9 s).
- Timer callbacks never raise into the event loop: an exception is logged and kept in ``errors`` so that tests can
  assert that the simulator itself did not fail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger("callcenter.pbxsim")


class Timer:
    """A cancellable scheduled callback."""

    __slots__ = ("_handle", "cancelled")

    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self._handle = handle
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self._handle.cancel()


class Clock:
    def __init__(self, speed: float = 1.0, *, epoch: float | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        self.speed = float(speed)
        self._epoch = time.time() if epoch is None else float(epoch)
        self._mono0 = time.monotonic()
        self.errors: list[BaseException] = []

    def now(self) -> float:
        """Simulated seconds since the epoch."""
        return self._epoch + (time.monotonic() - self._mono0) * self.speed

    def real_delay(self, sim_seconds: float) -> float:
        return max(0.0, sim_seconds) / self.speed

    def call_later(self, sim_seconds: float, callback: Callable[[], object]) -> Timer:
        loop = asyncio.get_running_loop()
        timer: Timer

        def run() -> None:
            if timer.cancelled:
                return
            try:
                callback()
            except Exception as exc:  # a bug in a call flow must not kill the loop, but it must be visible
                log.exception("pbxsim: a scheduled step failed")
                self.errors.append(exc)

        timer = Timer(loop.call_later(self.real_delay(sim_seconds), run))
        return timer

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(self.real_delay(sim_seconds))
