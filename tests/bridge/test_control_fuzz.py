"""Hypothesis fuzz of the bridge's control port, POST /v1/commands (issue 11): hostile headers and bodies, and
commands signed with the bridge's secret whose fields are random or hostile, so the fuzz gets past authentication.
Whatever comes in: never a 5xx, never a traceback in the log, nothing executed by a refused request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from callcenter import wire
from callcenter.bridge.control import ControlListener, bind_listener
from callcenter.bridge.settings import load_settings
from tests.bridge.conftest import BRIDGE_SECRET
from tests.bridge.stub_connector import StubConnector
from tests.bridge.test_control_dead_letters import OutboxTarget

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_hostile = st.sampled_from(["", "\x00", "x" * 10_000, "1e300", 1e300, -5, 10**400, float("nan"), True, None, [],
                            "Νίκος", "100", "<script>"]) | st.text(max_size=40) | _json


class CommandTarget(OutboxTarget):
    """No outbox needed here: a connected stub PBX that records what it executes."""

    def __init__(self, settings: Any, stub: StubConnector) -> None:
        self.current = settings
        self.stub = stub

    @property
    def connector(self) -> StubConnector:
        return self.stub

    def status(self) -> Any:
        from callcenter.bridge.control import BridgeStatus

        return BridgeStatus(pbx_running=True, pbx_connected=True)


@dataclass
class App:
    listener: ControlListener
    stub: StubConnector
    loop: asyncio.AbstractEventLoop

    def post(self, body: bytes, headers: dict[str, Any]) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.listener, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                return await client.post("/v1/commands", content=body, headers=headers)

        return self.loop.run_until_complete(go())


@pytest.fixture
def app(write_config: Callable[..., Path]) -> Iterator[App]:
    stub = StubConnector()
    stub._connected = True  # connected to its (stub) PBX: signed valid commands are executed
    target = CommandTarget(load_settings(write_config(asterisk={"status_timeout": 0.05}), env={}), stub)
    sock = bind_listener("127.0.0.1", 0)  # the app is called in memory (httpx.ASGITransport): the same code
    loop = asyncio.new_event_loop()
    try:
        yield App(ControlListener(target, sock, env={}), stub, loop)
    finally:
        loop.close()
        sock.close()


def _clean(text: str) -> bytes:
    """As raw header bytes (any latin-1 byte but CR/LF/NUL, which HTTP itself forbids in a header)."""
    return "".join(ch for ch in text if ch not in "\r\n\x00" and ord(ch) < 256).encode("latin-1")


def _no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text


@FUZZ
@given(
    signature=st.one_of(
        st.text(max_size=100),
        st.builds(lambda t, v: f"t={t},v1={v}", st.sampled_from(["1" + "0" * 400, "-5", "1.5", "nan", "inf",
                                                                 str(int(time.time()))]) | st.text(max_size=20),
                  st.text(alphabet="0123456789abcdefg", max_size=70)),
        st.sampled_from(["t=1" + "0" * 400 + ",v1=00", "t=" + "9" * 5000, "t=1,t=2,v1=00", ",,,", "="]),
    ),
    bridge=st.sampled_from(["office", "", "x" * 5000]) | st.text(max_size=20),
    body=st.binary(max_size=300),
)
def test_unsigned_or_badly_signed_requests_are_401_and_execute_nothing(app, caplog, signature, bridge, body):
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    response = app.post(body, {wire.SIGNATURE_HEADER: _clean(signature), wire.BRIDGE_HEADER: _clean(bridge)})
    assert response.status_code in (401, 413), response.text[:300]
    assert app.stub.executed == []
    _no_traceback(caplog)


@st.composite
def _command_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["dial", "answer", "hangup", "transfer", "busy", "agent.login", "agent.logout",
                                 "reboot"]))
    command: dict[str, Any] = {"type": kind, "command_id": f"c-{draw(st.integers(0, 10**6))}", "extension": "100",
                               "number": "2101234567", "target": "101", "busy": True, "call_id": "x"}
    for key in draw(st.lists(st.sampled_from(sorted(command) + ["v", "kind", "password", "agent_id"]), max_size=2)):
        command[key] = draw(_hostile)
    try:
        body = msgspec.json.encode(command)
    except (OverflowError, TypeError, ValueError, msgspec.EncodeError):
        body = b"{}"
    if draw(st.integers(0, 4)) == 0 and len(body) > 2:
        cut = draw(st.integers(1, len(body) - 1))
        body = body[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + body[cut:]
    return body


@FUZZ
@given(body=_command_body() | st.binary(max_size=200))
def test_signed_random_commands_are_answered_without_a_5xx(app, caplog, body):
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    before = len(app.stub.executed)
    headers = {wire.SIGNATURE_HEADER: wire.sign(BRIDGE_SECRET, body, int(time.time())), wire.BRIDGE_HEADER: "office"}
    response = app.post(body, headers)
    event(f"HTTP {response.status_code}")
    assert response.status_code in (200, 400), response.text[:300]
    if response.status_code == 400:
        assert response.json()["error_id"] == "invalid_command"
        assert len(app.stub.executed) == before  # refused: nothing executed
    else:
        result = wire.decode_result(response.content)
        assert result.command_id
    _no_traceback(caplog)
