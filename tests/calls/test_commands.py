"""CRM -> bridge commands and the Logged in status (S-4.5), against a real HTTP listener standing in for a bridge."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest
from django.utils import timezone

from callcenter import wire
from callcenter.calls.commands import link_status, new_command_id, send_command
from callcenter.calls.models import Bridge

from .conftest import SECRET

pytestmark = pytest.mark.django_db


class _BridgeStandIn(http.server.BaseHTTPRequestHandler):
    """Verifies the CRM's signature like the bridge does and answers a scripted reply."""

    reply: tuple[int, bytes] | None = None
    received: list[wire.Command] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            wire.verify(SECRET, self.headers.get(wire.SIGNATURE_HEADER), body, time.time())
        except wire.AuthError as exc:
            self._send(401, json.dumps({"error_id": "unauthenticated", "message": str(exc)}).encode())
            return
        command = wire.decode_command(body)
        type(self).received.append(command)
        if type(self).reply is not None:
            self._send(*type(self).reply)
            return
        self._send(200, wire.encode(wire.CommandResult(command_id=command.command_id, ok=True)))

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[tuple[str, int]]:
    _BridgeStandIn.reply = None
    _BridgeStandIn.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BridgeStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()


def _point_at(resource, address: str, port: int) -> None:
    resource.service_address, resource.service_port = address, port
    resource.save()


def _report(bridge: Bridge, resource, *, connected: bool = True, seen: dt.datetime | None = None, **link) -> None:
    bridge.pbx_connected = connected
    bridge.extensions = [resource.extension]
    bridge.last_seen_at = seen or timezone.now()
    bridge.link = {
        "service_address": resource.service_address, "service_port": resource.service_port,
        "callback_address": resource.internal_address, "callback_port": resource.internal_port,
        "heartbeat_seconds": 30, **link,
    }
    bridge.save()


def test_a_dial_reaches_the_bridge_signed_and_its_answer_comes_back(alice, bridge, stand_in):
    _point_at(alice, *stand_in)
    _report(bridge, alice)
    command = wire.Dial(command_id=new_command_id(), extension="100", number="02101234567")
    result = send_command(alice, command)
    assert result == wire.CommandResult(command_id=command.command_id, ok=True)
    assert _BridgeStandIn.received == [command]


def test_a_refusal_from_the_pbx_is_passed_on(alice, bridge, stand_in):
    _point_at(alice, *stand_in)
    _report(bridge, alice)
    command = wire.Hangup(command_id="c1", extension="100")
    _BridgeStandIn.reply = (200, wire.encode(wire.CommandResult(
        command_id="c1", ok=False, error_id="no_such_call", message="extension 100 has no call to hang up")))
    result = send_command(alice, command)
    assert (result.ok, result.error_id) == (False, "no_such_call")


def test_a_wrong_secret_is_reported_as_such(alice, bridge, stand_in):
    _point_at(alice, *stand_in)
    _report(bridge, alice)
    Bridge.objects.filter(pk=bridge.pk).update(secret="not-the-secret-the-bridge-has")
    result = send_command(alice, wire.SetBusy(command_id="c2", extension="100", busy=True))
    assert (result.ok, result.error_id) == (False, "unauthenticated")
    assert "bridge secret" in result.message


@pytest.mark.parametrize(("reply", "error_id"), [((500, b"oops"), "bridge_error"), ((200, b"<html>"), "bridge_error")])
def test_a_broken_answer_is_an_error_not_a_crash(alice, bridge, stand_in, reply, error_id):
    _point_at(alice, *stand_in)
    _report(bridge, alice)
    _BridgeStandIn.reply = reply
    assert send_command(alice, wire.Answer(command_id="c3", extension="100")).error_id == error_id


def test_a_bridge_that_is_not_running_is_named_with_its_address(alice, bridge, unused_tcp_port):
    _point_at(alice, "127.0.0.1", unused_tcp_port)
    _report(bridge, alice)
    result = send_command(alice, wire.Answer(command_id="c4", extension="100"))
    assert result.error_id == "bridge_unreachable"
    assert f"127.0.0.1:{unused_tcp_port}" in result.message


def test_commands_need_the_link_active_and_a_bridge(alice, bridge):
    alice.cc_active = False
    alice.save()
    assert send_command(alice, wire.Answer(command_id="c5", extension="100")).error_id == "inactive"
    alice.cc_active = True
    alice.save()
    Bridge.objects.all().delete()
    assert send_command(alice, wire.Answer(command_id="c6", extension="100")).error_id == "no_bridge"


def test_logged_in_follows_the_bridge_link(alice, bridge, asterisk):
    assert link_status(alice).logged_in is False
    _report(bridge, alice)
    assert link_status(alice) == link_status(alice).__class__(True, "")
    _report(bridge, alice, connected=False)
    assert "not connected to the PBX" in link_status(alice).reason
    _report(bridge, alice, seen=timezone.now() - dt.timedelta(minutes=5))
    assert "has not reported since" in link_status(alice).reason
    _report(bridge, alice, service_port=6060)
    status = link_status(alice)
    assert not status.logged_in and "Service port is 5050 here but the bridge uses 6060" in status.reason


def test_logged_in_is_off_while_the_call_center_is_off(alice, bridge, cc_settings):
    _report(bridge, alice)
    assert "call center is off" in link_status(alice).reason
