"""The bridge daemon (``callcenter bridge run``): one asyncio process wiring settings, logs, the outbox and its
deliverer, the PBX connector and the control listener (docs/bridge-interfaces.md).

Rules:
- Start-up checks everything that can be checked before serving, in this order: the phone system has a connector
  here, the logs can be written, the service port is free, the outbox opens. Any failure is a ``StartupError``: one
  sentence saying what to do (the command prints it and exits with status 2), and whatever was started is stopped.
- Start (S-5.3) creates a fresh connector and runs it; Stop (S-5.4) stops it and waits for it. The process, the
  listener and the outbox keep running, so commands are answered (``pbx_unavailable``) and queued events keep
  flowing to the CRM while the PBX link is stopped.
- Every wire event goes through ``emit``: counted, written to the extended event log when on, put in the outbox
  (never blocks). The daemon itself emits a ``wire.LinkState`` when the bridge starts, when the PBX link is stopped,
  when the bridge exits and, repeating the last state, every ``heartbeat_seconds``; the connector emits one on every
  PBX connect/disconnect. Every LinkState leaves with the bridge's addresses, ports, extensions and heartbeat filled
  in, so the CRM can tell "Logged in" (S-4.5, docs/bridge-interfaces.md).
- SIGINT/SIGTERM (or Exit on the settings page or tray) stop everything in order: the connector, the listener, then
  the outbox is flushed to disk and the deliverer gets a moment to hand the last events to the CRM. Whatever it
  cannot deliver stays in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any, Final, TextIO

import msgspec

from callcenter import wire
from callcenter.bridge import autostart
from callcenter.bridge.connectors.base import Connector
from callcenter.bridge.control import BridgeStatus, ControlListener, ListenError, StartError, bind_listener
from callcenter.bridge.delivery import Deliverer
from callcenter.bridge.login_links import login_link_command
from callcenter.bridge.logs import BridgeLogs
from callcenter.bridge.outbox import DeadLetter, Outbox, OutboxClosedError, OutboxError
from callcenter.bridge.settings import BridgeSettings

log = logging.getLogger("callcenter.bridge")

OUTBOX_NAME: Final = "outbox.sqlite3"
PBX_ALIVE_NAME: Final = "pbx-alive.json"  # the last moment the PBX was known alive (connectors/ami)
STOP_SECONDS: Final = 10.0
FINAL_DELIVERY_SECONDS: Final = 3.0

ConnectorFactory = Callable[[BridgeSettings], Connector]


class StartupError(Exception):
    """The bridge cannot start; the text is one sentence saying why and what to do."""


def bridge_version() -> str:
    try:
        return metadata.version("callcenter")
    except metadata.PackageNotFoundError:
        return "unknown"


def make_connector(settings: BridgeSettings) -> Connector:
    """The connector for the chosen phone system, or StartError when this installation has none for it."""
    system = settings.phone_system
    if system is wire.PhoneSystem.ASTERISK:
        from callcenter.bridge.connectors.ami.connector import AmiConnector

        try:
            return AmiConnector(settings.asterisk, extensions=settings.followed_extensions,
                                internal_digits=settings.internal_digits,
                                alive_file=settings.data_dir / PBX_ALIVE_NAME)
        except ValueError as exc:
            raise StartError(str(exc)) from None
    if system is wire.PhoneSystem.TSAPI:
        raise StartError(
            'phone_system = "tsapi" is not available in this version of the bridge (no CSTA connector yet); '
            'use phone_system = "asterisk", or keep the old CallCenter.exe for TSAPI'
        )
    raise StartError(
        'phone_system = "tapi" is not available on this machine or in this version of the bridge (Windows TAPI has '
        'no connector yet); use phone_system = "asterisk"'
    )


class Bridge:
    """The running bridge. ``await run()`` serves until ``request_exit()`` (or a signal), then stops cleanly."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        logs: BridgeLogs | None = None,
        connector_factory: ConnectorFactory | None = None,
        env: Mapping[str, str] | None = None,
        out: TextIO | None = None,
        admin_token: str | None = None,
        deliverer_options: Mapping[str, Any] | None = None,
        handle_signals: bool = True,
    ) -> None:
        self._settings = settings
        self.logs = logs or BridgeLogs()
        self._owns_logs = logs is None
        self._connector_factory = connector_factory or (lambda settings: make_connector(settings))
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._out = out
        self._admin_token = admin_token
        self._deliverer_options = dict(deliverer_options or {})
        self._handle_signals = handle_signals
        self.version = bridge_version()

        self.outbox: Outbox | None = None
        self.deliverer: Deliverer | None = None
        self.listener: ControlListener | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._connector: Connector | None = None
        self._connector_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit = asyncio.Event()
        self.ready = asyncio.Event()
        self._stopped = False
        self._events_in = 0
        self._last_link: wire.LinkState | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._signals: list[signal.Signals] = []

    # ---- what the listener and the tray see -------------------------------------------------------------------------

    @property
    def settings(self) -> BridgeSettings:
        return self._settings

    @property
    def connector(self) -> Connector | None:
        return self._connector

    @property
    def pbx_running(self) -> bool:
        return self._connector is not None

    @property
    def pbx_connected(self) -> bool:
        connector = self._connector
        return connector is not None and connector.connected

    def status(self) -> BridgeStatus:
        outbox, deliverer = self.outbox, self.deliverer
        depth = outbox.depth if outbox is not None else 0
        delivered = failures = 0
        last_error = ""
        if deliverer is not None:
            delivery = deliverer.metrics()
            delivered, failures, last_error = delivery.delivered_total, delivery.failures_total, delivery.last_error
        return BridgeStatus(
            pbx_running=self.pbx_running,
            pbx_connected=self.pbx_connected,
            events_in_total=self._events_in,
            events_delivered_total=delivered,
            delivery_failures_total=failures,
            outbox_depth=depth,
            outbox_bytes=outbox.bytes_on_disk if outbox is not None else 0,
            outbox_oldest_age_seconds=outbox.oldest_age_seconds if outbox is not None else None,
            dead_letters=outbox.dead_letters if outbox is not None else 0,
            crm_last_error=last_error,
        )

    def recent_errors(self) -> list[str]:
        return list(self.logs.recent.lines)

    def dead_letter_list(self, limit: int) -> list[DeadLetter]:
        """The events the CRM refused on their own (for the settings page); none while the outbox is closed."""
        return self.outbox.dead_letter_list(limit) if self.outbox is not None else []

    def requeue_dead_letters(self) -> int:
        """Queue every dead letter again for the CRM (the settings page's button); how many."""
        return self.outbox.requeue_dead_letters() if self.outbox is not None else 0

    # ---- life cycle -------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Start (StartupError when that fails), serve until asked to exit, stop."""
        await self.start()
        try:
            await self._exit.wait()
        finally:
            await self.shutdown()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        settings = self._settings
        try:
            connector = self._connector_factory(settings)
        except StartError as exc:
            raise StartupError(str(exc)) from None
        try:
            await self._start_parts(settings)
        except StartupError:
            await self.shutdown()
            raise
        self._install_signal_handlers()
        self.emit(self._link_state(False, "the bridge started"))
        self._run_connector(connector)
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="heartbeat")
        self._print_banner()
        log.info("bridge %s (%s) started, listening on %s", settings.bridge_id, settings.phone_system.value,
                 settings.service_url)
        self.ready.set()

    async def _start_parts(self, settings: BridgeSettings) -> None:
        try:
            self.logs.configure(settings)
        except OSError as exc:
            raise StartupError(
                f"cannot write the logs in [bridge] data_dir {settings.data_dir} ({exc.strerror}); choose a directory "
                "this user can write"
            ) from None
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            sock = bind_listener(settings.address, settings.port)
        except ListenError as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(
                f"cannot create [bridge] data_dir {settings.data_dir} ({exc.strerror}); choose a directory this user "
                "can write"
            ) from None
        try:
            self.outbox = Outbox(settings.data_dir / OUTBOX_NAME)
            await self.outbox.start()
        except (OutboxError, sqlite3.Error, OSError) as exc:
            sock.close()
            raise StartupError(f"the outbox {settings.data_dir / OUTBOX_NAME} cannot be used: {exc}") from None
        self.deliverer = self._new_deliverer()
        self.listener = ControlListener(self, sock, admin_token=self._admin_token, env=self.env)
        if self._admin_token:
            self.logs.redactor.add(self._admin_token)
        listening = asyncio.Event()
        self._listener_task = asyncio.create_task(self.listener.serve(listening), name="control-listener")
        waiter = asyncio.ensure_future(listening.wait())
        await asyncio.wait({waiter, self._listener_task}, timeout=STOP_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not listening.is_set():
            raise StartupError(f"the control listener on {settings.service_url} did not start")

    def request_exit(self) -> None:
        """Ask the bridge to stop (from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._exit.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._exit.set()
        else:
            loop.call_soon_threadsafe(self._exit.set)

    async def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._exit.set()
        self._remove_signal_handlers()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        await self._stop_connector()
        if self.outbox is not None:
            self.emit(self._link_state(False, "the bridge exited"))
        if self.listener is not None:
            self.listener.stop()
        if self._listener_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener_task, STOP_SECONDS)
        if self.outbox is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox.flush(), STOP_SECONDS)
        if self.deliverer is not None:
            await self._last_delivery()
            await self.deliverer.stop()
        if self.outbox is not None:
            left = self.outbox.depth
            await self.outbox.close()
            if left:
                log.info("%d events wait in the outbox for the next start", left)
        if self._owns_logs:
            self.logs.close()

    async def _last_delivery(self) -> None:
        """Give the deliverer a moment to hand the last events to the CRM, unless it is already failing."""
        outbox, deliverer = self.outbox, self.deliverer
        if outbox is None or deliverer is None or deliverer.metrics().consecutive_failures:
            return
        deadline = time.monotonic() + FINAL_DELIVERY_SECONDS
        while outbox.depth and time.monotonic() < deadline and not deliverer.metrics().consecutive_failures:
            await asyncio.sleep(0.02)

    # ---- Start / Stop (S-5.3, S-5.4) --------------------------------------------------------------------------------

    async def start_pbx(self) -> None:
        """Connect to the PBX with a fresh connector; StartError when this phone system cannot be used here."""
        if self._connector is not None or self._stopped:
            return
        self._run_connector(self._connector_factory(self._settings))
        log.info("Start: connecting to the PBX (%s)", self._settings.phone_system.value)

    async def stop_pbx(self) -> None:
        """Disconnect from the PBX; the bridge keeps running."""
        if self._connector is None:
            return
        await self._stop_connector()
        self.emit(self._link_state(False, "stopped from the bridge's menu"))
        log.info("Stop: disconnected from the PBX")

    def _run_connector(self, connector: Connector) -> None:
        self._connector = connector
        self._connector_task = asyncio.create_task(self._connector_main(connector), name="connector")

    async def _connector_main(self, connector: Connector) -> None:
        try:
            await connector.run(self.emit)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("the %s connector failed: %s", connector.phone_system.value, exc, exc_info=exc)
            self.emit(self._link_state(False, f"the connector failed: {exc}"))
        else:
            if self._connector is connector:
                log.error("the %s connector stopped on its own; choose Start to connect again",
                          connector.phone_system.value)
        if self._connector is connector:
            self._connector = None

    async def _stop_connector(self) -> None:
        connector, task = self._connector, self._connector_task
        self._connector = None
        self._connector_task = None
        if connector is None or task is None:
            return
        try:
            await asyncio.wait_for(connector.stop(), STOP_SECONDS)
        except Exception as exc:  # a failing stop must not keep the bridge from stopping
            log.error("stopping the %s connector failed: %s", connector.phone_system.value, exc)
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_SECONDS)
        except TimeoutError:
            log.error("the %s connector did not stop within %.0f s; cancelling it", connector.phone_system.value,
                      STOP_SECONDS)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---- settings changed on the settings page ----------------------------------------------------------------------

    async def apply_settings(self, settings: BridgeSettings) -> list[str]:
        """Use saved settings now where possible; the notes say what happened and what waits for a restart."""
        old, self._settings = self._settings, settings
        notes: list[str] = []
        try:
            self.logs.configure(settings)
        except OSError as exc:
            notes.append(f"The logs cannot be written in {settings.data_dir} ({exc.strerror}).")
        if (old.address, old.port) != (settings.address, settings.port) or old.data_dir != settings.data_dir:
            notes.append("The new address, port or data directory take effect when the bridge is restarted.")
        if (old.crm_url, old.bridge_id, old.secret) != (settings.crm_url, settings.bridge_id, settings.secret):
            if self.deliverer is not None:
                await self.deliverer.stop()
                self.deliverer = self._new_deliverer()
                notes.append(f"Events now go to {settings.crm_url}.")
        connector_changed = (old.phone_system, old.extensions, old.asterisk, old.tsapi, old.tapi) != (
            settings.phone_system, settings.extensions, settings.asterisk, settings.tsapi, settings.tapi
        )
        if connector_changed and self._connector is not None:
            await self.stop_pbx()
            try:
                await self.start_pbx()
                notes.append("Reconnecting to the PBX with the new settings.")
            except StartError as exc:
                notes.append(f"Cannot start: {exc}")
        if old.run_at_startup != settings.run_at_startup and settings.source is not None:
            try:
                if settings.run_at_startup:
                    result = autostart.enable(settings.source, env=self.env)
                else:
                    result = autostart.disable(env=self.env)
                notes.append(result.hint)
            except (autostart.AutostartError, OSError) as exc:
                notes.append(f"Run at startup could not be changed: {exc}")
        return notes

    # ---- events -----------------------------------------------------------------------------------------------------

    def emit(self, event: wire.Event) -> None:
        """The connectors' EmitFn: count, log (extended log), queue in the outbox. Never blocks."""
        if isinstance(event, wire.LinkState):
            event = self._complete(event)
            self._last_link = event
        self._events_in += 1
        self.logs.log_event(event)
        outbox = self.outbox
        if outbox is None:
            log.error("event %s arrived before the outbox was open; it is lost", event.event_id)
            return
        try:
            outbox.put(event)
        except OutboxClosedError:
            log.error("event %s arrived after the outbox was closed; it is lost", event.event_id)

    def _link_state(self, connected: bool, detail: str) -> wire.LinkState:
        settings = self._settings
        return self._complete(wire.LinkState(
            event_id=f"bridge:{settings.bridge_id}:link:{uuid.uuid4().hex}",
            occurred_at=time.time(),
            phone_system=settings.phone_system,
            pbx_connected=connected,
            detail=detail[:500],
        ))

    def _complete(self, link: wire.LinkState) -> wire.LinkState:
        """A LinkState with what the CRM checks against the resource's options (S-4.5): the addresses and ports
        (a wildcard listening address is left out: the CRM knows the machine by a real one), the extensions
        followed and the heartbeat interval."""
        settings = self._settings
        address = "" if settings.address in ("0.0.0.0", "::", "") else settings.address
        return msgspec.structs.replace(
            link,
            extensions=link.extensions or settings.followed_extensions,
            bridge_version=link.bridge_version or self.version[:40],
            service_address=address,
            service_port=settings.port,
            callback_address=settings.callback_address,
            callback_port=settings.callback_port,
            heartbeat_seconds=settings.heartbeat_seconds,
        )

    async def _heartbeat(self) -> None:
        """Repeat the last LinkState (new id, same state) every heartbeat_seconds, so the CRM knows we are here."""
        while not self._exit.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), self._settings.heartbeat_seconds)
                return
            last = self._last_link
            connected = self.pbx_connected
            detail = last.detail if last is not None and last.pbx_connected == connected else ""
            self.emit(self._link_state(connected, detail))

    def _new_deliverer(self) -> Deliverer:
        assert self.outbox is not None
        settings = self._settings
        deliverer = Deliverer(self.outbox, settings.crm_url, settings.bridge_id, settings.secret.reveal(),
                              **self._deliverer_options)
        deliverer.start()
        return deliverer

    # ---- process ----------------------------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if not self._handle_signals:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                continue
            self._signals.append(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._exit.is_set():
            log.warning("%s again: the bridge is already stopping", sig.name)
            return
        log.info("%s: stopping", sig.name)
        self._exit.set()

    def _remove_signal_handlers(self) -> None:
        if not self._signals or self._loop is None:
            return
        for sig in self._signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.remove_signal_handler(sig)
        self._signals.clear()

    def _print_banner(self) -> None:
        if self._out is None or self.listener is None:
            return
        settings = self._settings
        lines = [
            f"callcenter bridge {settings.bridge_id!r} ({settings.phone_system.value}) is running",
            f"  commands from the CRM: {self.listener.base_url}/v1/commands",
            f"  events to the CRM:     {settings.crm_url}/bridge/v1/events",
            f"  settings page:         {self.listener.page_url} (only on this machine)",
            f"  to log in there:       {login_link_command(settings)}  (prints a one-time link)",
            f"  data directory:        {settings.data_dir}",
            "Stop it with Ctrl-C.",
        ]
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()

