"""Scenario files: a small line-based language that scripts calls on the simulated PBX.

Rules:
- One statement per line; ``#`` starts a comment; words are split like a shell does, so a name with spaces or Greek
  letters is written in quotes: ``"Γιώργος Παπαδόπουλος"``.
- Declarations (anywhere in the file) set up extensions; timed steps (``at SECONDS VERB ...``) happen at that many
  simulated seconds after the scenario starts, in file order when two share a time.
- A scenario owns the behaviour of every extension it mentions: a declared ``agent`` gets the declared behaviour, any
  other extension it names answers and hangs up only when a step says so.
- A scenario ends when every step has run and every call it started has ended (or at ``end SECONDS`` if later).
- A step that cannot be carried out (``answer c1 101`` while 101 does not ring) is an error of the run: it is logged
  and kept in ``ScenarioRun.errors``; the run goes on.

The grammar (SECONDS and S are numbers of simulated seconds; CALL is a name you choose, like ``c1``):

    name NAME                                   the scenario's name (default: the file name)
    agent EXT [NAME] [answer-after S | never | busy-after S] [hangup-after S] [originate-answer-after S] [dnd]
                                                (busy-after S: the phone rings S seconds, then answers 486 Busy)
    group NUMBER EXT EXT ...                    a ring group: all members ring, the first to answer wins
    queue NUMBER EXT EXT ...                    a queue (QueuePause works on its members)
    ring-timeout S                              how long Dial() rings before NOANSWER (default 20)
    end SECONDS                                 keep the scenario running at least until then

    at SECONDS inbound CALL from NUMBER [NAME] to EXT|GROUP [ring-timeout S] [hangup-after S] [abandon-after S]
    at SECONDS outbound CALL from EXT to NUMBER [answer-after S | no-answer | busy | busy-after S] [hangup-after S]
                                                (busy: 486 at once; busy-after S: rings S seconds, then 486)
    at SECONDS internal CALL from EXT to EXT    (same as outbound; the PBX routes by the number)
    at SECONDS originate CALL EXT to NUMBER [answer-after S | no-answer | busy] [hangup-after S]
                                                click-to-call: EXT's phone rings first, as with AMI Originate
    at SECONDS answer CALL EXT                  EXT's ringing phone is picked up
    at SECONDS hangup CALL EXT|remote           that party hangs up (``remote``/``caller``: the outside party)
    at SECONDS blind-transfer CALL EXT to NUMBER
    at SECONDS redirect CALL EXT|remote to NUMBER   AMI Redirect of that party's channel (``remote``: the outside
                                                party, e.g. the caller) to NUMBER in from-internal; its peer hangs up
    at SECONDS attended-transfer CALL EXT to NUMBER   AMI Atxfer: EXT consults NUMBER, the caller waits on hold
    at SECONDS phone-transfer CALL EXT to NUMBER      the phone's transfer key: the call goes on hold and EXT's
                                                phone makes a second call (own Linkedid) to NUMBER
    at SECONDS complete-transfer CALL EXT       EXT hangs up, which completes its attended (or phone) transfer
    at SECONDS dnd EXT on|off                   FreePBX DND (AstDB DND/EXT + Custom:DND<EXT>)
    at SECONDS pause EXT on|off [QUEUE]         queue member pause
    at SECONDS fault drop|garbage|stall [for S] a fault on every connected AMI client (see the server)
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from callcenter.pbxsim.engine import PBXCore, PBXError
from callcenter.pbxsim.model import Behaviour, Call, Channel, Role

log = logging.getLogger("callcenter.pbxsim")

FAULTS = ("drop", "garbage", "stall")
_VERBS = ("inbound", "outbound", "internal", "originate", "answer", "hangup", "blind-transfer", "redirect",
          "attended-transfer", "phone-transfer", "complete-transfer", "dnd", "pause", "fault")
_DECLARATIONS = ("name", "agent", "group", "queue", "ring-timeout", "end", "at")

FaultHook = Callable[[str, float | None], None]


class ScenarioError(ValueError):
    """A scenario file that cannot be understood; the text names the file, the line and what to write instead."""


@dataclass
class AgentSpec:
    ext: str
    name: str = ""
    behaviour: Behaviour = field(default_factory=Behaviour)
    originate_answer_after: float | None = None
    dnd: bool = False


@dataclass(frozen=True)
class Step:
    at: float
    verb: str
    line: int
    call: str = ""
    ext: str = ""
    number: str = ""
    name: str = ""
    on: bool = False
    queue: str = ""
    fault: str = ""
    duration: float | None = None
    behaviour: Behaviour | None = None
    ring_timeout: float | None = None


@dataclass
class Scenario:
    name: str
    source: str = "<scenario>"
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    queues: dict[str, list[str]] = field(default_factory=dict)
    ring_timeout: float | None = None
    end: float = 0.0
    steps: list[Step] = field(default_factory=list)

    def extensions(self) -> set[str]:
        """Every extension the scenario mentions (declared agents, group and queue members, step parties)."""
        exts = set(self.agents)
        for members in [*self.groups.values(), *self.queues.values()]:
            exts.update(members)
        for step in self.steps:
            if step.ext and step.ext not in self.groups and step.ext not in self.queues:
                exts.add(step.ext)
        return exts


class _Line:
    def __init__(self, source: str, lineno: int, words: list[str]) -> None:
        self.source, self.lineno, self.words, self.pos = source, lineno, words, 0

    def error(self, what: str) -> ScenarioError:
        return ScenarioError(f"{self.source}:{self.lineno}: {what}")

    def more(self) -> bool:
        return self.pos < len(self.words)

    def peek(self) -> str:
        return self.words[self.pos] if self.more() else ""

    def word(self, what: str) -> str:
        if not self.more():
            raise self.error(f"expected {what} at the end of the line")
        w = self.words[self.pos]
        self.pos += 1
        return w

    def keyword(self, expected: str) -> None:
        w = self.word(f"'{expected}'")
        if w != expected:
            raise self.error(f"expected '{expected}', found '{w}'")

    def seconds(self, what: str) -> float:
        w = self.word(what)
        try:
            value = float(w)
        except ValueError:
            raise self.error(f"{what} must be a number of seconds, found '{w}'") from None
        if value < 0 or value != value or value == float("inf"):
            raise self.error(f"{what} must be zero or more seconds, found '{w}'")
        return value

    def number(self, what: str) -> str:
        w = self.word(what)
        if not w or not all(c.isdigit() or c in "+*#" for c in w):
            raise self.error(f"{what} must be a phone number or extension (digits, +, *, #), found '{w}'")
        return w

    def on_off(self) -> bool:
        w = self.word("'on' or 'off'")
        if w not in ("on", "off"):
            raise self.error(f"expected 'on' or 'off', found '{w}'")
        return w == "on"

    def done(self) -> None:
        if self.more():
            raise self.error(f"unexpected '{self.peek()}' (the line should end here)")


def _remote_options(line: _Line) -> Behaviour:
    behaviour = Behaviour(answer_after=2.0)
    while line.more():
        opt = line.word("an option")
        if opt == "answer-after":
            behaviour.answer_after = line.seconds("answer-after")
        elif opt == "no-answer":
            behaviour.answer_after = None
        elif opt == "busy":
            behaviour.busy = True
        elif opt == "busy-after":
            behaviour.busy, behaviour.busy_after = True, line.seconds("busy-after")
        elif opt == "hangup-after":
            behaviour.hangup_after = line.seconds("hangup-after")
        else:
            raise line.error(f"unknown option '{opt}' (expected answer-after S, no-answer, busy, busy-after S or "
                             "hangup-after S)")
    return behaviour


def _parse_step(line: _Line, at: float) -> Step:
    verb = line.word("a step")
    if verb not in _VERBS:
        raise line.error(f"unknown step '{verb}' (expected one of: {', '.join(_VERBS)})")
    n = line.lineno
    if verb == "inbound":
        call = line.word("a call name")
        line.keyword("from")
        number = line.number("the caller's number")
        name = ""
        if line.more() and line.peek() != "to":
            name = line.word("the caller's name")
        line.keyword("to")
        dest = line.number("the extension or group called")
        caller = Behaviour()
        ring_timeout: float | None = None
        while line.more():
            opt = line.word("an option")
            if opt == "ring-timeout":
                ring_timeout = line.seconds("ring-timeout")
            elif opt == "hangup-after":
                caller.hangup_after = line.seconds("hangup-after")
            elif opt == "abandon-after":
                caller.abandon_after = line.seconds("abandon-after")
            else:
                raise line.error(f"unknown option '{opt}' (expected ring-timeout S, hangup-after S or abandon-after S)")
        return Step(at, verb, n, call=call, number=number, name=name, ext=dest, behaviour=caller,
                    ring_timeout=ring_timeout)
    if verb in ("outbound", "internal"):
        call = line.word("a call name")
        line.keyword("from")
        ext = line.number("the calling extension")
        line.keyword("to")
        number = line.number("the number dialled")
        return Step(at, "dial", n, call=call, ext=ext, number=number, behaviour=_remote_options(line))
    if verb == "originate":
        call = line.word("a call name")
        ext = line.number("the extension whose phone is called first")
        line.keyword("to")
        number = line.number("the number dialled")
        return Step(at, verb, n, call=call, ext=ext, number=number, behaviour=_remote_options(line))
    if verb in ("answer", "complete-transfer"):
        call = line.word("a call name")
        ext = line.number("an extension")
        line.done()
        return Step(at, verb, n, call=call, ext=ext)
    if verb == "hangup":
        call = line.word("a call name")
        party = line.word("an extension or 'remote'")
        if party == "caller":
            party = "remote"
        if party != "remote" and not party.isdigit():
            raise line.error(f"hang up whom? expected an extension or 'remote', found '{party}'")
        line.done()
        return Step(at, verb, n, call=call, ext="" if party == "remote" else party, number=party)
    if verb == "redirect":
        call = line.word("a call name")
        party = line.word("an extension or 'remote'")
        if party == "caller":
            party = "remote"
        if party != "remote" and not party.isdigit():
            raise line.error(f"redirect whom? expected an extension or 'remote', found '{party}'")
        line.keyword("to")
        number = line.number("the number to send it to")
        line.done()
        return Step(at, verb, n, call=call, ext="" if party == "remote" else party, number=number)
    if verb in ("blind-transfer", "attended-transfer", "phone-transfer"):
        call = line.word("a call name")
        ext = line.number("the transferring extension")
        line.keyword("to")
        number = line.number("the transfer target")
        line.done()
        return Step(at, verb, n, call=call, ext=ext, number=number)
    if verb in ("dnd", "pause"):
        ext = line.number("an extension")
        on = line.on_off()
        queue = line.word("a queue") if verb == "pause" and line.more() else ""
        line.done()
        return Step(at, verb, n, ext=ext, on=on, queue=queue)
    kind = line.word("a fault kind")
    if kind not in FAULTS:
        raise line.error(f"unknown fault '{kind}' (expected one of: {', '.join(FAULTS)})")
    duration = None
    if line.more():
        line.keyword("for")
        duration = line.seconds("the fault's duration")
    line.done()
    return Step(at, "fault", n, fault=kind, duration=duration)


def parse_scenario(text: str, *, source: str = "<scenario>", name: str = "") -> Scenario:
    scenario = Scenario(name=name or Path(source).stem, source=source)
    calls: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(raw, comments=True, posix=True)
        except ValueError as exc:
            raise ScenarioError(f"{source}:{lineno}: {exc} (close the quotes)") from None
        if not words:
            continue
        line = _Line(source, lineno, words)
        head = line.word("a statement")
        if head == "at":
            step = _parse_step(line, line.seconds("the step's time"))
            if step.call and step.verb in ("inbound", "dial", "originate"):
                if step.call in calls:
                    raise line.error(f"call '{step.call}' is started twice; give the second call another name")
                calls.add(step.call)
            elif step.call and step.call not in calls:
                raise line.error(f"call '{step.call}' is used before a step starts it")
            scenario.steps.append(step)
        elif head == "name":
            scenario.name = line.word("a name")
            line.done()
        elif head == "agent":
            spec = AgentSpec(ext=line.number("the agent's extension"))
            if line.more() and line.peek() not in ("answer-after", "never", "busy-after", "hangup-after", "dnd",
                                                   "originate-answer-after"):
                spec.name = line.word("the agent's name")
            while line.more():
                opt = line.word("an option")
                if opt == "answer-after":
                    spec.behaviour.answer_after = line.seconds("answer-after")
                elif opt == "never":
                    spec.behaviour.answer_after = None
                elif opt == "busy-after":
                    spec.behaviour.busy, spec.behaviour.busy_after = True, line.seconds("busy-after")
                elif opt == "hangup-after":
                    spec.behaviour.hangup_after = line.seconds("hangup-after")
                elif opt == "originate-answer-after":
                    spec.originate_answer_after = line.seconds("originate-answer-after")
                elif opt == "dnd":
                    spec.dnd = True
                else:
                    raise line.error(f"unknown agent option '{opt}' (expected answer-after S, never, busy-after S, "
                                     "hangup-after S, originate-answer-after S or dnd)")
            scenario.agents[spec.ext] = spec
        elif head in ("group", "queue"):
            number = line.number(f"the {head} number")
            members = []
            while line.more():
                members.append(line.number("a member extension"))
            if not members:
                raise line.error(f"{head} {number} has no members; list their extensions")
            (scenario.groups if head == "group" else scenario.queues)[number] = members
        elif head == "ring-timeout":
            scenario.ring_timeout = line.seconds("ring-timeout")
            line.done()
        elif head == "end":
            scenario.end = line.seconds("end")
            line.done()
        else:
            raise line.error(f"unknown statement '{head}' (expected one of: {', '.join(_DECLARATIONS)})")
    scenario.steps.sort(key=lambda s: s.at)  # stable: file order within one time
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario file {p} is not UTF-8 text") from None
    return parse_scenario(text, source=str(p))


def builtin_scenarios() -> dict[str, Path]:
    """The example scenarios shipped with the simulator, by name."""
    folder = Path(__file__).with_name("scenarios")
    return {p.stem: p for p in sorted(folder.glob("*.scenario"))}


class ScenarioRun:
    """One run of a scenario on a PBX. ``await run.wait()`` returns when it has ended."""

    def __init__(self, core: PBXCore, scenario: Scenario, *, fault: FaultHook | None = None) -> None:
        self.core = core
        self.scenario = scenario
        self.calls: dict[str, list[Call]] = {}  # by the scenario's call name; a phone transfer adds a second
        self.errors: list[str] = []
        self._fault = fault
        self._pending_steps = len(scenario.steps)
        self._end_reached = scenario.end <= 0
        self._done: asyncio.Future[None] | None = None
        self.started_at = 0.0

    def start(self) -> ScenarioRun:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        core, sc = self.core, self.scenario
        self.started_at = core.clock.now()
        if sc.ring_timeout is not None:
            core.ring_timeout = sc.ring_timeout
        for ext in sorted(sc.extensions()):
            spec = sc.agents.get(ext, AgentSpec(ext=ext))
            agent = core.add_agent(ext, spec.name, Behaviour(**vars(spec.behaviour)))
            if spec.originate_answer_after is not None:
                agent.originate_answer_after = spec.originate_answer_after
            if spec.dnd:
                core.set_dnd(ext, True)
        core.groups.update({k: list(v) for k, v in sc.groups.items()})
        core.queues.update({k: list(v) for k, v in sc.queues.items()})
        for step in sc.steps:
            core.clock.call_later(step.at, self._step_runner(step))
        if sc.end > 0:
            core.clock.call_later(sc.end, self._end)
        self._check_done()
        return self

    def _step_runner(self, step: Step) -> Callable[[], None]:
        return lambda: self._run_step(step)

    async def wait(self) -> None:
        if self._done is None:
            raise RuntimeError("the scenario run has not been started")
        await asyncio.shield(self._done)

    @property
    def done(self) -> bool:
        return self._done is not None and self._done.done()

    def _end(self) -> None:
        self._end_reached = True
        self._check_done()

    def _check_done(self) -> None:
        if self._done is None or self._done.done():
            return
        if self._pending_steps == 0 and self._end_reached and all(
                c.ended for calls in self.calls.values() for c in calls):
            self._done.set_result(None)

    def _call_ended(self, call: Call) -> None:
        self._check_done()

    def _started(self, label: str, call: Call | None) -> None:
        if call is None:
            return
        call.label = call.label or label
        self.calls.setdefault(label, []).append(call)
        call.on_end.append(self._call_ended)

    def _run_step(self, step: Step) -> None:
        try:
            self._do(step)
        except (PBXError, LookupError) as exc:
            msg = f"{self.scenario.source}:{step.line}: at {step.at:g} {step.verb}: {exc}"
            log.warning("pbxsim scenario step failed: %s", msg)
            self.errors.append(msg)
        finally:
            self._pending_steps -= 1
            self._check_done()

    def _live(self, step: Step) -> list[Channel]:
        return [c for call in self.calls.get(step.call, []) for c in call.channels
                if c.alive and c.role is Role.AGENT and c.endpoint == step.ext]

    def _channel(self, step: Step, *, ringing: bool | None = None) -> Channel:
        calls = self.calls.get(step.call)
        if not calls:
            raise LookupError(f"call '{step.call}' did not start")
        live = [c for call in calls for c in call.channels if c.alive]
        if step.ext:
            found = [c for c in live if c.role is Role.AGENT and c.endpoint == step.ext]
        else:
            found = [c for c in live if c.role is Role.TRUNK]
        if ringing is not None:
            found = [c for c in found if (c.dial is not None) == ringing]
        if not found:
            who = step.ext or "the outside party"
            state = " ringing" if ringing else ""
            raise LookupError(f"{who} has no{state} channel in call '{step.call}'")
        # The call in hand before one on hold (a phone transfer's consultation before the held call).
        found.sort(key=lambda c: c.transfer is not None)
        return found[0]

    def _do(self, step: Step) -> None:
        core = self.core
        if step.verb == "inbound":
            label = step.call
            call = core.inbound(step.number, step.name, step.ext, label=label, caller=step.behaviour,
                                ring_timeout=step.ring_timeout)
            self._started(label, call)
        elif step.verb == "dial":
            self._started(step.call, core.dial_out(step.ext, step.number, label=step.call, remote=step.behaviour))
        elif step.verb == "originate":
            self._started(step.call, core.originate_phone(step.ext, exten=step.number, context="from-internal",
                                                          remote=step.behaviour,
                                                          label=step.call))
        elif step.verb == "answer":
            if not core.answer(self._channel(step, ringing=True)):
                raise LookupError(f"{step.ext} could not answer")
        elif step.verb == "complete-transfer":
            transferer = [c for c in self._live(step) if c.transfer is not None]
            if not transferer:
                raise LookupError(f"{step.ext} has no transfer to complete in call '{step.call}'")
            core.hangup(transferer[0])
        elif step.verb == "hangup":
            core.hangup(self._channel(step))
        elif step.verb == "blind-transfer":
            core.blind_transfer(self._channel(step, ringing=False), step.number)
        elif step.verb == "redirect":
            core.redirect(self._channel(step, ringing=False), step.number)
        elif step.verb == "attended-transfer":
            core.attended_transfer(self._channel(step, ringing=False), step.number)
        elif step.verb == "phone-transfer":
            self._started(step.call, core.phone_transfer(self._channel(step, ringing=False), step.number))
        elif step.verb == "dnd":
            core.set_dnd(step.ext, step.on)
        elif step.verb == "pause":
            if not core.queue_pause(step.ext, step.on, step.queue or None):
                raise LookupError(f"{step.ext} is in no queue{' ' + step.queue if step.queue else ''}")
        elif step.verb == "fault":
            if self._fault is None:
                raise LookupError("faults need the AMI server (run the scenario through SimulatedPBX)")
            self._fault(step.fault, step.duration)
