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
from typing import Annotated, Final, Literal, TypeVar

import msgspec

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


class BatchReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The CRM's confirmation: every event id of the batch is stored (``accepted``) or was already (``duplicates``)."""

    accepted: int
    duplicates: int
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


def verify(secret: str, header: str | None, body: bytes, now: float, tolerance: int = SIGNATURE_TOLERANCE) -> None:
    if not header:
        raise AuthError(f"missing {SIGNATURE_HEADER} header")
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError) as exc:
        raise AuthError(f"malformed {SIGNATURE_HEADER} header; expected t=<seconds>,v1=<hex>") from exc
    if abs(now - timestamp) > tolerance:
        raise AuthError(
            f"signature timestamp is {int(now - timestamp)} s away from this clock (more than {tolerance} s); "
            "check both clocks (NTP)"
        )
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise AuthError("signature does not match; check that both sides have the same bridge secret")
