"""A test-only connector: implements the Connector protocol with no PBX behind it, so the daemon, the control
listener and the settings page can be tested before (and apart from) the real AMI connector."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from callcenter import wire
from callcenter.bridge.connectors.base import NO_SUCH_CALL, EmitFn

Answer = Callable[[wire.Command], wire.CommandResult]


def ok(command: wire.Command) -> wire.CommandResult:
    return wire.CommandResult(command_id=command.command_id, ok=True)


class StubConnector:
    """Connects at once (unless ``reachable`` is False), executes commands by ``answer``, records them."""

    phone_system = wire.PhoneSystem.ASTERISK

    def __init__(self, *, reachable: bool = True, answer: Answer = ok, delay: float = 0.0) -> None:
        self.reachable = reachable
        self.answer = answer
        self.delay = delay
        self.executed: list[wire.Command] = []
        self.runs = 0
        self.stops = 0
        self._connected = False
        self._stop = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._connected

    async def run(self, emit: EmitFn) -> None:
        self.runs += 1
        self._stop = asyncio.Event()
        if self.reachable:
            self._connected = True
            emit(self._link(True))
        await self._stop.wait()
        if self._connected:
            self._connected = False
            emit(self._link(False))

    async def stop(self) -> None:
        self.stops += 1
        self._stop.set()

    async def execute(self, command: wire.Command) -> wire.CommandResult:
        self.executed.append(command)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.answer(command)

    def _link(self, connected: bool) -> wire.LinkState:
        return wire.LinkState(
            event_id=f"stub:link:{time.monotonic_ns()}", occurred_at=time.time(),
            phone_system=self.phone_system, pbx_connected=connected,
        )


def no_such_call(command: wire.Command) -> wire.CommandResult:
    return wire.CommandResult(command_id=command.command_id, ok=False, error_id=NO_SUCH_CALL,
                              message="no call with that id")
