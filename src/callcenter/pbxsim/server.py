"""The AMI server of the simulated PBX: TCP sessions, authentication, actions, event fan-out and faults.

Rules:
- Bytes are parsed and written only by the shared sans-I/O codec (``AMIConnection(role="server")`` and
  ``encode_message``); this module only moves them between sockets and the PBX core.
- A session is greeted with the banner ``Asterisk Call Manager/11.0.0`` (what Asterisk 22 sends). Until a ``Login``
  succeeds, every action but ``Login``, ``Challenge`` and ``Logoff`` gets ``Response: Error`` /
  ``Message: Permission denied``. A failed login gets ``Response: Error`` / ``Message: Authentication failed`` and
  the connection is closed: nothing else is ever written to it. Secrets are compared in constant time and never
  logged or recorded (the command log shows ``Secret: ********``).
- A logged-in session receives every event (``Events: on`` is the default, as in ``manager.conf``), with
  ``Privilege`` and ``Timestamp`` headers; ``Events`` with ``EventMask`` off/on/a class list changes that.
- A client that stops reading is dropped once its unsent output passes ``max_pending`` bytes (Asterisk drops slow
  clients too); the PBX never waits for a client.
- Faults (for testing a client's resilience) act on the sessions connected at that moment:
  ``drop`` closes them at once (with a duration, the port also refuses connections until it has passed);
  ``garbage`` writes junk (invalid UTF-8, a line without a colon, an over-long line, binary noise) followed by a blank
  line, then the stream goes on normally; ``stall`` stops writing anything to them (responses included) while the
  sockets stay open and actions are still read, until the duration passes or ``resume()``; ``restart`` is a PBX
  restart: every call vanishes without events, sessions drop, and the port is closed for the duration.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import itertools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from callcenter.bridge.connectors.ami.codec import (
    CLOSED,
    NEED_DATA,
    AMIConnection,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
    encode_banner,
    encode_message,
)
from callcenter.pbxsim.engine import INTERNAL_CONTEXT, PBXCore, PBXError
from callcenter.pbxsim.model import EXT_STATUS_TEXT, AMIEvent, Channel, ChannelState, Headers

log = logging.getLogger("callcenter.pbxsim")

BANNER_VERSION: Final = "11.0.0"  # what Asterisk 12 to 22 send
FAULT_KINDS: Final = ("drop", "garbage", "stall", "restart")
EVENT_CLASSES: Final = frozenset({"system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
                                  "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test",
                                  "security", "message"})
# Junk for the "garbage" fault: each piece ends with a blank line so that a tolerant client can recover.
GARBAGE: Final = (
    b"\xff\xfe\x00garbage \xc3\x28 not utf-8\r\n"
    b"this line has no colon\r\n\r\n"
    + b"Junk: " + b"x" * 70_000 + b"\r\n\r\n"
    + bytes(range(1, 256)).replace(b"\n", b"").replace(b"\r", b"") + b"\r\n\r\n"
)
_UNAUTHENTICATED_OK: Final = frozenset({"login", "challenge", "logoff"})
_EXT_IN_INTERFACE: Final = re.compile(r"^(?:PJSIP|SIP|IAX2)/(\d+)$|^Local/(\d+)@[^/]+(?:/n)?$", re.IGNORECASE)
_ORIGINATE_CHANNEL: Final = re.compile(
    r"^(?:(?P<tech>PJSIP|SIP|IAX2)/(?P<ext>[^@/\s]+)|Local/(?P<num>[^@\s]+)@(?P<ctx>[^/\s]+)(?:/n)?)$", re.IGNORECASE
)
_CALLER_ID: Final = re.compile(r'^\s*(?:"(?P<qname>[^"]*)"|(?P<name>[^<]*?))\s*<(?P<num>[^>]*)>\s*$')


class PortInUseError(OSError):
    """The AMI port is taken; the text names it and says what to do."""


@dataclass(frozen=True, slots=True)
class ReceivedAction:
    """One action a client sent, as recorded for tests (secrets masked)."""

    at: float
    session: int
    username: str
    name: str
    headers: tuple[tuple[str, str], ...]
    response: str

    def get(self, key: str, default: str | None = None) -> str | None:
        lowered = key.lower()
        for k, v in self.headers:
            if k.lower() == lowered:
                return v
        return default


def parse_caller_id(value: str) -> tuple[str, str]:
    """``"Name" <number>`` / ``Name <number>`` / ``number`` -> (number, name)."""
    m = _CALLER_ID.match(value)
    if m:
        return m.group("num").strip(), (m.group("qname") if m.group("qname") is not None else m.group("name")).strip()
    return value.strip(), ""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "yes", "true", "on", "y")


class Session:
    """One AMI client connection."""

    def __init__(self, server: AMIServer, number: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.number = number
        self.reader = reader
        self.writer = writer
        self.conn = AMIConnection(role="server")
        self.authenticated = False
        self.username = ""
        self.event_classes: frozenset[str] | None = None  # None = all, empty = off
        self.stalled = False
        self.closed = False
        self.challenge = ""
        self._early_status = ""
        self.bytes_sent = 0
        self.dropped_writes = 0
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"

    # ---- writing --------------------------------------------------------------------------------------------

    def write_raw(self, data: bytes) -> None:
        if self.closed:
            return
        if self.stalled:
            self.dropped_writes += 1
            return
        self.writer.write(data)
        self.bytes_sent += len(data)
        transport = self.writer.transport
        if transport.get_write_buffer_size() > self.server.max_pending:
            log.warning("pbxsim: AMI client %s is not reading (over %d bytes pending); dropping it",
                        self.peer, self.server.max_pending)
            self.abort()

    def send(self, headers: Headers) -> None:
        try:
            self.write_raw(encode_message(headers))
        except LocalProtocolError as exc:  # a value with CR/LF: a bug in the simulator, never silently bad bytes
            log.error("pbxsim: refusing to write an invalid AMI message: %s", exc)

    def send_event(self, event: AMIEvent) -> None:
        if not self.authenticated or self.closed:
            return
        classes = self.event_classes
        if classes is not None and event.event_class not in classes:
            return
        self.send(event.wire_headers())

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.transport.abort()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            pass
        self.writer.close()

    # ---- reading --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.write_raw(encode_banner(BANNER_VERSION))
        try:
            while not self.closed:
                data = await self.reader.read(65536)
                try:
                    self.conn.receive_data(data)
                except RemoteProtocolError as exc:
                    log.warning("pbxsim: AMI client %s broke the protocol (%s); closing", self.peer, exc)
                    return
                while not self.closed:
                    try:
                        msg = self.conn.next_event()
                    except RemoteProtocolError as exc:
                        log.warning("pbxsim: AMI client %s broke the protocol (%s); closing", self.peer, exc)
                        return
                    if msg is NEED_DATA or msg is CLOSED:
                        break
                    assert isinstance(msg, Message)
                    await self.handle(msg)
                if not data:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            await self.close()

    # ---- actions --------------------------------------------------------------------------------------------

    def _response(self, msg: Message, status: str, message: str | None = None,
                  extra: Sequence[tuple[str, str]] = ()) -> Headers:
        headers: Headers = [("Response", status)]
        if msg.action_id is not None:
            headers.append(("ActionID", msg.action_id))
        if message is not None:
            headers.append(("Message", message))
        headers.extend(extra)
        return headers

    def _reply_now(self, headers: Headers) -> None:
        """Answer before the handler returns (an Async Originate is acknowledged before its first event)."""
        self.send(headers)
        self._early_status = headers[0][1]

    def _list_item(self, msg: Message, event: str, body: Sequence[tuple[str, str]]) -> Headers:
        headers: Headers = [("Event", event)]
        if msg.action_id is not None:
            headers.append(("ActionID", msg.action_id))
        headers.extend(body)
        return headers

    async def handle(self, msg: Message) -> None:
        if msg.kind == "malformed":
            log.warning("pbxsim: malformed message from AMI client %s: %s", self.peer, msg.error or "?")
            if self.authenticated:
                self.send(self._response(msg, "Error", "Missing action in request"))
            return
        name = (msg.get("Action") or "").strip()
        if not name:
            self.send(self._response(msg, "Error", "Missing action in request"))
            self.server.record(self, msg, "", "Error")
            return
        key = name.lower()
        if not self.authenticated and key not in _UNAUTHENTICATED_OK:
            self.send(self._response(msg, "Error", "Permission denied"))
            self.server.record(self, msg, name, "Error")
            return
        handler = self._handlers().get(key)
        if handler is None:
            self.send(self._response(
                msg, "Error", f"Invalid/unknown command: {name}. Use Action: ListCommands to show available commands."))
            self.server.record(self, msg, name, "Error")
            return
        self._early_status = ""
        try:
            replies = await handler(msg)
        except Exception as exc:  # a simulator bug: answer, keep the session, and make it visible to tests
            log.exception("pbxsim: the %s action failed inside the simulator", name)
            self.core.clock.errors.append(exc)
            replies = [self._response(msg, "Error", f"Internal error in the simulator ({type(exc).__name__})")]
        for reply in replies:
            self.send(reply)
        status = replies[0][0][1] if replies and replies[0] and replies[0][0][0] == "Response" else self._early_status
        self.server.record(self, msg, name, status)
        if key == "logoff" or (key == "login" and not self.authenticated):
            await self.close()

    def _handlers(self) -> Mapping[str, Callable[[Message], Awaitable[list[Headers]]]]:
        return {
            "login": self.a_login,
            "challenge": self.a_challenge,
            "logoff": self.a_logoff,
            "ping": self.a_ping,
            "events": self.a_events,
            "originate": self.a_originate,
            "hangup": self.a_hangup,
            "redirect": self.a_redirect,
            "blindtransfer": self.a_blind_transfer,
            "atxfer": self.a_atxfer,
            "coreshowchannels": self.a_core_show_channels,
            "status": self.a_status,
            "dbput": self.a_db_put,
            "dbget": self.a_db_get,
            "dbdel": self.a_db_del,
            "queuepause": self.a_queue_pause,
            "pjsipnotify": self.a_pjsip_notify,
            "setvar": self.a_setvar,
            "getvar": self.a_getvar,
            "extensionstate": self.a_extension_state,
        }

    @property
    def core(self) -> PBXCore:
        return self.server.core

    async def a_login(self, msg: Message) -> list[Headers]:
        if self.authenticated:
            return [self._response(msg, "Success", "Already authenticated")]
        username = msg.get("Username") or ""
        expected = self.server.users.get(username)
        ok = False
        if expected is not None:
            if (msg.get("AuthType") or "").lower() == "md5":
                key = msg.get("Key") or ""
                digest = hashlib.md5((self.challenge + expected).encode(), usedforsecurity=False).hexdigest()
                ok = bool(self.challenge) and hmac.compare_digest(key.encode(), digest.encode())
            else:
                ok = hmac.compare_digest((msg.get("Secret") or "").encode(), expected.encode())
        if not ok:
            log.warning("pbxsim: AMI login refused for user %r from %s", username, self.peer)
            return [self._response(msg, "Error", "Authentication failed")]
        self.authenticated = True
        self.username = username
        if msg.get("Events") is not None:
            self.event_classes = self._mask(msg.get("Events") or "")
        log.info("pbxsim: AMI user %r logged in from %s", username, self.peer)
        replies = [self._response(msg, "Success", "Authentication accepted")]
        if self.event_classes is None or "system" in self.event_classes:
            uptime = str(int(self.core.clock.now() - self.server.started_at))
            replies.append([("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", uptime),
                            ("LastReload", uptime), ("Status", "Fully Booted")])
        return replies

    async def a_challenge(self, msg: Message) -> list[Headers]:
        if (msg.get("AuthType") or "").lower() != "md5":
            return [self._response(msg, "Error", "Must specify AuthType")]
        self.challenge = f"{secrets.randbelow(10**9):09d}"
        return [self._response(msg, "Success", None, [("Challenge", self.challenge)])]

    async def a_logoff(self, msg: Message) -> list[Headers]:
        return [self._response(msg, "Goodbye", "Thanks for all the fish.")]

    async def a_ping(self, msg: Message) -> list[Headers]:
        return [self._response(msg, "Success", None,
                               [("Ping", "Pong"), ("Timestamp", f"{self.core.clock.now():.6f}")])]

    @staticmethod
    def _mask(value: str) -> frozenset[str] | None:
        v = value.strip().lower()
        if v in ("on", "yes", "true", "1", "all"):
            return None
        if v in ("off", "no", "false", "0", ""):
            return frozenset()
        return frozenset(c.strip() for c in v.split(",") if c.strip() in EVENT_CLASSES)

    async def a_events(self, msg: Message) -> list[Headers]:
        self.event_classes = self._mask(msg.get("EventMask") or "")
        on = self.event_classes is None or bool(self.event_classes)
        return [self._response(msg, "Success", None, [("Events", "On" if on else "Off")])]

    def _channel(self, msg: Message, key: str = "Channel") -> Channel | None:
        name = (msg.get(key) or "").strip()
        return self.core.find_channel(name) if name else None

    async def a_originate(self, msg: Message) -> list[Headers]:
        spec = (msg.get("Channel") or "").strip()
        if not spec:
            return [self._response(msg, "Error", "Channel not specified")]
        exten = (msg.get("Exten") or "").strip()
        application = (msg.get("Application") or "").strip()
        if not exten and not application:
            return [self._response(msg, "Error", "Exten or Application not specified")]
        context = (msg.get("Context") or "").strip() or INTERNAL_CONTEXT
        try:
            timeout = max(1.0, float(msg.get("Timeout") or "30000") / 1000.0)
        except ValueError:
            return [self._response(msg, "Error", "Invalid timeout")]
        caller_id = parse_caller_id(msg.get("CallerID") or "")
        channel_id = (msg.get("ChannelId") or "").strip()
        if channel_id and (self.core.uniqueid_in_use(channel_id) or len(channel_id) > 150):
            return [self._response(msg, "Error", "Uniqueid already in use" if len(channel_id) <= 150
                                   else "Uniqueid too long")]
        is_async = _truthy(msg.get("Async"))
        action_id = msg.action_id or ""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[bool] = loop.create_future()

        def done(ok: bool) -> None:
            if not outcome.done():
                outcome.set_result(ok)

        m = _ORIGINATE_CHANNEL.match(spec)
        queued = [self._response(msg, "Success", "Originate successfully queued")]
        if m and m.group("ext"):
            if is_async:
                self._reply_now(queued[0])
                queued = []
            self.core.originate_phone(m.group("ext"), exten=exten or None, context=context, application=application,
                                      app_data=msg.get("Data") or "", caller_id=caller_id, timeout=timeout,
                                      action_id=action_id, on_done=done, channel_id=channel_id, report=is_async)
        elif m and m.group("num") and m.group("ctx").lower() in ("from-pstn", "from-trunk"):
            # The fixture drivers' way to make an outside call come in: Local/<did>@from-pstn with the caller's id.
            if is_async:
                self._reply_now(queued[0])
                queued = []
            self.core.inbound(caller_id[0], caller_id[1], m.group("num"),
                              outcome=self._local_outcome(action_id, spec, exten, context, application, msg, done,
                                                          is_async))
        elif m and m.group("num") and m.group("ctx").lower() == INTERNAL_CONTEXT:
            # Local/<number>@from-internal with CallerID <ext>: agent ext's handset is already off-hook and dials.
            ext = caller_id[0]
            if ext not in self.core.agents:
                return [self._response(msg, "Error", f"Originate failed: CallerID {ext or '(none)'} is no extension")]
            if is_async:
                self._reply_now(queued[0])
                queued = []
            self.core.dial_out(ext, m.group("num"), caller_name=caller_id[1] or None,
                               outcome=self._local_outcome(action_id, spec, exten, context, application, msg, done,
                                                           is_async))
        else:
            if is_async:
                self._reply_now(queued[0])
                self.core.originate_response(action_id, False, 0, spec, "", context, exten, application,
                                              msg.get("Data") or "", caller_id)
                return []
            return [self._response(msg, "Error", "Originate failed")]
        if is_async:
            return []
        ok = await outcome
        return queued if ok else [self._response(msg, "Error", "Originate failed")]

    def _local_outcome(self, action_id: str, spec: str, exten: str, context: str, application: str, msg: Message,
                       done: Callable[[bool], None], report: bool) -> Callable[[bool, int, Channel], None]:
        caller_id = parse_caller_id(msg.get("CallerID") or "")

        def outcome(ok: bool, reason: int, ch: Channel) -> None:
            if report:
                self.core.originate_response(action_id, ok, reason, ch.name if ok else spec, ch.uniqueid if ok else "",
                                             context, exten, application, msg.get("Data") or "", caller_id)
            done(ok)

        return outcome

    async def a_hangup(self, msg: Message) -> list[Headers]:
        name = (msg.get("Channel") or "").strip()
        if not name:
            return [self._response(msg, "Error", "No channel specified")]
        try:
            cause = int(msg.get("Cause") or "16")
        except ValueError:
            cause = 16
        if len(name) > 2 and name.startswith("/") and name.endswith("/"):
            try:
                pattern = re.compile(name[1:-1])
            except re.error:
                return [self._response(msg, "Error", "Invalid regex")]
            matches = [c for c in list(self.core.channels.values()) if pattern.search(c.name)]
            for match in matches:
                self.core.hangup(match, cause, via_ami=True)
            return [self._response(msg, "Success", f"{len(matches)} channels hung up.")]
        found = self.core.find_channel(name)
        if found is None:
            return [self._response(msg, "Error", "No such channel")]
        self.core.hangup(found, cause, via_ami=True)
        return [self._response(msg, "Success", "Channel Hungup")]

    async def a_redirect(self, msg: Message) -> list[Headers]:
        name = (msg.get("Channel") or "").strip()
        if not name:
            return [self._response(msg, "Error", "Channel not specified")]
        exten = (msg.get("Exten") or "").strip()
        if not exten:
            return [self._response(msg, "Error", "Exten not specified")]
        if msg.get("ExtraChannel"):
            return [self._response(msg, "Error", "ExtraChannel is not supported by the simulator")]
        ch = self.core.find_channel(name)
        if ch is None:
            return [self._response(msg, "Error", f"Channel does not exist: {name}")]
        try:
            self.core.redirect(ch, exten, (msg.get("Context") or "").strip() or INTERNAL_CONTEXT)
        except PBXError as exc:
            return [self._response(msg, "Error", str(exc))]
        return [self._response(msg, "Success", "Redirect successful")]

    async def a_blind_transfer(self, msg: Message) -> list[Headers]:
        if not (msg.get("Channel") or "").strip():
            return [self._response(msg, "Error", "No channel specified")]
        exten = (msg.get("Exten") or "").strip()
        if not exten:
            return [self._response(msg, "Error", "No extension specified")]
        ch = self._channel(msg)
        if ch is None:
            return [self._response(msg, "Error", "Channel specified does not exist")]
        try:
            self.core.blind_transfer(ch, exten, (msg.get("Context") or "").strip() or INTERNAL_CONTEXT)
        except PBXError as exc:
            return [self._response(msg, "Error", str(exc))]
        return [self._response(msg, "Success", "Transfer succeeded")]

    async def a_atxfer(self, msg: Message) -> list[Headers]:
        if not (msg.get("Channel") or "").strip():
            return [self._response(msg, "Error", "No channel specified")]
        exten = (msg.get("Exten") or "").strip()
        if not exten:
            return [self._response(msg, "Error", "No extension specified")]
        ch = self._channel(msg)
        if ch is None:
            return [self._response(msg, "Error", "Channel specified does not exist")]
        try:
            self.core.attended_transfer(ch, exten)
        except PBXError:
            return [self._response(msg, "Error", "Unable to perform attended transfer: the channel is not in a call")]
        return [self._response(msg, "Success", "Atxfer successfully queued")]

    def _duration(self, ch: Channel) -> int:
        return int(self.core.clock.now() - ch.created_at)

    async def a_core_show_channels(self, msg: Message) -> list[Headers]:
        chans = list(self.core.channels.values())
        replies = [self._list_ack(msg, "Channels will follow")]
        for ch in chans:
            secs = self._duration(ch)
            replies.append(self._list_item(msg, "CoreShowChannel", [
                *ch.snapshot(),
                ("BridgeId", ch.bridge.uniqueid if ch.bridge else ""),
                ("Application", ch.application or ("Dial" if ch.outgoing else "AppDial" if ch.dial else "")),
                ("ApplicationData", ch.app_data),
                ("Duration", f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"),
            ]))
        replies.append(self._list_item(msg, "CoreShowChannelsComplete",
                                       [("EventList", "Complete"), ("ListItems", str(len(chans)))]))
        return replies

    def _list_ack(self, msg: Message, message: str) -> Headers:
        headers: Headers = [("Response", "Success")]
        if msg.action_id is not None:
            headers.append(("ActionID", msg.action_id))
        headers += [("EventList", "start"), ("Message", message)]
        return headers

    async def a_status(self, msg: Message) -> list[Headers]:
        name = (msg.get("Channel") or "").strip()
        if name and name.lower() != "all":
            ch = self.core.find_channel(name)
            if ch is None:
                return [self._response(msg, "Error", "No such channel")]
            chans = [ch]
        else:
            chans = list(self.core.channels.values())
        replies = [self._list_ack(msg, "Channel status will follow")]
        for ch in chans:
            replies.append(self._list_item(msg, "Status", [
                ("Privilege", "Call"),
                *ch.snapshot(),
                ("Type", ch.name.split("/", 1)[0]),  # PJSIP, or Local for a Local channel half
                ("DNID", ch.exten if ch.role.value == "trunk" else ""),
                ("EffectiveConnectedLineNum", ch.connected_num or "<unknown>"),
                ("EffectiveConnectedLineName", ch.connected_name or "<unknown>"),
                ("TimeToHangup", "0"),
                ("BridgeID", ch.bridge.uniqueid if ch.bridge else ""),
                ("Application", ch.application),
                ("Data", ch.app_data),
                ("Nativeformats", "(ulaw|alaw)"),
                ("Readformat", "ulaw"),
                ("Writeformat", "ulaw"),
                ("Callgroup", "0"),
                ("Pickupgroup", "0"),
                ("Seconds", str(self._duration(ch)) if ch.state == ChannelState.UP else "0"),
            ]))
        replies.append(self._list_item(msg, "StatusComplete", [("EventList", "Complete"),
                                                               ("ListItems", str(len(chans))),
                                                               ("Items", str(len(chans)))]))
        return replies

    def _family_key(self, msg: Message) -> tuple[str, str] | Headers:
        family = (msg.get("Family") or "").strip()
        if not family:
            return self._response(msg, "Error", "No family specified.")
        key = (msg.get("Key") or "").strip()
        if not key:
            return self._response(msg, "Error", "No key specified.")
        return family, key

    async def a_db_put(self, msg: Message) -> list[Headers]:
        fk = self._family_key(msg)
        if isinstance(fk, list):
            return [fk]
        self.core.db_put(fk[0], fk[1], msg.get("Val") or "")
        return [self._response(msg, "Success", "Updated database successfully")]

    async def a_db_get(self, msg: Message) -> list[Headers]:
        fk = self._family_key(msg)
        if isinstance(fk, list):
            return [fk]
        value = self.core.astdb.get(fk)
        if value is None:
            return [self._response(msg, "Error", "Database entry not found")]
        return [
            self._list_ack(msg, "Result will follow"),
            self._list_item(msg, "DBGetResponse", [("Family", fk[0]), ("Key", fk[1]), ("Val", value)]),
            self._list_item(msg, "DBGetComplete", [("EventList", "Complete"), ("ListItems", "1")]),
        ]

    async def a_db_del(self, msg: Message) -> list[Headers]:
        fk = self._family_key(msg)
        if isinstance(fk, list):
            return [fk]
        if not self.core.db_del(fk[0], fk[1]):
            return [self._response(msg, "Error", "Database entry not found")]
        return [self._response(msg, "Success", "Key deleted successfully")]

    async def a_queue_pause(self, msg: Message) -> list[Headers]:
        interface = (msg.get("Interface") or "").strip()
        if not interface:
            return [self._response(msg, "Error", "Need 'Interface' parameter")]
        paused_value = msg.get("Paused")
        if paused_value is None:
            return [self._response(msg, "Error", "Need 'Paused' parameter")]
        m = _EXT_IN_INTERFACE.match(interface)
        ext = (m.group(1) or m.group(2)) if m else ""
        paused = _truthy(paused_value)
        queue = (msg.get("Queue") or "").strip() or None
        if not ext or not self.core.queue_pause(ext, paused, queue, msg.get("Reason") or ""):
            return [self._response(msg, "Error", "Interface not found")]
        return [self._response(msg, "Success", f"Interface {'paused' if paused else 'unpaused'} successfully")]

    async def a_pjsip_notify(self, msg: Message) -> list[Headers]:
        endpoint = (msg.get("Endpoint") or "").strip()
        uri = (msg.get("URI") or "").strip()
        channel_name = (msg.get("Channel") or "").strip()
        if not (endpoint or uri or channel_name):
            return [self._response(msg, "Error",
                                   "PJSIPNotify requires either an endpoint name, a SIP URI, or a channel.")]
        option = (msg.get("Option") or "").strip()
        variables = msg.get_all("Variable")
        if not option and not variables:
            return [self._response(msg, "Error", "PJSIPNotify requires either an Option or Variable(s).")]
        talk = option.lower() in ("talk", "answer", "polycom-answer", "yealink-answer") or any(
            re.fullmatch(r"\s*Event\s*=\s*talk\s*", v, re.IGNORECASE) for v in variables)
        if channel_name:
            ch = self.core.find_channel(channel_name)
            if ch is None:
                return [self._response(msg, "Error", f"Unable to find channel {channel_name}")]
            if talk and ch.dial is not None:
                self.core.answer(ch)
            return [self._response(msg, "Success", "NOTIFY sent")]
        if uri:
            m = re.match(r"^sips?:(\d+)@", uri)
            endpoint = m.group(1) if m else ""
            if not endpoint:
                return [self._response(msg, "Success", "NOTIFY sent")]
        endpoint = endpoint.removeprefix("PJSIP/")
        if endpoint not in self.core.agents:
            return [self._response(msg, "Error", f"Unable to retrieve endpoint {endpoint}")]
        if talk:
            self.core.answer_endpoint(endpoint)
        return [self._response(msg, "Success", "NOTIFY sent")]

    async def a_setvar(self, msg: Message) -> list[Headers]:
        variable = (msg.get("Variable") or "").strip()
        if not variable:
            return [self._response(msg, "Error", "No variable specified")]
        value = msg.get("Value") or ""
        m = re.fullmatch(r"DEVICE_STATE\(Custom:([^)]+)\)", variable, re.IGNORECASE)
        if m:
            self.core.set_custom_state(m.group(1), value)
        elif variable.upper().startswith("DB("):
            inner = variable[3:].rstrip(")")
            family, _, key = inner.partition("/")
            self.core.db_put(family, key, value)
        return [self._response(msg, "Success", "Variable Set")]

    async def a_getvar(self, msg: Message) -> list[Headers]:
        variable = (msg.get("Variable") or "").strip()
        if not variable:
            return [self._response(msg, "Error", "No variable specified")]
        value = ""
        m = re.fullmatch(r"DEVICE_STATE\(Custom:([^)]+)\)", variable, re.IGNORECASE)
        if m:
            value = self.core.custom_states.get(m.group(1), "UNKNOWN")
        elif variable.upper().startswith("DB("):
            family, _, key = variable[3:].rstrip(")").partition("/")
            value = self.core.astdb.get((family, key), "")
        return [self._response(msg, "Success", None, [("Variable", variable), ("Value", value)])]

    async def a_extension_state(self, msg: Message) -> list[Headers]:
        exten = (msg.get("Exten") or "").strip()
        context = (msg.get("Context") or "").strip() or "ext-local"
        if exten not in self.core.agents:
            return [self._response(msg, "Success", "Extension Status",
                                   [("Exten", exten), ("Context", context), ("Hint", ""), ("Status", "-1"),
                                    ("StatusText", "Unknown")])]
        status = self.core.extension_status(exten)
        return [self._response(msg, "Success", "Extension Status",
                               [("Exten", exten), ("Context", context), ("Hint", self.core.hint(exten)),
                                ("Status", str(status)), ("StatusText", EXT_STATUS_TEXT.get(status, "Unknown"))])]


class AMIServer:
    def __init__(self, core: PBXCore, *, users: Mapping[str, str], host: str = "127.0.0.1", port: int = 0,
                 max_pending: int = 8 * 1024 * 1024) -> None:
        if not users:
            raise ValueError("the simulated PBX needs at least one AMI user (username and secret)")
        for name, secret in users.items():
            if not name or not secret:
                raise ValueError("every AMI user needs a non-empty username and secret")
        self.core = core
        self.users = dict(users)
        self.host = host
        self.port = port
        self.max_pending = max_pending
        self.sessions: set[Session] = set()
        self.commands: list[ReceivedAction] = []
        self.started_at = core.clock.now()
        self._server: asyncio.Server | None = None
        self._numbers = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reopen: asyncio.TimerHandle | None = None
        self.down = False
        self.logins = 0
        core.sinks.append(self._broadcast)

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    exc.errno,
                    f"port {self.port} on {self.host} is already in use (another pbxsim, or a real Asterisk?); "
                    "stop that program or choose another port with --port (0 picks a free one)",
                ) from None
            raise
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        self.down = False

    async def close(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for session in list(self.sessions):
            session.abort()
        if self._tasks:
            # Aborted transports end the sessions' reads; cancel only what is still stuck (a synchronous Originate).
            _done, pending = await asyncio.wait(set(self._tasks), timeout=1.0)
            for task in pending:
                task.cancel()
        if self._broadcast in self.core.sinks:
            self.core.sinks.remove(self._broadcast)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        session = Session(self, next(self._numbers), reader, writer)
        self.sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await session.run()
        except asyncio.CancelledError:
            pass  # the server is closing; the connection is already aborted
        finally:
            self.sessions.discard(session)
            if task is not None:
                self._tasks.discard(task)

    def _broadcast(self, event: AMIEvent) -> None:
        for session in list(self.sessions):
            session.send_event(event)

    def record(self, session: Session, msg: Message, name: str, response: str) -> None:
        # Login's Key is an MD5 answer to a challenge; every other action's Key (DBGet, DBPut) is an AstDB key.
        masked = ("secret", "key") if name.lower() == "login" else ("secret",)
        headers = tuple((k, "********" if k.lower() in masked else v) for k, v in msg.headers)
        if name.lower() == "login" and response == "Success":
            self.logins += 1
        self.commands.append(ReceivedAction(at=self.core.clock.now(), session=session.number,
                                            username=session.username, name=name, headers=headers,
                                            response=response))

    # ---- faults ---------------------------------------------------------------------------------------------

    def inject(self, kind: str, duration: float | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; use one of: {', '.join(FAULT_KINDS)}")
        log.warning("pbxsim: fault %s%s on %d AMI session(s)", kind,
                    f" for {duration:g} s" if duration else "", len(self.sessions))
        if kind == "garbage":
            for session in list(self.sessions):
                session.write_raw(GARBAGE)
        elif kind == "stall":
            stalled = [s for s in self.sessions if not s.closed]
            for session in stalled:
                session.stalled = True
            if duration:
                self.core.clock.call_later(duration, lambda: self._unstall(stalled))
        else:
            if kind == "restart":
                self.core.hangup_all(silently=True)
            for session in list(self.sessions):
                session.abort()
            if duration:
                self._go_down(duration)

    def _unstall(self, sessions: Sequence[Session]) -> None:
        for session in sessions:
            session.stalled = False

    def _go_down(self, duration: float) -> None:
        self.down = True
        if self._server is not None:
            self._server.close()
            self._server = None
        loop = asyncio.get_running_loop()
        self._reopen = loop.call_later(self.core.clock.real_delay(duration), self._schedule_reopen)

    def _schedule_reopen(self) -> None:
        self._reopen = None
        task = asyncio.ensure_future(self._reopen_listener())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reopen_listener(self) -> None:
        if self._server is None:
            try:
                await self.start()
            except OSError as exc:
                log.error("pbxsim: cannot listen again on %s:%d after the fault: %s", self.host, self.port, exc)
                return
        self.down = False

    async def resume(self) -> None:
        """End every fault now: stalled sessions write again, a closed port listens again."""
        for session in self.sessions:
            session.stalled = False
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        if self.down:
            await self._reopen_listener()
