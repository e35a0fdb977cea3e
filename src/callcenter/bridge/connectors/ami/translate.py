"""AMI messages -> wire call events, for Asterisk 16-22. Pure: no I/O, no clock (the arrival time is passed in).

Everything that affects the call state lives in this module: the transition table ``TRANSITIONS`` says, for each
state of an agent's leg and each trigger, the next state and the wire events to emit. The handlers below only turn
AMI events into facts about channels and into triggers.

Rules
- A *leg* is one agent's own channel in one call. Calls are correlated by ``Linkedid`` (the wire ``call_id``, fixed
  when the leg is first seen) and legs by ``Uniqueid`` (``leg_id``). One call that rings three agents is three legs.
- An agent's channel is recognised by ``ChannelRule`` patterns on the channel name, first match wins. A rule takes the
  extension from the pattern's ``ext`` group (``PJSIP/100-0000002a`` is extension 100's phone) or, for channels whose
  name says nothing about the agent, from ``CallerIDNum`` (the lab's ``Local/<n>@from-internal-XXXX;2``). Profiles:
  ``production`` (PJSIP/SIP/IAX2 phones) and ``lab`` (the Local-channel phones of the fixture captures).
- Local channel halves never double-count: only one half matches a rule, and a half whose partner already carries a
  leg for the same extension never becomes a second leg.
- Direction: a leg that is dialled (created Down, or the destination of a ``DialBegin``) is incoming; a leg that
  dials (created in state Ring, or the caller of a ``DialBegin``) is outgoing. Either is *internal* when the other
  party is internal: a number of exactly ``internal_digits`` digits (S-3.9), or an agent channel of the same call.
  A transferred outside call stays inbound, with the original caller's number and ``transferred_from``.
- Transfers: ``BlindTransfer`` gives the transferer's leg a ``call.transferred`` and every leg that rings later in
  that call ``transferred_from``. So does a ``Redirect`` of the other party (by us on an Asterisk without
  BlindTransfer, by an operator panel, by the dialplan): a channel that leaves an agent's bridge for another place
  in the dialplan (its context/exten at ``BridgeLeave`` differ from those at ``BridgeEnter``) with no hang-up asked
  on either side was sent on to that extension. A consultation inside a call (an agent that already talked in this
  call dials again, itself or through a Local channel carrying its caller id: AMI Atxfer, Asterisk's
  attended-transfer feature) rings as the call being handed over. An ``AttendedTransfer`` that joins two calls (a
  phone's transfer key) ends the target's consultation leg and starts, answered, its leg of the original call.
- Ringing of an incoming leg is detected by ``DialBegin`` always, and also by ``Newchannel`` and by ``Newstate``
  (Ringing) when those switches are on (S-5.14). A switch only *arms* the leg; the ringing event leaves as soon as
  the caller's number is known, so a call is announced once, whichever events announce it. An outgoing leg rings
  when it dials (``DialBegin``).
- Click-to-dial: a phone rung by an ``Originate`` (a ``DialBegin`` without a caller, or a Uniqueid announced with
  ``expect_originate``, i.e. Originate's ``ChannelId``) is no incoming call; it rings as outgoing when it dials.
- Answered: an incoming leg going Up (``Newstate``), its ``DialEnd`` ANSWER or its ``BridgeEnter``; an outgoing leg
  when its ``DialEnd`` says ANSWER (a dialplan may answer the caller's channel early, so its Up means nothing).
- Who hung up: the first sign of the end on the agent's side (a hang-up request on the leg or its Local partner, a
  transfer) makes it ``agent``; the first on the other side (a party of the leg's bridge hanging up or leaving, or a
  ``DialEnd`` that ends the ringing, cause 26) makes it ``remote``. ``answered_elsewhere`` is cause 26. A hang-up
  cause of 0 after an unanswered dial takes the dial status's cause (NOANSWER -> 19, BUSY -> 17, ...).
- DND as on FreePBX, only from what says DND: device ``Custom:DND<ext>`` BUSY/NOT_INUSE, ``ExtensionStatus`` of a
  hint that is ``Custom:DND<ext>`` alone, and ``DBGetResponse`` of family ``DND``. A hint that joins the phone and its
  DND (``PJSIP/100&Custom:DND100``) is Busy whenever the phone is in a call, so its changes only make the extension
  due for a ``DBGet DND/<ext>`` (``take_dnd_checks``), never DND by themselves. An ``AgentState`` leaves only when
  the known DND state of a followed extension changes.
- Timestamps: the ``Timestamp`` header (``timestampevents=yes``), else the arrival time. A Timestamp that is not a
  sane event time (wire.time_problem: not a finite number, before 2000, more than a day ahead of this machine's
  clock) is replaced by the arrival time, with one warning line: the call goes on, with a time the CRM accepts.
- Calls in progress when the bridge logs in: a channel first reported by an event other than ``Newchannel`` (the
  PBX goes on reporting its calls between the login and its list of live channels, and may send events that
  happened before the list after it) has no known start or direction: its item in the list adopts it as one first
  seen there (``catch_up``). One that hangs up before a list told of it (first seen at its hang-up, even) is
  announced as it ends, from when it was first seen. A channel that hung up never comes back on that connection: a
  late event for it is ignored. So every followed call live at the login is announced, in whatever order the events
  and the list come.
- Event ids are stable: ``ami:<Linkedid>:<Uniqueid>:<kind>``, so the same capture translated twice gives the same
  ids and the CRM stores each event once.
- Bad input never raises: malformed messages, unknown events, events for unknown channels and out-of-order events
  are logged (logger ``callcenter.bridge.ami``) and skipped. State is bounded: a channel is forgotten at its hang-up,
  a call with its last channel, and at most ``max_channels`` channels are tracked (the oldest go first).
"""

from __future__ import annotations

import enum
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from callcenter import numbers, wire
from callcenter.bridge.connectors.ami.codec import Message

log = logging.getLogger("callcenter.bridge.ami")

# ---- configuration ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelRule:
    """Recognises an agent's channel by its name.

    ``pattern`` is a regular expression matched against the whole channel name. With ``extension_from="name"`` it must
    have a group named ``ext`` holding the extension; with ``"callerid"`` the extension is the channel's
    ``CallerIDNum`` (for channels whose name does not say whose they are).
    """

    pattern: str
    extension_from: Literal["name", "callerid"] = "name"

    def compile(self) -> re.Pattern[str]:
        try:
            regex = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(
                f"agent channel pattern {self.pattern!r} is not a valid regular expression: {exc}"
            ) from exc
        if self.extension_from == "name" and "ext" not in regex.groupindex:
            raise ValueError(
                f"agent channel pattern {self.pattern!r} has no group named 'ext' to take the extension from; "
                "add one, e.g. (?P<ext>\\d+), or use extension_from='callerid'"
            )
        return regex


PRODUCTION_RULES: Final = (ChannelRule(r"^(?:PJSIP|SIP|IAX2)/(?P<ext>\d+)-[0-9A-Za-z]+$"),)
LAB_RULES: Final = (
    # agent 10x's phone as dialled: Local/10x@phones-XXXX;1 (the ;2 half is the inside of the phone)
    ChannelRule(r"^Local/(?P<ext>\d+)@phones-[0-9a-f]+;1$"),
    # an agent's outgoing call: Local/<number>@from-internal-XXXX;2 with CallerIDNum = the agent
    ChannelRule(r"^Local/[^@;]+@from-internal-[0-9a-f]+;2$", extension_from="callerid"),
)
PROFILES: Final[Mapping[str, tuple[ChannelRule, ...]]] = {"production": PRODUCTION_RULES, "lab": LAB_RULES}


@dataclass(frozen=True, slots=True)
class TranslatorConfig:
    """What the translator follows and how it recognises agents.

    ``extensions``: the extensions followed; empty = every agent channel (then, with ``internal_digits`` set, only
    extensions of that many digits). One extension is a desktop bridge (S-5.14 "Extension to follow"), many a server
    bridge. ``channels`` (S-5.14 "Channel"): devices an agent channel must belong to, e.g. ``PJSIP/100``, or a whole
    technology (``PJSIP``); empty = any. ``contexts`` (S-5.14 "Context"): dialplan contexts the agent channel must be
    in when recognised; empty = any.
    """

    extensions: frozenset[str] = frozenset()
    channel_rules: tuple[ChannelRule, ...] = PRODUCTION_RULES
    internal_digits: int = 0
    channels: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()
    process_newchannel: bool = True
    process_newstate: bool = True
    max_channels: int = 10_000

    def __post_init__(self) -> None:
        if not self.channel_rules:
            raise ValueError("no agent channel rules: give at least one, or use a profile (production, lab)")
        for rule in self.channel_rules:
            rule.compile()
        if self.internal_digits and not (
            numbers.MIN_INTERNAL_DIGITS <= self.internal_digits <= numbers.MAX_INTERNAL_DIGITS
        ):
            raise ValueError(
                f"internal digits {self.internal_digits} is out of range; use 0 (unknown) or "
                f"{numbers.MIN_INTERNAL_DIGITS}-{numbers.MAX_INTERNAL_DIGITS}"
            )
        if self.max_channels < 10:
            raise ValueError(f"max_channels {self.max_channels} is too small to follow a call; use at least 10")
        if any(not ext for ext in self.extensions):
            raise ValueError("an empty extension cannot be followed")

    @classmethod
    def for_profile(cls, profile: str, **options: Any) -> TranslatorConfig:
        """The configuration of a named channel profile (``production`` or ``lab``) with other options."""
        try:
            rules = PROFILES[profile]
        except KeyError:
            raise ValueError(f"unknown channel profile {profile!r}; use one of: {', '.join(PROFILES)}") from None
        return replace(cls(channel_rules=rules), **options)


# ---- the transition table -----------------------------------------------------------------------------------------


class LegState(enum.Enum):
    NEW = "new"  # recognised as an agent's leg, nothing announced
    ARMED = "armed"  # a switch saw it ring; announced as soon as the caller's number is known
    RINGING = "ringing"
    ANSWERED = "answered"
    TRANSFERRED = "transferred"
    ENDED = "ended"


class Trigger(enum.Enum):
    ARM = "arm"
    ALERT = "alert"
    ANSWER = "answer"
    DISARM = "disarm"  # not a call to the agent after all (an Originate rings the agent's own phone)
    TRANSFER = "transfer"
    END = "end"


_S, _T = LegState, Trigger
RINGING_EVENT: Final = "ringing"
ANSWERED_EVENT: Final = "answered"
TRANSFERRED_EVENT: Final = "transferred"
ENDED_EVENT: Final = "ended"

# (state, trigger) -> (next state, events to emit). A pair not listed is out of order: logged and ignored.
TRANSITIONS: Final[Mapping[tuple[LegState, Trigger], tuple[LegState, tuple[str, ...]]]] = {
    (_S.NEW, _T.ARM): (_S.ARMED, ()),
    (_S.NEW, _T.ALERT): (_S.RINGING, (RINGING_EVENT,)),
    (_S.NEW, _T.ANSWER): (_S.ANSWERED, (RINGING_EVENT, ANSWERED_EVENT)),
    (_S.NEW, _T.END): (_S.ENDED, ()),  # never rang: nothing to report
    (_S.NEW, _T.DISARM): (_S.NEW, ()),
    (_S.ARMED, _T.ARM): (_S.ARMED, ()),
    (_S.ARMED, _T.ALERT): (_S.RINGING, (RINGING_EVENT,)),
    (_S.ARMED, _T.ANSWER): (_S.ANSWERED, (RINGING_EVENT, ANSWERED_EVENT)),
    (_S.ARMED, _T.END): (_S.ENDED, (RINGING_EVENT, ENDED_EVENT)),
    (_S.ARMED, _T.DISARM): (_S.NEW, ()),
    (_S.RINGING, _T.ARM): (_S.RINGING, ()),  # a second sign of the same ringing: one call is one call
    (_S.RINGING, _T.ALERT): (_S.RINGING, ()),
    (_S.RINGING, _T.ANSWER): (_S.ANSWERED, (ANSWERED_EVENT,)),
    (_S.RINGING, _T.END): (_S.ENDED, (ENDED_EVENT,)),
    (_S.ANSWERED, _T.ARM): (_S.ANSWERED, ()),
    (_S.ANSWERED, _T.ALERT): (_S.ANSWERED, ()),
    (_S.ANSWERED, _T.ANSWER): (_S.ANSWERED, ()),
    (_S.ANSWERED, _T.TRANSFER): (_S.TRANSFERRED, (TRANSFERRED_EVENT,)),
    (_S.ANSWERED, _T.END): (_S.ENDED, (ENDED_EVENT,)),
    (_S.TRANSFERRED, _T.ARM): (_S.TRANSFERRED, ()),
    (_S.TRANSFERRED, _T.ALERT): (_S.TRANSFERRED, ()),
    (_S.TRANSFERRED, _T.ANSWER): (_S.TRANSFERRED, ()),
    (_S.TRANSFERRED, _T.END): (_S.ENDED, (ENDED_EVENT,)),
}

# ---- AMI vocabulary -------------------------------------------------------------------------------------------------

STATE_DOWN: Final = 0
STATE_RING: Final = 4
STATE_RINGING: Final = 5
STATE_UP: Final = 6

CAUSE_ANSWERED_ELSEWHERE: Final = 26
# Q.850 causes standing in for hang-up cause 0 after a dial that ended without an answer.
_DIAL_STATUS_CAUSES: Final[Mapping[str, tuple[int, str]]] = {
    "NOANSWER": (19, "User alerting, no answer"),
    "BUSY": (17, "User busy"),
    "CONGESTION": (34, "Circuit/channel congestion"),
    "CHANUNAVAIL": (20, "Subscriber absent"),
}
# Dial statuses that end an outgoing leg's ringing from the far side.
_FAR_END_DIAL_STATUSES: Final = frozenset(_DIAL_STATUS_CAUSES)

# Known events that carry nothing the call state needs (skipped without a log line).
_NOISE: Final = frozenset(
    {
        "varset", "newexten", "cdr", "cel", "dialstate", "localbridge", "bridgecreate", "bridgemerge",
        "bridgeinfochannel", "bridgeinfocomplete", "fullybooted", "originateresponse", "hold", "unhold",
        "musiconholdstart", "musiconholdstop", "newaccountcode", "peerstatus", "contactstatus", "endpointlist",
        "endpointlistcomplete", "registry", "reload", "rtcpsent", "rtcpreceived", "successfulauth",
        "challengesent", "invalidaccountid", "coreshowchannel", "coreshowchannelscomplete", "status",
        "statuscomplete", "dtmfbegin", "dtmfend", "agentcalled", "agentconnect", "agentcomplete",
        "agentringnoanswer", "queuecallerjoin", "queuecallerleave", "queuecallerabandon", "queuememberstatus",
        "userevent", "shutdown", "channeltalkingstart", "channeltalkingstop", "newpeeraccount",
        "dbgetcomplete", "dbgettreeresponse", "devicestatelistcomplete", "extensionstatelistcomplete",
        "presencestatechange", "presencestatus", "mixmonitorstart", "mixmonitorstop", "varsetcomplete",
        "hangupcomplete",
    }
)
# Events about one channel's details: useless for a channel no rule recognises (its name never changes the verdict).
_CHANNEL_DETAIL_EVENTS: Final = frozenset({"newstate", "newcallerid", "newconnectedline"})
_MAX_UNKNOWN_NAMES: Final = 256
_MAX_ID: Final = 64  # Asterisk ids are ~20 characters; anything much longer is not one
_UNKNOWN_VALUES: Final = frozenset({"<unknown>", "<Unknown>", "unknown"})
_DIALABLE: Final = re.compile(r"^\+?[0-9*#]+$")
_DND_DEVICE: Final = re.compile(r"^custom:dnd(?P<ext>[^&\s]+)$", re.IGNORECASE)
_DND_IN_HINT: Final = re.compile(r"custom:dnd(?P<ext>[^&,\s]+)", re.IGNORECASE)
_DND_ON_VALUES: Final = frozenset({"YES", "Y", "1", "TRUE", "ON", "DND"})
_EXTENSION_BUSY: Final = 2
_EXTENSION_NOT_BUSY: Final = frozenset({0, 1, 4, 8, 9, 16, 17})

# The wire format's own bounds (see wire.py): values are clipped to them so every event stays valid.
_MAX_EXT, _MAX_NUMBER, _MAX_NAME, _MAX_TEXT = 40, 80, 200, 500


def _clean(value: str | None) -> str:
    """A header value without the '<unknown>' Asterisk writes for 'none'."""
    if not value:
        return ""
    value = value.strip()
    return "" if value in _UNKNOWN_VALUES else value


def _to_int(value: str | None, default: int = -1) -> int:
    if not value:
        return default
    head = value.strip().split(" ", 1)[0].split("(", 1)[0]  # "16", "16 (Normal Clearing)", "-1"
    try:
        return int(head)
    except ValueError:
        return default


def _headers(message: Message) -> dict[str, str]:
    """The message's headers by lower-case key; the first value of a repeated key wins (as Message.get)."""
    headers = message.headers
    if not headers:
        return {}
    names, values = zip(*reversed(headers), strict=True)
    return dict(zip(map(str.lower, names), values, strict=True))


def _device_of(name: str) -> str:
    """``PJSIP/100-0000002a`` -> ``PJSIP/100``; ``Local/100@phones-00000001;1`` -> ``Local/100@phones``."""
    base = name.split(";", 1)[0]
    head, sep, _tail = base.rpartition("-")
    return head if sep else base


def _partner_name(name: str) -> str:
    """The other half of a Local channel (``...;1`` <-> ``...;2``), or '' for any other channel."""
    if name.endswith(";1"):
        return name[:-1] + "2"
    if name.endswith(";2"):
        return name[:-1] + "1"
    return ""


# ---- tracked state ------------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Leg:
    extension: str
    call_id: str
    uniqueid: str
    direction: Literal["in", "out", ""]
    state: LegState = LegState.NEW
    remote_number: str = ""
    remote_name: str = ""
    dialer: str = ""  # Uniqueid of the channel that dialled this leg
    handed_over: bool = False  # started by an attended transfer, with dial_remote the party handed over
    dial_remote: tuple[str, str] | None = None  # (number, name) of the channel that dialled this leg
    dialer_is_agent: bool = False
    dialed_number: str = ""
    dest_is_agent: bool = False
    transferred_from: str = ""
    transfer_target: str = ""
    transfer_kind: wire.TransferKind = wire.TransferKind.BLIND
    transfers: int = 0
    dial_status: str = ""
    ended_by: wire.HungUpBy | None = None
    cause: int = 0
    cause_text: str = ""
    reconciled: bool = False
    last_at: float = 0.0  # the time of its latest event


@dataclass(slots=True, eq=False)
class _Channel:
    uniqueid: str
    name: str
    linkedid: str
    state: int = -1
    first_state: int = -1
    context: str = ""
    first_exten: str = ""
    caller_num: str = ""
    caller_name: str = ""
    connected_num: str = ""
    connected_name: str = ""
    bridge: str = ""
    rule: int = -2  # index of the matching ChannelRule; -1 none; -2 not checked yet
    agent_ext: str = ""  # the agent extension this channel belongs to (followed or not); '' = not an agent's
    leg: _Leg | None = None
    announced: bool = False  # its start is accounted for: seen in a Newchannel event, or adopted from a list
    seen_at: float = 0.0  # the time of the first event that told of it
    originated: bool = False  # created by an Originate (click-to-dial), not by a caller
    originate_number: str = ""  # the number our own Originate asked it to call
    self_linked: bool = False  # its Linkedid is its own Uniqueid: the first channel of its call
    optimized: bool = False  # a Local half being optimised away: its hang-up says nothing about the call
    talked_with: tuple[str, str] | None = None  # (number, name) of the first party an agent's channel was bridged to
    place: tuple[str, str] = ("", "")  # (context, exten) where it was when it entered its bridge
    hanging_up: bool = False  # a (soft) hang-up was requested


@dataclass(slots=True, eq=False)
class _Call:
    linkedid: str
    channels: set[str] = field(default_factory=set)
    transferred_from: str = ""
    transferee: str = ""  # Uniqueid of the channel a blind transfer sent on (it dials the target itself)


@dataclass(frozen=True, slots=True)
class LegInfo:
    """A read-only view of a live leg, for commands: ``channel`` is the agent's own channel (to hang up, answer or
    transfer), ``peers`` the other parties of its bridge (the caller to redirect)."""

    extension: str
    call_id: str
    leg_id: str
    channel: str
    state: LegState
    direction: Literal["in", "out", ""]
    peers: tuple[str, ...]


Handler = Callable[[dict[str, str], float, str, list[wire.Event]], None]


class Translator:
    """Feed it every AMI message in arrival order; it returns the wire events each one causes."""

    def __init__(self, config: TranslatorConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or TranslatorConfig()
        self._clock = clock  # only to refuse absurd PBX times (wire.time_problem); events carry the PBX's own
        self._rules = [(rule.compile(), rule.extension_from) for rule in self.config.channel_rules]
        self._channels: dict[str, _Channel] = {}
        self._names: dict[str, str] = {}  # channel name -> uniqueid
        self._calls: dict[str, _Call] = {}
        self._bridges: dict[str, set[str]] = {}
        self._dnd: dict[str, bool] = {}
        self._expected_originates: dict[str, str] = {}
        self._dnd_checks: dict[str, None] = {}  # extensions whose DND state the PBX should be asked for
        self._unknown_names: set[str] = set()
        self.pbx_time = 0.0  # the latest PBX Timestamp seen
        self._now = 0.0  # the time of the message being handled (a new channel's ``seen_at``)
        self._hung_up: dict[str, None] = {}  # Uniqueids of the channels hung up lately: no late event revives one
        self._handlers: dict[str, Handler] = {
            "newchannel": self._on_newchannel,
            "newstate": self._on_newstate,
            "newcallerid": self._on_caller_id,
            "newconnectedline": self._on_caller_id,
            "rename": self._on_rename,
            "dialbegin": self._on_dial_begin,
            "dialend": self._on_dial_end,
            "bridgeenter": self._on_bridge_enter,
            "bridgeleave": self._on_bridge_leave,
            "bridgedestroy": self._on_bridge_destroy,
            "hanguprequest": self._on_hangup_request,
            "softhanguprequest": self._on_hangup_request,
            "hangup": self._on_hangup,
            "blindtransfer": self._on_blind_transfer,
            "attendedtransfer": self._on_attended_transfer,
            "localoptimizationbegin": self._on_local_optimization,
            "localoptimizationend": self._on_local_optimization,
            "devicestatechange": self._on_device_state,
            "extensionstatus": self._on_extension_status,
            "dbgetresponse": self._on_db_get,
        }

    # ---- public API ------------------------------------------------------------------------------------------------

    def feed(self, message: Message, arrival_time: float) -> list[wire.Event]:
        """The wire events ``message`` causes (often none). Never raises on bad input: it logs and skips it."""
        if message.kind == "malformed":
            log.warning("malformed AMI message skipped (%s, %d bytes)", message.error or "no detail", message.raw_size)
            return []
        if message.kind != "event":
            return []
        name = message.name.lower()
        handler = self._handlers.get(name)
        if handler is None:
            if name not in _NOISE:
                self._note_unknown(message.name)
            return []
        if self._irrelevant(name, message):
            return []
        headers = _headers(message)
        when, stamp = self._when(headers, arrival_time, message.name)
        self._now = when
        out: list[wire.Event] = []
        handler(headers, when, stamp, out)
        return out

    def _irrelevant(self, name: str, message: Message) -> bool:
        """Frequent events that cannot matter, told from one header (the codec reads it without parsing the rest):
        caller-id and state changes of a channel known to be no agent's, device states other than DND."""
        if name in _CHANNEL_DETAIL_EVENTS:
            channel = self._channels.get(message.get("Uniqueid") or "")
            return channel is not None and channel.rule == -1
        if name == "devicestatechange":
            return not (message.get("Device") or "")[:10].lower() == "custom:dnd"
        if name == "extensionstatus":
            return "custom:dnd" not in (message.get("Hint") or "").lower()
        return False

    def expect_originate(self, uniqueid: str, number: str = "") -> None:
        """Tell the translator that the channel with this ``Uniqueid`` (Originate's ``ChannelId``) is a click-to-dial
        of ``number``: the agent's phone rings first, but the call is the agent's outgoing call to ``number``,
        announced when the phone dials."""
        if uniqueid and len(uniqueid) <= _MAX_ID:
            self._expected_originates[uniqueid] = number[:_MAX_NUMBER] if _DIALABLE.match(number) else ""
            while len(self._expected_originates) > 1000:
                del self._expected_originates[next(iter(self._expected_originates))]

    def reconcile(self, live_uniqueids: Iterable[str], now: float, gone_at: float | None = None) -> list[wire.Event]:
        """After a lost PBX link: end (``reconciled=True``) every announced leg whose channel is no longer live
        (as listed by ``CoreShowChannels``), and forget every tracked channel that is gone. A leg ends at ``gone_at``,
        the last moment the PBX was known to be alive (default ``now``), or at its own last event if that is later:
        the PBX ended it at some moment the bridge could not see, and not before it last heard of it."""
        live = set(live_uniqueids)
        end_time = now if gone_at is None else min(gone_at, now)
        out: list[wire.Event] = []
        for uniqueid, channel in list(self._channels.items()):
            if uniqueid in live:
                continue
            leg = channel.leg
            if leg is not None and leg.state in (LegState.RINGING, LegState.ANSWERED, LegState.TRANSFERRED):
                leg.reconciled = True
                leg.cause, leg.cause_text = 0, "ended while the PBX link was down"
                if leg.ended_by is None:
                    leg.ended_by = wire.HungUpBy.UNKNOWN
                self._fire(leg, Trigger.END, max(end_time, leg.last_at), out)
            self._forget(channel)
        return out

    def new_link(self) -> None:
        """A new connection to the PBX begins: the channels that hung up are no longer remembered as such (a late
        event only ever comes on the same connection, and a restarted PBX may give its new channels their ids)."""
        self._hung_up.clear()

    def live_legs(self) -> list[tuple[str, str]]:
        """``(call_id, extension)`` of every leg not ended, for the CRM's ``LiveCalls`` after a resync."""
        return sorted({
            (leg.call_id, leg.extension) for channel in self._channels.values()
            if (leg := channel.leg) is not None and leg.state is not LegState.ENDED
        })

    def catch_up(self, snapshot: Message, now: float) -> list[wire.Event]:
        """After a (re)connect, a live channel as ``CoreShowChannels`` (``CoreShowChannel``) or ``Status`` lists it:
        what happened to it while the link was down. A followed leg that was answered meanwhile is announced
        answered (an incoming leg now Up; an outgoing one now in a bridge); an incoming agent channel that started
        ringing meanwhile is announced ringing. Event ids are the ones the live events would have had."""
        if snapshot.kind != "event":
            return []
        h = _headers(snapshot)
        uniqueid = h.get("uniqueid", "").strip()
        known = uniqueid in self._channels
        self._now = now
        channel = self._channel(h, "", snapshot.name or "CoreShowChannel", create=True)
        out: list[wire.Event] = []
        if channel is None:
            return out
        bridge = h.get("bridgeid", "").strip()  # CoreShowChannel: BridgeId; Status: BridgeID
        if bridge != channel.bridge and len(bridge) <= _MAX_ID:
            self._leave_bridge(channel)
            if bridge:
                self._bridges.setdefault(bridge, set()).add(channel.uniqueid)
                channel.bridge = bridge
        if not known or (not channel.announced and not channel.originated and channel.leg is not None
                         and channel.leg.state is LegState.NEW):
            # First seen in this list, or first seen in the middle of its call by an event that came before the
            # list (the bridge logged in during the call, and the PBX went on reporting it meanwhile): the events
            # seen so far tell nothing of its start or its direction; the list does.
            channel.announced = True
            self._adopt(channel, h, now, out)
            return out
        if channel.leg is None:
            return out
        leg = channel.leg
        if leg.direction == "in":
            if channel.state == STATE_UP:
                if leg.state in (LegState.NEW, LegState.ARMED, LegState.RINGING):
                    self._fire(leg, Trigger.ANSWER, now, out)
            elif channel.state == STATE_RINGING and leg.state is LegState.NEW:
                self._fire(leg, Trigger.ARM, now, out)
            self._settle(channel, now, out)
        elif leg.direction == "out" and leg.state is LegState.RINGING and h.get("bridgeid", "").strip():
            self._fire(leg, Trigger.ANSWER, now, out)
        return out

    def _adopt(self, channel: _Channel, h: dict[str, str], now: float, out: list[wire.Event]) -> None:
        """A channel first seen in a list of live channels: the bridge started, or restarted, during its call. An
        agent's channel running ``Dial`` (or ``Queue``) is its outgoing call, announced answered when it is in a
        bridge; one dialled by another channel (``AppDial``; its Linkedid is its caller's) is an incoming call,
        announced answered when Up, ringing otherwise; one that is the first channel of its own call and dials
        nothing yet is being rung by an Originate. Its events carry the start Asterisk reports (now minus the
        channel's age), as the ringing and, for a call already talking, the answer (the PBX does not say when it was
        answered)."""
        if channel.agent_ext and channel.bridge and channel.connected_num and channel.talked_with is None:
            channel.talked_with = (channel.connected_num, channel.connected_name)
        leg = channel.leg
        if leg is None or leg.state is not LegState.NEW:
            return
        started = max(now - _age(h), 0.0)
        application = h.get("application", "").strip().lower()
        if application in _DIALLING_APPLICATIONS:
            leg.direction = "out"
            data = h.get("applicationdata", h.get("data", ""))
            for number in (_dialled(data.split(",", 1)[0]), channel.first_exten):
                if number and number != channel.agent_ext:
                    leg.dialed_number = number
                    break
            self._fire(leg, Trigger.ALERT, started, out)
            if channel.bridge:
                self._fire(leg, Trigger.ANSWER, started, out)
        elif channel.self_linked:
            channel.originated = True
            leg.direction = ""
        else:
            leg.direction = "in"
            if channel.state == STATE_UP:
                self._fire(leg, Trigger.ANSWER, started, out)
            elif channel.state in (STATE_DOWN, STATE_RINGING):
                self._fire(leg, Trigger.ALERT, started, out)

    def _adopt_ended(self, channel: _Channel, when: float, out: list[wire.Event]) -> None:
        """A leg first seen in the middle of its call (the bridge logged in during it) that ends before a list of
        live channels told more of it: announced from what its events said, from when it was first seen, so that a
        call live when the bridge (re)connected is never lost, whatever the order of the PBX's events and its list.
        An agent's channel that started its own call and talked, or went to a number, is its outgoing call,
        answered if it was Up."""
        leg = channel.leg
        assert leg is not None
        dialled = bool(channel.first_exten) and channel.first_exten != channel.agent_ext
        outgoing = leg.direction == "out" or (channel.self_linked and (channel.talked_with is not None or dialled))
        channel.announced = True
        started = min(channel.seen_at or when, when)
        self._adopt(channel, {"application": "Dial"} if outgoing else {}, started, out)
        if outgoing and leg.state is LegState.RINGING and (channel.talked_with is not None
                                                           or channel.state == STATE_UP):
            self._fire(leg, Trigger.ANSWER, started, out)

    def note_dnd(self, extension: str, dnd: bool, now: float, device_state: str = "") -> list[wire.Event]:
        """What the PBX answered when asked about an extension's DND (e.g. ``DBGet DND/<ext>``: found ``YES`` or not
        found): an ``AgentState`` if that changes the known state of a followed extension."""
        out: list[wire.Event] = []
        self._set_dnd(extension, dnd, device_state[:40], now, f"{now:.6f}", out)
        return out

    def take_dnd_checks(self) -> list[str]:
        """Extensions whose DND state may have changed in a way only AstDB can tell (their combined hint changed):
        the connector asks the PBX (``DBGet DND/<ext>``) and feeds the answer back. Each is returned once."""
        checks, self._dnd_checks = list(self._dnd_checks), {}
        return checks

    def legs_of(self, extension: str) -> list[LegInfo]:
        """The live legs of ``extension`` (not ended), oldest first: which channel to hang up, answer or transfer."""
        found: list[LegInfo] = []
        for channel in self._channels.values():
            leg = channel.leg
            if leg is None or leg.extension != extension or leg.state is LegState.ENDED:
                continue
            found.append(
                LegInfo(
                    extension=leg.extension,
                    call_id=leg.call_id,
                    leg_id=leg.uniqueid,
                    channel=channel.name,
                    state=leg.state,
                    direction=leg.direction,
                    peers=tuple(peer.name for peer in self._bridge_peers(channel)),
                )
            )
        return found

    @property
    def tracked_uniqueids(self) -> frozenset[str]:
        """Uniqueids of every channel tracked now (to tell, at a reconcile, channels that appeared meanwhile)."""
        return frozenset(self._channels)

    @property
    def tracked_channels(self) -> int:
        return len(self._channels)

    @property
    def tracked_calls(self) -> int:
        return len(self._calls)

    @property
    def tracked_bridges(self) -> int:
        return len(self._bridges)

    # ---- the state machine -----------------------------------------------------------------------------------------

    def _fire(self, leg: _Leg, trigger: Trigger, when: float, out: list[wire.Event]) -> None:
        step = TRANSITIONS.get((leg.state, trigger))
        if step is None:
            log.debug(
                "leg %s of extension %s (call %s): %s while %s is out of order; ignored",
                leg.uniqueid, leg.extension, leg.call_id, trigger.value, leg.state.value,
            )
            return
        leg.state, emits = step
        if emits and when > leg.last_at:
            leg.last_at = when
        if trigger is Trigger.ANSWER:
            leg.ended_by = None  # the conversation starts: whatever ended the ringing of others does not count
        for kind in emits:
            out.append(self._event(kind, leg, when))

    def _event(self, kind: str, leg: _Leg, when: float) -> wire.Event:
        ext = leg.extension[:_MAX_EXT]
        if kind == RINGING_EVENT:
            number, name, direction = self._remote_of(leg)
            leg.remote_number, leg.remote_name = number, name
            return wire.CallRinging(
                event_id=self._event_id(leg, kind),
                occurred_at=when,
                call_id=leg.call_id,
                extension=ext,
                leg_id=leg.uniqueid,
                direction=direction,
                remote_number=number[:_MAX_NUMBER],
                remote_name=name[:_MAX_NAME],
                transferred_from=leg.transferred_from[:_MAX_EXT],
                internal_direction=leg.direction if direction is wire.Direction.INTERNAL and leg.direction else None,
            )
        if kind == ANSWERED_EVENT:
            return wire.CallAnswered(
                event_id=self._event_id(leg, kind), occurred_at=when, call_id=leg.call_id, extension=ext,
                leg_id=leg.uniqueid,
            )
        if kind == TRANSFERRED_EVENT:
            leg.transfers += 1
            suffix = kind if leg.transfers == 1 else f"{kind}-{leg.transfers}"
            return wire.CallTransferred(
                event_id=self._event_id(leg, suffix),
                occurred_at=when,
                call_id=leg.call_id,
                extension=ext,
                leg_id=leg.uniqueid,
                target=leg.transfer_target[:_MAX_NUMBER],
                kind=leg.transfer_kind,
            )
        cause, cause_text = leg.cause, leg.cause_text
        if cause == 0 and leg.dial_status in _DIAL_STATUS_CAUSES and not leg.reconciled:
            cause, cause_text = _DIAL_STATUS_CAUSES[leg.dial_status]
        return wire.CallEnded(
            event_id=self._event_id(leg, kind),
            occurred_at=when,
            call_id=leg.call_id,
            extension=ext,
            leg_id=leg.uniqueid,
            cause=cause,
            cause_text=cause_text[:_MAX_TEXT],
            hung_up_by=leg.ended_by or wire.HungUpBy.UNKNOWN,
            answered_elsewhere=cause == CAUSE_ANSWERED_ELSEWHERE,
            reconciled=leg.reconciled,
        )

    @staticmethod
    def _event_id(leg: _Leg, kind: str) -> str:
        return f"ami:{leg.call_id}:{leg.uniqueid}:{kind}"

    def _remote_of(self, leg: _Leg) -> tuple[str, str, wire.Direction]:
        channel = self._channels.get(leg.uniqueid)
        if leg.direction == "out":
            number = leg.dialed_number or (channel.first_exten if channel else "")
            internal = leg.dest_is_agent or self._is_internal(number, leg)
            return number, "", wire.Direction.INTERNAL if internal else wire.Direction.OUTBOUND
        consulting = self._consultation(channel, leg) if channel is not None and not leg.handed_over else None
        if consulting is not None and consulting.talked_with is not None:
            # A consultation inside a call rings as the call being handed over: the original party, and who hands it.
            number, name = consulting.talked_with
            if consulting.agent_ext != leg.extension:
                leg.transferred_from = consulting.agent_ext
            return number, name, wire.Direction.INTERNAL if self._is_internal(number, leg) else wire.Direction.INBOUND
        if leg.dial_remote is not None and leg.dial_remote[0]:
            number, name = leg.dial_remote
        elif channel is not None:
            number, name = channel.connected_num, channel.connected_name
        else:
            number, name = leg.remote_number, leg.remote_name
        internal = leg.dialer_is_agent or self._is_internal(number, leg)
        return number, name, wire.Direction.INTERNAL if internal else wire.Direction.INBOUND

    def _is_internal(self, number: str, leg: _Leg) -> bool:
        if not number:
            return False
        digits = self.config.internal_digits
        if digits and numbers.is_internal(number, digits):
            return True
        call = self._calls.get(self._channels[leg.uniqueid].linkedid) if leg.uniqueid in self._channels else None
        if call is None:
            return False
        for uniqueid in call.channels:
            other = self._channels.get(uniqueid)
            if other is not None and other.uniqueid != leg.uniqueid and other.agent_ext == number:
                return True
        return False

    def _remote_known(self, leg: _Leg) -> bool:
        if leg.dial_remote is not None and leg.dial_remote[0]:
            return True
        channel = self._channels.get(leg.uniqueid)
        return channel is not None and bool(channel.connected_num)

    def _settle(self, channel: _Channel | None, when: float, out: list[wire.Event]) -> None:
        """Arm an incoming leg announced by Newchannel (when that switch is on); an armed leg rings as soon as its
        caller's number is known."""
        if channel is None or channel.leg is None:
            return
        leg = channel.leg
        if leg.state is LegState.NEW and leg.direction == "in" and channel.announced and self.config.process_newchannel:
            self._fire(leg, Trigger.ARM, when, out)
        if leg.state is LegState.ARMED and self._remote_known(leg):
            self._fire(leg, Trigger.ALERT, when, out)

    # ---- channels ---------------------------------------------------------------------------------------------------

    def _channel(self, h: dict[str, str], prefix: str, event: str, *, create: bool) -> _Channel | None:
        """The channel of a snapshot (``prefix`` = '', 'dest', 'transferer', ...), updated from it."""
        uniqueid = h.get(prefix + "uniqueid", "").strip()
        if not uniqueid or len(uniqueid) > _MAX_ID:
            if uniqueid:
                log.warning(
                    "%s with a %d-character %sUniqueid skipped: not an Asterisk id", event, len(uniqueid), prefix
                )
            return None
        channel = self._channels.get(uniqueid)
        name = h.get(prefix + "channel", "").strip()
        linkedid = h.get(prefix + "linkedid", "").strip()
        if linkedid and len(linkedid) > _MAX_ID:
            linkedid = ""
        if channel is None:
            if not create or uniqueid in self._hung_up:
                return None
            if not name:
                log.warning("%s for channel %s without a channel name skipped", event, uniqueid)
                return None
            channel = self._add_channel(uniqueid, name, linkedid or uniqueid)
            channel.self_linked = linkedid == uniqueid
        else:
            if name and name != channel.name:
                self._rename(channel, name)
            if linkedid and linkedid != channel.linkedid:
                self._move(channel, linkedid)
        state = _to_int(h.get(prefix + "channelstate"))
        if state >= 0:
            channel.state = state
            if channel.first_state < 0:
                channel.first_state = state
        caller_changed = False
        if prefix + "calleridnum" in h:
            num = _clean(h[prefix + "calleridnum"])
            caller_changed = num != channel.caller_num
            channel.caller_num = num
        if prefix + "calleridname" in h:
            channel.caller_name = _clean(h[prefix + "calleridname"])
        if prefix + "connectedlinenum" in h:
            channel.connected_num = _clean(h[prefix + "connectedlinenum"])
        if prefix + "connectedlinename" in h:
            channel.connected_name = _clean(h[prefix + "connectedlinename"])
        context = h.get(prefix + "context", "").strip()
        if context:
            channel.context = context
        if not channel.first_exten:
            exten = h.get(prefix + "exten", "").strip()
            if exten and _DIALABLE.match(exten):
                channel.first_exten = exten
        if not channel.agent_ext and (channel.rule == -2 or (caller_changed and channel.rule >= 0)):
            self._recognise(channel)
        return channel

    def _add_channel(self, uniqueid: str, name: str, linkedid: str) -> _Channel:
        while len(self._channels) >= self.config.max_channels:
            oldest = self._channels[next(iter(self._channels))]
            log.warning(
                "tracking %d channels, the limit: forgetting the oldest, %s (call %s)",
                len(self._channels), oldest.name, oldest.linkedid,
            )
            self._forget(oldest)
        channel = _Channel(uniqueid=uniqueid, name=name, linkedid=linkedid, seen_at=self._now)
        if uniqueid in self._expected_originates:
            channel.originate_number = self._expected_originates.pop(uniqueid)
            channel.originated = True
        self._channels[uniqueid] = channel
        self._names[name] = uniqueid
        call = self._calls.get(linkedid)
        if call is None:
            call = self._calls[linkedid] = _Call(linkedid)
        call.channels.add(uniqueid)
        return channel

    def _rename(self, channel: _Channel, name: str) -> None:
        if self._names.get(channel.name) == channel.uniqueid:
            del self._names[channel.name]
        channel.name = name
        if not channel.agent_ext:
            channel.rule = -2  # a new name may be an agent's
        self._names[name] = channel.uniqueid

    def _move(self, channel: _Channel, linkedid: str) -> None:
        """Asterisk may change a channel's Linkedid when it joins another call; its legs keep their call id."""
        old = self._calls.get(channel.linkedid)
        if old is not None:
            old.channels.discard(channel.uniqueid)
            if not old.channels:
                del self._calls[old.linkedid]
        channel.linkedid = linkedid
        call = self._calls.get(linkedid)
        if call is None:
            call = self._calls[linkedid] = _Call(linkedid)
        call.channels.add(channel.uniqueid)

    def _forget(self, channel: _Channel) -> None:
        self._channels.pop(channel.uniqueid, None)
        if self._names.get(channel.name) == channel.uniqueid:
            del self._names[channel.name]
        self._leave_bridge(channel)
        call = self._calls.get(channel.linkedid)
        if call is not None:
            call.channels.discard(channel.uniqueid)
            if not call.channels:
                del self._calls[channel.linkedid]
        channel.leg = None

    def _partner(self, channel: _Channel) -> _Channel | None:
        name = _partner_name(channel.name)
        uniqueid = self._names.get(name) if name else None
        return self._channels.get(uniqueid) if uniqueid else None

    def _recognise(self, channel: _Channel) -> None:
        if channel.rule == -2:
            channel.rule = -1
            for index, (regex, _source) in enumerate(self._rules):
                match = regex.match(channel.name)
                if match is not None:
                    channel.rule = index
                    break
        if channel.rule < 0:
            return
        regex, source = self._rules[channel.rule]
        if source == "name":
            match = regex.match(channel.name)
            ext = match.group("ext") if match is not None else ""
        else:
            ext = channel.caller_num if channel.caller_num.isdigit() else ""
        if not ext or not self._is_agent_extension(ext):
            return
        channel.agent_ext = ext
        if self._followed(ext) and self._passes_filters(channel):
            self._start_leg(channel)

    def _is_agent_extension(self, ext: str) -> bool:
        if ext in self.config.extensions:
            return True
        digits = self.config.internal_digits
        return not digits or (len(ext) == digits and ext.isdigit())

    def _followed(self, ext: str) -> bool:
        return ext in self.config.extensions if self.config.extensions else self._is_agent_extension(ext)

    def _passes_filters(self, channel: _Channel) -> bool:
        if self.config.channels:
            device = _device_of(channel.name).lower()
            if not any(
                device == wanted.lower() or device.startswith(wanted.lower().rstrip("/") + "/")
                for wanted in self.config.channels
            ):
                return False
        return not self.config.contexts or channel.context in self.config.contexts

    def _start_leg(self, channel: _Channel) -> None:
        partner = self._partner(channel)
        if partner is not None and partner.leg is not None and partner.leg.extension == channel.agent_ext:
            log.debug("%s is the other half of %s, already followed: not a second leg", channel.name, partner.name)
            return
        call = self._calls.get(channel.linkedid)
        if call is not None and self._live_leg_of(call, channel.agent_ext, besides=channel) is not None:
            # The agent already has a live leg in this call: this channel acts for it inside the call (a consultation
            # before a transfer, dialled through a Local channel with the agent's caller id). The CRM keeps one leg
            # per agent and call; the consultation shows on the target's leg instead.
            log.debug("%s acts for extension %s inside call %s: not a second leg", channel.name,
                      channel.agent_ext, channel.linkedid)
            return
        if channel.first_state == STATE_DOWN and channel.self_linked:
            # Created Down as the first channel of its own call: nobody dialled it. An Originate (ours or another
            # AMI client's: a PBX portal, an operator panel, a call file) rings the agent's phone, which then dials.
            channel.originated = True
        if channel.originated:
            direction: Literal["in", "out", ""] = ""
        elif channel.first_state in (STATE_DOWN, STATE_RINGING):
            direction = "in"
        elif channel.first_state == STATE_RING:
            direction = "out"
        else:
            direction = ""  # first seen in the middle of a call: followed from its next ringing, if any
        call = self._calls.get(channel.linkedid)
        leg = _Leg(
            extension=channel.agent_ext, call_id=channel.linkedid, uniqueid=channel.uniqueid, direction=direction
        )
        if call is not None and call.transferred_from and call.transferred_from != channel.agent_ext:
            leg.transferred_from = call.transferred_from
        channel.leg = leg

    def _live_leg_of(self, call: _Call, extension: str, *, besides: _Channel) -> _Leg | None:
        for uniqueid in call.channels:
            other = self._channels.get(uniqueid)
            if other is None or other is besides or other.leg is None:
                continue
            leg = other.leg
            if leg.extension == extension and leg.call_id == call.linkedid and leg.state is not LegState.ENDED:
                return leg
        return None

    def _leave_bridge(self, channel: _Channel) -> None:
        if channel.bridge:
            members = self._bridges.get(channel.bridge)
            if members is not None:
                members.discard(channel.uniqueid)
                if not members:
                    del self._bridges[channel.bridge]
            channel.bridge = ""

    def _bridge_peers(self, channel: _Channel) -> list[_Channel]:
        """The other parties in ``channel``'s bridge (its own Local partner excluded)."""
        if not channel.bridge:
            return []
        partner = self._partner(channel)
        peers = []
        for uniqueid in self._bridges.get(channel.bridge, ()):
            other = self._channels.get(uniqueid)
            if other is not None and other is not channel and other is not partner:
                peers.append(other)
        return peers

    def _end_signal(self, channel: _Channel, cause: int) -> None:
        """``channel`` is going away: the first such sign decides who hung up, for the legs it concerns. Cause 26
        (answered elsewhere) is never the agent's doing, whatever channel it reaches first."""
        if channel.optimized:
            return
        own_side = wire.HungUpBy.REMOTE if cause == CAUSE_ANSWERED_ELSEWHERE else wire.HungUpBy.AGENT
        for own in (channel, self._partner(channel)):
            if own is not None and own.leg is not None and own.leg.ended_by is None:
                own.leg.ended_by = own_side
        for peer in self._bridge_peers(channel):
            if peer.leg is not None and peer.leg.ended_by is None:
                peer.leg.ended_by = wire.HungUpBy.REMOTE

    # ---- event handlers ---------------------------------------------------------------------------------------------

    def _when(self, h: dict[str, str], arrival_time: float, event: str) -> tuple[float, str]:
        """The PBX's Timestamp when it is a sane event time (wire.time_problem: not before 2000, not more than a
        day ahead of this clock), else the arrival time, with one warning line: the call is never lost over it."""
        raw = h.get("timestamp", "").strip()
        now = wire.sane_now(self._clock())
        if raw:
            try:
                value = float(raw)
                problem = wire.time_problem(value, now, "Timestamp")
            except ValueError:
                value, problem = math.nan, "not a number"
            if not problem:
                if value > self.pbx_time:
                    self.pbx_time = value
                return value, raw
            log.warning("%s has an invalid Timestamp %r (%s); using the arrival time", event, raw[:40], problem[:120])
        if wire.time_problem(arrival_time, now) and math.isfinite(now):
            arrival_time = now  # (a clock that is itself absurd leaves nothing better than the arrival time)
        return arrival_time, f"{arrival_time:.6f}"

    def _note_unknown(self, name: str) -> None:
        key = name.lower()
        if key not in self._unknown_names and len(self._unknown_names) < _MAX_UNKNOWN_NAMES:
            self._unknown_names.add(key)
            log.debug("AMI event %r is not used for calls; ignoring it (logged once)", name[:80])

    def _on_newchannel(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        uniqueid = h.get("uniqueid", "")
        fresh = uniqueid not in self._channels
        channel = self._channel(h, "", "Newchannel", create=True)
        if channel is None:
            return
        if not fresh:
            log.debug("Newchannel for %s, already known", channel.name)
            return
        channel.announced = True
        self._settle(channel, when, out)

    def _on_newstate(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        channel = self._channel(h, "", "Newstate", create=True)
        if channel is None or channel.leg is None:
            return
        leg = channel.leg
        if leg.direction != "in":
            return
        self._settle(channel, when, out)
        if channel.state == STATE_RINGING and self.config.process_newstate:
            self._fire(leg, Trigger.ARM, when, out)
            self._settle(channel, when, out)
        elif channel.state == STATE_UP:
            self._fire(leg, Trigger.ANSWER, when, out)

    def _on_caller_id(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        self._settle(self._channel(h, "", "NewCallerid", create=True), when, out)

    def _on_rename(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        channel = self._channels.get(h.get("uniqueid", ""))
        new_name = h.get("newname", "").strip()
        if channel is not None and new_name:
            self._rename(channel, new_name)

    def _on_dial_begin(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        caller = self._channel(h, "", "DialBegin", create=True)
        dest = self._channel(h, "dest", "DialBegin", create=True)
        if dest is None:
            log.warning("DialBegin without a destination channel skipped")
            return
        if dest.leg is not None:
            leg = dest.leg
            if caller is None:
                # An Originate dials the agent's phone: a click-to-dial, the agent's outgoing call once it dials.
                dest.originated = True
                if leg.state in (LegState.NEW, LegState.ARMED):
                    leg.direction = ""
                    self._fire(leg, Trigger.DISARM, when, out)
                else:
                    log.info("%s was announced as ringing before its Originate was seen", dest.name)
            elif leg.direction == "in" or (leg.direction == "" and leg.state is LegState.NEW and not dest.originated):
                leg.direction = "in"
                leg.dialer = caller.uniqueid
                leg.dial_remote = (caller.caller_num, caller.caller_name)
                leg.dialer_is_agent = bool(caller.agent_ext)
                self._fire(leg, Trigger.ALERT, when, out)
        if caller is not None and caller.leg is not None:
            leg = caller.leg
            if leg.state in (LegState.NEW, LegState.ARMED) and leg.direction != "out":
                leg.direction = "out"
                self._fire(leg, Trigger.DISARM, when, out)
            if leg.direction == "out":
                if not leg.dialed_number:
                    leg.dialed_number = self._dialled_number(caller, dest, h)
                leg.dest_is_agent = leg.dest_is_agent or bool(dest.agent_ext)
                self._fire(leg, Trigger.ALERT, when, out)

    @staticmethod
    def _dialled_number(caller: _Channel, dest: _Channel, h: dict[str, str]) -> str:
        """The number an agent's channel calls at its ``DialBegin``. A phone that dialled it started at that number
        (its first extension, before any dialplan routine); an originated channel started wherever the Originate put
        it (the phone's own extension for ``Local/100@phones``, ``s`` for ``PJSIP/100``), so for it the Originate's
        own number comes first, then the extension it is dialling from, then the Dial string. The agent's own
        extension is never the number it calls."""
        current = h.get("exten", "").strip()
        dialled = _dialled(h.get("dialstring", ""))
        if dest.agent_ext:
            candidates: tuple[str, ...] = (dest.agent_ext,)
        elif caller.originated:
            candidates = (caller.originate_number, current, dialled, caller.first_exten)
        else:
            candidates = (caller.first_exten, current, dialled)
        for number in candidates:
            if number and number != caller.agent_ext and _DIALABLE.match(number):
                return number
        return ""

    def _consultation(self, channel: _Channel, leg: _Leg) -> _Channel | None:
        """The agent channel on whose behalf ``leg`` is being called to consult before a transfer, if it is: an agent
        channel that already talked to someone in this call calls again, itself (AMI Atxfer) or through a channel
        acting for it (Asterisk's attended-transfer feature dials from a Local channel with the agent's caller id)."""
        call = self._calls.get(channel.linkedid)
        if call is None:
            return None
        dialer = self._channels.get(leg.dialer) if leg.dialer else None
        if dialer is not None:
            if call.transferee == dialer.uniqueid:
                return None  # a blind-transferred party dialling its new destination is no consultation
            if dialer.agent_ext and dialer.talked_with is not None:
                return dialer
            number = dialer.caller_num
        else:
            number = channel.connected_num  # the PBX tells the called phone who calls
        if not number or number == channel.agent_ext:
            return None
        for uniqueid in call.channels:
            other = self._channels.get(uniqueid)
            if (
                other is not None
                and other is not channel
                and other is not dialer
                and other.agent_ext == number
                and other.talked_with is not None
                and other.state == STATE_UP
                and other.uniqueid != call.transferee
            ):
                return other
        return None

    def _on_dial_end(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        caller = self._channel(h, "", "DialEnd", create=False)
        dest = self._channel(h, "dest", "DialEnd", create=False)
        status = h.get("dialstatus", "").strip().upper()
        if dest is not None and dest.leg is not None and dest.leg.direction == "in":
            leg = dest.leg
            if status == "ANSWER":
                self._fire(leg, Trigger.ANSWER, when, out)
            elif status:
                leg.dial_status = status
                if leg.ended_by is None:
                    leg.ended_by = wire.HungUpBy.REMOTE
        if caller is not None and caller.leg is not None and caller.leg.direction == "out":
            leg = caller.leg
            if status == "ANSWER":
                self._fire(leg, Trigger.ANSWER, when, out)
            elif status in _FAR_END_DIAL_STATUSES and leg.state is LegState.RINGING:
                leg.dial_status = status
                if leg.ended_by is None:
                    leg.ended_by = wire.HungUpBy.REMOTE

    def _on_bridge_enter(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        channel = self._channel(h, "", "BridgeEnter", create=True)
        bridge = h.get("bridgeuniqueid", "").strip()
        if channel is None or not bridge or len(bridge) > _MAX_ID:
            return
        self._leave_bridge(channel)
        members = self._bridges.setdefault(bridge, set())
        for uniqueid in members:
            other = self._channels.get(uniqueid)
            if other is not None and other.leg is not None:
                other.leg.ended_by = None  # a new party joins: the conversation goes on
        members.add(channel.uniqueid)
        channel.bridge = bridge
        channel.place = (h.get("context", "").strip(), h.get("exten", "").strip())
        if channel.agent_ext and channel.talked_with is None:
            if channel.leg is not None and channel.leg.remote_number:
                channel.talked_with = (channel.leg.remote_number, channel.leg.remote_name)
            elif channel.connected_num:
                channel.talked_with = (channel.connected_num, channel.connected_name)
        leg = channel.leg
        if leg is None:
            return
        if leg.direction == "in" and leg.state in (LegState.NEW, LegState.ARMED, LegState.RINGING):
            self._fire(leg, Trigger.ANSWER, when, out)
        elif leg.direction == "out" and leg.state is LegState.RINGING:
            self._fire(leg, Trigger.ANSWER, when, out)

    def _on_bridge_leave(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        channel = self._channel(h, "", "BridgeLeave", create=False)
        if channel is None:
            return
        place = (h.get("context", "").strip(), h.get("exten", "").strip())
        moved = channel.place[1] and place[1] and place != channel.place
        if moved and not channel.optimized and not channel.hanging_up:
            self._redirected(channel, place[1], when, out)
        if not channel.optimized:
            for peer in self._bridge_peers(channel):
                if peer.leg is not None and peer.leg.ended_by is None:
                    peer.leg.ended_by = wire.HungUpBy.REMOTE
        self._leave_bridge(channel)

    def _redirected(self, channel: _Channel, target: str, when: float, out: list[wire.Event]) -> None:
        """``channel`` left its bridge for another place in the dialplan without anyone hanging up: the PBX sent it
        elsewhere (AMI ``Redirect``, an operator panel, a transfer done by the dialplan). The agents it talked to
        handed their call over: each answered leg is transferred to the new extension, and the agents rung next in
        this call ring as transferred from the first of them."""
        handed = False
        for peer in self._bridge_peers(channel):
            leg = peer.leg
            if leg is None or leg.state is not LegState.ANSWERED or leg.ended_by is not None:
                continue
            leg.transfer_target = target if _DIALABLE.match(target) else ""
            leg.transfer_kind = wire.TransferKind.BLIND
            leg.ended_by = wire.HungUpBy.AGENT
            self._fire(leg, Trigger.TRANSFER, when, out)
            call = self._calls.get(channel.linkedid)
            if call is not None and not handed:
                call.transferred_from = peer.agent_ext
                call.transferee = channel.uniqueid
                handed = True

    def _on_bridge_destroy(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        for uniqueid in self._bridges.pop(h.get("bridgeuniqueid", "").strip(), set()):
            channel = self._channels.get(uniqueid)
            if channel is not None:
                channel.bridge = ""

    def _on_hangup_request(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        channel = self._channel(h, "", "HangupRequest", create=False)
        if channel is not None:
            channel.hanging_up = True
            self._end_signal(channel, _to_int(h.get("cause"), 0))

    def _on_hangup(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        channel = self._channel(h, "", "Hangup", create=False)
        if channel is None:
            # Unknown: a channel that was live when the bridge logged in and that hung up before anything (the list
            # of live channels included) told of it. An agent's leg is announced from the hang-up's own snapshot.
            uniqueid = h.get("uniqueid", "")
            channel = self._channel(h, "", "Hangup", create=True)
            if channel is None or channel.leg is None:
                if channel is not None:
                    self._forget(channel)
                log.info("Hangup for unknown channel %s (%s) ignored", h.get("channel", "?")[:80],
                         uniqueid[:_MAX_ID])
                return
            log.info("Hangup of %s (%s), unknown until now: its call is announced as it ended", channel.name,
                     channel.uniqueid)
        cause = max(_to_int(h.get("cause"), 0), 0)
        self._end_signal(channel, cause)
        leg = channel.leg
        if leg is not None and leg.state is LegState.NEW and not channel.announced and not channel.originated:
            self._adopt_ended(channel, when, out)
        if leg is not None:
            leg.cause = cause
            leg.cause_text = h.get("cause-txt", "").strip()
            self._fire(leg, Trigger.END, when, out)
        self._forget(channel)
        self._hung_up[channel.uniqueid] = None
        if len(self._hung_up) > self.config.max_channels:
            del self._hung_up[next(iter(self._hung_up))]

    def _on_blind_transfer(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        if h.get("result", "").strip().lower() != "success":
            return
        transferer = self._channel(h, "transferer", "BlindTransfer", create=False)
        transferee = self._channel(h, "transferee", "BlindTransfer", create=False)
        target = _clean(h.get("extension"))
        from_ext = self._agent_extension_of(transferer, h, "transferer")
        for party in (transferee, transferer):
            call = self._calls.get(party.linkedid) if party is not None else None
            if call is not None:
                call.transferred_from = from_ext or call.transferred_from
                if transferee is not None:
                    call.transferee = transferee.uniqueid
        if transferer is None or transferer.leg is None:
            return
        leg = transferer.leg
        leg.transfer_target, leg.transfer_kind = target, wire.TransferKind.BLIND
        leg.ended_by = leg.ended_by or wire.HungUpBy.AGENT
        self._fire(leg, Trigger.TRANSFER, when, out)

    def _on_attended_transfer(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        if h.get("result", "").strip().lower() != "success":
            return
        original = self._channel(h, "origtransferer", "AttendedTransfer", create=False)
        consulting = self._channel(h, "secondtransferer", "AttendedTransfer", create=False)
        transferee = self._channel(h, "transferee", "AttendedTransfer", create=False)
        target_channel = self._channel(h, "transfertarget", "AttendedTransfer", create=False)
        from_ext = self._agent_extension_of(original, h, "origtransferer")
        # Who the call went to: the number the consultation dialled, else what the PBX says of the target.
        target = target_channel.agent_ext if target_channel is not None else ""
        if not target and consulting is not None and consulting is not original and consulting.leg is not None:
            target = consulting.leg.dialed_number or consulting.leg.remote_number
        if not target:
            target = _clean(h.get("secondtransfererconnectedlinenum")) or _clean(h.get("transfertargetcalleridnum"))
        # Who was handed over: the party of the original call.
        if transferee is not None:
            handed = (transferee.caller_num, transferee.caller_name)
        elif original is not None and original.leg is not None:
            handed = (original.leg.remote_number, original.leg.remote_name)
        else:
            handed = (_clean(h.get("origtransfererconnectedlinenum")), _clean(h.get("origtransfererconnectedlinename")))
        original_call_id = original.leg.call_id if original is not None and original.leg is not None else ""
        if not original_call_id:
            original_call_id = (original.linkedid if original is not None else "") or (
                transferee.linkedid if transferee is not None else ""
            )
        for party in (original, consulting):
            if party is not None and party.leg is not None:
                party.leg.ended_by = party.leg.ended_by or wire.HungUpBy.AGENT
        if original is not None and original.leg is not None:
            leg = original.leg
            leg.transfer_target, leg.transfer_kind = target, wire.TransferKind.ATTENDED
            self._fire(leg, Trigger.TRANSFER, when, out)
        if target_channel is not None and target_channel.leg is not None and original_call_id:
            self._hand_over(target_channel, original_call_id, from_ext, handed, when, out)

    def _hand_over(
        self,
        channel: _Channel,
        call_id: str,
        from_ext: str,
        handed: tuple[str, str],
        when: float,
        out: list[wire.Event],
    ) -> None:
        """The target of an attended transfer now talks to the transferred party: its consultation leg ends and a
        leg of the original call starts, answered, with the original caller and ``transferred_from``."""
        old = channel.leg
        assert old is not None
        if old.call_id == call_id:
            old.transferred_from = old.transferred_from or from_ext
            return
        if old.state in (LegState.RINGING, LegState.ANSWERED, LegState.TRANSFERRED):
            old.cause, old.cause_text, old.ended_by = 16, "Normal Clearing", wire.HungUpBy.REMOTE
            self._fire(old, Trigger.END, when, out)
        leg = _Leg(
            extension=old.extension,
            call_id=call_id,
            uniqueid=old.uniqueid,
            direction="in",
            dial_remote=handed,
            transferred_from=from_ext if from_ext != old.extension else "",
            handed_over=True,
        )
        channel.leg = leg
        self._fire(leg, Trigger.ANSWER, when, out)

    def _agent_extension_of(self, channel: _Channel | None, h: dict[str, str], prefix: str) -> str:
        if channel is not None and channel.agent_ext:
            return channel.agent_ext
        number = _clean(h.get(prefix + "calleridnum"))
        digits = self.config.internal_digits
        return number if digits and numbers.is_internal(number, digits) else ""

    def _on_local_optimization(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        beginning = h.get("event", "").lower() == "localoptimizationbegin"
        failed = h.get("success", "yes").strip().lower() in ("no", "false", "0")
        for prefix in ("localone", "localtwo"):
            channel = self._channels.get(h.get(prefix + "uniqueid", ""))
            if channel is not None:
                channel.optimized = beginning or not failed

    # ---- agent state (DND) ------------------------------------------------------------------------------------------

    def _on_device_state(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        match = _DND_DEVICE.match(h.get("device", "").strip())
        if match is None:
            return
        state = h.get("state", "").strip().upper()
        if state == "BUSY":
            self._set_dnd(match.group("ext"), True, "", when, stamp, out)
        elif state == "NOT_INUSE":
            self._set_dnd(match.group("ext"), False, "", when, stamp, out)

    def _on_extension_status(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        hint = h.get("hint", "")
        match = _DND_IN_HINT.search(hint)
        if match is None:
            return
        ext = match.group("ext")
        if hint.strip().lower() != f"custom:dnd{ext}".lower():
            # A hint that joins the phone and its DND (FreePBX: PJSIP/100&Custom:DND100) says Busy while the phone
            # is in a call (device_state_busy_at), and InUse while DND is on and the phone talks: its state cannot
            # tell DND. Ask the PBX what says DND (AstDB DND/<ext>) instead.
            if self._followed(ext) and len(ext) <= _MAX_EXT and ext not in self._dnd_checks:
                self._dnd_checks[ext] = None
            return
        status = _to_int(h.get("status"), -99)
        text = h.get("statustext", "").strip()[:40]
        if status == _EXTENSION_BUSY:
            self._set_dnd(ext, True, text, when, stamp, out)
        elif status in _EXTENSION_NOT_BUSY:
            self._set_dnd(ext, False, text, when, stamp, out)

    def _on_db_get(self, h: dict[str, str], when: float, stamp: str, out: list[wire.Event]) -> None:
        if h.get("family", "").strip().upper() != "DND":
            return
        ext = h.get("key", "").strip()
        value = h.get("val", "").strip().upper()
        if ext:
            self._set_dnd(ext, value in _DND_ON_VALUES, "", when, stamp, out)

    def _set_dnd(self, ext: str, dnd: bool, device_state: str, when: float, stamp: str, out: list[wire.Event]) -> None:
        if not ext or len(ext) > _MAX_EXT or not self._followed(ext) or self._dnd.get(ext) is dnd:
            return
        if ext not in self._dnd and len(self._dnd) >= self.config.max_channels:
            del self._dnd[next(iter(self._dnd))]
        self._dnd[ext] = dnd
        out.append(
            wire.AgentState(
                event_id=f"ami:agent:{ext}:{stamp[:40]}:{'dnd' if dnd else 'available'}",
                occurred_at=when,
                extension=ext,
                dnd=dnd,
                device_state=device_state,
            )
        )


_DIALLING_APPLICATIONS: Final = frozenset({"dial", "queue"})
_MAX_AGE: Final = 7 * 86_400


def _age(h: dict[str, str]) -> float:
    """Seconds a listed channel has existed: ``Duration: HH:MM:SS`` (CoreShowChannel) or ``Seconds`` (Status)."""
    duration = h.get("duration", "").strip()
    seconds = -1
    if duration:
        parts = duration.split(":")
        if 1 <= len(parts) <= 3 and all(part.isdigit() and len(part) <= 6 for part in parts):
            seconds = 0
            for part in parts:
                seconds = seconds * 60 + int(part)
    if seconds < 0:
        seconds = _to_int(h.get("seconds"), 0)
    return float(min(max(seconds, 0), _MAX_AGE))


def _dialled(dial_string: str) -> str:
    """The number in a Dial string such as ``00302109876543@outside`` or ``PJSIP/0030...@trunk``, if it has one."""
    candidate = dial_string.rsplit("/", 1)[-1].split("@", 1)[0].strip()
    return candidate if _DIALABLE.match(candidate) else ""
