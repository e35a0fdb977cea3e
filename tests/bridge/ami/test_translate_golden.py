"""Golden transcripts: each real Asterisk capture, through the same codec + translator path as live, yields exactly the
call events its scenario describes. The expected events (tests/fixtures/ami/<name>.events.jsonl) were written by hand
from the scenario and the capture's Timestamps (see tests/fixtures/ami/EXPECTED.md), not dumped from the translator.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from callcenter import wire
from callcenter.bridge.connectors.ami.pipeline import Pipeline
from callcenter.bridge.connectors.ami.translate import ChannelRule, TranslatorConfig

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ami"
SCENARIOS = ["inbound_answered", "inbound_missed", "outbound", "ringgroup", "transfer_blind", "internal"]


def capture(name: str) -> bytes:
    return (FIXTURES / f"{name}.ami").read_bytes()


def translate(name: str, chunk: int = 0, **options: object) -> list[wire.Event]:
    pipeline = Pipeline(TranslatorConfig.for_profile("lab", **options))
    data = capture(name)
    events: list[wire.Event] = []
    step = chunk or len(data)
    for start in range(0, len(data), step):
        events += pipeline.receive(data[start : start + step])
    events += pipeline.receive(b"")
    assert pipeline.closed
    assert pipeline.translator.tracked_channels == 0, "a finished capture leaves no channel behind"
    assert pipeline.translator.tracked_calls == 0
    assert pipeline.translator.tracked_bridges == 0
    return events


def expected(name: str) -> list[wire.Event]:
    events = []
    for line in (FIXTURES / f"{name}.events.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            fields = json.loads(line)
            fields["event_id"] = "-"
            events.append(wire.decode_event(json.dumps(fields)))
    return events


def without_ids(events: list[wire.Event]) -> list[wire.Event]:
    return [msgspec.structs.replace(event, event_id="-") for event in events]


def of_extension(events: list[wire.Event], *extensions: str) -> list[wire.Event]:
    return [event for event in events if getattr(event, "extension", None) in extensions]


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_capture_translates_to_exactly_the_events_of_its_scenario(name: str) -> None:
    assert without_ids(translate(name)) == expected(name)


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_capture_fed_byte_by_byte_gives_the_same_events_with_the_same_ids(name: str) -> None:
    assert translate(name, chunk=1) == translate(name)


def test_the_greek_caller_name_survives_any_chunking() -> None:
    for chunk in (1, 2, 3, 5, 4096):
        ringing = translate("inbound_answered", chunk=chunk)[0]
        assert isinstance(ringing, wire.CallRinging)
        assert ringing.remote_name == "Γιώργος Παπαδόπουλος"


def test_event_ids_are_stable_and_unique_across_all_captures() -> None:
    first = [event.event_id for name in SCENARIOS for event in translate(name)]
    second = [event.event_id for name in SCENARIOS for event in translate(name)]
    assert first == second
    assert len(set(first)) == len(first)
    assert all(event_id.startswith("ami:") for event_id in first)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_event_is_valid_wire_format(name: str) -> None:
    for event in translate(name):
        assert wire.decode_event(wire.encode(event)) == event


def test_following_only_extension_100_gives_its_legs_only() -> None:
    ringgroup = translate("ringgroup", extensions=frozenset({"100"}))
    assert without_ids(ringgroup) == of_extension(expected("ringgroup"), "100")
    assert [type(event) for event in ringgroup] == [wire.CallRinging, wire.CallEnded]
    assert translate("inbound_missed", extensions=frozenset({"100"})) == []


def test_following_the_transfer_target_alone_still_knows_who_transferred_the_call() -> None:
    events = translate("transfer_blind", extensions=frozenset({"103"}))
    assert without_ids(events) == of_extension(expected("transfer_blind"), "103")
    ringing = events[0]
    assert isinstance(ringing, wire.CallRinging)
    assert ringing.transferred_from == "100"
    assert ringing.remote_number == "00302101234567"


def test_following_the_transferring_agent_alone_shows_its_transfer() -> None:
    events = translate("transfer_blind", extensions=frozenset({"100"}))
    assert without_ids(events) == of_extension(expected("transfer_blind"), "100")


def test_an_internal_call_is_outgoing_for_the_caller_and_incoming_for_the_called() -> None:
    caller = translate("internal", extensions=frozenset({"100"}))
    called = translate("internal", extensions=frozenset({"102"}))
    assert without_ids(caller) == of_extension(expected("internal"), "100")
    assert without_ids(called) == of_extension(expected("internal"), "102")
    assert isinstance(caller[0], wire.CallRinging) and caller[0].internal_direction == "out"
    assert isinstance(called[0], wire.CallRinging) and called[0].internal_direction == "in"


@pytest.mark.parametrize("name", SCENARIOS)
def test_internal_digits_agree_with_recognising_agent_channels(name: str) -> None:
    assert translate(name, internal_digits=3) == translate(name)


def test_internal_digits_keep_a_four_digit_number_out_of_the_agents() -> None:
    # With 2-digit extensions, 100..103 are not agents: nothing is followed.
    assert translate("ringgroup", internal_digits=2) == []


def test_the_channel_filter_keeps_only_that_device() -> None:
    events = translate("ringgroup", channels=("Local/101@phones",))
    assert without_ids(events) == of_extension(expected("ringgroup"), "101")
    assert translate("ringgroup", channels=("Local",)) == translate("ringgroup")
    assert translate("ringgroup", channels=("PJSIP",)) == []


def test_the_context_filter_keeps_only_channels_in_that_context() -> None:
    # In the lab an agent's phone rings in context "phones" and its outgoing calls run in "from-internal".
    assert without_ids(translate("internal", contexts=("from-internal",))) == of_extension(expected("internal"), "100")
    assert without_ids(translate("internal", contexts=("phones",))) == of_extension(expected("internal"), "102")
    assert translate("outbound", contexts=("phones",)) == []


RINGING_AT = {
    # inbound_answered: which AMI event announces the ringing of agent 100's leg, by switch
    (True, True): 1795632435.001004,  # NewCallerid of Local/100@phones-00000001;1 (number known after Newchannel)
    (True, False): 1795632435.001004,
    (False, True): 1795632435.001620,  # Newstate Ringing of the same channel
    (False, False): 1795632435.004912,  # DialBegin to it
}


@pytest.mark.parametrize(("newchannel", "newstate"), sorted(RINGING_AT))
def test_each_switch_setting_detects_the_ringing_once_from_its_own_event(newchannel: bool, newstate: bool) -> None:
    events = translate("inbound_answered", process_newchannel=newchannel, process_newstate=newstate)
    ringing = events[0]
    assert isinstance(ringing, wire.CallRinging)
    assert ringing.occurred_at == RINGING_AT[(newchannel, newstate)]
    golden = expected("inbound_answered")
    assert without_ids(events)[1:] == golden[1:]
    assert msgspec.structs.replace(ringing, event_id="-", occurred_at=golden[0].occurred_at) == golden[0]


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize(("newchannel", "newstate"), sorted(RINGING_AT))
def test_one_call_is_one_call_whatever_the_switches(name: str, newchannel: bool, newstate: bool) -> None:
    events = translate(name, process_newchannel=newchannel, process_newstate=newstate)
    golden = translate(name)
    # The same events with the same ids; only the moment of ringing may move.
    assert [event.event_id for event in events] == [event.event_id for event in golden]
    ringing = Counter(event.leg_id for event in events if isinstance(event, wire.CallRinging))
    assert set(ringing.values()) == {1}


def test_local_channel_halves_never_count_twice() -> None:
    # A careless pattern that matches both halves of each phone still yields one leg per agent.
    both_halves = (ChannelRule(r"^Local/(?P<ext>\d+)@phones-[0-9a-f]+;[12]$"),)
    for name in ("inbound_answered", "ringgroup"):
        pipeline = Pipeline(TranslatorConfig(channel_rules=both_halves))
        events = pipeline.receive(capture(name)) + pipeline.receive(b"")
        assert without_ids(events) == expected(name)


def test_the_inbound_trunk_is_never_taken_for_agent_100() -> None:
    # Local/100@from-pstn-...;2 carries "100" in its name, but it is the outside caller.
    for event in translate("inbound_answered"):
        assert event.leg_id == "1795632434.2"  # type: ignore[union-attr]


def test_the_production_profile_sees_no_agents_in_the_lab_captures() -> None:
    for name in SCENARIOS:
        pipeline = Pipeline(TranslatorConfig.for_profile("production"))
        assert pipeline.receive(capture(name)) + pipeline.receive(b"") == []
