"""`callcenter demo` runs the whole product: CRM, bridge and simulated PBX in one command.

The slow tests run the real command as a child process in a temporary directory and prove the chain: a simulated
call reaches the CRM as a call row of Alice, the bridge reports the PBX link, Alice is Logged in, the screen's Busy,
Answer, Transfer, Call, Redial and End call buttons change the simulator (and what the simulator then reports comes
back to the CRM), a command signed with the demo bridge's secret works as the CRM's do; Ctrl-C stops all three
(status 0, every port free again, the calls in progress closed in the CRM); a second run reuses the secrets; a port
clash is one line and status 2. The fast tests drive the demo's calls and settings in-process against the real
simulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from callcenter import demo_product, wire
from callcenter.bridge.settings import load_settings
from callcenter.pbxsim import SimulatedPBX
from tests.crm.test_serve_and_demo import Running, clean_env, free_port

BANNER_END = re.compile(r"Ctrl-C to stop")
AMI_LINE = re.compile(r"AMI on 127\.0\.0\.1:(\d+)")
CALL_LINE = re.compile(r"^\d\d:\d\d:\d\d  call \d+: .+ → .+$", re.M)
CALLERS = [("2101234567", "Γιώργος Παπαδόπουλος"), ("2107654321", "Μαρία Κωνσταντίνου")]


# ---- fast: the demo's calls and settings, in-process ------------------------------------------------------------


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPBX]:
    sim = SimulatedPBX(users={demo_product.AMI_USER: "x" * 20}, agents=demo_product.PHONES,
                       groups={demo_product.RING_GROUP: list(demo_product.RING_GROUP_MEMBERS)})
    async with sim:
        yield sim


async def test_the_first_call_rings_alice_and_later_calls_go_to_a_free_phone(pbx: SimulatedPBX) -> None:
    calls = demo_product.DemoCalls(pbx, CALLERS, seed=7)
    first = calls.place()
    assert first is not None and first.target.number == "100"
    assert [c.extension for c in pbx.channels() if c.extension] == ["100"]
    second = calls.place()
    assert second is not None and second.target.number in ("101", demo_product.RING_GROUP)  # Alice's phone rings
    assert calls.place() is None  # both phones ring now: nobody calls until one is free
    assert len(calls.placed) == 2


async def test_a_phone_set_busy_gets_no_calls_and_callers_are_contacts_or_unknown(pbx: SimulatedPBX) -> None:
    pbx.set_dnd("100", True)
    calls = demo_product.DemoCalls(pbx, CALLERS, seed=3)
    placed = []
    for _ in range(40):
        call = calls.place()
        assert call is not None and call.target.number != "100"
        assert "100" not in {c.extension for c in pbx.channels()}  # the ring group rings Bob only
        placed.append(call)
        pbx.core.hangup_all()
    known = [call for call in placed if call.known]
    assert known and len(known) < len(placed)  # both kinds
    for call in known:
        assert call.number.removeprefix("+30").removeprefix("0030") in {n for n, _ in CALLERS}
        assert call.name in ("", *(name for _, name in CALLERS))
    for call in placed:
        assert re.fullmatch(r"(\+30|0030)?[26]\d{9}", call.number), call.number


async def test_calls_wait_for_the_bridge_to_log_in_and_then_come_every_few_seconds(pbx: SimulatedPBX) -> None:
    lines: list[str] = []
    calls = demo_product.DemoCalls(pbx, CALLERS, every=(0.2, 0.2), out=lines.append, seed=1)
    task = asyncio.create_task(calls.run())
    try:
        await asyncio.sleep(0.5)
        assert calls.placed == []  # no AMI client yet
        reader, writer = await asyncio.open_connection("127.0.0.1", pbx.port)
        writer.write(f"Action: Login\r\nUsername: {demo_product.AMI_USER}\r\nSecret: {'x' * 20}\r\n\r\n".encode())
        await writer.drain()
        await pbx.wait_until(lambda: len(calls.placed) >= 1, timeout=3)
        writer.close()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert CALL_LINE.match(lines[0]) and "Alice (100)" in lines[0], lines


@pytest.mark.parametrize(("text", "expected"), [("10", (10.0, 10.0)), ("8-15", (8.0, 15.0)), ("0.5", (0.5, 0.5))])
def test_calls_every_takes_seconds_or_a_range(text: str, expected: tuple[float, float]) -> None:
    assert demo_product.parse_every(text) == expected


@pytest.mark.parametrize("text", ["", "x", "15-8", "0", "-3", "1-2-3", "99999"])
def test_calls_every_refuses_what_is_not_seconds(text: str) -> None:
    with pytest.raises(ValueError, match="--calls-every"):
        demo_product.parse_every(text)


def test_the_bridge_settings_file_is_valid_and_names_its_secrets_without_holding_them(tmp_path: Path) -> None:
    (tmp_path / demo_product.BRIDGE_SECRET_NAME).write_text("b" * 43 + "\n")
    (tmp_path / demo_product.AMI_SECRET_NAME).write_text("a" * 64 + "\n")
    path = tmp_path / demo_product.BRIDGE_SETTINGS_NAME
    demo_product.write_private(path, demo_product.bridge_settings_text(
        crm_address="127.0.0.1", crm_port=8123, bridge_port=5050, ami_port=5038))
    assert path.stat().st_mode & 0o077 == 0
    assert "b" * 43 not in path.read_text() and "a" * 64 not in path.read_text()
    settings = load_settings(path, env={})
    assert (settings.bridge_id, settings.phone_system, settings.service_url, settings.crm_url) == (
        "demo", wire.PhoneSystem.ASTERISK, "http://127.0.0.1:5050", "http://127.0.0.1:8123")
    assert settings.extensions == ("100", "101", "199")
    assert settings.data_dir == tmp_path / "demo-bridge"
    assert (settings.asterisk.port, settings.asterisk.username) == (5038, demo_product.AMI_USER)
    assert settings.secret.reveal() == "b" * 43 and settings.asterisk.secret.reveal() == "a" * 64


# ---- slow: the real command ---------------------------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class DemoDatabase:
    """The demo's SQLite file, read only, the way someone looking over the demo's shoulder would."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def calls_of(self, username: str, where: str = "1") -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT c.id, c.direction, c.number, c.answered_at, c.ended_at FROM calls_call c "
            "JOIN resources_resource r ON r.id = c.resource_id JOIN auth_user u ON u.id = r.user_id "
            f"WHERE u.username = ? AND {where} ORDER BY c.id", username)  # noqa: S608 - the tests' own SQL

    def legs_of(self, extension: str, where: str = "1") -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT id, remote_number, transferred_from, rang_at, ended_at, cause FROM calls_callleg "
            f"WHERE extension = ? AND {where} ORDER BY id", extension)  # noqa: S608 - the tests' own SQL

    def busy(self, username: str) -> Any:
        return self.rows("SELECT r.pbx_busy FROM resources_resource r JOIN auth_user u ON u.id = r.user_id "
                         "WHERE u.username = ?", username)[0][0]


def until(check: Callable[[], Any], what: str, seconds: float = 40.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.1)


class Screen:
    """Alice's browser on the Call Center screen, over plain HTTP (htmx requests, as the page sends them)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=20, follow_redirects=False)
        page = self.client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text[:500]
        response = self.client.post("/login/", data={
            "csrfmiddlewaretoken": token.group(1), "username": username, "password": password})
        assert response.status_code == 302, response.text[:500]

    def status(self) -> str:
        response = self.client.get("/callcenter/status/")
        assert response.status_code == 200, response.text[:500]
        return response.text

    def press(self, path: str, **fields: str) -> httpx.Response:
        response = self.client.post(path, data=fields, headers={
            "HX-Request": "true", "X-CSRFToken": self.client.cookies["csrftoken"]})
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:500]}"
        return response

    def close(self) -> None:
        self.client.close()


def _signed(command: wire.Command, secret: str) -> tuple[bytes, dict[str, str]]:
    body = wire.encode(command)
    return body, {"Content-Type": "application/json", wire.BRIDGE_HEADER: demo_product.BRIDGE_ID,
                  wire.SIGNATURE_HEADER: wire.sign(secret, body, int(time.time()))}


@pytest.fixture
def processes() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for running in started:
        if running.process.poll() is None:
            running.stop()


@pytest.mark.slow
def test_demo_runs_crm_bridge_and_pbx_and_every_button_reaches_the_simulator(
    tmp_path: Path, processes: list[Running]
) -> None:
    port, bridge_port = free_port(), free_port()
    demo = Running(["demo", "--port", str(port), "--bridge-port", str(bridge_port), "--contacts", "40",
                    "--calls-every", "1"], cwd=tmp_path, env=clean_env())
    processes.append(demo)
    demo.wait_for(BANNER_END)
    banner = demo.output
    ami_port = int(AMI_LINE.search(banner).group(1))  # type: ignore[union-attr]
    for part in (f"CRM        http://127.0.0.1:{port}/", f"Bridge     127.0.0.1:{bridge_port}", "PBX        simulated",
                 "alice / demo-alice", "bob   / demo-bob", "carol / demo-carol", "Ctrl-C to stop."):
        assert part in banner, banner
    assert _children(demo.process.pid) == []  # one process: nothing to leave behind
    var = tmp_path / "var"
    bridge_secret = (var / "demo-bridge.secret").read_text().strip()
    ami_secret = (var / "demo-ami.secret").read_text().strip()
    for name in ("demo-bridge.secret", "demo-ami.secret", "demo-bridge.toml"):
        assert (var / name).stat().st_mode & 0o077 == 0, name
    db = DemoDatabase(var / "demo.sqlite3")

    # A simulated call rings Alice and is a call of hers in the CRM within a few seconds.
    ringing = until(lambda: db.calls_of("alice", "c.ended_at IS NULL AND c.direction = 'in'"),
                    "a ringing call of Alice's in the CRM", seconds=10)[0]
    health = httpx.get(f"http://127.0.0.1:{bridge_port}/health", timeout=5).json()
    assert health["pbx_connected"] is True, health
    assert (var / "demo-bridge.toml").is_file() and f"port = {ami_port}" in (var / "demo-bridge.toml").read_text()

    screen = Screen(f"http://127.0.0.1:{port}", "alice", "demo-alice")
    try:
        until(lambda: 'data-logged-in="1"' in screen.status(), "Alice Logged in", seconds=10)
        # Busy: DND on the simulated PBX, which reports it back; the CRM then shows Alice busy.
        screen.press("/callcenter/busy/", busy="on")
        until(lambda: db.busy("alice") == 1, "Alice busy, as reported by the PBX")
        # Answer: PJSIPNotify to Alice's phone, which picks up; the answer comes back as the call's answered time.
        screen.press("/callcenter/answer/")
        until(lambda: db.calls_of("alice", f"c.id = {ringing[0]} AND c.answered_at IS NOT NULL"), "the answer")
        # Transfer to 101: Alice's part of the call ends and the caller goes to Bob's phone, which rings with the
        # caller -- unless the demo's next call (one a second here, to whichever phone is free) rang Bob first, as
        # it does when the machine is slow to get this far: then Bob's phone is busy (cause 17; no call waiting).
        screen.press("/callcenter/transfer/", number="101")
        until(lambda: db.calls_of("alice", f"c.id = {ringing[0]} AND c.ended_at IS NOT NULL"), "Alice's part to end")
        sent = until(lambda: db.legs_of("101", f"remote_number = '{ringing[2]}' AND transferred_from = '100'"),
                     "the caller sent to Bob's phone")[0]
        if db.legs_of("101", f"id != {sent[0]} AND rang_at <= '{sent[3]}' AND (ended_at IS NULL OR ended_at >= "
                             f"'{sent[3]}')"):
            busy = until(lambda: db.legs_of("101", f"id = {sent[0]} AND ended_at IS NOT NULL"), "Bob's busy")[0]
            assert busy[5] == 17, f"Bob's phone had a call: the transferred caller gets busy, not {busy}"
        else:
            until(lambda: db.calls_of("bob", f"c.number = '{ringing[2]}' AND c.ended_at IS NULL"), "Bob's call")
            assert db.legs_of("101", f"id = {sent[0]} AND ended_at IS NULL"), "Bob's phone rings with the caller"
        # Call: Originate rings Alice's phone, which answers by itself, then the number; an outgoing call of hers.
        screen.press("/callcenter/dial/", number="2101234567")
        outgoing = until(lambda: db.calls_of("alice", "c.direction = 'out' AND c.answered_at IS NOT NULL"),
                         "Alice's outgoing call, answered by the far end")[0]
        assert outgoing[2].endswith("2101234567"), outgoing
        screen.press("/callcenter/hangup/")
        until(lambda: db.calls_of("alice", f"c.id = {outgoing[0]} AND c.ended_at IS NOT NULL"), "its end")
        # Redial: the same number again.
        screen.press("/callcenter/redial/")
        again = until(lambda: db.calls_of("alice", f"c.direction = 'out' AND c.id > {outgoing[0]}"), "the redial")[0]
        assert again[2] == outgoing[2], (again, outgoing)
        screen.press("/callcenter/hangup/")
        until(lambda: db.calls_of("alice", f"c.id = {again[0]} AND c.ended_at IS NOT NULL"), "the redial's end")
    finally:
        screen.close()

    # A command signed with the demo bridge's secret, sent as the CRM sends them: Busy off.
    body, headers = _signed(wire.SetBusy(command_id="test-busy-off", extension="100", busy=False), bridge_secret)
    result = wire.decode_result(httpx.post(f"http://127.0.0.1:{bridge_port}/v1/commands", content=body,
                                           headers=headers, timeout=10).content)
    assert result.ok, result
    until(lambda: db.busy("alice") == 0, "Alice available again")
    forged, headers = _signed(wire.SetBusy(command_id="forged", extension="100", busy=True), "f" * 43)
    assert httpx.post(f"http://127.0.0.1:{bridge_port}/v1/commands", content=forged, headers=headers,
                      timeout=10).status_code == 401

    assert demo.interrupt() == 0
    assert "Demo stopped." in demo.output
    assert "Traceback" not in demo.stderr_text, demo.stderr_text
    for wanted in (port, bridge_port, ami_port):
        assert _port_is_free(wanted), f"port {wanted} is still in use"
    # The bridge passed the last hang-ups and its goodbye on before the CRM stopped.
    assert db.rows("SELECT count(*) FROM calls_callleg WHERE ended_at IS NULL") == [(0,)]
    assert db.rows("SELECT pbx_connected FROM calls_bridge WHERE bridge_id = 'demo'") == [(0,)]
    everything = demo.output + demo.stderr_text
    assert bridge_secret not in everything and ami_secret not in everything
    calls = CALL_LINE.findall(demo.output)
    assert calls and "Alice (100)" in calls[0], demo.output
    assert not re.search(r"\bINFO\b", everything), everything  # a quiet log: the banner and one line per call

    # A second run reuses the secrets and the bridge (nothing to redo), and can run without calls.
    again = Running(["demo", "--port", str(port), "--bridge-port", str(bridge_port), "--contacts", "40",
                     "--no-calls"], cwd=tmp_path, env=clean_env())
    processes.append(again)
    again.wait_for(BANNER_END)
    assert "Calls      none (--no-calls)" in again.output
    assert (var / "demo-bridge.secret").read_text().strip() == bridge_secret
    assert (var / "demo-ami.secret").read_text().strip() == ami_secret
    assert db.rows("SELECT count(*) FROM calls_bridge") == [(1,)]
    until(lambda: json.loads(httpx.get(f"http://127.0.0.1:{bridge_port}/health", timeout=5).text)["pbx_connected"],
          "the bridge connected again")
    assert again.interrupt() == 0
    assert "Traceback" not in again.stderr_text, again.stderr_text


def _clash(tmp_path: Path, processes: list[Running], args: list[str]) -> Running:
    demo = Running(["demo", "--port", str(free_port()), *args], cwd=tmp_path, env=clean_env())
    processes.append(demo)
    assert demo.finish() == 2
    return demo


@pytest.mark.slow
def test_the_bridge_port_5050_in_use_is_one_clear_line_and_nothing_runs(
    tmp_path: Path, processes: list[Running]
) -> None:
    with socket.socket() as taken:
        with contextlib.suppress(OSError):  # already in use by someone else: as good a clash as ours
            taken.bind(("127.0.0.1", 5050))
            taken.listen()
        demo = _clash(tmp_path, processes, [])
    lines = [line for line in demo.stderr_text.splitlines() if line.strip()]
    assert len(lines) == 1, demo.stderr_text
    assert "port 5050 on 127.0.0.1 is already in use" in lines[0] and "--bridge-port" in lines[0], lines
    assert "Traceback" not in demo.stderr_text
    assert not (tmp_path / "var" / "demo.sqlite3").exists()
    assert not (tmp_path / "var" / "demo-bridge.toml").exists()


@pytest.mark.slow
def test_an_ami_port_in_use_is_one_clear_line(tmp_path: Path, processes: list[Running]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = _clash(tmp_path, processes, ["--bridge-port", str(free_port()), "--ami-port", str(port)])
    lines = [line for line in demo.stderr_text.splitlines() if line.strip()]
    assert len(lines) == 1 and f"port {port} on 127.0.0.1 is already in use" in lines[0], demo.stderr_text
    assert "simulated PBX" in lines[0] and "--ami-port" in lines[0]
    assert not (tmp_path / "var" / "demo.sqlite3").exists()


@pytest.mark.slow
def test_demo_help_lists_the_options_and_touches_nothing(tmp_path: Path, processes: list[Running]) -> None:
    shown = Running(["demo", "--help"], cwd=tmp_path, env=clean_env())
    processes.append(shown)
    assert shown.finish() == 0, shown.stderr_text
    for option in ("--port", "--bridge-port", "--ami-port", "--calls-every", "--no-calls", "--contacts"):
        assert option in shown.output
    assert not (tmp_path / "var").exists()
