"""The control listener over a real socket: signed commands, health, metrics, port clash, the local settings page."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from callcenter import wire
from callcenter.bridge import control, login_links
from callcenter.bridge.connectors.base import Connector
from callcenter.bridge.control import (
    MAX_COMMAND_BYTES,
    BridgeStatus,
    ControlListener,
    ListenError,
    bind_listener,
)
from callcenter.bridge.settings import BridgeSettings, load_settings
from tests.bridge.conftest import AMI_SECRET, BRIDGE_SECRET
from tests.bridge.stub_connector import StubConnector, no_such_call

ADMIN_TOKEN = "admin-token-for-the-tests-0123456789"


@dataclass
class Target:
    """The running bridge as the listener sees it, reduced to a stub connector and a list of events."""

    current: BridgeSettings
    stub: StubConnector
    running: bool = True
    exit_requested: bool = False
    applied: list[BridgeSettings] = field(default_factory=list)
    events: list[wire.Event] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def settings(self) -> BridgeSettings:
        return self.current

    @property
    def connector(self) -> Connector | None:
        return self.stub if self.running else None

    def status(self) -> BridgeStatus:
        return BridgeStatus(pbx_running=self.running, pbx_connected=self.running and self.stub.connected,
                            events_in_total=len(self.events), outbox_depth=3, outbox_bytes=4096)

    def recent_errors(self) -> list[str]:
        return ["2026-01-01 ERROR callcenter.bridge: <script>alert(1)</script>"]

    async def start_pbx(self) -> None:
        self.running = True
        self.task = asyncio.create_task(self.stub.run(self.events.append))
        await asyncio.sleep(0)

    async def stop_pbx(self) -> None:
        self.running = False
        await self.stub.stop()

    async def apply_settings(self, settings: BridgeSettings) -> list[str]:
        self.current = settings
        self.applied.append(settings)
        return ["applied now"]

    def request_exit(self) -> None:
        self.exit_requested = True


@dataclass
class Running:
    listener: ControlListener
    target: Target
    url: str
    config: Path


@pytest.fixture
async def running(write_config: Callable[..., Path]) -> AsyncIterator[Running]:
    config = write_config(asterisk={"status_timeout": 0.05})
    target = Target(load_settings(config, env={}), StubConnector())
    await target.start_pbx()
    listener = ControlListener(target, bind_listener("127.0.0.1", 0), admin_token=ADMIN_TOKEN, env={})
    ready = asyncio.Event()
    serving = asyncio.create_task(listener.serve(ready))
    await asyncio.wait_for(ready.wait(), 5)
    yield Running(listener, target, listener.base_url, config)
    listener.stop()
    await serving
    await target.stub.stop()


def signed(body: bytes, *, secret: str = BRIDGE_SECRET, at: float | None = None) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    return {wire.SIGNATURE_HEADER: wire.sign(secret, body, stamp), wire.BRIDGE_HEADER: "office",
            "content-type": "application/json"}


def dial(command_id: str = "cmd-1", number: str = "2101234567") -> bytes:
    return wire.encode(wire.Dial(command_id=command_id, extension="100", number=number))


async def post_command(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as client:
        return await client.post("/v1/commands", content=body, headers=headers)


# ---- commands ----------------------------------------------------------------------------------------------------


async def test_a_signed_command_is_executed_and_answered(running: Running) -> None:
    response = await post_command(running.url, dial(), signed(dial()))
    assert response.status_code == 200
    assert wire.decode_result(response.content) == wire.CommandResult(command_id="cmd-1", ok=True)
    assert running.target.stub.executed == [wire.Dial(command_id="cmd-1", extension="100", number="2101234567")]


# The headers are made when the test runs, not when the module is collected: a signature made at collection is
# minutes old by the time a long (or busy) run reaches the test, and is refused for its age instead.
@pytest.mark.parametrize(("headers", "message"), [
    (dict, "missing X-Callcenter-Signature header"),
    (lambda: {wire.SIGNATURE_HEADER: "garbage"},
     "malformed X-Callcenter-Signature header; expected t=<seconds>,v1=<64 hex digits>"),
    (lambda: signed(dial(), secret="another-secret-of-the-wrong-bridge"),
     "signature does not match; check that both sides have the same bridge secret"),
    (lambda: signed(dial(), at=time.time() - 3600), "away from this clock"),
    (lambda: {**signed(dial()), wire.BRIDGE_HEADER: "warehouse"},
     "this is bridge 'office', not 'warehouse'; check the bridge's address in the CRM"),
], ids=["unsigned", "malformed", "wrong-secret", "too-old", "other-bridge"])
async def test_an_unauthenticated_command_is_refused_and_not_executed(
    running: Running, headers: Callable[[], dict[str, str]], message: str
) -> None:
    response = await post_command(running.url, dial(), headers())
    assert response.status_code == 401
    answer = response.json()
    assert answer["error_id"] == "unauthenticated" and message in answer["message"]
    assert BRIDGE_SECRET not in response.text
    assert running.target.stub.executed == []


async def test_a_signature_for_another_body_is_refused(running: Running) -> None:
    response = await post_command(running.url, dial(number="0900123456"), signed(dial()))
    assert response.status_code == 401
    assert running.target.stub.executed == []


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "command is not valid JSON"),
    (b'{"type": "reboot", "command_id": "x", "extension": "100"}', "invalid command"),
    (b'{"type": "dial", "command_id": "x", "extension": "100"}', "missing required field `number`"),
    (b'{"type": "dial", "command_id": "x", "extension": "100", "number": "1", "v": 9}', "schema version 9"),
])
async def test_a_malformed_command_is_a_400_with_the_reason(running: Running, body: bytes, message: str) -> None:
    response = await post_command(running.url, body, signed(body))
    assert response.status_code == 400
    assert response.json()["error_id"] == "invalid_command"
    assert message in response.json()["message"]
    assert running.target.stub.executed == []


@pytest.mark.parametrize("signature", [
    "t=1" + "0" * 400 + ",v1=00",  # issue 11: OverflowError and a traceback, with no valid bridge at all
    "t=" + "9" * 4_000 + ",v1=" + "0" * 64,
    "t=1700000000,v1=" + "g" * 64,
    "t=-5,v1=" + "0" * 64,
    "t=1.5,v1=" + "0" * 64,
    "t=nan,v1=" + "0" * 64,
    "t=1,t=2,v1=" + "0" * 64,
    "v1=" + "0" * 64,
], ids=["t-10e400", "t-4000-digits", "v1-not-hex", "t-negative", "t-float", "t-nan", "t-twice", "no-t"])
async def test_a_hostile_signature_is_a_401_with_one_log_line(
    running: Running, caplog: pytest.LogCaptureFixture, signature: str
) -> None:
    caplog.set_level("DEBUG")
    headers = {**signed(dial()), wire.SIGNATURE_HEADER: signature}
    response = await post_command(running.url, dial(), headers)
    assert response.status_code == 401
    assert "malformed X-Callcenter-Signature" in response.json()["message"]
    mine = [r for r in caplog.records if r.name.startswith("callcenter")]
    assert len(mine) == 1 and mine[0].exc_info is None
    assert "Traceback" not in caplog.text
    assert running.target.stub.executed == []


async def test_invalid_utf8_inside_a_signed_command_is_a_400(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    body = dial(number="NUMBER").replace(b"NUMBER", bytes([0xC3, 0x28, 0xFF]))
    response = await post_command(running.url, body, signed(body))
    assert response.status_code == 400
    assert response.json()["error_id"] == "invalid_command"
    assert "not valid UTF-8" in response.json()["message"]
    assert "Traceback" not in caplog.text
    assert running.target.stub.executed == []


async def test_an_oversize_body_is_refused_before_anything_else(running: Running) -> None:
    body = b"x" * (MAX_COMMAND_BYTES + 1)
    response = await post_command(running.url, body, signed(body))
    assert response.status_code == 413
    assert response.json()["error_id"] == "too_large"


async def test_an_oversize_body_without_a_length_is_refused_too(running: Running) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 8192

    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.post("/v1/commands", content=chunks(), headers=signed(b""))
    assert response.status_code == 413


async def test_commands_need_post(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.get("/v1/commands")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


async def test_the_connector_s_refusal_is_a_200_with_its_error_id(running: Running) -> None:
    running.target.stub.answer = no_such_call
    body = wire.encode(wire.Hangup(command_id="h1", extension="100", call_id="gone"))
    response = await post_command(running.url, body, signed(body))
    assert response.status_code == 200
    assert wire.decode_result(response.content) == wire.CommandResult(
        command_id="h1", ok=False, error_id="no_such_call", message="no call with that id")


async def test_while_the_pbx_link_is_down_commands_are_pbx_unavailable(running: Running) -> None:
    await running.target.stub.stop()
    await asyncio.sleep(0.01)
    response = await post_command(running.url, dial(), signed(dial()))
    result = wire.decode_result(response.content)
    assert (response.status_code, result.ok, result.error_id) == (200, False, "pbx_unavailable")
    assert "not connected to the PBX" in result.message
    assert running.target.stub.executed == []


async def test_while_stopped_commands_are_pbx_unavailable(running: Running) -> None:
    await running.target.stop_pbx()
    response = await post_command(running.url, dial(), signed(dial()))
    result = wire.decode_result(response.content)
    assert (result.ok, result.error_id) == (False, "pbx_unavailable")
    assert "the bridge is stopped" in result.message


async def test_a_command_the_pbx_does_not_finish_in_time_is_a_timeout(running: Running) -> None:
    running.target.stub.delay = 0.5  # status_timeout is 0.05 s
    response = await post_command(running.url, dial(), signed(dial()))
    result = wire.decode_result(response.content)
    assert (response.status_code, result.ok, result.error_id) == (200, False, "timeout")


async def test_a_repeated_command_id_is_executed_once(running: Running) -> None:
    first, second = await asyncio.gather(
        post_command(running.url, dial(), signed(dial())),
        post_command(running.url, dial(), signed(dial())),
    )
    third = await post_command(running.url, dial(), signed(dial()))
    assert first.content == second.content == third.content
    assert len(running.target.stub.executed) == 1


# ---- health and metrics ------------------------------------------------------------------------------------------


async def test_health_needs_no_signature_and_shows_no_secret(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "pbx_connected": True, "outbox_depth": 3, "phone_system": "asterisk"}
    assert BRIDGE_SECRET not in response.text and AMI_SECRET not in response.text


async def test_health_says_stopped(running: Running) -> None:
    await running.target.stop_pbx()
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.get("/health")
    assert response.json()["status"] == "stopped" and response.json()["pbx_connected"] is False


async def test_metrics_are_prometheus_text(running: Running) -> None:
    await post_command(running.url, dial(), signed(dial()))
    await post_command(running.url, b"{}", {})
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = dict(
        line.rsplit(" ", 1) for line in response.text.splitlines() if line and not line.startswith("#")
    )
    assert samples["callcenter_bridge_pbx_connected"] == "1"
    assert samples["callcenter_bridge_events_in_total"] == "1"  # the stub's LinkState
    assert samples["callcenter_bridge_events_delivered_total"] == "0"
    assert samples["callcenter_bridge_outbox_depth"] == "3"
    assert samples["callcenter_bridge_outbox_bytes"] == "4096"
    assert samples["callcenter_bridge_delivery_failures_total"] == "0"
    assert samples['callcenter_bridge_commands_total{type="dial",result="ok"}'] == "1"
    assert samples["callcenter_bridge_unauthenticated_requests_total"] == "1"
    assert "# TYPE callcenter_bridge_events_in_total counter" in response.text
    assert "# TYPE callcenter_bridge_outbox_depth gauge" in response.text


# ---- the port -------------------------------------------------------------------------------------------------------


def test_a_port_in_use_is_one_clear_sentence() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as caught:
            bind_listener("127.0.0.1", port)
    assert str(caught.value) == (
        f"port {port} on 127.0.0.1 is in use (by another bridge?); choose another port in [bridge] port"
    )


def test_an_address_of_another_machine_is_one_clear_sentence() -> None:
    with pytest.raises(ListenError) as caught:
        bind_listener("192.0.2.1", 0)  # TEST-NET-1, never this machine
    assert str(caught.value) == (
        "192.0.2.1 is not an address of this machine; correct [bridge] address (127.0.0.1 for this machine only)"
    )


# ---- the settings page ----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def logged_in(running: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.get(running.listener.login_link())
        assert response.status_code == 303 and response.headers["location"] == "/"
        yield client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    return match.group(1)


async def test_the_page_answers_only_loopback_clients(running: Running) -> None:
    transport = httpx.ASGITransport(app=running.listener, client=("192.168.1.20", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for path in ("/", f"/login?token={ADMIN_TOKEN}", "/settings"):
            response = await client.get(path)
            assert response.status_code == 403, path
            assert "only on the bridge's own machine" in response.text
        assert (await client.get("/health")).status_code == 200  # the CRM's routes stay open


async def test_the_page_refuses_a_foreign_host_name(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.get(f"/login?token={ADMIN_TOKEN}", headers={"host": "rebind.example"})
    assert response.status_code == 403


async def test_the_page_needs_a_login(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.get("/")
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert (await client.get("/settings")).status_code == 303
        assert (await client.post("/stop", data={"csrf": "x"})).status_code == 403
        assert (await client.get(f"/login?token={ADMIN_TOKEN[:-1]}x")).status_code == 403
    assert running.target.running


async def test_the_login_form_takes_the_bridge_secret_or_a_one_time_token(running: Running) -> None:
    for typed, status in (("wrong-wrong-wrong", 403), (ADMIN_TOKEN, 303), (ADMIN_TOKEN, 403), (BRIDGE_SECRET, 303)):
        async with httpx.AsyncClient(base_url=running.url) as client:
            form = await client.get("/login")
            response = await client.post("/login", data={"csrf": csrf_of(form.text), "token": typed})
            assert response.status_code == status, typed
            if status == 303:
                assert (await client.get("/")).status_code == 200


async def test_the_login_form_refuses_a_post_from_elsewhere(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.url) as client:
        response = await client.post("/login", data={"csrf": "guess", "token": ADMIN_TOKEN})
        assert response.status_code == 403
        assert (await client.get("/")).status_code == 303


async def test_the_home_page_shows_the_menu_and_escapes_what_it_shows(running: Running) -> None:
    async with logged_in(running) as client:
        page = (await client.get("/")).text
        for label in ("Phone system", "Settings", "Start", "Stop", "Error log", "Exit"):
            assert f">{label}<" in page or f"{label} <select" in page
        assert "Asterisk Manager (AMI)" in page and "connected" in page
        errors = (await client.get("/errors")).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in errors and "<script>" not in errors
        response = await client.get("/")
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_stop_and_start_from_the_page(running: Running) -> None:
    async with logged_in(running) as client:
        page = (await client.get("/")).text
        assert (await client.post("/stop", data={"csrf": csrf_of(page)})).status_code == 303
        assert not running.target.running
        page = (await client.get("/")).text
        assert "stopped" in page and "Stopped: disconnected from the PBX" in page
        assert (await client.post("/start", data={"csrf": csrf_of(page)})).status_code == 303
        assert running.target.running


async def test_a_post_without_the_session_token_or_from_another_origin_is_refused(running: Running) -> None:
    async with logged_in(running) as client:
        token = csrf_of((await client.get("/")).text)
        assert (await client.post("/stop", data={"csrf": "forged"})).status_code == 403
        response = await client.post("/stop", data={"csrf": token}, headers={"origin": "http://evil.example"})
        assert response.status_code == 403
        assert running.target.running
        response = await client.post("/stop", data={"csrf": token}, headers={"origin": running.url})
        assert response.status_code == 303 and not running.target.running


async def test_the_settings_form_never_shows_a_password(running: Running) -> None:
    async with logged_in(running) as client:
        for system in ("asterisk", "tsapi", "tapi"):
            page = (await client.get(f"/settings?system={system}")).text
            assert BRIDGE_SECRET not in page and AMI_SECRET not in page
            for tag in re.findall(r'<input type="password"[^>]*>', page):
                assert "value=" not in tag
        page = (await client.get("/settings?system=asterisk")).text
        assert 'name="asterisk.username" value="crm"' in page
        assert 'placeholder="(set; type to change)"' in page
        assert "Manager password" in page and "Status request timeout" in page
        tsapi = (await client.get("/settings?system=tsapi")).text
        assert "Group Id" in tsapi and "Agent pass" in tsapi and "asterisk.username" not in tsapi


def form_of(page: str) -> dict[str, str]:
    """What a browser would post for the form as shown (checked boxes only, selected options)."""
    data: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        if not name:
            continue
        value = re.search(r'value="([^"]*)"', tag)
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                data[name.group(1)] = "on"
        else:
            data[name.group(1)] = value.group(1) if value else ""
    for select in re.finditer(r'<select name="([^"]+)">(.*?)</select>', page):
        chosen = re.search(r'<option value="([^"]*)" selected', select.group(2))
        data[select.group(1)] = chosen.group(1) if chosen else ""
    return data


async def test_saving_writes_the_file_keeps_secrets_and_applies(running: Running) -> None:
    async with logged_in(running) as client:
        data = form_of((await client.get("/settings?system=asterisk")).text)
        data.update({"asterisk.host": "pbx.example", "bridge.extensions": "100, 102", "asterisk.profile": "lab"})
        response = await client.post("/settings", data=data)
        assert response.status_code == 303, response.text
        home = (await client.get("/")).text
    assert f"Saved to {running.config}." in home and "applied now" in home
    saved = load_settings(running.config, env={})
    assert (saved.asterisk.host, saved.extensions, saved.asterisk.profile) == ("pbx.example", ("100", "102"), "lab")
    assert saved.secret.reveal() == BRIDGE_SECRET and saved.asterisk.secret.reveal() == AMI_SECRET
    assert saved.asterisk.status_timeout == 0.05
    assert running.target.applied == [saved]


async def test_a_typed_password_replaces_the_old_one(running: Running) -> None:
    async with logged_in(running) as client:
        data = form_of((await client.get("/settings")).text)
        data["asterisk.secret"] = "a-new-ami-password"
        assert (await client.post("/settings", data=data)).status_code == 303
    assert load_settings(running.config, env={}).asterisk.secret.reveal() == "a-new-ami-password"


async def test_choosing_another_phone_system_saves_it_with_its_form(running: Running) -> None:
    async with logged_in(running) as client:
        data = form_of((await client.get("/settings?system=tapi")).text)
        assert data["bridge.phone_system"] == "tapi"
        data.update({"tapi.phone_type": "custom", "tapi.phone_type_name": "Vendor TSP", "tapi.internal_phone": "100"})
        assert (await client.post("/settings", data=data)).status_code == 303
    saved = load_settings(running.config, env={})
    assert saved.phone_system is wire.PhoneSystem.TAPI and saved.tapi.phone_type_name == "Vendor TSP"
    assert saved.asterisk.secret.reveal() == AMI_SECRET  # the other system's settings are kept


async def test_invalid_settings_are_shown_and_not_saved(running: Running) -> None:
    before = running.config.read_text()
    async with logged_in(running) as client:
        data = form_of((await client.get("/settings")).text)
        data.update({"bridge.port": "8000", "bridge.address": "<b>x</b>"})
        response = await client.post("/settings", data=data)
    assert response.status_code == 400
    assert "[bridge] address &#x27;&lt;b&gt;x&lt;/b&gt;&#x27; is not a host name or IP address" in response.text
    assert 'value="&lt;b&gt;x&lt;/b&gt;"' in response.text and "<b>x</b>" not in response.text
    assert running.config.read_text() == before and running.target.applied == []


async def test_exit_stops_the_bridge(running: Running) -> None:
    async with logged_in(running) as client:
        response = await client.post("/exit", data={"csrf": csrf_of((await client.get("/")).text)})
    assert response.status_code == 200 and "stopping" in response.text
    assert running.target.exit_requested


async def test_log_out_ends_the_session(running: Running) -> None:
    async with logged_in(running) as client:
        await client.post("/logout", data={"csrf": csrf_of((await client.get("/")).text)})
        assert (await client.get("/")).status_code == 303


def test_the_page_is_on_the_loopback_and_a_link_is_made_only_when_asked() -> None:
    sock = bind_listener("127.0.0.1", 0)
    try:
        listener = ControlListener(_Nothing(), sock)  # type: ignore[arg-type]
        port = sock.getsockname()[1]
        assert listener.page_url == f"http://127.0.0.1:{port}/"
        assert not hasattr(listener, "login_url") and not hasattr(listener, "admin_token")
        first, second = listener.login_link(), listener.login_link("/settings", "tsapi")
        assert first.startswith(f"http://127.0.0.1:{port}/login?token=") and first != second
        assert second.endswith("&next=/settings&system=tsapi")
    finally:
        sock.close()


async def test_a_login_link_works_once(running: Running) -> None:
    link = running.listener.login_link()
    async with httpx.AsyncClient(base_url=running.url) as client:
        assert (await client.get(link)).status_code == 303
        assert (await client.get("/")).status_code == 200
    async with httpx.AsyncClient(base_url=running.url) as client:
        again = await client.get(link)
        assert again.status_code == 403 and "used already" in again.text
        assert (await client.get("/")).status_code == 303


async def test_a_login_link_expires(running: Running) -> None:
    token = running.listener._links.issue(now=time.monotonic() - login_links.LINK_SECONDS - 1)
    async with httpx.AsyncClient(base_url=running.url) as client:
        assert (await client.get(f"/login?token={token}")).status_code == 403


async def test_a_link_from_the_login_link_command_works_once_in_the_running_bridge(running: Running) -> None:
    """`callcenter bridge login-link` runs in another process: it leaves the token's digest in the data directory."""
    data_dir = running.target.settings.data_dir
    token = login_links.issue(data_dir)
    directory = data_dir / login_links.DIRECTORY_NAME
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = list(directory.iterdir())
    assert [stat.S_IMODE(path.stat().st_mode) for path in files] == [0o600]
    assert token not in files[0].name and token not in files[0].read_text()
    async with httpx.AsyncClient(base_url=running.url) as client:
        assert (await client.get(f"/login?token={token}&next=/errors")).headers["location"] == "/errors"
    async with httpx.AsyncClient(base_url=running.url) as client:
        assert (await client.get(f"/login?token={token}")).status_code == 403
    expired = login_links.issue(data_dir, now=time.time() - login_links.LINK_SECONDS - 1)
    async with httpx.AsyncClient(base_url=running.url) as client:
        assert (await client.get(f"/login?token={expired}")).status_code == 403


async def _type(client: httpx.AsyncClient, typed: str) -> httpx.Response:
    form = await client.get("/login")
    return await client.post("/login", data={"csrf": csrf_of(form.text), "token": typed})


async def test_typing_is_throttled_per_address_and_says_when_to_try_again(
    running: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("callcenter.bridge.control.FAILED_LOGIN_DELAY", 0)
    async with httpx.AsyncClient(base_url=running.url) as client:
        with caplog.at_level(logging.WARNING, logger="callcenter.bridge.control"):
            for _ in range(control.LOGIN_LIMIT - 1):
                assert (await _type(client, "wrong-secret-typed")).status_code == 403
            fifth = await _type(client, "wrong-secret-typed")
        assert fifth.status_code == 429
        assert re.search(r"Try again at \d\d:\d\d \(in 15 minutes\)", fifth.text), fifth.text[:900]
        assert "Δοκιμάστε ξανά στις" in fifth.text and "callcenter bridge login-link" in fifth.text
        refused = await _type(client, BRIDGE_SECRET)  # even the right secret, while locked
        assert refused.status_code == 429 and (await client.get("/")).status_code == 303
        failures = [r.getMessage() for r in caplog.records if "failed login" in r.getMessage()]
        assert failures == ["settings page: failed login (wrong bridge secret) from 127.0.0.1"] * control.LOGIN_LIMIT
        assert "wrong-secret-typed" not in caplog.text and BRIDGE_SECRET not in caplog.text
        # The lock never shuts the owner out: a one-time link still logs in.
        assert (await client.get(running.listener.login_link())).status_code == 303
        assert (await client.get("/")).status_code == 200


def test_the_throttle_locks_one_address_for_fifteen_minutes_after_the_last_failure() -> None:
    throttle = control.LoginThrottle()
    for n in range(control.LOGIN_LIMIT - 1):
        assert throttle.failed("127.0.0.1", 100.0 + n) is None
    until = throttle.failed("127.0.0.1", 200.0)
    assert until == 200.0 + control.LOGIN_LOCK
    assert throttle.locked_until("::1", 201.0) is None  # another address is not blocked
    assert throttle.locked_until("127.0.0.1", until - 1) == until
    assert throttle.locked_until("127.0.0.1", until) is None
    throttle.failed("::1", 300.0)
    throttle.succeeded("::1")
    assert throttle.locked_until("::1", 301.0) is None


class _Nothing:
    pass
