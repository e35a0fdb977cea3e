# Fuzz invariant: whatever bytes arrive, we yield messages or raise RemoteProtocolError, and the same input fed whole
# or byte by byte yields the same messages.
"""Sans-I/O codec for the Asterisk Manager Interface (AMI): bytes in, messages out; actions in, bytes out.

No sockets, clocks or asyncio here (the connector is a thin adapter around ``AMIConnection``); the contract is
docs/ami-codec-interface.md.

Rules:
- Bytes are split into messages first, then each complete message is decoded as UTF-8 with ``errors="replace"``, so a
  Greek caller name survives any chunking and invalid UTF-8 becomes U+FFFD, never an exception.
- A message ends at an empty line. Lines end in "\\r\\n" or "\\n" (one trailing "\\r" is stripped); empty lines between
  messages are skipped and not counted in ``raw_size``.
- A header line is ``Name: value``: the name runs to the first colon, one space after it is dropped, the rest of the
  line is the value, verbatim (repeated names are kept in wire order).
- ``Response: Follows`` (Asterisk <= 13 ``Command``): its output lines follow the headers and end with a line
  ``--END COMMAND--`` and an empty line; the output may contain empty lines. Newer Asterisk answers ``Command`` with
  ``Response: Success`` and one ``Output:`` header per line. Both fill ``Message.output``.
- Bad input is reported, not raised: a line without a colon, an over-long line (``max_line``), an over-long message
  (``max_message``), a first line that is not the banner, or a stream that ends inside a message each become one
  ``kind="malformed"`` message, and parsing goes on after the next empty line. Only a message longer than
  ``max_buffer`` (it cannot be framed without unbounded memory) raises ``RemoteProtocolError``, after every message
  before it has been returned. Only ``LocalProtocolError`` and ``RemoteProtocolError`` ever leave this module.

Speed: a block of complete messages as Asterisk writes them ("\r\n" lines, one empty line between messages, every
line with a name and a colon) is checked and framed by a few C-level bytes operations for the whole block; its events
are returned with their raw bytes, and their ``headers`` tuple is built the first time it is read (``get()`` of one
header on an ASCII message searches the bytes without building it). Anything unusual takes the line-by-line path,
which defines the behaviour; both give identical messages (see ``_parse_chunk`` for why the check is exact).
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

__all__ = [
    "BANNER_PREFIX",
    "CLOSED",
    "NEED_DATA",
    "AMIConnection",
    "Action",
    "LocalProtocolError",
    "Message",
    "MessageKind",
    "RemoteProtocolError",
    "Role",
    "Sentinel",
    "encode_banner",
    "encode_message",
]

BANNER_PREFIX: Final = "Asterisk Call Manager/"
END_COMMAND: Final = "--END COMMAND--"

MessageKind: TypeAlias = Literal["banner", "event", "response", "action", "malformed"]
Role: TypeAlias = Literal["client", "server"]


class Sentinel(enum.Enum):
    """What ``next_event()`` returns when it has no message: compare with ``is``."""

    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Sentinel.NEED_DATA
CLOSED: Final = Sentinel.CLOSED


class LocalProtocolError(Exception):
    """We misused the codec: e.g. ``send()`` of an action with a line break in a value."""


class RemoteProtocolError(Exception):
    """The peer broke the protocol beyond recovery: e.g. a message longer than ``max_buffer``."""


# ---- messages ----------------------------------------------------------------------------------------------------

# Lower-cased header names, shared: the keys of every Message's lookup table. Bounded so a hostile peer inventing names
# cannot grow it without limit (past the bound, names are lower-cased afresh each time).
_LOWER_LIMIT: Final = 4096


class _LowerNames(dict[str, str]):
    def __missing__(self, key: str) -> str:
        lowered = key.lower()
        if len(self) < _LOWER_LIMIT:
            self[key] = lowered
        return lowered


_LOWER: Final = _LowerNames()
_NAME_KEY: Final[dict[str, str]] = {"event": "Event", "response": "Response", "action": "Action", "banner": "Banner"}
_EMPTY_SLOT_VALUES: Final[dict[str, Any]] = {"output": (), "error": "", "_index": None, "_raw": None}


class _Lazy:
    """Slots of a Message that are not dataclass fields: its lookup table, built on first use, and the raw bytes of
    a fast-path event whose ``headers`` slot is still empty (see Message.__getattr__)."""

    __slots__ = ("_index", "_raw")
    _index: dict[str, str] | None
    _raw: bytes | None


@dataclass(frozen=True, slots=True)
class Message(_Lazy):
    """One AMI message. ``headers`` keep wire order and repeated names; lookups by name are case-insensitive.

    A banner is ``Message(kind="banner", headers=(("Banner", "Asterisk Call Manager/11.0.0"),))``.
    """

    kind: MessageKind
    headers: tuple[tuple[str, str], ...]
    output: tuple[str, ...] = ()
    error: str = ""
    raw_size: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", None)
        object.__setattr__(self, "_raw", None)

    if not TYPE_CHECKING:  # at run time only: to the type checker, every field is always there

        def __getattr__(self, name: str) -> Any:
            # Called only when a slot is empty: the headers of a fast-path event not read yet (parsed now, once), the
            # output and error a fast-path event leaves empty, or the private slots of a copy made without
            # __post_init__.
            if name == "headers":
                raw = self._raw
                if raw is not None:
                    headers = _materialize(raw)
                    _set_headers(self, headers)
                    _set_raw(self, None)
                    return headers
            elif name in _EMPTY_SLOT_VALUES:
                return _EMPTY_SLOT_VALUES[name]
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _lookup(self) -> dict[str, str]:
        index = self._index
        if index is None:
            headers = self.headers
            if headers:
                names, values = zip(*reversed(headers), strict=True)  # reversed: the first value of a name wins
                index = dict(zip(map(_LOWER.__getitem__, names), values, strict=True))
            else:
                index = {}
            _set_index(self, index)
        return index

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of header ``key`` (case-insensitive), or ``default``."""
        raw = self._raw
        if raw is not None and raw.isascii() and key.isascii() and ":" not in key and "\n" not in key:
            return _raw_lookup(raw, key, default)  # headers not parsed yet, and no need to
        return self._lookup().get(_LOWER[key], default)

    def lookup_table(self) -> Mapping[str, str]:
        """Every header by lower-cased name, with the first value of a repeated name: what ``get()`` reads. Built
        once per message; cheaper than building one's own from ``headers``."""
        return self._lookup()

    def get_all(self, key: str) -> list[str]:
        """Every value of header ``key`` (case-insensitive), in wire order: e.g. all ``Variable`` lines."""
        lowered = _LOWER[key]
        return [value for name, value in self.headers if _LOWER[name] == lowered]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    @property
    def name(self) -> str:
        """The Event name of an event, the Response value of a response, the Action of an action, the banner text
        of the banner; for a malformed message whichever of Event/Response/Action it has, else ""."""
        raw = self._raw
        if raw is not None:  # a fast-path event: its first line is "Event:..."
            end = raw.find(b"\n")
            line = raw[6:] if end < 0 else raw[6 : end - 1 if raw[end - 1] == 13 else end]
            return (line[1:] if line[:1] == b" " else line).decode("utf-8", "replace")
        key = _NAME_KEY.get(self.kind)
        if key is not None:
            headers = self.headers
            if headers and headers[0][0] == key:
                return headers[0][1]
            return self.get(key) or ""
        for key in ("Event", "Response", "Action"):
            value = self.get(key)
            if value is not None:
                return value
        return ""

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def event_list(self) -> str | None:
        """``EventList``, lower-cased: "start" on the response that opens a list, "complete" on its last event."""
        value = self.get("EventList")
        return value.lower() if value is not None else None


def _raw_lookup(raw: bytes, key: str, default: str | None) -> str | None:
    """``Message.get`` on the bytes of an ASCII fast-path event, without parsing every header. The same answer as the
    parsed headers give: a name is the text from a line start to the first colon (ASCII, so bytes.lower() lowers it
    as str.lower() would), its value the rest of the line less one trailing "\r" and one leading space."""
    name = _LOWER[key].encode()
    lowered = raw.lower()
    if lowered.startswith(name + b":"):
        start = len(name) + 1
    else:
        start = lowered.find(b"\n" + name + b":")
        if start < 0:
            return default
        start += len(name) + 2
    end = raw.find(b"\n", start)
    if end < 0:
        value = raw[start:]  # the last line: its line end is not part of the raw bytes
    else:
        value = raw[start : end - 1 if raw[end - 1] == 13 else end]
    return (value[1:] if value[:1] == b" " else value).decode()


def _materialize(raw: bytes) -> tuple[tuple[str, str], ...]:
    """The headers of a fast-path event (every line has a non-empty name and a colon: checked when it was framed)."""
    text = raw.decode("utf-8", "replace")
    lines = text.count("\n") + 1
    # The common case at C speed: every line has exactly one colon (each has one at least, so the count proves it),
    # followed by a space, and ends in "\r\n" (the token count proves that). Then the text alternates name, value.
    if text.count(":") == lines and text.count(": ") == lines:
        tokens = text.replace("\r\n", ": ").split(": ")
        if len(tokens) == 2 * lines:
            pairs = iter(tokens)
            return tuple(zip(pairs, pairs, strict=False))
    return tuple(_header_pairs(_lines(raw + b"\r")))


def _lines(body: bytes) -> list[str]:
    """The lines of one message: ``body`` runs to the "\n" that ends its last line; one "\r" before each "\n" goes."""
    text = body.decode("utf-8", "replace")
    if text.endswith("\r"):
        text = text[:-1]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text.split("\n")


def _header_pairs(lines: list[str]) -> list[tuple[str, str]]:
    """``Name: value`` lines as pairs: the name runs to the first colon, one space after it is dropped."""
    return [
        (_NAMES.get(name, name), value[1:] if value[:1] == " " else value)
        for name, _colon, value in map(str.partition, lines, repeat(":"))
    ]


@dataclass(frozen=True, slots=True)
class Action:
    name: str  # "Login", "Originate", ...
    headers: tuple[tuple[str, str], ...] = ()  # without Action/ActionID
    action_id: str = ""  # "" = AMIConnection.send() assigns the next one


# ---- encoding ---------------------------------------------------------------------------------------------------


def encode_message(headers: Iterable[tuple[str, str]]) -> bytes:
    """``"Name: value\\r\\n"``... then ``"\\r\\n"``, UTF-8. A name that is empty or holds a colon, and a line break
    in a name or value, raise LocalProtocolError: AMI could not carry them."""
    pairs = list(headers)
    text = "".join([f"{name}: {value}\r\n" for name, value in pairs]) + "\r\n"
    lines = len(pairs) + 1
    if text.count("\n") != lines or text.count("\r") != lines:
        for name, value in pairs:
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise LocalProtocolError(
                    f"header {name!r} has a line break in its name or value ({value!r:.80}); AMI cannot carry it"
                )
    for name, _value in pairs:
        if not name or ":" in name:
            raise LocalProtocolError(f"header name {name!r} is empty or contains a colon; AMI cannot carry it")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"a header is not valid Unicode text: {exc}") from None


def encode_banner(version: str = "11.0.0") -> bytes:
    """The line an AMI server sends first (Asterisk 12-22 all say "11.0.0" or newer)."""
    if "\r" in version or "\n" in version:
        raise LocalProtocolError(f"banner version {version!r} has a line break")
    return f"{BANNER_PREFIX}{version}\r\n".encode()


# ---- decoding: shared tables ------------------------------------------------------------------------------------

_RESPONSE_FOLLOWS: Final = b"Response: Follows"
_END_COMMAND_BYTES: Final = END_COMMAND.encode()
_FOLLOWS_HEADERS: Final = frozenset({"response", "privilege", "actionid", "message", "output", "commandid"})
_BOUNDARY: Final = re.compile(rb"\n\r?\n")
_BLANKS: Final = re.compile(rb"[\r\n]*")
_HEADER_LINE: Final = re.compile(rb"([^:\r\n]*):")
# What the fast path leaves to the line-by-line path: a line that starts with a colon (no name), a message that
# starts with "\r" after an empty line, a Follows response. (re finds a pattern led by a literal faster than
# bytes.find finds "\n:".)
_ODD_LINE_START: Final = re.compile(rb"\n(?::|\r\n\r|Response: Follows)").search
_NOT_COLON_OR_LF: Final = bytes(byte for byte in range(256) if byte not in b":\n")

# One shared string per common header name, so a million parsed events do not hold a million "Channel" strings.
_NAMES: Final[dict[str, str]] = {}
for _name in (
    "Event Privilege Timestamp SystemName Channel ChannelState ChannelStateDesc CallerIDNum CallerIDName "
    "ConnectedLineNum ConnectedLineName Language AccountCode Context Exten Priority Uniqueid Linkedid Variable Value "
    "DestChannel DestChannelState DestChannelStateDesc DestCallerIDNum DestCallerIDName DestConnectedLineNum "
    "DestConnectedLineName DestLanguage DestAccountCode DestContext DestExten DestPriority DestUniqueid DestLinkedid "
    "DialString DialStatus Forward Cause Cause-txt Application AppData Extension Hint Status StatusText Device State "
    "BridgeUniqueid BridgeType BridgeTechnology BridgeCreator BridgeName BridgeNumChannels BridgeVideoSourceMode "
    "BridgeVideoSource LocalOneChannel LocalOneChannelState LocalOneChannelStateDesc LocalOneCallerIDNum "
    "LocalOneCallerIDName LocalOneConnectedLineNum LocalOneConnectedLineName LocalOneLanguage LocalOneAccountCode "
    "LocalOneContext LocalOneExten LocalOnePriority LocalOneUniqueid LocalOneLinkedid LocalTwoChannel "
    "LocalTwoChannelState LocalTwoChannelStateDesc LocalTwoCallerIDNum LocalTwoCallerIDName LocalTwoConnectedLineNum "
    "LocalTwoConnectedLineName LocalTwoLanguage LocalTwoAccountCode LocalTwoContext LocalTwoExten LocalTwoPriority "
    "LocalTwoUniqueid LocalTwoLinkedid LocalOptimization Source Destination DestinationContext CallerID "
    "LastApplication LastData Start AnswerTime EndTime Duration BillableSeconds Disposition AMAFlags UserField "
    "Response ActionID Message EventList ListItems ListItem Output Uptime LastReload Reason Result Events "
    "TransferTargetChannel TransfereeChannel TransfereeChannelState TransfereeChannelStateDesc TransfereeCallerIDNum "
    "TransfereeCallerIDName TransfereeConnectedLineNum TransfereeConnectedLineName TransfereeLanguage "
    "TransfereeAccountCode TransfereeContext TransfereeExten TransfereePriority TransfereeUniqueid TransfereeLinkedid "
    "TransfererChannel TransfererChannelState TransfererChannelStateDesc TransfererCallerIDNum "
    "TransfererCallerIDName TransfererConnectedLineNum TransfererConnectedLineName TransfererLanguage "
    "TransfererAccountCode TransfererContext TransfererExten TransfererPriority TransfererUniqueid TransfererLinkedid "
    "IsExternal Family Key Val MusicClass Queue Interface MemberName Paused Action Username Secret Data Async "
    "Timeout EventMask Command Peer PeerStatus Address Port Endpoint Contact AOR URI RoundtripUsec"
).split():
    _NAMES[_name] = _name

_KIND_KEYS: Final[dict[Role, tuple[tuple[str, MessageKind], ...]]] = {
    "client": (("event", "event"), ("response", "response")),
    "server": (("action", "action"),),
}


# ---- the connection ---------------------------------------------------------------------------------------------


class AMIConnection:
    """One AMI connection's protocol state. Feed it bytes with ``receive_data()``, pull messages with
    ``next_event()``; turn actions into bytes with ``send()`` (client role)."""

    def __init__(
        self,
        role: Role = "client",
        *,
        max_line: int = 64 * 1024,
        max_message: int = 1024 * 1024,
        max_buffer: int = 4 * 1024 * 1024,
    ) -> None:
        if role not in ("client", "server"):
            raise ValueError(f"role must be 'client' or 'server', not {role!r}")
        if not 0 < max_line <= max_message <= max_buffer:
            raise ValueError(
                f"limits must satisfy 0 < max_line <= max_message <= max_buffer; got {max_line}, {max_message}, "
                f"{max_buffer}"
            )
        self.role: Final = role
        self.max_line: Final = max_line
        self.max_message: Final = max_message
        self.max_buffer: Final = max_buffer
        self._buffer = bytearray()
        self._queue: deque[Message] = deque()
        self._need_banner = role == "client"
        self._lazy_events = role == "client"  # the fast path's events: a server reads actions only
        self._kind_keys = _KIND_KEYS[role]
        self._eof = False
        self._finished = False  # eof seen and everything in the buffer turned into messages
        self._error: str | None = None
        self._scanned = 0  # bytes at the start of the buffer known to hold no message boundary
        self._fast = True  # tests turn the fast path off to compare it with the line-by-line path
        self._follows_from = -1  # >= 0: a Follows body heads the buffer; look for --END COMMAND-- from here
        self._next_id = 0
        self._pending: dict[str, Action] = {}
        self.last_action_id = ""

    # -- receiving --------------------------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed the connection."""
        if self._eof:
            if data:
                raise LocalProtocolError("receive_data() after the end of the stream (b'') was already received")
            return
        if not data:
            self._eof = True
        elif self._error is None:
            self._buffer += data

    def next_event(self) -> Message | Literal[Sentinel.NEED_DATA, Sentinel.CLOSED]:
        """The next message; NEED_DATA when more bytes are needed; CLOSED once the peer closed and all is read."""
        queue = self._queue
        if queue:
            return queue.popleft()
        if self._error is None and not self._finished:
            self._parse()
            if queue:
                return queue.popleft()
        if self._error is not None:
            raise RemoteProtocolError(self._error)
        if self._finished:
            return CLOSED
        return NEED_DATA

    def next_events(self) -> list[Message]:
        """Every message available now (possibly none). A RemoteProtocolError comes after the messages before it:
        from the next call."""
        out: list[Message] = []
        while True:
            try:
                event = self.next_event()
            except RemoteProtocolError:
                if out:
                    return out  # the error is raised by the next call, after these messages
                raise
            if event is NEED_DATA or event is CLOSED:
                return out
            assert isinstance(event, Message)
            out.append(event)

    @property
    def closed(self) -> bool:
        """The peer closed and every message has been returned."""
        return self._finished and not self._queue

    # -- sending ----------------------------------------------------------------------------------------------------

    def next_action_id(self) -> str:
        self._next_id += 1
        return f"cc-{self._next_id}"

    def send(self, action: Action) -> bytes:
        """The bytes of ``action`` with its ActionID (the next one if it has none); remembered for ``correlate()``."""
        if self.role != "client":
            raise LocalProtocolError("send() is for the client role; a server writes messages with encode_message()")
        if not action.name:
            raise LocalProtocolError("an action needs a name (e.g. 'Login')")
        for name, _value in action.headers:
            if name.lower() in ("action", "actionid"):
                raise LocalProtocolError(f"header {name!r} is set by send(); pass it as Action.name/action_id")
        action_id = action.action_id or self.next_action_id()
        data = encode_message((("Action", action.name), ("ActionID", action_id), *action.headers))
        if len(self._pending) >= 10_000:  # answers that never came: forget the oldest
            del self._pending[next(iter(self._pending))]
        self._pending[action_id] = action if action.action_id else Action(action.name, action.headers, action_id)
        self.last_action_id = action_id
        return data

    @property
    def pending_action_ids(self) -> tuple[str, ...]:
        """ActionIDs of sent actions whose answer is not complete yet, oldest first."""
        return tuple(self._pending)

    def correlate(self, message: Message) -> Action | None:
        """The sent action that ``message`` answers (by ActionID), or None. A response completes its action, unless
        it opens an event list ("EventList: start"); then the list's event with "EventList: Complete" does."""
        action_id = message.action_id
        if action_id is None:
            return None
        action = self._pending.get(action_id)
        if action is None:
            return None
        if message.kind == "response" and message.event_list != "start":
            del self._pending[action_id]
        elif message.kind == "event" and message.event_list == "complete":
            del self._pending[action_id]
        return action

    # -- parsing ----------------------------------------------------------------------------------------------------

    def _parse(self) -> None:
        buffer = self._buffer
        if buffer and buffer[0] in b"\r\n":
            self._skip_blanks()
        if self._need_banner and buffer:
            self._parse_banner()
            if buffer and buffer[0] in b"\r\n":
                self._skip_blanks()
        if not self._need_banner and buffer:
            start = self._scanned - 2 if self._scanned > 2 else 0
            crlf = buffer.rfind(b"\n\r\n", start)
            if crlf >= 0:
                end = crlf + 3
                lf = buffer.rfind(b"\n\n", crlf)  # only a later boundary matters
            else:
                end = -1
                lf = buffer.rfind(b"\n\n", start)
            if lf >= 0 and lf + 2 > end:
                end = lf + 2
            if end < 0:
                self._scanned = len(buffer)
            elif self._follows_from >= 0 and buffer.find(_END_COMMAND_BYTES, self._follows_from) < 0:
                # still inside a Follows body, which holds back everything after it: nothing new is complete
                self._follows_from = max(len(buffer) - len(_END_COMMAND_BYTES), 0)
                self._scanned = len(buffer)
            else:
                with memoryview(buffer) as view:
                    chunk = bytes(view[:end])  # one copy (buffer[:end] would make two)
                del buffer[:end]
                consumed = self._parse_chunk(chunk)
                self._scanned = 0
                if consumed < end and self._error is None:  # an unfinished Follows body: keep it for more data
                    buffer[:0] = chunk[consumed:]
                    self._scanned = len(buffer)
                    self._follows_from = max(len(buffer) - len(_END_COMMAND_BYTES), 0)
                else:
                    self._follows_from = -1
            if buffer and buffer[0] in b"\r\n":
                self._skip_blanks()
        if self._error is not None:
            buffer.clear()
            return
        if len(buffer) > self.max_buffer:
            self._fail(f"a message is longer than {self.max_buffer} bytes without ending (no empty line)")
        elif self._eof:
            if buffer:
                self._queue.append(self._truncated(bytes(buffer)))
                buffer.clear()
            self._finished = True

    def _skip_blanks(self) -> None:
        skip = _BLANKS.match(self._buffer)
        if skip is not None:
            del self._buffer[: skip.end()]
        self._scanned = 0

    def _fail(self, error: str) -> None:
        self._error = error
        self._buffer.clear()

    def _parse_banner(self) -> None:
        buffer = self._buffer
        newline = buffer.find(b"\n", self._scanned)
        if newline < 0:
            self._scanned = len(buffer)  # the length check in _parse() bounds the wait
            return
        self._scanned = 0
        if newline + 1 > self.max_buffer:  # as for a message: the same whether the newline came yet or not
            self._fail(f"the first line of {newline + 1} bytes is longer than the {self.max_buffer}-byte buffer limit")
            return
        line = bytes(buffer[:newline])
        if line.endswith(b"\r"):
            line = line[:-1]
        self._need_banner = False
        if line.startswith(b"Asterisk Call Manager"):
            del buffer[: newline + 1]
            if newline + 1 > self.max_line:
                error = f"banner line of {newline + 1} bytes is longer than the limit of {self.max_line}"
                self._queue.append(Message("malformed", (), error=error, raw_size=newline + 1))
                return
            banner = line.decode("utf-8", "replace")
            self._queue.append(Message("banner", (("Banner", banner),), raw_size=newline + 1))
        elif _HEADER_LINE.match(line) is None:  # not the banner, and not a header: say so, then read messages
            del buffer[: newline + 1]
            preview = line[:80].decode("utf-8", "replace")
            error = f"expected the banner '{BANNER_PREFIX}x.y.z', got {preview!r}"
            self._queue.append(Message("malformed", (), error=error, raw_size=newline + 1))
        # else: a stream that starts with a message (a capture cut mid-stream): parse it as messages

    def _truncated(self, data: bytes) -> Message:
        first = data.split(b"\n", 1)[0].rstrip(b"\r")[:80].decode("utf-8", "replace")
        error = f"the stream ended inside a message ({len(data)} bytes, first line {first!r})"
        return Message("malformed", (), error=error, raw_size=len(data))

    def _parse_chunk(self, chunk: bytes) -> int:
        """Parse ``chunk`` (it starts a message and ends with an empty line); returns how many bytes it consumed.

        Fast path. Its framing (split at "\r\n\r\n") and its lazy headers (see ``_lines``) give what the
        line-by-line path gives when: every empty line of the chunk is one of those "\r\n\r\n" (the line-by-line path
        ends a message at any empty line, "\n\n" or "\n\r\n"), every other line has a colon and a name before it, no
        message starts with "\r" (the line-by-line path would skip it as blank), no message is a Follows response,
        and none is near a limit. The skeleton (the chunk less every byte but ":" and "\n") has an empty segment
        between two "\n" exactly where a line has no colon (an empty line, "\r" alone, text alone); a "\r\n\r\n"
        accounts for one, so there must be as many as there are messages, none at the very start and no two in a row.
        """
        if (
            self._fast
            and chunk.endswith(b"\r\n\r\n")
            and chunk[0] != 58  # ":"
            and _ODD_LINE_START(chunk) is None
            and not chunk.startswith(_RESPONSE_FOLLOWS)
        ):
            skeleton = chunk.translate(None, _NOT_COLON_OR_LF)
            pieces = chunk.split(b"\r\n\r\n")
            pieces.pop()  # the empty tail after the last boundary
            if (
                skeleton[:1] != b"\n"
                and skeleton.count(b"\n\n") == len(pieces)
                and b"\n\n\n" not in skeleton
                and max(map(len, pieces)) <= self.max_line - 4  # so no line, and no message, is over a limit
            ):
                append = self._queue.append
                new = object.__new__
                lazy = self._lazy_events
                for piece in pieces:
                    if lazy and piece.startswith(b"Event:"):
                        message = new(Message)
                        _set_kind(message, "event")  # output and error: empty slots read as () and ""
                        _set_raw_size(message, len(piece) + 4)
                        _set_raw(message, piece)  # _index: an empty slot reads as None
                        append(message)
                    else:
                        self._emit(piece + b"\r", len(piece) + 4, follows=False)
                return len(chunk)
        return self._parse_lines(chunk)

    def _parse_lines(self, chunk: bytes) -> int:
        """The reference path: one message at a time, any line ending, Follows bodies, limits."""
        position = 0
        size = len(chunk)
        boundary = _BOUNDARY.search
        while position < size:
            skip = _BLANKS.match(chunk, position)
            if skip is not None:
                position = skip.end()
            if position >= size:
                break
            found = boundary(chunk, position)
            if found is None:
                return position
            end = found.end()
            body_end = found.start()
            follows = chunk.startswith(_RESPONSE_FOLLOWS, position)
            if follows and _follows_has_body(chunk[position:body_end]):
                marker = chunk.find(_END_COMMAND_BYTES, position)
                found = boundary(chunk, marker) if marker >= 0 else None
                if found is None:
                    return position  # the body goes on past this chunk
                end = found.end()
                body_end = found.start()
            else:
                follows = False
            self._emit(chunk[position:body_end], end - position, follows=follows)
            if self._error is not None:
                return size
            position = end
        return size

    def _emit(self, body: bytes, raw_size: int, *, follows: bool) -> None:
        """Turn one message into a Message: ``body`` is its bytes up to the "\n" that ends its last line."""
        if raw_size > self.max_buffer:
            self._fail(f"a message of {raw_size} bytes is longer than the {self.max_buffer}-byte buffer limit")
            return
        if raw_size > self.max_message:
            error = f"message of {raw_size} bytes is longer than the limit of {self.max_message}"
            self._queue.append(Message("malformed", (), error=error, raw_size=raw_size))
            return
        longest = max(map(len, body.split(b"\n")))
        if longest > self.max_line:
            error = f"a line of {longest} bytes is longer than the limit of {self.max_line}"
            self._queue.append(Message("malformed", (), error=error, raw_size=raw_size))
            return
        lines = _lines(body)
        output: tuple[str, ...] = ()
        if follows:
            lines, output = _split_follows(lines)
        pairs = _header_pairs(lines)
        error = ""
        for number, (line, (name, _value)) in enumerate(zip(lines, pairs, strict=True), 1):
            if not name or ":" not in line:
                error = f"line {number} has {'no colon' if ':' not in line else 'no header name'}: {line[:80]!r}"
                break
        headers = tuple([pair for line, pair in zip(lines, pairs, strict=True) if pair[0] and ":" in line])
        kind: MessageKind = "malformed"
        if not error:
            kind = self._classify(headers)
            if kind == "malformed":
                error = self._no_kind_error()
            elif kind == "response" and not follows:
                output = _output_lines(headers)
        self._queue.append(Message(kind, headers, output, error, raw_size))

    def _classify(self, headers: tuple[tuple[str, str], ...]) -> MessageKind:
        for name, _value in headers:
            lowered = _LOWER[name]
            for key, kind in self._kind_keys:
                if lowered == key:
                    return kind
        return "malformed"

    def _no_kind_error(self) -> str:
        if self.role == "client":
            return "message has neither an Event nor a Response header"
        return "message has no Action header"


def _output_lines(headers: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Values of the ``Output:`` headers (newer Asterisk's command output), if any."""
    return tuple([value for name, value in headers if _LOWER[name] == "output"])


def _follows_has_body(first_part: bytes) -> bool:
    """Whether a "Response: Follows" message's text up to its first empty line shows an old-style output body (so it
    runs to --END COMMAND--): it holds the end marker, or a line that is not one of the response's own headers."""
    if _END_COMMAND_BYTES in first_part:
        return True
    for line in first_part.split(b"\n"):
        header = _HEADER_LINE.match(line)
        if header is None or header.group(1).decode("ascii", "replace").lower() not in _FOLLOWS_HEADERS:
            return True
    return False


def _split_follows(lines: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """An old-style Follows message's header lines and its output lines (without the end marker)."""
    count = 0
    for line in lines:
        name, colon, _value = line.partition(":")
        if not colon or name.lower() not in _FOLLOWS_HEADERS or name.lower() == "output":
            break
        count += 1
    output = lines[count:]
    for index in range(len(output) - 1, -1, -1):
        line = output[index]
        if line.endswith(END_COMMAND):
            rest = line[: -len(END_COMMAND)]
            output = output[:index] + ([rest] if rest else [])
            break
    return lines[:count], tuple(output)


# The fast path fills a Message's slots directly (and leaves ``headers`` empty): the dataclass __init__ costs more.
_slot: Final[dict[str, Any]] = {**vars(_Lazy), **vars(Message)}
_set_kind: Final = _slot["kind"].__set__
_set_headers: Final = _slot["headers"].__set__
_set_raw_size: Final = _slot["raw_size"].__set__
_set_index: Final = _slot["_index"].__set__
_set_raw: Final = _slot["_raw"].__set__
