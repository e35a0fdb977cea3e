"""Shared pieces of the Call Center screen tests: events timed around now, logged-in clients, and a real HTTP
listener standing in for the bridge (it checks the CRM's signature as the bridge does and records the commands)."""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from callcenter import wire
from callcenter.calls.actions import receive_events
from callcenter.calls.models import Bridge
from callcenter.resources.models import Resource

PASSWORD = "correct horse battery staple"


class NowEvents:
    """Wire events for one call, timed in seconds from a start two minutes ago (so the screen's default from-date,
    today, and the phone state's freshness window both take them)."""

    _calls = itertools.count(1)

    def __init__(self, call_id: str | None = None, *, start: float | None = None) -> None:
        self.call_id = call_id or f"{time.time():.0f}.{next(self._calls)}"
        self.t0 = start if start is not None else time.time() - 120
        self._seq = itertools.count()

    def _common(self, ext: str, at: float) -> dict[str, Any]:
        return {"event_id": f"n:{self.call_id}:{ext}:{next(self._seq)}", "occurred_at": self.t0 + at,
                "call_id": self.call_id, "extension": ext}

    def ringing(self, ext: str, at: float = 0, number: str = "00302101234567", name: str = "",
                direction: wire.Direction = wire.Direction.INBOUND, **extra: Any) -> wire.CallRinging:
        return wire.CallRinging(**self._common(ext, at), direction=direction, remote_number=number, remote_name=name,
                                **extra)

    def answered(self, ext: str, at: float) -> wire.CallAnswered:
        return wire.CallAnswered(**self._common(ext, at))

    def transferred(self, ext: str, at: float, target: str) -> wire.CallTransferred:
        return wire.CallTransferred(**self._common(ext, at), target=target, kind=wire.TransferKind.BLIND)

    def ended(self, ext: str, at: float, **extra: Any) -> wire.CallEnded:
        return wire.CallEnded(**self._common(ext, at), **extra)


def call_ended(ext: str = "100", *, number: str = "00302101234567", name: str = "", talk: float = 30,
               direction: wire.Direction = wire.Direction.INBOUND, start: float | None = None) -> NowEvents:
    """A whole call (rang, answered after 2 s unless talk=0, ended) delivered the way the bridge endpoint does."""
    e = NowEvents(start=start)
    batch: list[wire.Event] = [e.ringing(ext, 0, number=number, name=name, direction=direction)]
    if talk:
        batch.append(e.answered(ext, 2))
    batch.append(e.ended(ext, 2 + talk))
    receive_events(None, batch)
    return e


def client_for(resource: Resource, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(resource.user)
    return client


HTMX = {"HTTP_HX_REQUEST": "true"}


def flash_of(response: Any) -> str:
    return response.content.decode()


class BridgeStandIn(http.server.BaseHTTPRequestHandler):
    secret = ""  # the bridge's, set by log_in()
    reply: tuple[int, bytes] | None = None
    received: list[wire.Command] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            wire.verify(type(self).secret, self.headers.get(wire.SIGNATURE_HEADER), body, time.time())
        except wire.AuthError as exc:
            self._send(401, json.dumps({"error_id": "unauthenticated", "message": str(exc)}).encode())
            return
        command = wire.decode_command(body)
        type(self).received.append(command)
        if type(self).reply is not None:
            self._send(*type(self).reply)
            return
        self._send(200, wire.encode(wire.CommandResult(command_id=command.command_id, ok=True, message="")))

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bridge_listener() -> Iterator[type[BridgeStandIn]]:
    BridgeStandIn.secret = ""
    BridgeStandIn.reply = None
    BridgeStandIn.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BridgeStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    BridgeStandIn.address = server.server_address  # type: ignore[attr-defined]
    yield BridgeStandIn
    server.shutdown()
    server.server_close()


def log_in(resource: Resource, bridge: Bridge, stand_in: type[BridgeStandIn]) -> None:
    """Point the resource at the stand-in and make its bridge report a live PBX link, as a heartbeat would (S-4.5)."""
    address, port = stand_in.address  # type: ignore[attr-defined]
    stand_in.secret = bridge.secret
    resource.service_address, resource.service_port = address, port
    resource.save()
    bridge.pbx_connected = True
    bridge.extensions = sorted({*(bridge.extensions or []), str(resource.extension)})
    bridge.last_seen_at = timezone.now()
    bridge.link = {"service_address": address, "service_port": port, "callback_address": resource.internal_address,
                   "callback_port": resource.internal_port, "heartbeat_seconds": 30}
    bridge.save()
