"""The bridge daemon in-process, over real sockets: a test connector (tests/bridge/stub_connector.py) stands in for
the PBX link and a fake CRM (conftest.FakeCrm) receives the events."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from callcenter import wire
from callcenter.bridge.connectors.base import EmitFn
from callcenter.bridge.control import StartError
from callcenter.bridge.daemon import Bridge, StartupError, make_connector
from callcenter.bridge.logs import BridgeLogs, event_logger
from callcenter.bridge.settings import BridgeSettings, load_settings
from tests.bridge.conftest import AGENT_PASSWORD, AMI_SECRET, BRIDGE_SECRET, FakeCrm, free_port
from tests.bridge.stub_connector import StubConnector

ADMIN_TOKEN = "daemon-admin-token-0123456789abc"
FAST_DELIVERY = {"backoff_first": 0.02, "backoff_cap": 0.1, "timeout": 2.0}


class Stubs:
    """The connector factory: a fresh StubConnector per Start, all kept for the assertions."""

    def __init__(self, make: Callable[[], StubConnector] = StubConnector) -> None:
        self.made: list[StubConnector] = []
        self._make = make

    def __call__(self, settings: BridgeSettings) -> StubConnector:
        self.made.append(self._make())
        return self.made[-1]


@contextlib.asynccontextmanager
async def running_bridge(
    settings: BridgeSettings, factory: Callable[[BridgeSettings], Any], **options: Any
) -> AsyncIterator[Bridge]:
    logs = options.pop("logs", None) or BridgeLogs(console=io.StringIO())
    bridge = Bridge(settings, logs=logs, connector_factory=factory, handle_signals=False, admin_token=ADMIN_TOKEN,
                    deliverer_options=FAST_DELIVERY, out=options.pop("out", io.StringIO()), **options)
    task = asyncio.create_task(bridge.run())
    ready = asyncio.ensure_future(bridge.ready.wait())
    await asyncio.wait({ready, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        logs.close()
        task.result()
    try:
        yield bridge
    finally:
        bridge.request_exit()
        await asyncio.wait_for(task, 15)
        logs.close()


@pytest.fixture
def settings_with(write_config: Callable[..., Path], fake_crm: tuple[FakeCrm, int]) -> Callable[..., BridgeSettings]:
    _crm, crm_port = fake_crm

    def make(**bridge: Any) -> BridgeSettings:
        values = {"port": free_port(), "callback_port": crm_port, **bridge}
        return load_settings(write_config(bridge=values), env={})

    return make


def signed_post(bridge: Bridge, command: wire.Command) -> tuple[bytes, dict[str, str]]:
    body = wire.encode(command)
    return body, {wire.SIGNATURE_HEADER: wire.sign(BRIDGE_SECRET, body, int(time.time()))}


async def test_it_connects_reports_its_state_and_takes_commands(
    settings_with: Callable[..., BridgeSettings], fake_crm: tuple[FakeCrm, int]
) -> None:
    crm, _port = fake_crm
    stubs = Stubs()
    async with running_bridge(settings_with(), stubs) as bridge:
        await crm.wait_for(lambda: any(link.pbx_connected for link in crm.links()))
        first = crm.links()[0]
        assert (first.pbx_connected, first.detail, first.extensions) == (False, "the bridge started", ("100", "101"))
        settings = bridge.settings
        for link in crm.links():  # the connector's too: the daemon fills in what the CRM checks (S-4.5)
            assert (link.service_address, link.service_port, link.callback_address, link.callback_port) == (
                "127.0.0.1", settings.port, "127.0.0.1", settings.callback_port)
            assert link.heartbeat_seconds == 30.0 and link.extensions == ("100", "101") and link.bridge_version
        assert bridge.pbx_connected

        assert bridge.listener is not None
        body, headers = signed_post(bridge, wire.SetBusy(command_id="b1", extension="100", busy=True))
        async with httpx.AsyncClient(base_url=bridge.listener.base_url) as client:
            response = await client.post("/v1/commands", content=body, headers=headers)
            health = (await client.get("/health")).json()
        assert wire.decode_result(response.content).ok
        assert stubs.made[0].executed == [wire.SetBusy(command_id="b1", extension="100", busy=True)]
        assert health == {"status": "ok", "pbx_connected": True, "outbox_depth": 0, "phone_system": "asterisk"}
    assert crm.links()[-1].detail == "the bridge exited"  # delivered while stopping
    assert stubs.made[0].stops == 1


async def test_stop_and_start_on_the_settings_page_reconnect_without_a_restart(
    settings_with: Callable[..., BridgeSettings], fake_crm: tuple[FakeCrm, int]
) -> None:
    crm, _port = fake_crm
    stubs = Stubs()
    async with running_bridge(settings_with(), stubs) as bridge:
        assert bridge.listener is not None
        async with httpx.AsyncClient(base_url=bridge.listener.base_url) as client:
            await client.get(f"/login?token={ADMIN_TOKEN}")
            csrf = re.search(r'name="csrf" value="([^"]+)"', (await client.get("/")).text)
            assert csrf

            assert (await client.post("/stop", data={"csrf": csrf.group(1)})).status_code == 303
            assert not bridge.pbx_running and stubs.made[0].stops == 1 and not stubs.made[0].connected
            await crm.wait_for(lambda: crm.links()[-1].detail == "stopped from the bridge's menu")
            body, headers = signed_post(bridge, wire.Answer(command_id="a1", extension="100"))
            result = wire.decode_result((await client.post("/v1/commands", content=body, headers=headers)).content)
            assert result.error_id == "pbx_unavailable"

            assert (await client.post("/start", data={"csrf": csrf.group(1)})).status_code == 303
            await crm.wait_for(lambda: crm.links()[-1].pbx_connected)
            assert bridge.pbx_connected and len(stubs.made) == 2 and stubs.made[1].runs == 1
            assert bridge.listener is not None  # same listener, same process


async def test_events_the_crm_could_not_take_wait_in_the_outbox_for_the_next_start(
    write_config: Callable[..., Path], fake_crm: tuple[FakeCrm, int]
) -> None:
    crm, crm_port = fake_crm
    config = {"port": free_port(), "callback_port": free_port()}  # nobody listens there: the CRM is down
    down = load_settings(write_config(bridge=config), env={})
    emitted: list[EmitFn] = []

    class Talker(StubConnector):
        async def run(self, emit: EmitFn) -> None:
            emitted.append(emit)
            await super().run(emit)

    async with running_bridge(down, Stubs(Talker)) as bridge:
        for n in range(5):
            emitted[0](wire.AgentState(event_id=f"dnd-{n}", occurred_at=1.0, extension="100", dnd=n % 2 == 0))
        assert bridge.status().events_in_total == 7  # the bridge's and the connector's LinkState, 5 states
    assert crm.events == []

    up = load_settings(write_config(bridge={**config, "callback_port": crm_port}), env={})
    async with running_bridge(up, Stubs()):
        await crm.wait_for(lambda: len([e for e in crm.events if isinstance(e, wire.AgentState)]) == 5)
    ids = [event.event_id for event in crm.events if isinstance(event, wire.AgentState)]
    assert ids == [f"dnd-{n}" for n in range(5)]  # in order, once each


async def test_a_failing_connector_is_reported_and_start_tries_again(
    settings_with: Callable[..., BridgeSettings], fake_crm: tuple[FakeCrm, int]
) -> None:
    crm, _port = fake_crm

    class Broken(StubConnector):
        async def run(self, emit: EmitFn) -> None:
            raise RuntimeError("the AMI codec met a bug")

    stubs = Stubs(Broken)
    async with running_bridge(settings_with(), stubs) as bridge:
        await crm.wait_for(lambda: any("the connector failed" in link.detail for link in crm.links()))
        assert not bridge.pbx_running
        assert any("the asterisk connector failed: the AMI codec met a bug" in line for line in bridge.recent_errors())
        await bridge.start_pbx()
        await crm.wait_for(lambda: len([x for x in crm.links() if "the connector failed" in x.detail]) == 2)
        assert len(stubs.made) == 2


async def test_saved_settings_reconnect_the_pbx_and_set_up_run_at_startup(
    settings_with: Callable[..., BridgeSettings], tmp_path: Path
) -> None:
    stubs = Stubs()
    settings = settings_with()
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path)}
    async with running_bridge(settings, stubs, env=env) as bridge:
        changed = replace(settings, extensions=("100",), run_at_startup=True)
        notes = await bridge.apply_settings(changed)
        assert "Reconnecting to the PBX with the new settings." in notes
        assert len(stubs.made) == 2 and stubs.made[0].stops == 1 and bridge.pbx_running
        unit = tmp_path / "xdg" / "systemd" / "user" / "callcenter-bridge.service"
        assert unit.exists() and any("systemctl --user" in note for note in notes)
        assert str(settings.source) in unit.read_text()


@pytest.mark.parametrize("system", ["tsapi", "tapi"])
def test_a_phone_system_without_a_connector_here_is_one_clear_sentence(
    write_config: Callable[..., Path], system: str
) -> None:
    settings = load_settings(write_config(
        bridge={"phone_system": system},
        tsapi={"internal_phone": "100", "username": "u", "password": "p", "service": "s"},
        tapi={"phone_type": "custom", "phone_type_name": "TSP", "internal_phone": "100"},
    ), env={})
    with pytest.raises(StartError) as caught:
        make_connector(settings)
    assert str(caught.value).startswith(f'phone_system = "{system}" is not available ')


async def test_a_busy_port_stops_the_start_cleanly(settings_with: Callable[..., BridgeSettings]) -> None:
    root_handlers = list(logging.getLogger().handlers)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(StartupError) as caught:
            async with running_bridge(settings_with(port=port), Stubs()):
                pass
    assert str(caught.value) == (
        f"port {port} on 127.0.0.1 is in use (by another bridge?); choose another port in [bridge] port"
    )
    assert logging.getLogger().handlers == root_handlers


async def test_a_data_dir_that_cannot_be_created_is_one_clear_sentence(
    settings_with: Callable[..., BridgeSettings], tmp_path: Path
) -> None:
    (tmp_path / "occupied").write_text("a file, not a directory")
    with pytest.raises(StartupError) as caught:
        async with running_bridge(settings_with(data_dir=str(tmp_path / "occupied" / "data")), Stubs()):
            pass
    assert str(caught.value).startswith(f"cannot write the logs in [bridge] data_dir {tmp_path / 'occupied'}")
    assert str(caught.value).endswith("choose a directory this user can write")


async def test_no_secret_appears_in_any_log_file_or_output_of_a_full_run(
    settings_with: Callable[..., BridgeSettings], fake_crm: tuple[FakeCrm, int]
) -> None:
    crm, _port = fake_crm
    settings = settings_with(extended_log=True, external_log=True)

    class Careless(StubConnector):
        """Logs the way a connector under stress might: its login, and errors quoting secrets."""

        async def run(self, emit: EmitFn) -> None:
            event_logger("ami").debug("-> Action: Login\r\nUsername: crm\r\nSecret: %s\r\n", AMI_SECRET)
            logging.getLogger("callcenter.bridge.ami").error("login with %r refused", AMI_SECRET)
            try:
                raise ConnectionError(f"refused: secret={AMI_SECRET} bridge={BRIDGE_SECRET}")
            except ConnectionError:
                logging.getLogger("callcenter.bridge.ami").exception("reconnecting")
            await super().run(emit)

    console, out = io.StringIO(), io.StringIO()
    logs = BridgeLogs(console=console, console_level=logging.DEBUG)
    async with running_bridge(settings, Stubs(Careless), logs=logs, out=out) as bridge:
        assert bridge.listener is not None
        async with httpx.AsyncClient(base_url=bridge.listener.base_url) as client:
            login = wire.AgentLogin(command_id="l1", extension="100", agent_id="42", password=AGENT_PASSWORD)
            body, headers = signed_post(bridge, login)
            await client.post("/v1/commands", content=body, headers=headers)
            await client.post("/v1/commands", content=body, headers={wire.SIGNATURE_HEADER: "t=1,v1=00"})
            form = await client.get("/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf
            await client.post("/login", data={"csrf": csrf.group(1), "token": BRIDGE_SECRET + "x"})
            await client.get(f"/login?token={ADMIN_TOKEN}")
            await client.get("/errors")
        await crm.wait_for(lambda: len(crm.links()) >= 2)

    files = sorted(path for path in settings.data_dir.rglob("*") if path.is_file())
    assert {path.name for path in files} >= {"errors.log", "events.log", "outbox.sqlite3"}
    assert "Secret: ***" in (settings.data_dir / "events.log").read_text()
    assert "reconnecting" in (settings.data_dir / "errors.log").read_text()
    outputs = {str(path): path.read_bytes() for path in files}
    outputs["console"] = console.getvalue().encode()
    outputs["stdout"] = out.getvalue().encode()
    for secret in (BRIDGE_SECRET, AMI_SECRET, AGENT_PASSWORD):
        for where, content in outputs.items():
            assert secret.encode() not in content, f"{secret} in {where}"
    for where, content in outputs.items():  # a login token is never printed or logged (issue 11, finding 5)
        assert ADMIN_TOKEN.encode() not in content, where
        assert b"login?token=" not in content, where
    assert "callcenter bridge login-link" in out.getvalue()


async def test_a_heartbeat_repeats_the_link_state(
    settings_with: Callable[..., BridgeSettings], fake_crm: tuple[FakeCrm, int]
) -> None:
    crm, _port = fake_crm
    settings = replace(settings_with(address="0.0.0.0"), heartbeat_seconds=0.1)
    async with running_bridge(settings, Stubs()):
        await crm.wait_for(lambda: len([x for x in crm.links() if x.pbx_connected]) >= 3)
    beats = [link for link in crm.links() if link.pbx_connected]
    assert len({link.event_id for link in beats}) == len(beats)  # each a new event
    assert all(link.service_address == "" and link.heartbeat_seconds == 0.1 for link in beats)  # wildcard: unsaid
