"""The AMI codec against real Asterisk captures and against bad input (docs/ami-codec-interface.md)."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest

from callcenter.bridge.connectors.ami.codec import (
    CLOSED,
    NEED_DATA,
    AMIConnection,
    Message,
)

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures" / "ami"
CAPTURES = sorted(FIXTURES.glob("*.ami"))
GREEK_NAME = "Γιώργος Παπαδόπουλος"


def parse(data: bytes, chunk: int | None = None, **options: object) -> list[Message]:
    """Every message of ``data`` fed in pieces of ``chunk`` bytes (all at once if None), then the end of stream."""
    connection = AMIConnection(**options)  # type: ignore[arg-type]
    messages: list[Message] = []
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        connection.receive_data(piece)
        messages.extend(connection.next_events())
    connection.receive_data(b"")
    while (event := connection.next_event()) is not CLOSED:
        assert isinstance(event, Message)
        messages.append(event)
    return messages


def expected_event_counts(capture: Path) -> dict[str, int]:
    summary = capture.with_suffix(".summary.txt").read_text(encoding="utf-8")
    line = re.search(r"^Event counts: (.*)$", summary, re.MULTILINE)
    assert line is not None
    return {name: int(count) for name, count in re.findall(r"(\w+)=(\d+)", line.group(1))}


def test_the_fixture_captures_are_there() -> None:
    assert len(CAPTURES) >= 6


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.stem)
def test_each_capture_yields_the_events_its_summary_counts(capture: Path) -> None:
    messages = parse(capture.read_bytes())
    events = collections.Counter(message.name for message in messages if message.kind == "event")
    assert dict(events) == expected_event_counts(capture)
    assert messages[0].kind == "banner"
    assert messages[0].name == "Asterisk Call Manager/11.0.0"
    assert not [message for message in messages if message.kind == "malformed"]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.stem)
def test_each_capture_answers_every_action_it_was_sent(capture: Path) -> None:
    sent = capture.with_suffix(".sent").read_text(encoding="utf-8")
    action_ids = re.findall(r"^ActionID: (.*)$", sent, re.MULTILINE)
    responses = [message for message in parse(capture.read_bytes()) if message.kind == "response"]
    assert [response.action_id for response in responses] == action_ids
    assert responses[-1].name == "Goodbye"


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.stem)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 4096])
def test_each_capture_parses_the_same_in_any_chunking(capture: Path, chunk: int) -> None:
    data = capture.read_bytes()
    assert parse(data, chunk) == parse(data)


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.stem)
def test_raw_sizes_add_up_to_the_whole_capture(capture: Path) -> None:
    data = capture.read_bytes()
    assert sum(message.raw_size for message in parse(data)) == len(data)


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 5, 4096])
def test_greek_caller_names_survive_every_chunking(chunk: int | None) -> None:
    messages = parse((FIXTURES / "inbound_answered.ami").read_bytes(), chunk)
    names = [message.get("CallerIDName") for message in messages if message.get("CallerIDName", "").startswith("Γ")]
    assert names
    assert set(names) == {GREEK_NAME}


def test_an_event_keeps_its_headers_in_wire_order_and_looks_them_up_case_insensitively() -> None:
    data = (
        b"Asterisk Call Manager/11.0.0\r\n"
        b"Event: Newchannel\r\nChannel: PJSIP/100-0000002a\r\nUniqueid: 1.1\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    )
    banner, event = parse(data)
    assert banner.kind == "banner"
    assert event.kind == "event"
    assert event.name == "Newchannel"
    assert event.headers == (
        ("Event", "Newchannel"),
        ("Channel", "PJSIP/100-0000002a"),
        ("Uniqueid", "1.1"),
        ("Variable", "A=1"),
        ("Variable", "B=2"),
    )
    assert event.get("uniqueid") == "1.1"
    assert event.get("UNIQUEID") == "1.1"
    assert event.get("Variable") == "A=1"
    assert event.get_all("variable") == ["A=1", "B=2"]
    assert event.get("Missing") is None
    assert event.get("Missing", "") == ""


def test_it_needs_data_until_a_message_ends() -> None:
    connection = AMIConnection()
    connection.receive_data(b"Asterisk Call Manager/11.0.0\r\nEvent: Hangup\r\n")
    banner = connection.next_event()
    assert isinstance(banner, Message) and banner.kind == "banner"
    assert connection.next_event() is NEED_DATA
    connection.receive_data(b"\r\n")
    event = connection.next_event()
    assert isinstance(event, Message) and event.name == "Hangup"
    assert connection.next_event() is NEED_DATA
    connection.receive_data(b"")
    assert connection.next_event() is CLOSED
    assert connection.next_event() is CLOSED
