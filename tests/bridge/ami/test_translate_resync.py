"""The translator's facilities for the live connector: the legs a command acts on (``legs_of``), catching up with
``CoreShowChannels`` after a reconnect (``catch_up``), DND read with ``DBGet`` (``note_dnd``), ``tracked_uniqueids``."""

from __future__ import annotations

from callcenter import wire
from callcenter.bridge.connectors.ami.codec import Message
from callcenter.bridge.connectors.ami.translate import LegState, TranslatorConfig
from tests.bridge.ami.test_translate import ALICE, BOB, CALLER, TRUNK, Pbx, answer_alice, chan, hangup, ring_alice


def listed(who: tuple[str, str, str], state: int, *, bridge: str = "", cnum: str = "", num: str = "") -> Message:
    """One item of a CoreShowChannels answer."""
    return Message("event", (("Event", "CoreShowChannel"), ("ActionID", "cc-7"),
                             *chan(who, state, cnum=cnum, num=num), ("BridgeId", bridge),
                             ("Application", "AppDial"), ("Duration", "00:00:03")))


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
    # An agent channel first seen already talking cannot be told incoming from outgoing: it is not announced.
    assert pbx.translator.catch_up(listed(("PJSIP/102-0000000a", "9.1", "9.1"), 6, cnum=CALLER), now=10.0) == []


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
