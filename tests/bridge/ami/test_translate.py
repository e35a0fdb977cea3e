"""The translator's transition table, driven by hand-built AMI messages shaped like a production PBX (PJSIP phones):
call flows the captures do not cover, DND, reconciliation and bad input."""

from __future__ import annotations

import logging
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter import wire
from callcenter.bridge.connectors.ami.codec import Message
from callcenter.bridge.connectors.ami.translate import (
    TRANSITIONS,
    ChannelRule,
    LegState,
    Translator,
    TranslatorConfig,
    Trigger,
)

Headers = tuple[tuple[str, str], ...]

TRUNK = ("PJSIP/trunk-00000001", "1700000000.1", "1700000000.1")
ALICE = ("PJSIP/100-00000002", "1700000000.2", "1700000000.1")  # agent Alice, extension 100
BOB = ("PJSIP/101-00000003", "1700000000.3", "1700000000.1")  # agent Bob, extension 101
CALLER = "2101234567"


def chan(
    who: tuple[str, str, str],
    state: int,
    *,
    num: str = "",
    cid_name: str = "",
    cnum: str = "",
    cname: str = "",
    context: str = "from-internal",
    exten: str = "s",
    prefix: str = "",
) -> Headers:
    name, uniqueid, linkedid = who
    return (
        (f"{prefix}Channel", name),
        (f"{prefix}ChannelState", str(state)),
        (f"{prefix}ChannelStateDesc", "x"),
        (f"{prefix}CallerIDNum", num or "<unknown>"),
        (f"{prefix}CallerIDName", cid_name or "<unknown>"),
        (f"{prefix}ConnectedLineNum", cnum or "<unknown>"),
        (f"{prefix}ConnectedLineName", cname or "<unknown>"),
        (f"{prefix}Context", context),
        (f"{prefix}Exten", exten),
        (f"{prefix}Uniqueid", uniqueid),
        (f"{prefix}Linkedid", linkedid),
    )


ARRIVAL = 1_700_000_042.0  # the arrival time the hand-fed events get (a sane event time: wire.time_problem)


class Pbx:
    """Feeds hand-built events with increasing Timestamps and keeps every wire event they cause."""

    def __init__(self, config: TranslatorConfig | None = None, **options: object) -> None:
        self.translator = Translator(config or TranslatorConfig(**options))  # type: ignore[arg-type]
        self.clock = 1_700_000_000.0
        self.events: list[wire.Event] = []

    def __call__(self, name: str, *headers: tuple[str, str], stamp: bool = True) -> list[wire.Event]:
        self.clock += 1.0
        timestamp = (("Timestamp", f"{self.clock:.6f}"),) if stamp else ()
        out = self.translator.feed(Message("event", (("Event", name), *timestamp, *headers)), arrival_time=ARRIVAL)
        self.events += out
        return out

    def kinds(self, extension: str | None = None) -> list[str]:
        return [
            type(event).__name__
            for event in self.events
            if extension is None or getattr(event, "extension", None) == extension
        ]


def ring_alice(pbx: Pbx) -> None:
    pbx("Newchannel", *chan(TRUNK, 4, num=CALLER, cid_name="Πελάτης", context="from-pstn", exten="2105550000"))
    pbx("Newchannel", *chan(ALICE, 0))
    pbx("NewCallerid", *chan(ALICE, 0, num=CALLER, cid_name="Πελάτης", cnum=CALLER, cname="Πελάτης"))
    pbx(
        "DialBegin",
        *chan(TRUNK, 4, num=CALLER, cid_name="Πελάτης", context="from-pstn"),
        *chan(ALICE, 0, num=CALLER, cnum=CALLER, cname="Πελάτης", prefix="Dest"),
        ("DialString", "100"),
    )
    pbx("Newstate", *chan(ALICE, 5, num=CALLER, cnum=CALLER, cname="Πελάτης"))


def answer_alice(pbx: Pbx) -> None:
    pbx("Newstate", *chan(ALICE, 6, num=CALLER, cnum=CALLER))
    pbx("DialEnd", *chan(TRUNK, 4, num=CALLER), *chan(ALICE, 6, prefix="Dest"), ("DialStatus", "ANSWER"))
    pbx("BridgeEnter", *chan(ALICE, 6), ("BridgeUniqueid", "bridge-1"))
    pbx("BridgeEnter", *chan(TRUNK, 6, num=CALLER), ("BridgeUniqueid", "bridge-1"))


def hangup(pbx: Pbx, who: tuple[str, str, str], cause: int = 16, text: str = "Normal Clearing") -> list[wire.Event]:
    return pbx("Hangup", *chan(who, 6), ("Cause", str(cause)), ("Cause-txt", text))


def caller_hangs_up(pbx: Pbx) -> None:
    pbx("HangupRequest", *chan(TRUNK, 6), ("Cause", "16"))
    pbx("BridgeLeave", *chan(TRUNK, 6), ("BridgeUniqueid", "bridge-1"))
    hangup(pbx, TRUNK)
    pbx("BridgeLeave", *chan(ALICE, 6), ("BridgeUniqueid", "bridge-1"))
    pbx("SoftHangupRequest", *chan(ALICE, 6), ("Cause", "16"))
    hangup(pbx, ALICE)


# ---- calls on a production PBX ------------------------------------------------------------------------------------


def test_a_call_to_an_agent_rings_once_is_answered_and_ended_by_the_caller() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    answer_alice(pbx)
    caller_hangs_up(pbx)
    ringing, answered, ended = pbx.events
    assert isinstance(ringing, wire.CallRinging)
    assert (ringing.extension, ringing.direction, ringing.remote_number, ringing.remote_name) == (
        "100", wire.Direction.INBOUND, CALLER, "Πελάτης"
    )
    assert (ringing.call_id, ringing.leg_id) == (TRUNK[1], ALICE[1])
    assert ringing.occurred_at == 1_700_000_003.0  # the NewCallerid after Newchannel: the caller is known there
    assert isinstance(answered, wire.CallAnswered) and answered.occurred_at == 1_700_000_006.0
    assert isinstance(ended, wire.CallEnded)
    assert (ended.hung_up_by, ended.cause, ended.cause_text) == (wire.HungUpBy.REMOTE, 16, "Normal Clearing")
    assert pbx.translator.tracked_channels == 0 and pbx.translator.tracked_calls == 0


def test_an_agent_who_hangs_up_is_who_hung_up() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    answer_alice(pbx)
    pbx("HangupRequest", *chan(ALICE, 6), ("Cause", "16"))
    pbx("BridgeLeave", *chan(ALICE, 6), ("BridgeUniqueid", "bridge-1"))
    hangup(pbx, ALICE)
    pbx("BridgeLeave", *chan(TRUNK, 6), ("BridgeUniqueid", "bridge-1"))
    hangup(pbx, TRUNK)
    ended = pbx.events[-1]
    assert isinstance(ended, wire.CallEnded) and ended.hung_up_by is wire.HungUpBy.AGENT


def test_a_caller_who_gives_up_while_it_rings_leaves_an_unanswered_call_ended_by_the_remote_side() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    pbx("HangupRequest", *chan(TRUNK, 4), ("Cause", "16"))
    pbx("DialEnd", *chan(TRUNK, 4), *chan(ALICE, 5, prefix="Dest"), ("DialStatus", "CANCEL"))
    pbx("Hangup", *chan(ALICE, 5), ("Cause", "16"), ("Cause-txt", "Normal Clearing"))
    assert pbx.kinds() == ["CallRinging", "CallEnded"]
    ended = pbx.events[-1]
    assert isinstance(ended, wire.CallEnded)
    assert (ended.hung_up_by, ended.answered_elsewhere) == (wire.HungUpBy.REMOTE, False)


def test_an_agent_who_rejects_the_call_is_who_hung_up() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    pbx("HangupRequest", *chan(ALICE, 5), ("Cause", "21"))
    pbx("Hangup", *chan(ALICE, 5), ("Cause", "21"), ("Cause-txt", "Call Rejected"))
    pbx("DialEnd", *chan(TRUNK, 4), *chan(ALICE, 5, prefix="Dest"), ("DialStatus", "BUSY"))
    ended = pbx.events[-1]
    assert isinstance(ended, wire.CallEnded)
    assert (ended.hung_up_by, ended.cause, ended.cause_text) == (wire.HungUpBy.AGENT, 21, "Call Rejected")


def test_an_agent_calling_out_rings_when_it_dials_and_is_answered_by_the_dial() -> None:
    pbx = Pbx()
    out_trunk = ("PJSIP/trunk-00000004", "1700000000.4", "1700000000.2")
    alice = (ALICE[0], ALICE[1], ALICE[1])
    pbx("Newchannel", *chan(alice, 4, num="100", cid_name="Alice", exten="00302109876543"))
    pbx("Newstate", *chan(alice, 6, num="100"))  # a dialplan may answer the caller early: not the far end's answer
    pbx("Newchannel", *chan(out_trunk, 0, context="from-trunk"))
    pbx("DialBegin", *chan(alice, 6, num="100"), *chan(out_trunk, 0, prefix="Dest"), ("DialString", "trunk/0030"))
    assert pbx.kinds() == ["CallRinging"]
    pbx("DialEnd", *chan(alice, 6), *chan(out_trunk, 6, prefix="Dest"), ("DialStatus", "ANSWER"))
    hangup(pbx, alice)
    ringing, answered, ended = pbx.events
    assert isinstance(ringing, wire.CallRinging)
    assert (ringing.direction, ringing.remote_number, ringing.internal_direction) == (
        wire.Direction.OUTBOUND, "00302109876543", None
    )
    assert ringing.occurred_at == 1_700_000_004.0
    assert isinstance(answered, wire.CallAnswered) and answered.occurred_at == 1_700_000_005.0
    assert isinstance(ended, wire.CallEnded) and ended.hung_up_by is wire.HungUpBy.AGENT


def test_a_busy_far_end_gives_cause_17_and_remote() -> None:
    pbx = Pbx()
    out_trunk = ("PJSIP/trunk-00000004", "1700000000.4", "1700000000.2")
    alice = (ALICE[0], ALICE[1], ALICE[1])
    pbx("Newchannel", *chan(alice, 4, num="100", exten="2109876543"))
    pbx("DialBegin", *chan(alice, 4, num="100"), *chan(out_trunk, 0, prefix="Dest"))
    pbx("DialEnd", *chan(alice, 4), *chan(out_trunk, 0, prefix="Dest"), ("DialStatus", "BUSY"))
    pbx("Hangup", *chan(alice, 4), ("Cause", "0"), ("Cause-txt", "Unknown"))
    ended = pbx.events[-1]
    assert isinstance(ended, wire.CallEnded)
    assert (ended.cause, ended.cause_text, ended.hung_up_by) == (17, "User busy", wire.HungUpBy.REMOTE)


def test_a_click_to_dial_is_the_agents_outgoing_call_not_an_incoming_one() -> None:
    pbx = Pbx()
    pbx.translator.expect_originate(ALICE[1])
    alice = (ALICE[0], ALICE[1], ALICE[1])
    out_trunk = ("PJSIP/trunk-00000004", "1700000000.4", ALICE[1])
    pbx("Newchannel", *chan(alice, 0))
    pbx("NewCallerid", *chan(alice, 0, num="2109876543", cnum="2109876543", cname="CRM"))
    pbx("DialBegin", *chan(alice, 0, prefix="Dest"), ("DialString", "100"))  # an Originate: no caller channel
    pbx("Newstate", *chan(alice, 5))
    pbx("Newstate", *chan(alice, 6))
    pbx("DialEnd", *chan(alice, 6, prefix="Dest"), ("DialStatus", "ANSWER"))
    assert pbx.events == []
    pbx("DialBegin", *chan(alice, 6, exten="2109876543"), *chan(out_trunk, 0, prefix="Dest"))
    pbx("DialEnd", *chan(alice, 6), *chan(out_trunk, 6, prefix="Dest"), ("DialStatus", "ANSWER"))
    ringing = pbx.events[0]
    assert pbx.kinds() == ["CallRinging", "CallAnswered"]
    assert isinstance(ringing, wire.CallRinging)
    assert (ringing.direction, ringing.remote_number) == (wire.Direction.OUTBOUND, "2109876543")


def test_an_originate_seen_before_the_ringing_disarms_the_incoming_leg() -> None:
    pbx = Pbx(process_newchannel=False)
    alice = (ALICE[0], ALICE[1], ALICE[1])
    pbx("Newchannel", *chan(alice, 0))
    pbx("DialBegin", *chan(alice, 0, prefix="Dest"), ("DialString", "100"))
    pbx("Newstate", *chan(alice, 5, cnum="2109876543"))
    pbx("Newstate", *chan(alice, 6))
    assert pbx.events == []


def test_a_ring_group_answered_by_one_agent_ends_the_others_as_answered_elsewhere() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    pbx("Newchannel", *chan(BOB, 0))
    pbx("DialBegin", *chan(TRUNK, 4, num=CALLER), *chan(BOB, 0, prefix="Dest"))
    pbx("Newstate", *chan(BOB, 6))
    pbx("DialEnd", *chan(TRUNK, 4), *chan(ALICE, 5, prefix="Dest"), ("DialStatus", "CANCEL"))
    pbx("Hangup", *chan(ALICE, 5), ("Cause", "26"), ("Cause-txt", "Answered elsewhere"))
    alice_end = pbx.events[-1]
    assert isinstance(alice_end, wire.CallEnded)
    assert (alice_end.extension, alice_end.answered_elsewhere, alice_end.hung_up_by) == (
        "100", True, wire.HungUpBy.REMOTE
    )
    assert pbx.kinds("101") == ["CallRinging", "CallAnswered"]


def test_an_attended_transfer_hands_the_caller_to_the_target_with_the_original_number() -> None:
    pbx = Pbx(internal_digits=3)
    ring_alice(pbx)
    answer_alice(pbx)
    # Alice consults Bob on a second channel (a call of its own), then completes the transfer.
    alice2 = ("PJSIP/100-00000005", "1700000000.5", "1700000000.5")
    bob = (BOB[0], BOB[1], "1700000000.5")
    pbx("Newchannel", *chan(alice2, 4, num="100", exten="101"))
    pbx("Newchannel", *chan(bob, 0))
    pbx("DialBegin", *chan(alice2, 4, num="100", cid_name="Alice"), *chan(bob, 0, prefix="Dest"))
    pbx("NewConnectedLine", *chan(bob, 0, cnum="100", cname="Alice"))
    pbx("Newstate", *chan(bob, 6, cnum="100"))
    pbx("DialEnd", *chan(alice2, 4), *chan(bob, 6, prefix="Dest"), ("DialStatus", "ANSWER"))
    pbx("BridgeEnter", *chan(bob, 6), ("BridgeUniqueid", "bridge-2"))
    pbx("BridgeEnter", *chan(alice2, 6), ("BridgeUniqueid", "bridge-2"))
    pbx(
        "AttendedTransfer",
        ("Result", "Success"),
        *chan(ALICE, 6, prefix="OrigTransferer"),
        *chan(alice2, 6, prefix="SecondTransferer"),
        *chan(TRUNK, 6, num=CALLER, cid_name="Πελάτης", prefix="Transferee"),
        *chan(bob, 6, cnum="100", cname="Alice", prefix="TransferTarget"),
        ("DestType", "Bridge"),
    )
    pbx("BridgeLeave", *chan(alice2, 6), ("BridgeUniqueid", "bridge-2"))
    pbx("BridgeLeave", *chan(TRUNK, 6), ("BridgeUniqueid", "bridge-1"))
    pbx("BridgeEnter", *chan(TRUNK, 6), ("BridgeUniqueid", "bridge-2"))
    pbx("BridgeLeave", *chan(ALICE, 6), ("BridgeUniqueid", "bridge-1"))
    hangup(pbx, ALICE)
    hangup(pbx, alice2)
    pbx("HangupRequest", *chan(bob, 6), ("Cause", "16"))
    hangup(pbx, bob)
    assert pbx.kinds("100") == [
        "CallRinging", "CallAnswered", "CallRinging", "CallAnswered", "CallTransferred", "CallEnded", "CallEnded"
    ]
    transferred = [e for e in pbx.events if isinstance(e, wire.CallTransferred)]
    assert [(e.extension, e.target, e.kind, e.call_id) for e in transferred] == [
        ("100", "101", wire.TransferKind.ATTENDED, TRUNK[2])
    ]
    bob_events = [e for e in pbx.events if getattr(e, "extension", None) == "101"]
    assert [type(e).__name__ for e in bob_events] == [
        "CallRinging", "CallAnswered", "CallEnded", "CallRinging", "CallAnswered", "CallEnded"
    ]
    consult, handed = bob_events[0], bob_events[3]
    assert isinstance(consult, wire.CallRinging) and isinstance(handed, wire.CallRinging)
    assert (consult.call_id, consult.direction, consult.remote_number) == ("1700000000.5", "internal", "100")
    assert (handed.call_id, handed.direction, handed.remote_number, handed.remote_name, handed.transferred_from) == (
        TRUNK[2], wire.Direction.INBOUND, CALLER, "Πελάτης", "100"
    )
    last = bob_events[-1]
    assert isinstance(last, wire.CallEnded) and last.hung_up_by is wire.HungUpBy.AGENT
    ids = [e.event_id for e in pbx.events]
    assert len(ids) == len(set(ids))


def test_a_channel_whose_linkedid_changes_keeps_its_call_id() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    moved = (ALICE[0], ALICE[1], "1700000000.9")
    pbx("Newstate", *chan(moved, 6))
    hangup(pbx, moved)
    assert {e.call_id for e in pbx.events if isinstance(e, wire.CallEnded)} == {TRUNK[1]}
    assert pbx.translator.tracked_calls == 1  # only the trunk is left


# ---- DND (FreePBX) ----------------------------------------------------------------------------------------------


def test_dnd_from_the_custom_device_state_is_reported_when_it_changes() -> None:
    pbx = Pbx()
    on = pbx("DeviceStateChange", ("Device", "Custom:DND100"), ("State", "BUSY"))
    again = pbx("DeviceStateChange", ("Device", "Custom:DND100"), ("State", "BUSY"))
    off = pbx("DeviceStateChange", ("Device", "Custom:DND100"), ("State", "NOT_INUSE"))
    assert again == []
    assert [(e.extension, e.dnd) for e in on + off] == [("100", True), ("100", False)]  # type: ignore[union-attr]
    assert on[0].event_id != off[0].event_id


def test_a_combined_hint_never_says_dnd_by_itself_it_asks_the_astdb() -> None:
    # FreePBX's hint PJSIP/100&Custom:DND100 goes Busy while 100 talks (device_state_busy_at): not DND.
    pbx = Pbx()
    hint = ("Hint", "PJSIP/100&Custom:DND100")
    in_use = pbx("ExtensionStatus", ("Exten", "100"), hint, ("Status", "1"), ("StatusText", "InUse"))
    busy = pbx("ExtensionStatus", ("Exten", "100"), hint, ("Status", "2"), ("StatusText", "Busy"))
    assert in_use == [] and busy == []
    assert pbx.translator.take_dnd_checks() == ["100"]
    assert pbx.translator.take_dnd_checks() == []  # each check is handed out once
    idle = pbx("ExtensionStatus", ("Exten", "100"), hint, ("Status", "0"), ("StatusText", "Idle"))
    assert idle == [] and pbx.translator.take_dnd_checks() == ["100"]


def test_a_combined_hint_of_an_extension_not_followed_asks_nothing() -> None:
    pbx = Pbx(extensions=frozenset({"101"}))
    pbx("ExtensionStatus", ("Exten", "100"), ("Hint", "PJSIP/100&Custom:DND100"), ("Status", "2"))
    assert pbx.translator.take_dnd_checks() == []


def test_dnd_from_a_hint_of_the_dnd_device_alone() -> None:
    pbx = Pbx()
    hint = ("Hint", "Custom:DND100")
    busy = pbx("ExtensionStatus", ("Exten", "*76100"), hint, ("Status", "2"), ("StatusText", "Busy"))
    idle = pbx("ExtensionStatus", ("Exten", "*76100"), hint, ("Status", "0"), ("StatusText", "Idle"))
    assert [(e.dnd, e.device_state) for e in busy + idle] == [(True, "Busy"), (False, "Idle")]  # type: ignore[union-attr]


def test_dnd_from_the_astdb_and_only_for_followed_extensions() -> None:
    pbx = Pbx(extensions=frozenset({"100"}))
    on = pbx("DBGetResponse", ("Family", "DND"), ("Key", "100"), ("Val", "YES"))
    other = pbx("DBGetResponse", ("Family", "DND"), ("Key", "101"), ("Val", "YES"))
    unrelated = pbx("DBGetResponse", ("Family", "CW"), ("Key", "100"), ("Val", "ENABLED"))
    assert [(e.extension, e.dnd) for e in on] == [("100", True)]  # type: ignore[union-attr]
    assert other == [] and unrelated == []


# ---- reconciliation -------------------------------------------------------------------------------------------------


def test_reconcile_ends_announced_legs_whose_channels_are_gone() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    answer_alice(pbx)
    assert pbx.translator.reconcile([ALICE[1], TRUNK[1]], now=5.0) == []
    ended = pbx.translator.reconcile([TRUNK[1]], now=1_700_000_100.0)
    assert len(ended) == 1 and isinstance(ended[0], wire.CallEnded)
    assert (ended[0].reconciled, ended[0].hung_up_by, ended[0].occurred_at) == (
        True, wire.HungUpBy.UNKNOWN, 1_700_000_100.0
    )
    assert ended[0].event_id == f"ami:{TRUNK[1]}:{ALICE[1]}:ended"
    assert pbx.translator.tracked_channels == 1
    assert pbx.translator.reconcile([], now=1.0) == []
    assert pbx.translator.tracked_channels == 0


# ---- configuration ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"channel_rules": (ChannelRule("PJSIP/(\\d+"),)}, "not a valid regular expression"),
        ({"channel_rules": (ChannelRule("PJSIP/(\\d+)-"),)}, "no group named 'ext'"),
        ({"channel_rules": ()}, "no agent channel rules"),
        ({"internal_digits": 9}, "internal digits 9 is out of range"),
        ({"max_channels": 1}, "too small"),
        ({"extensions": frozenset({""})}, "empty extension"),
    ],
)
def test_a_bad_configuration_says_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        TranslatorConfig(**options)  # type: ignore[arg-type]


def test_an_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="use one of: production, lab"):
        TranslatorConfig.for_profile("tapi")


def test_the_production_rule_recognises_pjsip_sip_and_iax2_phones_but_not_trunks_or_local_channels() -> None:
    regex = TranslatorConfig().channel_rules[0].compile()
    for name, ext in [("PJSIP/100-0000002a", "100"), ("SIP/2001-00000001", "2001"), ("IAX2/105-1234", "105")]:
        match = regex.match(name)
        assert match is not None and match.group("ext") == ext
    for name in ("PJSIP/trunk-0000002b", "Local/100@from-internal-00000001;1", "DAHDI/1-1", "PJSIP/100"):
        assert regex.match(name) is None


# ---- bad input ------------------------------------------------------------------------------------------------------


def test_a_malformed_message_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    translator = Translator()
    with caplog.at_level(logging.WARNING, logger="callcenter.bridge.ami"):
        out = translator.feed(Message("malformed", (), error="line without a colon", raw_size=12), 1.0)
    assert out == []
    assert "malformed AMI message skipped (line without a colon" in caplog.text


def test_unknown_events_responses_and_the_banner_cause_nothing(caplog: pytest.LogCaptureFixture) -> None:
    pbx = Pbx()
    with caplog.at_level(logging.DEBUG, logger="callcenter.bridge.ami"):
        assert pbx("FrobnicatorStarted", ("Foo", "bar")) == []
        assert pbx("FrobnicatorStarted", ("Foo", "bar")) == []
    assert caplog.text.count("'FrobnicatorStarted' is not used for calls") == 1  # logged once per name
    assert pbx.translator.feed(Message("response", (("Response", "Success"),)), 1.0) == []
    assert pbx.translator.feed(Message("banner", (("Banner", "Asterisk Call Manager/9.0.0"),)), 1.0) == []


def test_a_hangup_for_an_unknown_channel_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    pbx = Pbx()
    with caplog.at_level(logging.INFO, logger="callcenter.bridge.ami"):
        assert hangup(pbx, TRUNK) == []
    assert "Hangup for unknown channel PJSIP/trunk-00000001 (1700000000.1) ignored" in caplog.text
    assert pbx.translator.tracked_channels == 0
    # An agent's channel first seen at its hang-up was in a call when the bridge logged in: announced as it ended
    # (test_translate_join).
    assert [type(e) for e in hangup(pbx, ALICE)] == [wire.CallRinging, wire.CallAnswered, wire.CallEnded]


def test_events_missing_their_headers_are_skipped() -> None:
    pbx = Pbx()
    for name in ("Newchannel", "Newstate", "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave", "Hangup",
                 "HangupRequest", "BlindTransfer", "AttendedTransfer", "DeviceStateChange", "ExtensionStatus",
                 "DBGetResponse", "Rename", "LocalOptimizationBegin", "BridgeDestroy", "NewCallerid"):
        assert pbx(name) == []
        assert pbx(name, ("Result", "Success"), ("Uniqueid", "1.1")) == []
    assert pbx.translator.tracked_channels == 0


def test_out_of_order_events_after_a_hangup_start_nothing() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    pbx("Hangup", *chan(ALICE, 5), ("Cause", "19"))
    late = [*pbx("Newstate", *chan(ALICE, 6)), *pbx("DialEnd", *chan(TRUNK, 4), *chan(ALICE, 6, prefix="Dest"),
                                                      ("DialStatus", "ANSWER")), *hangup(pbx, ALICE)]
    assert late == []
    assert pbx.kinds() == ["CallRinging", "CallEnded"]


def test_the_same_hangup_twice_ends_the_leg_once() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    hangup(pbx, ALICE)
    hangup(pbx, ALICE)
    assert pbx.kinds() == ["CallRinging", "CallEnded"]


@pytest.mark.parametrize(("stamp", "why"), [
    ("soon", "not a number"),
    ("abc", "not a number"),
    ("1e300", "ahead of this clock"),
    ("-5", "before 2000-01-01"),
    ("5", "before 2000-01-01"),
    ("nan", "not a finite number"),
    ("inf", "not a finite number"),
    ("1" + "0" * 400, "not a finite number"),
    (f"{time.time() + 3 * 86_400:.6f}", "ahead of this clock"),
])
def test_a_bad_timestamp_falls_back_to_the_arrival_time(caplog: pytest.LogCaptureFixture, stamp: str, why: str) -> None:
    translator = Translator()
    with caplog.at_level(logging.WARNING, logger="callcenter.bridge.ami"):
        out = translator.feed(
            Message("event", (("Event", "DeviceStateChange"), ("Timestamp", stamp), ("Device", "Custom:DND100"),
                              ("State", "BUSY"))),
            arrival_time=ARRIVAL + 0.5,
        )
    assert [e.occurred_at for e in out] == [ARRIVAL + 0.5]  # the event is not lost
    assert f"invalid Timestamp {stamp[:40]!r} (" in caplog.text and why in caplog.text
    assert "using the arrival time" in caplog.text
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
    assert not wire.time_problem(out[0].occurred_at, time.time())


def test_an_absurd_arrival_time_gives_way_to_the_clock() -> None:
    translator = Translator(clock=lambda: ARRIVAL + 7)
    out = translator.feed(
        Message("event", (("Event", "DeviceStateChange"), ("Device", "Custom:DND100"), ("State", "BUSY"))),
        arrival_time=float("nan"),
    )
    assert [e.occurred_at for e in out] == [ARRIVAL + 7]


def test_without_timestamps_the_arrival_time_is_the_time() -> None:
    pbx = Pbx()
    pbx("Newchannel", *chan(ALICE, 0, cnum=CALLER), stamp=False)
    assert [e.occurred_at for e in pbx.events] == [ARRIVAL]


def test_garbage_values_and_overlong_ids_raise_nothing() -> None:
    pbx = Pbx()
    pbx("Newchannel", ("Channel", "PJSIP/100-1"), ("Uniqueid", "x" * 5000), ("ChannelState", "abc"))
    pbx("Newchannel", ("Channel", "PJSIP/100-1"), ("Uniqueid", "9.7"), ("ChannelState", "-7"))
    pbx("Newchannel", ("Channel", "PJSIP/100-1"), ("Uniqueid", "9.9"), ("Linkedid", "y" * 5000),
        ("ChannelState", "0"), ("ConnectedLineNum", "1" * 500), ("ConnectedLineName", "Ω" * 5000))
    pbx("Hangup", ("Channel", "PJSIP/100-1"), ("Uniqueid", "9.9"), ("Cause", "NaN"), ("Cause-txt", "?" * 9000))
    pbx("Newchannel", ("Channel", "PJSIP/100-1"), ("Uniqueid", "9.8"), ("Timestamp", "inf"), stamp=False)
    assert pbx.kinds() == ["CallRinging", "CallEnded"]
    for event in pbx.events:
        assert wire.decode_event(wire.encode(event)) == event  # clipped to the wire format's bounds
    ringing, ended = pbx.events
    assert isinstance(ringing, wire.CallRinging) and ringing.call_id == "9.9"  # an overlong Linkedid is no id
    assert isinstance(ended, wire.CallEnded) and ended.cause == 0
    assert pbx.translator.tracked_channels == 2


def test_tracked_channels_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    pbx = Pbx(max_channels=10)
    with caplog.at_level(logging.WARNING, logger="callcenter.bridge.ami"):
        for n in range(50):
            pbx("Newchannel", *chan((f"PJSIP/trunk-{n:08x}", f"1.{n}", f"1.{n}"), 4))
    assert pbx.translator.tracked_channels == 10
    assert pbx.translator.tracked_calls == 10
    assert "tracking 10 channels, the limit: forgetting the oldest" in caplog.text


# ---- the table itself, and random input ------------------------------------------------------------------------------


def test_the_table_announces_before_it_ends_and_never_leaves_ended() -> None:
    for (state, trigger), (after, emits) in TRANSITIONS.items():
        assert state is not LegState.ENDED
        if "answered" in emits or "ended" in emits:
            assert state in (LegState.RINGING, LegState.ANSWERED, LegState.TRANSFERRED) or emits[0] == "ringing"
        if trigger is Trigger.END:
            assert after is LegState.ENDED


_NAMES = ["PJSIP/100-00000001", "PJSIP/101-00000002", "PJSIP/trunk-00000003", "Local/100@x-00000004;1", "Junk"]
_EVENTS = ["Newchannel", "Newstate", "NewCallerid", "DialBegin", "DialEnd", "BridgeEnter", "BridgeLeave",
           "HangupRequest", "Hangup", "BlindTransfer", "AttendedTransfer", "BridgeDestroy", "ExtensionStatus",
           "DeviceStateChange", "Rename", "LocalOptimizationBegin"]
_PREFIXES = ["", "Dest", "Transferer", "Transferee", "OrigTransferer", "SecondTransferer", "TransferTarget",
             "LocalOne", "LocalTwo"]

_header = st.one_of(
    st.tuples(st.sampled_from(_PREFIXES), st.sampled_from(["Uniqueid", "Linkedid"]), st.sampled_from(["1", "2", "3"])),
    st.tuples(st.sampled_from(_PREFIXES), st.just("Channel"), st.sampled_from(_NAMES)),
    st.tuples(st.sampled_from(_PREFIXES), st.just("ChannelState"), st.sampled_from(["0", "4", "5", "6", "x", ""])),
    st.tuples(st.sampled_from(_PREFIXES), st.sampled_from(["CallerIDNum", "ConnectedLineNum", "Exten"]),
              st.sampled_from(["100", "101", "2101234567", "<unknown>", "s", ""])),
    st.tuples(st.just(""), st.sampled_from(["DialStatus"]), st.sampled_from(["ANSWER", "CANCEL", "NOANSWER", "BUSY"])),
    st.tuples(st.just(""), st.sampled_from(["BridgeUniqueid"]), st.sampled_from(["b1", "b2"])),
    st.tuples(st.just(""), st.sampled_from(["Cause", "Status", "Timestamp"]), st.sampled_from(["0", "2", "16", "26"])),
    st.tuples(st.just(""), st.sampled_from(["Result", "Device", "Hint", "State", "Extension", "Newname"]),
              st.sampled_from(["Success", "Custom:DND100", "BUSY", "103", "PJSIP/100-00000009"])),
)
_message = st.builds(
    lambda name, headers: Message("event", (("Event", name), *((p + k, v) for p, k, v in headers))),
    st.sampled_from(_EVENTS),
    st.lists(_header, max_size=14),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_message, max_size=40), st.booleans(), st.booleans())
def test_random_event_sequences_never_raise_and_keep_each_leg_in_order(
    messages: list[Message], newchannel: bool, newstate: bool
) -> None:
    translator = Translator(TranslatorConfig(process_newchannel=newchannel, process_newstate=newstate, max_channels=10))
    per_leg: dict[str, list[str]] = {}
    for message in messages:
        for event in translator.feed(message, 7.0):
            assert wire.decode_event(wire.encode(event)) == event
            if isinstance(event, wire.AgentState):
                continue
            per_leg.setdefault(f"{event.call_id}/{event.leg_id}", []).append(type(event).__name__)
        assert translator.tracked_channels <= 10
    grammar = re.compile(r"^(CallRinging (CallAnswered (CallTransferred )*)?(CallEnded )?)+$")
    for kinds in per_leg.values():
        assert grammar.match("".join(kind + " " for kind in kinds)), kinds


def consult_bob_inside_the_call(pbx: Pbx, *, through_local: bool) -> None:
    """Alice, talking to the caller, consults Bob within the same call: an AMI Atxfer dials from her own channel;
    Asterisk's attended-transfer feature dials from a Local channel that carries her caller id. Bob's phone is told
    who calls (NewConnectedLine) before the dial is reported, as Asterisk does."""
    ring_alice(pbx)
    answer_alice(pbx)
    pbx("BridgeLeave", *chan(ALICE, 6), ("BridgeUniqueid", "bridge-1"))
    dialer = ALICE
    if through_local:
        dialer = ("Local/101@from-internal-00000007;2", "1700000000.7", TRUNK[2])
        pbx("Newchannel", *chan(dialer, 4, num="100", cid_name="Alice", exten="101"))
    pbx("Newchannel", *chan(BOB, 0))
    pbx("NewConnectedLine", *chan(BOB, 0, num="101", cnum="100", cname="Alice"))
    pbx("DialBegin", *chan(dialer, 6 if dialer is ALICE else 4, num="100"), *chan(BOB, 0, prefix="Dest"))
    pbx("Newstate", *chan(BOB, 5, cnum="100", cname="Alice"))
    pbx("Newstate", *chan(BOB, 6, cnum="100", cname="Alice"))


@pytest.mark.parametrize("through_local", [False, True])
def test_a_consultation_inside_the_call_rings_as_the_call_being_handed_over(through_local: bool) -> None:
    pbx = Pbx()
    consult_bob_inside_the_call(pbx, through_local=through_local)
    bob = [e for e in pbx.events if getattr(e, "extension", None) == "101"]
    assert [type(e).__name__ for e in bob] == ["CallRinging", "CallAnswered"]
    ring = bob[0]
    assert isinstance(ring, wire.CallRinging)
    assert (ring.call_id, ring.direction, ring.remote_number, ring.remote_name, ring.transferred_from) == (
        TRUNK[2], wire.Direction.INBOUND, CALLER, "Πελάτης", "100"
    )


def test_a_blind_transferred_agent_dialling_on_is_no_consultation() -> None:
    # Alice calls Bob; Bob blind-transfers Alice to extension 102: 102 rings from Alice, transferred by Bob.
    pbx = Pbx(internal_digits=3)
    alice = (ALICE[0], ALICE[1], ALICE[1])
    bob = (BOB[0], BOB[1], ALICE[1])
    carol = ("PJSIP/102-00000009", "1700000000.9", ALICE[1])
    pbx("Newchannel", *chan(alice, 4, num="100", cid_name="Alice", exten="101"))
    pbx("Newchannel", *chan(bob, 0))
    pbx("DialBegin", *chan(alice, 4, num="100", cid_name="Alice"), *chan(bob, 0, prefix="Dest"))
    pbx("Newstate", *chan(bob, 6, cnum="100"))
    pbx("DialEnd", *chan(alice, 6), *chan(bob, 6, prefix="Dest"), ("DialStatus", "ANSWER"))
    pbx("BridgeEnter", *chan(bob, 6, cnum="100"), ("BridgeUniqueid", "b"))
    pbx("BridgeEnter", *chan(alice, 6, num="100", cnum="101"), ("BridgeUniqueid", "b"))
    pbx("BlindTransfer", ("Result", "Success"), *chan(bob, 6, prefix="Transferer"),
        *chan(alice, 6, num="100", cid_name="Alice", prefix="Transferee"), ("Extension", "102"))
    pbx("BridgeLeave", *chan(bob, 6), ("BridgeUniqueid", "b"))
    hangup(pbx, bob)
    pbx("BridgeLeave", *chan(alice, 6), ("BridgeUniqueid", "b"))
    pbx("Newchannel", *chan(carol, 0))
    pbx("DialBegin", *chan(alice, 6, num="100", cid_name="Alice"), *chan(carol, 0, prefix="Dest"))
    carol_ringing = [e for e in pbx.events if isinstance(e, wire.CallRinging) and e.extension == "102"]
    assert len(carol_ringing) == 1
    assert (carol_ringing[0].remote_number, carol_ringing[0].transferred_from, carol_ringing[0].direction) == (
        "100", "101", wire.Direction.INTERNAL
    )
    assert [type(e).__name__ for e in pbx.events if getattr(e, "extension", None) == "101"] == [
        "CallRinging", "CallAnswered", "CallTransferred", "CallEnded"
    ]


def test_answered_elsewhere_is_never_the_agents_hang_up_even_when_it_reaches_the_phone_first() -> None:
    pbx = Pbx()
    ring_alice(pbx)
    pbx("HangupRequest", *chan(ALICE, 5), ("Cause", "26"))
    pbx("Hangup", *chan(ALICE, 5), ("Cause", "26"), ("Cause-txt", "Answered elsewhere"))
    ended = pbx.events[-1]
    assert isinstance(ended, wire.CallEnded)
    assert (ended.hung_up_by, ended.answered_elsewhere) == (wire.HungUpBy.REMOTE, True)


def test_a_channel_renamed_to_an_agents_phone_is_followed_from_then_on() -> None:
    pbx = Pbx()
    temporary = ("Surrogate/abc", ALICE[1], TRUNK[2])
    pbx("Newchannel", *chan(temporary, 0))
    pbx("Newstate", *chan(temporary, 5, cnum=CALLER))  # no agent's channel: skipped
    assert pbx.events == []
    pbx("Rename", ("Channel", "Surrogate/abc"), ("Newname", ALICE[0]), ("Uniqueid", ALICE[1]))
    pbx("NewConnectedLine", *chan(ALICE, 5, cnum=CALLER))
    pbx("Newstate", *chan(ALICE, 6, cnum=CALLER))
    assert pbx.kinds() == ["CallRinging", "CallAnswered"]


def test_a_consultation_dialled_through_a_local_channel_with_the_agents_caller_id_is_not_a_second_leg() -> None:
    # The Local-channel lab: Atxfer by 100 makes Local/101@from-internal-...;2 carrying 100's caller id, which the
    # lab profile would take for an outgoing call of 100's. 100 already has a live leg in this call: it is 100
    # consulting, shown on 101's leg as the call being handed over, and 100's leg stays what it was.
    pbx = Pbx(TranslatorConfig.for_profile("lab"))
    pstn = ("Local/100@from-pstn-00000001;2", "1700000001.2", "1700000001.1")
    alice = ("Local/100@phones-00000002;1", "1700000001.3", "1700000001.1")
    consult = ("Local/101@from-internal-00000003;2", "1700000001.6", "1700000001.1")
    bob = ("Local/101@phones-00000004;1", "1700000001.7", "1700000001.1")
    pbx("Newchannel", *chan(pstn, 4, num=CALLER, context="from-pstn", exten="100"))
    pbx("Newchannel", *chan(alice, 0, context="phones", exten="100"))
    pbx("NewConnectedLine", *chan(alice, 0, num="100", cnum=CALLER, context="phones", exten="100"))
    pbx("DialBegin", *chan(pstn, 4, num=CALLER), *chan(alice, 0, num="100", cnum=CALLER, prefix="Dest"),
        ("DialString", "100@phones"))
    pbx("Newstate", *chan(alice, 6, num="100", cnum=CALLER, context="phones", exten="100"))
    pbx("DialEnd", *chan(pstn, 4, num=CALLER), *chan(alice, 6, prefix="Dest"), ("DialStatus", "ANSWER"))
    pbx("BridgeEnter", *chan(alice, 6, num="100", cnum=CALLER, context="phones", exten=""), ("BridgeUniqueid", "b1"))
    pbx("BridgeEnter", *chan(pstn, 6, num=CALLER, context="from-pstn", exten="100"), ("BridgeUniqueid", "b1"))
    pbx("Newchannel", *chan(consult, 4, num="100", context="from-internal", exten="101"))
    pbx("Newchannel", *chan(bob, 0, context="phones", exten="101"))
    pbx("DialBegin", *chan(consult, 4, num="100", exten="101"), *chan(bob, 0, num="101", cnum="100", prefix="Dest"),
        ("DialString", "101@phones"))
    alice_events = [e for e in pbx.events if getattr(e, "extension", "") == "100"]
    assert [type(e) for e in alice_events] == [wire.CallRinging, wire.CallAnswered]
    assert alice_events[0].direction is wire.Direction.INBOUND  # type: ignore[union-attr]
    [bob_ringing] = [e for e in pbx.events if getattr(e, "extension", "") == "101"]
    assert isinstance(bob_ringing, wire.CallRinging)
    assert (bob_ringing.remote_number, bob_ringing.transferred_from) == (CALLER, "100")


def test_with_an_absurd_clock_of_its_own_the_pbx_s_times_are_kept() -> None:
    translator = Translator(clock=lambda: 1_000.0)  # this machine's clock says 1970
    out = translator.feed(
        Message("event", (("Event", "DeviceStateChange"), ("Timestamp", f"{ARRIVAL:.6f}"), ("Device", "Custom:DND100"),
                          ("State", "BUSY"))),
        arrival_time=1_000.0,
    )
    assert [e.occurred_at for e in out] == [ARRIVAL]
