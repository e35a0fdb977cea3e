"""Captures from the real Asterisk 22 labs (tests/fixtures/ami/live/, see CAPTURES.md there) of the flows that once came
out wrong, through the live codec + translator: the facts each scenario describes, checked by hand against the
scenario and the capture's Timestamps (talk times come from the SIPp phones' and the lab dialplan's settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter import wire
from callcenter.bridge.connectors.ami.pipeline import Pipeline
from callcenter.bridge.connectors.ami.translate import TranslatorConfig

LIVE = Path(__file__).resolve().parents[2] / "fixtures" / "ami" / "live"
OUTSIDE = "2109876543"
CALLER = "2101234567"


def translate(name: str, profile: str, *, originated: tuple[str, str] | None = None, chunk: int = 0
              ) -> list[wire.Event]:
    pipeline = Pipeline(TranslatorConfig.for_profile(profile, internal_digits=3))
    if originated is not None:
        pipeline.translator.expect_originate(*originated)
    data = (LIVE / f"{name}.ami").read_bytes()
    step = chunk or len(data)
    events: list[wire.Event] = []
    for start in range(0, len(data), step):
        events += pipeline.receive(data[start:start + step])
    return events + pipeline.receive(b"")


def facts(events: list[wire.Event], ext: str) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for event in events:
        if getattr(event, "extension", None) != ext:
            continue
        if isinstance(event, wire.CallRinging):
            out.append(("ringing", event.direction.value, event.remote_number, event.transferred_from))
        elif isinstance(event, wire.CallAnswered):
            out.append(("answered",))
        elif isinstance(event, wire.CallTransferred):
            out.append(("transferred", event.target, event.kind.value))
        elif isinstance(event, wire.CallEnded):
            out.append(("ended", event.hung_up_by.value, event.answered_elsewhere))
        elif isinstance(event, wire.AgentState):
            out.append(("agent", event.dnd))
    return out


def talk(events: list[wire.Event], ext: str) -> float:
    [answered] = [e for e in events if isinstance(e, wire.CallAnswered) and e.extension == ext]
    [ended] = [e for e in events if isinstance(e, wire.CallEnded) and e.extension == ext]
    return ended.occurred_at - answered.occurred_at


@pytest.mark.parametrize("chunk", [0, 7])
def test_the_crms_call_button_on_local_channel_phones_is_an_outgoing_call_to_the_number_dialled(chunk: int) -> None:
    # Originate Channel=Local/100@phones Exten=2109876543 ChannelId=crm-abc123: the channel starts at exten 100 in
    # context phones (the phone itself), answers after 1 s, then dials 2109876543@outside, which talks 4 s.
    events = translate("click_to_dial_local", "lab", originated=("crm-abc123", OUTSIDE), chunk=chunk)
    assert facts(events, "100") == [("ringing", "out", OUTSIDE, ""), ("answered",), ("ended", "remote", False)]
    assert 4.0 <= talk(events, "100") < 5.0


@pytest.mark.parametrize(("name", "profile", "hung_up_by"), [
    ("click_to_call_by_portal_pjsip", "production", "agent"),  # SIPp phone 100: answer after 1 s, talk 5 s
    ("click_to_call_by_portal_local", "lab", "agent"),  # lab/100: delay 1, talk 5; lab/out: delay 1, talk 30
    ("click_to_dial_local", "lab", "remote"),  # the same capture as above, as if another client had placed it
])
def test_a_click_to_call_placed_by_another_ami_client_is_one_outgoing_call_with_its_talk_time(
        name: str, profile: str, hung_up_by: str) -> None:
    events = translate(name, profile)
    assert facts(events, "100") == [("ringing", "out", OUTSIDE, ""), ("answered",), ("ended", hung_up_by, False)]
    assert talk(events, "100") > 3.0
    assert not [e for e in events if isinstance(e, wire.CallRinging) and e.direction != wire.Direction.OUTBOUND]


def test_an_attended_transfer_leaves_the_transferring_agent_an_answered_call_up_to_the_transfer() -> None:
    # PSTN -> 100 (answers after 1 s); AMI Atxfer of 100's channel to 101 at about +5 s; 101 answers after 1 s and
    # talks 10 s; 100's phone hangs up 8 s after answering, which completes the transfer.
    events = translate("attended_transfer_pjsip", "production")
    assert [f for f in facts(events, "100") if f[0] != "agent"] == [
        ("ringing", "in", CALLER, ""), ("answered",), ("transferred", "101", "attended"), ("ended", "agent", False)]
    assert 7.5 <= talk(events, "100") <= 8.5
    assert [f for f in facts(events, "101") if f[0] != "agent"] == [
        ("ringing", "in", CALLER, "100"), ("answered",), ("ended", "agent", False)]
    assert 9.5 <= talk(events, "101") <= 10.5


def test_a_phone_in_a_call_is_never_reported_busy_by_its_combined_hint() -> None:
    # The PJSIP lab's hints are PJSIP/10x&Custom:DND10x; they go Busy while the phone talks. Nobody set DND.
    for name in ("attended_transfer_pjsip", "click_to_call_by_portal_pjsip", "queue_pjsip", "redirect"):
        events = translate(name, "production")
        assert not [e for e in events if isinstance(e, wire.AgentState) and e.dnd], name


def test_a_queue_that_rings_every_agent_gives_one_answered_leg_and_two_answered_elsewhere() -> None:
    # PSTN -> queue 700 (ringall 100-102); 101 answers after 2 s and talks 5 s; 100 and 102 never answer.
    events = translate("queue_pjsip", "production")
    for ext in ("100", "102"):
        assert facts(events, ext) == [("ringing", "in", CALLER, ""), ("ended", "remote", True)]
    assert facts(events, "101") == [("ringing", "in", CALLER, ""), ("answered",), ("ended", "agent", False)]
    assert 4.5 <= talk(events, "101") <= 5.5


def test_a_redirect_of_the_caller_is_a_transfer_from_the_agent_it_talked_to() -> None:
    # PSTN -> 100 (answers after 1 s); 2 s later AMI Redirect of the trunk channel to 101@from-internal; 101 answers
    # after 1 s and hangs up 3 s later.
    events = translate("redirect", "production")
    caller = "00302101234567"
    assert facts(events, "100") == [
        ("ringing", "in", caller, ""), ("answered",), ("transferred", "101", "blind"), ("ended", "agent", False)]
    assert facts(events, "101") == [("ringing", "in", caller, "100"), ("answered",), ("ended", "agent", False)]
