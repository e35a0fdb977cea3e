"""The load generator: inbound calls at a steady rate, from known and unknown callers, to a set of agents.

Rules:
- ``rate`` is in calls per *simulated* second, so it scales with the clock's speed like everything else: rate 2 at
  speed 10 starts 20 calls per real second. Call n starts at exactly start + n / rate of simulated time (each call is a
  timer on the simulated clock, stamped with its due time), so the rate neither drifts nor shows the machine's load.
  Behind schedule (a rate the machine cannot keep), calls still start one per turn of the event loop, so that clients
  (maybe in this very process) go on reading.
- Each call comes from a known caller (a number the demo CRM has as a contact, with a Greek name) or, with
  probability ``unknown_ratio``, from a random Greek number (mobile ``69...`` or landline ``2...``, written plain,
  ``+30...`` or ``0030...``), half of them with a caller name from the network, half with none.
- The target agent is drawn at random (seeded: the same seed gives the same calls). What happens next is up to the
  PBX: a DND or busy agent gives a busy call, an agent who does not answer gives a missed call; once answered the
  caller talks for a random time in ``talk`` and hangs up.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from callcenter.pbxsim.clock import Timer
from callcenter.pbxsim.engine import PBXCore
from callcenter.pbxsim.model import Behaviour

log = logging.getLogger("callcenter.pbxsim")

# The callers of the real captures first (the demo data knows them), then a few more Greek contacts.
KNOWN_CALLERS: tuple[tuple[str, str], ...] = (
    ("00302101234567", "Γιώργος Παπαδόπουλος"),
    ("+302107654321", "Μαρία Κωνσταντίνου"),
    ("00302109876543", "Νίκος Αλεξίου"),
    ("6944123456", "Ελένη Γεωργίου"),
    ("2310555123", "Δημήτρης Οικονόμου"),
    ("6977000111", "Κατερίνα Βασιλείου"),
)
NETWORK_NAMES: tuple[str, ...] = (
    "Σπύρος Μαυρίδης", "Άννα Νικολάου", "Παναγιώτης Ιωάννου", "Σοφία Δημητρίου", "Χρήστος Λαμπρόπουλος",
    "Ιωάννα Καραγιάννη",
)


@dataclass
class LoadConfig:
    rate: float
    agents: Sequence[str]
    known_callers: Sequence[tuple[str, str]] = KNOWN_CALLERS
    unknown_ratio: float = 0.3
    talk: tuple[float, float] = (5.0, 30.0)
    ring_timeout: float | None = None
    max_calls: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"the call rate must be a positive number of calls per second, got {self.rate!r}")
        if not self.agents:
            raise ValueError("the load generator needs at least one agent extension to call")
        if not 0 <= self.unknown_ratio <= 1:
            raise ValueError(f"unknown_ratio must be between 0 and 1, got {self.unknown_ratio!r}")
        if not self.known_callers and self.unknown_ratio < 1:
            raise ValueError("no known callers: give some, or set unknown_ratio to 1")
        lo, hi = self.talk
        if not 0 <= lo <= hi:
            raise ValueError(f"talk time range must be 0 <= min <= max, got {self.talk!r}")


def random_greek_number(rng: random.Random) -> str:
    if rng.random() < 0.6:
        national = "69" + "".join(rng.choice("0123456789") for _ in range(8))
    else:
        national = "2" + rng.choice("1234578") + "".join(rng.choice("0123456789") for _ in range(8))
    form = rng.random()
    if form < 0.5:
        return national
    return ("+30" if form < 0.75 else "0030") + national


class LoadGenerator:
    def __init__(self, core: PBXCore, config: LoadConfig) -> None:
        self.core = core
        self.config = config
        self.rng = random.Random(config.seed)
        self.calls_started = 0
        self.start_times: list[float] = []  # simulated time of each call's start
        self._start = 0.0
        self._scheduled = 0  # calls put on the grid so far (a call that failed to start counts too)
        self._timer: Timer | None = None
        self._done: asyncio.Future[None] | None = None
        for ext in config.agents:
            core.add_agent(ext)

    def start(self) -> LoadGenerator:
        self._done = asyncio.get_running_loop().create_future()
        self._start = self.core.clock.now()
        self._schedule_next()
        return self

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._done is not None and not self._done.done():
            self._done.cancel()

    async def wait(self) -> None:
        """Until ``max_calls`` calls have started (forever without a limit: use stop())."""
        if self._done is not None:
            await asyncio.shield(self._done)

    @property
    def running(self) -> bool:
        return self._done is not None and not self._done.done()

    def next_caller(self) -> tuple[str, str]:
        cfg = self.config
        if cfg.known_callers and self.rng.random() >= cfg.unknown_ratio:
            return self.rng.choice(list(cfg.known_callers))
        name = self.rng.choice(NETWORK_NAMES) if self.rng.random() < 0.5 else ""
        return random_greek_number(self.rng), name

    def start_call(self) -> None:
        cfg = self.config
        number, name = self.next_caller()
        agent = self.rng.choice(list(cfg.agents))
        talk = self.rng.uniform(*cfg.talk)
        self.calls_started += 1
        self.start_times.append(self.core.clock.now())
        self.core.inbound(number, name, agent, caller=Behaviour(hangup_after=talk), ring_timeout=cfg.ring_timeout)

    def _schedule_next(self) -> None:
        cfg = self.config
        n = self._scheduled
        if cfg.max_calls is not None and n >= cfg.max_calls:
            self._timer = None
            if self._done is not None and not self._done.done():
                self._done.set_result(None)
            return
        self._scheduled += 1
        self._timer = self.core.clock.call_at(self._start + n / cfg.rate, self._tick)

    def _tick(self) -> None:
        try:
            self.start_call()
        except Exception:  # one bad call must not stop the load
            log.exception("pbxsim: the load generator could not start a call")
        self._schedule_next()
