"""The whole bridge against the simulated Asterisk (pbxsim) over TCP and a fake CRM over HTTP: calls reach the CRM,
the CRM's commands change the PBX, Stop/Start drop and restore the PBX link, and `callcenter bridge run` as a real
process starts, serves and stops on SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from callcenter import wire
from callcenter.bridge.daemon import Bridge
from callcenter.bridge.logs import BridgeLogs
from callcenter.bridge.settings import load_settings
from callcenter.pbxsim import SimulatedPBX
from tests.bridge.conftest import AMI_SECRET, BRIDGE_SECRET, FakeCrm, free_port

ROOT = Path(__file__).resolve().parents[2]
CALLER = "00302101234567"


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPBX]:
    async with SimulatedPBX(users={"crm": AMI_SECRET}, agents={"100": "Alice", "101": "Bob"},
                            ring_timeout=1000) as sim:
        yield sim


@pytest.fixture
def config_for(write_config: Callable[..., Path], fake_crm: tuple[FakeCrm, int], pbx: SimulatedPBX
               ) -> Callable[..., Path]:
    def make(**bridge: Any) -> Path:
        return write_config(
            bridge={"port": free_port(), "callback_port": fake_crm[1], "internal_digits": 3, **bridge},
            asterisk={"port": pbx.port, "status_timeout": 2.0},
        )

    return make


def signed(command: wire.Command) -> tuple[bytes, dict[str, str]]:
    body = wire.encode(command)
    return body, {wire.SIGNATURE_HEADER: wire.sign(BRIDGE_SECRET, body, int(time.time())),
                  wire.BRIDGE_HEADER: "office"}


async def send(client: httpx.AsyncClient, command: wire.Command) -> wire.CommandResult:
    body, headers = signed(command)
    response = await client.post("/v1/commands", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return wire.decode_result(response.content)


async def until(predicate: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_calls_reach_the_crm_and_commands_change_the_pbx(
    config_for: Callable[..., Path], fake_crm: tuple[FakeCrm, int], pbx: SimulatedPBX
) -> None:
    crm, _port = fake_crm
    settings = load_settings(config_for(), env={})
    logs = BridgeLogs(console=io.StringIO())
    bridge = Bridge(settings, logs=logs, handle_signals=False, out=io.StringIO(),
                    deliverer_options={"backoff_first": 0.02, "backoff_cap": 0.1})
    task = asyncio.create_task(bridge.run())
    try:
        await until(lambda: bridge.ready.is_set() or task.done(), "the bridge to start")
        assert not task.done(), task
        await crm.wait_for(lambda: any(link.pbx_connected for link in crm.links()))
        assert bridge.listener is not None

        pbx.inbound_call(CALLER, "100", name="Γιώργος")
        await crm.wait_for(lambda: any(isinstance(e, wire.CallRinging) and e.extension == "100" for e in crm.events))
        ringing = next(e for e in crm.events if isinstance(e, wire.CallRinging))
        assert (ringing.remote_number, ringing.remote_name, ringing.direction) == (
            CALLER, "Γιώργος", wire.Direction.INBOUND)

        async with httpx.AsyncClient(base_url=bridge.listener.base_url, timeout=10) as client:
            assert (await send(client, wire.SetBusy(command_id="busy-1", extension="101", busy=True))).ok
            assert "101" in pbx.dnd
            dialled = await send(client, wire.Dial(command_id="dial-1", extension="101", number="2107654321"))
            assert dialled.ok, dialled
            assert len(pbx.commands_named("Originate")) == 1
            gone = await send(client, wire.Hangup(command_id="h-1", extension="100", call_id="no-such-call"))
            assert (gone.ok, gone.error_id) == (False, "no_such_call")
            login = await send(client, wire.AgentLogin(command_id="l-1", extension="100", agent_id="7", password="x"))
            assert (login.ok, login.error_id) == (False, "not_supported")  # Asterisk has no agent log-in

            await bridge.stop_pbx()
            await until(lambda: pbx.clients == 0, "the PBX link to drop")
            stopped = await send(client, wire.SetBusy(command_id="busy-2", extension="101", busy=False))
            assert (stopped.ok, stopped.error_id) == (False, "pbx_unavailable")
            await bridge.start_pbx()
            await until(lambda: pbx.clients == 1 and bridge.pbx_connected, "the PBX link to come back")
            assert (await send(client, wire.SetBusy(command_id="busy-3", extension="101", busy=False))).ok
            assert "101" not in pbx.dnd
    finally:
        bridge.request_exit()
        await asyncio.wait_for(task, 15)
        logs.close()
    assert pbx.clients == 0
    assert crm.links()[-1].detail == "the bridge exited"


async def test_bridge_run_as_a_process_serves_the_crm_and_stops_on_sigint(
    config_for: Callable[..., Path], fake_crm: tuple[FakeCrm, int], pbx: SimulatedPBX, tmp_path: Path
) -> None:
    crm, _port = fake_crm
    port = free_port()
    config = config_for(port=port, external_log=True, extended_log=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLCENTER_", "DJANGO_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callcenter", "bridge", "run", "--config", str(config), cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout: list[str] = []
    try:
        assert process.stdout is not None and process.stderr is not None
        while not any("settings page:" in line for line in stdout):
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, f"the bridge ended: {(await process.stderr.read()).decode()}"
            stdout.append(line.decode())
        await crm.wait_for(lambda: any(link.pbx_connected for link in crm.links()), seconds=10)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert (await client.get("/health")).json()["status"] == "ok"
            result = await send(client, wire.Dial(command_id="d1", extension="100", number="2101112223"))
        assert result.ok, result
        assert len(pbx.commands_named("Originate")) == 1

        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0, err.decode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    stdout.append(out.decode())
    assert "Traceback" not in err.decode()
    await until(lambda: pbx.clients == 0, "the bridge to log off")
    assert crm.links()[-1].detail == "the bridge exited"
    logged = "".join(path.read_text(errors="replace") for path in (tmp_path / "data").glob("*.log*"))
    assert '"type":"bridge.link"' in logged  # the extended log has the wire events
    for text in ("".join(stdout), err.decode(), logged):
        assert AMI_SECRET not in text and BRIDGE_SECRET not in text
