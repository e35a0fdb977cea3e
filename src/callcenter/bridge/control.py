"""The bridge's HTTP listener on the service address/port (S-5.7): the CRM's commands, health, metrics, and the
local settings page (the seed's menu, S-5.1-S-5.6).

Rules:
- One uvicorn server running a small hand-written ASGI app (no framework, no Django), on a socket bound before
  anything starts, so a port clash is one clear sentence (``bind_listener``).
- ``POST /v1/commands``: the body (at most ``MAX_COMMAND_BYTES``, else 413) must carry a valid
  ``X-Callcenter-Signature`` made with the bridge secret (``wire.verify``: constant-time, refuses stale
  timestamps), else 401 ``unauthenticated``; then ``wire.decode_command`` (400 ``invalid_command`` with the reason);
  then the connector executes it within the status timeout. The answer is a ``wire.CommandResult`` with HTTP 200,
  also when ok is false (``pbx_unavailable`` while the bridge is stopped or the PBX link is down, ``timeout``,
  and the connector's own error ids). A command id seen again within ``COMMAND_MEMORY`` is answered from memory
  and never executed twice (the CRM may retry after a lost answer).
- ``GET /health`` (no authentication, no secrets) and ``GET /metrics`` (Prometheus text format).
- The settings page (every other path) answers only clients on the loopback address that also name a loopback host
  (``Host: 127.0.0.1:5050``, ``localhost``; stops DNS rebinding), and only after logging in with a one-time link
  (``/login?token=...``: ``callcenter bridge login-link`` or the tray makes one; it works once, for 10 minutes; see
  ``login_links``; the bridge never prints or logs one) or by typing the bridge secret. Typing is throttled per
  client address (``LoginThrottle``: 5 wrong in 15 minutes lock that address out of typing for 15 minutes after the
  last; a one-time link still works, so the lock never shuts out the bridge's owner). A session is a random cookie
  (HttpOnly, SameSite=Strict) kept in memory; each form carries the session's CSRF token and a POST must also come
  from the same origin (Origin/Referer). Every value shown is escaped with ``html.escape``; passwords are never
  rendered back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import hmac
import html
import ipaddress
import json
import logging
import secrets
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, quote, urlsplit

import uvicorn

from callcenter import wire
from callcenter.bridge import login_links, logs
from callcenter.bridge.connectors.base import INVALID_COMMAND, PBX_UNAVAILABLE, TIMEOUT, Connector
from callcenter.bridge.outbox import DeadLetter
from callcenter.bridge.settings import (
    BridgeSettings,
    Secret,
    SettingsError,
    parse_settings,
    to_raw,
    write_settings_file,
)

log = logging.getLogger("callcenter.bridge.control")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

COMMANDS_PATH: Final = "/v1/commands"
MAX_COMMAND_BYTES: Final = 64 * 1024
MAX_FORM_BYTES: Final = 64 * 1024
COMMAND_MEMORY: Final = 1000  # recent command ids answered from memory
COMMAND_MEMORY_SECONDS: Final = 600.0
SESSION_COOKIE: Final = "callcenter_bridge_session"
LOGIN_COOKIE: Final = "callcenter_bridge_login"
SESSION_SECONDS: Final = 8 * 3600
MAX_SESSIONS: Final = 50
FAILED_LOGIN_DELAY: Final = 0.5
LOGIN_LIMIT: Final = 5  # wrong tries from one address within LOGIN_WINDOW lock typing out for LOGIN_LOCK
LOGIN_WINDOW: Final = 15 * 60.0
LOGIN_LOCK: Final = 15 * 60.0
JSON_TYPE: Final = b"application/json"
HTML_TYPE: Final = b"text/html; charset=utf-8"
METRICS_TYPE: Final = b"text/plain; version=0.0.4; charset=utf-8"
_SECURITY_HEADERS: Final = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
)


class ListenError(Exception):
    """The service port cannot be listened on; the text says which and what to do."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, bound now so that a clash is reported before anything else starts."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(
            f"cannot listen on {host!r}: {exc.strerror}; give an address of this machine in [bridge] address"
        ) from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform == "win32":  # SO_REUSEADDR lets another program steal the port on Windows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined,unused-ignore]
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"port {port} on {host} is in use (by another bridge?); choose another port in [bridge] port"
            ) from None
        if exc.errno == errno.EACCES:
            raise ListenError(
                f"not allowed to listen on port {port} on {host}; choose a port of 1024 or more in [bridge] port"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ListenError(
                f"{host} is not an address of this machine; correct [bridge] address (127.0.0.1 for this machine only)"
            ) from None
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


@dataclass(frozen=True)
class BridgeStatus:
    """What /health, /metrics and the settings page show; no secrets."""

    pbx_running: bool  # Start (S-5.3) was chosen and Stop (S-5.4) was not
    pbx_connected: bool
    events_in_total: int = 0
    events_delivered_total: int = 0
    delivery_failures_total: int = 0
    outbox_depth: int = 0
    outbox_bytes: int = 0
    outbox_oldest_age_seconds: float | None = None
    dead_letters: int = 0
    crm_last_error: str = ""


class ControlTarget(Protocol):
    """The running bridge, as the listener sees it (``callcenter.bridge.daemon.Bridge``)."""

    @property
    def settings(self) -> BridgeSettings: ...

    @property
    def connector(self) -> Connector | None: ...

    def status(self) -> BridgeStatus: ...

    def recent_errors(self) -> list[str]: ...

    def dead_letter_list(self, limit: int) -> list[DeadLetter]: ...

    def requeue_dead_letters(self) -> int: ...

    async def start_pbx(self) -> None: ...

    async def stop_pbx(self) -> None: ...

    async def apply_settings(self, settings: BridgeSettings) -> list[str]: ...

    def request_exit(self) -> None: ...


class StartError(Exception):
    """Start (S-5.3) cannot connect this phone system; the text says why (raised by ControlTarget.start_pbx)."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the bridge daemon owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class _Session:
    csrf: str
    expires: float
    flash: list[str] = field(default_factory=list)


class ControlListener:
    """The ASGI app and its uvicorn server. ``await serve()`` until ``stop()``."""

    def __init__(
        self,
        target: ControlTarget,
        sock: socket.socket,
        *,
        admin_token: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.target = target
        self.sock = sock
        self.env = env
        host, port = sock.getsockname()[:2]
        self.port = int(port)
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
        self.base_url = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
        self.page_url = login_links.page_url(shown, self.port)
        self._links = login_links.LinkBook()
        if admin_token:  # a first one-time token given by the caller (tests, an embedding program); never printed
            self._links.add(admin_token)
        self.login_throttle = LoginThrottle()
        self._sessions: dict[str, _Session] = {}
        self._commands: OrderedDict[str, tuple[float, asyncio.Future[wire.CommandResult]]] = OrderedDict()
        self.commands_total: dict[tuple[str, str], int] = {}
        self.unauthenticated_total = 0
        self._server = _Server(
            uvicorn.Config(
                app=self,
                interface="asgi3",
                lifespan="off",
                log_config=None,
                access_log=False,  # a login link carries a one-time token
                server_header=False,
                proxy_headers=False,
                http="h11",
                ws="none",
                timeout_keep_alive=5,
                timeout_graceful_shutdown=2,
                limit_concurrency=200,
            )
        )

    # ---- life cycle -------------------------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        serving = asyncio.create_task(self._server.serve(sockets=[self.sock]), name="control-listener")
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.01)
        if ready is not None and self._server.started:
            ready.set()
        try:
            await serving
        except SystemExit as exc:  # uvicorn's way of saying it could not start
            raise ListenError(f"the control listener could not start (status {exc.code})") from None

    def stop(self) -> None:
        self._server.should_exit = True

    # ---- ASGI ------------------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path == COMMANDS_PATH:
                await self._command(scope, receive, send)
            elif path == "/health":
                await self._health(method, send)
            elif path == "/metrics":
                await self._metrics(method, send)
            else:
                await self._page(scope, receive, send)
        except _BodyTooLarge as exc:
            await _json(send, 413, {"error_id": "too_large", "message": str(exc)})
        except _ClientGone:
            return

    async def _health(self, method: str, send: Send) -> None:
        if method not in ("GET", "HEAD"):
            await _json(send, 405, {"error_id": "method_not_allowed", "message": "use GET"}, allow=b"GET")
            return
        status = self.target.status()
        state = "ok" if status.pbx_connected else "connecting" if status.pbx_running else "stopped"
        await _json(send, 200, {
            "status": state,
            "pbx_connected": status.pbx_connected,
            "outbox_depth": status.outbox_depth,
            "phone_system": self.target.settings.phone_system.value,
        })

    async def _metrics(self, method: str, send: Send) -> None:
        if method not in ("GET", "HEAD"):
            await _json(send, 405, {"error_id": "method_not_allowed", "message": "use GET"}, allow=b"GET")
            return
        body = render_metrics(self.target.status(), self.commands_total, self.unauthenticated_total)
        await _respond(send, 200, body.encode(), METRICS_TYPE)

    # ---- commands --------------------------------------------------------------------------------------------------

    async def _command(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _json(send, 405, {"error_id": "method_not_allowed", "message": "use POST"}, allow=b"POST")
            return
        headers = _headers(scope)
        body = await _read_body(receive, headers, MAX_COMMAND_BYTES, "a command")
        settings = self.target.settings
        try:
            wire.verify(settings.secret.reveal(), headers.get(wire.SIGNATURE_HEADER.lower()), body, time.time())
            claimed = headers.get(wire.BRIDGE_HEADER.lower())
            if claimed is not None and claimed != settings.bridge_id:
                raise wire.AuthError(
                    f"this is bridge {settings.bridge_id!r}, not {claimed[:100]!r}; "
                    "check the bridge's address in the CRM"
                )
        except wire.AuthError as exc:
            self.unauthenticated_total += 1
            client = _client_host(scope)
            log.warning("refused a command from %s: %s", client, exc)
            await _json(send, 401, {"error_id": "unauthenticated", "message": str(exc)})
            return
        try:
            command = wire.decode_command(body)  # every field bounded; invalid UTF-8 is a WireError too
        except wire.WireError as exc:
            self._count("invalid", INVALID_COMMAND)
            log.warning("refused an invalid command from %s: %s", _client_host(scope), exc)
            await _json(send, 400, {"error_id": INVALID_COMMAND, "message": str(exc)})
            return
        result = await self._execute_once(command)
        self._count(_command_type(command), "ok" if result.ok else result.error_id or "error")
        await _respond(send, 200, wire.encode(result), JSON_TYPE)

    def _count(self, kind: str, result: str) -> None:
        key = (kind, result)
        self.commands_total[key] = self.commands_total.get(key, 0) + 1

    async def _execute_once(self, command: wire.Command) -> wire.CommandResult:
        now = time.monotonic()
        while self._commands:
            oldest_id, (seen, _future) = next(iter(self._commands.items()))
            if len(self._commands) <= COMMAND_MEMORY and now - seen <= COMMAND_MEMORY_SECONDS:
                break
            del self._commands[oldest_id]
        known = self._commands.get(command.command_id)
        if known is not None:
            log.info("command %s was already received; answering from memory", command.command_id)
            return await asyncio.shield(known[1])
        future: asyncio.Future[wire.CommandResult] = asyncio.get_running_loop().create_future()
        self._commands[command.command_id] = (now, future)
        try:
            result = await self._execute(command)
        except BaseException as exc:
            del self._commands[command.command_id]
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        future.set_result(result)
        return result

    async def _execute(self, command: wire.Command) -> wire.CommandResult:
        connector = self.target.connector
        settings = self.target.settings
        if connector is None:
            return wire.CommandResult(
                command_id=command.command_id, ok=False, error_id=PBX_UNAVAILABLE,
                message="the bridge is stopped; choose Start on its settings page or tray menu",
            )
        if not connector.connected:
            return wire.CommandResult(
                command_id=command.command_id, ok=False, error_id=PBX_UNAVAILABLE,
                message=f"the bridge is not connected to the PBX ({settings.phone_system.value}) right now; "
                "it keeps trying, see its error log",
            )
        status_timeout = _status_timeout(settings)
        limit = max(2 * status_timeout, status_timeout + 0.25)  # the connector bounds each action itself
        try:
            result = await asyncio.wait_for(connector.execute(command), limit)
        except TimeoutError:
            return wire.CommandResult(
                command_id=command.command_id, ok=False, error_id=TIMEOUT,
                message=f"the PBX did not complete the command within {limit:g} s",
            )
        if result.command_id != command.command_id:
            result = wire.CommandResult(command_id=command.command_id, ok=result.ok, error_id=result.error_id,
                                        message=result.message)
        return result

    # ---- the settings page ------------------------------------------------------------------------------------------

    async def _page(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        if not _is_loopback(_client_host(scope)) or not _is_loopback_host_header(headers.get("host", "")):
            await _html(send, 403, _document(
                "Not available",
                "<p>The bridge's settings page is available only on the bridge's own machine, at "
                f"<code>http://127.0.0.1:{self.port}/</code>.</p>",
            ))
            return
        path, method = scope["path"], scope["method"]
        if path == "/login":
            await self._login(scope, receive, send, headers)
            return
        session_id, session = self._session(headers)
        if session is None:
            if method == "GET" and path in _PAGES:
                await _redirect(send, "/login")
            else:
                await _html(send, 403, _document("Log in first", '<p><a href="/login">Log in</a> first.</p>'))
            return
        assert session_id is not None
        if path not in _PAGES:
            await _html(send, 404, _document("Not found", '<p>No such page. <a href="/">Back</a></p>'))
            return
        allowed = _PAGES[path]
        if method not in allowed:
            await _respond(send, 405, b"method not allowed", b"text/plain", allow=", ".join(allowed).encode())
            return
        if method == "POST":
            form = _parse_form(await _read_body(receive, headers, MAX_FORM_BYTES, "a form"))
            if not _same_origin(headers) or not hmac.compare_digest(
                form.get("csrf", "").encode(), session.csrf.encode()
            ):
                await _html(send, 403, _document(
                    "Refused", "<p>The form came from another page or an old session. "
                    '<a href="/">Reload the settings page</a> and try again.</p>',
                ))
                return
            await self._post(path, form, session, session_id, send)
        else:
            query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
            await self._get(path, query, session, send)

    def _session(self, headers: Mapping[str, str]) -> tuple[str | None, _Session | None]:
        now = time.monotonic()
        for expired in [key for key, value in self._sessions.items() if value.expires < now]:
            del self._sessions[expired]
        session_id = _cookies(headers).get(SESSION_COOKIE)
        if not session_id:
            return None, None
        return session_id, self._sessions.get(session_id)

    def _new_session(self) -> str:
        while len(self._sessions) >= MAX_SESSIONS:  # the oldest go first
            del self._sessions[next(iter(self._sessions))]
        session_id = secrets.token_urlsafe(32)
        expires = time.monotonic() + SESSION_SECONDS
        self._sessions[session_id] = _Session(csrf=secrets.token_urlsafe(32), expires=expires)
        return session_id

    def login_link(self, next_page: str = "/", system: str = "") -> str:
        """A new one-time login link (works once, for login_links.LINK_SECONDS), for the tray to open; never printed
        or logged."""
        url = f"{self.page_url}login?token={self._links.issue()}"
        if next_page != "/":
            url += f"&next={quote(next_page)}"
        if system:
            url += f"&system={quote(system)}"
        return url

    def _redeem_link(self, token: str) -> bool:
        """A one-time link's token, made in memory (tray) or by `callcenter bridge login-link` (a file in the data
        directory); used up either way."""
        if self._links.redeem(token):
            return True
        return login_links.redeem(self.target.settings.data_dir, token)

    def _credentials_match(self, given: str) -> bool:
        secret_ok = hmac.compare_digest(given.encode(), self.target.settings.secret.reveal().encode())
        return bool(given) and secret_ok

    async def _login(self, scope: Scope, receive: Receive, send: Send, headers: Mapping[str, str]) -> None:
        method = scope["method"]
        client = _client_host(scope)
        if method == "GET":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            token = query.get("token", [""])[-1]
            if token:
                if self._redeem_link(token):
                    target = _next_page(query.get("next", ["/"])[-1], query.get("system", [""])[-1])
                    await _redirect(send, target, cookie=_session_cookie(self._new_session()))
                    return
                log.warning("settings page: a login link that is not valid (used, expired or unknown) from %s",
                            client)
                await asyncio.sleep(FAILED_LOGIN_DELAY)
                await self._login_form(send, 403, "That login link is not valid: it was used already or is more "
                                       "than 10 minutes old. Make a new one with `callcenter bridge login-link`.")
                return
            await self._login_form(send, 200, "")
            return
        if method != "POST":
            await _respond(send, 405, b"method not allowed", b"text/plain", allow=b"GET, POST")
            return
        form = _parse_form(await _read_body(receive, headers, MAX_FORM_BYTES, "a form"))
        expected = _cookies(headers).get(LOGIN_COOKIE, "")
        if not _same_origin(headers) or not expected or not hmac.compare_digest(
            form.get("csrf", "").encode(), expected.encode()
        ):
            await self._login_form(send, 403, "The form came from another page; try again.")
            return
        given = form.get("token", "").strip()
        if given and self._redeem_link(given):  # a one-time link's token, typed: works even while locked
            await _redirect(send, "/", cookie=_session_cookie(self._new_session()))
            return
        now = time.monotonic()
        until = self.login_throttle.locked_until(client, now)
        if until is not None:
            log.warning("settings page: login refused, address %s is locked for %.0f more seconds", client,
                        until - now)
            await self._login_form(send, 429, _locked_text(until - now))
            return
        if not self._credentials_match(given):
            until = self.login_throttle.failed(client, now)
            log.warning("settings page: failed login (wrong bridge secret) from %s", client)
            await asyncio.sleep(FAILED_LOGIN_DELAY)
            if until is not None:
                await self._login_form(send, 429, _locked_text(until - now))
            else:
                await self._login_form(send, 403, "Wrong bridge secret. / Λάθος μυστικό γέφυρας.")
            return
        self.login_throttle.succeeded(client)
        await _redirect(send, "/", cookie=_session_cookie(self._new_session()))

    async def _login_form(self, send: Send, status: int, error: str) -> None:
        csrf = secrets.token_urlsafe(32)
        message = f'<p class="error">{_e(error)}</p>' if error else ""
        body = (
            f"{message}<p>Run <code>callcenter bridge login-link</code> on this machine and open the link it prints "
            "(it works once, for 10 minutes), or type the bridge secret.</p>"
            "<p lang=\"el\">Εκτελέστε <code>callcenter bridge login-link</code> σε αυτόν τον υπολογιστή και ανοίξτε "
            "τον σύνδεσμο που τυπώνει (ισχύει μία φορά, για 10 λεπτά), ή πληκτρολογήστε το μυστικό της γέφυρας.</p>"
            '<form method="post" action="/login">'
            f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
            '<label>Bridge secret / Μυστικό γέφυρας <input type="password" name="token" autocomplete="off" '
            "autofocus required></label> <button>Log in</button></form>"
        )
        cookie = f"{LOGIN_COOKIE}={csrf}; Path=/login; HttpOnly; SameSite=Strict"
        await _html(send, status, _document("Log in", body), cookie=cookie)

    async def _get(self, path: str, query: Mapping[str, str], session: _Session, send: Send) -> None:
        if path == "/":
            await _html(send, 200, self._home(session))
        elif path == "/settings":
            system = query.get("system", self.target.settings.phone_system.value)
            try:
                phone_system = wire.PhoneSystem(system)
            except ValueError:
                phone_system = self.target.settings.phone_system
            await _html(send, 200, self._settings_page(session, phone_system, None, []))
        elif path == "/dead-letters":
            await _html(send, 200, self._dead_letters_page(session))
        elif path == "/errors":
            await _html(send, 200, self._errors_page())

    async def _post(self, path: str, form: Mapping[str, str], session: _Session, session_id: str, send: Send) -> None:
        if path == "/start":
            try:
                await self.target.start_pbx()
                session.flash.append("Started: connecting to the PBX.")
            except StartError as exc:
                session.flash.append(f"Cannot start: {exc}")
            await _redirect(send, "/")
        elif path == "/stop":
            await self.target.stop_pbx()
            session.flash.append("Stopped: disconnected from the PBX. Commands from the CRM are refused until Start.")
            await _redirect(send, "/")
        elif path == "/settings":
            await self._save(form, session, send)
        elif path == "/exit":
            del self._sessions[session_id]
            await _html(send, 200, _document("Exiting", "<p>The bridge is stopping. You can close this page.</p>"))
            self.target.request_exit()
        elif path == "/dead-letters":
            count = self.target.requeue_dead_letters()
            log.warning("%d dead letters queued again for the CRM from the settings page", count)
            session.flash.append(f"{count} events queued again for the CRM. / "
                                 f"{count} συμβάντα μπήκαν ξανά στην ουρά για το CRM.")
            await _redirect(send, "/")
        elif path == "/logout":
            del self._sessions[session_id]
            await _redirect(send, "/login", cookie=f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")

    async def _save(self, form: Mapping[str, str], session: _Session, send: Send) -> None:
        current = self.target.settings
        try:
            phone_system = wire.PhoneSystem(form.get("bridge.phone_system", ""))
        except ValueError:
            phone_system = current.phone_system
        source = current.source
        if source is None:
            await _html(send, 400, self._settings_page(
                session, phone_system, form, ["these settings were not read from a file, so they cannot be saved"]
            ))
            return
        raw = _raw_from_form(current, form, phone_system)
        try:
            new = parse_settings(raw, base_dir=source.resolve().parent, source=source,
                                 **({"env": self.env} if self.env is not None else {}))
        except SettingsError as exc:
            await _html(send, 400, self._settings_page(session, phone_system, form, exc.problems))
            return
        try:
            write_settings_file(source, raw)
        except OSError as exc:
            await _html(send, 500, self._settings_page(
                session, phone_system, form, [f"cannot write {source}: {exc.strerror}; check its permissions"]
            ))
            return
        log.info("settings saved to %s from the settings page", source)
        notes = await self.target.apply_settings(new)
        session.flash.append(f"Saved to {source}.")
        session.flash.extend(notes)
        await _redirect(send, "/")

    # ---- pages ------------------------------------------------------------------------------------------------------

    def _home(self, session: _Session) -> str:
        settings = self.target.settings
        status = self.target.status()
        flash = "".join(f'<p class="note">{_e(line)}</p>' for line in session.flash)
        session.flash.clear()
        link = "connected" if status.pbx_connected else "connecting" if status.pbx_running else "stopped"
        options = "".join(
            f'<option value="{_e(s.value)}"{" selected" if s is settings.phone_system else ""}>{_e(_SYSTEM_LABEL[s])}'
            "</option>"
            for s in wire.PhoneSystem
        )
        csrf = _e(session.csrf)
        extensions = ", ".join(settings.followed_extensions) or "all"
        rows = [
            ("Phone system", _SYSTEM_LABEL[settings.phone_system]),
            ("PBX link", link),
            ("Extensions followed", extensions),
            ("Listening for the CRM", settings.service_url),
            ("CRM (callback)", settings.crm_url),
            ("Events waiting for the CRM", str(status.outbox_depth)),
        ]
        if status.dead_letters:
            rows.append(("Events the CRM refused (dead letters) / Συμβάντα που απέρριψε το CRM",
                         f"{status.dead_letters}: see Dead letters below / δείτε παρακάτω"))
        if status.crm_last_error:
            rows.append(("Last CRM error", status.crm_last_error))
        table = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
        body = (
            f"{flash}<table>{table}</table>"
            '<h2>Menu</h2><form method="get" action="/settings" class="inline">'
            f'<label>Phone system <select name="system">{options}</select></label> '
            "<button>Settings</button></form>"
            f'<form method="post" action="/start" class="inline"><input type="hidden" name="csrf" value="{csrf}">'
            f"<button{' disabled' if status.pbx_running else ''}>Start</button></form>"
            f'<form method="post" action="/stop" class="inline"><input type="hidden" name="csrf" value="{csrf}">'
            f"<button{'' if status.pbx_running else ' disabled'}>Stop</button></form>"
            '<form method="get" action="/errors" class="inline"><button>Error log</button></form>'
            '<form method="get" action="/dead-letters" class="inline"><button>Dead letters'
            f"{f' ({status.dead_letters})' if status.dead_letters else ''}</button></form>"
            f'<form method="post" action="/exit" class="inline"><input type="hidden" name="csrf" value="{csrf}">'
            "<button>Exit</button></form>"
            f'<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{csrf}">'
            "<button>Log out</button></form>"
        )
        return _document(f"Callcenter bridge {settings.bridge_id}", body)

    def _settings_page(
        self, session: _Session, phone_system: wire.PhoneSystem, form: Mapping[str, str] | None, problems: list[str]
    ) -> str:
        settings = self.target.settings
        current = to_raw(settings)
        errors = "".join(f'<p class="error">{_e(problem)}</p>' for problem in problems)
        sections = []
        for title, table in (("Common settings", "bridge"), (_SYSTEM_LABEL[phone_system], phone_system.value)):
            rows = []
            for spec in _FORM[table]:
                name = f"{table}.{spec.key}"
                rows.append(spec.render(name, _current_value(settings, current, spec), form))
            sections.append(f"<fieldset><legend>{_e(title)}</legend>{''.join(rows)}</fieldset>")
        body = (
            f"{errors}"
            '<form method="post" action="/settings">'
            f'<input type="hidden" name="csrf" value="{_e(session.csrf)}">'
            f'<input type="hidden" name="bridge.phone_system" value="{_e(phone_system.value)}">'
            f"{''.join(sections)}"
            "<p>Passwords are never shown; leave a password field empty to keep the current one. Address and port "
            "changes take effect when the bridge is restarted.</p>"
            '<button>Save</button> <a href="/">Cancel</a></form>'
        )
        return _document(f"Settings: {_SYSTEM_LABEL[phone_system]}", body)

    def _dead_letters_page(self, session: _Session) -> str:
        """The events the CRM refused on their own: id, type, time, when and why, and a button to queue them again
        (after the cause is fixed: e.g. the CRM upgraded, or the PBX's clock corrected)."""
        letters = self.target.dead_letter_list(DEAD_LETTERS_SHOWN)
        total = self.target.status().dead_letters
        rows = []
        for letter in letters:
            try:
                event = wire.decode_event(letter.body)
                kind, when = _event_tag(event), _utc(event.occurred_at)
            except wire.WireError:
                kind, when = "?", "?"
            rows.append(
                f"<tr><td><code>{_e(letter.event_id)}</code></td><td>{_e(kind)}</td><td>{_e(when)}</td>"
                f"<td>{_e(_utc(letter.failed_at))}</td><td>{letter.status}</td><td>{_e(letter.reason)}</td></tr>"
            )
        if not rows:
            body = "<p>No dead letters: the CRM has taken every event. / Κανένα απορριφθέν συμβάν.</p>"
        else:
            shown = f"the first {len(letters)} of {total}" if total > len(letters) else f"{total}"
            body = (
                f"<p>{_e(shown)} events the CRM refused on their own. They are kept here, not lost; fix the cause "
                "(the reason says it), then queue them again with the button below.</p>"
                '<p lang="el">Συμβάντα που το CRM απέρριψε μεμονωμένα. Φυλάσσονται εδώ· διορθώστε την αιτία και '
                "βάλτε τα ξανά στην ουρά.</p>"
                "<table><tr><th>Event id / Συμβάν</th><th>Type / Τύπος</th><th>Time / Ώρα (UTC)</th>"
                "<th>Refused at / Απορρίφθηκε (UTC)</th><th>HTTP</th><th>Reason / Αιτία</th></tr>"
                f"{''.join(rows)}</table>"
                f'<form method="post" action="/dead-letters"><input type="hidden" name="csrf" '
                f'value="{_e(session.csrf)}"><button>Queue them again / Ξανά στην ουρά</button></form>'
            )
        return _document("Dead letters", f'{body}<p><a href="/">Back</a></p>')

    def _errors_page(self) -> str:
        settings = self.target.settings
        lines = logs.read_error_log(settings.data_dir, 500) if settings.external_log else []
        where = f"from {settings.data_dir / logs.ERROR_LOG_NAME}" if lines else "since the bridge started"
        if not lines:
            lines = self.target.recent_errors()
        text = "\n".join(lines) if lines else "No errors."
        return _document("Error log", f"<p>{_e(where)}</p><pre>{_e(text)}</pre><p><a href=\"/\">Back</a></p>")


# ---- the settings form ----------------------------------------------------------------------------------------------

_SYSTEM_LABEL: Final = {
    wire.PhoneSystem.TAPI: "Tapi (Windows TAPI)",
    wire.PhoneSystem.TSAPI: "Tsapi (Avaya-type, CSTA)",
    wire.PhoneSystem.ASTERISK: "Asterisk Manager (AMI)",
}
_PAGES: Final[Mapping[str, tuple[str, ...]]] = {
    "/": ("GET", "HEAD"),
    "/settings": ("GET", "HEAD", "POST"),
    "/errors": ("GET", "HEAD"),
    "/dead-letters": ("GET", "HEAD", "POST"),
    "/start": ("POST",),
    "/stop": ("POST",),
    "/exit": ("POST",),
    "/logout": ("POST",),
}


@dataclass(frozen=True)
class _Field:
    key: str
    label: str
    kind: str = "text"  # text | number | checkbox | password | select | list
    choices: tuple[str, ...] = ()

    def render(self, name: str, value: object, form: Mapping[str, str] | None) -> str:
        label = _e(self.label)
        if self.kind == "password":
            state = "set" if value else "not set"
            return (f'<label>{label} <input type="password" name="{_e(name)}" autocomplete="new-password" '
                    f'placeholder="({_e(state)}; type to change)"></label>')
        if form is not None:
            if self.kind == "checkbox":
                value = name in form
            else:
                value = form.get(name, "")
        if self.kind == "checkbox":
            checked = " checked" if value is True else ""
            return f'<label><input type="checkbox" name="{_e(name)}" value="on"{checked}> {label}</label>'
        if self.kind == "select":
            options = "".join(
                f'<option value="{_e(choice)}"{" selected" if choice == value else ""}>{_e(choice)}</option>'
                for choice in self.choices
            )
            return f'<label>{label} <select name="{_e(name)}">{options}</select></label>'
        if self.kind == "list" and isinstance(value, list | tuple):
            value = ", ".join(str(item) for item in value)
        return f'<label>{label} <input name="{_e(name)}" value="{_e(str(value))}"></label>'


_FORM: Final[Mapping[str, tuple[_Field, ...]]] = {
    "bridge": (
        _Field("address", "Address: where the bridge listens for the CRM (S-5.7)"),
        _Field("port", "Port", "number"),
        _Field("callback_address", "Callback address: where the CRM listens (S-5.8)"),
        _Field("callback_port", "Callback port", "number"),
        _Field("callback_scheme", "Callback scheme", "select", ("http", "https")),
        _Field("bridge_id", "Bridge id (as registered in the CRM)"),
        _Field("secret", "Bridge secret (shared with the CRM)", "password"),
        _Field("extensions", "Extensions followed (comma-separated; empty = all)", "list"),
        _Field("internal_digits", "Internal phone digits (0 = only agents' phones are internal)", "number"),
        _Field("heartbeat_seconds", "Heartbeat to the CRM (seconds)", "number"),
        _Field("extended_log", "Extended log of the events followed (S-5.9)", "checkbox"),
        _Field("external_log", "Keep an error log file (S-5.10)", "checkbox"),
        _Field("run_at_startup", "Run at startup (S-5.11)", "checkbox"),
        _Field("data_dir", "Data directory (outbox, logs)"),
    ),
    "asterisk": (
        _Field("host", "AMI server address"),
        _Field("port", "AMI port", "number"),
        _Field("username", "Manager username"),
        _Field("secret", "Manager password", "password"),
        _Field("channel", "Channel to follow (e.g. PJSIP/100; empty = any)"),
        _Field("context", "Context of that channel (empty = any)"),
        _Field("extension", "Extension to follow (empty = the extensions above)"),
        _Field("status_timeout", "Status request timeout (seconds)", "number"),
        _Field("process_newchannel", "Process new-channel event", "checkbox"),
        _Field("process_newstate", "Process new-state event", "checkbox"),
        _Field("profile", "Channel profile", "select", ("production", "lab")),
        _Field("busy_mode", "Busy means", "select", ("dnd", "queue", "both")),
        _Field("originate_context", "Dial: context"),
        _Field("originate_channel", "Dial: channel ({ext} = the agent's extension)"),
    ),
    "tsapi": (
        _Field("internal_phone", "Internal phone"),
        _Field("username", "Username"),
        _Field("password", "Password", "password"),
        _Field("group_id", "Group Id"),
        _Field("service", "Service"),
        _Field("auto_in", "Auto in", "checkbox"),
        _Field("agent_id", "Agent id"),
        _Field("agent_password", "Agent pass", "password"),
    ),
    "tapi": (
        _Field("phone_type", "Phone type (a PBX model, or custom)"),
        _Field("phone_type_name", "Phone type name (the TAPI driver, for custom)"),
        _Field("internal_phone", "Internal phone"),
    ),
}


def _current_value(settings: BridgeSettings, raw: Mapping[str, Mapping[str, object]], spec: _Field) -> object:
    for table, fields_ in _FORM.items():
        if spec in fields_:
            if spec.kind == "password":
                holder: object = settings if table == "bridge" else getattr(settings, table)
                secret = getattr(holder, spec.key)
                return bool(secret) if isinstance(secret, Secret) else False
            return raw.get(table, {}).get(spec.key, "")
    return ""


def _raw_from_form(
    current: BridgeSettings, form: Mapping[str, str], phone_system: wire.PhoneSystem
) -> dict[str, dict[str, object]]:
    """The settings file's tables after the form: the current ones, with the shown fields replaced. A password typed
    replaces the secret (and its file); an empty one keeps it."""
    raw = to_raw(current)
    raw["bridge"]["phone_system"] = phone_system.value
    for table in ("bridge", phone_system.value):
        values = raw.setdefault(table, {})
        for spec in _FORM[table]:
            name = f"{table}.{spec.key}"
            if spec.kind == "password":
                typed = form.get(name, "")
                if typed:
                    values.pop(f"{spec.key}_file", None)
                    values[spec.key] = typed
                continue
            if spec.kind == "checkbox":
                values[spec.key] = name in form
                continue
            text = form.get(name, "").strip()
            if spec.kind == "list":
                values[spec.key] = [item for item in text.replace(",", " ").split() if item]
            elif spec.kind == "number":
                values[spec.key] = _number(text)
            else:
                values[spec.key] = text
    return raw


def _number(text: str) -> object:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # parse_settings says what is wrong with it


# ---- metrics ----------------------------------------------------------------------------------------------------


def render_metrics(
    status: BridgeStatus, commands: Mapping[tuple[str, str], int], unauthenticated: int
) -> str:
    """Prometheus text exposition format (version 0.0.4)."""
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: Sequence[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{labels} {_prom_number(value)}")

    metric("callcenter_bridge_pbx_connected", "gauge", "1 while the bridge is connected to the PBX.",
           [("", 1 if status.pbx_connected else 0)])
    metric("callcenter_bridge_events_in_total", "counter", "Wire events produced from the PBX since start.",
           [("", status.events_in_total)])
    metric("callcenter_bridge_events_delivered_total", "counter", "Events the CRM confirmed since start.",
           [("", status.events_delivered_total)])
    metric("callcenter_bridge_outbox_depth", "gauge", "Events waiting for the CRM's confirmation.",
           [("", status.outbox_depth)])
    metric("callcenter_bridge_outbox_bytes", "gauge", "Bytes the outbox uses on disk.", [("", status.outbox_bytes)])
    metric("callcenter_bridge_delivery_failures_total", "counter", "Failed attempts to deliver events to the CRM.",
           [("", status.delivery_failures_total)])
    if status.outbox_oldest_age_seconds is not None:
        metric("callcenter_bridge_outbox_oldest_age_seconds", "gauge", "Age of the oldest undelivered event.",
               [("", status.outbox_oldest_age_seconds)])
    metric("callcenter_bridge_dead_letters", "gauge", "Events the CRM refused on their own, set aside.",
           [("", status.dead_letters)])
    metric("callcenter_bridge_commands_total", "counter", "Commands from the CRM by type and result.",
           [(f'{{type="{_label(kind)}",result="{_label(result)}"}}', count)
            for (kind, result), count in sorted(commands.items())])
    metric("callcenter_bridge_unauthenticated_requests_total", "counter",
           "Command requests refused for a missing or wrong signature.", [("", unauthenticated)])
    return "\n".join(out) + "\n"


def _prom_number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---- HTTP helpers ---------------------------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = bytes(name).decode("latin-1").lower()
        text = bytes(value).decode("latin-1")
        if key in out:
            text = out[key] + ("; " if key == "cookie" else ", ") + text
        out[key] = text
    return out


async def _read_body(receive: Receive, headers: Mapping[str, str], limit: int, what: str) -> bytes:
    declared = headers.get("content-length", "")
    if declared.strip().isdigit() and int(declared) > limit:
        raise _BodyTooLarge(f"{what} is {int(declared)} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge(f"{what} is more than {limit} bytes; at most {limit} are accepted")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    allow: bytes | None = None,
    cookie: str | None = None,
    location: str | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *_SECURITY_HEADERS]
    if allow is not None:
        headers.append((b"allow", allow))
    if cookie is not None:
        headers.append((b"set-cookie", cookie.encode("latin-1")))
    if location is not None:
        headers.append((b"location", location.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, payload: Mapping[str, object], *, allow: bytes | None = None) -> None:
    await _respond(send, status, json.dumps(payload).encode(), JSON_TYPE, allow=allow)


async def _html(send: Send, status: int, page: str, *, cookie: str | None = None) -> None:
    await _respond(send, status, page.encode("utf-8"), HTML_TYPE, cookie=cookie)


async def _redirect(send: Send, location: str, *, cookie: str | None = None) -> None:
    await _respond(send, 303, b"", HTML_TYPE, cookie=cookie, location=quote(location, safe="/?=&"))


class LoginThrottle:
    """Typing the bridge secret on the settings page: ``LOGIN_LIMIT`` wrong tries from one client address within
    ``LOGIN_WINDOW`` lock that address out of typing until ``LOGIN_LOCK`` after the last of them. In memory: the
    bridge is one process. Tries made while locked are not counted, so the lock ends when it says."""

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}

    def locked_until(self, address: str, now: float) -> float | None:
        times = [t for t in self._failures.get(address, []) if t > now - LOGIN_WINDOW - LOGIN_LOCK]
        if len(times) < LOGIN_LIMIT:
            return None
        last = times[-LOGIN_LIMIT:]
        if last[-1] - last[0] > LOGIN_WINDOW or last[-1] + LOGIN_LOCK <= now:
            return None
        return last[-1] + LOGIN_LOCK

    def failed(self, address: str, now: float) -> float | None:
        """Count a wrong try; when the address is locked now, until when."""
        for key in [key for key, times in self._failures.items() if times[-1] <= now - LOGIN_WINDOW - LOGIN_LOCK]:
            del self._failures[key]
        while len(self._failures) >= 1000 and address not in self._failures:
            del self._failures[next(iter(self._failures))]
        times = self._failures.setdefault(address, [])
        times.append(now)
        del times[:-LOGIN_LIMIT]
        return self.locked_until(address, now)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


def _locked_text(seconds: float) -> str:
    at = time.strftime("%H:%M", time.localtime(time.time() + seconds))
    minutes = max(1, -(-round(seconds) // 60))  # whole minutes, rounded up
    return (
        f"Too many wrong tries from your address. Try again at {at} (in {minutes} minutes), or log in with a link "
        "from `callcenter bridge login-link`. / Πάρα πολλές λανθασμένες προσπάθειες από τη διεύθυνσή σας. "
        f"Δοκιμάστε ξανά στις {at} (σε {minutes} λεπτά) ή συνδεθείτε με σύνδεσμο από `callcenter bridge login-link`."
    )


def _next_page(path: str, system: str) -> str:
    """Where a login link leads: one of the pages shown with GET (never another site), optionally for a system."""
    if path not in ("/", "/settings", "/errors"):
        return "/"
    if path == "/settings" and system in {s.value for s in wire.PhoneSystem}:
        return f"/settings?system={system}"
    return path


def _session_cookie(session_id: str) -> str:
    return f"{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}"


def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in headers.get("cookie", "").split(";"):
        name, _sep, value = part.strip().partition("=")
        if name and name not in out:
            out[name] = value
    return out


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {key: values[-1] for key, values in parse_qs(text, keep_blank_values=True).items()}


def _client_host(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _is_loopback_host_header(host_header: str) -> bool:
    host = urlsplit(f"//{host_header}").hostname or ""
    return host == "localhost" or _is_loopback(host)


def _same_origin(headers: Mapping[str, str]) -> bool:
    """A browser's POST names the page it came from; it must be this listener (the host the browser asked for)."""
    expected = f"http://{headers.get('host', '')}"
    origin = headers.get("origin")
    if origin is not None:
        return origin == expected
    referer = headers.get("referer")
    if referer is not None:
        return referer == expected or referer.startswith(expected + "/")
    return True  # not a browser: the CSRF token alone decides


def _status_timeout(settings: BridgeSettings) -> float:
    if settings.phone_system is wire.PhoneSystem.ASTERISK:
        return settings.asterisk.status_timeout
    return 5.0


def _command_type(command: wire.Command) -> str:
    return str(type(command).__struct_config__.tag)


DEAD_LETTERS_SHOWN: Final = 200


def _event_tag(event: wire.Event) -> str:
    return str(type(event).__struct_config__.tag)


def _utc(seconds: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return repr(seconds)


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:50em;margin:1em auto;padding:0 1em}"
        "label{display:block;margin:.4em 0}input:not([type=checkbox]),select{min-width:20em}"
        "form.inline{display:inline-block;margin:.2em}th{text-align:left;padding-right:1em}"
        ".error{color:#a00}.note{color:#060}pre{white-space:pre-wrap;background:#f4f4f4;padding:.5em}</style>"
        f"</head><body><h1>{_e(title)}</h1>{body}</body></html>"
    )


__all__ = [
    "BridgeStatus",
    "ControlListener",
    "ControlTarget",
    "ListenError",
    "StartError",
    "bind_listener",
    "render_metrics",
]
