"""Fuzzing the AMI codec with hypothesis: the invariant in codec.py's first comment.

Whatever bytes arrive, we yield messages or raise RemoteProtocolError, and the same input fed whole, byte by byte or
in random pieces yields the same messages (and the error at the same point). On top of that: the block fast path
and the line-by-line path agree, and a header looked up before the headers are parsed equals the one looked up after.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter.bridge.connectors.ami.codec import (
    CLOSED,
    NEED_DATA,
    AMIConnection,
    Message,
    RemoteProtocolError,
    encode_message,
)

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures" / "ami"
CAPTURES = [path.read_bytes() for path in sorted(FIXTURES.glob("*.ami"))]
# AMI_FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the suite fast on a shared machine.
FUZZ = settings(max_examples=int(os.environ.get("AMI_FUZZ_EXAMPLES", "250")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Small limits make the limit paths reachable with small inputs; the defaults keep the common path covered.
LIMITS = st.sampled_from([
    {},
    {"max_line": 40, "max_message": 120, "max_buffer": 300},
    {"max_line": 8, "max_message": 8, "max_buffer": 8},
])

# Pieces that AMI streams are made of, and pieces that break them.
TOKENS = [
    b"Asterisk Call Manager/11.0.0\r\n", b"Event: ", b"Response: ", b"Response: Follows\r\n", b"Success",
    b"ActionID: cc-1\r\n", b"Channel: PJSIP/100-0000002a", b"Uniqueid: 1.2", b"Output: ", b"--END COMMAND--",
    b"Privilege: Command\r\n", b"EventList: start", b"\r\n", b"\r\n\r\n", b"\n", b"\n\n", b"\r", b":", b": ", b" ",
    "Γιώργος".encode(), b"\xce", b"\x93", b"\xff", b"\x00", b"\x01", b"\x02", b"Variable: A=1: b",
    b"Event: Hangup\r\nCause: 16\r\n\r\n", b"Action: Login\r\n",
]
AMI_LIKE = st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6)), max_size=60).map(b"".join)


def feed(data: bytes, cuts: list[int], *, fast: bool = True, role: str = "client",
         **limits: int) -> tuple[list[Message], bool]:
    """The messages of ``data`` cut at ``cuts``, then the end of stream; and whether RemoteProtocolError ended it.
    Any other exception fails the test."""
    connection = AMIConnection(role, **limits)  # type: ignore[arg-type]
    connection._fast = fast
    bounds = [0, *sorted(set(cut for cut in cuts if 0 < cut < len(data))), len(data)]
    pieces = [data[start:end] for start, end in zip(bounds, bounds[1:], strict=False)]
    messages: list[Message] = []
    try:
        for piece in [*pieces, b""]:
            connection.receive_data(piece)
            while True:
                event = connection.next_event()
                if event is NEED_DATA or event is CLOSED:
                    break
                assert isinstance(event, Message)
                messages.append(event)
        assert connection.next_event() is CLOSED
    except RemoteProtocolError:
        return messages, True
    return messages, False


def assert_same_in_every_chunking(data: bytes, cuts: list[int], limits: dict[str, int], role: str = "client") -> None:
    whole = feed(data, [], role=role, **limits)
    assert feed(data, cuts, role=role, **limits) == whole
    assert feed(data, list(range(1, len(data))), role=role, **limits) == whole
    assert feed(data, [], fast=False, role=role, **limits) == whole
    messages, _ = whole
    for message in messages:
        assert message.kind in ("banner", "event", "response", "action", "malformed")
        assert (message.kind == "malformed") == bool(message.error)
        assert all(isinstance(name, str) and isinstance(value, str) for name, value in message.headers)


def cuts_for(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, max(len(data), 1)), max_size=20)


@FUZZ
@given(data=st.binary(max_size=1500), limits=LIMITS, seed=st.data())
def test_random_bytes_give_the_same_messages_however_they_are_cut(data: bytes, limits: dict[str, int],
                                                                  seed: st.DataObject) -> None:
    assert_same_in_every_chunking(data, seed.draw(cuts_for(data)), limits)


@FUZZ
@given(data=AMI_LIKE, limits=LIMITS, role=st.sampled_from(["client", "server"]), seed=st.data())
def test_ami_like_bytes_give_the_same_messages_however_they_are_cut(data: bytes, limits: dict[str, int], role: str,
                                                                    seed: st.DataObject) -> None:
    assert_same_in_every_chunking(data, seed.draw(cuts_for(data)), limits, role)


@st.composite
def mutated_capture(draw: st.DrawFn) -> bytes:
    capture = draw(st.sampled_from(CAPTURES))
    start = draw(st.integers(0, len(capture) - 1))
    data = bytearray(capture[start : start + draw(st.integers(1, 2500))])
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        if action == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif action == "insert":
            data[at:at] = draw(st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=4)))
        elif action == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "duplicate":
            data[at:at] = data[at : at + draw(st.integers(1, 200))]
    return bytes(data)


@FUZZ
@given(data=mutated_capture(), limits=LIMITS, seed=st.data())
def test_mutated_captures_give_the_same_messages_however_they_are_cut(data: bytes, limits: dict[str, int],
                                                                      seed: st.DataObject) -> None:
    assert_same_in_every_chunking(data, seed.draw(cuts_for(data)), limits)


@FUZZ
@given(data=mutated_capture(), seed=st.data())
def test_a_header_looked_up_before_parsing_equals_the_one_after(data: bytes, seed: st.DataObject) -> None:
    lazy, _ = feed(data, [])
    for message in lazy:
        names = [name for name, _ in message.headers] if message._raw is None else []
        keys = seed.draw(st.lists(st.sampled_from(
            ["Event", "event", "TIMESTAMP", "Uniqueid", "CallerIDName", "Nope", "Variable", "", "Κ", "a:b", "\n", "\r",
             *names]
        ), max_size=4))
        before = [message.get(key) for key in keys] + [message.name, message.action_id]
        assert message.headers is not None
        after = [message.get(key) for key in keys] + [message.name, message.action_id]
        assert before == after


HEADER_NAME = st.text(st.characters(blacklist_characters=":\r\n", blacklist_categories=["Cs"]), min_size=1,
                      max_size=12)
HEADER_VALUE = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=30)


@FUZZ
@given(event=HEADER_VALUE, headers=st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=12), seed=st.data())
def test_what_encode_message_writes_parses_back_to_the_same_headers(event: str, headers: list[tuple[str, str]],
                                                                   seed: st.DataObject) -> None:
    pairs = [("Event", event), *headers]
    data = encode_message(pairs)
    messages, failed = feed(data, seed.draw(cuts_for(data)))
    assert not failed
    (message,) = messages
    assert message.kind == "event"
    assert message.headers == tuple(pairs)
    assert message.raw_size == len(data)
