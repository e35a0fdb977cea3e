"""A bridge that logs in while calls are in progress announces every call live on the PBX at its login, whatever the
order in which the PBX's events and its list of live channels (``CoreShowChannels``) reach it.

Asterisk goes on reporting its calls between the bridge's login and the list, and may send events that happened
before the list after it. Here the event stream and the lists come from the simulated Asterisk (pbxsim: its events
and its own ``CoreShowChannels`` answer, taken after each event), and are fed to the translator sans I/O the way the
connector does after a login: the events from the login on, with the list (as it was at some moment not before the
events already delivered) put in at every point of the stream near the login.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from callcenter import wire
from callcenter.bridge.connectors.ami.codec import Message
from callcenter.bridge.connectors.ami.translate import Translator, TranslatorConfig
from callcenter.pbxsim import Behaviour, SimulatedPBX
from callcenter.pbxsim.model import AMIEvent
from callcenter.pbxsim.server import Session
from tests.bridge.ami.test_translate import ALICE, CALLER, TRUNK, Pbx, chan, hangup
from tests.bridge.ami.test_translate_resync import listed

AGENTS = ("100", "101", "102", "103")
SPEED = 200.0
_AGENT_CHANNEL = re.compile(r"^PJSIP/(\d+)-[0-9a-f]+$")
WINDOW = 5  # how far from the login the list may come, and how far ahead of the events it may be


class Recording:
    """Every event pbxsim produced, and its ``CoreShowChannels`` answer before the first and after each one."""

    def __init__(self, pbx: SimulatedPBX) -> None:
        self.pbx = pbx
        self.events: list[Message] = []
        self.hung_up: set[str] = set()  # pbxsim lists a channel until just after its Hangup event: not here
        self.lists: list[list[Message]] = [self.listing()]
        pbx.core.sinks.append(self.record)

    def record(self, event: AMIEvent) -> None:
        self.events.append(Message("event", tuple(event.wire_headers())))
        if event.name == "Hangup":
            self.hung_up.add(event.get("Uniqueid") or "")
        self.lists.append(self.listing())

    def listing(self) -> list[Message]:
        session = Session.__new__(Session)  # only its CoreShowChannels answer is used: the server's own code
        session.server = self.pbx.server
        answer = session.a_core_show_channels(Message("action", (("Action", "CoreShowChannels"),
                                                                 ("ActionID", "cc-1"))))
        try:
            answer.send(None)
        except StopIteration as done:
            return [Message("event", tuple(item)) for item in done.value
                    if item[0] == ("Event", "CoreShowChannel") and ("Uniqueid", "") not in item
                    and dict(item).get("Uniqueid") not in self.hung_up]
        raise AssertionError("the CoreShowChannels answer waited for something")

    def idle_after(self, upto: int) -> int:
        """The first moment, not before event ``upto``, when the PBX has no channel (the end of the stream at most):
        every call in progress at ``upto`` is over by then."""
        return next((n for n in range(upto, len(self.events)) if not self.lists[n]), len(self.events))

    def live_agent_legs(self, upto: int) -> dict[str, str]:
        """Uniqueid -> extension of the agents' channels live after the first ``upto`` events."""
        live: dict[str, str] = {}
        for message in self.events[:upto]:
            uniqueid = message.get("Uniqueid") or ""
            if message.name == "Newchannel":
                match = _AGENT_CHANNEL.match(message.get("Channel") or "")
                if match and match.group(1) in AGENTS:
                    live[uniqueid] = match.group(1)
            elif message.name == "Hangup":
                live.pop(uniqueid, None)
        return live


def record_calls() -> Recording:
    """A few calls of every kind on pbxsim, some at the same time."""

    async def calls() -> Recording:
        pbx = SimulatedPBX(users={"crm": "s3cret-join"}, agents=AGENTS, speed=SPEED, ring_timeout=1000,
                           behaviour=Behaviour(answer_after=0.6, hangup_after=2.0))
        async with pbx:
            rec = Recording(pbx)
            start = pbx.clock.now() + 0.5
            steps = (
                (0.0, lambda: pbx.inbound_call(CALLER, "100", name="Πελάτης")),  # answered, the agent hangs up
                (0.3, lambda: pbx.inbound_call("2107654321", "101", abandon_after=0.3)),  # given up while ringing
                (0.5, lambda: pbx.core.dial_out("102", "2109876543")),  # an outgoing call
                (1.5, lambda: pbx.core.dial_out("103", "101")),  # an internal call
                (6.0, lambda: pbx.inbound_call("2101112223", "600")),  # a ring group: all ring, one answers
            )
            for at, step in steps:  # at simulated times: the same stream on every run
                pbx.clock.call_at(start + at, step)
            await asyncio.sleep(7.0 / SPEED)
            await pbx.wait_until(lambda: not pbx.core.channels, timeout=10)
            assert pbx.errors == []
        return rec

    return asyncio.run(calls())


@pytest.fixture(scope="module")
def recording() -> Recording:
    return record_calls()


def join(rec: Recording, translator: Translator, login: int, delivered: int, listed_at: int) -> list[wire.Event]:
    """What the connector does after a login at event ``login``: events up to ``delivered``, then the list as it was
    after event ``listed_at``, then the rest of the stream."""
    now = 1_700_000_000.0
    known_before = translator.tracked_uniqueids
    out: list[wire.Event] = []
    for message in rec.events[login:delivered]:
        out += translator.feed(message, now)
    live: set[str] = set()
    for item in rec.lists[listed_at]:
        live.add(item.get("Uniqueid") or "")
        out += translator.catch_up(item, now)
    out += translator.reconcile(live | (translator.tracked_uniqueids - known_before), now, now)
    for message in rec.events[delivered:rec.idle_after(listed_at)]:
        out += translator.feed(message, now)
    return out


def orders(rec: Recording) -> Iterator[tuple[int, int, int]]:
    """(login, events delivered before the list, the list's moment): the list is asked for after the login and is
    never older than the events that reached the bridge before it."""
    count = len(rec.events)
    for login in range(count + 1):
        for delivered in range(login, min(login + WINDOW, count) + 1):
            for listed_at in range(delivered, min(delivered + WINDOW, count) + 1):
                yield login, delivered, listed_at


def check(rec: Recording, out: list[wire.Event], login: int, where: str) -> None:
    rang = {e.leg_id for e in out if isinstance(e, wire.CallRinging)}
    ended = {e.leg_id for e in out if isinstance(e, wire.CallEnded)}
    live = rec.live_agent_legs(login)
    missed = {uniqueid: ext for uniqueid, ext in live.items() if uniqueid not in rang}
    assert not missed, f"{where}: the legs live at the login {missed} were never announced"
    assert rang <= ended, f"{where}: legs announced and never ended: {sorted(rang - ended)}"


def test_a_bridge_started_during_calls_announces_every_call_live_at_its_login(recording: Recording) -> None:
    rec = recording
    assert len(rec.events) > 100 and sum(bool(rec.live_agent_legs(n)) for n in range(len(rec.events))) > 50
    runs = 0
    for login, delivered, listed_at in orders(rec):
        translator = Translator(TranslatorConfig(extensions=frozenset(AGENTS)))
        out = join(rec, translator, login, delivered, listed_at)
        check(rec, out, login, f"login before event {login}, {delivered - login} events before the list, "
                               f"listed after event {listed_at}")
        runs += 1
    assert runs > 1000


def test_a_bridge_that_reconnects_during_calls_announces_every_call_live_at_its_login(recording: Recording) -> None:
    rec = recording
    count = len(rec.events)
    for lost in range(0, count, 3):
        for login in range(lost + 1, min(lost + 4, count) + 1):
            for delivered in range(login, min(login + 3, count) + 1):
                for listed_at in (delivered, min(delivered + 2, count)):
                    translator = Translator(TranslatorConfig(extensions=frozenset(AGENTS)))
                    before: list[wire.Event] = []
                    for message in rec.events[:lost]:
                        before += translator.feed(message, 1_700_000_000.0)
                    out = before + join(rec, translator, login, delivered, listed_at)
                    check(rec, out, login, f"link lost after event {lost}, login before event {login}, "
                                           f"{delivered - login} events before the list, listed after {listed_at}")


def test_a_call_answered_between_the_login_and_the_list_is_announced_from_its_start() -> None:
    """The case proof/bridge_kills found: the phone rang while the bridge was away and was answered just as it
    logged in; the answer's events came before the list."""
    pbx = Pbx()
    assert pbx("Newstate", *chan(ALICE, 6, num=CALLER, cnum=CALLER)) == []
    assert pbx("BridgeEnter", *chan(ALICE, 6, cnum=CALLER), ("BridgeUniqueid", "bridge-1")) == []
    events = pbx.translator.catch_up(listed(ALICE, 6, cnum=CALLER, bridge="bridge-1", duration="00:00:07"),
                                     now=1_700_000_100.0)
    assert [type(e) for e in events] == [wire.CallRinging, wire.CallAnswered]
    ringing = events[0]
    assert isinstance(ringing, wire.CallRinging)
    assert (ringing.extension, ringing.call_id, ringing.leg_id, ringing.remote_number, ringing.direction) == (
        "100", TRUNK[2], ALICE[1], CALLER, wire.Direction.INBOUND)
    assert ringing.occurred_at == 1_700_000_093.0, "from the start the list gives"
    [ended] = hangup(pbx, ALICE)
    assert isinstance(ended, wire.CallEnded) and not ended.reconciled


def test_a_call_first_seen_after_the_login_that_ends_before_the_list_is_announced_from_its_events() -> None:
    pbx = Pbx()
    first = pbx("Newstate", *chan(ALICE, 6, num=CALLER, cnum=CALLER))
    seen_at = pbx.clock
    pbx("BridgeEnter", *chan(ALICE, 6, cnum=CALLER), ("BridgeUniqueid", "bridge-1"))
    pbx("BridgeLeave", *chan(ALICE, 6, cnum=CALLER), ("BridgeUniqueid", "bridge-1"))
    events = hangup(pbx, ALICE)
    assert first == []
    assert [(type(e), e.occurred_at) for e in events] == [
        (wire.CallRinging, seen_at), (wire.CallAnswered, seen_at), (wire.CallEnded, pbx.clock)]
    assert pbx.translator.catch_up(listed(ALICE, 6, cnum=CALLER), now=pbx.clock + 1) == [], (
        "a list older than the hang-up revives nothing")
    assert pbx("Newstate", *chan(ALICE, 6, num=CALLER, cnum=CALLER)) == [] and pbx.translator.tracked_channels == 0
    # On a new connection (a restarted PBX may use the same ids again) the id is free again.
    pbx.translator.new_link()
    assert [type(e) for e in hangup(pbx, ALICE)] == [wire.CallRinging, wire.CallAnswered, wire.CallEnded]
