"""The simulated Asterisk core: channels, Dial(), bridges, transfers, device states and AstDB, emitting AMI events.

Rules:
- Everything happens in the event loop's thread, synchronously: a method that changes the PBX emits its events, in
  Asterisk's order, before it returns. Delays (ringing, talking) are timers on the simulated clock.
- The shape is a production FreePBX-style SIP PBX (see the package docstring): agents' phones are ``PJSIP/<ext>-<seq>``
  in context ``from-internal``, the provider trunk is ``PJSIP/trunk-<seq>`` in ``from-pstn``. One call = one Linkedid
  (the Uniqueid of its first channel); Uniqueids are ``<epoch>.<seq>`` as Asterisk writes them.
- What a real Asterisk 22 shows is the rule, checked against the PJSIP lab (tests/live/test_simulator_parity.py):
  app_dial's order of events and caller ids / connected lines (``_dial``), a SoftHangupRequest only on a channel that
  runs the dialplan, a refusal (486) as a hang-up request on the refusing leg, cause 127 for a caller's CANCEL, device
  states computed a moment after a channel appears (``_refresh_device_later``).
- DND is FreePBX's: AstDB ``DND/<ext>`` = ``YES`` plus the custom device state ``Custom:DND<ext>`` = ``BUSY``, which the
  extension's hint (``PJSIP/<ext>&Custom:DND<ext>``) turns into ``ExtensionStatus`` Busy (2). A call routed to a DND
  extension gets busy (cause 17) without the phone ringing; a ring group skips DND and busy members.
- A phone that already has a call is busy for a new direct call (486, cause 17): no call waiting.
"""

from __future__ import annotations

import copy
import logging
import re
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

from callcenter.pbxsim.clock import Clock
from callcenter.pbxsim.model import (
    CAUSE_TEXT,
    EXT_BUSY,
    EXT_IDLE,
    EXT_INUSE,
    EXT_INUSE_RINGING,
    EXT_ONHOLD,
    EXT_RINGING,
    EXT_STATUS_TEXT,
    Agent,
    AMIEvent,
    Behaviour,
    Bridge,
    Call,
    Channel,
    ChannelInfo,
    ChannelState,
    Dial,
    Headers,
    QueueCall,
    Role,
    Transfer,
    default_agent_name,
)

log = logging.getLogger("callcenter.pbxsim")

EventSink = Callable[[AMIEvent], None]
Target = tuple[Literal["agent", "pstn"], str, Behaviour | None]

TRUNK = "trunk"
INTERNAL_CONTEXT = "from-internal"
PSTN_CONTEXT = "from-pstn"
HINT_CONTEXT = "ext-local"
# Answer() and then Queue() each wait up to this long for the caller's first media frame (the lab's SIPp callers send
# none, so each wait runs out): a queue caller is answered 0.5 s after it arrives and joins the queue 0.5 s later.
MEDIA_WAIT_SECONDS = 0.5
# How long the busy tone plays before a caller routed to a DND extension is hung up.
BUSY_TONE_SECONDS = 0.5
# A PSTN number answers an outbound call after this long unless the scenario says otherwise.
DEFAULT_REMOTE = Behaviour(answer_after=2.0)

_FAIL_CAUSE = {"NOANSWER": 19, "BUSY": 17, "CHANUNAVAIL": 20, "CONGESTION": 34, "CANCEL": 16}
_ORIGINATE_REASON = {"NOANSWER": 3, "BUSY": 5, "CONGESTION": 8, "CHANUNAVAIL": 0, "CANCEL": 1}


def dial_status_for_cause(cause: int) -> str:
    """Asterisk's ast_hangup_cause_to_dial_status()."""
    if cause == 17:
        return "BUSY"
    if cause == 34:
        return "CONGESTION"
    if cause in (3, 20):
        return "CHANUNAVAIL"
    return "NOANSWER"


# How a channel's state shows in its device's state (Asterisk's ast_state_chan2dev).
_CHAN2DEV = {ChannelState.DOWN: "NOT_INUSE", ChannelState.RING: "INUSE", ChannelState.RINGING: "RINGING",
             ChannelState.UP: "INUSE", ChannelState.BUSY: "BUSY"}
# Asterisk's ast_devstate_aggregate_add: the order in which states win, RINGING + in use = RINGINUSE.
_DEVSTATE_ORDER = {"INVALID": 0, "UNKNOWN": 1, "UNAVAILABLE": 2, "NOT_INUSE": 3, "ONHOLD": 4, "RINGING": 5, "INUSE": 6,
                   "BUSY": 7, "RINGINUSE": 8}
# ast_devstate_to_extenstate
_DEV2EXT = {"NOT_INUSE": EXT_IDLE, "UNKNOWN": EXT_IDLE, "INUSE": EXT_INUSE, "BUSY": EXT_BUSY, "RINGING": EXT_RINGING,
            "RINGINUSE": EXT_INUSE_RINGING, "ONHOLD": EXT_ONHOLD, "UNAVAILABLE": 4, "INVALID": 4}
# pjsip.conf device_state_busy_at of the agents' endpoints (the PJSIP lab sets 1); 0 = off.
DEVICE_STATE_BUSY_AT = 1


def aggregate_device_states(states: Sequence[str]) -> str:
    """Several devices' (or channels') states as one, as Asterisk aggregates them; NOT_INUSE for none."""
    result, ringing, in_use = "NOT_INUSE" if not states else "INVALID", False, False
    for state in states:
        ringing = ringing or state == "RINGING"
        in_use = in_use or state in ("INUSE", "ONHOLD", "BUSY")
        if ringing and in_use:
            result = "RINGINUSE"
        elif _DEVSTATE_ORDER.get(state, 0) > _DEVSTATE_ORDER.get(result, 0):
            result = state
    return "NOT_INUSE" if result in ("INVALID", "UNKNOWN") else result


class PBXError(Exception):
    """A request the PBX refuses; the text is what an AMI ``Message:`` would say."""


class PBXCore:
    def __init__(
        self,
        clock: Clock,
        *,
        agents: dict[str, Agent] | None = None,
        groups: dict[str, list[str]] | None = None,
        queues: dict[str, list[str]] | None = None,
        ring_timeout: float = 20.0,
        history: int = 50_000,
    ) -> None:
        self.clock = clock
        self.agents: dict[str, Agent] = dict(agents or {})
        self.groups: dict[str, list[str]] = {k: list(v) for k, v in (groups or {}).items()}
        self.queues: dict[str, list[str]] = {k: list(v) for k, v in (queues or {}).items()}
        self.ring_timeout = ring_timeout
        # How the outside world answers our outbound calls, unless a scenario says otherwise.
        self.remote_behaviour = copy.copy(DEFAULT_REMOTE)
        self.sinks: list[EventSink] = []
        self.channels: dict[str, Channel] = {}
        self.live_calls: dict[str, Call] = {}
        self.calls_by_label: dict[str, Call] = {}
        self.astdb: dict[tuple[str, str], str] = {}
        self.custom_states: dict[str, str] = {}
        self.paused: dict[str, tuple[bool, str]] = {}
        self.history: deque[AMIEvent] = deque(maxlen=history)
        self.calls_started = 0
        self._chan_seq = 0
        self._local_seq = 0
        self._uid_seq = 0
        self._device_state: dict[str, str] = {}
        self._device_due: set[str] = set()
        self._ext_status: dict[str, int] = {}

    # ---- configuration --------------------------------------------------------------------------------------

    def add_agent(self, ext: str, name: str = "", behaviour: Behaviour | None = None) -> Agent:
        agent = self.agents.get(ext)
        if agent is None:
            agent = Agent(ext=ext, name=name or default_agent_name(ext), behaviour=behaviour or Behaviour())
            self.agents[ext] = agent
        else:
            if name:
                agent.name = name
            if behaviour is not None:
                agent.behaviour = behaviour
        return agent

    # ---- events ---------------------------------------------------------------------------------------------

    def _event(self, name: str, headers: Headers, privilege: str = "call,all") -> None:
        ev = AMIEvent(name=name, privilege=privilege, headers=tuple(headers), timestamp=self.clock.now())
        self.history.append(ev)
        for sink in list(self.sinks):
            sink(ev)

    def _new_uniqueid(self) -> str:
        uid = f"{int(self.clock.now())}.{self._uid_seq}"
        self._uid_seq += 1
        return uid

    # ---- channels -------------------------------------------------------------------------------------------

    def _new_channel(
        self,
        role: Role,
        endpoint: str,
        *,
        call: Call | None,
        state: ChannelState,
        context: str,
        exten: str,
        behaviour: Behaviour,
        caller: tuple[str, str] = ("", ""),
        label: str = "",
        dial: Dial | None = None,
        uniqueid: str = "",
        name: str = "",
    ) -> Channel:
        if not name:
            name = f"PJSIP/{endpoint}-{self._chan_seq:08x}"
            self._chan_seq += 1
        uid = uniqueid or self._new_uniqueid()
        if call is None:
            call = Call(linkedid=uid, label=label)
            self.live_calls[uid] = call
            self.calls_started += 1
            if label:
                self.calls_by_label[label] = call
        ch = Channel(
            name=name,
            uniqueid=uid,
            linkedid=call.linkedid,
            role=role,
            endpoint=endpoint,
            call=call,
            state=state,
            context=context,
            exten=exten,
            created_at=self.clock.now(),
            behaviour=behaviour,
            caller_num=caller[0],
            caller_name=caller[1],
            dial=dial,
        )
        call.channels.append(ch)
        call.live += 1
        self.channels[name] = ch
        self._event("Newchannel", ch.snapshot())
        self._refresh_device_later(endpoint)
        return ch

    def _local_pair(self, exten: str, context: str, call: Call) -> tuple[Channel, Channel]:
        """A Local channel (``Local/<exten>@<context>-<seq>;1`` and ``;2``, their own name counter): ``;1`` is the
        outside end (Down, to be bridged), ``;2`` runs the dialplan at ``exten`` (Ring)."""
        base = f"Local/{exten}@{context}-{self._local_seq:08x}"
        self._local_seq += 1
        one = self._new_channel(Role.LOCAL, f"{exten}@{context}", call=call, state=ChannelState.DOWN,
                                context=context, exten=exten, behaviour=Behaviour(), name=f"{base};1")
        two = self._new_channel(Role.LOCAL, f"{exten}@{context}", call=call, state=ChannelState.RING,
                                context=context, exten=exten, behaviour=Behaviour(), name=f"{base};2")
        one.local_peer, two.local_peer = two, one
        two.runs_dialplan = True
        return one, two

    def _set_caller(self, ch: Channel, num: str, name: str) -> None:
        ch.caller_num, ch.caller_name = num, name
        self._event("NewCallerid", [*ch.snapshot(), ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])

    def _set_connected(self, ch: Channel, num: str, name: str) -> None:
        if (ch.connected_num, ch.connected_name) == (num, name):
            return
        ch.connected_num, ch.connected_name = num, name
        self._event("NewConnectedLine", ch.snapshot())

    def _set_state(self, ch: Channel, state: ChannelState) -> None:
        if ch.state == state:
            return
        ch.state = state
        if state == ChannelState.UP and ch.answered_at is None:
            ch.answered_at = self.clock.now()
        self._event("Newstate", ch.snapshot())
        self._refresh_device(ch.endpoint)

    def _enter(self, ch: Channel, context: str, exten: str) -> None:
        ch.context, ch.exten, ch.priority, ch.application = context, exten, 1, ""

    def _exec(self, ch: Channel, app: str, data: str) -> None:
        if ch.application:
            ch.priority += 1
        ch.application, ch.app_data = app, data
        self._event("Newexten", [*ch.snapshot(), ("Extension", ch.exten), ("Application", app), ("AppData", data)],
                    "dialplan,all")

    def _varset(self, ch: Channel, var: str, value: str) -> None:
        self._event("VarSet", [*ch.snapshot(), ("Variable", var), ("Value", value)], "dialplan,all")

    def _destroy(self, ch: Channel, cause: int) -> None:
        """The channel is gone: Hangup, device states, call bookkeeping."""
        if not ch.alive:
            return
        if ch.bridge is not None:
            bridge = ch.bridge
            self._bridge_leave(ch)
            if not bridge.channels:
                self._bridge_destroy(bridge)
        ch.alive = False
        partner = ch.local_peer
        consult = ch.consult_of
        if consult is not None:
            ch.consult_of = None
            if consult.transferer.transfer is consult:
                self._abort_phone_transfer(consult)
        for timer in ch.timers:
            timer.cancel()
        ch.timers.clear()
        if ch.call.channels and ch.call.channels[0] is ch:
            self._cdr(ch)
        self._event("Hangup", [*ch.snapshot(), ("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))])
        self.channels.pop(ch.name, None)
        self._refresh_device(ch.endpoint)
        if partner is not None and partner.alive:
            self.hangup(partner)  # a Local channel's halves go together
        call = ch.call
        call.live -= 1
        if call.live == 0 and not call.ended:
            call.ended = True
            self.live_calls.pop(call.linkedid, None)
            for hook in list(call.on_end):
                hook(call)

    def _cdr(self, ch: Channel) -> None:
        now = self.clock.now()
        start = ch.created_at
        answered = ch.answered_at is not None
        # Whole seconds, as Asterisk reports them; rounded to the microsecond first so that 9 s of simulated time
        # (exact on the simulated clock) does not become 8.9999998 -> 8 through the epoch's float rounding.
        billable = int(round(now - ch.answered_at, 6)) if ch.answered_at is not None else 0
        self._event(
            "Cdr",
            [
                ("AccountCode", ""),
                ("Source", ch.caller_num),
                ("Destination", ch.exten),
                ("DestinationContext", ch.context),
                ("CallerID", f'"{ch.caller_name}" <{ch.caller_num}>' if ch.caller_name else ch.caller_num),
                ("Channel", ch.name),
                ("DestinationChannel", ""),
                ("LastApplication", ch.application or "Dial"),
                ("LastData", ch.app_data),
                ("Duration", str(int(round(now - start, 6)))),
                ("BillableSeconds", str(billable)),
                ("Disposition", "ANSWERED" if answered else "NO ANSWER"),
                ("AMAFlags", "DOCUMENTATION"),
                ("UniqueID", ch.uniqueid),
                ("UserField", ""),
            ],
            "cdr,all",
        )

    def _later(self, ch: Channel, seconds: float, fn: Callable[[], object]) -> None:
        """Run ``fn`` after ``seconds`` unless ``ch`` is gone by then."""

        def run() -> None:
            if ch.alive:
                fn()

        ch.timers.append(self.clock.call_later(seconds, run))

    # ---- device and extension state ------------------------------------------------------------------------

    def _is_busy(self, ext: str) -> bool:
        return any(c.alive and c.role is Role.AGENT and c.endpoint == ext for c in self.channels.values())

    def is_dnd(self, ext: str) -> bool:
        return self.astdb.get(("DND", ext), "").upper() == "YES"

    def device_state(self, endpoint: str) -> str:
        """chan_pjsip's device state of ``PJSIP/<endpoint>``: its channels' states aggregated (a held channel counts
        as ONHOLD), except that an agent's phone (``device_state_busy_at=1``, as on the PJSIP lab) is BUSY while it
        has exactly one channel in use. The real lab shows BUSY from the moment the phone rings (a ringing channel
        counts as in use there, as observed), so ringing, talking and dialling out all read BUSY; two calls at once
        (a phone's transfer key) fall back to the aggregate (INUSE, RINGINUSE ...)."""
        chans = [c for c in self.channels.values() if c.endpoint == endpoint]
        states = ["ONHOLD" if c.held else _CHAN2DEV.get(c.state, "INUSE") for c in chans]
        if endpoint != TRUNK and DEVICE_STATE_BUSY_AT:
            in_use = sum(1 for c in chans if c.state != ChannelState.DOWN)
            if in_use == DEVICE_STATE_BUSY_AT:
                return "BUSY"
        return aggregate_device_states(states)

    def _refresh_device_later(self, endpoint: str) -> None:
        """A new channel's device state, once the step that made it is over: Asterisk computes a device state on
        its own thread a moment after the change, so a caller refused by Busy() shows BUSY, never the INUSE of the
        instant before, and the trunk of a new inbound call shows INUSE after the phone it rings shows BUSY."""
        if "@" in endpoint:
            return  # a Local channel half: its Local/<exten>@<context> device is not modelled
        if endpoint not in self._device_due:
            self._device_due.add(endpoint)

            def refresh() -> None:
                self._device_due.discard(endpoint)
                self._refresh_device(endpoint)

            self.clock.call_later(0, refresh)

    def _refresh_device(self, endpoint: str) -> None:
        if "@" in endpoint:
            return
        state = self.device_state(endpoint)
        device = f"PJSIP/{endpoint}"
        if self._device_state.get(device, "NOT_INUSE") != state:
            self._device_state[device] = state
            self._event("DeviceStateChange", [("Device", device), ("State", state)])
        if endpoint in self.agents:
            self._refresh_hint(endpoint)

    def extension_status(self, ext: str) -> int:
        """The hint ``PJSIP/<ext>&Custom:DND<ext>``: both devices aggregated, as an extension state."""
        state = aggregate_device_states([self._device_state.get(f"PJSIP/{ext}", "NOT_INUSE"),
                                         self.custom_states.get(f"DND{ext}", "UNKNOWN")])
        return _DEV2EXT.get(state, EXT_IDLE)

    def hint(self, ext: str) -> str:
        return f"PJSIP/{ext}&Custom:DND{ext}"

    def _refresh_hint(self, ext: str) -> None:
        status = self.extension_status(ext)
        if self._ext_status.get(ext, EXT_IDLE) == status:
            return
        self._ext_status[ext] = status
        self._event(
            "ExtensionStatus",
            [("Exten", ext), ("Context", HINT_CONTEXT), ("Hint", self.hint(ext)), ("Status", str(status)),
             ("StatusText", EXT_STATUS_TEXT.get(status, "Unknown"))],
        )

    def set_custom_state(self, name: str, state: str) -> None:
        state = state.upper()
        if self.custom_states.get(name, "NOT_INUSE") == state:
            return
        self.custom_states[name] = state
        self._event("DeviceStateChange", [("Device", f"Custom:{name}"), ("State", state)])
        m = re.fullmatch(r"DND(\d+)", name)
        if m and m.group(1) in self.agents:
            self._refresh_hint(m.group(1))

    def set_dnd(self, ext: str, on: bool) -> None:
        """FreePBX's DND toggle: the AstDB key and the custom device state, together."""
        if on:
            self.astdb[("DND", ext)] = "YES"
        else:
            self.astdb.pop(("DND", ext), None)
        self.set_custom_state(f"DND{ext}", "BUSY" if on else "NOT_INUSE")

    def db_put(self, family: str, key: str, value: str) -> None:
        if family == "DND" and key in self.agents:
            self.set_dnd(key, value.upper() == "YES")
            if value.upper() != "YES":
                self.astdb[(family, key)] = value
            return
        self.astdb[(family, key)] = value

    def db_del(self, family: str, key: str) -> bool:
        if (family, key) not in self.astdb:
            return False
        if family == "DND" and key in self.agents:
            self.set_dnd(key, False)
        self.astdb.pop((family, key), None)
        return True

    def queue_pause(self, ext: str, paused: bool, queue: str | None = None, reason: str = "") -> list[str]:
        """Pause or unpause ``ext`` in ``queue`` (or every queue it is in); returns the queues changed."""
        names = [q for q, members in self.queues.items() if ext in members and (queue is None or q == queue)]
        if not names:
            return []
        self.paused[ext] = (paused, reason if paused else "")
        now = self.clock.now()
        for q in names:
            self._event(
                "QueueMemberPause",
                [
                    ("Queue", q),
                    ("MemberName", self.agents[ext].name if ext in self.agents else ext),
                    ("Interface", f"PJSIP/{ext}"),
                    ("StateInterface", f"PJSIP/{ext}"),
                    ("Membership", "static"),
                    ("Penalty", "0"),
                    ("CallsTaken", "0"),
                    ("LastCall", "0"),
                    ("LastPause", str(int(now)) if paused else "0"),
                    ("LoginTime", str(int(now))),
                    ("InCall", "1" if self._is_busy(ext) else "0"),
                    ("Status", "1"),
                    ("Paused", "1" if paused else "0"),
                    ("PausedReason", reason if paused else ""),
                    ("Ringinuse", "0"),
                    ("Wrapuptime", "0"),
                ],
                "agent,all",
            )
        return names

    # ---- bridges --------------------------------------------------------------------------------------------

    def _bridge_create(self) -> Bridge:
        bridge = Bridge(uniqueid=str(uuid.uuid4()))
        self._event("BridgeCreate", bridge.headers())
        return bridge

    def _bridge_enter(self, bridge: Bridge, ch: Channel) -> None:
        bridge.channels.append(ch)
        ch.bridge = bridge
        self._event("BridgeEnter", [*bridge.headers(), *ch.snapshot()])

    def _bridge_leave(self, ch: Channel) -> None:
        bridge = ch.bridge
        if bridge is None:
            return
        bridge.channels.remove(ch)
        ch.bridge = None
        self._event("BridgeLeave", [*bridge.headers(), *ch.snapshot()])

    def _bridge_destroy(self, bridge: Bridge) -> None:
        self._event("BridgeDestroy", bridge.headers())

    def _connect(self, caller: Channel, leg: Channel) -> None:
        """A Dial() was answered by ``leg``: answer the caller if needed and bridge the two."""
        if caller.state != ChannelState.UP:
            self._set_state(caller, ChannelState.UP)
        self._set_connected(caller, *self._party(leg))
        bridge = self._bridge_create()
        self._app_dial(leg)
        self._bridge_enter(bridge, leg)
        self._bridge_enter(bridge, caller)
        self._schedule_talk(leg)
        self._schedule_talk(caller)

    def _app_dial(self, leg: Channel) -> None:
        """An answered dialled leg runs app_dial's pseudo-application: its snapshots lose the exten from then on."""
        leg.exten = ""
        self._exec(leg, "AppDial", "(Outgoing Line)")

    def _party(self, ch: Channel) -> tuple[str, str]:
        """Number and name of the person on ``ch`` as the other side should see them: the channel's caller id (an
        agent's phone carries its endpoint's callerid, a trunk leg we dialled the number dialled)."""
        return ch.caller_num, ch.caller_name

    def _schedule_talk(self, ch: Channel) -> None:
        if ch.hangup_scheduled or ch.behaviour.hangup_after is None:
            return
        ch.hangup_scheduled = True
        self._later(ch, ch.behaviour.hangup_after, lambda: self.hangup(ch))

    def _soft_hangup(self, ch: Channel) -> None:
        """The end of a channel's PBX thread: Asterisk announces it on a channel that runs the dialplan only."""
        if ch.runs_dialplan:
            self._event("SoftHangupRequest", [*ch.snapshot(), ("Cause", "16")])

    # ---- Dial() ---------------------------------------------------------------------------------------------

    def _dial(
        self,
        caller: Channel | None,
        targets: Sequence[Target],
        *,
        timeout: float,
        on_answer: Callable[[Channel], None],
        on_fail: Callable[[str], None],
        kind: Literal["route", "originate", "consult"] = "route",
        leg_caller: tuple[str, str] = ("", ""),
        label: str = "",
        first_uniqueid: str = "",
        on_ring: Callable[[Channel], None] | None = None,
    ) -> Dial:
        """app_dial as the lab's Asterisk shows it: each leg is created (an agent's phone with its endpoint's callerid,
        a trunk leg with the number dialled as its caller id), learns the caller as its connected line and takes the
        caller's exten; then the DialBegins; a single leg is the caller's connected line at once, of several the one
        that answers."""
        dial = Dial(caller=caller, legs=[], on_answer=on_answer, on_fail=on_fail, kind=kind, on_ring=on_ring)
        busy_before = {number: self._is_busy(number) for tkind, number, _ in targets if tkind == "agent"}
        call = caller.call if caller is not None else None
        for tkind, number, behaviour in targets:
            if tkind == "agent":
                agent = self.agents[number]
                beh = copy.copy(behaviour or agent.behaviour)
                if busy_before.get(number):
                    beh.busy, beh.busy_after = True, None
                leg = self._new_channel(Role.AGENT, number, call=call, state=ChannelState.DOWN,
                                        context=INTERNAL_CONTEXT, exten="s", behaviour=beh, label=label, dial=dial,
                                        uniqueid=first_uniqueid if not dial.legs else "",
                                        caller=(number, agent.name))
                leg.dialstring = number
            else:
                beh = copy.copy(behaviour or self.remote_behaviour)
                leg = self._new_channel(Role.TRUNK, TRUNK, call=call, state=ChannelState.DOWN,
                                        context=PSTN_CONTEXT, exten="s", behaviour=beh, label=label, dial=dial)
                leg.dialstring = f"{number}@{TRUNK}"
            call = leg.call
            dial.legs.append(leg)
            if caller is not None:
                leg.exten = caller.exten
                if tkind == "pstn":
                    # No callerid of its own: app_dial gives it the number dialled, and the caller as connected line.
                    leg.caller_num, leg.caller_name = number, ""
                    leg.connected_num, leg.connected_name = self._party(caller)
                    self._event("NewCallerid",
                                [*leg.snapshot(), ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
                    self._event("NewConnectedLine", leg.snapshot())
                else:
                    self._set_connected(leg, *self._party(caller))
            elif leg_caller != ("", ""):
                # Originate's CallerID: the phone leg's caller id (name only if given) and its connected line.
                num, name = leg_caller
                if (num or leg.caller_num, name or leg.caller_name) != (leg.caller_num, leg.caller_name):
                    self._set_caller(leg, num or leg.caller_num, name or leg.caller_name)
                self._set_connected(leg, num, name)
        if caller is not None:
            caller.outgoing = dial
        for leg in dial.legs:
            self._event("DialBegin", [*self._caller_snapshot(dial), *leg.snapshot("Dest"),
                                      ("DialString", leg.dialstring)])
        if caller is not None and len(dial.legs) == 1:
            self._set_connected(caller, *self._party(dial.legs[0]))
        for leg in list(dial.legs):
            if leg.behaviour.busy and leg.behaviour.busy_after is None:
                self._reject_later(leg, 17)
            else:
                self._ring(leg)
        if not dial.done:
            dial.timeout = self.clock.call_later(timeout, lambda: self._dial_timeout(dial))
        return dial

    def _reject_later(self, leg: Channel, cause: int, seconds: float = 0.05) -> None:
        """The phone or far end refuses the call (486 Busy Here ...) after ``seconds``: the channel's hang-up is
        requested with that cause, then Dial() sees it go."""

        def refuse() -> None:
            self._event("HangupRequest", [*leg.snapshot(), ("Cause", str(cause))])
            self._reject(leg, cause)

        self._later(leg, seconds, refuse)

    def _caller_snapshot(self, dial: Dial) -> Headers:
        return dial.caller.snapshot() if dial.caller is not None else []

    def _ring(self, leg: Channel) -> None:
        dial = leg.dial
        if dial is None:
            return
        self._set_state(leg, ChannelState.RINGING)
        self._event("DialState", [*self._caller_snapshot(dial), *leg.snapshot("Dest"), ("DialStatus", "RINGING")])
        if dial.on_ring is not None:
            dial.on_ring(leg)
        if leg.behaviour.busy and leg.behaviour.busy_after is not None:
            self._reject_later(leg, 17, leg.behaviour.busy_after)
        elif leg.behaviour.answer_after is not None:
            self._later(leg, leg.behaviour.answer_after, lambda: self.answer(leg))

    def answer(self, leg: Channel) -> bool:
        """The phone (or far end) on ``leg`` picks up. False if it is not ringing."""
        dial = leg.dial
        if dial is None or dial.done or not leg.alive:
            return False
        dial.done = True
        if dial.timeout is not None:
            dial.timeout.cancel()
        leg.dial = None
        self._set_state(leg, ChannelState.UP)
        others = [c for c in dial.legs if c is not leg]
        if dial.kind == "queue" and dial.caller is not None:
            # app_queue: the answer first, the others cancelled, the caller's connected line, and (as app_queue
            # publishes them twice) the others' DialEnd CANCEL again as it hangs them up.
            self._event("DialEnd", [*dial.caller.snapshot(), *leg.snapshot("Dest"), ("DialStatus", "ANSWER")])
            for other in others:
                other.dial = None
                self._event("DialEnd", [*dial.caller.snapshot(), *other.snapshot("Dest"), ("DialStatus", "CANCEL")])
            self._set_connected(dial.caller, *self._party(leg))
            for other in others:
                self._event("DialEnd", [*dial.caller.snapshot(), *other.snapshot("Dest"), ("DialStatus", "CANCEL")])
                self._destroy(other, 26)
            dial.legs = [leg]
            if dial.caller.outgoing is dial:
                dial.caller.outgoing = None
            dial.on_answer(leg)
            return True
        if dial.caller is not None and others:
            # Of several legs, the one that answers becomes the caller's connected line now.
            self._set_connected(dial.caller, *self._party(leg))
        for other in others:
            other.dial = None
            self._event("DialEnd", [*self._caller_snapshot(dial), *other.snapshot("Dest"), ("DialStatus", "CANCEL")])
        self._event("DialEnd", [*self._caller_snapshot(dial), *leg.snapshot("Dest"), ("DialStatus", "ANSWER")])
        for other in others:
            self._destroy(other, 26)  # app_dial hangs up the others: "Answered elsewhere", no hang-up request
        dial.legs = [leg]
        if dial.caller is not None and dial.caller.outgoing is dial:
            dial.caller.outgoing = None
        dial.on_answer(leg)
        return True

    def _reject(self, leg: Channel, cause: int) -> None:
        """A ringing leg goes away before answering (the phone declines, or is busy)."""
        dial = leg.dial
        if dial is None or dial.done:
            self._destroy(leg, cause)
            return
        status = dial_status_for_cause(cause)
        leg.dial = None
        dial.legs.remove(leg)
        if status == "BUSY":
            dial.busy += 1
        self._event("DialEnd", [*self._caller_snapshot(dial), *leg.snapshot("Dest"), ("DialStatus", status)])
        if not dial.legs:
            self._finish_failed(dial, "BUSY" if dial.busy else status)
        self._destroy(leg, cause)

    def _finish_failed(self, dial: Dial, status: str) -> None:
        dial.done = True
        if dial.timeout is not None:
            dial.timeout.cancel()
        if dial.caller is not None and dial.caller.outgoing is dial:
            dial.caller.outgoing = None
        dial.on_fail(status)

    def _dial_timeout(self, dial: Dial) -> None:
        if dial.done:
            return
        for leg in list(dial.legs):
            leg.dial = None
            self._event("DialEnd", [*self._caller_snapshot(dial), *leg.snapshot("Dest"), ("DialStatus", "NOANSWER")])
            # app_dial hangs the legs up with the caller's cause, still 0 at a timeout (as in the real captures).
            self._destroy(leg, 0)
        dial.legs = []
        self._finish_failed(dial, "NOANSWER")

    def _cancel_dial(self, dial: Dial, cause: int) -> None:
        if dial.done:
            return
        dial.done = True
        if dial.timeout is not None:
            dial.timeout.cancel()
        if dial.caller is not None and dial.caller.outgoing is dial:
            dial.caller.outgoing = None
        for leg in list(dial.legs):
            leg.dial = None
            self._event("DialEnd", [*self._caller_snapshot(dial), *leg.snapshot("Dest"), ("DialStatus", "CANCEL")])
        qc = dial.queue_call
        if qc is not None and dial.caller is not None:
            waited = str(int(round(self.clock.now() - qc.joined_at, 6)))
            self._event("QueueCallerAbandon", [*dial.caller.snapshot(), ("Queue", qc.queue), ("Position", "1"),
                                               ("OriginalPosition", "1"), ("HoldTime", waited)], "agent,all")
            self._event("QueueCallerLeave", [*dial.caller.snapshot(), ("Queue", qc.queue), ("Position", "1"),
                                             ("Count", "0")], "agent,all")
        if dial.caller is not None:
            self._soft_hangup(dial.caller)
        for leg in list(dial.legs):
            self._destroy(leg, cause)
        dial.legs = []

    def _route(
        self,
        ch: Channel,
        number: str,
        *,
        timeout: float | None = None,
        remote: Behaviour | None = None,
        on_answer: Callable[[Channel], None] | None = None,
        on_fail: Callable[[str], None] | None = None,
        kind: Literal["route", "consult"] = "route",
        on_ring: Callable[[Channel], None] | None = None,
    ) -> Dial | None:
        """``ch`` runs the dialplan for ``number`` as the lab's (FreePBX-shaped) dialplan does: a ring group
        (``ext-group``), an agent (``ext-agent``: DND gives Busy without ringing), or anything else the trunk."""
        answered = on_answer or (lambda leg: self._connect(ch, leg))
        failed = on_fail or (lambda status: self._dial_failed(ch, status))
        ring = self.ring_timeout if timeout is None else timeout
        targets: list[Target]
        if ch.context in (INTERNAL_CONTEXT, PSTN_CONTEXT) and ch.exten == number and (
                number in self.groups or number in self.agents):
            # from-internal / from-pstn: NoOp, then Goto the extension's own context.
            self._exec(ch, "NoOp", f"Call {ch.caller_num or '<unknown>'} -> {number}")
            self._exec(ch, "Goto", f"{'ext-group' if number in self.groups else 'ext-agent'},{number},1")
        if number in self.queues and number not in self.groups and number not in self.agents:
            if ch.context in (INTERNAL_CONTEXT, PSTN_CONTEXT) and ch.exten == number:
                self._exec(ch, "NoOp", f"Call {ch.caller_num or '<unknown>'} -> queue {number}")
                self._exec(ch, "Goto", f"ext-queue,{number},1")
            self._queue(ch, number)
            return None
        if number in self.groups:
            self._enter(ch, "ext-group", number)
            self._exec(ch, "Set", f"TIMEOUT_S={int(ring)}")
            self._exec(ch, "Set", "DIALSTR=")
            members = [m for m in self.groups[number]
                       if m in self.agents and not self.is_dnd(m) and not self._is_busy(m)]
            for m in self.groups[number]:
                self._exec(ch, "ExecIf", f'$["${{DB(DND/{m})}}" != "YES"]?Set(DIALSTR=${{DIALSTR}}&PJSIP/{m})')
            self._exec(ch, "GotoIf", '$["${DIALSTR}"=""]?nobody')
            if not members:
                ch.priority += 2  # n(nobody), after the Dial and its Goto
                self._busy_without_dialing(ch, failed, kind)
                return None
            targets = [("agent", m, None) for m in members]
            dialapp = "&".join(f"PJSIP/{m}" for m in members)
        elif number in self.agents:
            self._enter(ch, "ext-agent", number)
            self._exec(ch, "Set", f"TIMEOUT_S={int(ring)}")
            self._exec(ch, "GotoIf", f"$[\"{'YES' if self.is_dnd(number) else ''}\"=\"YES\"]?dnd")
            if self.is_dnd(number):
                ch.priority, ch.application = 4, "GotoIf"
                self._exec(ch, "NoOp", f"Agent {number} is DND")
                self._busy_without_dialing(ch, failed, kind)
                return None
            targets = [("agent", number, None)]
            dialapp = f"PJSIP/{number}"
        else:
            if not ch.application:
                self._exec(ch, "NoOp", f"Outbound call from {ch.caller_num or '<unknown>'} to {number}")
            targets = [("pstn", number, remote)]
            dialapp = f"PJSIP/{number}@{TRUNK}"
        self._exec(ch, "Dial", f"{dialapp},{int(ring)},tT")
        return self._dial(ch, targets, timeout=ring, on_answer=answered, on_fail=failed, kind=kind, on_ring=on_ring)

    def _queue(self, ch: Channel, number: str) -> None:
        """``ext-queue``: Answer(), then Queue(<number>,tT,,,60), ring-all: every member not paused and not on a call
        rings (app_queue's AgentCalled and DialBegin for each), the first to answer gets the caller (AgentConnect),
        the others end "answered elsewhere"; nobody within 60 s and the caller leaves the queue and is hung up."""
        self._enter(ch, "ext-queue", number)
        self._exec(ch, "Answer", "")

        def join() -> None:
            self._exec(ch, "Queue", f"{number},tT,,,60")
            qc = QueueCall(queue=number, caller=ch, joined_at=self.clock.now())
            self._event("QueueCallerJoin", [*ch.snapshot(), ("Queue", number), ("Position", "1"), ("Count", "1")],
                        "agent,all")
            dial = Dial(caller=ch, legs=[], on_answer=lambda leg: self._queue_connect(qc, leg),
                        on_fail=lambda status: self._queue_give_up(qc), kind="queue", queue_call=qc)
            ch.outgoing = dial
            members = [m for m in self.queues[number] if m in self.agents and not self.paused.get(m, (False, ""))[0]
                       and not self._is_busy(m)]
            for m in members:
                agent = self.agents[m]
                leg = self._new_channel(Role.AGENT, m, call=ch.call, state=ChannelState.DOWN,
                                        context=INTERNAL_CONTEXT, exten="s", behaviour=copy.copy(agent.behaviour),
                                        dial=dial, caller=(m, agent.name))
                leg.dialstring = f"PJSIP/{m}"
                dial.legs.append(leg)
                self._event("AgentCalled", [*ch.snapshot(), *leg.snapshot("Dest"), ("Queue", number),
                                            ("Interface", f"PJSIP/{m}"), ("MemberName", agent.name)], "agent,all")
                self._event("DialBegin", [*ch.snapshot(), *leg.snapshot("Dest"), ("DialString", leg.dialstring)])
            # The member learns the caller when it rings (app_queue), not before.
            dial.on_ring = lambda leg: self._event("NewConnectedLine", leg.snapshot())
            for leg in list(dial.legs):
                leg.exten = number
                leg.connected_num, leg.connected_name = self._party(ch)
                if leg.behaviour.busy and leg.behaviour.busy_after is None:
                    self._reject_later(leg, 17)
                else:
                    self._ring(leg)
            if not dial.done:
                dial.timeout = self.clock.call_later(60.0, lambda: self._dial_timeout(dial))

        def answer_caller() -> None:
            self._set_state(ch, ChannelState.UP)
            self._later(ch, MEDIA_WAIT_SECONDS, join)

        self._later(ch, MEDIA_WAIT_SECONDS, answer_caller)

    def _queue_connect(self, qc: QueueCall, leg: Channel) -> None:
        ch, now = qc.caller, self.clock.now()
        qc.member, qc.connected_at = leg, now
        self._event("QueueCallerLeave", [*ch.snapshot(), ("Queue", qc.queue), ("Position", "1"), ("Count", "0")],
                    "agent,all")
        agent = self.agents.get(leg.endpoint)
        self._event("AgentConnect", [*ch.snapshot(), *leg.snapshot("Dest"), ("Queue", qc.queue),
                                     ("Interface", f"PJSIP/{leg.endpoint}"),
                                     ("MemberName", agent.name if agent else leg.endpoint),
                                     ("HoldTime", str(int(round(now - qc.joined_at, 6)))),
                                     ("RingTime", str(int(round(now - leg.created_at, 6))))], "agent,all")
        bridge = self._bridge_create()
        bridge.queue_call = qc
        self._bridge_enter(bridge, leg)  # app_queue bridges the member as it is: no AppDial, the exten stays
        self._bridge_enter(bridge, ch)
        self._schedule_talk(leg)
        self._schedule_talk(ch)

    def _queue_give_up(self, qc: QueueCall) -> None:
        ch = qc.caller
        if not ch.alive:
            return
        self._event("QueueCallerLeave", [*ch.snapshot(), ("Queue", qc.queue), ("Position", "1"), ("Count", "0")],
                    "agent,all")
        self._exec(ch, "Hangup", "")
        self._soft_hangup(ch)
        self._destroy(ch, 16)

    def _agent_complete(self, bridge: Bridge, leaving: Channel) -> None:
        qc = bridge.queue_call
        if qc is None or qc.member is None:
            return
        bridge.queue_call = None
        member, agent = qc.member, self.agents.get(qc.member.endpoint)
        self._event("AgentComplete", [
            *qc.caller.snapshot(), *member.snapshot("Dest"), ("Queue", qc.queue),
            ("Interface", f"PJSIP/{member.endpoint}"), ("MemberName", agent.name if agent else member.endpoint),
            ("HoldTime", str(int(round(qc.connected_at - qc.joined_at, 6)))),
            ("TalkTime", str(int(round(self.clock.now() - qc.connected_at, 6)))),
            ("Reason", "agent" if leaving is member else "caller")], "agent,all")

    def _busy_without_dialing(self, ch: Channel, failed: Callable[[str], None], kind: str = "route") -> None:
        """Busy(10) on a DND extension (or a ring group with nobody to ring). On a channel not answered yet it means
        486 at once: the channel goes Busy and its hang-up follows (cause 17); an answered one hears the busy tone."""
        self._exec(ch, "Busy", "10")
        if kind == "route" and ch.state != ChannelState.UP:
            self._set_state(ch, ChannelState.BUSY)
            failed("BUSY")
            return
        self._varset(ch, "DIALSTATUS", "BUSY")
        self._later(ch, BUSY_TONE_SECONDS, lambda: failed("BUSY"))

    def _dial_failed(self, ch: Channel, status: str) -> None:
        """The caller's Dial() found nobody: the lab's dial-result hangs it up with the matching cause."""
        if not ch.alive:
            return
        cause = _FAIL_CAUSE.get(status, 16)
        if ch.state == ChannelState.BUSY:
            # Busy() refused it: the 486 went out and the channel goes.
            self._event("HangupRequest", [*ch.snapshot(), ("Cause", "17")])
            self._soft_hangup(ch)
            self._destroy(ch, 17)
            return
        self._varset(ch, "DIALSTATUS", status)
        self._enter(ch, "dial-result", f"s-{status}")
        if status not in ("CHANUNAVAIL", "CANCEL"):
            self._exec(ch, "NoOp", f"Dial ended: {status}")
        self._exec(ch, "Hangup", str(cause))
        self._soft_hangup(ch)
        self._destroy(ch, cause)

    # ---- starting calls -------------------------------------------------------------------------------------

    def inbound(
        self,
        number: str,
        name: str,
        did: str,
        *,
        label: str = "",
        caller: Behaviour | None = None,
        ring_timeout: float | None = None,
        outcome: Callable[[bool, int, Channel], None] | None = None,
    ) -> Call:
        """An outside caller ``number`` (``name``) calls ``did`` (an extension or a ring group) through the trunk. The
        name comes with the call (the SIP From display name), so the trunk channel carries it from its Newchannel."""
        trunk = self._new_channel(Role.TRUNK, TRUNK, call=None, state=ChannelState.RING, context=PSTN_CONTEXT,
                                  exten=did, behaviour=copy.copy(caller or Behaviour()), caller=(number, name),
                                  label=label)
        trunk.runs_dialplan = True
        if trunk.behaviour.abandon_after is not None:

            def abandon() -> None:
                if trunk.answered_at is None:
                    self.hangup(trunk)

            self._later(trunk, trunk.behaviour.abandon_after, abandon)

        def answered(leg: Channel) -> None:
            self._connect(trunk, leg)
            if outcome:
                outcome(True, 4, trunk)

        def failed(status: str) -> None:
            if outcome:
                outcome(False, _ORIGINATE_REASON.get(status, 0), trunk)
            self._dial_failed(trunk, status)

        self._route(trunk, did, timeout=ring_timeout, on_answer=answered, on_fail=failed)
        return trunk.call

    def dial_out(
        self,
        ext: str,
        number: str,
        *,
        label: str = "",
        remote: Behaviour | None = None,
        caller_name: str | None = None,
        outcome: Callable[[bool, int, Channel], None] | None = None,
    ) -> Call:
        """Agent ``ext`` lifts the handset and dials ``number`` (another extension, a group or an outside number)."""
        agent = self.agents[ext]
        ch = self._new_channel(Role.AGENT, ext, call=None, state=ChannelState.RING, context=INTERNAL_CONTEXT,
                               exten=number, behaviour=copy.copy(agent.behaviour),
                               caller=(ext, agent.name if caller_name is None else caller_name), label=label)
        ch.own_identity = True
        ch.runs_dialplan = True

        def answered(leg: Channel) -> None:
            self._connect(ch, leg)
            if outcome:
                outcome(True, 4, ch)

        def failed(status: str) -> None:
            if outcome:
                outcome(False, _ORIGINATE_REASON.get(status, 0), ch)
            self._dial_failed(ch, status)

        self._route(ch, number, remote=remote, on_answer=answered, on_fail=failed)
        return ch.call

    def originate_phone(
        self,
        ext: str,
        *,
        exten: str | None,
        context: str,
        application: str = "",
        app_data: str = "",
        caller_id: tuple[str, str] = ("", ""),
        timeout: float = 30.0,
        action_id: str = "",
        on_done: Callable[[bool], None] | None = None,
        remote: Behaviour | None = None,
        label: str = "",
        channel_id: str = "",
        report: bool = True,
    ) -> Call | None:
        """AMI Originate to ``PJSIP/<ext>``: the agent's phone rings first; once answered it runs ``exten``.
        ``channel_id`` (Originate's ``ChannelId``) becomes the phone channel's Uniqueid. ``report``: send the
        OriginateResponse event (Asterisk does for an Async originate only)."""
        agent = self.agents.get(ext)
        if not report:
            action_id = ""
        if agent is None:
            if report:
                self.originate_response(action_id, False, 0, f"PJSIP/{ext}", "", context, exten or "",
                                         application, app_data, caller_id)
            if on_done:
                on_done(False)
            return None
        behaviour = Behaviour(answer_after=agent.originate_answer_after, hangup_after=agent.behaviour.hangup_after)

        def answered(leg: Channel) -> None:
            if report:
                self.originate_response(action_id, True, 4, leg.name, leg.uniqueid, context, exten or "",
                                         application, app_data, caller_id)
            if on_done:
                on_done(True)
            leg.runs_dialplan = True
            if exten:
                self._enter(leg, context, exten)
                leg.own_identity = True
                self._route(leg, exten, remote=remote)
            else:
                self._enter(leg, context, "s")
                self._exec(leg, application or "Wait", app_data)
                self._schedule_talk(leg)

        def failed(status: str) -> None:
            if report:
                self.originate_response(action_id, False, _ORIGINATE_REASON.get(status, 0), f"PJSIP/{ext}", "",
                                         context, exten or "", application, app_data, caller_id)
            if on_done:
                on_done(False)

        dial = self._dial(None, [("agent", ext, behaviour)], timeout=timeout, on_answer=answered, on_fail=failed,
                          kind="originate", leg_caller=caller_id, label=label, first_uniqueid=channel_id)
        return dial.legs[0].call if dial.legs else None

    def originate_response(self, action_id: str, ok: bool, reason: int, channel: str, uniqueid: str, context: str,
                            exten: str, application: str, app_data: str, caller_id: tuple[str, str]) -> None:
        headers: Headers = [("ActionID", action_id)] if action_id else []
        headers += [("Response", "Success" if ok else "Failure"), ("Channel", channel)]
        if application:
            headers += [("Application", application), ("Data", app_data)]
        else:
            headers += [("Context", context), ("Exten", exten)]
        headers += [("Reason", str(reason)), ("Uniqueid", uniqueid or "<unknown>"),
                    ("CallerIDNum", caller_id[0] or "<unknown>"), ("CallerIDName", caller_id[1] or "<unknown>")]
        self._event("OriginateResponse", headers)

    # ---- hanging up -----------------------------------------------------------------------------------------

    def hangup(self, ch: Channel, cause: int = 16, *, via_ami: bool = False) -> bool:
        """The party on ``ch`` hangs up (or the PBX is told to hang it up, ``via_ami``)."""
        if not ch.alive:
            return False
        request = "SoftHangupRequest" if via_ami else "HangupRequest"
        if not via_ami and cause == 16 and ch.answered_at is None and ch.dial is None and ch.role is not Role.LOCAL:
            cause = 127  # a SIP party that gives up before the answer sends CANCEL: Asterisk says 127 (Interworking)
        if ch.dial is not None:
            self._event(request, [*ch.snapshot(), ("Cause", str(cause))])
            self._reject(ch, cause)
        elif ch.transfer is not None:
            self._complete_attended(ch, request)
        elif ch.outgoing is not None:
            self._event(request, [*ch.snapshot(), ("Cause", str(cause))])
            self._cancel_dial(ch.outgoing, cause)
            self._destroy(ch, cause)
        elif ch.bridge is not None:
            self._bridged_hangup(ch, cause, request)
        else:
            self._event(request, [*ch.snapshot(), ("Cause", str(cause))])
            if request != "SoftHangupRequest":
                self._soft_hangup(ch)
            self._destroy(ch, cause)
        return True

    def _bridged_hangup(self, ch: Channel, cause: int, request: str) -> None:
        bridge = ch.bridge
        assert bridge is not None
        self._event(request, [*ch.snapshot(), ("Cause", str(cause))])
        self._bridge_leave(ch)
        self._agent_complete(bridge, ch)
        if request != "SoftHangupRequest":
            self._soft_hangup(ch)
        self._destroy(ch, cause)
        held = ch.held_by
        if held is not None:
            # The caller on hold hung up during an attended transfer: the consultation goes on as a plain call.
            ch.held_by = None
            held.transferer.transfer = None
        for xfer in [c.transfer for c in bridge.channels if c.transfer is not None]:
            if xfer.target is ch or (xfer.local is not None and ch is xfer.local[0]):
                # The consultation ended (the consulted party, or the Local channel to it, hung up): the transferer
                # goes back to the caller on hold.
                self._bridge_leave(xfer.transferer)
                self._bridge_destroy(bridge)
                self._return_to_hold(xfer)
                return
        others = list(bridge.channels)
        for other in others:
            self._bridge_leave(other)
        self._bridge_destroy(bridge)
        for other in others:
            self._soft_hangup(other)
            self._destroy(other, 16)

    def end_call(self, call: Call) -> None:
        """Hang up every channel of ``call`` (used when a scenario or test tears down)."""
        for ch in list(call.channels):
            if ch.alive:
                self.hangup(ch, via_ami=True)

    def hangup_all(self, *, silently: bool = False) -> None:
        """End every call; ``silently`` = no events (the PBX process died: nobody hears the channels go)."""
        if silently:
            saved, self.sinks = self.sinks, []
            try:
                for call in list(self.live_calls.values()):
                    self.end_call(call)
            finally:
                self.sinks = saved
            self._device_state.clear()
            self._ext_status.clear()
            return
        for call in list(self.live_calls.values()):
            self.end_call(call)

    # ---- transfers ------------------------------------------------------------------------------------------

    def _peer(self, ch: Channel) -> Channel:
        bridge = ch.bridge
        if bridge is None or len(bridge.channels) != 2 or ch.transfer is not None or ch.held_by is not None:
            raise PBXError("Transfer invalid")
        return next(c for c in bridge.channels if c is not ch)

    def blind_transfer(self, ch: Channel, number: str, context: str = INTERNAL_CONTEXT) -> None:
        """``ch`` (bridged with the transferee) sends its peer to ``number`` and hangs up."""
        peer = self._peer(ch)
        bridge = ch.bridge
        assert bridge is not None
        self._event("Unhold", ch.snapshot())
        self._event(
            "BlindTransfer",
            [("Result", "Success"), *ch.snapshot("Transferer"), *peer.snapshot("Transferee"), *bridge.headers(),
             ("IsExternal", "Yes"), ("Context", context), ("Extension", number)],
        )
        # The transferer leaves and goes (no hang-up request: the transfer ends it); the transferee leaves for the
        # dialplan at the target, the bridge goes.
        self._bridge_leave(ch)
        self._enter(peer, context, number)
        self._bridge_leave(peer)
        self._bridge_destroy(bridge)
        self._soft_hangup(ch)
        self._destroy(ch, 16)
        self._route(peer, number)

    def redirect(self, ch: Channel, number: str, context: str = INTERNAL_CONTEXT) -> None:
        """AMI Redirect: ``ch`` leaves whatever it was doing and runs the dialplan at ``number``: it leaves its bridge
        already at the new place (the BridgeLeave shows the new context and exten), and its bridge peer is hung up
        without a hang-up request, as Asterisk does. No transfer event: only the move shows."""
        if ch.dial is not None or ch.transfer is not None or ch.held_by is not None:
            raise PBXError("Redirect failed")
        if ch.outgoing is not None:
            self._cancel_dial(ch.outgoing, 16)
        self._enter(ch, context, number)
        ch.runs_dialplan = True
        if ch.bridge is not None:
            bridge = ch.bridge
            self._bridge_leave(ch)
            others = list(bridge.channels)
            for other in others:
                self._bridge_leave(other)
            self._bridge_destroy(bridge)
            for other in others:
                self._soft_hangup(other)
                self._destroy(other, 16)
        self._route(ch, number)

    def attended_transfer(self, ch: Channel, number: str) -> None:
        """AMI Atxfer, i.e. Asterisk's attended-transfer feature (bridge_basic): ``ch`` holds its peer and consults
        ``number`` through a Local channel: ``;1`` joins ``ch`` in a bridge of their own, ``;2`` (with ``ch``'s caller
        id) runs the dialplan and dials the target. Hanging ``ch`` up later completes the transfer: ``;1`` moves into
        the held caller's bridge. (On the lab the consultation starts once the feature has collected the digits;
        here at once.)"""
        peer = self._peer(ch)
        hold = ch.bridge
        assert hold is not None
        xfer = Transfer(transferer=ch, transferee=peer, hold_bridge=hold, target_number=number)
        ch.transfer, peer.held_by = xfer, xfer
        self._event("Hold", ch.snapshot())
        peer.held = True
        self._refresh_device(peer.endpoint)
        one, two = self._local_pair(number, INTERNAL_CONTEXT, ch.call)
        xfer.local = (one, two)
        consult = self._bridge_create()
        xfer.consult_bridge = consult
        self._set_caller(two, ch.caller_num, ch.caller_name)
        self._event("LocalBridge", [*one.snapshot("LocalOne"), *two.snapshot("LocalTwo"),
                                    ("Context", INTERNAL_CONTEXT), ("Exten", number), ("LocalOptimization", "Yes")])
        self._set_connected(one, ch.caller_num, ch.caller_name)
        self._bridge_enter(consult, one)
        self._bridge_leave(ch)
        self._bridge_enter(consult, ch)
        self._set_connected(ch, *self._party(one))

        def ringing(leg: Channel) -> None:
            # What the target shows travels back through the Local channel to the transferer.
            if ch.alive:
                self._set_connected(ch, *self._party(leg))
            if one.alive and one.state != ChannelState.RINGING:
                # ;1 rings with the target's caller id already in its snapshot, then announces the new caller id.
                one.caller_num, one.caller_name = self._party(leg)
                self._set_state(one, ChannelState.RINGING)
                self._event("NewCallerid",
                            [*one.snapshot(), ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
                self._event("DialState", [*one.snapshot("Dest"), ("DialStatus", "RINGING")])

        def answered(leg: Channel) -> None:
            xfer.dial = None
            xfer.target = leg
            if one.alive:
                self._set_state(one, ChannelState.UP)
                self._event("DialEnd", [*one.snapshot("Dest"), ("DialStatus", "ANSWER")])
            if xfer.completed and peer.alive:
                self._set_connected(leg, peer.caller_num, peer.caller_name)
            self._connect(two, leg)

        def failed(status: str) -> None:
            xfer.dial = None
            self._dial_failed(two, status)  # ;2 goes, and with it ;1: the transferer is back with the caller

        xfer.dial = self._route(two, number, on_answer=answered, on_fail=failed, on_ring=ringing)

    def _return_to_hold(self, xfer: Transfer) -> None:
        a, p = xfer.transferer, xfer.transferee
        a.transfer, p.held_by = None, None
        if p.held:
            p.held = False
            self._refresh_device(p.endpoint)
        if p.alive and p.bridge is xfer.hold_bridge:
            self._event("Unhold", a.snapshot())
            if a.bridge is not None:
                self._bridge_leave(a)
            self._bridge_enter(xfer.hold_bridge, a)
            self._set_connected(a, *self._party(p))
        elif a.alive:
            self._soft_hangup(a)
            self._destroy(a, 16)

    def phone_transfer(self, a: Channel, number: str) -> Call:
        """The agent's phone transfer key: hold the call on ``a``, make a second call to ``number``; hanging ``a``
        up later (the phone's REFER) completes the transfer. Returns the second call."""
        peer = self._peer(a)
        hold = a.bridge
        assert hold is not None
        xfer = Transfer(transferer=a, transferee=peer, hold_bridge=hold, target_number=number, phone=True)
        a.transfer, peer.held_by = xfer, xfer
        self._event("Hold", a.snapshot())
        self._event("MusicOnHoldStart", [*peer.snapshot(), ("Class", "default")])
        agent = self.agents.get(a.endpoint)
        second = self._new_channel(Role.AGENT, a.endpoint, call=None, state=ChannelState.RING,
                                   context=INTERNAL_CONTEXT, exten=number, behaviour=Behaviour(),
                                   caller=(a.endpoint, agent.name if agent else ""), label=a.call.label)
        second.own_identity = True
        second.consult_of, xfer.second = xfer, second
        self._exec(second, "Macro", "user-callerid,")

        def answered(leg: Channel) -> None:
            xfer.dial = None
            self._connect(second, leg)
            if a.transfer is xfer:
                xfer.target, xfer.consult_bridge = leg, second.bridge

        xfer.dial = self._route(second, number, on_answer=answered)
        return second.call

    def _abort_phone_transfer(self, xfer: Transfer) -> None:
        """The consultation call ended before the transfer was completed: the phone takes the caller off hold."""
        a, p = xfer.transferer, xfer.transferee
        a.transfer, p.held_by = None, None
        if p.alive:
            self._event("MusicOnHoldStop", p.snapshot())
        if a.alive:
            self._event("Unhold", a.snapshot())

    def _attended_event(self, xfer: Transfer, *, dest_bridge: Bridge, target: Channel) -> None:
        a, p = xfer.transferer, xfer.transferee
        headers: Headers = [("Result", "Success"), *a.snapshot("OrigTransferer"),
                            *xfer.hold_bridge.headers("OrigBridge"), *(xfer.second or a).snapshot("SecondTransferer")]
        if xfer.consult_bridge is not None:
            headers += xfer.consult_bridge.headers("SecondBridge")
        headers += [("DestType", "Bridge"), ("DestBridgeUniqueid", dest_bridge.uniqueid),
                    *p.snapshot("Transferee"), *target.snapshot("TransferTarget"),
                    # Asterisk's own transfer feature (what AMI Atxfer starts) is internal; a phone's REFER is not.
                    ("IsExternal", "Yes" if xfer.phone else "No")]
        self._event("AttendedTransfer", headers)

    def _complete_attended(self, a: Channel, request: str) -> None:
        xfer = a.transfer
        assert xfer is not None
        p = xfer.transferee
        a.transfer, p.held_by = None, None
        target, consult, second = xfer.target, xfer.consult_bridge, xfer.second
        if xfer.phone and second is not None and target is not None and consult is not None and target.alive:
            # The phone's REFER: the caller joins the consultation bridge, both of the agent's channels go.
            self._attended_event(xfer, dest_bridge=consult, target=target)
            self._event("MusicOnHoldStop", p.snapshot())
            second.consult_of = None
            self._event(request, [*a.snapshot(), ("Cause", "16")])
            self._bridge_leave(a)
            self._destroy(a, 16)
            self._bridge_leave(second)
            self._event("SoftHangupRequest", [*second.snapshot(), ("Cause", "16")])
            self._destroy(second, 16)
            self._bridge_leave(p)
            self._bridge_destroy(xfer.hold_bridge)
            self._bridge_enter(consult, p)
            self._set_connected(p, *self._party(target))
            self._set_connected(target, p.caller_num, p.caller_name)
            return
        if xfer.phone:
            if second is not None and second.alive:
                second.consult_of = None
            self.hangup(a, via_ami=request == "SoftHangupRequest")
            return
        local = xfer.local
        if local is not None and local[0].alive and consult is not None and p.alive and p.bridge is xfer.hold_bridge:
            # bridge_basic completes the transfer: the transferer's consultation bridge merges into the held
            # caller's; the caller talks to the target (ringing or answered) through the Local channel.
            one, two = local
            hold = xfer.hold_bridge
            xfer.completed = True
            self._event(request, [*a.snapshot(), ("Cause", "16")])
            p.held = False
            self._refresh_device(p.endpoint)
            self._bridge_leave(a)
            self._event("BridgeMerge", [*hold.headers("ToBridge"), *consult.headers("FromBridge")])
            self._bridge_leave(one)
            self._bridge_enter(hold, one)
            self._set_connected(p, *self._party(one))
            self._event("AttendedTransfer", [
                ("Result", "Success"), *a.snapshot("OrigTransferer"), *hold.headers("OrigBridge"),
                *a.snapshot("SecondTransferer"), *consult.headers("SecondBridge"), *p.snapshot("Transferee"),
                ("IsExternal", "No"), ("DestType", "Bridge"), ("DestBridgeUniqueid", hold.uniqueid)])
            self._set_connected(one, p.caller_num, p.caller_name)
            self._bridge_destroy(consult)
            if request != "SoftHangupRequest":
                self._soft_hangup(a)
            self._destroy(a, 16)
            if target is not None and target.alive:
                self._set_connected(target, p.caller_num, p.caller_name)
            if two.alive:
                self._set_caller(two, p.caller_num, p.caller_name)
            return
        # Nothing to hand over (the consultation failed or never started): an ordinary hang-up, and the caller
        # left alone on hold goes too.
        self.hangup(a, via_ami=request == "SoftHangupRequest")
        if p.alive and p.bridge is xfer.hold_bridge and p.bridge.channels == [p]:
            self.hangup(p, via_ami=True)

    # ---- lookups and views ----------------------------------------------------------------------------------

    def uniqueid_in_use(self, uniqueid: str) -> bool:
        return any(c.uniqueid == uniqueid for c in self.channels.values())

    def find_channel(self, name: str) -> Channel | None:
        ch = self.channels.get(name)
        if ch is not None:
            return ch
        lowered = name.lower()
        for c in self.channels.values():
            if c.name.lower() == lowered or c.uniqueid == name:
                return c
        return None

    def ringing_leg(self, ext: str, call: Call | None = None) -> Channel | None:
        legs = [c for c in self.channels.values()
                if c.endpoint == ext and c.dial is not None and (call is None or c.call is call)]
        return legs[-1] if legs else None

    def answer_endpoint(self, ext: str) -> bool:
        """PJSIPNotify's "talk" event: the phone answers its ringing call, if it has one."""
        leg = self.ringing_leg(ext)
        return leg is not None and self.answer(leg)

    def channel_infos(self) -> list[ChannelInfo]:
        return [
            ChannelInfo(
                name=c.name, uniqueid=c.uniqueid, linkedid=c.linkedid, extension=c.ext,
                state=c.state.name.capitalize(), caller_num=c.caller_num, caller_name=c.caller_name,
                connected_num=c.connected_num, context=c.context, exten=c.exten,
                bridge=c.bridge.uniqueid if c.bridge else None, call_label=c.call.label,
            )
            for c in self.channels.values()
        ]

    @property
    def dnd(self) -> frozenset[str]:
        return frozenset(ext for (family, ext), value in self.astdb.items()
                         if family == "DND" and value.upper() == "YES")
