"""``SimulatedPBX``: the simulator as one object, for the CLI and for tests of the bridge and the whole product.

    async with SimulatedPBX(users={"crm": "s3cret"}, agents=["100", "101"], speed=20) as pbx:
        ...connect an AMI client to ("127.0.0.1", pbx.port)...
        await pbx.run_scenario("inbound_answered")      # a built-in name, a path, or a Scenario
        pbx.inject_fault("stall", duration=30)
        pbx.channels(), pbx.dnd, pbx.commands, pbx.events

Rules:
- Loopback only unless ``allow_remote=True``: the simulator is a test tool, its users and secrets are not hardened.
- Durations everywhere (scenarios, faults, ring timeouts) are simulated seconds; see ``clock.Clock``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from callcenter.pbxsim.clock import Clock
from callcenter.pbxsim.engine import PBXCore
from callcenter.pbxsim.loadgen import KNOWN_CALLERS, LoadConfig, LoadGenerator
from callcenter.pbxsim.model import Agent, AMIEvent, Behaviour, Call, ChannelInfo, default_agent_name
from callcenter.pbxsim.scenario import Scenario, ScenarioError, ScenarioRun, builtin_scenarios, load_scenario
from callcenter.pbxsim.server import AMIServer, ReceivedAction

DEFAULT_AGENTS: tuple[str, ...] = ("100", "101", "102", "103")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP))
        except (OSError, ValueError):
            return False


def resolve_scenario(spec: Scenario | str | Path) -> Scenario:
    """A Scenario as is; a built-in scenario's name (``inbound_answered``); or a path to a scenario file."""
    if isinstance(spec, Scenario):
        return spec
    builtins = builtin_scenarios()
    if isinstance(spec, str) and spec in builtins:
        return load_scenario(builtins[spec])
    path = Path(spec)
    if not path.exists():
        raise ScenarioError(
            f"no scenario file {spec}; give a path, or one of the built-in scenarios: {', '.join(builtins)}")
    return load_scenario(path)


class SimulatedPBX:
    def __init__(
        self,
        *,
        users: Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        agents: Iterable[str] | Mapping[str, str] | None = None,
        behaviour: Behaviour | None = None,
        remote: Behaviour | None = None,
        speed: float = 1.0,
        ring_timeout: float = 20.0,
        groups: Mapping[str, Sequence[str]] | None = None,
        queues: Mapping[str, Sequence[str]] | None = None,
        allow_remote: bool = False,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"{host} is not a loopback address; the simulator listens on loopback only "
                             "(pass allow_remote / --allow-remote to override)")
        self.clock = Clock(speed)
        names: Mapping[str, str] = agents if isinstance(agents, Mapping) else {
            ext: "" for ext in (DEFAULT_AGENTS if agents is None else agents)}
        base = behaviour or Behaviour()
        agent_objs = {ext: Agent(ext=ext, name=name or default_agent_name(ext), behaviour=Behaviour(**vars(base)))
                      for ext, name in names.items()}
        self.core = PBXCore(
            self.clock,
            agents=agent_objs,
            groups={k: list(v) for k, v in (groups or {"600": list(names)}).items()},
            queues={k: list(v) for k, v in (queues or {"400": list(names)}).items()},
            ring_timeout=ring_timeout,
        )
        if remote is not None:
            self.core.remote_behaviour = Behaviour(**vars(remote))
        self.server = AMIServer(self.core, users=users, host=host, port=port)
        self.runs: list[ScenarioRun] = []
        self.loads: list[LoadGenerator] = []

    # ---- life cycle -----------------------------------------------------------------------------------------

    async def start(self) -> SimulatedPBX:
        await self.server.start()
        return self

    async def stop(self) -> None:
        for load in self.loads:
            await load.stop()
        await self.server.close()

    async def __aenter__(self) -> SimulatedPBX:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    # ---- driving it -----------------------------------------------------------------------------------------

    def start_scenario(self, scenario: Scenario | str | Path) -> ScenarioRun:
        run = ScenarioRun(self.core, resolve_scenario(scenario), fault=self.inject_fault).start()
        self.runs.append(run)
        return run

    async def run_scenario(self, scenario: Scenario | str | Path, *, timeout: float | None = None) -> ScenarioRun:
        """Run a scenario to its end; ``timeout`` in real seconds."""
        run = self.start_scenario(scenario)
        await asyncio.wait_for(run.wait(), timeout)
        return run

    def start_load(self, rate: float, *, agents: Sequence[str] | None = None,
                   known_callers: Sequence[tuple[str, str]] = KNOWN_CALLERS, unknown_ratio: float = 0.3,
                   talk: tuple[float, float] = (5.0, 30.0), max_calls: int | None = None,
                   seed: int | None = None, ring_timeout: float | None = None) -> LoadGenerator:
        config = LoadConfig(rate=rate, agents=list(agents or self.core.agents), known_callers=known_callers,
                            unknown_ratio=unknown_ratio, talk=talk, max_calls=max_calls, seed=seed,
                            ring_timeout=ring_timeout)
        load = LoadGenerator(self.core, config).start()
        self.loads.append(load)
        return load

    def inbound_call(self, number: str, to: str, *, name: str = "", hangup_after: float | None = None,
                     abandon_after: float | None = None, ring_timeout: float | None = None, label: str = "") -> Call:
        return self.core.inbound(number, name, to, label=label, ring_timeout=ring_timeout,
                                 caller=Behaviour(hangup_after=hangup_after, abandon_after=abandon_after))

    def answer(self, ext: str) -> bool:
        """Extension ``ext`` picks up its ringing phone."""
        return self.core.answer_endpoint(ext)

    def set_dnd(self, ext: str, on: bool) -> None:
        self.core.set_dnd(ext, on)

    def set_behaviour(self, ext: str, behaviour: Behaviour) -> None:
        self.core.add_agent(ext).behaviour = behaviour

    def inject_fault(self, kind: str, duration: float | None = None) -> None:
        """``drop``, ``garbage``, ``stall`` or ``restart`` on every connected session (duration: simulated s)."""
        self.server.inject(kind, duration)

    async def resume(self) -> None:
        await self.server.resume()

    # ---- looking at it --------------------------------------------------------------------------------------

    def channels(self) -> list[ChannelInfo]:
        return self.core.channel_infos()

    @property
    def dnd(self) -> frozenset[str]:
        return self.core.dnd

    @property
    def commands(self) -> list[ReceivedAction]:
        return self.server.commands

    def commands_named(self, name: str) -> list[ReceivedAction]:
        return [c for c in self.server.commands if c.name.lower() == name.lower()]

    @property
    def events(self) -> list[AMIEvent]:
        return list(self.core.history)

    @property
    def clients(self) -> int:
        """Logged-in sessions right now."""
        return sum(1 for s in self.server.sessions if s.authenticated and not s.closed)

    @property
    def errors(self) -> list[str]:
        """Everything that went wrong inside the simulator: failed scenario steps and crashed timers."""
        return [*(e for run in self.runs for e in run.errors), *(repr(e) for e in self.clock.errors)]

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0, poll: float = 0.005) -> None:
        """Poll ``predicate`` until it holds; ``timeout`` in real seconds (TimeoutError after)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            await asyncio.sleep(poll)
