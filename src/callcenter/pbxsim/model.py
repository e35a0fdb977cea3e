"""The simulated PBX's objects: channels, bridges, dials, agents and the AMI events they are described by.

Rules:
- A channel is described on the wire exactly as Asterisk 22 describes one (the "channel snapshot": Channel,
  ChannelState, ChannelStateDesc, CallerIDNum, CallerIDName, ConnectedLineNum, ConnectedLineName, Language,
  AccountCode, Context, Exten, Priority, Uniqueid, Linkedid), optionally with a prefix (``Dest``, ``Transferer`` ...).
- Empty caller id fields are sent as ``<unknown>``, as Asterisk does.
- Nothing here schedules or emits anything: that is the engine's job.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from callcenter.pbxsim.clock import Timer

Headers = list[tuple[str, str]]


class ChannelState(enum.IntEnum):
    DOWN = 0
    RSRVD = 1
    OFFHOOK = 2
    DIALING = 3
    RING = 4
    RINGING = 5
    UP = 6
    BUSY = 7


STATE_DESC = {
    ChannelState.DOWN: "Down",
    ChannelState.RSRVD: "Rsrvd",
    ChannelState.OFFHOOK: "OffHook",
    ChannelState.DIALING: "Dialing",
    ChannelState.RING: "Ring",
    ChannelState.RINGING: "Ringing",
    ChannelState.UP: "Up",
    ChannelState.BUSY: "Busy",
}

# Q.850 causes as Asterisk names them in Hangup's Cause-txt.
CAUSE_TEXT = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    26: "Answered elsewhere",
    34: "Circuit/channel congestion",
}

# ExtensionStatus codes (Asterisk's ast_extension_state values) and their StatusText.
EXT_IDLE, EXT_INUSE, EXT_BUSY, EXT_RINGING, EXT_INUSE_RINGING, EXT_ONHOLD = 0, 1, 2, 8, 9, 16
EXT_STATUS_TEXT = {0: "Idle", 1: "InUse", 2: "Busy", 4: "Unavailable", 8: "Ringing", 9: "InUse&Ringing", 16: "Hold"}


class Role(enum.Enum):
    AGENT = "agent"  # an agent's phone: PJSIP/<ext>-<seq>
    TRUNK = "trunk"  # the provider trunk: PJSIP/trunk-<seq>
    LOCAL = "local"  # a half of a Local channel pair: Local/<exten>@<context>-<seq>;1 or ;2


@dataclass
class Behaviour:
    """How a party acts by itself. ``None`` means "never by itself" (a scenario step or an AMI action must do it).

    answer_after: seconds of ringing before answering.   hangup_after: seconds of talk before hanging up.
    abandon_after: an inbound caller hangs up after this many seconds of ringing.   busy: rejects every call (486),
    at once, or after ringing ``busy_after`` seconds (a phone or a far end that rings first, then says busy).
    """

    answer_after: float | None = None
    hangup_after: float | None = None
    abandon_after: float | None = None
    busy: bool = False
    busy_after: float | None = None


@dataclass
class Agent:
    ext: str
    name: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    # Click-to-call (Originate to the agent's phone): phones usually auto-answer it almost at once.
    originate_answer_after: float | None = 0.5


DEFAULT_AGENT_NAMES = {"100": "Alice", "101": "Bob", "102": "Carol", "103": "Dave", "104": "Eve", "105": "Frank"}


def default_agent_name(ext: str) -> str:
    return DEFAULT_AGENT_NAMES.get(ext, f"Agent {ext}")


@dataclass(eq=False)
class Bridge:
    uniqueid: str
    channels: list[Channel] = field(default_factory=list)
    queue_call: QueueCall | None = None  # a queue caller and the member who took the call (for AgentComplete)

    def headers(self, prefix: str = "Bridge") -> Headers:
        return [
            (f"{prefix}Uniqueid", self.uniqueid),
            (f"{prefix}Type", "basic"),
            (f"{prefix}Technology", "simple_bridge"),
            (f"{prefix}Creator", "<unknown>"),
            (f"{prefix}Name", "<unknown>"),
            (f"{prefix}NumChannels", str(len(self.channels))),
            (f"{prefix}VideoSourceMode", "none"),
        ]


@dataclass(eq=False)
class QueueCall:
    """A caller waiting in (then served by) a queue: when it joined, and who answered when."""

    queue: str
    caller: Channel
    joined_at: float
    member: Channel | None = None
    connected_at: float = 0.0


@dataclass(eq=False)
class Call:
    """All channels sharing one Linkedid. ``label`` is the scenario's name for it (``c1``), if any."""

    linkedid: str
    label: str = ""
    channels: list[Channel] = field(default_factory=list)
    live: int = 0
    ended: bool = False
    on_end: list[Callable[[Call], None]] = field(default_factory=list)


@dataclass(eq=False)
class Dial:
    """One Dial(): a calling channel (None for an Originate's first leg) ringing one or more legs."""

    caller: Channel | None
    legs: list[Channel]
    on_answer: Callable[[Channel], None]
    on_fail: Callable[[str], None]
    kind: Literal["route", "originate", "consult", "queue"] = "route"
    timeout: Timer | None = None
    done: bool = False
    busy: int = 0
    on_ring: Callable[[Channel], None] | None = None
    queue_call: QueueCall | None = None


@dataclass(eq=False)
class Transfer:
    """An attended transfer in progress. ``transferee`` waits on hold in ``hold_bridge`` while the transferer consults
    ``target_number``, first ringing (``dial``) then talking (``target`` in ``consult_bridge``).

    AMI ``Atxfer`` (Asterisk's transfer feature): ``transferer`` leaves ``hold_bridge`` for ``consult_bridge`` with the
    ``;1`` half of a Local channel pair (``local``) whose ``;2`` half dials the target, carrying the transferer's caller
    id; ``target`` is the target's channel once it answers (bridged with ``;2``). Completing it merges ``;1`` into
    ``hold_bridge``: the caller then talks to the target through the Local pair.
    A phone's transfer key (``phone=True``): ``transferer`` stays in ``hold_bridge`` (on hold) and the phone makes a
    second call on a new channel ``second``, a call of its own (own Linkedid), then REFERs the two together."""

    transferer: Channel
    transferee: Channel
    hold_bridge: Bridge
    target_number: str
    dial: Dial | None = None
    target: Channel | None = None
    consult_bridge: Bridge | None = None
    phone: bool = False
    second: Channel | None = None
    local: tuple[Channel, Channel] | None = None
    completed: bool = False


@dataclass(eq=False)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    role: Role
    endpoint: str  # the agent's extension, or "trunk"
    call: Call
    state: ChannelState
    context: str
    exten: str
    created_at: float
    behaviour: Behaviour
    caller_num: str = ""
    caller_name: str = ""
    connected_num: str = ""
    connected_name: str = ""
    priority: int = 1
    answered_at: float | None = None
    alive: bool = True
    bridge: Bridge | None = None
    dial: Dial | None = None  # the Dial this channel is a ringing leg of
    dialstring: str = ""
    outgoing: Dial | None = None  # the Dial this channel is making
    transfer: Transfer | None = None  # set on the transferer during an attended transfer
    held_by: Transfer | None = None  # set on the transferee during an attended transfer
    consult_of: Transfer | None = None  # set on a phone's second (consultation) channel
    own_identity: bool = False  # the caller id is the agent's own (a call the agent makes), not a caller's
    runs_dialplan: bool = False  # a channel with a PBX thread (a caller, an answered Originate), not a dialled leg
    held: bool = False  # put on hold by the other side (an attended transfer): its device shows ONHOLD
    local_peer: Channel | None = None  # the other half of a Local channel pair: when one goes, so does the other
    application: str = ""
    app_data: str = ""
    hangup_scheduled: bool = False
    timers: list[Timer] = field(default_factory=list)

    @property
    def ext(self) -> str | None:
        return self.endpoint if self.role is Role.AGENT else None

    def snapshot(self, prefix: str = "") -> Headers:
        return [
            (f"{prefix}Channel", self.name),
            (f"{prefix}ChannelState", str(int(self.state))),
            (f"{prefix}ChannelStateDesc", STATE_DESC[self.state]),
            (f"{prefix}CallerIDNum", self.caller_num or "<unknown>"),
            (f"{prefix}CallerIDName", self.caller_name or "<unknown>"),
            (f"{prefix}ConnectedLineNum", self.connected_num or "<unknown>"),
            (f"{prefix}ConnectedLineName", self.connected_name or "<unknown>"),
            (f"{prefix}Language", "en"),
            (f"{prefix}AccountCode", ""),
            (f"{prefix}Context", self.context),
            (f"{prefix}Exten", self.exten),
            (f"{prefix}Priority", str(self.priority)),
            (f"{prefix}Uniqueid", self.uniqueid),
            (f"{prefix}Linkedid", self.linkedid),
        ]


@dataclass(frozen=True, slots=True)
class AMIEvent:
    """One event as the PBX core produced it; the server adds Event/Privilege/Timestamp when writing it."""

    name: str
    privilege: str
    headers: tuple[tuple[str, str], ...]
    timestamp: float

    def wire_headers(self, *, timestamps: bool = True) -> Headers:
        out: Headers = [("Event", self.name), ("Privilege", self.privilege)]
        if timestamps:
            out.append(("Timestamp", f"{self.timestamp:.6f}"))
        out.extend(self.headers)
        return out

    def get(self, key: str) -> str | None:
        for k, v in self.headers:
            if k == key:
                return v
        return None

    @property
    def event_class(self) -> str:
        return self.privilege.split(",", 1)[0]


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """A read-only view of a live channel, for tests and the CLI."""

    name: str
    uniqueid: str
    linkedid: str
    extension: str | None
    state: str
    caller_num: str
    caller_name: str
    connected_num: str
    context: str
    exten: str
    bridge: str | None
    call_label: str
