"""The tray menu (the seed's CallCenter.exe menu), as a model: tested without pystray."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from callcenter import wire
from callcenter.bridge.daemon import Bridge
from callcenter.bridge.logs import BridgeLogs
from callcenter.bridge.settings import BridgeSettings, load_settings
from callcenter.bridge.tray import MenuItem, _ThreadedBridge, build_menu
from tests.bridge.conftest import free_port
from tests.bridge.stub_connector import StubConnector


@dataclass
class Target:
    system: wire.PhoneSystem = wire.PhoneSystem.ASTERISK
    running: bool = True
    calls: list[str] = field(default_factory=list)

    def phone_system(self) -> wire.PhoneSystem:
        return self.system

    def pbx_running(self) -> bool:
        return self.running

    def open_page(self, path: str, system: str = "") -> None:
        self.calls.append(f"open {path} {system}".strip())

    def start(self) -> None:
        self.calls.append("start")
        self.running = True

    def stop(self) -> None:
        self.calls.append("stop")
        self.running = False

    def exit(self) -> None:
        self.calls.append("exit")


def by_label(items: tuple[MenuItem, ...]) -> dict[str, MenuItem]:
    return {item.label: item for item in items}


def test_the_menu_has_the_seed_s_entries_in_its_order() -> None:
    menu = build_menu(Target())
    assert [item.label for item in menu] == ["Phone system", "Settings", "Start", "Stop", "Error log", "Exit"]
    assert [item.label for item in menu[0].submenu] == ["Tapi", "Tsapi", "Asterisk Manager"]
    assert [item.label for item in menu if item.default] == ["Settings"]


def test_the_current_phone_system_is_checked_and_choosing_one_opens_its_settings() -> None:
    target = Target(system=wire.PhoneSystem.TSAPI)
    systems = by_label(build_menu(target)[0].submenu)
    assert [label for label, item in systems.items() if item.checked and item.checked()] == ["Tsapi"]
    assert all(item.radio for item in systems.values())
    action = systems["Asterisk Manager"].action
    assert action is not None
    action()
    assert target.calls == ["open /settings asterisk"]


def test_start_and_stop_are_enabled_by_the_pbx_state_and_call_the_bridge() -> None:
    target = Target(running=True)
    menu = by_label(build_menu(target))
    assert not menu["Start"].enabled() and menu["Stop"].enabled()
    stop = menu["Stop"].action
    assert stop is not None
    stop()
    assert menu["Start"].enabled() and not menu["Stop"].enabled()
    start = menu["Start"].action
    assert start is not None
    start()
    assert target.calls == ["stop", "start"]


def test_settings_error_log_and_exit_call_the_same_actions_as_the_page() -> None:
    target = Target()
    menu = by_label(build_menu(target))
    for label in ("Settings", "Error log", "Exit"):
        action = menu[label].action
        assert action is not None
        action()
    assert target.calls == ["open /settings", "open /errors", "exit"]


def test_the_threaded_bridge_behind_the_icon_starts_stops_opens_pages_and_exits(
    write_config: Callable[..., Path]
) -> None:
    settings = load_settings(write_config(bridge={"port": free_port(), "callback_port": free_port()}), env={})
    stubs: list[StubConnector] = []

    def factory(_settings: BridgeSettings) -> StubConnector:
        stubs.append(StubConnector())
        return stubs[-1]

    opened: list[str] = []
    logs = BridgeLogs()
    bridge = Bridge(settings, logs=logs, connector_factory=factory, handle_signals=False, admin_token="tok")
    runner = _ThreadedBridge(bridge, open_url=opened.append)
    runner.thread.start()
    try:
        assert runner.started.wait(10) and runner.error is None
        assert runner.pbx_running() and runner.phone_system() is wire.PhoneSystem.ASTERISK

        runner.stop()
        assert wait_until(lambda: not runner.pbx_running())
        runner.start()
        assert wait_until(lambda: runner.pbx_running() and len(stubs) == 2 and stubs[1].connected)

        runner.open_page("/settings", "tsapi")
        runner.open_page("/errors")
        first, second = opened  # a new one-time link each time, handed to the browser only
        assert re.fullmatch(rf"http://127.0.0.1:{settings.port}/login\?token=[\w-]+&next=/settings&system=tsapi", first)
        assert second.startswith(f"http://127.0.0.1:{settings.port}/login?token=") and second.endswith("&next=/errors")
        with httpx.Client() as browser:
            assert browser.get(first).headers["location"] == "/settings?system=tsapi"
            assert browser.get(first).status_code == 403
    finally:
        runner.exit()
        assert runner.finished.wait(15)
        logs.close()
    assert runner.error is None and not runner.thread.is_alive()


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False
