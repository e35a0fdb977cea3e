"""The wire format between the bridge and the CRM: call events (bridge -> CRM) and commands (CRM -> bridge).

Rules:
- One definition, imported by both sides; nothing here knows Django, AMI or CSTA. Every PBX link produces these.
- Every message is a frozen msgspec Struct tagged by ``type`` and carrying the schema version ``v``. A receiver refuses
  a message of a newer major version with a clear error instead of guessing.
- Every event has an ``event_id`` that is unique and *stable*: the same PBX happening translated twice (a replayed
  capture, a redelivered batch) yields the same id, so the CRM can store each event once.
- ``occurred_at`` is the PBX's own time (AMI ``Timestamp``), in seconds since the epoch; the arrival time stands in
  when the PBX sends none.
- A call is identified by ``call_id`` (the PBX's id for the whole call: Asterisk ``Linkedid``) together with the
  ``extension`` it concerns: one call that rings three agents is three legs with one ``call_id``. ``leg_id`` is the
  PBX's id of the agent's own channel (Asterisk ``Uniqueid``).

The schema is documented field by field in docs/wire.md.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import re
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
import msgspec.inspect

SCHEMA_VERSION: Final = 1

# Bounds keep a hostile or broken peer from making us store megabytes per field.
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_Ext = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
_Number = Annotated[str, msgspec.Meta(max_length=80)]
_Name = Annotated[str, msgspec.Meta(max_length=200)]
_Text = Annotated[str, msgspec.Meta(max_length=500)]
_Time = Annotated[float, msgspec.Meta(ge=0)]


class WireError(ValueError):
    """A message that is not valid wire format; the text says which field and why."""


class Direction(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"
    INTERNAL = "internal"


class TransferKind(enum.StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


class HungUpBy(enum.StrEnum):
    AGENT = "agent"  # the extension this leg belongs to hung up
    REMOTE = "remote"  # the other party hung up
    UNKNOWN = "unknown"


class PhoneSystem(enum.StrEnum):
    ASTERISK = "asterisk"
    TSAPI = "tsapi"
    TAPI = "tapi"


class _Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=False):
    v: int = SCHEMA_VERSION


class _Event(_Message, frozen=True, kw_only=True):
    event_id: _Id
    occurred_at: _Time


class _CallEvent(_Event, frozen=True, kw_only=True):
    call_id: _Id
    extension: _Ext
    leg_id: Annotated[str, msgspec.Meta(max_length=200)] = ""


class CallRinging(_CallEvent, frozen=True, kw_only=True, tag="call.ringing"):
    """A call reached an extension: it rings there (inbound) or the extension is dialling out (outbound)."""

    direction: Direction
    remote_number: _Number = ""
    remote_name: _Name = ""
    # For a call that came to this extension by transfer: the extension that transferred it.
    transferred_from: Annotated[str, msgspec.Meta(max_length=40)] = ""
    # For direction=internal: whether this extension is called (in) or calls (out); None when unknown.
    internal_direction: Literal["in", "out"] | None = None


class CallAnswered(_CallEvent, frozen=True, kw_only=True, tag="call.answered"):
    """The leg of ``extension`` was answered (inbound: the agent picked up; outbound: the far end did)."""


class CallTransferred(_CallEvent, frozen=True, kw_only=True, tag="call.transferred"):
    """``extension`` handed its call to ``target`` (an extension or a number)."""

    target: _Number
    kind: TransferKind


class CallEnded(_CallEvent, frozen=True, kw_only=True, tag="call.ended"):
    """The leg of ``extension`` ended. ``reconciled`` marks an end inferred after a lost PBX link, not seen live."""

    cause: int = 0
    cause_text: _Text = ""
    hung_up_by: HungUpBy = HungUpBy.UNKNOWN
    answered_elsewhere: bool = False
    reconciled: bool = False


class AgentState(_Event, frozen=True, kw_only=True, tag="agent.state"):
    """What the PBX reports of an extension: Do-Not-Disturb (the screen's Busy) and agent log-in. None = unknown."""

    extension: _Ext
    dnd: bool | None = None
    logged_in: bool | None = None
    device_state: Annotated[str, msgspec.Meta(max_length=40)] = ""


class LinkState(_Event, frozen=True, kw_only=True, tag="bridge.link"):
    """The bridge's own state: is it connected to the PBX, which kind, which extensions it follows."""

    phone_system: PhoneSystem
    pbx_connected: bool
    extensions: tuple[_Ext, ...] = ()
    bridge_version: Annotated[str, msgspec.Meta(max_length=40)] = ""
    detail: _Text = ""
    # Where the bridge listens for the CRM (S-5.7) and where it calls the CRM back (S-5.8), so the CRM can check
    # them against each resource's S-2.2-2.5 and say which disagrees (S-4.5).
    service_address: Annotated[str, msgspec.Meta(max_length=255)] = ""
    service_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    callback_address: Annotated[str, msgspec.Meta(max_length=255)] = ""
    callback_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    # Seconds until the next LinkState at the latest: the bridge repeats it as a heartbeat, and the CRM counts a
    # bridge silent for longer (plus a margin) as gone.
    heartbeat_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0


class LiveLeg(msgspec.Struct, frozen=True, kw_only=True):
    """One leg the PBX still has: the call and the extension it belongs to."""

    call_id: _Id
    extension: _Ext


class LiveCalls(_Event, frozen=True, kw_only=True, tag="bridge.calls"):
    """What the PBX has live, sent at every (re)connect once the bridge has caught up: every leg of the followed
    ``extensions`` (empty = every extension) that is not in ``legs`` is over, whatever the bridge remembers (it may
    have been restarted or killed). The CRM closes such legs as reconciled, at ``gone_at``: the last moment the bridge
    knew the PBX's state (or the leg's own last time, if later)."""

    extensions: tuple[_Ext, ...] = ()
    legs: Annotated[tuple[LiveLeg, ...], msgspec.Meta(max_length=20_000)] = ()
    gone_at: _Time


Event = CallRinging | CallAnswered | CallTransferred | CallEnded | AgentState | LinkState | LiveCalls
CALL_EVENTS: Final = (CallRinging, CallAnswered, CallTransferred, CallEnded)


# ---- commands, CRM -> bridge ------------------------------------------------------------------------------------


class _Command(_Message, frozen=True, kw_only=True):
    command_id: _Id
    extension: _Ext


class Dial(_Command, frozen=True, kw_only=True, tag="dial"):
    """Call ``number`` from ``extension``. The CRM has already applied the call prefix (S-3.8)."""

    number: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]


class Answer(_Command, frozen=True, kw_only=True, tag="answer"):
    call_id: Annotated[str, msgspec.Meta(max_length=200)] = ""


class Hangup(_Command, frozen=True, kw_only=True, tag="hangup"):
    call_id: Annotated[str, msgspec.Meta(max_length=200)] = ""


class Transfer(_Command, frozen=True, kw_only=True, tag="transfer"):
    target: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    kind: TransferKind = TransferKind.BLIND
    call_id: Annotated[str, msgspec.Meta(max_length=200)] = ""


class SetBusy(_Command, frozen=True, kw_only=True, tag="busy"):
    busy: bool


class AgentLogin(_Command, frozen=True, kw_only=True, tag="agent.login"):
    agent_id: Annotated[str, msgspec.Meta(max_length=40)] = ""
    password: Annotated[str, msgspec.Meta(max_length=200)] = ""  # never logged: see __repr__

    def __repr__(self) -> str:
        return f"AgentLogin(command_id={self.command_id!r}, extension={self.extension!r}, agent_id={self.agent_id!r})"


class AgentLogout(_Command, frozen=True, kw_only=True, tag="agent.logout"):
    pass


Command = Dial | Answer | Hangup | Transfer | SetBusy | AgentLogin | AgentLogout


class CommandResult(msgspec.Struct, frozen=True, kw_only=True):
    """The bridge's answer to a command. ``error_id`` is stable (``no_such_call``, ``pbx_refused``,
    ``not_supported``, ``pbx_unavailable``, ``invalid_command``, ``timeout``); ``message`` is for people."""

    command_id: str
    ok: bool
    error_id: str = ""
    message: str = ""
    v: int = SCHEMA_VERSION


class EventBatch(msgspec.Struct, frozen=True, kw_only=True):
    """What the bridge posts to the CRM: events in the order they happened."""

    bridge_id: _Id
    events: Annotated[list[Event], msgspec.Meta(max_length=5000)]
    v: int = SCHEMA_VERSION


class RefusedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a batch that the CRM refused on its own: ``index`` is its position in the batch (from 0),
    ``event_id`` its id when the CRM could read one (else ""), ``reason`` says what is wrong with it."""

    index: int
    event_id: str = ""
    reason: str = ""


class BatchReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The CRM's answer to a batch, per event: each one is stored (``accepted``), was already (``duplicates``) or is
    refused on its own with a reason (``refused``), so accepted + duplicates + len(refused) == the batch's size.
    A CRM older than ``refused`` never sends it (an empty list)."""

    accepted: int
    duplicates: int
    refused: list[RefusedEvent] = msgspec.field(default_factory=list)
    v: int = SCHEMA_VERSION


# ---- encoding ---------------------------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
_event_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_command_decoder: msgspec.json.Decoder[Command] = msgspec.json.Decoder(Command)
_batch_decoder = msgspec.json.Decoder(EventBatch)
_result_decoder = msgspec.json.Decoder(CommandResult)
_receipt_decoder = msgspec.json.Decoder(BatchReceipt)


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


def to_builtins(message: msgspec.Struct) -> dict[str, object]:
    result = msgspec.to_builtins(message)
    assert isinstance(result, dict)
    return result


_T = TypeVar("_T")


def _decode(decoder: msgspec.json.Decoder[_T], data: bytes | str, what: str) -> _T:
    try:
        message = decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise WireError(f"invalid {what}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise WireError(f"{what} is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise WireError(
            f"{what} is not valid UTF-8 (byte {exc.start}); send JSON encoded as UTF-8"
        ) from None
    version = getattr(message, "v", SCHEMA_VERSION)
    if version > SCHEMA_VERSION:
        raise WireError(
            f"{what} has schema version {version}, this side understands up to {SCHEMA_VERSION}; upgrade it"
        )
    return message


def decode_event(data: bytes | str) -> Event:
    return _decode(_event_decoder, data, "event")


def decode_command(data: bytes | str) -> Command:
    return _decode(_command_decoder, data, "command")


def decode_batch(data: bytes | str) -> EventBatch:
    return _decode(_batch_decoder, data, "event batch")


def decode_result(data: bytes | str) -> CommandResult:
    return _decode(_result_decoder, data, "command result")


def decode_receipt(data: bytes | str) -> BatchReceipt:
    return _decode(_receipt_decoder, data, "batch receipt")


# ---- checking and bounding events ------------------------------------------------------------------------------
#
# msgspec checks the Meta bounds above only when it *decodes*; a Struct built in Python (a translator) is not checked.
# Both sides therefore check events at the edge: the bridge before an event enters its outbox (check_event, then
# bounded() to repair what a translator got wrong), the CRM for every event it receives (check_event).

EARLIEST_TIME: Final = 946_684_800.0  # 2000-01-01T00:00:00Z: no PBX event of this product is older
MAX_AHEAD: Final = 86_400.0  # an event time more than a day ahead of the receiver's clock is a broken clock
_TIME_FIELDS: Final = ("occurred_at", "gone_at")


def time_problem(seconds: float, now: float, what: str = "occurred_at") -> str:
    """Why ``seconds`` is not a sane event time for a receiver whose clock says ``now``; "" when it is."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return f"{what} is not a number of seconds"
    if not math.isfinite(seconds):
        return f"{what} is {seconds!r}, not a finite number of seconds since 1970"
    if seconds < EARLIEST_TIME:
        return f"{what} {seconds!r} is before 2000-01-01; check the PBX's clock"
    if seconds > now + MAX_AHEAD:
        return (
            f"{what} {seconds!r} is {(seconds - now) / 3600:.4g} h ahead of this clock (more than "
            f"{MAX_AHEAD / 3600:.0f} h); check the PBX's and this machine's clocks (NTP)"
        )
    return ""


def check_event(event: Event, now: float, encoded: bytes | None = None) -> None:
    """Raise WireError saying what is wrong with ``event`` beyond its schema: a time out of range (time_problem) or a
    NUL character in a text (no database stores one). ``encoded`` is wire.encode(event), when the caller has it.
    (On the outbox's path for every event: the common case is two comparisons and one search.)"""
    when = event.occurred_at
    try:
        sane = EARLIEST_TIME <= when <= now + MAX_AHEAD  # NaN fails this too
    except TypeError:  # a Struct built in Python with something else than a number
        sane = False
    if not sane:
        raise WireError(time_problem(when, now) or f"occurred_at {when!r} is not a number of seconds")
    if isinstance(event, LiveCalls):
        problem = time_problem(event.gone_at, now, "gone_at")
        if problem:
            raise WireError(problem)
    if b"\\u0000" in (encoded if encoded is not None else encode(event)):
        raise WireError("a text field contains a NUL character (\\u0000); remove it")


def checked_event(encoded: bytes, now: float) -> Event:
    """The event in ``encoded`` if it passes the schema (all bounds) and check_event; raises WireError otherwise."""
    event = decode_event(encoded)
    check_event(event, now, encoded)
    return event


_events_decoder: msgspec.json.Decoder[list[Event]] = msgspec.json.Decoder(list[Event])


def all_valid(encoded: list[bytes]) -> bool:
    """Whether every one of ``encoded`` (wire.encode of events) passes the schema with all its bounds: one decode for
    them all, the cheap check of many events (times and NUL characters are check_event's)."""
    try:
        events = _events_decoder.decode(b"[" + b",".join(encoded) + b"]")
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return False
    return all(event.v <= SCHEMA_VERSION for event in events)


def _bound(value: Any, info: msgspec.inspect.Type, now: float, name: str) -> Any:
    if isinstance(info, msgspec.inspect.StrType) and isinstance(value, str):
        value = value.replace("\x00", "")
        if info.max_length is not None and len(value) > info.max_length:
            value = value[: info.max_length]
        if info.min_length and len(value) < info.min_length:
            value = value.ljust(info.min_length, "?")
        return value
    if isinstance(info, msgspec.inspect.FloatType) and name in _TIME_FIELDS:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not time_problem(value, now, name):
            return value
        return now if not time_problem(now, now) else value  # a clock that is itself absurd replaces nothing
    if isinstance(info, msgspec.inspect.VarTupleType) and isinstance(value, tuple):
        if info.max_length is not None:
            value = value[: info.max_length]
        return tuple(_bound(item, info.item_type, now, "") for item in value)
    if isinstance(info, msgspec.inspect.StructType) and isinstance(value, msgspec.Struct):
        changes = {}
        for field in info.fields:
            old = getattr(value, field.name)
            new = _bound(old, field.type, now, field.name)
            if new is not old:
                changes[field.name] = new
        return msgspec.structs.replace(value, **changes) if changes else value
    return value


def sane_now(now: float) -> float:
    """``now`` to judge event times by, or infinity (no upper bound) when this clock is itself not a sane time
    (a machine whose clock says 1970): then a PBX's correct times are not refused for it."""
    return now if not time_problem(now, now) else math.inf


def bounded(event: Event, now: float) -> Event:
    """``event`` with every text cut to its bound (NUL characters removed) and every time out of range replaced by
    ``now`` (when ``now`` is itself sane): what a bridge keeps of an event its translator built wrong, rather than
    losing the call."""
    result: Event = _bound(event, msgspec.inspect.type_info(type(event)), now, "")
    return result


class RawBatch(msgspec.Struct, frozen=True, kw_only=True):
    """An EventBatch whose events are still undecoded, so that each one can be judged on its own."""

    bridge_id: _Id
    events: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=5000)]
    v: int = SCHEMA_VERSION


class _EventId(msgspec.Struct, kw_only=True):
    event_id: str = ""


_raw_batch_decoder = msgspec.json.Decoder(RawBatch)
_event_id_decoder = msgspec.json.Decoder(_EventId)


def decode_raw_batch(data: bytes) -> RawBatch:
    """The batch's envelope, its events undecoded. The whole body must be UTF-8 (a Raw event is not checked)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"event batch is not valid UTF-8 (byte {exc.start}); send JSON encoded as UTF-8") from None
    return _decode(_raw_batch_decoder, data, "event batch")


def event_id_of(raw: bytes | msgspec.Raw) -> str:
    """The ``event_id`` of an event that may be invalid otherwise; "" when it has none that can be read."""
    try:
        return _event_id_decoder.decode(raw).event_id[:200]
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return ""


def json_schema() -> dict[str, object]:
    """The JSON Schema of events and commands, for docs and for other implementations."""
    roots, components = msgspec.json.schema_components([EventBatch, Command, CommandResult, BatchReceipt])
    return {"anyOf": list(roots), "$defs": components}


# ---- authentication: both directions sign every request -------------------------------------------------------------
#
# The bridge and the CRM share a secret per bridge. A request carries ``X-Callcenter-Bridge: <bridge id>`` and
# ``X-Callcenter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``. The receiver recomputes the
# HMAC, compares in constant time and refuses a timestamp more than SIGNATURE_TOLERANCE seconds away from its clock,
# so a captured request cannot be replayed later and the secret itself never crosses the network.

BRIDGE_HEADER: Final = "X-Callcenter-Bridge"
# Sent by a bridge that reads BatchReceipt.refused. Without it (an older bridge) a batch with refused events is
# answered 400 invalid_batch (its valid events stored all the same), which such a bridge splits down to the event.
RECEIPT_HEADER: Final = "X-Callcenter-Receipt"
PER_EVENT_RECEIPT: Final = "per-event"
SIGNATURE_HEADER: Final = "X-Callcenter-Signature"
SIGNATURE_TOLERANCE: Final = 300
MIN_SECRET_LENGTH: Final = 16


class AuthError(Exception):
    """A request whose signature is missing, malformed, stale or wrong; the text says which (never the secret)."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"a bridge secret has at least {MIN_SECRET_LENGTH} characters")
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


_MAX_SIGNATURE_HEADER: Final = 200  # "t=" + 10 digits + ",v1=" + 64 hex digits is 80; room for spaces
_HEX64: Final = re.compile(r"[0-9a-fA-F]{64}")
_MALFORMED: Final = f"malformed {SIGNATURE_HEADER} header; expected t=<seconds>,v1=<64 hex digits>"


def verify(secret: str, header: str | None, body: bytes, now: float, tolerance: int = SIGNATURE_TOLERANCE) -> None:
    """Raise AuthError unless ``header`` signs ``body`` with ``secret`` at a time within ``tolerance`` of ``now``.
    Every part of the header is bounded before it is used: no value of it raises anything but AuthError."""
    if not header:
        raise AuthError(f"missing {SIGNATURE_HEADER} header")
    if len(header) > _MAX_SIGNATURE_HEADER:
        raise AuthError(f"{_MALFORMED} (it has {len(header)} characters, at most {_MAX_SIGNATURE_HEADER})")
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals:
            raise AuthError(_MALFORMED)
        if name in fields:
            raise AuthError(f"{_MALFORMED} ({name[:10]!r} appears twice)")
        fields[name] = value.strip()
    stamp, given = fields.get("t"), fields.get("v1")
    if stamp is None or given is None:
        raise AuthError(_MALFORMED)
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise AuthError(f"{_MALFORMED} (t must be whole seconds since 1970, got {stamp[:20]!r})")
    if not _HEX64.fullmatch(given):
        raise AuthError(f"{_MALFORMED} (v1 must be 64 hex digits)")
    timestamp = int(stamp)
    if not math.isfinite(now) or abs(now - timestamp) > tolerance:
        raise AuthError(
            f"signature timestamp is {int(now - timestamp)} s away from this clock (more than {tolerance} s); "
            "check both clocks (NTP)"
        )
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        raise AuthError("signature does not match; check that both sides have the same bridge secret")
