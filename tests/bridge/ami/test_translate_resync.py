"""The translator's facilities for the live connector: the legs a command acts on (``legs_of``), catching up with
``CoreShowChannels`` after a reconnect (``catch_up``), DND read with ``DBGet`` (``note_dnd``), ``tracked_uniqueids``."""

from __future__ import annotations

from callcenter import wire
from callcenter.bridge.connectors.ami.codec import Message
from callcenter.bridge.connectors.ami.translate import LegState, TranslatorConfig
from tests.bridge.ami.test_translate import ALICE, BOB, CALLER, TRUNK, Pbx, answer_alice, chan, hangup, ring_alice


def listed(who: tuple[str, str, str], state: int, *, bridge: str = "", cnum: str = "", num: str = "",
           application: str = "AppDial", data: str = "(Outgoing Line)", duration: str = "00:00:03",
           exten: str = "") -> Message:
    """One item of a CoreShowChannels answer."""
    return Message("event", (("Event", "CoreShowChannel"), ("ActionID", "cc-7"),
                             *chan(who, state, cnum=cnum, num=num, exten=exten), ("BridgeId", bridge),
                             ("Application", application), ("ApplicationData", data), ("Duration", duration)))


def status(who: tuple[str, str, str], state: int, *, bridge: str = "", cnum: str = "", seconds: str = "3",
           application: str = "AppDial", data: str = "(Outgoing Line)") -> Message:
    """One item of a Status answer (Asterisk names its fields differently from CoreShowChannel)."""
    return Message("event", (("Event", "Status"), ("ActionID", "st-7"), *chan(who, state, cnum=cnum),
                             ("BridgeID", bridge), ("Application", application), ("Data", data),
                             ("Seconds", seconds)))


def test_a_call_already_talking_when_the_bridge_starts_is_announced_answered_from_its_start() -> None:
    pbx = Pbx()
    events = pbx.translator.catch_up(listed(ALICE, 6, cnum=CALLER, bridge="b-1", duration="00:01:05"), now=1000.0)
    assert [type(e) for e in events] == [wire.CallRinging, wire.CallAnswered]
    ringing, answered = events
    assert isinstance(ringing, wire.CallRinging)
    assert (ringing.extension, ringing.call_id, ringing.leg_id) == ("100", TRUNK[2], ALICE[1])
    assert (ringing.direction, ringing.remote_number) == (wire.Direction.INBOUND, CALLER)
    assert ringing.occurred_at == answered.occurred_at == 1000.0 - 65
    assert ringing.event_id == f"ami:{TRUNK[2]}:{ALICE[1]}:ringing", "the id the live event would have had"
    # The bridge follows it from there: its hang-up ends it, by the agent.
    hangup(pbx, ALICE)
    [ended] = pbx.events
    assert isinstance(ended, wire.CallEnded) and not ended.reconciled


def test_an_outgoing_call_already_talking_when_the_bridge_starts_is_announced_with_its_number() -> None:
    pbx = Pbx()
    alice_alone = (ALICE[0], ALICE[1], ALICE[1])  # an agent's own call: its first channel
    events = pbx.translator.catch_up(status(alice_alone, 6, cnum="2109876543", bridge="b-3", seconds="40",
                                            application="Dial", data="PJSIP/2109876543@trunk,60,tT"), now=500.0)
    assert [type(e) for e in events] == [wire.CallRinging, wire.CallAnswered]
    ringing = events[0]
    assert isinstance(ringing, wire.CallRinging)
    assert (ringing.direction, ringing.remote_number, ringing.occurred_at) == (
        wire.Direction.OUTBOUND, "2109876543", 460.0)


def test_an_outgoing_call_still_dialling_when_the_bridge_starts_is_announced_ringing() -> None:
    pbx = Pbx()
    alice_alone = (ALICE[0], ALICE[1], ALICE[1])
    events = pbx.translator.catch_up(listed(alice_alone, 6, application="Dial", data="PJSIP/0030210@trunk",
                                            exten="0030210"), now=50.0)
    assert [(type(e), getattr(e, "remote_number", None)) for e in events] == [(wire.CallRinging, "0030210")]


def test_a_phone_rung_by_an_originate_when_the_bridge_starts_is_its_outgoing_call_once_it_dials() -> None:
    pbx = Pbx()
    alice_alone = (ALICE[0], ALICE[1], ALICE[1])
    assert pbx.translator.catch_up(listed(alice_alone, 5, application="", data=""), now=50.0) == []
    pbx("Newstate", *chan(alice_alone, 6, num="100"))
    pbx("Newchannel", *chan(TRUNK, 0, num="2109876543"))
    pbx("DialBegin", *chan(alice_alone, 6, num="100", exten="2109876543"), *chan(TRUNK, 0, prefix="Dest"),
        ("DialString", "2109876543@trunk"))
    [ringing] = pbx.events
    assert isinstance(ringing, wire.CallRinging)
    assert (ringing.direction, ringing.remote_number) == (wire.Direction.OUTBOUND, "2109876543")


def test_reconcile_ends_a_vanished_leg_when_the_pbx_was_last_alive_never_before_its_own_last_event() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    answer_alice(pbx)
    answered_at = pbx.events[-1].occurred_at
    [ended] = pbx.translator.reconcile([TRUNK[1]], now=answered_at + 60, gone_at=answered_at + 4)
    assert isinstance(ended, wire.CallEnded) and ended.reconciled
    assert ended.occurred_at == answered_at + 4
    ring_alice(pbx)
    rang_at = pbx.events[-1].occurred_at
    [ended] = pbx.translator.reconcile([], now=rang_at + 60, gone_at=rang_at - 30)
    assert ended.occurred_at == rang_at


def test_live_legs_lists_the_legs_not_ended() -> None:
    pbx = Pbx()
    assert pbx.translator.live_legs() == []
    ring_alice(pbx)
    assert pbx.translator.live_legs() == [(TRUNK[2], "100")]
    hangup(pbx, ALICE)
    assert pbx.translator.live_legs() == []


def test_legs_of_gives_the_agent_channel_its_state_and_its_bridge_peers() -> None:
    pbx = Pbx()
    assert pbx.translator.legs_of("100") == []
    ring_alice(pbx)
    [ringing] = pbx.translator.legs_of("100")
    assert (ringing.channel, ringing.state, ringing.direction, ringing.peers) == (
        ALICE[0], LegState.RINGING, "in", ())
    assert (ringing.call_id, ringing.leg_id, ringing.extension) == (TRUNK[2], ALICE[1], "100")
    answer_alice(pbx)
    [answered] = pbx.translator.legs_of("100")
    assert (answered.state, answered.peers) == (LegState.ANSWERED, (TRUNK[0],))
    assert pbx.translator.legs_of("101") == []
    hangup(pbx, ALICE)
    assert pbx.translator.legs_of("100") == []


def test_catch_up_announces_a_leg_answered_while_the_link_was_down_once() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    assert pbx.translator.catch_up(listed(ALICE, 5), now=50.0) == []  # still ringing: nothing new
    [answered] = pbx.translator.catch_up(listed(ALICE, 6, bridge="b-1"), now=60.0)
    assert isinstance(answered, wire.CallAnswered)
    assert (answered.event_id, answered.occurred_at) == (f"ami:{TRUNK[2]}:{ALICE[1]}:answered", 60.0)
    assert pbx.translator.catch_up(listed(ALICE, 6, bridge="b-1"), now=61.0) == []


def test_catch_up_announces_an_agent_phone_that_started_ringing_while_the_link_was_down() -> None:
    pbx = Pbx()
    assert pbx.translator.catch_up(listed(TRUNK, 4, num=CALLER), now=10.0) == []
    [ringing] = pbx.translator.catch_up(listed(BOB, 5, cnum=CALLER, num=CALLER), now=10.0)
    assert isinstance(ringing, wire.CallRinging)
    assert (ringing.extension, ringing.remote_number, ringing.direction) == ("101", CALLER, wire.Direction.INBOUND)
    # An agent channel that is the first of its own call and dials nothing is being rung by an Originate.
    assert pbx.translator.catch_up(listed(("PJSIP/102-0000000a", "9.1", "9.1"), 5, cnum="102"), now=10.0) == []


def test_catch_up_announces_an_outgoing_call_answered_while_the_link_was_down() -> None:
    pbx = Pbx()
    pbx("Newchannel", *chan(ALICE, 4, num="100", exten="2109876543"))
    pbx("DialBegin", *chan(ALICE, 4, num="100"), *chan(TRUNK, 0, prefix="Dest"), ("DialString", "2109876543@trunk"))
    assert [type(e) for e in pbx.events] == [wire.CallRinging]
    assert pbx.translator.catch_up(listed(ALICE, 6), now=5.0) == [], "Up alone says nothing of an outgoing call"
    [answered] = pbx.translator.catch_up(listed(ALICE, 6, bridge="b-2"), now=6.0)
    assert isinstance(answered, wire.CallAnswered) and answered.extension == "100"


def test_note_dnd_reports_a_followed_extension_once_per_change() -> None:
    pbx = Pbx(TranslatorConfig(extensions=frozenset({"100"})))
    [state] = pbx.translator.note_dnd("100", True, now=1.5)
    assert isinstance(state, wire.AgentState)
    assert (state.extension, state.dnd, state.occurred_at, state.event_id) == (
        "100", True, 1.5, "ami:agent:100:1.500000:dnd")
    assert pbx.translator.note_dnd("100", True, now=2.0) == []
    assert [e.dnd for e in pbx.translator.note_dnd("100", False, now=3.0)] == [False]  # type: ignore[union-attr]
    assert pbx.translator.note_dnd("101", True, now=3.0) == [], "101 is not followed"


def test_tracked_uniqueids_lists_the_channels_followed_now() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    assert pbx.translator.tracked_uniqueids == frozenset({TRUNK[1], ALICE[1]})
    assert pbx.translator.reconcile([TRUNK[1]], now=9.0)
    assert pbx.translator.tracked_uniqueids == frozenset({TRUNK[1]})
