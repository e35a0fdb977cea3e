"""The optional tray icon (the seed's CallCenter.exe lived in the system tray): the same menu as the settings page.

Rules:
- The menu is a plain model (``MenuItem``, ``build_menu``) with the seed's entries in its order: Phone system
  (S-5.1), Settings (S-5.2), Start (S-5.3), Stop (S-5.4), Error log (S-5.5), Exit (S-5.6). Each entry calls a method
  of ``TrayTarget``; the pystray adapter only translates the model. So the menu is tested without pystray.
- pystray (and Pillow, for the icon) are imported only when the tray is used: they are the optional extra ``tray``
  (``pip install 'callcenter[tray]'``). ``TrayUnavailable`` says so when they are missing.
- With the tray, the bridge runs on its own thread with its own event loop; the icon owns the main thread (macOS
  requires it). Exit on either side stops both.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import sys
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from callcenter import wire
from callcenter.bridge.control import StartError
from callcenter.bridge.daemon import Bridge, StartupError
from callcenter.bridge.logs import BridgeLogs
from callcenter.bridge.settings import BridgeSettings

log = logging.getLogger("callcenter.bridge.tray")

INSTALL_HINT: Final = "the tray icon needs pystray and Pillow: pip install 'callcenter[tray]'"
PHONE_SYSTEM_LABELS: Final = (
    (wire.PhoneSystem.TAPI, "Tapi"),
    (wire.PhoneSystem.TSAPI, "Tsapi"),
    (wire.PhoneSystem.ASTERISK, "Asterisk Manager"),
)


class TrayUnavailable(Exception):
    """pystray (or Pillow) is not installed; the text says how to install it."""


def _always() -> bool:
    return True


@dataclass(frozen=True)
class MenuItem:
    label: str
    action: Callable[[], None] | None = None
    enabled: Callable[[], bool] = _always
    checked: Callable[[], bool] | None = None
    radio: bool = False
    default: bool = False  # the entry a click on the icon runs
    submenu: tuple[MenuItem, ...] = ()


class TrayTarget(Protocol):
    def phone_system(self) -> wire.PhoneSystem: ...

    def pbx_running(self) -> bool: ...

    def open_page(self, path: str, system: str = "") -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def exit(self) -> None: ...


def build_menu(target: TrayTarget) -> tuple[MenuItem, ...]:
    """The seed's menu (S-5.1-S-5.6). Choosing a phone system opens its settings form, where it is saved."""

    def choose(system: wire.PhoneSystem) -> Callable[[], None]:
        return lambda: target.open_page("/settings", system.value)

    def is_current(system: wire.PhoneSystem) -> Callable[[], bool]:
        return lambda: target.phone_system() is system

    systems = tuple(
        MenuItem(label, choose(system), checked=is_current(system), radio=True)
        for system, label in PHONE_SYSTEM_LABELS
    )
    return (
        MenuItem("Phone system", submenu=systems),
        MenuItem("Settings", lambda: target.open_page("/settings"), default=True),
        MenuItem("Start", target.start, enabled=lambda: not target.pbx_running()),
        MenuItem("Stop", target.stop, enabled=target.pbx_running),
        MenuItem("Error log", lambda: target.open_page("/errors")),
        MenuItem("Exit", target.exit),
    )


def available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("pystray", "PIL"))


# ---- running with the icon ------------------------------------------------------------------------------------------


class _ThreadedBridge:
    """A Bridge on its own thread and event loop, driven from the tray's thread."""

    def __init__(self, bridge: Bridge, open_url: Callable[[str], object] = webbrowser.open) -> None:
        self.bridge = bridge
        self._open_url = open_url
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.on_finished: Callable[[], None] = lambda: None
        self.thread = threading.Thread(target=self._main, name="bridge", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._run())
        except BaseException as exc:  # handed to the main thread, which reports it
            self.error = exc
        finally:
            self.loop.close()
            self.started.set()
            self.finished.set()
            self.on_finished()

    async def _run(self) -> None:
        watcher = asyncio.ensure_future(self._note_started())
        try:
            await self.bridge.run()
        finally:
            watcher.cancel()

    async def _note_started(self) -> None:
        await self.bridge.ready.wait()
        self.started.set()

    def _call(self, coroutine_function: Callable[[], Any]) -> None:
        if not self.finished.is_set():
            asyncio.run_coroutine_threadsafe(coroutine_function(), self.loop)

    # TrayTarget
    def phone_system(self) -> wire.PhoneSystem:
        return self.bridge.settings.phone_system

    def pbx_running(self) -> bool:
        return self.bridge.pbx_running

    def open_page(self, path: str, system: str = "") -> None:
        listener = self.bridge.listener
        if listener is None:
            return
        # A new one-time link each time, handed to the browser only: never printed or logged.
        self._open_url(listener.login_link(path, system))

    def start(self) -> None:
        async def start() -> None:
            try:
                await self.bridge.start_pbx()
            except StartError as exc:
                log.error("Start: %s", exc)

        self._call(start)

    def stop(self) -> None:
        self._call(self.bridge.stop_pbx)

    def exit(self) -> None:
        self.bridge.request_exit()


def _icon_image() -> Any:
    image_module = importlib.import_module("PIL.Image")
    draw_module = importlib.import_module("PIL.ImageDraw")
    image = image_module.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = draw_module.Draw(image)
    draw.ellipse((4, 4, 60, 60), fill=(32, 120, 200, 255))
    draw.rectangle((22, 18, 42, 46), fill=(255, 255, 255, 255))
    return image


def _to_pystray(pystray: Any, items: tuple[MenuItem, ...]) -> Any:
    def convert(item: MenuItem) -> Any:
        if item.submenu:
            return pystray.MenuItem(item.label, pystray.Menu(*(convert(child) for child in item.submenu)))
        action = item.action or (lambda: None)
        checked = item.checked
        return pystray.MenuItem(
            item.label,
            lambda _icon, _item: action(),
            enabled=lambda _item: item.enabled(),
            checked=(lambda _item: checked()) if checked is not None else None,
            radio=item.radio,
            default=item.default,
        )

    return pystray.Menu(*(convert(item) for item in items))


def run_with_tray(settings: BridgeSettings, logs: BridgeLogs) -> int:
    """``callcenter bridge run --tray``: the bridge with its tray icon, until Exit. StartupError when it cannot start,
    TrayUnavailable without pystray."""
    try:
        pystray = importlib.import_module("pystray")
        image = _icon_image()
    except ImportError as exc:
        raise TrayUnavailable(INSTALL_HINT) from exc
    runner = _ThreadedBridge(Bridge(settings, logs=logs, out=sys.stdout, handle_signals=False))
    runner.thread.start()
    runner.started.wait()
    if runner.error is not None:
        runner.thread.join()
        if isinstance(runner.error, StartupError):
            raise runner.error
        raise RuntimeError(f"the bridge failed: {runner.error}") from runner.error

    icon = pystray.Icon("callcenter-bridge", image, f"Callcenter bridge {settings.bridge_id}")
    icon.menu = _to_pystray(pystray, build_menu(runner))
    runner.on_finished = icon.stop  # Exit (tray or settings page) ends the bridge, which removes the icon
    if runner.finished.is_set():
        runner.thread.join()
        return 0
    try:
        icon.run()
    finally:
        runner.exit()
        runner.thread.join(timeout=30)
    return 0
