"""What every PBX link (AMI, CSTA, TAPI) offers the bridge daemon: the ``Connector`` protocol.

Rules (docs/bridge-interfaces.md):
- ``run(emit)`` connects, logs in, follows events, keeps the link alive and reconnects with back-off (first retry
  within 1 s, capped), reconciling live calls after every (re)connect; it returns only after ``stop()``. It emits a
  ``wire.LinkState`` on every change of the PBX link.
- ``emit`` is synchronous and never blocks (the outbox queues in memory): the socket reader never waits on the disk
  or the CRM.
- ``execute(command)`` never raises for PBX trouble: it answers ``CommandResult(ok=False, error_id=..., message=...)``
  with one of ``ERROR_IDS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

from callcenter import wire

EmitFn = Callable[[wire.Event], None]

NO_SUCH_CALL: Final = "no_such_call"
PBX_REFUSED: Final = "pbx_refused"
NOT_SUPPORTED: Final = "not_supported"
PBX_UNAVAILABLE: Final = "pbx_unavailable"
INVALID_COMMAND: Final = "invalid_command"
TIMEOUT: Final = "timeout"
ERROR_IDS: Final = (NO_SUCH_CALL, PBX_REFUSED, NOT_SUPPORTED, PBX_UNAVAILABLE, INVALID_COMMAND, TIMEOUT)


@runtime_checkable
class Connector(Protocol):
    phone_system: wire.PhoneSystem

    @property
    def connected(self) -> bool: ...

    async def run(self, emit: EmitFn) -> None: ...

    async def stop(self) -> None: ...

    async def execute(self, command: wire.Command) -> wire.CommandResult: ...
