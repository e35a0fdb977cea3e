"""Every AMI action the simulator answers, over a real socket, checked on the wire and on the PBX's state."""

from __future__ import annotations

import asyncio
import re

from callcenter.bridge.connectors.ami.codec import Message
from callcenter.pbxsim import Behaviour, SimulatedPBX
from tests.pbxsim.amiclient import AMIClient


def names(client: AMIClient, linkedid: str, *wanted: str) -> list[str]:
    """The sequence of ``wanted`` events of one call, as the client received them."""
    return [e.name for e in client.events()
            if (e.get("Linkedid") or e.get("DestLinkedid")) == linkedid and (not wanted or e.name in wanted)]


async def answered_call(pbx: SimulatedPBX, client: AMIClient, ext: str = "100") -> tuple[str, str]:
    """An outside call answered by ``ext``: (the agent's channel, the trunk channel)."""
    call = pbx.inbound_call("00302101234567", ext, name="Γιώργος Παπαδόπουλος")
    await client.wait_event("Newstate", ChannelStateDesc="Ringing")
    assert pbx.answer(ext)
    enter = await client.wait_event("BridgeEnter", Channel=call.channels[0].name)
    agent = next(c.name for c in pbx.channels() if c.extension == ext)
    return agent, enter.get("Channel") or ""


# ---- Originate ---------------------------------------------------------------------------------------------------


async def test_originate_from_an_agent_phone_starts_an_outbound_call(pbx: SimulatedPBX, client: AMIClient) -> None:
    response = await client.action("Originate", Channel="PJSIP/100", Exten="00302109876543",
                                   Context="from-internal", CallerID="00302109876543", Async="true",
                                   ChannelId="1795630000.500")
    assert (response.name, response.get("Message")) == ("Success", "Originate successfully queued")
    originated = await client.wait_event("OriginateResponse", ActionID=response.action_id or "")
    assert originated.get("Response") == "Success" and originated.get("Reason") == "4"
    assert originated.get("Uniqueid") == "1795630000.500"
    dial = await client.wait_event("DialBegin", Channel=originated.get("Channel") or "")
    assert dial.get("DestChannel", "").startswith("PJSIP/trunk-") and dial.get("DialString") == "00302109876543@trunk"
    await client.wait_event("BridgeEnter", Channel=originated.get("Channel") or "")
    # One call: the agent's phone rang first (an Originate's dial has no calling channel), then it dialled out.
    assert names(client, "1795630000.500", "Newchannel", "DialBegin", "DialEnd", "OriginateResponse",
                 "BridgeEnter") == ["Newchannel", "DialBegin", "DialEnd", "Newchannel", "DialBegin", "DialEnd",
                                    "BridgeEnter", "BridgeEnter"]
    first_dial = client.events("DialBegin")[0]
    assert first_dial.get("Channel") is None and first_dial.get("DestChannel") == originated.get("Channel")
    cmd = pbx.commands_named("Originate")[0]
    assert cmd.get("Exten") == "00302109876543" and cmd.response == "Success"


async def test_originate_to_an_extension_is_an_internal_call(pbx: SimulatedPBX, client: AMIClient) -> None:
    pbx.set_behaviour("102", Behaviour(answer_after=1))
    response = await client.action("Originate", Channel="PJSIP/100", Exten="102", Context="from-internal",
                                   Async="true")
    originated = await client.wait_event("OriginateResponse", ActionID=response.action_id or "")
    begin = await client.wait_event("DialBegin", Channel=originated.get("Channel") or "")
    assert begin.get("DestChannel", "").startswith("PJSIP/102-")
    await client.wait_event("BridgeEnter", Channel=begin.get("DestChannel") or "")
    assert {c.extension for c in pbx.channels()} == {"100", "102"}


async def test_a_synchronous_originate_answers_when_the_phone_answers(pbx: SimulatedPBX, client: AMIClient) -> None:
    response = await client.action("Originate", Channel="PJSIP/101", Exten="00302109876543",
                                   Context="from-internal")
    assert (response.name, response.get("Message")) == ("Success", "Originate successfully queued")
    assert [c.state for c in pbx.channels() if c.extension == "101"] == ["Up"], "answered when the response came"
    assert not client.events("OriginateResponse"), "Asterisk sends OriginateResponse for Async originates only"


async def test_originate_to_an_unknown_phone_fails(pbx: SimulatedPBX, client: AMIClient) -> None:
    response = await client.action("Originate", Channel="PJSIP/999", Exten="100", Context="from-internal",
                                   Async="true")
    assert response.name == "Success"  # as Asterisk: queued, then the failure arrives as an event
    failure = await client.wait_event("OriginateResponse", ActionID=response.action_id or "")
    assert (failure.get("Response"), failure.get("Reason"), failure.get("Uniqueid")) == ("Failure", "0", "<unknown>")
    sync = await client.action("Originate", Channel="Console/dsp", Exten="100")
    assert (sync.name, sync.get("Message")) == ("Error", "Originate failed")
    missing = await client.action("Originate", Exten="100")
    assert missing.get("Message") == "Channel not specified"


async def test_originate_that_nobody_answers_reports_no_answer(pbx: SimulatedPBX, client: AMIClient) -> None:
    pbx.core.agents["103"].originate_answer_after = None
    response = await client.action("Originate", Channel="PJSIP/103", Exten="100", Timeout="3000", Async="yes")
    failure = await client.wait_event("OriginateResponse", ActionID=response.action_id or "")
    assert (failure.get("Response"), failure.get("Reason")) == ("Failure", "3")
    await pbx.wait_until(lambda: not pbx.channels())


async def test_originate_local_from_pstn_rings_the_extension_like_the_fixture_driver(
    pbx: SimulatedPBX, client: AMIClient
) -> None:
    response = await client.action("Originate", Channel="Local/101@from-pstn", Application="Wait", Data="3600",
                                   CallerID='"Μαρία Κωνσταντίνου" <+302107654321>', Async="true")
    ringing = await client.wait_event("Newstate", ChannelStateDesc="Ringing")
    assert ringing.get("Channel", "").startswith("PJSIP/101-")
    assert ringing.get("ConnectedLineNum") == "+302107654321"
    # The phone keeps its endpoint's caller id; the caller shows as its connected line (as on the PJSIP lab).
    assert (ringing.get("CallerIDNum"), ringing.get("ConnectedLineName")) == ("101", "Μαρία Κωνσταντίνου")
    assert pbx.answer("101")
    ok = await client.wait_event("OriginateResponse", ActionID=response.action_id or "")
    assert ok.get("Response") == "Success"


# ---- Hangup --------------------------------------------------------------------------------------------------------


async def test_hangup_of_an_answered_agent_ends_the_whole_call(pbx: SimulatedPBX, client: AMIClient) -> None:
    agent, trunk = await answered_call(pbx, client)
    response = await client.action("Hangup", Channel=agent)
    assert (response.name, response.get("Message")) == ("Success", "Channel Hungup")
    request = await client.wait_event("SoftHangupRequest", Channel=agent)
    assert request.get("Cause") == "16"
    hangup = await client.wait_event("Hangup", Channel=trunk)
    assert (hangup.get("Cause"), hangup.get("Cause-txt")) == ("16", "Normal Clearing")
    assert pbx.channels() == []


async def test_hangup_of_a_ringing_phone_declines_the_call(pbx: SimulatedPBX, client: AMIClient) -> None:
    call = pbx.inbound_call("00302101234567", "100")
    ringing = await client.wait_event("Newstate", ChannelStateDesc="Ringing")
    await client.action("Hangup", Channel=ringing.get("Channel") or "", Cause="17")
    end = await client.wait_event("DialEnd", DestChannel=ringing.get("Channel") or "")
    assert end.get("DialStatus") == "BUSY"
    await client.wait_event("Hangup", Channel=call.channels[0].name, Cause="17")


async def test_hangup_errors_and_regex(pbx: SimulatedPBX, client: AMIClient) -> None:
    assert (await client.action("Hangup", Channel="PJSIP/100-0000ffff")).get("Message") == "No such channel"
    assert (await client.action("Hangup")).get("Message") == "No channel specified"
    pbx.inbound_call("00302101234567", "100")
    pbx.inbound_call("00302101234567", "101")
    await pbx.wait_until(lambda: len(pbx.channels()) == 4)
    response = await client.action("Hangup", Channel="/^PJSIP/trunk-/")
    assert response.get("Message") == "2 channels hung up."
    await pbx.wait_until(lambda: not pbx.channels())


# ---- transfers -------------------------------------------------------------------------------------------------------


async def test_blind_transfer_moves_the_caller_to_the_other_extension(pbx: SimulatedPBX, client: AMIClient) -> None:
    agent, trunk = await answered_call(pbx, client)
    pbx.set_behaviour("103", Behaviour(answer_after=2))
    response = await client.action("BlindTransfer", Channel=agent, Exten="103", Context="from-internal")
    assert (response.name, response.get("Message")) == ("Success", "Transfer succeeded")
    event = await client.wait_event("BlindTransfer")
    assert (event.get("TransfererChannel"), event.get("TransfereeChannel"), event.get("Extension")) == (
        agent, trunk, "103")
    await client.wait_for(lambda: any(e.get("DestChannel", "").startswith("PJSIP/103-")
                                      for e in client.events("DialBegin")))
    dial = client.events("DialBegin")[-1]
    assert dial.get("Channel") == trunk and dial.get("ChannelStateDesc") == "Up"
    await client.wait_event("BridgeEnter", Channel=dial.get("DestChannel") or "")
    assert {c.extension for c in pbx.channels()} == {None, "103"}
    linked = {c.linkedid for c in pbx.channels()}
    assert len(linked) == 1, "one Linkedid throughout"


async def test_blind_transfer_errors(pbx: SimulatedPBX, client: AMIClient) -> None:
    assert (await client.action("BlindTransfer", Exten="103")).get("Message") == "No channel specified"
    assert (await client.action("BlindTransfer", Channel="PJSIP/1-1")).get("Message") == "No extension specified"
    gone = await client.action("BlindTransfer", Channel="PJSIP/100-0000ffff", Exten="103")
    assert gone.get("Message") == "Channel specified does not exist"
    pbx.inbound_call("00302101234567", "100")
    ringing = await client.wait_event("Newstate", ChannelStateDesc="Ringing")
    not_bridged = await client.action("BlindTransfer", Channel=ringing.get("Channel") or "", Exten="103")
    assert (not_bridged.name, not_bridged.get("Message")) == ("Error", "Transfer invalid")


async def test_redirect_of_the_caller_sends_it_to_the_extension(pbx: SimulatedPBX, client: AMIClient) -> None:
    agent, trunk = await answered_call(pbx, client)
    pbx.set_behaviour("102", Behaviour(answer_after=1))
    response = await client.action("Redirect", Channel=trunk, Exten="102", Context="from-internal", Priority="1")
    assert (response.name, response.get("Message")) == ("Success", "Redirect successful")
    await client.wait_event("Hangup", Channel=agent)
    await client.wait_for(lambda: any(e.get("DestChannel", "").startswith("PJSIP/102-")
                                      for e in client.events("DialBegin")))
    dial = client.events("DialBegin")[-1]
    assert dial.get("Channel") == trunk
    await client.wait_event("BridgeEnter", Channel=dial.get("DestChannel") or "")
    assert {c.extension for c in pbx.channels()} == {None, "102"}
    missing = await client.action("Redirect", Channel="PJSIP/x-1", Exten="102")
    assert missing.get("Message") == "Channel does not exist: PJSIP/x-1"


async def test_atxfer_consults_then_completes_when_the_transferer_hangs_up(
    pbx: SimulatedPBX, client: AMIClient
) -> None:
    agent, trunk = await answered_call(pbx, client)
    original = pbx.core.find_channel(trunk)
    assert original is not None and original.bridge is not None
    response = await client.action("Atxfer", Channel=agent, Exten="101", Context="from-internal")
    assert (response.name, response.get("Message")) == ("Success", "Atxfer successfully queued")
    await client.wait_event("Hold", Channel=agent)
    # As Asterisk's transfer feature does it: a Local channel whose ;2 half dials the target with the agent's id.
    await client.wait_for(lambda: any(e.get("DestChannel", "").startswith("PJSIP/101-")
                                      for e in client.events("DialBegin")))
    dial = next(e for e in client.events("DialBegin") if e.get("DestChannel", "").startswith("PJSIP/101-"))
    target, local2 = dial.get("DestChannel") or "", dial.get("Channel") or ""
    assert re.fullmatch(r"Local/101@from-internal-[0-9a-f]{8};2", local2) and dial.get("CallerIDNum") == "100"
    local1 = local2[:-1] + "1"
    assert pbx.answer("101")
    await client.wait_event("BridgeEnter", Channel=target)
    await client.action("Hangup", Channel=agent)
    event = await client.wait_event("AttendedTransfer")
    assert (event.get("Result"), event.get("OrigTransfererChannel"), event.get("TransfereeChannel"),
            event.get("DestType"), event.get("DestBridgeUniqueid")) == (
        "Success", agent, trunk, "Bridge", original.bridge.uniqueid)
    await client.wait_event("BridgeEnter", Channel=local1, BridgeUniqueid=original.bridge.uniqueid)
    live = {c.name: c for c in pbx.channels()}
    assert set(live) == {trunk, local1, local2, target}
    assert live[trunk].bridge == live[local1].bridge and live[local2].bridge == live[target].bridge


async def test_atxfer_that_the_target_does_not_answer_returns_to_the_caller(
    pbx: SimulatedPBX, client: AMIClient
) -> None:
    pbx.core.ring_timeout = 3
    agent, trunk = await answered_call(pbx, client)
    await client.action("Atxfer", Channel=agent, Exten="101")
    await client.wait_event("Unhold", Channel=agent)
    back = [e for e in client.events("BridgeEnter") if e.get("Channel") == agent]
    assert len(back) == 3, "the transferer consulted, then went back into the caller's bridge"
    assert {c.name for c in pbx.channels()} == {agent, trunk}
    refused = await client.action("Atxfer", Channel="PJSIP/100-0000ffff", Exten="101")
    assert refused.get("Message") == "Channel specified does not exist"


# ---- channel lists ---------------------------------------------------------------------------------------------------


def list_of(client: AMIClient, response: Message) -> list[Message]:
    return [m for m in client.responses(response.action_id or "") if m.kind == "event"]


async def test_core_show_channels_lists_every_channel_then_completes(pbx: SimulatedPBX, client: AMIClient) -> None:
    empty = await client.action("CoreShowChannels")
    assert (empty.name, empty.get("EventList"), empty.get("Message")) == ("Success", "start", "Channels will follow")
    assert [(m.name, m.get("ListItems")) for m in list_of(client, empty)] == [("CoreShowChannelsComplete", "0")]
    agent, trunk = await answered_call(pbx, client)
    full = await client.action("CoreShowChannels")
    items = list_of(client, full)
    assert [m.name for m in items] == ["CoreShowChannel", "CoreShowChannel", "CoreShowChannelsComplete"]
    assert {m.get("Channel") for m in items[:2]} == {agent, trunk}
    assert items[-1].get("EventList") == "Complete" and items[-1].get("ListItems") == "2"
    assert all(m.get("BridgeId") and m.get("Linkedid") and m.get("Duration") for m in items[:2])
    assert all(m.get("Timestamp") is None for m in items), "list events are not broadcast events"


async def test_status_lists_channels_or_one_channel(pbx: SimulatedPBX, client: AMIClient) -> None:
    agent, trunk = await answered_call(pbx, client)
    everything = await client.action("Status")
    items = list_of(client, everything)
    assert [m.name for m in items] == ["Status", "Status", "StatusComplete"]
    assert items[-1].get("Items") == "2" and items[-1].get("EventList") == "Complete"
    one = await client.action("Status", Channel=agent)
    status = list_of(client, one)[0]
    assert (status.get("Channel"), status.get("ChannelStateDesc"), status.get("Type")) == (agent, "Up", "PJSIP")
    assert status.get("BridgeID")
    missing = await client.action("Status", Channel="PJSIP/100-0000ffff")
    assert (missing.name, missing.get("Message")) == ("Error", "No such channel")


# ---- AstDB and DND ---------------------------------------------------------------------------------------------------


async def test_dbput_dbget_dbdel_round_trip(client: AMIClient) -> None:
    put = await client.action("DBPut", Family="cidname", Key="2101234567", Val="Γιώργος")
    assert put.get("Message") == "Updated database successfully"
    got = await client.action("DBGet", Family="cidname", Key="2101234567")
    items = list_of(client, got)
    assert [(m.name, m.get("Val")) for m in items] == [("DBGetResponse", "Γιώργος"), ("DBGetComplete", None)]
    deleted = await client.action("DBDel", Family="cidname", Key="2101234567")
    assert deleted.get("Message") == "Key deleted successfully"
    missing = await client.action("DBGet", Family="cidname", Key="2101234567")
    assert (missing.name, missing.get("Message")) == ("Error", "Database entry not found")
    assert (await client.action("DBDel", Family="x", Key="y")).get("Message") == "Database entry not found"
    assert (await client.action("DBPut", Key="y")).get("Message") == "No family specified."


async def test_dnd_via_astdb_sets_the_hint_busy_like_freepbx(pbx: SimulatedPBX, client: AMIClient) -> None:
    await client.action("DBPut", Family="DND", Key="100", Val="YES")
    status = await client.wait_event("ExtensionStatus", Exten="100")
    assert (status.get("Status"), status.get("StatusText"), status.get("Hint")) == (
        "2", "Busy", "PJSIP/100&Custom:DND100")
    await client.wait_event("DeviceStateChange", Device="Custom:DND100", State="BUSY")
    assert pbx.dnd == {"100"}
    got = await client.action("DBGet", Family="DND", Key="100")
    assert list_of(client, got)[0].get("Val") == "YES"
    await client.action("DBDel", Family="DND", Key="100")
    idle = await client.wait_event("ExtensionStatus", Exten="100", Status="0")
    assert idle.get("StatusText") == "Idle"
    assert pbx.dnd == frozenset()


async def test_a_call_to_a_dnd_extension_is_busy_without_ringing(pbx: SimulatedPBX, client: AMIClient) -> None:
    await client.action("DBPut", Family="DND", Key="100", Val="YES")
    call = pbx.inbound_call("00302101234567", "100")
    hangup = await client.wait_event("Hangup", Channel=call.channels[0].name)
    assert (hangup.get("Cause"), hangup.get("Cause-txt")) == ("17", "User busy")
    assert not [e for e in client.events() if (e.get("Channel") or "").startswith("PJSIP/100-")]
    assert not client.events("DialBegin")


async def test_a_ring_group_skips_a_dnd_member(pbx: SimulatedPBX, client: AMIClient) -> None:
    await client.action("DBPut", Family="DND", Key="101", Val="YES")
    pbx.inbound_call("00302101234567", "600", abandon_after=1)
    await client.wait_event("DialEnd", DialStatus="CANCEL")
    rung = {(e.get("DestChannel") or "").split("-")[0] for e in client.events("DialBegin")}
    assert rung == {"PJSIP/100", "PJSIP/102", "PJSIP/103"}


async def test_setvar_device_state_and_getvar(pbx: SimulatedPBX, client: AMIClient) -> None:
    await client.action("Setvar", Variable="DEVICE_STATE(Custom:DND102)", Value="BUSY")
    await client.wait_event("ExtensionStatus", Exten="102", Status="2")
    got = await client.action("Getvar", Variable="DEVICE_STATE(Custom:DND102)")
    assert got.get("Value") == "BUSY"
    state = await client.action("ExtensionState", Exten="102", Context="ext-local")
    assert (state.get("Status"), state.get("StatusText")) == ("2", "Busy")


# ---- queues and remote answer -------------------------------------------------------------------------------------


async def test_queue_pause_and_unpause(pbx: SimulatedPBX, client: AMIClient) -> None:
    paused = await client.action("QueuePause", Interface="PJSIP/101", Paused="true", Reason="lunch")
    assert (paused.name, paused.get("Message")) == ("Success", "Interface paused successfully")
    event = await client.wait_event("QueueMemberPause", Interface="PJSIP/101")
    assert (event.get("Queue"), event.get("Paused"), event.get("PausedReason")) == ("400", "1", "lunch")
    assert pbx.core.paused["101"] == (True, "lunch")
    unpaused = await client.action("QueuePause", Interface="Local/101@from-queue/n", Paused="false")
    assert unpaused.get("Message") == "Interface unpaused successfully"
    unknown = await client.action("QueuePause", Interface="PJSIP/999", Paused="true")
    assert (unknown.name, unknown.get("Message")) == ("Error", "Interface not found")
    assert (await client.action("QueuePause", Paused="1")).get("Message") == "Need 'Interface' parameter"


async def test_pjsip_notify_talk_answers_the_ringing_phone(pbx: SimulatedPBX, client: AMIClient) -> None:
    call = pbx.inbound_call("00302101234567", "100")
    await client.wait_event("Newstate", ChannelStateDesc="Ringing")
    response = await client.action("PJSIPNotify", Endpoint="100", Variable="Event=talk")
    assert (response.name, response.get("Message")) == ("Success", "NOTIFY sent")
    up = await client.wait_event("Newstate", ChannelStateDesc="Up")
    assert up.get("Channel", "").startswith("PJSIP/100-")
    await client.wait_event("BridgeEnter", Channel=call.channels[0].name)


async def test_pjsip_notify_errors_and_harmless_notifies(pbx: SimulatedPBX, client: AMIClient) -> None:
    assert (await client.action("PJSIPNotify", Endpoint="999", Variable="Event=talk")).get(
        "Message") == "Unable to retrieve endpoint 999"
    assert (await client.action("PJSIPNotify", Variable="Event=talk")).name == "Error"
    assert (await client.action("PJSIPNotify", Endpoint="100")).name == "Error"
    idle = await client.action("PJSIPNotify", Endpoint="100", Variable="Event=check-sync")
    assert idle.name == "Success"
    await asyncio.sleep(0.01)
    assert pbx.channels() == []


async def test_redirect_of_a_ringing_caller_deflects_the_call(pbx: SimulatedPBX, client: AMIClient) -> None:
    call = pbx.inbound_call("00302101234567", "100")
    trunk = call.channels[0].name
    await client.wait_event("Newstate", ChannelStateDesc="Ringing")
    await client.action("Redirect", Channel=trunk, Exten="101", Context="from-internal")
    cancel = await client.wait_event("DialEnd", Channel=trunk, DialStatus="CANCEL")
    assert cancel.get("DestChannel", "").startswith("PJSIP/100-")
    await client.wait_for(lambda: any(e.get("DestChannel", "").startswith("PJSIP/101-")
                                      for e in client.events("DialBegin")))
    assert pbx.answer("101")
    await client.wait_event("BridgeEnter", Channel=trunk)


async def test_atxfer_to_a_dnd_extension_goes_back_to_the_caller(pbx: SimulatedPBX, client: AMIClient) -> None:
    pbx.set_dnd("101", True)
    agent, trunk = await answered_call(pbx, client)
    await client.action("Atxfer", Channel=agent, Exten="101")
    await client.wait_event("Unhold", Channel=agent)
    assert {c.name for c in pbx.channels()} == {agent, trunk}
    assert len({c.bridge for c in pbx.channels()}) == 1


async def test_atxfer_hung_up_while_the_target_rings_hands_the_caller_over(pbx: SimulatedPBX,
                                                                            client: AMIClient) -> None:
    agent, trunk = await answered_call(pbx, client)
    await client.action("Atxfer", Channel=agent, Exten="102")
    await client.wait_for(lambda: any(e.get("Channel", "").startswith("PJSIP/102-")
                                      for e in client.events("Newstate") if e.get("ChannelStateDesc") == "Ringing"))
    await client.action("Hangup", Channel=agent)  # a "blond" transfer
    event = await client.wait_event("AttendedTransfer")
    assert event.get("TransfereeChannel") == trunk
    assert pbx.answer("102")
    await client.wait_for(lambda: any(e.get("Channel", "").startswith("PJSIP/102-")
                                      for e in client.events("BridgeEnter")))
    live = {c.name: c for c in pbx.channels()}
    assert {c.extension for c in live.values()} == {None, "102"}
    # The caller talks to 102 through the Local channel: trunk + ;1 in one bridge, ;2 + 102 in another.
    local1 = next(n for n in live if n.endswith(";1"))
    target = next(n for n in live if n.startswith("PJSIP/102-"))
    assert live[trunk].bridge == live[local1].bridge and live[local1[:-1] + "2"].bridge == live[target].bridge


async def test_the_caller_hanging_up_during_a_consultation_leaves_the_agents_talking(
    pbx: SimulatedPBX, client: AMIClient
) -> None:
    agent, trunk = await answered_call(pbx, client)
    await client.action("Atxfer", Channel=agent, Exten="101")
    assert await asyncio.wait_for(_answer_when_ringing(pbx, "101"), 3)
    await client.wait_event("BridgeEnter", Channel=agent)
    await client.action("Hangup", Channel=trunk)
    await client.wait_event("Hangup", Channel=trunk)
    assert {c.extension for c in pbx.channels()} == {"100", "101", None}  # None: the Local channel between them
    await client.action("Hangup", Channel=agent)  # no transfer left to complete: an ordinary hang-up
    await pbx.wait_until(lambda: not pbx.channels())
    assert not client.events("AttendedTransfer")


async def test_a_phone_transfer_whose_target_hangs_up_takes_the_caller_off_hold(pbx: SimulatedPBX,
                                                                                client: AMIClient) -> None:
    agent, trunk = await answered_call(pbx, client)
    first = pbx.core.find_channel(agent)
    assert first is not None
    second = pbx.core.phone_transfer(first, "101")
    assert second.linkedid != first.linkedid, "the phone's second line is a call of its own"
    assert await asyncio.wait_for(_answer_when_ringing(pbx, "101"), 3)
    target = next(c for c in pbx.core.channels.values() if c.endpoint == "101")
    await client.wait_event("BridgeEnter", Channel=target.name)
    pbx.core.hangup(target)
    await client.wait_event("Unhold", Channel=agent)
    await client.wait_event("MusicOnHoldStop", Channel=trunk)
    assert {c.name for c in pbx.channels()} == {agent, trunk}


async def _answer_when_ringing(pbx: SimulatedPBX, ext: str) -> bool:
    while not pbx.answer(ext):
        await asyncio.sleep(0.002)
    return True
