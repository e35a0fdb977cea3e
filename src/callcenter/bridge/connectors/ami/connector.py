"""``AmiConnector``: the asyncio adapter that joins a TCP socket to the AMI codec and the translator (S-5.14).

It implements the ``Connector`` protocol (bridge/connectors/base.py, docs/bridge-interfaces.md).

Rules
- The socket reader is one tight loop: bytes -> codec -> messages -> translator -> ``emit``. It never awaits anything
  but the socket (``emit`` is synchronous and never blocks; Asterisk drops a client that stops reading). Messages that
  answer one of our actions (by ``ActionID``, through the codec's ``correlate``) go to the waiting action, everything
  else to the translator, in arrival order.
- Link life: connect, wait for the banner, ``Login`` (a refusal is a clear error: check username/secret in
  manager.conf), ``Events`` on, then *resync*: ``CoreShowChannels`` (``Status`` when that is refused) and, with
  ``busy_mode`` dnd or both, ``DBGet DND/<ext>`` for every followed extension (none when following all of them).
  The resync runs inside the reader at the exact point of the stream where the PBX's list ends, so no event is
  processed against a stale list: a followed call that ended while the link was down is closed with
  ``CallEnded(reconciled=True)`` at the last moment the PBX was known alive, one answered meanwhile is announced
  answered, one that started ringing meanwhile is announced ringing, one first seen in the list (the bridge started
  during it, or first reported by an event that came before the list) is announced from the start Asterisk reports;
  channels first seen on this link are left alone (their own events, hang-up included, come on it). A call that is
  live at the login is thus announced whatever the order of the PBX's events and its list. Then ``wire.LiveCalls``
  lists the live legs: the CRM closes every other open leg of the followed extensions, whatever this bridge
  remembers.
- The last moment the PBX was known alive: the last bytes received from it while logged in with events on (a refused
  login says nothing of the calls), or the moment it closed such a connection;
  kept in ``alive_file`` (at most once a second, and when the link ends or the bridge stops) so that a bridge killed
  and restarted still dates the end of the calls that ended while it was away.
- Keep-alive: a ``Ping`` every ``ping_interval`` seconds must be answered within ``ping_timeout`` (defaults 1 s and
  min(status_timeout, 5 s)): a dead or stalled link is noticed within 6 s and the connection is dropped. The pings
  also keep the last-alive time within a second of the truth on a quiet PBX, so a bridge killed mid-call dates the
  calls that ended meanwhile to within a second.
- Reconnect: capped exponential back-off with jitter, ``retry_initial * 2**n`` (at most ``retry_cap``) times a
  random factor in [0.5, 1]: the first retry comes within ``retry_initial`` (1 s). While the PBX refuses connections
  (restarting, crashed) the pause is at most ``UNREACHABLE_RETRY`` (0.25-0.5 s): the bridge is back within half a
  second of the PBX accepting connections, and calls made meanwhile are not missed. The count restarts after every
  successful login. A refused login is retried on the same schedule, never in a tight loop, and reported once per
  distinct reason. The secret is sent only in the ``Login`` action and never logged.
- ``wire.LinkState`` is emitted on every change: connected, lost (with the reason), a new reason for not connecting.
- Every action is bounded by ``status_timeout`` (S-5.14). ``execute()`` never raises for PBX trouble: the PBX's
  ``Response: Error`` is ``pbx_refused`` with Asterisk's own message, no answer in time is ``timeout``, no link is
  ``pbx_unavailable``; an action the command needs but the bridge cannot build is ``invalid_command``.

Commands and the AMI actions they become (``ext`` = the command's extension; it must be one the bridge follows)
- Dial: ``Originate`` Channel = ``originate_channel`` with ``{ext}`` replaced (``PJSIP/100``), Context =
  ``originate_context``, Exten = the number (the CRM has already added its prefix), Priority 1, CallerID = ext,
  Async true, ChannelId = a fresh id the translator is told about (the agent's phone rings first: a click-to-dial is
  the agent's outgoing call, announced when the phone dials). ``ok`` means the PBX queued the call; whether the phone
  was picked up shows in the call events that follow.
- Hangup: ``Hangup`` of the agent's own channel in its current call (answered first, else ringing, else any live
  leg; ``call_id`` picks one call). No call: ``no_such_call``.
- Transfer, blind: ``BlindTransfer`` of the agent's answered channel to Exten = target in ``originate_context``.
  An Asterisk older than 12, which does not know that action, gets ``Redirect`` of the remote party's channel
  instead (Asterisk then hangs up the agent). Attended: ``Atxfer`` of the agent's channel; the agent talks to the
  target first and completes the transfer by hanging up (the CRM's End call does that).
- SetBusy, per ``busy_mode``: ``dnd`` is FreePBX's DND, ``DBPut DND/<ext> YES`` plus ``Setvar
  DEVICE_STATE(Custom:DND<ext>)=BUSY`` (``DBDel`` and ``NOT_INUSE`` to clear it; a key already absent is fine), so
  callers get busy and the hint shows Busy; ``queue`` is ``QueuePause`` of the interface ``originate_channel`` names
  (``PJSIP/100``) in every queue; ``both`` does both. The screen's toggle follows what the PBX then reports.
- Answer: the PBX cannot pick up a phone's handset. Phones that accept a SIP NOTIFY with ``Event: talk`` (Yealink,
  Polycom, Snom, Grandstream with remote answer allowed; FreePBX/EPM usually enables it) are answered with
  ``PJSIPNotify`` Endpoint = the phone's endpoint, ``Variable: Event=talk`` (``SIPnotify`` for chan_sip phones). A
  phone that ignores the NOTIFY keeps ringing although the command answered ok: the answered event then never comes.
  Channels of other technologies: ``not_supported``. No ringing call: ``no_such_call``.
- AgentLogin / AgentLogout: ``not_supported``. Asterisk has no agent log-in with an id and password (that is TSAPI,
  S-5.13): agents join queues in the dialplan (FreePBX ``*45``) or statically, and ``busy_mode = "queue"`` pauses
  them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Final

from callcenter import wire
from callcenter.bridge.connectors.ami.codec import (
    CLOSED,
    NEED_DATA,
    Action,
    AMIConnection,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
)
from callcenter.bridge.connectors.ami.translate import LegInfo, LegState, Translator, TranslatorConfig
from callcenter.bridge.connectors.base import (
    INVALID_COMMAND,
    NO_SUCH_CALL,
    NOT_SUPPORTED,
    PBX_REFUSED,
    PBX_UNAVAILABLE,
    TIMEOUT,
    EmitFn,
)
from callcenter.bridge.settings import AsteriskSettings

__all__ = ["AmiConnector"]

log = logging.getLogger("callcenter.bridge.ami")

READ_SIZE: Final = 256 * 1024
DEFAULT_PING_INTERVAL: Final = 1.0
MAX_PING_TIMEOUT: Final = 5.0
# While the PBX does not accept connections (restarting, crashed), it is tried again every 0.25-0.5 s: a connection
# attempt costs nothing, and every second without the link is a second of calls the bridge cannot see.
UNREACHABLE_RETRY: Final = 0.5
ALIVE_SAVE_INTERVAL: Final = 1.0
_DIALABLE: Final = re.compile(r"\+?[0-9*#]{1,79}")
_EXTENSION: Final = re.compile(r"[0-9]{1,40}")
_UNKNOWN_ACTION: Final = "invalid/unknown command"
_NOT_FOUND: Final = "not found"
Headers = Sequence[tuple[str, str]]
OnComplete = Callable[[list[Message]], None]


class _Failure(Exception):
    """An action or command that did not work; ``error_id`` is one of base.ERROR_IDS, the text is for people."""

    def __init__(self, error_id: str, message: str) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message


class _LoginRefused(Exception):
    pass


class _Waiter:
    """One action in flight: the messages that answer it, collected by the reader until the answer is complete."""

    __slots__ = ("future", "messages", "on_complete")

    def __init__(self, future: asyncio.Future[list[Message]], on_complete: OnComplete | None) -> None:
        self.future = future
        self.messages: list[Message] = []
        self.on_complete = on_complete


class _Link:
    """One TCP connection to the AMI and its protocol state."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        self.reader = reader
        self.writer = writer
        self.conn = AMIConnection("client")
        self.waiters: dict[str, _Waiter] = {}
        self.banner: asyncio.Future[str] = loop.create_future()
        self.lost: asyncio.Future[str] = loop.create_future()
        self.following = False  # logged in with events on: what arrives tells the state of the calls

    def lose(self, reason: str) -> None:
        """The link is over: wake everything waiting on it."""
        if self.lost.done():
            return
        self.lost.set_result(reason)
        if not self.banner.done():
            self.banner.set_result("")
        waiters, self.waiters = self.waiters, {}
        for waiter in waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(_Failure(PBX_UNAVAILABLE, f"the PBX link was lost ({reason})"))
        self.writer.transport.abort()


class AmiConnector:
    """The Asterisk Manager Interface link of the bridge. See the module docstring for its rules."""

    phone_system: wire.PhoneSystem = wire.PhoneSystem.ASTERISK

    def __init__(
        self,
        settings: AsteriskSettings,
        extensions: Iterable[str] = (),
        *,
        internal_digits: int = 0,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        ping_timeout: float | None = None,
        retry_initial: float = 1.0,
        retry_cap: float = 30.0,
        event_mask: str = "on",
        bridge_version: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        alive_file: Path | None = None,
    ) -> None:
        if not settings.username:
            raise ValueError("[asterisk] username is empty; give the AMI user of manager.conf")
        if not settings.secret:
            raise ValueError(f"[asterisk] has no secret for AMI user {settings.username!r}; set secret_file or "
                             "CALLCENTER_AMI_SECRET")
        if any(c in settings.username + settings.secret.reveal() for c in "\r\n"):
            raise ValueError("[asterisk] username or secret contains a line break; AMI cannot carry it")
        if not settings.status_timeout > 0:
            raise ValueError(f"[asterisk] status_timeout must be more than 0 seconds, not {settings.status_timeout}")
        if not 0 < retry_initial <= retry_cap:
            raise ValueError(f"retry delays must satisfy 0 < retry_initial <= retry_cap; got {retry_initial}, "
                             f"{retry_cap}")
        if "{ext}" not in settings.originate_channel:
            raise ValueError(f"[asterisk] originate_channel {settings.originate_channel!r} has no {{ext}} for the "
                             "agent's extension; e.g. PJSIP/{ext}")
        followed = tuple(dict.fromkeys(extensions)) or ((settings.extension,) if settings.extension else ())
        for ext in followed:
            if not _EXTENSION.fullmatch(ext):
                raise ValueError(f"followed extension {ext!r} is not 1-40 digits")
        self.settings = settings
        self.extensions: tuple[str, ...] = followed
        self._translator = Translator(
            TranslatorConfig.for_profile(
                settings.profile,
                extensions=frozenset(followed),
                internal_digits=internal_digits,
                channels=(settings.channel,) if settings.channel else (),
                contexts=(settings.context,) if settings.context else (),
                process_newchannel=settings.process_newchannel,
                process_newstate=settings.process_newstate,
            )
        )
        self._timeout = float(settings.status_timeout)
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout if ping_timeout is not None else min(self._timeout, MAX_PING_TIMEOUT)
        self._retry_initial = retry_initial
        self._retry_cap = retry_cap
        self._event_mask = event_mask
        self._bridge_version = _package_version() if bridge_version is None else bridge_version
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self._emit: EmitFn = _discard
        self._link: _Link | None = None
        self._connected = False
        self._detail = ""
        self._failures = 0
        self._stopping: asyncio.Event | None = None
        self._running = False
        self._link_events = 0
        self._unreachable = False  # the last attempt found no PBX accepting connections
        self._background: set[asyncio.Task[None]] = set()
        # DND checks asked of the PBX and not answered yet; True = asked for again meanwhile (check once more after).
        self._dnd_checking: dict[str, bool] = {}
        # The last moment the PBX was known to be alive (a message arrived from it), kept in ``alive_file`` so that a
        # bridge restarted after a crash still knows when it lost sight of the calls then in progress.
        self._alive_file = alive_file
        self._alive_at: float | None = _load_alive(alive_file, clock())
        self._alive_saved = 0.0
        # Figures for /metrics and for tests.
        self.bytes_in = 0
        self.messages_in = 0
        self.events_out = 0
        self.connects = 0
        self.reconciles = 0  # live-channel lists applied
        self.resyncs = 0  # whole resyncs done (channels and DND)
        self.last_error = ""

    # ---- the Connector protocol ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    async def run(self, emit: EmitFn) -> None:
        """Connect, log in, follow events, keep alive, reconnect with back-off; returns after ``stop()``."""
        if self._running:
            raise RuntimeError("AmiConnector.run() is already running")
        self._running = True
        self._emit = emit
        stopping = self._stopping = asyncio.Event()
        try:
            while not stopping.is_set():
                self._unreachable = False
                try:
                    reason = await self._session()
                except _LoginRefused as exc:
                    reason = str(exc)
                except _Failure as exc:
                    reason = exc.message
                if stopping.is_set():
                    break
                self._note_failure(reason)
                delay = self.retry_delay(self._failures)
                if self._unreachable:
                    delay = min(delay, UNREACHABLE_RETRY * (0.5 + 0.5 * self._jitter()))
                self._failures += 1
                log.log(logging.INFO if self._failures <= 3 else logging.DEBUG,
                        "reconnecting to the AMI at %s in %.1f s (attempt %d)", self.where, delay, self._failures)
                await self._pause(delay, stopping)
        finally:
            self._running = False
            self._save_alive(force=True)
            self._set_link(False, "stopped")
            self._emit = _discard

    async def stop(self) -> None:
        """Disconnect (politely: ``Logoff``) and make ``run()`` return."""
        if self._stopping is not None:
            self._stopping.set()
        link = self._link
        if link is not None and not link.lost.done():
            if link.following:
                self._alive_at = self._clock()  # the PBX was followed until now
                self._save_alive(force=True)
            try:
                link.writer.write(link.conn.send(Action("Logoff")))
            except (LocalProtocolError, OSError, RuntimeError):  # the transport is already going: nothing to say
                pass
            link.lose("stopped")

    async def execute(self, command: wire.Command) -> wire.CommandResult:
        """Carry out ``command`` on the PBX; never raises for PBX trouble (see the module docstring)."""
        try:
            message = await self._execute(command)
        except _Failure as exc:
            log.info("command %s (%s) for extension %s failed: %s: %s", command.command_id, _kind(command),
                     command.extension, exc.error_id, exc.message)
            return wire.CommandResult(command_id=command.command_id, ok=False, error_id=exc.error_id,
                                      message=exc.message)
        return wire.CommandResult(command_id=command.command_id, ok=True, message=message)

    # ---- back-off ------------------------------------------------------------------------------------------------

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait before the next connection attempt after ``failures`` failed ones in a row."""
        base = min(self._retry_cap, self._retry_initial * float(2 ** min(failures, 30)))
        return base * (0.5 + 0.5 * self._jitter())

    async def _pause(self, delay: float, stopping: asyncio.Event) -> None:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        stopper = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stopper.cancel()

    def _note_failure(self, reason: str) -> None:
        if reason != self.last_error:
            log.error("AMI link to %s: %s", self.where, reason)
        else:
            log.debug("AMI link to %s: %s (again)", self.where, reason)
        self.last_error = reason
        self._set_link(False, reason)

    # ---- one connection ----------------------------------------------------------------------------------------

    async def _session(self) -> str:
        """One connection from connect to loss; returns why it ended (or raises why it never came up)."""
        settings = self.settings
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(settings.host, settings.port, limit=READ_SIZE), self._timeout
            )
        except TimeoutError:
            raise _Failure(PBX_UNAVAILABLE, f"no answer from {self.where} within {self._timeout:g} s; check the "
                                            "address, the port (AMI: 5038) and the firewall") from None
        except OSError as exc:
            self._unreachable = True
            raise _Failure(PBX_UNAVAILABLE, f"cannot connect to the AMI at {self.where} ({exc.strerror or exc}); "
                                            "is Asterisk running with the manager enabled on that port?") from None
        # Calls that vanish from the PBX while the bridge could not see it ended, at the latest, when it last could.
        gone_at = self._alive_at if self._alive_at is not None else self._clock()
        # Channels seen from now on are followed by their own events on this link (their hang-up will come on it,
        # before or after the list of live channels): only those remembered from before need the list.
        known_before = self._translator.tracked_uniqueids
        self._translator.new_link()
        link = _Link(reader, writer)
        self._link = link
        reader_task = asyncio.create_task(self._read(link), name=f"ami-reader-{self.where}")
        try:
            if self._stopping is not None and self._stopping.is_set():
                link.lose("stopped")
            banner = await self._wait(link.banner, "AMI banner")
            if link.lost.done():
                raise _Failure(PBX_UNAVAILABLE, link.lost.result())
            if not banner:
                raise _Failure(PBX_UNAVAILABLE, f"{self.where} did not greet as an Asterisk Manager Interface; is "
                                                "this the AMI port (5038)?")
            await self._login(link)
            await self._request("Events", (("EventMask", self._event_mask),), link=link)
            link.following = True
            self._failures = 0
            self.connects += 1
            self.last_error = ""
            self._set_link(True, f"logged in to {banner} at {self.where} as {settings.username!r}")
            log.info("AMI link to %s up (%s)", self.where, banner)
            try:
                await self._resync(link, gone_at, known_before)
            except _Failure as exc:  # the keep-alive decides whether the link is still usable
                if not link.lost.done():
                    log.warning("resync with the PBX at %s failed: %s", self.where, exc.message)
            await self._keep_alive(link)
            link.lose("stopped")
            return link.lost.result()
        finally:
            link.lose("stopped")
            reader_task.cancel()
            await asyncio.gather(reader_task, return_exceptions=True)  # a cancellation of run() itself goes on
            if self._link is link:
                self._link = None
            if self._connected:
                self._set_link(False, link.lost.result())

    async def _login(self, link: _Link) -> None:
        settings = self.settings
        try:
            reply = await self._request(
                "Login", (("Username", settings.username), ("Secret", settings.secret.reveal())), link=link,
                refuse=False,
            )
        except _Failure as exc:
            if exc.error_id != PBX_UNAVAILABLE:
                raise
            raise _Failure(PBX_UNAVAILABLE, f"{exc.message} before answering the login of user "
                                            f"{settings.username!r}; check permit/deny of that user in manager.conf"
                           ) from None
        response = reply[0]
        if response.name.lower() != "success":
            said = (response.get("Message") or response.name or "no reason given").strip()[:200]
            raise _LoginRefused(
                f"AMI login refused for user {settings.username!r}: check username/secret in manager.conf "
                f"(the PBX at {self.where} said: {said})"
            )

    async def _keep_alive(self, link: _Link) -> None:
        while not link.lost.done() and not (self._stopping is not None and self._stopping.is_set()):
            try:
                await asyncio.wait_for(asyncio.shield(link.lost), self._ping_interval)
                return
            except TimeoutError:
                pass
            try:
                await self._request("Ping", link=link, timeout=self._ping_timeout, refuse=False)
            except _Failure as exc:
                if exc.error_id == TIMEOUT:
                    link.lose(f"no answer to Ping within {self._ping_timeout:g} s: the link is dead or stalled")
                return

    async def _wait(self, future: asyncio.Future[str], what: str) -> str:
        try:
            return await asyncio.wait_for(asyncio.shield(future), self._timeout)
        except TimeoutError:
            raise _Failure(TIMEOUT, f"no {what} from {self.where} within {self._timeout:g} s") from None

    # ---- the reader --------------------------------------------------------------------------------------------

    async def _read(self, link: _Link) -> None:
        reader, conn = link.reader, link.conn
        try:
            while not link.lost.done():
                data = await reader.read(READ_SIZE)
                self.bytes_in += len(data)
                if data and link.following:
                    self._alive_at = self._clock()
                    if self._alive_at - self._alive_saved >= ALIVE_SAVE_INTERVAL:
                        self._save_alive()
                conn.receive_data(data)
                while True:
                    message = conn.next_event()
                    if message is NEED_DATA or message is CLOSED:
                        break
                    assert isinstance(message, Message)
                    self._route(link, message)
                if not data:
                    if link.following:
                        # The PBX's end closed the connection (a crash closes it too): it was there until now.
                        self._alive_at = self._clock()
                        self._save_alive(force=True)
                    link.lose("the PBX closed the connection")
        except RemoteProtocolError as exc:
            link.lose(f"the PBX broke the AMI protocol ({exc})")
        except ConnectionResetError as exc:
            if link.following:
                self._alive_at = self._clock()  # reset by the PBX's host: it was there until now
                self._save_alive(force=True)
            link.lose(f"the connection failed ({exc.strerror or exc.__class__.__name__})")
        except (ConnectionError, OSError) as exc:
            link.lose(f"the connection failed ({exc.strerror or exc.__class__.__name__})")

    def _route(self, link: _Link, message: Message) -> None:
        self.messages_in += 1
        kind = message.kind
        if kind == "banner":
            if not link.banner.done():
                link.banner.set_result(message.name)
            return
        if message.action_id is not None:
            action = link.conn.correlate(message)
            if action is not None:
                self._answer(link, action.action_id, message)
                return
            if kind == "response":
                log.debug("late answer to action %s ignored", message.action_id[:40])
                return
        if kind == "response":
            return
        for event in self._translator.feed(message, self._clock()):
            self._send(event)
        checks = self._translator.take_dnd_checks()
        if checks and self.settings.busy_mode in ("dnd", "both"):
            for ext in checks:
                if ext in self._dnd_checking:
                    self._dnd_checking[ext] = True  # one question at a time per extension, asked again after
                    continue
                self._dnd_checking[ext] = False
                task = asyncio.get_running_loop().create_task(self._check_dnd(link, ext))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _check_dnd(self, link: _Link, ext: str) -> None:
        """Ask the PBX for an extension's DND after its combined hint changed (again if it changed again while the
        question was out); a lost link just ends the check."""
        try:
            while True:
                await self._query_dnd(link, ext)
                if not self._dnd_checking.get(ext):
                    break
                self._dnd_checking[ext] = False
        except _Failure as exc:
            log.debug("DND of extension %s not checked: %s", ext, exc.message)
        finally:
            self._dnd_checking.pop(ext, None)

    def _save_alive(self, *, force: bool = False) -> None:
        """Keep the last moment the PBX was known alive in ``alive_file`` (at most once a second unless forced)."""
        if self._alive_file is None or self._alive_at is None:
            return
        if not force and self._alive_at - self._alive_saved < ALIVE_SAVE_INTERVAL:
            return
        self._alive_saved = self._alive_at
        temporary = self._alive_file.with_name(self._alive_file.name + ".tmp")
        try:
            temporary.write_text(json.dumps({"pbx_alive_at": self._alive_at, "pbx": self.where}), encoding="utf-8")
            os.replace(temporary, self._alive_file)
        except OSError as exc:
            log.warning("cannot keep the PBX's last-alive time in %s (%s); after a crash of the bridge, calls that "
                        "ended meanwhile will be closed at the time it restarts", self._alive_file,
                        exc.strerror or exc)

    def _answer(self, link: _Link, action_id: str, message: Message) -> None:
        waiter = link.waiters.get(action_id)
        if waiter is None:  # its caller gave up waiting (timeout): nothing to do with the rest of the answer
            return
        waiter.messages.append(message)
        if message.kind == "response":
            complete = message.event_list != "start"
        else:
            complete = message.event_list == "complete"
        if not complete:
            return
        del link.waiters[action_id]
        if waiter.on_complete is not None:
            waiter.on_complete(waiter.messages)
        if not waiter.future.done():
            waiter.future.set_result(waiter.messages)

    def _send(self, event: wire.Event) -> None:
        self.events_out += 1
        try:
            self._emit(event)
        except Exception:  # the sink is broken; the reader must go on reading or Asterisk drops us
            log.exception("the event sink failed on %s; the event was not queued", event.event_id)

    def _set_link(self, connected: bool, detail: str) -> None:
        if connected == self._connected and detail == self._detail:
            return
        if not connected and not self._connected and detail == "stopped":
            self._detail = detail
            return
        self._connected = connected
        self._detail = detail
        now = self._clock()
        self._link_events += 1
        self._send(
            wire.LinkState(
                event_id=f"ami:link:{now:.6f}:{self._link_events}:{'up' if connected else 'down'}",
                occurred_at=max(now, 0.0),
                phone_system=self.phone_system,
                pbx_connected=connected,
                extensions=self.extensions,
                bridge_version=self._bridge_version[:40],
                detail=detail[:500],
            )
        )

    # ---- actions -----------------------------------------------------------------------------------------------

    async def _request(
        self,
        name: str,
        headers: Headers = (),
        *,
        link: _Link | None = None,
        timeout: float | None = None,
        refuse: bool = True,
        on_complete: OnComplete | None = None,
    ) -> list[Message]:
        """Send one action and wait (``status_timeout`` at most) for its whole answer. ``refuse``: a
        ``Response: Error`` raises ``pbx_refused`` with Asterisk's message."""
        if link is None:
            link = self._link
            if link is None or not self._connected or link.lost.done():
                raise _Failure(PBX_UNAVAILABLE, f"not connected to the PBX at {self.where}"
                                                f"{f' ({self._detail})' if self._detail else ''}")
        if link.lost.done():
            raise _Failure(PBX_UNAVAILABLE, f"the PBX link was lost ({link.lost.result()})")
        try:
            data = link.conn.send(Action(name, tuple(headers)))
        except LocalProtocolError as exc:
            raise _Failure(INVALID_COMMAND, f"cannot send {name} to the PBX: {exc}") from None
        action_id = link.conn.last_action_id
        future: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()
        link.waiters[action_id] = _Waiter(future, on_complete)
        link.writer.write(data)
        limit = self._timeout if timeout is None else timeout
        try:
            reply = await asyncio.wait_for(future, limit)
        except TimeoutError:
            raise _Failure(TIMEOUT, f"no answer from the PBX to {name} within {limit:g} s") from None
        finally:
            link.waiters.pop(action_id, None)
        if refuse and _refused(reply):
            raise _Failure(PBX_REFUSED, f"PBX refused {name}: {_said(reply)}")
        return reply

    # ---- resync after every (re)connect ------------------------------------------------------------------------

    async def _resync(self, link: _Link, gone_at: float, known_before: frozenset[str]) -> None:
        for action, item in (("CoreShowChannels", "coreshowchannel"), ("Status", "status")):
            try:
                await self._request(action, link=link,
                                    on_complete=self._reconciler(item, known_before, gone_at))
                break
            except _Failure as exc:
                if exc.error_id != PBX_REFUSED:
                    raise
                log.warning("cannot list the live channels with %s (%s); grant the AMI user read=system,call,"
                            "reporting in manager.conf", action, exc.message)
        if self.settings.busy_mode in ("dnd", "both") and self.extensions:
            await asyncio.gather(*(self._query_dnd(link, ext) for ext in self.extensions))
        self.resyncs += 1

    def _reconciler(self, item: str, known_before: frozenset[str], gone_at: float) -> OnComplete:
        def reconcile(messages: list[Message]) -> None:  # runs in the reader, where the list ends in the stream
            if _refused(messages):
                return
            now = self._clock()
            live: set[str] = set()
            out: list[wire.Event] = []
            for message in messages:
                if message.kind == "event" and message.name.lower() == item:
                    uniqueid = (message.get("Uniqueid") or "").strip()
                    if uniqueid:
                        live.add(uniqueid)
                        out.extend(self._translator.catch_up(message, now))
            appeared = self._translator.tracked_uniqueids - known_before
            out.extend(self._translator.reconcile(live | appeared, now, gone_at))
            # Whatever this bridge remembers (it may have been restarted), the CRM closes every other open leg.
            self.reconciles += 1
            out.append(wire.LiveCalls(
                event_id=f"ami:live:{now:.6f}:{self.reconciles}",
                occurred_at=max(now, self._translator.pbx_time),
                extensions=self.extensions,
                legs=tuple(wire.LiveLeg(call_id=call_id, extension=ext)
                           for call_id, ext in self._translator.live_legs()),
                gone_at=max(min(gone_at, now), 0.0),
            ))
            ended = sum(1 for event in out if isinstance(event, wire.CallEnded))
            log.info("reconciled with the PBX: %d live channels, %d calls closed, %d events", len(live), ended,
                     len(out))
            for event in out:
                self._send(event)

        return reconcile

    async def _query_dnd(self, link: _Link, ext: str) -> None:
        def learn(messages: list[Message]) -> None:  # in the reader, in stream order with DeviceStateChange events
            now = self._clock()
            if _refused(messages):
                if _NOT_FOUND in _said(messages).lower():
                    for event in self._translator.note_dnd(ext, False, now):
                        self._send(event)
                return
            for message in messages:
                if message.kind == "event" and message.name.lower() == "dbgetresponse":
                    for event in self._translator.feed(message, now):
                        self._send(event)

        try:
            reply = await self._request("DBGet", (("Family", "DND"), ("Key", ext)), link=link, refuse=False,
                                        on_complete=learn)
        except _Failure as exc:
            if exc.error_id == PBX_UNAVAILABLE:
                raise
            log.warning("cannot read the DND state of extension %s: %s", ext, exc.message)
            return
        if _refused(reply) and _NOT_FOUND not in _said(reply).lower():
            log.warning("cannot read the DND state of extension %s: %s; grant the AMI user write=system",
                        ext, _said(reply))

    # ---- commands ----------------------------------------------------------------------------------------------

    async def _execute(self, command: wire.Command) -> str:
        ext = command.extension
        if not _EXTENSION.fullmatch(ext):
            raise _Failure(INVALID_COMMAND, f"extension {ext[:40]!r} is not an extension number (digits only)")
        if self.extensions and ext not in self.extensions:
            raise _Failure(INVALID_COMMAND, f"extension {ext} is not followed by this bridge (it follows "
                                            f"{', '.join(self.extensions)})")
        if isinstance(command, wire.Dial):
            return await self._dial(command)
        if isinstance(command, wire.Hangup):
            return await self._hangup(command)
        if isinstance(command, wire.Transfer):
            return await self._transfer(command)
        if isinstance(command, wire.SetBusy):
            return await self._set_busy(command)
        if isinstance(command, wire.Answer):
            return await self._answer_call(command)
        if isinstance(command, (wire.AgentLogin, wire.AgentLogout)):
            raise _Failure(NOT_SUPPORTED, "agent log-in/log-out is not supported by this phone system: on Asterisk "
                                          "agents join queues in the dialplan (FreePBX *45); use Busy with "
                                          "busy_mode = \"queue\" to pause them")
        raise _Failure(INVALID_COMMAND, f"unknown command {type(command).__name__}")

    def _originate_channel(self, ext: str) -> str:
        return self.settings.originate_channel.replace("{ext}", ext)

    async def _dial(self, command: wire.Dial) -> str:
        ext, number = command.extension, command.number.strip()
        if not _DIALABLE.fullmatch(number):
            raise _Failure(INVALID_COMMAND, f"number {number[:80]!r} cannot be dialled: use digits, optionally a "
                                            "leading + and * or #")
        self._require_link()
        channel_id = f"crm-{secrets.token_hex(10)}"
        self._translator.expect_originate(channel_id, number)
        await self._request("Originate", (
            ("Channel", self._originate_channel(ext)),
            ("Context", self.settings.originate_context),
            ("Exten", number),
            ("Priority", "1"),
            ("CallerID", ext),
            ("Async", "true"),
            ("ChannelId", channel_id),
        ))
        return f"extension {ext}'s phone rings to call {number}"

    async def _hangup(self, command: wire.Hangup) -> str:
        ext = command.extension
        self._require_link()
        leg = self._pick_leg(ext, command.call_id, (LegState.ANSWERED, LegState.RINGING, LegState.ARMED,
                                                    LegState.NEW, LegState.TRANSFERRED))
        if leg is None:
            raise _Failure(NO_SUCH_CALL, f"extension {ext} has no call to hang up")
        try:
            await self._request("Hangup", (("Channel", leg.channel), ("Cause", "16")))
        except _Failure as exc:
            if exc.error_id == PBX_REFUSED and "no such channel" in exc.message.lower():
                raise _Failure(NO_SUCH_CALL, f"extension {ext} has no call to hang up (the PBX no longer has "
                                             f"{leg.channel})") from None
            raise
        return f"hung up {leg.channel}"

    async def _transfer(self, command: wire.Transfer) -> str:
        ext, target = command.extension, command.target.strip()
        if not _DIALABLE.fullmatch(target):
            raise _Failure(INVALID_COMMAND, f"transfer target {target[:80]!r} is not a number")
        self._require_link()
        leg = self._pick_leg(ext, command.call_id, (LegState.ANSWERED,))
        if leg is None:
            raise _Failure(NO_SUCH_CALL, f"extension {ext} has no answered call to transfer")
        context = self.settings.originate_context
        if command.kind is wire.TransferKind.ATTENDED:
            await self._request("Atxfer", (("Channel", leg.channel), ("Exten", target), ("Context", context)))
            return f"extension {ext} consults {target}; hang up to complete the transfer"
        try:
            await self._request("BlindTransfer", (("Channel", leg.channel), ("Exten", target), ("Context", context)))
        except _Failure as exc:
            if exc.error_id != PBX_REFUSED or _UNKNOWN_ACTION not in exc.message.lower():
                raise
            if not leg.peers:
                raise _Failure(PBX_REFUSED, f"{exc.message}; and the other party of {leg.channel} is unknown, so "
                                            "it cannot be redirected instead") from None
            log.info("BlindTransfer unknown to this Asterisk: redirecting %s to %s instead", leg.peers[0], target)
            await self._request("Redirect", (("Channel", leg.peers[0]), ("Exten", target), ("Context", context),
                                             ("Priority", "1")))
            return f"redirected {leg.peers[0]} to {target}"
        return f"transferred {leg.channel}'s call to {target}"

    async def _set_busy(self, command: wire.SetBusy) -> str:
        ext, busy = command.extension, command.busy
        self._require_link()
        mode = self.settings.busy_mode
        done: list[str] = []
        if mode in ("dnd", "both"):
            if busy:
                await self._request("DBPut", (("Family", "DND"), ("Key", ext), ("Val", "YES")))
            else:
                try:
                    await self._request("DBDel", (("Family", "DND"), ("Key", ext)))
                except _Failure as exc:
                    if exc.error_id != PBX_REFUSED or _NOT_FOUND not in exc.message.lower():
                        raise
            await self._request("Setvar", (("Variable", f"DEVICE_STATE(Custom:DND{ext})"),
                                           ("Value", "BUSY" if busy else "NOT_INUSE")))
            done.append("DND " + ("on" if busy else "off"))
        if mode in ("queue", "both"):
            try:
                await self._request("QueuePause", (("Interface", self._originate_channel(ext)),
                                                   ("Paused", "true" if busy else "false")))
            except _Failure as exc:
                if done:
                    raise _Failure(exc.error_id, f"{exc.message} ({done[0]} was set)") from None
                raise
            done.append("queues " + ("paused" if busy else "unpaused"))
            if mode == "queue":
                for event in self._translator.note_dnd(ext, busy, self._clock()):
                    self._send(event)
        return f"extension {ext}: {', '.join(done)}"

    async def _answer_call(self, command: wire.Answer) -> str:
        ext = command.extension
        self._require_link()
        leg = self._pick_leg(ext, command.call_id, (LegState.RINGING, LegState.ARMED), direction="in")
        if leg is None:
            raise _Failure(NO_SUCH_CALL, f"extension {ext} has no ringing call to answer")
        technology, _, rest = leg.channel.partition("/")
        endpoint = rest.rpartition("-")[0] or rest
        if technology.upper() == "PJSIP":
            await self._request("PJSIPNotify", (("Endpoint", endpoint), ("Variable", "Event=talk")))
        elif technology.upper() == "SIP":
            await self._request("SIPnotify", (("Channel", f"SIP/{endpoint}"), ("Variable", "Event=talk")))
        else:
            raise _Failure(NOT_SUPPORTED, f"the PBX cannot answer {leg.channel} remotely: only SIP phones that "
                                          "accept a 'talk' NOTIFY can be answered from the CRM; pick up the phone")
        return f"asked {technology}/{endpoint} to answer"

    def _require_link(self) -> None:
        if self._link is None or not self._connected:
            raise _Failure(PBX_UNAVAILABLE, f"not connected to the PBX at {self.where}"
                                            f"{f' ({self._detail})' if self._detail else ''}")

    def _pick_leg(self, ext: str, call_id: str, states: Sequence[LegState], direction: str = "") -> LegInfo | None:
        """The leg a command acts on: of ``call_id`` when given, in the first of ``states`` that has one, newest."""
        legs = [leg for leg in self._translator.legs_of(ext)
                if (not call_id or leg.call_id == call_id) and (not direction or leg.direction == direction)]
        for state in states:
            matching = [leg for leg in legs if leg.state is state]
            if matching:
                return matching[-1]
        return None


def _load_alive(path: Path | None, now: float) -> float | None:
    """The last-alive time kept by an earlier run, if there is a sane one (not in the future, not absurd)."""
    if path is None:
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("pbx_alive_at")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value) and 946_684_800 <= value <= now:
        return float(value)
    return None


def _package_version() -> str:
    try:
        return metadata.version("callcenter")
    except metadata.PackageNotFoundError:
        return ""


def _discard(event: wire.Event) -> None:
    """The sink before ``run()`` and after it returned."""


def _refused(reply: list[Message]) -> bool:
    return bool(reply) and reply[0].kind == "response" and reply[0].name.lower() == "error"


def _said(reply: list[Message]) -> str:
    if not reply:
        return "no answer"
    return (reply[0].get("Message") or reply[0].name or "no reason given").strip()[:300]


def _kind(command: wire.Command) -> str:
    return type(command).__name__
