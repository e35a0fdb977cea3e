"""Fault modes (for the bridge's resilience tests) and the port-clash error, over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from callcenter.pbxsim import PortInUseError, SimulatedPBX, parse_scenario
from callcenter.pbxsim.server import GARBAGE
from tests.pbxsim.amiclient import SECRET, AMIClient


async def logged_in(pbx: SimulatedPBX) -> AMIClient:
    c = await AMIClient.connect(pbx.port)
    await c.login()
    return c


async def test_drop_closes_every_session_and_the_port_still_accepts(pbx: SimulatedPBX, client: AMIClient) -> None:
    other = await logged_in(pbx)
    pbx.inject_fault("drop")
    await asyncio.wait_for(asyncio.gather(client.closed.wait(), other.closed.wait()), 3)
    again = await logged_in(pbx)
    assert (await again.action("Ping")).get("Ping") == "Pong"
    await again.close()


async def test_drop_with_a_duration_refuses_connections_until_it_has_passed(pbx: SimulatedPBX,
                                                                            client: AMIClient) -> None:
    pbx.inject_fault("drop", duration=30)  # 30 simulated seconds = 0.3 s here
    await asyncio.wait_for(client.closed.wait(), 3)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", pbx.port)
    await pbx.wait_until(lambda: not pbx.server.down, timeout=3)
    again = await logged_in(pbx)
    assert (await again.action("Ping")).name == "Success"
    await again.close()


async def test_garbage_is_written_then_the_stream_goes_on(pbx: SimulatedPBX, client: AMIClient) -> None:
    before = len(client.messages)
    pbx.inject_fault("garbage")
    call = pbx.inbound_call("00302101234567", "100", abandon_after=1)
    await client.wait_event("Hangup", Channel=call.channels[0].name)
    assert GARBAGE in client.raw
    after = client.messages[before:]
    assert after[0].kind == "malformed", "the junk reaches the client as such"
    assert any(m.kind == "event" and m.name == "Newchannel" for m in after), "and events parse again after it"
    assert (await client.action("Ping")).get("Ping") == "Pong"


async def test_stall_keeps_the_socket_open_but_sends_nothing_until_resumed(pbx: SimulatedPBX,
                                                                           client: AMIClient) -> None:
    pbx.inject_fault("stall")
    received = len(client.raw)
    lost_ping = client.send("Ping")
    call = pbx.inbound_call("00302101234567", "100", abandon_after=1)
    await pbx.wait_until(lambda: call.ended)
    await asyncio.sleep(0.05)
    assert len(client.raw) == received, "not one byte while stalled"
    assert not client.closed.is_set(), "the socket stays open"
    assert pbx.commands_named("Ping")[-1].get("ActionID") == lost_ping, "actions are still read"
    await pbx.resume()
    assert (await client.action("Ping")).get("Ping") == "Pong"
    assert not client.responses(lost_ping), "what was due during the stall is lost, as with a hung PBX"


async def test_stall_with_a_duration_ends_by_itself(pbx: SimulatedPBX, client: AMIClient) -> None:
    pbx.inject_fault("stall", duration=20)
    await asyncio.sleep(0.3)  # 20 simulated seconds = 0.2 s here
    assert (await client.action("Ping")).get("Ping") == "Pong"


async def test_a_stall_does_not_affect_clients_that_connect_later(pbx: SimulatedPBX, client: AMIClient) -> None:
    pbx.inject_fault("stall")
    fresh = await logged_in(pbx)
    assert (await fresh.action("Ping")).get("Ping") == "Pong"
    await fresh.close()


async def test_restart_loses_every_call_silently_and_comes_back(pbx: SimulatedPBX, client: AMIClient) -> None:
    pbx.inbound_call("00302101234567", "100")
    await client.wait_event("Newstate", ChannelStateDesc="Ringing")
    pbx.inject_fault("restart", duration=10)
    await asyncio.wait_for(client.closed.wait(), 3)
    assert pbx.channels() == []
    assert not client.events("Hangup"), "nobody hears the channels of a dead PBX go"
    await pbx.wait_until(lambda: not pbx.server.down, timeout=3)
    again = await logged_in(pbx)
    listing = await again.action("CoreShowChannels")
    items = [m for m in again.responses(listing.action_id or "") if m.kind == "event"]
    assert [(m.name, m.get("ListItems")) for m in items] == [("CoreShowChannelsComplete", "0")]
    await again.close()


async def test_a_scenario_can_inject_a_fault(pbx: SimulatedPBX, client: AMIClient) -> None:
    sc = parse_scenario("at 1 fault drop\n", source="fault.scenario")
    run = await pbx.run_scenario(sc, timeout=3)
    assert run.errors == []
    await asyncio.wait_for(client.closed.wait(), 3)


def test_an_unknown_fault_is_refused() -> None:
    pbx = SimulatedPBX(users={"crm": SECRET})
    with pytest.raises(ValueError, match="unknown fault 'explode'; use one of: drop, garbage, stall, restart"):
        pbx.inject_fault("explode")


async def test_a_port_clash_names_the_port_and_what_to_do(pbx: SimulatedPBX) -> None:
    clash = SimulatedPBX(users={"crm": SECRET}, port=pbx.port)
    with pytest.raises(PortInUseError) as info:
        await clash.start()
    text = str(info.value.strerror)
    assert f"port {pbx.port} on 127.0.0.1 is already in use" in text
    assert "choose another port with --port" in text
