"""AmiConnector against the real simulated Asterisk (pbxsim) over TCP on 127.0.0.1: login, commands, resync,
reconnects, faults. Time in the simulator runs 100x faster, so a 10 s call takes 0.1 s."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from callcenter import wire
from callcenter.bridge.connectors.ami.connector import AmiConnector
from callcenter.bridge.connectors.base import Connector
from callcenter.bridge.settings import AsteriskSettings, Secret
from callcenter.pbxsim import Behaviour, SimulatedPBX
from callcenter.pbxsim.server import Session

SECRET = "ami-s3cret-Zq7"
SPEED = 100.0
AGENTS = {"100": "Alice", "101": "Bob", "102": "Carol", "103": "Dave"}
CALLER = ("00302101234567", "Γιώργος Παπαδόπουλος")


class Sink:
    """The bridge's outbox as the connector sees it: a synchronous, non-blocking emit."""

    def __init__(self) -> None:
        self.events: list[wire.Event] = []
        self.arrivals: list[float] = []  # time.monotonic() of each event

    def emit(self, event: wire.Event) -> None:
        self.events.append(event)
        self.arrivals.append(time.monotonic())

    def of(self, kind: type[Any], **fields: object) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and all(getattr(e, k) == v for k, v in fields.items())]

    def links(self) -> list[bool]:
        return [e.pbx_connected for e in self.events if isinstance(e, wire.LinkState)]


def settings_for(port: int, **changes: Any) -> AsteriskSettings:
    base = AsteriskSettings(host="127.0.0.1", port=port, username="crm", secret=Secret(SECRET), status_timeout=2.0)
    return replace(base, **changes)


def new_pbx(port: int = 0, **options: Any) -> SimulatedPBX:
    # Phones ring for 1000 simulated seconds (10 s real) unless answered: no test races the ring timeout.
    return SimulatedPBX(users={"crm": SECRET}, agents=AGENTS, speed=SPEED, port=port, ring_timeout=1000, **options)


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPBX]:
    async with new_pbx() as sim:
        yield sim
        assert sim.errors == [], "the simulator itself failed"


@asynccontextmanager
async def running(connector: AmiConnector, sink: Sink, *, wait: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(connector.run(sink.emit))
    try:
        if wait:
            await until(lambda: connector.connected and connector.resyncs >= 1, what="the connector to log in")
        yield task
    finally:
        await connector.stop()
        await asyncio.wait_for(task, 5)


async def until(predicate: Callable[[], bool], *, timeout: float = 3.0, what: str = "the condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


def connector_for(pbx: SimulatedPBX, extensions: tuple[str, ...] = ("100", "101", "102"), **options: Any
                  ) -> AmiConnector:
    changes = options.pop("settings", {})
    return AmiConnector(settings_for(pbx.port, **changes), extensions, **options)


@pytest.fixture
async def live(pbx: SimulatedPBX) -> AsyncIterator[tuple[AmiConnector, Sink]]:
    connector, sink = connector_for(pbx), Sink()
    async with running(connector, sink):
        yield connector, sink


def agent_channel(pbx: SimulatedPBX, ext: str) -> str:
    return next(c.name for c in pbx.channels() if c.extension == ext)


async def ringing_at(pbx: SimulatedPBX, sink: Sink, ext: str) -> wire.CallRinging:
    pbx.inbound_call(CALLER[0], ext, name=CALLER[1])
    await until(lambda: bool(sink.of(wire.CallRinging, extension=ext)), what=f"{ext} to ring")
    ringing: wire.CallRinging = sink.of(wire.CallRinging, extension=ext)[-1]
    return ringing


async def answered_at(pbx: SimulatedPBX, sink: Sink, ext: str) -> wire.CallRinging:
    ringing = await ringing_at(pbx, sink, ext)
    assert pbx.answer(ext)
    await until(lambda: bool(sink.of(wire.CallAnswered, extension=ext)), what=f"{ext} to answer")
    return ringing


# ---- link ----------------------------------------------------------------------------------------------------------


async def test_it_is_a_connector_that_logs_in_and_reports_the_link_up(
    pbx: SimulatedPBX, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, sink = connector_for(pbx), Sink()
    assert isinstance(connector, Connector) and connector.phone_system is wire.PhoneSystem.ASTERISK
    async with running(connector, sink):
        assert pbx.clients == 1
        up = sink.of(wire.LinkState)
        assert [e.pbx_connected for e in up] == [True]
        assert up[0].extensions == ("100", "101", "102") and "as 'crm'" in up[0].detail
        sent = [c.name for c in pbx.commands]
        assert sent[:3] == ["Login", "Events", "CoreShowChannels"]
        assert sorted(c.get("Key") or "" for c in pbx.commands_named("DBGet")) == ["100", "101", "102"]
        # A followed extension without a DND key is reported available once.
        assert {(e.extension, e.dnd) for e in sink.of(wire.AgentState)} == {("100", False), ("101", False),
                                                                             ("102", False)}
    assert sink.links() == [True, False]
    assert sink.of(wire.LinkState)[-1].detail == "stopped"
    assert pbx.commands_named("Logoff"), "stop() logs off politely"
    assert SECRET not in caplog.text


async def test_it_reads_the_dnd_state_of_followed_extensions_at_login(pbx: SimulatedPBX) -> None:
    pbx.set_dnd("101", True)
    connector, sink = connector_for(pbx), Sink()
    async with running(connector, sink):
        await until(lambda: len(sink.of(wire.AgentState)) == 3)
        assert sink.of(wire.AgentState, extension="101")[0].dnd is True
        assert sink.of(wire.AgentState, extension="100")[0].dnd is False


async def test_a_wrong_secret_is_a_clear_error_retried_with_growing_pauses(
    pbx: SimulatedPBX, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pauses: list[float] = []
    logins_at_pause: list[int] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        logins_at_pause.append(len(pbx.commands_named("Login")))
        await asyncio.sleep(0)

    connector = AmiConnector(settings_for(pbx.port, secret=Secret("wrong-secret-123")), ("100",), sleep=sleep,
                             jitter=lambda: 1.0, retry_initial=1.0, retry_cap=8.0)
    sink = Sink()
    async with running(connector, sink, wait=False):
        await until(lambda: len(pauses) >= 6, what="six retries")
    # One login per pause: every attempt is followed by a pause, and the pauses double up to the cap.
    assert logins_at_pause[:6] == [1, 2, 3, 4, 5, 6]
    assert pauses[:6] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert all(c.response == "Error" for c in pbx.commands_named("Login"))
    expected = "AMI login refused for user 'crm': check username/secret in manager.conf"
    assert connector.last_error.startswith(expected) and "Authentication failed" in connector.last_error
    assert not connector.connected
    # Reported once, not once per attempt.
    downs = sink.of(wire.LinkState)
    assert len(downs) == 1 and downs[0].pbx_connected is False and downs[0].detail.startswith(expected)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and expected in r.getMessage()]
    assert len(errors) == 1, "the same refusal is an error once, then information"
    assert "wrong-secret-123" not in caplog.text and SECRET not in caplog.text


async def test_a_wrong_secret_never_turns_into_a_tight_loop_in_real_time(pbx: SimulatedPBX) -> None:
    connector = AmiConnector(settings_for(pbx.port, secret=Secret("wrong-secret-123")), ("100",),
                             retry_initial=0.05, retry_cap=0.2)
    async with running(connector, Sink(), wait=False):
        await asyncio.sleep(0.8)
    attempts = len(pbx.commands_named("Login"))
    # 0.05-0.2 s pauses (with jitter): a handful of attempts in 0.8 s, never hundreds.
    assert 2 <= attempts <= 14


def test_the_first_retry_comes_within_a_second_and_pauses_are_capped() -> None:
    settings = settings_for(5038)
    for jitter in (0.0, 0.5, 0.999):
        connector = AmiConnector(settings, ("100",), jitter=lambda j=jitter: j)
        assert 0.5 <= connector.retry_delay(0) <= 1.0
        assert connector.retry_delay(3) <= 8.0
        assert 15.0 <= connector.retry_delay(50) <= 30.0


async def test_an_unreachable_pbx_is_reported_as_such_and_commands_say_pbx_unavailable() -> None:
    async with new_pbx() as sim:
        port = sim.port
    connector = AmiConnector(settings_for(port), ("100",), retry_initial=0.05, retry_cap=0.1)
    sink = Sink()
    async with running(connector, sink, wait=False):
        await until(lambda: bool(sink.of(wire.LinkState)), what="the link state")
        result = await connector.execute(wire.Hangup(command_id="c1", extension="100"))
    assert "cannot connect to the AMI at 127.0.0.1:" in sink.of(wire.LinkState)[0].detail
    assert (result.ok, result.error_id) == (False, "pbx_unavailable")
    assert f"not connected to the PBX at 127.0.0.1:{port}" in result.message


async def test_bad_settings_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="no secret"):
        AmiConnector(settings_for(5038, secret=Secret("")), ("100",))
    with pytest.raises(ValueError, match="line break") as refused:
        AmiConnector(settings_for(5038, secret=Secret("abc\r\nAction: Originate")), ("100",))
    assert "Originate" not in str(refused.value), "the secret is never shown"
    with pytest.raises(ValueError, match="has no \\{ext\\}"):
        AmiConnector(settings_for(5038, originate_channel="PJSIP/100"), ("100",))
    with pytest.raises(ValueError, match="unknown channel profile"):
        AmiConnector(settings_for(5038, profile="nope"), ("100",))


# ---- commands ------------------------------------------------------------------------------------------------------


async def test_dial_originates_from_the_agent_phone_and_the_call_is_reported_outbound(
    pbx: SimulatedPBX, live: tuple[AmiConnector, Sink]
) -> None:
    connector, sink = live
    result = await connector.execute(wire.Dial(command_id="d1", extension="100", number="00302109876543"))
    assert result.ok and result.command_id == "d1"
    originate = pbx.commands_named("Originate")[0]
    assert {k: originate.get(k) for k in ("Channel", "Context", "Exten", "Priority", "CallerID", "Async")} == {
        "Channel": "PJSIP/100", "Context": "from-internal", "Exten": "00302109876543", "Priority": "1",
        "CallerID": "100", "Async": "true"}
    await until(lambda: bool(sink.of(wire.CallAnswered, extension="100")), what="the far end to answer")
    ringing = sink.of(wire.CallRinging, extension="100")
    # The phone rang first (a click-to-dial), but the call is one outgoing call to the number.
    assert len(ringing) == 1 and ringing[0].direction is wire.Direction.OUTBOUND
    assert ringing[0].remote_number == "00302109876543"
    assert ringing[0].call_id == originate.get("ChannelId")
    assert [c.state for c in pbx.channels()] == ["Up", "Up"]


async def test_hangup_ends_the_agents_call(pbx: SimulatedPBX, live: tuple[AmiConnector, Sink]) -> None:
    connector, sink = live
    ringing = await answered_at(pbx, sink, "100")
    result = await connector.execute(wire.Hangup(command_id="h1", extension="100"))
    assert result.ok, result.message
    assert pbx.commands_named("Hangup")[0].get("Channel", "").startswith("PJSIP/100-")
    await until(lambda: bool(sink.of(wire.CallEnded, extension="100")))
    ended = sink.of(wire.CallEnded, extension="100")[0]
    assert (ended.call_id, ended.hung_up_by, ended.reconciled) == (ringing.call_id, wire.HungUpBy.AGENT, False)
    assert pbx.channels() == []


async def test_commands_for_calls_that_do_not_exist_say_no_such_call(
    pbx: SimulatedPBX, live: tuple[AmiConnector, Sink]
) -> None:
    connector, sink = live
    hangup = await connector.execute(wire.Hangup(command_id="h1", extension="100"))
    assert (hangup.ok, hangup.error_id, hangup.message) == (False, "no_such_call",
                                                           "extension 100 has no call to hang up")
    answer = await connector.execute(wire.Answer(command_id="a1", extension="100"))
    assert (answer.error_id, answer.message) == ("no_such_call", "extension 100 has no ringing call to answer")
    transfer = await connector.execute(wire.Transfer(command_id="t1", extension="100", target="101"))
    assert (transfer.error_id, transfer.message) == ("no_such_call",
                                                     "extension 100 has no answered call to transfer")
    # A call that exists, but not the one named; and a ringing call cannot be transferred.
    await ringing_at(pbx, sink, "100")
    other = await connector.execute(wire.Hangup(command_id="h2", extension="100", call_id="1234.5"))
    assert other.error_id == "no_such_call"
    ringing_transfer = await connector.execute(wire.Transfer(command_id="t2", extension="100", target="101"))
    assert ringing_transfer.error_id == "no_such_call"
    assert not pbx.commands_named("Hangup") and not pbx.commands_named("BlindTransfer")


async def test_blind_transfer_moves_the_caller_to_the_target(
    pbx: SimulatedPBX, live: tuple[AmiConnector, Sink]
) -> None:
    connector, sink = live
    ringing = await answered_at(pbx, sink, "100")
    result = await connector.execute(wire.Transfer(command_id="t1", extension="100", target="101"))
    assert result.ok, result.message
    command = pbx.commands_named("BlindTransfer")[0]
    assert command.get("Exten") == "101" and command.get("Context") == "from-internal"
    await until(lambda: bool(sink.of(wire.CallRinging, extension="101")))
    transferred = sink.of(wire.CallTransferred, extension="100")
    assert [(t.target, t.kind) for t in transferred] == [("101", wire.TransferKind.BLIND)]
    at_bob = sink.of(wire.CallRinging, extension="101")[0]
    assert (at_bob.call_id, at_bob.remote_number, at_bob.transferred_from) == (ringing.call_id, CALLER[0], "100")
    assert {c.extension for c in pbx.channels()} == {None, "101"}


async def test_an_asterisk_without_blindtransfer_gets_a_redirect_of_the_caller(
    pbx: SimulatedPBX, live: tuple[AmiConnector, Sink], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Session._handlers

    def older_asterisk(self: Session) -> Any:
        return {k: v for k, v in original(self).items() if k != "blindtransfer"}

    monkeypatch.setattr(Session, "_handlers", older_asterisk)
    connector, sink = live
    await answered_at(pbx, sink, "100")
    trunk = next(c.name for c in pbx.channels() if c.extension is None)
    result = await connector.execute(wire.Transfer(command_id="t1", extension="100", target="101"))
    assert result.ok, result.message
    assert pbx.commands_named("BlindTransfer")[0].response == "Error"
    redirect = pbx.commands_named("Redirect")[0]
    assert (redirect.get("Channel"), redirect.get("Exten"), redirect.response) == (trunk, "101", "Success")
    await until(lambda: bool(sink.of(wire.CallRinging, extension="101")))
    assert sink.of(wire.CallEnded, extension="100")


async def test_attended_transfer_consults_the_target_first(
    pbx: SimulatedPBX, live: tuple[AmiConnector, Sink]
) -> None:
    connector, sink = live
    await answered_at(pbx, sink, "100")
    result = await connector.execute(wire.Transfer(command_id="t1", extension="100", target="101",
                                                   kind=wire.TransferKind.ATTENDED))
    assert result.ok, result.message
    assert pbx.commands_named("Atxfer")[0].get("Exten") == "101"
    await until(lambda: any(c.extension == "101" and c.state == "Ringing" for c in pbx.channels()))
    # Bob answers the consultation; Alice hanging up (the CRM's End call) completes the transfer.
    assert pbx.answer("101")
    await until(lambda: bool(sink.of(wire.CallAnswered, extension="101")))
    done = await connector.execute(wire.Hangup(command_id="h1", extension="100"))
    assert done.ok, done.message
    await until(lambda: bool(sink.of(wire.CallTransferred, extension="100")))
    assert sink.of(wire.CallTransferred, extension="100")[0].kind is wire.TransferKind.ATTENDED
    assert {c.extension for c in pbx.channels()} == {None, "101"}


async def test_set_busy_is_freepbx_dnd_and_a_caller_then_gets_busy(
    pbx: SimulatedPBX, live: tuple[AmiConnector, Sink]
) -> None:
    connector, sink = live
    result = await connector.execute(wire.SetBusy(command_id="b1", extension="100", busy=True))
    assert result.ok, result.message
    assert "100" in pbx.dnd and pbx.core.custom_states["DND100"] == "BUSY"
    assert pbx.commands_named("Setvar")[0].get("Variable") == "DEVICE_STATE(Custom:DND100)"
    await until(lambda: bool(sink.of(wire.AgentState, extension="100", dnd=True)))
    # A caller to a busy extension hears busy; the phone never rings.
    call = pbx.inbound_call(CALLER[0], "100")
    await until(lambda: call.ended, what="the busy call to end")
    hangups = [e for e in pbx.events if e.name == "Hangup"]
    assert [e.get("Cause") for e in hangups] == ["17"]
    assert not sink.of(wire.CallRinging, extension="100")
    cleared = await connector.execute(wire.SetBusy(command_id="b2", extension="100", busy=False))
    assert cleared.ok, cleared.message
    assert "100" not in pbx.dnd and pbx.core.custom_states["DND100"] == "NOT_INUSE"
    await until(lambda: [e.dnd for e in sink.of(wire.AgentState, extension="100")] == [False, True, False])
    # Clearing again is no error: the key is simply not there.
    again = await connector.execute(wire.SetBusy(command_id="b3", extension="100", busy=False))
    assert again.ok, again.message


async def test_set_busy_in_queue_mode_pauses_the_agent_in_its_queues(pbx: SimulatedPBX) -> None:
    connector, sink = connector_for(pbx, settings={"busy_mode": "queue"}), Sink()
    async with running(connector, sink):
        result = await connector.execute(wire.SetBusy(command_id="b1", extension="101", busy=True))
        assert result.ok, result.message
        assert pbx.core.paused["101"][0] is True and "101" not in pbx.dnd
        assert pbx.commands_named("QueuePause")[0].get("Interface") == "PJSIP/101"
        assert sink.of(wire.AgentState, extension="101", dnd=True)
        assert not pbx.commands_named("DBGet"), "queue mode does not read AstDB DND"


async def test_a_pbx_error_is_pbx_refused_with_asterisks_message() -> None:
    async with new_pbx(queues={"400": ["101"]}) as sim:
        connector, sink = connector_for(sim, settings={"busy_mode": "queue"}), Sink()
        async with running(connector, sink):
            result = await connector.execute(wire.SetBusy(command_id="b1", extension="100", busy=True))
    assert (result.ok, result.error_id, result.message) == (False, "pbx_refused",
                                                           "PBX refused QueuePause: Interface not found")
    assert not sink.of(wire.AgentState, extension="100", dnd=True)


async def test_answer_sends_the_talk_notify_to_a_ringing_phone(
    pbx: SimulatedPBX, live: tuple[AmiConnector, Sink]
) -> None:
    connector, sink = live
    ringing = await ringing_at(pbx, sink, "101")
    result = await connector.execute(wire.Answer(command_id="a1", extension="101", call_id=ringing.call_id))
    assert result.ok, result.message
    notify = pbx.commands_named("PJSIPNotify")[0]
    assert (notify.get("Endpoint"), notify.get("Variable")) == ("101", "Event=talk")
    await until(lambda: bool(sink.of(wire.CallAnswered, extension="101")))
    assert [c.state for c in pbx.channels()] == ["Up", "Up"]


async def test_agent_login_is_not_supported_and_bad_commands_are_invalid(
    pbx: SimulatedPBX, live: tuple[AmiConnector, Sink]
) -> None:
    connector, _sink = live
    login = await connector.execute(wire.AgentLogin(command_id="l1", extension="100", agent_id="7", password="pw"))
    assert (login.ok, login.error_id) == (False, "not_supported") and "queue" in login.message
    logout = await connector.execute(wire.AgentLogout(command_id="l2", extension="100"))
    assert logout.error_id == "not_supported"
    stranger = await connector.execute(wire.Dial(command_id="d1", extension="555", number="101"))
    assert (stranger.error_id, stranger.message) == (
        "invalid_command", "extension 555 is not followed by this bridge (it follows 100, 101, 102)")
    injected = await connector.execute(wire.Dial(command_id="d2", extension="100", number="101\r\nAction: Logoff"))
    assert injected.error_id == "invalid_command"
    not_digits = await connector.execute(wire.Hangup(command_id="h1", extension="10a"))
    assert not_digits.error_id == "invalid_command"
    assert not pbx.commands_named("Originate") and not pbx.commands_named("Logoff")


async def test_an_unanswered_action_times_out_within_the_status_timeout(pbx: SimulatedPBX) -> None:
    connector = connector_for(pbx, settings={"status_timeout": 0.3}, ping_interval=30.0)
    async with running(connector, Sink()):
        pbx.inject_fault("stall")
        result = await asyncio.wait_for(
            connector.execute(wire.SetBusy(command_id="b1", extension="100", busy=True)), 2.0
        )
        await pbx.resume()
    assert (result.ok, result.error_id) == (False, "timeout")
    assert result.message == "no answer from the PBX to DBPut within 0.3 s"


# ---- reconnect, resync, faults -------------------------------------------------------------------------------------


async def test_a_pbx_restart_is_noticed_reconnected_and_reconciled() -> None:
    sim = await new_pbx().start()
    port = sim.port
    connector, sink = AmiConnector(settings_for(port), ("100", "101"), retry_initial=0.1), Sink()
    try:
        async with running(connector, sink):
            answered = await answered_at(sim, sink, "100")
            ringing = await ringing_at(sim, sink, "101")
            await sim.stop()  # the PBX dies: its calls go with it, without a word on the link
            await until(lambda: False in sink.links(), what="the loss to be noticed")
            sim = await new_pbx(port=port).start()
            await until(lambda: connector.connected and connector.reconciles == 2, what="the reconnect")
            ended = sink.of(wire.CallEnded)
            assert {(e.extension, e.call_id, e.reconciled) for e in ended} == {
                ("100", answered.call_id, True), ("101", ringing.call_id, True)}
            assert all(e.cause_text == "ended while the PBX link was down" for e in ended)
            assert sink.links() == [True, False, True]
            # The new PBX works as before.
            await answered_at(sim, sink, "100")
    finally:
        await sim.stop()


async def test_a_pbx_without_coreshowchannels_is_reconciled_with_status(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Session._handlers

    def restricted(self: Session) -> Any:
        return {k: v for k, v in original(self).items() if k != "coreshowchannels"}

    monkeypatch.setattr(Session, "_handlers", restricted)
    async with new_pbx() as sim:
        connector, sink = connector_for(sim, retry_initial=0.05), Sink()
        async with running(connector, sink):
            ringing = await answered_at(sim, sink, "100")
            sim.inject_fault("restart", duration=10)  # the PBX restarts: 0.1 s with its port closed
            await until(lambda: connector.connects == 2 and connector.reconciles == 2, what="the reconnect")
        [ended] = sink.of(wire.CallEnded)
        assert (ended.extension, ended.call_id, ended.reconciled) == ("100", ringing.call_id, True)
        assert [c.response for c in sim.commands_named("CoreShowChannels")] == ["Error", "Error"]
        assert [c.response for c in sim.commands_named("Status")] == ["Success", "Success"]


async def test_a_stalled_link_is_noticed_within_the_keep_alive_deadline(pbx: SimulatedPBX) -> None:
    connector, sink = connector_for(pbx, ping_interval=0.1, ping_timeout=0.3, retry_initial=0.05), Sink()
    async with running(connector, sink):
        stalled_at = time.monotonic()
        pbx.inject_fault("stall")
        await until(lambda: connector.connects == 2, what="the reconnect")
    downs = [(e, at) for e, at in zip(sink.events, sink.arrivals, strict=True)
             if isinstance(e, wire.LinkState) and not e.pbx_connected]
    down, noticed_at = downs[0]
    assert down.detail == "no answer to Ping within 0.3 s: the link is dead or stalled"
    # Ping every 0.1 s, answered within 0.3 s: the stall shows within 0.4 s (plus slack for a busy test machine),
    # far inside the 6 s the bridge promises with its defaults (1 s + 5 s).
    assert noticed_at - stalled_at < 1.5
    assert pbx.server.logins == 2 and sink.links()[:3] == [True, False, True]


async def test_a_call_answered_while_the_link_was_stalled_is_reported_answered(pbx: SimulatedPBX) -> None:
    connector, sink = connector_for(pbx, ping_interval=0.1, ping_timeout=0.2, retry_initial=0.05), Sink()
    async with running(connector, sink):
        ringing = await ringing_at(pbx, sink, "100")
        pbx.inject_fault("stall")
        assert pbx.answer("100")  # unseen: the link writes nothing
        await until(lambda: connector.connects == 2 and connector.reconciles == 2, what="the reconnect")
        answered = sink.of(wire.CallAnswered, extension="100")
        assert [a.event_id for a in answered] == [f"ami:{ringing.call_id}:{ringing.leg_id}:answered"]
        assert not sink.of(wire.CallEnded)
        # Still followed: the hang-up is seen live.
        hangup = await connector.execute(wire.Hangup(command_id="h1", extension="100"))
        assert hangup.ok, hangup.message
        await until(lambda: bool(sink.of(wire.CallEnded, extension="100", reconciled=False)))


async def test_a_call_that_started_ringing_while_the_link_was_down_is_announced(pbx: SimulatedPBX) -> None:
    connector, sink = connector_for(pbx, ping_interval=0.1, ping_timeout=0.2, retry_initial=0.05), Sink()
    async with running(connector, sink):
        pbx.inject_fault("stall")
        pbx.inbound_call(CALLER[0], "102", name=CALLER[1])
        await until(lambda: connector.connects == 2 and connector.reconciles == 2, what="the reconnect")
        ringing = sink.of(wire.CallRinging, extension="102")
        assert [(r.remote_number, r.direction) for r in ringing] == [(CALLER[0], wire.Direction.INBOUND)]


async def test_garbage_from_the_pbx_does_not_kill_the_connector(
    pbx: SimulatedPBX, live: tuple[AmiConnector, Sink]
) -> None:
    connector, sink = live
    pbx.inject_fault("garbage")
    await ringing_at(pbx, sink, "100")
    assert connector.connected and connector.connects == 1
    assert sink.links() == [True]
    result = await connector.execute(wire.Answer(command_id="a1", extension="100"))
    assert result.ok, result.message


async def test_a_dropped_connection_is_retried_within_a_second(pbx: SimulatedPBX) -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(seconds)

    connector, sink = connector_for(pbx, sleep=sleep), Sink()
    async with running(connector, sink):
        pbx.inject_fault("drop")
        await until(lambda: connector.connects == 2, what="the reconnect")
    assert len(pauses) == 1 and 0.5 <= pauses[0] <= 1.0
    assert sink.links() == [True, False, True, False]
    assert "closed the connection" in sink.of(wire.LinkState)[1].detail


async def test_stop_and_run_again_reconnects_without_a_new_connector(pbx: SimulatedPBX) -> None:
    connector, sink = connector_for(pbx), Sink()
    async with running(connector, sink):
        pass
    assert not connector.connected and pbx.clients == 0
    async with running(connector, sink):
        result = await connector.execute(wire.SetBusy(command_id="b1", extension="100", busy=True))
        assert result.ok
    assert sink.links() == [True, False, True, False]


async def test_a_slow_consumer_never_holds_the_reader_back(pbx: SimulatedPBX) -> None:
    queue: asyncio.Queue[wire.Event] = asyncio.Queue()
    consumed: list[wire.Event] = []

    async def consume() -> None:
        while True:
            consumed.append(await queue.get())
            await asyncio.sleep(0.02)  # e.g. a slow disk: 50 events per second

    class QueueSink(Sink):
        def emit(self, event: wire.Event) -> None:
            super().emit(event)
            queue.put_nowait(event)

    consumer = asyncio.create_task(consume())
    connector, sink = connector_for(pbx, ("100", "101", "102", "103")), QueueSink()
    try:
        async with running(connector, sink):
            for agent in AGENTS:
                pbx.set_behaviour(agent, Behaviour(answer_after=1.0))
            pbx.start_load(rate=2.0, agents=list(AGENTS), talk=(2.0, 4.0), max_calls=40, seed=7)
            session = next(iter(pbx.server.sessions))
            await until(lambda: len(sink.of(wire.CallEnded)) >= 30, timeout=5.0, what="the load")
            # The reader is level with everything the PBX wrote, while the consumer is far behind.
            await until(lambda: connector.bytes_in == session.bytes_sent, what="the reader to catch up")
            assert len(consumed) < len(sink.events) / 3
            assert pbx.clients == 1 and connector.connects == 1 and session.dropped_writes == 0
    finally:
        consumer.cancel()


async def test_a_broken_event_sink_does_not_stop_the_reader(pbx: SimulatedPBX) -> None:
    class BrokenSink(Sink):
        def emit(self, event: wire.Event) -> None:
            super().emit(event)
            if isinstance(event, wire.CallRinging):
                raise RuntimeError("disk full")

    connector, sink = connector_for(pbx), BrokenSink()
    async with running(connector, sink):
        await answered_at(pbx, sink, "100")
        assert connector.connected and connector.connects == 1


# ---- what the CRM is told at every (re)connect -----------------------------------------------------------------


async def test_every_resync_tells_the_crm_which_legs_the_pbx_still_has() -> None:
    sim = await new_pbx().start()
    port = sim.port
    connector, sink = AmiConnector(settings_for(port), ("100", "101"), retry_initial=0.1), Sink()
    try:
        async with running(connector, sink):
            [first] = sink.of(wire.LiveCalls)
            assert (first.extensions, first.legs) == (("100", "101"), ())
            answered = await answered_at(sim, sink, "100")
            [answer] = sink.of(wire.CallAnswered, extension="100")
            before_stop = time.time()
            await sim.stop()  # the PBX dies with its calls
            sim = await new_pbx(port=port).start()
            await until(lambda: connector.reconciles == 2, what="the reconnect")
            second = sink.of(wire.LiveCalls)[-1]
            assert second.legs == () and first.event_id != second.event_id
            # The PBX closed the link when it died: the vanished leg ended then (or at its own last event, if that
            # is later: the simulator's clock runs ahead), not when the bridge got back in.
            reconnected_at = min(e.occurred_at for e in sink.of(wire.LinkState)[2:] if e.pbx_connected)
            assert before_stop <= second.gone_at < reconnected_at
            [ended] = sink.of(wire.CallEnded, extension="100", call_id=answered.call_id)
            assert ended.reconciled and ended.occurred_at == max(second.gone_at, answer.occurred_at)
    finally:
        await sim.stop()


async def test_a_call_answered_between_the_login_and_the_list_of_channels_is_announced(
    pbx: SimulatedPBX, monkeypatch: pytest.MonkeyPatch
) -> None:
    """proof/bridge_kills found it: the phone rang while no bridge was there and was answered as the bridge logged
    in, so the PBX reported the answer before its list of live channels; the call never reached the CRM."""
    original = Session.a_events

    async def answer_first(self: Session, msg: Any) -> Any:
        pbx.answer("100")  # its events go out before the answer to Events, so before the CoreShowChannels list
        return await original(self, msg)

    monkeypatch.setattr(Session, "a_events", answer_first)
    pbx.inbound_call(CALLER[0], "100", name=CALLER[1])
    await pbx.wait_until(lambda: any(c.extension == "100" for c in pbx.channels()))
    connector, sink = connector_for(pbx), Sink()
    async with running(connector, sink):
        [ringing] = sink.of(wire.CallRinging, extension="100")
        [answered] = sink.of(wire.CallAnswered, extension="100")
        assert (ringing.remote_number, ringing.direction) == (CALLER[0], wire.Direction.INBOUND)
        assert answered.leg_id == ringing.leg_id
        [listed] = sink.of(wire.LiveCalls)
        assert listed.legs == (wire.LiveLeg(call_id=ringing.call_id, extension="100"),)
        hangup = await connector.execute(wire.Hangup(command_id="h1", extension="100"))
        assert hangup.ok, hangup.message
        await until(lambda: bool(sink.of(wire.CallEnded, extension="100", reconciled=False)))


async def test_a_leg_live_at_the_resync_is_listed_with_its_call(pbx: SimulatedPBX) -> None:
    connector, sink = connector_for(pbx, ping_interval=0.1, ping_timeout=0.2, retry_initial=0.05), Sink()
    async with running(connector, sink):
        answered = await answered_at(pbx, sink, "100")
        pbx.inject_fault("drop")
        await until(lambda: connector.reconciles == 2, what="the reconnect")
    listed = sink.of(wire.LiveCalls)[-1]
    assert listed.legs == (wire.LiveLeg(call_id=answered.call_id, extension="100"),)


async def test_a_restarted_bridge_closes_calls_at_the_time_it_last_saw_the_pbx(tmp_path: Any) -> None:
    alive_file = tmp_path / "pbx-alive.json"
    started = time.time()
    async with new_pbx() as sim:
        first, sink = connector_for(sim, alive_file=alive_file), Sink()
        async with running(first, sink):
            answered = await answered_at(sim, sink, "100")
        # Stopped (or killed after its last save): it kept when it last saw the PBX.
        saved = json.loads(alive_file.read_text())["pbx_alive_at"]
        assert started <= saved <= time.time()
        await asyncio.sleep(0.2)
        restarted, later = connector_for(sim, alive_file=alive_file), Sink()
        async with running(restarted, later):
            [listed] = later.of(wire.LiveCalls)
        assert listed.gone_at == saved
        assert listed.legs == (wire.LiveLeg(call_id=answered.call_id, extension="100"),)
        # The call that was up is announced again with the same ids: the CRM stores it once.
        ids = {e.event_id for e in later.of(wire.CallRinging) + later.of(wire.CallAnswered)}
        assert f"ami:{answered.call_id}:{answered.leg_id}:ringing" in ids


def test_a_kept_alive_time_from_the_future_or_garbage_is_ignored(tmp_path: Any) -> None:
    alive_file = tmp_path / "pbx-alive.json"
    for text in ('{"pbx_alive_at": 1e300}', "not json", '{"pbx_alive_at": "x"}', '[]',
                 f'{{"pbx_alive_at": {time.time() + 3600}}}'):
        alive_file.write_text(text)
        connector = AmiConnector(settings_for(5038), ("100",), alive_file=alive_file)
        assert connector._alive_at is None, text


async def test_while_the_pbx_refuses_connections_it_is_tried_every_half_second_at_most() -> None:
    async with new_pbx() as sim:
        port = sim.port
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    connector, sink = AmiConnector(settings_for(port), ("100",), sleep=sleep), Sink()
    async with running(connector, sink, wait=False):
        await until(lambda: len(pauses) >= 12, what="a dozen attempts")
    assert all(0.25 <= pause <= 0.5 for pause in pauses), pauses


async def test_a_wrong_secret_still_backs_off_for_long(pbx: SimulatedPBX) -> None:
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    connector = connector_for(pbx, sleep=sleep, jitter=lambda: 1.0,
                              settings={"secret": Secret("not-the-secret-123")})
    async with running(connector, Sink(), wait=False):
        await until(lambda: len(pauses) >= 6, what="six attempts")
    assert pauses[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0]


async def test_a_phone_in_a_call_is_not_busy_its_changed_hint_makes_the_bridge_ask_the_astdb(pbx: SimulatedPBX) -> None:
    connector, sink = connector_for(pbx, extensions=("100",)), Sink()
    async with running(connector, sink):
        await until(lambda: bool(sink.of(wire.AgentState, extension="100")), what="the DND state at login")
        asked_at_login = len(pbx.commands_named("DBGet"))
        await answered_at(pbx, sink, "100")  # the hint PJSIP/100&Custom:DND100 changes as the phone rings, talks
        await until(lambda: len(pbx.commands_named("DBGet")) > asked_at_login, what="a DBGet DND/100")
        assert [e.dnd for e in sink.of(wire.AgentState, extension="100")] == [False]
        pbx.set_dnd("100", True)
        await until(lambda: [e.dnd for e in sink.of(wire.AgentState, extension="100")] == [False, True],
                    what="DND on")


async def test_refused_logins_say_nothing_of_the_calls_and_leave_the_last_alive_time(pbx: SimulatedPBX,
                                                                                     tmp_path: Any) -> None:
    alive_file = tmp_path / "pbx-alive.json"
    followed_until = time.time() - 100
    alive_file.write_text(json.dumps({"pbx_alive_at": followed_until}))
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    connector = connector_for(pbx, alive_file=alive_file, sleep=sleep,
                              settings={"secret": Secret("not-the-secret-123")})
    async with running(connector, Sink(), wait=False):
        await until(lambda: len(pauses) >= 3, what="three refused logins")
    assert json.loads(alive_file.read_text())["pbx_alive_at"] == followed_until
    assert connector._alive_at == followed_until
