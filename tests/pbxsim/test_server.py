"""The AMI server over a real socket: banner, authentication, session actions, event headers."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket

import pytest

from callcenter.pbxsim import SimulatedPBX
from tests.pbxsim.amiclient import SECRET, AMIClient


async def test_it_greets_with_the_asterisk_22_banner(pbx: SimulatedPBX) -> None:
    c = await AMIClient.connect(pbx.port)
    assert c.banner is not None and c.banner.name == "Asterisk Call Manager/11.0.0"
    assert c.raw.startswith(b"Asterisk Call Manager/11.0.0\r\n")
    await c.close()


async def test_it_accepts_the_right_secret_and_sends_fully_booted(pbx: SimulatedPBX) -> None:
    c = await AMIClient.connect(pbx.port)
    response = await c.login()
    assert (response.name, response.get("Message")) == ("Success", "Authentication accepted")
    booted = await c.wait_event("FullyBooted")
    assert booted.get("Privilege") == "system,all" and booted.get("Status") == "Fully Booted"
    assert pbx.clients == 1
    await c.close()


async def test_a_wrong_secret_gets_one_error_and_nothing_else(pbx: SimulatedPBX) -> None:
    c = await AMIClient.connect(pbx.port)
    action_id = c.send("Login", Username="crm", Secret="wrong")
    pbx.inbound_call("00302101234567", "100", hangup_after=1)  # events flow meanwhile: none may reach this client
    await asyncio.wait_for(c.closed.wait(), 3)
    assert [(m.kind, m.name, m.get("Message"), m.action_id) for m in c.messages] == [
        ("response", "Error", "Authentication failed", action_id)
    ]
    assert c.raw == b"Asterisk Call Manager/11.0.0\r\n" + (
        f"Response: Error\r\nActionID: {action_id}\r\nMessage: Authentication failed\r\n\r\n".encode()
    )
    assert pbx.clients == 0


async def test_an_unknown_user_is_refused_like_a_wrong_secret(pbx: SimulatedPBX) -> None:
    c = await AMIClient.connect(pbx.port)
    response = await c.login(username="root", secret=SECRET)
    assert (response.name, response.get("Message")) == ("Error", "Authentication failed")
    await asyncio.wait_for(c.closed.wait(), 3)


@pytest.mark.parametrize("action", ["Ping", "Originate", "CoreShowChannels", "DBGet", "Events", "Frobnicate"])
async def test_an_action_before_login_is_refused(pbx: SimulatedPBX, action: str) -> None:
    c = await AMIClient.connect(pbx.port)
    response = await c.action(action, Channel="PJSIP/100", Exten="101")
    assert (response.name, response.get("Message")) == ("Error", "Permission denied")
    assert pbx.commands_named(action)[0].response == "Error"
    assert pbx.core.channels == {}, "nothing happened on the PBX"
    response = await c.login()  # the session is still usable
    assert response.name == "Success"
    await c.close()


async def test_md5_challenge_login_works(pbx: SimulatedPBX) -> None:
    c = await AMIClient.connect(pbx.port)
    challenge = (await c.action("Challenge", AuthType="MD5")).get("Challenge")
    assert challenge
    key = hashlib.md5((challenge + SECRET).encode()).hexdigest()
    response = await c.action("Login", AuthType="MD5", Username="crm", Key=key)
    assert response.name == "Success"
    await c.close()


async def test_unknown_and_missing_actions_get_errors(client: AMIClient) -> None:
    response = await client.action("Frobnicate")
    assert response.name == "Error"
    assert (response.get("Message") or "").startswith("Invalid/unknown command: Frobnicate.")
    client.send_raw(b"ActionID: x1\r\nFoo: bar\r\n\r\n")
    await client.wait_for(lambda: bool(client.responses("x1")))
    assert client.responses("x1")[0].get("Message") == "Missing action in request"


async def test_ping_answers_pong_with_a_timestamp(client: AMIClient) -> None:
    response = await client.action("Ping")
    assert response.name == "Success" and response.get("Ping") == "Pong"
    assert re.fullmatch(r"\d{10}\.\d{6}", response.get("Timestamp") or "")


async def test_logoff_says_goodbye_and_closes(client: AMIClient) -> None:
    response = await client.action("Logoff")
    assert (response.name, response.get("Message")) == ("Goodbye", "Thanks for all the fish.")
    await asyncio.wait_for(client.closed.wait(), 3)


async def test_events_off_stops_events_and_on_resumes_them(pbx: SimulatedPBX, client: AMIClient) -> None:
    assert (await client.action("Events", EventMask="off")).get("Events") == "Off"
    before = len(client.events())
    call = pbx.inbound_call("00302101234567", "100", abandon_after=1)
    await pbx.wait_until(lambda: call.ended)
    await client.action("Ping")  # a round trip: anything sent before it has arrived
    assert len(client.events()) == before
    assert (await client.action("Events", EventMask="on")).get("Events") == "On"
    call = pbx.inbound_call("00302101234567", "100", abandon_after=1)
    await client.wait_event("Hangup", Channel=call.channels[0].name)


async def test_an_event_mask_of_classes_filters_by_privilege(pbx: SimulatedPBX, client: AMIClient) -> None:
    await client.action("Events", EventMask="call")
    call = pbx.inbound_call("00302101234567", "100", abandon_after=1)
    await client.wait_event("Hangup", Channel=call.channels[0].name)
    assert client.events("Newchannel") and not client.events("Newexten") and not client.events("VarSet")


async def test_every_event_has_privilege_and_timestamp_and_asterisk_ids(pbx: SimulatedPBX, client: AMIClient) -> None:
    call = pbx.inbound_call("00302101234567", "100", name="Γιώργος Παπαδόπουλος", abandon_after=2)
    await client.wait_event("Hangup", Channel=call.channels[0].name)
    events = [e for e in client.events() if e.name != "FullyBooted"]
    assert events
    for e in events:
        assert e.headers[0][0] == "Event" and e.headers[1][0] == "Privilege" and e.headers[2][0] == "Timestamp"
        assert re.fullmatch(r"\d{10}\.\d{6}", e.get("Timestamp") or "")
        if e.get("Linkedid"):
            assert re.fullmatch(r"\d{10}\.\d+", e.get("Uniqueid") or "")
            assert e.get("Linkedid") == call.linkedid
    names = {e.get("Channel") for e in events if e.get("Channel")}
    assert all(re.fullmatch(r"PJSIP/(trunk|\d+)-[0-9a-f]{8}", n or "") for n in names)
    caller_ids = [e.get("CallerIDName") for e in client.events("Newchannel")]
    assert "Γιώργος Παπαδόπουλος" in caller_ids  # UTF-8 on the wire (the SIP From display name, as the trunk got it)


async def test_two_clients_both_get_every_event(pbx: SimulatedPBX, client: AMIClient) -> None:
    other = await AMIClient.connect(pbx.port)
    await other.login()
    call = pbx.inbound_call("00302101234567", "100", abandon_after=1)
    for c in (client, other):
        await c.wait_event("Hangup", Channel=call.channels[0].name)
    assert [e.name for e in client.events() if e.get("Linkedid") == call.linkedid] == [
        e.name for e in other.events() if e.get("Linkedid") == call.linkedid
    ]
    await other.close()


async def test_the_secret_is_never_logged_nor_recorded(pbx: SimulatedPBX, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="callcenter.pbxsim")
    c = await AMIClient.connect(pbx.port)
    await c.login()
    await c.action("Logoff")
    bad = await AMIClient.connect(pbx.port)
    await bad.login(secret="not-" + SECRET)
    await asyncio.wait_for(bad.closed.wait(), 3)
    assert SECRET not in caplog.text
    login = pbx.commands_named("Login")
    assert [cmd.get("Secret") for cmd in login] == ["********", "********"]
    assert [cmd.response for cmd in login] == ["Success", "Error"]
    assert all(SECRET not in v for cmd in pbx.commands for _k, v in cmd.headers)


async def test_a_client_that_stops_reading_is_dropped(pbx: SimulatedPBX) -> None:
    pbx.server.max_pending = 64 * 1024
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting, so the window stays small
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", pbx.port))
    sock.send(f"Action: Login\r\nUsername: crm\r\nSecret: {SECRET}\r\n\r\n".encode())
    await pbx.wait_until(lambda: pbx.clients == 1)
    # The client never reads; the PBX keeps producing events and must let go of it instead of buffering forever.
    pbx.core.ring_timeout = 0.5
    for _ in range(100):
        if pbx.clients == 0:
            break
        for _ in range(20):
            pbx.inbound_call("00302101234567", "100")
        await asyncio.sleep(0.01)
    assert pbx.clients == 0
    sock.close()


def test_a_non_loopback_address_is_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        SimulatedPBX(users={"crm": SECRET}, host="192.0.2.10")


async def test_junk_from_a_client_never_breaks_the_server(pbx: SimulatedPBX, client: AMIClient) -> None:
    client.send_raw(b"\xff\xfe not utf-8 \xc3\x28\r\nno colon here\r\n\r\n")
    client.send_raw(b"Action: Ping\r\nActionID: after-junk\r\n\r\n")
    await client.wait_for(lambda: bool(client.responses("after-junk")))
    assert client.responses("after-junk")[0].get("Ping") == "Pong"
    flood = await AMIClient.connect(pbx.port)
    flood.send_raw(b"Action: " + b"x" * (5 * 1024 * 1024))  # no line end, beyond every limit
    await asyncio.wait_for(flood.closed.wait(), 5)
    assert (await client.action("Ping")).get("Ping") == "Pong", "the other sessions go on"
    await flood.close()


async def test_login_can_turn_events_off(pbx: SimulatedPBX) -> None:
    c = await AMIClient.connect(pbx.port)
    await c.action("Login", Username="crm", Secret=SECRET, Events="off")
    call = pbx.inbound_call("00302101234567", "100", abandon_after=1)
    await pbx.wait_until(lambda: call.ended)
    await c.action("Ping")
    assert c.events() == []
    await c.close()
