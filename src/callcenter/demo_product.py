"""What `callcenter demo` runs beside the CRM: the simulated PBX (with callers ringing the agents) and the bridge
between the two, as components of the supervisor, plus the demo bridge's settings file.

Rules:
- Everything runs in the one demo process, on one event loop: the simulated Asterisk (AMI on loopback), the bridge
  (``bridge.daemon.Bridge``: AMI connector, outbox, deliverer and control listener, exactly as ``bridge run`` wires
  them) and the CRM. Ctrl-C stops them in this order: the simulator stops making calls and hangs up the calls in
  progress, the bridge passes those last events (and its "exited" link state) on to the CRM and stops, then the CRM
  and the simulator stop. No child processes, so nothing can be left behind.
- The simulated phones answer only when told to by AMI (PJSIPNotify: the screen's Answer button) and give up after
  the ring timeout (a missed call); an Originate (the screen's Call and Redial) rings the agent's phone first, which
  answers by itself at once, as desk phones do for click-to-call. Outside numbers answer our calls after a few
  seconds.
- Callers: seeded contacts (by one of their numbers, in the formats networks send) and unknown Greek numbers. The
  first call goes to Alice; later ones mostly to Alice, sometimes Bob or the ring group, always to a phone that is
  free (not ringing, on a call or set Busy); while every phone is in use, nobody calls.
- No Django here (the CRM's part of the wiring is in the ``demo`` management command). Secrets are read from files
  and never printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from callcenter.bridge.daemon import Bridge, StartupError
from callcenter.bridge.settings import SettingsError, load_settings, to_toml
from callcenter.pbxsim import Behaviour, PortInUseError, SimulatedPBX
from callcenter.pbxsim.loadgen import NETWORK_NAMES, random_greek_number
from callcenter.supervisor import Component

log = logging.getLogger("callcenter.demo")

BRIDGE_ID: Final = "demo"
BRIDGE_SETTINGS_NAME: Final = "demo-bridge.toml"
BRIDGE_SECRET_NAME: Final = "demo-bridge.secret"  # noqa: S105 - a file name
AMI_SECRET_NAME: Final = "demo-ami.secret"  # noqa: S105 - a file name
BRIDGE_DATA_NAME: Final = "demo-bridge"
AMI_USER: Final = "callcenter-demo"
AMI_HOST: Final = "127.0.0.1"
DEFAULT_AMI_PORT: Final = 5038
BRIDGE_ADDRESS: Final = "127.0.0.1"
HEARTBEAT_SECONDS: Final = 10.0
INTERNAL_DIGITS: Final = 3

# The simulated phones: the demo's agents and the administrator's desk.
PHONES: Final = {"100": "Alice", "101": "Bob", "199": "Carol"}
RING_GROUP: Final = "600"
RING_GROUP_MEMBERS: Final = ("100", "101")
RING_SECONDS: Final = 20.0
DEFAULT_EVERY: Final = (8.0, 15.0)
TALK_SECONDS: Final = (20.0, 90.0)
ABANDON_SECONDS: Final = (8.0, 16.0)
UNKNOWN_RATIO: Final = 0.3
ABANDON_RATIO: Final = 0.1
# Outside numbers we call answer after a few seconds, and hang up after a while if the agent does not.
REMOTE: Final = Behaviour(answer_after=3.0, hangup_after=120.0)

STOP_WAIT_SECONDS: Final = 8.0  # how long the CRM and the simulator wait for the bridge to stop first
QUIET_SECONDS: Final = 0.3  # the bridge stops once no event came in for this long (after the last hang-ups)
QUIET_LIMIT_SECONDS: Final = 2.0
CONNECT_SECONDS: Final = 10.0


def parse_every(text: str) -> tuple[float, float]:
    """``--calls-every``: ``S`` (exactly every S seconds) or ``MIN-MAX`` (a random gap in that range)."""
    low_text, dash, high_text = text.strip().partition("-")
    try:
        low = float(low_text)
        high = float(high_text) if dash else low
    except ValueError:
        raise ValueError(f"--calls-every {text!r}: give seconds, such as 10, or a range, such as 8-15") from None
    if not 0.2 <= low <= high <= 3600:
        raise ValueError(f"--calls-every {text!r}: give seconds from 0.2 to 3600, the smaller first (such as 8-15)")
    return low, high


def describe_every(every: tuple[float, float]) -> str:
    low, high = every
    return f"every {low:g} s" if low == high else f"every {low:g}-{high:g} s"


# ---- the demo bridge's settings file ---------------------------------------------------------------------------


def bridge_settings_text(*, crm_address: str, crm_port: int, bridge_port: int, ami_port: int,
                         extensions: Sequence[str] = tuple(PHONES)) -> str:
    """The demo bridge's settings (TOML). The secrets are files beside it, named, never written into it."""
    raw: dict[str, dict[str, object]] = {
        "bridge": {
            "phone_system": "asterisk",
            "bridge_id": BRIDGE_ID,
            "address": BRIDGE_ADDRESS,
            "port": bridge_port,
            "callback_address": crm_address,
            "callback_port": crm_port,
            "callback_scheme": "http",
            "secret_file": BRIDGE_SECRET_NAME,
            "data_dir": BRIDGE_DATA_NAME,
            "extensions": list(extensions),
            "internal_digits": INTERNAL_DIGITS,
            "heartbeat_seconds": HEARTBEAT_SECONDS,
            "external_log": True,
            "extended_log": False,
            "run_at_startup": False,
        },
        "asterisk": {
            "host": AMI_HOST,
            "port": ami_port,
            "username": AMI_USER,
            "secret_file": AMI_SECRET_NAME,
            "busy_mode": "dnd",
            "originate_context": "from-internal",
            "originate_channel": "PJSIP/{ext}",
            "status_timeout": 5.0,
        },
    }
    body = [line for line in to_toml(raw).splitlines() if not line.startswith("#")]
    header = [
        "# The demo bridge's settings, written by `callcenter demo` at every start (edits are replaced).",
        "# Paths are relative to this file; the secrets are in the files named here.",
    ]
    return "\n".join(header + body) + "\n"


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, readable by the owner only."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    temporary.replace(path)


def read_secret(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").strip().splitlines()
    return lines[0].strip() if lines else ""


# ---- the calls --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallTarget:
    number: str  # what the caller dials: an extension or the ring group
    label: str
    weight: float
    phones: tuple[str, ...]


TARGETS: Final = (
    CallTarget("100", "Alice (100)", 0.7, ("100",)),
    CallTarget("101", "Bob (101)", 0.15, ("101",)),
    CallTarget(RING_GROUP, f"ring group {RING_GROUP} (Alice, Bob)", 0.15, RING_GROUP_MEMBERS),
)


@dataclass(frozen=True)
class PlacedCall:
    number: str
    name: str
    known: bool
    target: CallTarget

    def line(self, index: int, at: float | None = None) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(at))
        who = f"{self.number} {self.name}".strip()
        kind = "a contact" if self.known else "unknown number"
        return f"{clock}  call {index}: {who} ({kind}) → {self.target.label}"


class DemoCalls:
    """Rings the demo's phones from time to time (see the module's rules)."""

    def __init__(self, pbx: SimulatedPBX, callers: Sequence[tuple[str, str]], *,
                 every: tuple[float, float] = DEFAULT_EVERY, out: Callable[[str], None] | None = None,
                 seed: int | None = None) -> None:
        self.pbx = pbx
        self.callers = list(callers)
        self.every = every
        self.out = out
        self.rng = random.Random(seed)
        self.placed: list[PlacedCall] = []

    async def run(self) -> None:
        """Wait for someone (the bridge) to log in to the PBX, then place a call after every gap."""
        while self.pbx.clients == 0:
            await asyncio.sleep(0.05)
        while True:
            await asyncio.sleep(self.rng.uniform(*self.every))
            try:
                call = self.place()
            except Exception:  # one bad call must not end the demo's calls
                log.exception("the simulated PBX could not place a demo call")
                continue
            if call is not None and self.out is not None:
                self.out(call.line(len(self.placed)))

    def _occupied(self) -> set[str]:
        return {channel.extension for channel in self.pbx.channels() if channel.extension} | set(self.pbx.dnd)

    def _target(self) -> CallTarget | None:
        """Alice first; then a target with a free phone (None when every phone is in use or busy)."""
        occupied = self._occupied()
        free = [target for target in TARGETS if any(phone not in occupied for phone in target.phones)]
        if not free:
            return None
        if not self.placed and TARGETS[0] in free:
            return TARGETS[0]
        return self.rng.choices(free, weights=[target.weight for target in free])[0]

    def _caller(self) -> tuple[str, str, bool]:
        if self.callers and self.rng.random() >= UNKNOWN_RATIO:
            national, name = self.rng.choice(self.callers)
            number = self.rng.choice(("", "", "0030", "+30")) + national
            return number, name if self.rng.random() < 0.7 else "", True
        name = self.rng.choice(NETWORK_NAMES) if self.rng.random() < 0.5 else ""
        return random_greek_number(self.rng), name, False

    def place(self) -> PlacedCall | None:
        """Ring a free phone (None when every phone is in use: this caller tries again at the next turn)."""
        target = self._target()
        if target is None:
            return None
        number, name, known = self._caller()
        first = not self.placed
        abandon = None if first or self.rng.random() >= ABANDON_RATIO else self.rng.uniform(*ABANDON_SECONDS)
        self.pbx.inbound_call(number, target.number, name=name, hangup_after=self.rng.uniform(*TALK_SECONDS),
                              abandon_after=abandon)
        call = PlacedCall(number, name, known, target)
        self.placed.append(call)
        return call


# ---- the components ---------------------------------------------------------------------------------------------


class DemoPbx(Component):
    """The simulated Asterisk: AMI on loopback (``port`` None: 5038 if free, else any free port), the demo's phones,
    and the demo calls."""

    name = "simulated PBX"

    def __init__(self, *, ami_secret: str, port: int | None = None, callers: Sequence[tuple[str, str]] = (),
                 every: tuple[float, float] | None = DEFAULT_EVERY, out: Callable[[str], None] | None = None,
                 seed: int | None = None) -> None:
        self._secret = ami_secret
        self._port = port
        self._callers = list(callers)
        self.every = every
        self._out = out
        self._seed = seed
        self.pbx: SimulatedPBX | None = None
        self.calls: DemoCalls | None = None
        self.listening = asyncio.Event()
        self.calls_ended = asyncio.Event()  # set when stopping, once the calls in progress were hung up
        self.finished = asyncio.Event()
        self.wait_for: asyncio.Event | None = None  # stop only after this is set (the bridge's ``finished``)
        self._stopping = asyncio.Event()

    @property
    def port(self) -> int:
        return self.pbx.port if self.pbx is not None else 0

    def _simulator(self, port: int) -> SimulatedPBX:
        return SimulatedPBX(
            users={AMI_USER: self._secret}, host=AMI_HOST, port=port, agents=PHONES, remote=REMOTE,
            ring_timeout=RING_SECONDS, groups={RING_GROUP: list(RING_GROUP_MEMBERS)},
            queues={"400": list(RING_GROUP_MEMBERS)},
        )

    async def run(self, ready: asyncio.Event) -> None:
        calls_task: asyncio.Task[None] | None = None
        try:
            if self._port is None:
                try:
                    self.pbx = await self._simulator(DEFAULT_AMI_PORT).start()
                except PortInUseError:
                    self.pbx = await self._simulator(0).start()
            else:
                try:
                    self.pbx = await self._simulator(self._port).start()
                except PortInUseError as exc:
                    raise RuntimeError(exc.strerror) from None
            self.listening.set()
            if self.every is not None:
                self.calls = DemoCalls(self.pbx, self._callers, every=self.every, out=self._out, seed=self._seed)
                calls_task = asyncio.create_task(self.calls.run(), name="demo calls")
            ready.set()
            await self._stopping.wait()
        finally:
            if calls_task is not None:
                calls_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await calls_task
            if self.pbx is not None:
                self.pbx.core.hangup_all()  # heard by the bridge, so the CRM closes the calls in progress
            self.calls_ended.set()
            if self.wait_for is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wait_for.wait(), STOP_WAIT_SECONDS)
            if self.pbx is not None:
                await self.pbx.stop()
            self.finished.set()

    def stop(self) -> None:
        self._stopping.set()

    def describe(self) -> list[str]:
        phones = ", ".join(f"{ext} {name}" for ext, name in PHONES.items())
        lines = [f"PBX        simulated Asterisk, AMI on {AMI_HOST}:{self.port}; phones {phones}; "
                 f"ring group {RING_GROUP}"]
        if self.every is None:
            lines.append("Calls      none (--no-calls); call out from the screen, or restart without --no-calls")
        else:
            lines.append(f"Calls      one {describe_every(self.every)}, mostly to Alice, from contacts and unknown "
                         "numbers")
        return lines


class DemoBridge(Component):
    """The bridge, as ``callcenter bridge run --config var/demo-bridge.toml`` would run it, started once the
    simulator listens (its AMI port goes into the settings file)."""

    name = "bridge"

    def __init__(self, pbx: DemoPbx, *, settings_path: Path, crm_address: str, crm_port: int,
                 bridge_port: int) -> None:
        self.pbx = pbx
        self.settings_path = settings_path
        self.crm_address = crm_address
        self.crm_port = crm_port
        self.bridge_port = bridge_port
        self.bridge: Bridge | None = None
        self.finished = asyncio.Event()
        self._stopping = asyncio.Event()
        pbx.wait_for = self.finished

    async def run(self, ready: asyncio.Event) -> None:
        try:
            if not await _first(self.pbx.listening, self._stopping):
                return
            write_private(self.settings_path, bridge_settings_text(
                crm_address=self.crm_address, crm_port=self.crm_port, bridge_port=self.bridge_port,
                ami_port=self.pbx.port,
            ))
            try:
                settings = load_settings(self.settings_path, env={})
            except SettingsError as exc:
                raise RuntimeError(f"the demo bridge's settings were refused: {exc}") from None
            self.bridge = Bridge(settings, handle_signals=False, out=None)
            try:
                await self.bridge.start()
            except StartupError as exc:
                self.bridge = None
                raise RuntimeError(str(exc)) from None
            deadline = time.monotonic() + CONNECT_SECONDS
            while not self.bridge.pbx_connected and time.monotonic() < deadline and not self._stopping.is_set():
                await asyncio.sleep(0.02)
            if not self.bridge.pbx_connected and not self._stopping.is_set():
                log.warning("the demo bridge has not connected to the simulated PBX yet; it keeps trying")
            ready.set()
            await self._stopping.wait()
            # The simulator hangs up the calls in progress first; pass those events on before disconnecting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.pbx.calls_ended.wait(), QUIET_LIMIT_SECONDS)
            await self._quiet()
        finally:
            if self.bridge is not None:
                await self.bridge.shutdown()
            self.finished.set()

    async def _quiet(self) -> None:
        bridge = self.bridge
        if bridge is None:
            return
        deadline = time.monotonic() + QUIET_LIMIT_SECONDS
        seen = bridge.status().events_in_total
        while time.monotonic() < deadline:
            await asyncio.sleep(QUIET_SECONDS)
            now = bridge.status().events_in_total
            if now == seen:
                return
            seen = now

    def stop(self) -> None:
        self._stopping.set()

    def describe(self) -> list[str]:
        connected = "connected to the PBX" if self.bridge is not None and self.bridge.pbx_connected else \
            "connecting to the PBX"
        return [f"Bridge     {BRIDGE_ADDRESS}:{self.bridge_port}, bridge id {BRIDGE_ID!r}, {connected}; settings "
                f"{_shown(self.settings_path)}"]


class StopsAfter(Component):
    """``inner``, asked to stop only once ``first`` has finished (or a few seconds passed)."""

    def __init__(self, inner: Component, first: asyncio.Event) -> None:
        self.inner = inner
        self.first = first
        self.name = inner.name
        self._waiter: asyncio.Task[None] | None = None

    async def run(self, ready: asyncio.Event) -> None:
        await self.inner.run(ready)

    def stop(self) -> None:
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_task(self._stop_later())

    async def _stop_later(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.first.wait(), STOP_WAIT_SECONDS)
        self.inner.stop()

    def describe(self) -> list[str]:
        return self.inner.describe()


async def _first(wanted: asyncio.Event, stopping: asyncio.Event) -> bool:
    """Wait until ``wanted`` or ``stopping`` is set; True when ``wanted`` came first."""
    waiters = {asyncio.ensure_future(wanted.wait()), asyncio.ensure_future(stopping.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return wanted.is_set() and not stopping.is_set()


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
