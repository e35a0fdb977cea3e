"""Shared pieces for the bridge daemon's tests: settings files, free ports, a fake CRM over a real socket."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from callcenter import wire

BRIDGE_SECRET = "bridge-Secret-0123456789-abcdef"
AMI_SECRET = "ami-Password-hunter2-xyzzy"
TSAPI_PASSWORD = "tsapi-Password-avaya-77"
AGENT_PASSWORD = "agent-Pass-4242"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def toml_text(tables: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


def base_tables(tmp_path: Path, **bridge: Any) -> dict[str, dict[str, Any]]:
    return {
        "bridge": {
            "phone_system": "asterisk",
            "address": "127.0.0.1",
            "port": 5050,
            "callback_address": "127.0.0.1",
            "callback_port": 8000,
            "bridge_id": "office",
            "secret": BRIDGE_SECRET,
            "data_dir": str(tmp_path / "data"),
            "extensions": ["100", "101"],
            **bridge,
        },
        "asterisk": {"host": "127.0.0.1", "port": 5038, "username": "crm", "secret": AMI_SECRET},
    }


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """write_config(bridge={...}, asterisk={...}, tsapi=..., tapi=..., drop=[("asterisk", "secret")]) -> path"""

    def write(name: str = "bridge.toml", drop: tuple[tuple[str, str], ...] = (), **tables: dict[str, Any]) -> Path:
        data = base_tables(tmp_path)
        for table, values in tables.items():
            data.setdefault(table, {}).update(values)
        for table, key in drop:
            data[table].pop(key, None)
        path = tmp_path / name
        path.write_text(toml_text(data), encoding="utf-8")
        return path

    return write


class FakeCrm:
    """The CRM's event endpoint, reduced to what the bridge needs: checks the signature, keeps the events."""

    def __init__(self, secret: str = BRIDGE_SECRET) -> None:
        self.secret = secret
        self.events: list[wire.Event] = []
        self.refused = 0
        self.received = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            wire.verify(self.secret, headers.get(wire.SIGNATURE_HEADER.lower()), body, time.time())
        except wire.AuthError:
            self.refused += 1
            await _answer(send, 401, b'{"error_id":"unauthenticated"}')
            return
        batch = wire.decode_batch(body)
        self.events.extend(batch.events)
        self.received.set()
        await _answer(send, 200, wire.encode(wire.BatchReceipt(accepted=len(batch.events), duplicates=0)))

    def links(self) -> list[wire.LinkState]:
        return [event for event in self.events if isinstance(event, wire.LinkState)]

    async def wait_for(self, predicate: Callable[[], bool], seconds: float = 15.0) -> None:
        """Wait until ``predicate`` holds; one that reads a list not filled yet (IndexError) counts as not yet."""
        deadline = time.monotonic() + seconds

        def holds() -> bool:
            try:
                return predicate()
            except IndexError:
                return False

        while not holds():
            if time.monotonic() > deadline:
                raise AssertionError(f"the CRM did not get what was expected; it has {self.events!r}")
            await asyncio.sleep(0.02)


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def fake_crm() -> AsyncIterator[tuple[FakeCrm, int]]:
    crm = FakeCrm()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(crm, lifespan="off", log_config=None, access_log=False, http="h11",
                                           ws="none"))
    server.capture_signals = _no_signals  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield crm, port
    server.should_exit = True
    await task


class _NoSignals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _no_signals() -> _NoSignals:
    return _NoSignals()
