"""Scenario files: the parser, and every built-in scenario played over a real socket, checked event by event."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from callcenter.bridge.connectors.ami.codec import Message
from callcenter.pbxsim import ScenarioError, SimulatedPBX, parse_scenario
from callcenter.pbxsim.scenario import builtin_scenarios
from tests.pbxsim.amiclient import SECRET, AMIClient

# ---- the parser ----------------------------------------------------------------------------------------------------


def test_it_parses_declarations_and_steps_with_greek_quoted_names() -> None:
    sc = parse_scenario(
        """
        # a comment
        agent 100 "Αλίκη Παπά" answer-after 3 hangup-after 6
        agent 101 Bob never dnd
        group 600 100 101
        ring-timeout 12
        at 0 inbound c1 from 00302101234567 "Γιώργος Παπαδόπουλος" to 600 abandon-after 9
        at 2.5 hangup c1 caller   # trailing comment
        end 30
        """,
        source="demo.scenario",
    )
    assert sc.name == "demo"
    assert sc.agents["100"].name == "Αλίκη Παπά" and sc.agents["100"].behaviour.answer_after == 3
    assert sc.agents["101"].dnd and sc.agents["101"].behaviour.answer_after is None
    assert sc.groups == {"600": ["100", "101"]} and sc.ring_timeout == 12 and sc.end == 30
    inbound, hangup = sc.steps
    assert (inbound.verb, inbound.number, inbound.name, inbound.ext) == (
        "inbound", "00302101234567", "Γιώργος Παπαδόπουλος", "600")
    assert inbound.behaviour is not None and inbound.behaviour.abandon_after == 9
    assert (hangup.at, hangup.verb, hangup.ext, hangup.number) == (2.5, "hangup", "", "remote")


def test_steps_run_in_time_order_and_file_order_within_a_time() -> None:
    sc = parse_scenario("at 5 dnd 100 off\nat 0 dnd 100 on\nat 5 dnd 101 on\n")
    assert [(s.at, s.ext, s.on) for s in sc.steps] == [(0, "100", True), (5, "100", False), (5, "101", True)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("at 0 anwser c1 100", "x.scenario:1: unknown step 'anwser'"),
        ("at soon inbound c1 from 1 to 100", "the step's time must be a number of seconds"),
        ("at 0 answer c1 100", "call 'c1' is used before a step starts it"),
        ("at 0 inbound c1 from 1 to 100\nat 1 inbound c1 from 2 to 100", "x.scenario:2: call 'c1' is started twice"),
        ('at 0 inbound c1 from 1 "unclosed to 100', "x.scenario:1: No closing quotation (close the quotes)"),
        ("at 0 inbound c1 from 12a to 100", "the caller's number must be a phone number"),
        ("at 0 inbound c1 from 1 to 100 ring 5", "unknown option 'ring'"),
        ("at 0 fault explode", "unknown fault 'explode'"),
        ("at 0 dnd 100 maybe", "expected 'on' or 'off'"),
        ("group 600", "group 600 has no members"),
        ("agent 100 Alice sometimes", "unknown agent option 'sometimes'"),
        ("ring-timeout -1", "ring-timeout must be zero or more seconds"),
        ("dance", "unknown statement 'dance'"),
        ("at 0 hangup", "expected a call name at the end of the line"),
    ],
)
def test_a_bad_scenario_names_the_line_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="x.scenario")
    assert message in str(info.value)
    assert str(info.value).startswith("x.scenario:")


def test_every_built_in_scenario_parses_and_covers_every_flow() -> None:
    scenarios = builtin_scenarios()
    assert set(scenarios) >= {"inbound_answered", "inbound_missed", "busy_dnd", "busy_agent", "ringgroup", "outbound",
                              "internal", "transfer_blind", "transfer_attended", "transfer_phone", "caller_abandons",
                              "click_to_call"}
    for path in scenarios.values():
        text = Path(path).read_text(encoding="utf-8")
        assert text.startswith("#"), f"{path.name} starts with a comment saying what happens"
        parse_scenario(text, source=str(path))


# ---- playing them over a real socket -------------------------------------------------------------------------------


def who(channel: str | None) -> str:
    """``PJSIP/100-0000002a`` -> ``100``; ``PJSIP/trunk-0000002b`` -> ``trunk``;
    ``Local/101@from-internal-00000000;2`` -> ``Local/101;2``."""
    m = re.fullmatch(r"PJSIP/([^-]+)-[0-9a-f]{8}", channel or "")
    if m:
        return m.group(1)
    m = re.fullmatch(r"Local/([^@]+)@[^;]+-[0-9a-f]{8}(;[12])", channel or "")
    return f"Local/{m.group(1)}{m.group(2)}" if m else str(channel)


def story(events: list[Message], *, hints: bool = False) -> list[str]:
    """The call-state events of a session, one short line each (no dialplan noise, no device states)."""
    out = []
    for e in events:
        n, ch = e.name, who(e.get("Channel"))
        if n in ("Newchannel", "Newstate"):
            out.append(f"{n} {ch} {e.get('ChannelStateDesc')}")
        elif n in ("Hangup", "HangupRequest", "SoftHangupRequest"):
            out.append(f"{n} {ch} {e.get('Cause')}")
        elif n in ("DialBegin", "DialEnd"):
            caller = who(e.get("Channel")) if e.get("Channel") else "originate"
            out.append(f"{n} {caller}->{who(e.get('DestChannel'))} {e.get('DialStatus') or ''}".strip())
        elif n in ("BridgeEnter", "BridgeLeave"):
            out.append(f"{n} {ch}")
        elif n == "BlindTransfer":
            out.append(f"BlindTransfer {who(e.get('TransfererChannel'))} {who(e.get('TransfereeChannel'))} "
                       f"to {e.get('Extension')}")
        elif n == "AttendedTransfer":
            transferers = f"{who(e.get('OrigTransfererChannel'))}/{who(e.get('SecondTransfererChannel'))}"
            target = who(e.get("TransferTargetChannel")) if e.get("TransferTargetChannel") else e.get("DestType")
            out.append(f"AttendedTransfer {transferers} {who(e.get('TransfereeChannel'))} to {target}")
        elif n == "ExtensionStatus" and hints:
            out.append(f"ExtensionStatus {e.get('Exten')} {e.get('StatusText')}")
    return out


ANSWERED = ["Newchannel trunk Ring", "Newchannel 100 Down", "DialBegin trunk->100", "Newstate 100 Ringing",
            "Newstate 100 Up", "DialEnd trunk->100 ANSWER", "Newstate trunk Up", "BridgeEnter 100",
            "BridgeEnter trunk"]
AGENT_HANGS_UP = ["HangupRequest 100 16", "BridgeLeave 100", "Hangup 100 16", "BridgeLeave trunk",
                  "SoftHangupRequest trunk 16", "Hangup trunk 16"]
# Checked against the PJSIP lab's Asterisk 22 (tests/live/test_simulator_parity.py compares them per channel): the
# channel that runs the dialplan (the caller) gets a SoftHangupRequest when its call ends, a dialled leg never; a
# refusal (486) is a hang-up request on the refusing leg; a CANCEL ends the call with cause 127; Busy() turns the
# caller's channel Busy and hangs it up at once; app_dial ends the other ring-group legs without a hang-up request.

EXPECTED: dict[str, list[str]] = {
    "inbound_answered": ANSWERED + AGENT_HANGS_UP,
    "inbound_missed": [
        "Newchannel trunk Ring", "Newchannel 101 Down", "DialBegin trunk->101", "Newstate 101 Ringing",
        "DialEnd trunk->101 NOANSWER", "Hangup 101 0", "SoftHangupRequest trunk 16", "Hangup trunk 19"],
    "busy_dnd": ["Newchannel trunk Ring", "Newstate trunk Busy", "HangupRequest trunk 17", "SoftHangupRequest trunk 16",
                 "Hangup trunk 17"],
    "busy_agent": [
        *[s.replace("100", "101") for s in ANSWERED],
        "Newchannel trunk Ring", "Newchannel 101 Down", "DialBegin trunk->101", "HangupRequest 101 17",
        "DialEnd trunk->101 BUSY", "SoftHangupRequest trunk 16", "Hangup trunk 17", "Hangup 101 17",
        "HangupRequest trunk 16", "BridgeLeave trunk", "SoftHangupRequest trunk 16", "Hangup trunk 16",
        "BridgeLeave 101", "Hangup 101 16"],
    "caller_abandons": [
        "Newchannel trunk Ring", "Newchannel 100 Down", "DialBegin trunk->100", "Newstate 100 Ringing",
        "HangupRequest trunk 127", "DialEnd trunk->100 CANCEL", "SoftHangupRequest trunk 16", "Hangup 100 127",
        "Hangup trunk 127"],
    "ringgroup": [
        "Newchannel trunk Ring", "Newchannel 100 Down", "Newchannel 101 Down", "Newchannel 102 Down",
        "DialBegin trunk->100", "DialBegin trunk->101", "DialBegin trunk->102",
        "Newstate 100 Ringing", "Newstate 101 Ringing", "Newstate 102 Ringing", "Newstate 101 Up",
        "DialEnd trunk->100 CANCEL", "DialEnd trunk->102 CANCEL", "DialEnd trunk->101 ANSWER",
        "Hangup 100 26", "Hangup 102 26", "Newstate trunk Up", "BridgeEnter 101", "BridgeEnter trunk",
        "HangupRequest trunk 16", "BridgeLeave trunk", "SoftHangupRequest trunk 16", "Hangup trunk 16",
        "BridgeLeave 101", "Hangup 101 16"],
    "outbound": [
        "Newchannel 100 Ring", "Newchannel trunk Down", "DialBegin 100->trunk", "Newstate trunk Ringing",
        "Newstate trunk Up", "DialEnd 100->trunk ANSWER", "Newstate 100 Up", "BridgeEnter trunk", "BridgeEnter 100",
        "HangupRequest trunk 16", "BridgeLeave trunk", "Hangup trunk 16", "BridgeLeave 100",
        "SoftHangupRequest 100 16", "Hangup 100 16"],
    "internal": [
        "Newchannel 100 Ring", "Newchannel 102 Down", "DialBegin 100->102", "Newstate 102 Ringing",
        "Newstate 102 Up", "DialEnd 100->102 ANSWER", "Newstate 100 Up", "BridgeEnter 102", "BridgeEnter 100",
        "HangupRequest 102 16", "BridgeLeave 102", "Hangup 102 16", "BridgeLeave 100",
        "SoftHangupRequest 100 16", "Hangup 100 16"],
    "click_to_call": [
        "Newchannel 100 Down", "DialBegin originate->100", "Newstate 100 Ringing", "Newstate 100 Up",
        "DialEnd originate->100 ANSWER", "Newchannel trunk Down", "DialBegin 100->trunk", "Newstate trunk Ringing",
        "Newstate trunk Up", "DialEnd 100->trunk ANSWER", "BridgeEnter trunk", "BridgeEnter 100",
        "HangupRequest 100 16", "BridgeLeave 100", "SoftHangupRequest 100 16", "Hangup 100 16", "BridgeLeave trunk",
        "Hangup trunk 16"],
    "transfer_blind": [
        *ANSWERED, "BlindTransfer 100 trunk to 103", "BridgeLeave 100", "BridgeLeave trunk", "Hangup 100 16",
        "Newchannel 103 Down", "DialBegin trunk->103", "Newstate 103 Ringing",
        "Newstate 103 Up", "DialEnd trunk->103 ANSWER", "BridgeEnter 103", "BridgeEnter trunk",
        "HangupRequest 103 16", "BridgeLeave 103", "Hangup 103 16", "BridgeLeave trunk",
        "SoftHangupRequest trunk 16", "Hangup trunk 16"],
    # Asterisk's attended-transfer feature (AMI Atxfer) consults through a Local channel and, when the transferer
    # hangs up, moves its ;1 half into the caller's bridge.
    "transfer_attended": [
        *ANSWERED, "Newchannel Local/101;1 Down", "Newchannel Local/101;2 Ring", "BridgeEnter Local/101;1",
        "BridgeLeave 100", "BridgeEnter 100", "Newchannel 101 Down", "DialBegin Local/101;2->101",
        "Newstate 101 Ringing", "Newstate Local/101;1 Ringing", "Newstate 101 Up", "DialEnd Local/101;2->101 ANSWER",
        "Newstate Local/101;1 Up", "DialEnd originate->Local/101;1 ANSWER", "Newstate Local/101;2 Up",
        "BridgeEnter 101", "BridgeEnter Local/101;2", "HangupRequest 100 16", "BridgeLeave 100",
        "BridgeLeave Local/101;1", "BridgeEnter Local/101;1", "AttendedTransfer 100/100 trunk to Bridge",
        "Hangup 100 16", "HangupRequest 101 16", "BridgeLeave 101", "Hangup 101 16", "BridgeLeave Local/101;2",
        "SoftHangupRequest Local/101;2 16", "Hangup Local/101;2 16", "HangupRequest Local/101;1 16",
        "BridgeLeave Local/101;1", "Hangup Local/101;1 16", "BridgeLeave trunk", "SoftHangupRequest trunk 16",
        "Hangup trunk 16"],
    "transfer_phone": [
        *ANSWERED, "Newchannel 100 Ring", "Newchannel 101 Down", "DialBegin 100->101", "Newstate 101 Ringing",
        "Newstate 101 Up", "DialEnd 100->101 ANSWER", "Newstate 100 Up", "BridgeEnter 101", "BridgeEnter 100",
        "AttendedTransfer 100/100 trunk to 101", "HangupRequest 100 16", "BridgeLeave 100", "Hangup 100 16",
        "BridgeLeave 100", "SoftHangupRequest 100 16", "Hangup 100 16", "BridgeLeave trunk", "BridgeEnter trunk",
        "HangupRequest 101 16", "BridgeLeave 101", "Hangup 101 16", "BridgeLeave trunk",
        "SoftHangupRequest trunk 16", "Hangup trunk 16"],
}


async def play(name: str) -> tuple[SimulatedPBX, AMIClient, list[Message]]:
    pbx = SimulatedPBX(users={"crm": SECRET}, speed=100)
    await pbx.start()
    client = await AMIClient.connect(pbx.port)
    await client.login()
    run = await pbx.run_scenario(name, timeout=5)
    await client.action("Ping")  # everything the scenario caused has arrived
    assert run.errors == [] and pbx.errors == []
    return pbx, client, [m for m in client.events() if m.name != "FullyBooted"]


def check_channel_lifecycles(events: list[Message]) -> None:
    """Each channel: one Newchannel first, one Hangup last; Uniqueids unique; timestamps never go back."""
    first: dict[str, str] = {}
    hung: set[str] = set()
    uniqueids: dict[str, str] = {}
    stamps = [float(e.get("Timestamp") or 0) for e in events]
    assert stamps == sorted(stamps)
    for e in events:
        ch = e.get("Channel")
        if not ch or not e.get("Uniqueid"):
            continue
        assert ch not in hung, f"{e.name} for {ch} after its Hangup"
        if ch not in first:
            assert e.name == "Newchannel", f"{e.name} for {ch} before its Newchannel"
            first[ch] = e.name
            assert e.get("Uniqueid") not in uniqueids.values()
            uniqueids[ch] = e.get("Uniqueid") or ""
        assert e.get("Uniqueid") == uniqueids[ch]
        if e.name == "Hangup":
            hung.add(ch)
    assert hung == set(first), "every channel hung up at the end"


def check_dials_and_bridges(events: list[Message]) -> None:
    begun = Counter(e.get("DestChannel") for e in events if e.name == "DialBegin")
    ended = Counter(e.get("DestChannel") for e in events if e.name == "DialEnd")
    assert all(ended[dest] == 1 for dest in begun), "every DialBegin has exactly one DialEnd"
    # ... and a DialEnd without a DialBegin is the ;1 half of the Local channel the transfer feature calls (the lab's
    # Asterisk 22 announces that call with DialState and DialEnd only).
    assert all(dest in begun or (dest or "").startswith("Local/") and (dest or "").endswith(";1") for dest in ended)
    created = [e.get("BridgeUniqueid") for e in events if e.name == "BridgeCreate"]
    destroyed = [e.get("BridgeUniqueid") for e in events if e.name == "BridgeDestroy"]
    assert sorted(map(str, created)) == sorted(map(str, destroyed)) and len(set(created)) == len(created)
    members: dict[str, set[str]] = {}
    for e in events:
        bridge = e.get("BridgeUniqueid") or ""
        if e.name == "BridgeCreate":
            members[bridge] = set()
        elif e.name == "BridgeEnter":
            members[bridge].add(e.get("Channel") or "")
            assert e.get("BridgeNumChannels") == str(len(members[bridge]))
        elif e.name == "BridgeLeave":
            members[bridge].remove(e.get("Channel") or "")
            assert e.get("BridgeNumChannels") == str(len(members[bridge]))
        elif e.name == "BridgeDestroy":
            assert members.pop(bridge) == set()


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_scenario_emits_the_events_of_a_real_asterisk_in_order(name: str) -> None:
    pbx, client, events = await play(name)
    try:
        assert story(events) == EXPECTED[name]
        check_channel_lifecycles(events)
        check_dials_and_bridges(events)
        # One call, one Linkedid: the Uniqueid of its first channel (a phone's second line is a call of its own).
        by_linkedid: dict[str, list[Message]] = {}
        for e in events:
            if e.get("Linkedid"):
                by_linkedid.setdefault(e.get("Linkedid") or "", []).append(e)
        calls = 2 if name in ("busy_agent", "transfer_phone") else 1
        assert len(by_linkedid) == calls
        for linkedid, evs in by_linkedid.items():
            assert evs[0].name == "Newchannel" and evs[0].get("Uniqueid") == linkedid
        # Every agent's hint is back to Idle once the calls are over.
        last: dict[str, str] = {}
        for e in events:
            if e.name == "ExtensionStatus":
                last[e.get("Exten") or ""] = e.get("StatusText") or ""
        assert set(last.values()) <= {"Idle"}, last
    finally:
        await client.close()
        await pbx.stop()


async def test_the_hints_follow_the_phone_and_dnd() -> None:
    pbx, client, events = await play("inbound_answered")
    assert [s for s in story(events, hints=True) if s.startswith("ExtensionStatus")] == [
        "ExtensionStatus 100 Busy", "ExtensionStatus 100 Idle"]  # device_state_busy_at=1: Busy from the first ring
    await client.close()
    await pbx.stop()
    pbx, client, events = await play("busy_dnd")
    assert [s for s in story(events, hints=True) if s.startswith("ExtensionStatus")] == [
        "ExtensionStatus 100 Busy", "ExtensionStatus 100 Idle"]
    await client.close()
    await pbx.stop()


async def test_the_transfer_events_carry_the_right_parties() -> None:
    pbx, client, events = await play("transfer_blind")
    blind = next(e for e in events if e.name == "BlindTransfer")
    assert (blind.get("Result"), blind.get("IsExternal"), blind.get("Context"), blind.get("Extension")) == (
        "Success", "Yes", "from-internal", "103")
    assert blind.get("TransfereeCallerIDNum") == "00302101234567" and blind.get("BridgeUniqueid")
    await client.close()
    await pbx.stop()
    pbx, client, events = await play("transfer_phone")
    xfer = next(e for e in events if e.name == "AttendedTransfer")
    assert xfer.get("OrigTransfererLinkedid") != xfer.get("SecondTransfererLinkedid"), "two calls were joined"
    assert xfer.get("OrigTransfererChannel") != xfer.get("SecondTransfererChannel")
    assert (xfer.get("DestType"), xfer.get("IsExternal")) == ("Bridge", "Yes")
    assert xfer.get("DestBridgeUniqueid") == xfer.get("SecondBridgeUniqueid")
    await client.close()
    await pbx.stop()


async def test_a_step_that_cannot_happen_is_reported_and_the_run_goes_on() -> None:
    sc = parse_scenario("agent 100 never\nat 0 inbound c1 from 2101234567 to 100 abandon-after 2\n"
                        "at 1 answer c1 101\n", source="oops.scenario")
    async with SimulatedPBX(users={"crm": SECRET}, speed=100) as pbx:
        run = await pbx.run_scenario(sc, timeout=5)
    assert len(run.errors) == 1
    assert run.errors[0].startswith("oops.scenario:3: at 1 answer: ")
    assert "101 has no ringing channel in call 'c1'" in run.errors[0]
