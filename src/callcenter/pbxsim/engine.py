"""The simulated Asterisk core: channels, Dial(), bridges, transfers, device states and AstDB, emitting AMI events.

Rules:
- Everything happens in the event loop's thread, synchronously: a method that changes the PBX emits its events, in
  Asterisk's order, before it returns. Delays (ringing, talking) are timers on the simulated clock.
- The shape is a production FreePBX-style SIP PBX (see the package docstring): agents' phones are ``PJSIP/<ext>-<seq>``
  in context ``from-internal``, the provider trunk is ``PJSIP/trunk-<seq>`` in ``from-pstn``. One call = one Linkedid
  (the Uniqueid of its first channel); Uniqueids are ``<epoch>.<seq>`` as Asterisk writes them.
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
        self._uid_seq = 0
        self._device_state: dict[str, str] = {}
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
    ) -> Channel:
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
        self._refresh_device(endpoint)
        return ch

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

    def _refresh_device(self, endpoint: str) -> None:
        chans = [c for c in self.channels.values() if c.endpoint == endpoint]
        if endpoint == TRUNK:
            state = "INUSE" if chans else "NOT_INUSE"
        else:
            ringing = any(c.dial is not None and c.state == ChannelState.RINGING for c in chans)
            inuse = any(c.dial is None for c in chans)
            state = "RINGINUSE" if ringing and inuse else "RINGING" if ringing else "INUSE" if inuse else "NOT_INUSE"
        device = f"PJSIP/{endpoint}"
        if self._device_state.get(device, "NOT_INUSE") != state:
            self._device_state[device] = state
            self._event("DeviceStateChange", [("Device", device), ("State", state)])
        if endpoint in self.agents:
            self._refresh_hint(endpoint)

    def extension_status(self, ext: str) -> int:
        if self.custom_states.get(f"DND{ext}") == "BUSY":
            return EXT_BUSY
        device = self._device_state.get(f"PJSIP/{ext}", "NOT_INUSE")
        return {"RINGINUSE": EXT_INUSE_RINGING, "RINGING": EXT_RINGING, "INUSE": EXT_INUSE}.get(device, EXT_IDLE)

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
        self._bridge_enter(bridge, leg)
        self._bridge_enter(bridge, caller)
        self._schedule_talk(leg)
        self._schedule_talk(caller)

    def _party(self, ch: Channel) -> tuple[str, str]:
        """Number and name of the person on ``ch`` as the other side should see them."""
        if ch.role is Role.AGENT:
            agent = self.agents.get(ch.endpoint)
            return ch.endpoint, agent.name if agent else ""
        if ch.dialstring:  # a trunk leg we dialled: the outside number, no name
            return ch.caller_num, ""
        return ch.caller_num, ch.caller_name

    def _schedule_talk(self, ch: Channel) -> None:
        if ch.hangup_scheduled or ch.behaviour.hangup_after is None:
            return
        ch.hangup_scheduled = True
        self._later(ch, ch.behaviour.hangup_after, lambda: self.hangup(ch))

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
    ) -> Dial:
        dial = Dial(caller=caller, legs=[], on_answer=on_answer, on_fail=on_fail, kind=kind)
        busy_before = {number: self._is_busy(number) for tkind, number, _ in targets if tkind == "agent"}
        call = caller.call if caller is not None else None
        for tkind, number, behaviour in targets:
            if tkind == "agent":
                agent = self.agents[number]
                beh = copy.copy(behaviour or agent.behaviour)
                if busy_before.get(number):
                    beh.busy = True
                leg = self._new_channel(Role.AGENT, number, call=call, state=ChannelState.DOWN,
                                        context=INTERNAL_CONTEXT, exten="s", behaviour=beh, label=label, dial=dial,
                                        uniqueid=first_uniqueid if not dial.legs else "")
                leg.dialstring = number
            else:
                beh = copy.copy(behaviour or self.remote_behaviour)
                leg = self._new_channel(Role.TRUNK, TRUNK, call=call, state=ChannelState.DOWN,
                                        context=PSTN_CONTEXT, exten="s", behaviour=beh, label=label, dial=dial)
                leg.dialstring = f"{number}@{TRUNK}"
            call = leg.call
            dial.legs.append(leg)
            if caller is not None:
                # As app_dial does: the callee's caller id shows what the caller dialled, its name the caller's;
                # its connected line is the caller (an agent calling shows as the agent, not as its own display).
                mine = caller.role is Role.TRUNK or caller.own_identity
                shown = (caller.caller_num, caller.caller_name) if mine else self._party(caller)
                dialled = number if tkind == "pstn" or caller.exten in ("", "s") else caller.exten
                self._set_caller(leg, dialled, shown[1])
                self._set_connected(leg, *shown)
            else:
                self._set_caller(leg, *leg_caller)
                self._set_connected(leg, *leg_caller)
        if caller is not None:
            caller.outgoing = dial
        for leg in dial.legs:
            self._event("DialBegin", [*self._caller_snapshot(dial), *leg.snapshot("Dest"),
                                      ("DialString", leg.dialstring)])
        for leg in list(dial.legs):
            if leg.behaviour.busy:
                self._reject_later(leg, 17)
            else:
                self._ring(leg)
        if not dial.done:
            dial.timeout = self.clock.call_later(timeout, lambda: self._dial_timeout(dial))
        return dial

    def _reject_later(self, leg: Channel, cause: int) -> None:
        self._later(leg, 0.05, lambda: self._reject(leg, cause))

    def _caller_snapshot(self, dial: Dial) -> Headers:
        return dial.caller.snapshot() if dial.caller is not None else []

    def _ring(self, leg: Channel) -> None:
        dial = leg.dial
        if dial is None:
            return
        self._set_state(leg, ChannelState.RINGING)
        self._event("DialState", [*self._caller_snapshot(dial), *leg.snapshot("Dest"), ("DialStatus", "RINGING")])
        if leg.behaviour.answer_after is not None:
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
        for other in [c for c in dial.legs if c is not leg]:
            other.dial = None
            self._event("DialEnd", [*self._caller_snapshot(dial), *other.snapshot("Dest"), ("DialStatus", "CANCEL")])
            self._event("HangupRequest", [*other.snapshot(), ("Cause", "26")])
            self._destroy(other, 26)
        dial.legs = [leg]
        self._event("DialEnd", [*self._caller_snapshot(dial), *leg.snapshot("Dest"), ("DialStatus", "ANSWER")])
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
        self._destroy(leg, cause)
        if not dial.legs:
            self._finish_failed(dial, "BUSY" if dial.busy else status)

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
    ) -> Dial | None:
        """``ch`` runs the dialplan for ``number``: a ring group, an agent, or (anything else) the trunk."""
        answered = on_answer or (lambda leg: self._connect(ch, leg))
        failed = on_fail or (lambda status: self._dial_failed(ch, status))
        targets: list[Target]
        if number in self.groups:
            members = [m for m in self.groups[number]
                       if m in self.agents and not self.is_dnd(m) and not self._is_busy(m)]
            self._exec(ch, "Macro", f"rg-group,{number}")
            if not members:
                self._busy_without_dialing(ch, failed)
                return None
            targets = [("agent", m, None) for m in members]
            dialapp = "&".join(f"PJSIP/{m}" for m in members)
        elif number in self.agents:
            self._exec(ch, "Macro", f"exten-vm,novm,{number}")
            if self.is_dnd(number):
                self._busy_without_dialing(ch, failed)
                return None
            targets = [("agent", number, None)]
            dialapp = f"PJSIP/{number}"
        else:
            self._exec(ch, "Macro", f"dialout-trunk,1,{number}")
            targets = [("pstn", number, remote)]
            dialapp = f"PJSIP/{number}@{TRUNK}"
        ring = self.ring_timeout if timeout is None else timeout
        self._exec(ch, "Dial", f"{dialapp},{int(ring)},tr")
        return self._dial(ch, targets, timeout=ring, on_answer=answered, on_fail=failed, kind=kind)

    def _busy_without_dialing(self, ch: Channel, failed: Callable[[str], None]) -> None:
        self._varset(ch, "DIALSTATUS", "BUSY")
        self._exec(ch, "Busy", "20")
        self._later(ch, BUSY_TONE_SECONDS, lambda: failed("BUSY"))

    def _dial_failed(self, ch: Channel, status: str) -> None:
        """The caller's Dial() found nobody: FreePBX's dial-result hangs it up with the matching cause."""
        if not ch.alive:
            return
        cause = _FAIL_CAUSE.get(status, 16)
        self._varset(ch, "DIALSTATUS", status)
        self._exec(ch, "Hangup", str(cause))
        self._event("SoftHangupRequest", [*ch.snapshot(), ("Cause", "16")])
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
        """An outside caller ``number`` (``name``) calls ``did`` (an extension or a ring group) through the trunk."""
        trunk = self._new_channel(Role.TRUNK, TRUNK, call=None, state=ChannelState.RING, context=PSTN_CONTEXT,
                                  exten=did, behaviour=copy.copy(caller or Behaviour()), caller=(number, ""),
                                  label=label)
        if name:
            self._set_caller(trunk, number, name)  # FreePBX's caller-name lookup
        self._exec(trunk, "NoOp", f"Inbound call from {number} to {did}")
        self._exec(trunk, "Set", f"__FROM_DID={did}")
        self._varset(trunk, "__FROM_DID", did)
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
        self._exec(ch, "Macro", "user-callerid,")
        self._varset(ch, "AMPUSER", ext)

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
            if exten:
                self._enter(leg, context, exten)
                self._set_caller(leg, ext, agent.name)  # from-internal sets the agent's own caller id
                leg.own_identity = True
                self._exec(leg, "Macro", "user-callerid,")
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
            self._destroy(ch, cause)
        return True

    def _bridged_hangup(self, ch: Channel, cause: int, request: str) -> None:
        bridge = ch.bridge
        assert bridge is not None
        self._event(request, [*ch.snapshot(), ("Cause", str(cause))])
        self._bridge_leave(ch)
        self._destroy(ch, cause)
        held = ch.held_by
        if held is not None:
            # The caller on hold hung up during an attended transfer: the consultation goes on as a plain call.
            ch.held_by = None
            held.transferer.transfer = None
        for xfer in [c.transfer for c in bridge.channels if c.transfer is not None]:
            if xfer.target is ch:
                # The consulted party hung up: the transferer goes back to the caller on hold.
                self._bridge_leave(xfer.transferer)
                self._bridge_destroy(bridge)
                self._return_to_hold(xfer)
                return
        others = list(bridge.channels)
        for other in others:
            self._bridge_leave(other)
        self._bridge_destroy(bridge)
        for other in others:
            self._event("SoftHangupRequest", [*other.snapshot(), ("Cause", "16")])
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
        self._bridge_leave(ch)
        self._event("HangupRequest", [*ch.snapshot(), ("Cause", "16")])
        self._destroy(ch, 16)
        self._enter(peer, context, number)
        self._bridge_leave(peer)
        self._bridge_destroy(bridge)
        self._route(peer, number)

    def redirect(self, ch: Channel, number: str, context: str = INTERNAL_CONTEXT) -> None:
        """AMI Redirect: ``ch`` leaves whatever it was doing and runs the dialplan at ``number``.
        Its bridge peer (if any) is hung up, as Asterisk does."""
        if ch.dial is not None or ch.transfer is not None or ch.held_by is not None:
            raise PBXError("Redirect failed")
        if ch.outgoing is not None:
            self._cancel_dial(ch.outgoing, 16)
        if ch.bridge is not None:
            bridge = ch.bridge
            self._bridge_leave(ch)
            others = list(bridge.channels)
            for other in others:
                self._bridge_leave(other)
            self._bridge_destroy(bridge)
            for other in others:
                self._event("SoftHangupRequest", [*other.snapshot(), ("Cause", "16")])
                self._destroy(other, 16)
        self._enter(ch, context, number)
        self._route(ch, number)

    def attended_transfer(self, ch: Channel, number: str) -> None:
        """``ch`` puts its peer on hold and consults ``number``; hanging ``ch`` up later completes the transfer."""
        peer = self._peer(ch)
        hold = ch.bridge
        assert hold is not None
        xfer = Transfer(transferer=ch, transferee=peer, hold_bridge=hold, target_number=number)
        ch.transfer, peer.held_by = xfer, xfer
        self._event("MusicOnHoldStart", [*peer.snapshot(), ("Class", "default")])
        self._bridge_leave(ch)

        def answered(leg: Channel) -> None:
            xfer.dial = None
            if ch.alive and ch.transfer is xfer:
                xfer.target = leg
                self._set_connected(ch, *self._party(leg))
                bridge = self._bridge_create()
                self._bridge_enter(bridge, leg)
                self._bridge_enter(bridge, ch)
                xfer.consult_bridge = bridge
                self._schedule_talk(leg)
            elif not ch.alive and peer.alive and peer.bridge is hold:
                # Blond transfer: the transferer hung up while the target rang; the caller gets the target.
                peer.held_by = None
                self._event("MusicOnHoldStop", peer.snapshot())
                self._set_connected(peer, *self._party(leg))
                self._bridge_enter(hold, leg)
                self._schedule_talk(leg)
            elif ch.alive:
                self._connect(ch, leg)
            else:
                self.hangup(leg)

        def failed(status: str) -> None:
            xfer.dial = None
            if ch.alive and ch.transfer is xfer:
                self._return_to_hold(xfer)
            elif ch.alive:
                self._dial_failed(ch, status)
            elif peer.alive:
                self.hangup(peer)

        xfer.dial = self._route(ch, number, on_answer=answered, on_fail=failed, kind="consult")

    def _return_to_hold(self, xfer: Transfer) -> None:
        a, p = xfer.transferer, xfer.transferee
        a.transfer, p.held_by = None, None
        if p.alive and p.bridge is xfer.hold_bridge:
            self._event("MusicOnHoldStop", p.snapshot())
            self._bridge_enter(xfer.hold_bridge, a)
        elif a.alive:
            self._event("SoftHangupRequest", [*a.snapshot(), ("Cause", "16")])
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
        if target is not None and consult is not None and target.alive:
            self._attended_event(xfer, dest_bridge=consult, target=target)
            self._event("MusicOnHoldStop", p.snapshot())
            self._event(request, [*a.snapshot(), ("Cause", "16")])
            self._bridge_leave(a)
            self._destroy(a, 16)
            self._bridge_leave(p)
            self._bridge_destroy(xfer.hold_bridge)
            self._bridge_enter(consult, p)
            self._set_connected(p, *self._party(target))
            self._set_connected(target, p.caller_num, p.caller_name)
            return
        dial = xfer.dial
        if dial is not None and not dial.done and dial.legs:
            # Blond transfer: the target still rings; when it answers it gets the caller (see attended_transfer).
            self._attended_event(xfer, dest_bridge=xfer.hold_bridge, target=dial.legs[0])
            dial.caller = p
            p.outgoing = dial
            a.outgoing = None
            self._event(request, [*a.snapshot(), ("Cause", "16")])
            self._destroy(a, 16)
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
