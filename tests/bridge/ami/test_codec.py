"""The AMI codec against real Asterisk captures and against bad input (docs/ami-codec-interface.md)."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest

from callcenter.bridge.connectors.ami.codec import (
    CLOSED,
    NEED_DATA,
    Action,
    AMIConnection,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
    encode_banner,
    encode_message,
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
    assert event.lookup_table() == {"event": "Newchannel", "channel": "PJSIP/100-0000002a", "uniqueid": "1.1",
                                    "variable": "A=1"}


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


# ---- the fast path and the line-by-line path ---------------------------------------------------------------------


def parse_line_by_line(data: bytes, chunk: int | None = None) -> list[Message]:
    """Like ``parse`` with the block fast path off: the reference behaviour."""
    connection = AMIConnection()
    connection._fast = False
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    messages: list[Message] = []
    for piece in [*pieces, b""]:
        connection.receive_data(piece)
        messages.extend(connection.next_events())
    assert connection.closed
    return messages


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.stem)
def test_the_fast_path_gives_exactly_what_the_line_by_line_path_gives(capture: Path) -> None:
    data = capture.read_bytes()
    assert parse(data, 4096) == parse_line_by_line(data)


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda path: path.stem)
def test_looking_up_a_header_before_and_after_parsing_them_all_gives_the_same_value(capture: Path) -> None:
    keys = ["Timestamp", "uniqueid", "CALLERIDNAME", "Event", "Response", "AccountCode", "NoSuchHeader", "Cause-txt"]
    lazy = parse(capture.read_bytes(), 4096)
    before = [[message.get(key) for key in keys] + [message.name] for message in lazy]
    for message in lazy:
        assert message.headers  # parses them now
    after = [[message.get(key) for key in keys] + [message.name] for message in lazy]
    assert before == after
    assert after == [[message.get(key) for key in keys] + [message.name] for message in parse_line_by_line(
        capture.read_bytes())]


def test_events_as_asterisk_writes_them_take_the_fast_path_and_parse_their_headers_once() -> None:
    messages = parse((FIXTURES / "ringgroup.ami").read_bytes(), 4096)
    events = [message for message in messages if message.kind == "event"]
    assert all(event._raw is not None for event in events)  # framed by the fast path, headers not built yet
    headers = events[0].headers
    assert events[0]._raw is None and events[0].headers is headers  # built once, then kept


def test_a_message_survives_copy_and_pickle_before_its_headers_are_read() -> None:
    import copy
    import pickle

    data = b"Asterisk Call Manager/11.0.0\r\nEvent: Hangup\r\nCause: 16\r\n\r\nEvent: Hangup\r\nCause: 17\r\n\r\n"
    for message in parse(data, 4096)[1:]:
        twin = parse(data, 4096)[1 if message.get("Cause") == "16" else 2]
        assert pickle.loads(pickle.dumps(twin)) == message
        assert copy.copy(twin) == message
        assert copy.copy(twin).get("cause") == message.get("Cause")


def test_a_message_built_by_hand_equals_the_parsed_one() -> None:
    (_, parsed) = parse(b"Asterisk Call Manager/11.0.0\r\nEvent: Hangup\r\nChannel: PJSIP/100-1\r\nCause: 16\r\n\r\n")
    built = Message("event", (("Event", "Hangup"), ("Channel", "PJSIP/100-1"), ("Cause", "16")), raw_size=50)
    assert parsed == built
    assert hash(parsed) == hash(built)
    assert repr(parsed) == repr(built)
    assert built.name == "Hangup" and built.get("cause") == "16" and "CHANNEL" in built and "Other" not in built


# ---- line endings, blank lines, the banner --------------------------------------------------------------------------


def test_bare_newlines_give_the_same_headers_as_crlf() -> None:
    crlf = (FIXTURES / "ringgroup.ami").read_bytes()
    lf = crlf.replace(b"\r\n", b"\n")
    assert [(m.kind, m.headers) for m in parse(lf, 5)] == [(m.kind, m.headers) for m in parse(crlf)]


def test_extra_empty_lines_between_messages_are_skipped() -> None:
    data = b"Asterisk Call Manager/11.0.0\r\n\r\n\r\nEvent: A\r\n\r\n\r\n\n\r\nEvent: B\r\n\r\n\r\n"
    messages = parse(data)
    assert [(m.kind, m.name) for m in messages] == [("banner", "Asterisk Call Manager/11.0.0"), ("event", "A"),
                                                    ("event", "B")]
    assert [m.raw_size for m in messages] == [30, 12, 12]
    assert parse(data, 1) == messages


def test_a_first_line_that_is_not_the_banner_is_reported_and_the_stream_goes_on() -> None:
    messages = parse(b"HTTP/1.1 400 Bad Request\r\nEvent: Hangup\r\n\r\n")
    assert messages[0].kind == "malformed"
    assert "expected the banner" in messages[0].error and "HTTP/1.1 400" in messages[0].error
    assert (messages[1].kind, messages[1].name) == ("event", "Hangup")


def test_blank_bytes_after_a_bad_first_line_are_skipped_in_any_chunking() -> None:
    data = b"\n\xff\xff\r\n\r*\x00:\r\n\r\n"  # found by atheris: the "\r" was part of the name only when fed whole
    messages = parse(data)
    assert messages == parse(data, 1)
    assert messages[1].headers == (("*\x00", ""),)


def test_a_capture_cut_mid_stream_parses_without_a_banner() -> None:
    messages = parse(b"Event: Hangup\r\nCause: 16\r\n\r\n")
    assert [(m.kind, m.name) for m in messages] == [("event", "Hangup")]


def test_the_server_role_reads_actions_and_expects_no_banner() -> None:
    sent = (FIXTURES / "inbound_answered.sent").read_bytes()
    actions = parse_as_server(sent)
    assert [(a.kind, a.name) for a in actions] == [("action", "Login"), ("action", "Events"), ("action", "Originate"),
                                                   ("action", "Logoff")]
    assert actions[0].get("secret") == "crmsecret"
    assert actions[2].get("CallerID") == f'"{GREEK_NAME}" <00302101234567>'
    (event,) = parse_as_server(b"Event: Hangup\r\n\r\n")
    assert event.kind == "malformed" and "Action" in event.error


def parse_as_server(data: bytes) -> list[Message]:
    connection = AMIConnection("server")
    connection.receive_data(data)
    connection.receive_data(b"")
    return connection.next_events()


# ---- responses and command output ------------------------------------------------------------------------------------


OLD_COMMAND_OUTPUT = (
    b"Asterisk Call Manager/1.3\r\n"
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: cc-7\r\n"
    b"Name/username             Host            Dyn\n"
    b"100/100                   10.0.0.5         D\n"
    b"\n"  # an empty line inside the output: not the end of the message
    b"Value: looks like a header but is output\n"
    b"2 sip peers [Monitored: 1 online]--END COMMAND--\r\n\r\n"
    b"Event: Hangup\r\nCause: 16\r\n\r\n"
)


@pytest.mark.parametrize("chunk", [None, 1, 3, 17])
def test_old_command_output_runs_to_end_command_even_across_empty_lines(chunk: int | None) -> None:
    _, response, event = parse(OLD_COMMAND_OUTPUT, chunk)
    assert response.kind == "response" and response.name == "Follows"
    assert response.headers == (("Response", "Follows"), ("Privilege", "Command"), ("ActionID", "cc-7"))
    assert response.output == (
        "Name/username             Host            Dyn",
        "100/100                   10.0.0.5         D",
        "",
        "Value: looks like a header but is output",
        "2 sip peers [Monitored: 1 online]",
    )
    assert response.action_id == "cc-7"
    assert (event.kind, event.name) == ("event", "Hangup")


def test_old_command_output_ending_on_its_own_line_has_no_marker_in_the_output() -> None:
    data = b"Response: Follows\r\nPrivilege: Command\r\nActionID: 1\r\nCore uptime\n--END COMMAND--\r\n\r\n"
    (response,) = parse(data)
    assert response.output == ("Core uptime",)


def test_new_command_output_comes_as_output_headers() -> None:
    data = (
        b"Response: Success\r\nActionID: cc-3\r\nMessage: Command output follows\r\n"
        b"Output: Name/username             Host\r\nOutput: 100/100  10.0.0.5\r\nOutput: \r\n\r\n"
    )
    (response,) = parse(data)
    assert response.name == "Success"
    assert response.output == ("Name/username             Host", "100/100  10.0.0.5", "")
    assert response.get_all("Output") == list(response.output)


def test_a_follows_response_without_a_body_ends_at_its_empty_line() -> None:
    data = b"Response: Follows\r\nActionID: 9\r\nOutput: one\r\n\r\nEvent: Hangup\r\n\r\n"
    response, event = parse(data)
    assert response.output == ("one",)
    assert event.name == "Hangup"


def test_a_follows_body_that_never_ends_is_reported_at_the_end_of_the_stream() -> None:
    data = b"Response: Follows\r\nActionID: 9\r\nsome output\r\n\r\nmore\r\n"
    (truncated,) = parse(data)
    assert truncated.kind == "malformed"
    assert "ended inside a message" in truncated.error


# ---- bad input ------------------------------------------------------------------------------------------------------


def test_a_line_without_a_colon_makes_that_message_malformed_and_the_stream_goes_on() -> None:
    data = b"Event: Newchannel\r\nChannel: PJSIP/100-1\r\nthis line has none\r\n\r\nEvent: Hangup\r\n\r\n"
    for messages in (parse(data), parse(data, 1), parse_line_by_line(data)):
        bad, good = messages
        assert bad.kind == "malformed"
        assert bad.error == "line 3 has no colon: 'this line has none'"
        assert bad.headers == (("Event", "Newchannel"), ("Channel", "PJSIP/100-1"))
        assert bad.name == "Newchannel"
        assert (good.kind, good.name) == ("event", "Hangup")


def test_a_line_with_an_empty_name_makes_that_message_malformed() -> None:
    (bad,) = parse(b"Event: Hangup\r\n: orphan value\r\n\r\n")
    assert bad.kind == "malformed" and "no header name" in bad.error


def test_a_message_with_neither_event_nor_response_is_malformed() -> None:
    (bad,) = parse(b"Channel: PJSIP/100-1\r\n\r\n")
    assert bad.kind == "malformed" and "neither an Event nor a Response" in bad.error


def test_invalid_utf8_becomes_replacement_characters() -> None:
    data = b"Event: Newchannel\r\nCallerIDName: \xce\x93\xff\xfe\xce\r\nExten: 100\r\n\r\n"
    for chunk in (None, 1, 2):
        (event,) = parse(data, chunk)
        assert event.kind == "event"
        assert event.get("CallerIDName") == "Γ\ufffd\ufffd\ufffd"
        assert event.get("Exten") == "100"


def test_a_greek_name_split_inside_a_character_survives() -> None:
    data = f"Event: NewCallerid\r\nCallerIDName: {GREEK_NAME}\r\n\r\n".encode()
    cut = data.index("ώ".encode()) + 1  # between the two bytes of one character
    connection = AMIConnection()
    connection.receive_data(data[:cut])
    assert connection.next_event() is NEED_DATA
    connection.receive_data(data[cut:])
    event = connection.next_event()
    assert isinstance(event, Message) and event.get("CallerIDName") == GREEK_NAME


def test_a_one_megabyte_line_is_reported_and_the_stream_goes_on() -> None:
    data = b"Event: Huge\r\nVariable: " + b"x" * 1_000_000 + b"\r\n\r\nEvent: Hangup\r\n\r\n"
    for chunk in (None, 4096):
        huge, good = parse(data, chunk)
        assert huge.kind == "malformed"
        assert huge.error == "a line of 1000011 bytes is longer than the limit of 65536"
        assert huge.raw_size == len(data) - len(b"Event: Hangup\r\n\r\n")
        assert (good.kind, good.name) == ("event", "Hangup")


def test_an_over_long_message_is_reported_and_the_stream_goes_on() -> None:
    body = b"".join(b"Variable: V%d=1\r\n" % i for i in range(200))
    data = b"Event: Big\r\n" + body + b"\r\nEvent: Hangup\r\n\r\n"
    big, good = parse(data, 100, max_line=100, max_message=1000, max_buffer=10_000)
    assert big.kind == "malformed" and "longer than the limit of 1000" in big.error
    assert good.name == "Hangup"


@pytest.mark.parametrize("chunk", [None, 1, 64])
def test_a_message_longer_than_the_buffer_raises_after_the_messages_before_it(chunk: int | None) -> None:
    data = b"Event: First\r\n\r\nEvent: Endless\r\nVariable: " + b"y" * 5000
    connection = AMIConnection(max_line=100, max_message=1000, max_buffer=2000)
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    received: list[Message] = []
    with pytest.raises(RemoteProtocolError, match="longer than 2000 bytes"):
        for piece in pieces:
            connection.receive_data(piece)
            received.extend(connection.next_events())
        connection.next_event()
    assert [m.name for m in received] == ["First"]
    with pytest.raises(RemoteProtocolError):  # the stream stays broken
        connection.next_event()


def test_a_complete_message_longer_than_the_buffer_raises_too() -> None:
    data = b"Event: First\r\n\r\nEvent: Big\r\nVariable: " + b"y" * 5000 + b"\r\n\r\nEvent: Later\r\n\r\n"
    connection = AMIConnection(max_line=100, max_message=1000, max_buffer=2000)
    connection.receive_data(data)
    first = connection.next_event()
    assert isinstance(first, Message) and first.name == "First"
    with pytest.raises(RemoteProtocolError, match="buffer limit"):
        connection.next_event()


def test_a_stream_that_ends_inside_a_message_reports_it_then_closes() -> None:
    connection = AMIConnection()
    connection.receive_data(b"Asterisk Call Manager/11.0.0\r\nEvent: Hangup\r\nChannel: PJSIP/10")
    connection.receive_data(b"")
    banner, truncated = connection.next_events()
    assert truncated.kind == "malformed"
    assert truncated.error == "the stream ended inside a message (32 bytes, first line 'Event: Hangup')"
    assert truncated.raw_size == 32
    assert connection.next_event() is CLOSED
    assert connection.closed


def test_garbage_yields_malformed_messages_and_no_exception() -> None:
    garbage = bytes(range(256)) * 8 + b"\n\n" + b"\x00\xff:\r\n\r\n::\n\n" + b"\r" * 100
    messages = parse(garbage, 7)
    assert messages
    assert all(message.kind == "malformed" and message.error for message in messages)
    assert messages == parse(garbage)


def test_receiving_after_the_end_of_the_stream_is_our_mistake() -> None:
    connection = AMIConnection()
    connection.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        connection.receive_data(b"Event: Late\r\n\r\n")


def test_limits_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="max_line <= max_message <= max_buffer"):
        AMIConnection(max_line=10, max_message=5)


# ---- sending and correlating ----------------------------------------------------------------------------------------


def test_send_numbers_actions_and_encodes_them_as_asterisk_reads_them() -> None:
    connection = AMIConnection()
    login = connection.send(Action("Login", (("Username", "crm"), ("Secret", "s3cret"))))
    assert login == b"Action: Login\r\nActionID: cc-1\r\nUsername: crm\r\nSecret: s3cret\r\n\r\n"
    assert connection.last_action_id == "cc-1"
    originate = connection.send(Action("Originate", (("CallerID", f'"{GREEK_NAME}" <100>'),)))
    assert originate.startswith(b"Action: Originate\r\nActionID: cc-2\r\n")
    assert f'"{GREEK_NAME}" <100>'.encode() in originate
    assert connection.send(Action("Ping", action_id="mine")) == b"Action: Ping\r\nActionID: mine\r\n\r\n"
    assert connection.pending_action_ids == ("cc-1", "cc-2", "mine")


def test_what_send_writes_the_server_role_reads_back() -> None:
    client = AMIConnection()
    data = client.send(Action("Originate", (("Channel", "PJSIP/100"), ("Variable", "A=1"), ("Variable", "B=2"))))
    (action,) = parse_as_server(data)
    assert action.kind == "action" and action.name == "Originate" and action.action_id == "cc-1"
    assert action.get_all("Variable") == ["A=1", "B=2"]


@pytest.mark.parametrize(
    "action",
    [
        Action("Originate", (("Channel", "PJSIP/100\r\nAction: Hangup"),)),
        Action("Originate", (("Chan\nnel", "x"),)),
        Action("Originate", (("", "x"),)),
        Action("Originate", (("Chan:nel", "x"),)),
        Action("Originate", (("ActionID", "x"),)),
        Action("Originate", (("action", "x"),)),
        Action(""),
        Action("Originate", (("Channel", "\ud800"),)),
    ],
    ids=["newline-in-value", "newline-in-name", "empty-name", "colon-in-name", "actionid-header", "action-header",
         "no-name", "lone-surrogate"],
)
def test_send_refuses_an_action_ami_cannot_carry(action: Action) -> None:
    with pytest.raises(LocalProtocolError):
        AMIConnection().send(action)


def test_the_server_role_does_not_send_actions() -> None:
    with pytest.raises(LocalProtocolError, match="client role"):
        AMIConnection("server").send(Action("Ping"))


def test_encode_message_writes_a_server_message() -> None:
    assert encode_message([("Response", "Success"), ("ActionID", "1")]) == b"Response: Success\r\nActionID: 1\r\n\r\n"
    assert encode_banner("11.0.0") == b"Asterisk Call Manager/11.0.0\r\n"
    with pytest.raises(LocalProtocolError):
        encode_message([("Event", "Hangup\n")])


def test_a_response_completes_its_action() -> None:
    connection = AMIConnection()
    connection.send(Action("Ping"))
    connection.receive_data(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: cc-1\r\nPing: Pong\r\n\r\n"
                            b"Response: Success\r\nActionID: unknown\r\n\r\n")
    _, pong, stranger = connection.next_events()
    answered = connection.correlate(pong)
    assert answered is not None and answered.name == "Ping" and answered.action_id == "cc-1"
    assert connection.pending_action_ids == ()
    assert connection.correlate(stranger) is None


def test_an_event_list_keeps_its_action_pending_until_complete() -> None:
    connection = AMIConnection()
    connection.send(Action("CoreShowChannels"))
    connection.receive_data(
        b"Response: Success\r\nActionID: cc-1\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n"
        b"Event: CoreShowChannel\r\nActionID: cc-1\r\nChannel: PJSIP/100-1\r\n\r\n"
        b"Event: CoreShowChannelsComplete\r\nActionID: cc-1\r\nEventList: Complete\r\nListItems: 1\r\n\r\n"
    )
    start, item, complete = connection.next_events()
    for message in (start, item):
        action = connection.correlate(message)
        assert action is not None and action.name == "CoreShowChannels"
        assert connection.pending_action_ids == ("cc-1",)
    assert start.event_list == "start" and complete.event_list == "complete"
    assert connection.correlate(complete) is not None
    assert connection.pending_action_ids == ()
