"""The browser tests' fixtures: the real product (`callcenter demo` as a child process), a headless Chromium, and a
logged-in Call Center screen per user.

- ``product`` (module scope): `callcenter demo --no-calls` in a temporary working directory on free ports: the CRM,
  the bridge and the simulated PBX, exactly as a newcomer runs them. The tests place the calls themselves through the
  simulator's AMI (tests/e2e/ami.py), with the demo's own AMI user and secret. Ctrl-C (SIGINT) at the end: the demo
  must stop cleanly (status 0, no traceback).
- ``idle`` (every test): the simulated PBX has no call and no DND, and the CRM has heard so (no call in progress, no
  open leg, nobody busy) before the test starts; tests therefore never see another test's call ringing.
- ``browser`` (module scope): Debian's Chromium (/usr/bin/chromium), headless; never a downloaded browser.
- ``screens``: opens the Call Center screen as alice, bob or carol in a context of its own (logged in once per user
  through the login form, the session reused), with a recorder of notification windows (when each ``.pop`` was put
  on the screen, painted and removed, by the page's own clock) and of JavaScript dialogs.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from callcenter import demo_product
from tests.crm.test_serve_and_demo import Running, clean_env
from tests.e2e.ami import Ami
from tests.test_demo_product import DemoDatabase, until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
CONTACTS = 25  # the known demo contacts and enough generated ones to hold contacts with all four phone slots full
BANNER_END = re.compile(r"Ctrl-C to stop")
PASSWORDS = {"alice": "demo-alice", "bob": "demo-bob", "carol": "demo-carol"}
EXTENSIONS = {"alice": "100", "bob": "101"}
ARTIFACTS = Path(__file__).parent / "artifacts"
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
WAIT_MS = 10_000  # the longest any expectation waits for the product (a passing test waits for state, not this)

expect.set_options(timeout=WAIT_MS)

# In every page, before the product's script: (1) every notification window, with when it was put on the screen,
# first painted and removed (Date.now(), ms); (2) when the page last did anything live: a WebSocket message arrived or
# an htmx request started, ended or settled. ``Screen.quiet()`` waits for that to be QUIET_MS ago with nothing in
# flight, swapping or settling: longer than any of the script's own delays (a row refresh waits 100 ms, the status
# 120 ms, htmx settles after 20 ms and only then wires up new content), so a quiet page has no refresh pending.
QUIET_MS = 300
INSTRUMENTS = """
(() => {
  window.__e2ePops = [];
  window.__e2eActive = Date.now();
  const touch = () => { window.__e2eActive = Date.now(); };
  for (const name of ["htmx:beforeRequest", "htmx:afterRequest", "htmx:afterSwap", "htmx:afterSettle"]) {
    document.addEventListener(name, touch, true);
  }
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", touch);
    }
  };
  const seen = new WeakMap();
  new MutationObserver((records) => {
    const now = Date.now();
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (!(node instanceof Element) || !node.classList.contains("pop") || seen.has(node)) continue;
        const entry = {
          added: now, painted: null, removed: null,
          number: (node.querySelector(".pop-number") || {}).textContent || "",
          contact: (node.querySelector(".pop-contact") || {}).textContent || "",
        };
        seen.set(node, entry);
        window.__e2ePops.push(entry);
        requestAnimationFrame(() => { entry.painted = Date.now(); });
      }
      for (const node of record.removedNodes) {
        if (node instanceof Element && seen.has(node)) seen.get(node).removed = now;
      }
    }
  }).observe(document, { childList: true, subtree: true });
})();
"""
QUIET = """(quietMs) => Date.now() - window.__e2eActive >= quietMs
  && !document.querySelector(".htmx-request, .htmx-swapping, .htmx-added, .htmx-settling")"""


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class Product:
    url: str
    ami: Ami
    db: DemoDatabase
    workdir: Path
    sessions: dict[str, Any] = field(default_factory=dict)

    def calls_in_progress(self) -> int:
        return int(self.db.rows("SELECT count(*) FROM calls_call WHERE state != 'ended'")[0][0]
                   + self.db.rows("SELECT count(*) FROM calls_callleg WHERE ended_at IS NULL")[0][0])

    def busy(self, username: str) -> Any:
        return self.db.busy(username)


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    workdir = tmp_path_factory.mktemp("e2e-demo")
    port, bridge_port, ami_port = _free_ports(3)
    demo = Running(["demo", "--port", str(port), "--bridge-port", str(bridge_port), "--ami-port", str(ami_port),
                    "--no-calls", "--contacts", str(CONTACTS)], cwd=workdir, env=clean_env())
    ami: Ami | None = None
    try:
        demo.wait_for(BANNER_END)
        var = workdir / "var"
        ami = Ami(ami_port, demo_product.AMI_USER, demo_product.read_secret(var / demo_product.AMI_SECRET_NAME))
        db = DemoDatabase(var / "demo.sqlite3")
        until(lambda: db.rows("SELECT pbx_connected FROM calls_bridge WHERE bridge_id = 'demo'") == [(1,)],
              "the demo bridge's link to the CRM")
        yield Product(url=f"http://127.0.0.1:{port}", ami=ami, db=db, workdir=workdir)
    finally:
        if ami is not None:
            ami.close()
        if demo.process.poll() is None:
            status = demo.interrupt()
            assert status == 0, f"the demo stopped with status {status}:\n{demo.stderr_text}"
        assert "Traceback" not in demo.stderr_text, demo.stderr_text


@pytest.fixture(autouse=True)
def idle(product: Product) -> None:
    """No call on the simulated PBX, nobody on DND, and the CRM knows it."""
    product.ami.hang_up_everything()
    for extension in EXTENSIONS.values():
        if product.ami.dnd(extension):
            product.ami.clear_dnd(extension)
    until(lambda: not product.ami.channels(), "the simulated PBX to have no call")
    until(lambda: product.calls_in_progress() == 0, "the CRM to have no call in progress")
    until(lambda: not any(product.busy(user) for user in EXTENSIONS), "the CRM to have nobody busy")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"the browser tests drive Debian's Chromium at {CHROMIUM}, which is not installed; .ci/run "
                    "installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def log_in(page: Page, username: str, password: str) -> None:
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.locator("form[action='/login/'] button[type=submit]").click()


@dataclass
class Screen:
    """One open page of the product, with what it showed that the DOM no longer holds: the JavaScript dialogs
    (``window.confirm``: answered with ``confirm``) and the notification windows (``pops()``)."""

    page: Page
    confirm: bool = False
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # uncaught exceptions and console errors of the page

    def __post_init__(self) -> None:
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("console", self._console)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        if self.confirm and dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        url = message.location.get("url", "")
        if message.type == "error" and not url.endswith("/favicon.ico"):  # Django's admin pages name no icon
            self.errors.append(f"console: {message.text} ({url})")

    def row(self, number: str) -> Locator:
        """The list's row of the call with this number (as received from the PBX)."""
        return self.page.locator(f'#cc-rows tr.call[data-number="{number}"]')

    def pops(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate("window.__e2ePops"))

    def quiet(self) -> None:
        """Wait until the page has nothing live pending (see INSTRUMENTS): act on what it shows only then, so that
        a late refresh cannot replace an element between the test's look and its click."""
        self.page.wait_for_function(QUIET, arg=QUIET_MS, polling=50)

    def flash(self) -> Locator:
        """The message of the screen's last action (its text, without the close button)."""
        return self.page.locator("#cc-flash .flash .text")


@dataclass
class Screens:
    """Opens pages of the product as a user; closes every context at the end of the test."""

    browser: Browser
    product: Product
    contexts: list[BrowserContext] = field(default_factory=list)
    opened: list[Screen] = field(default_factory=list)

    def context(self, username: str | None = None) -> BrowserContext:
        state = None
        if username is not None:
            state = self.product.sessions.get(username)
            if state is None:
                state = self._log_in_once(username)
        context = self.browser.new_context(base_url=self.product.url, viewport=VIEWPORT, storage_state=state,
                                           locale="en-GB", timezone_id="Europe/Athens")
        context.set_default_timeout(WAIT_MS)
        context.add_init_script(INSTRUMENTS)
        self.contexts.append(context)
        return context

    def _log_in_once(self, username: str) -> Any:
        context = self.browser.new_context(base_url=self.product.url, viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.goto("/login/")
            log_in(page, username, PASSWORDS[username])
            expect(page.locator("#cc")).to_be_visible()
            state = context.storage_state()
        finally:
            context.close()
        self.product.sessions[username] = state
        return state

    def open(self, username: str | None, path: str = "/callcenter/") -> Screen:
        """The page at ``path`` as ``username`` (None: nobody logged in); the Call Center screen once its live
        channel is up and, for an agent, Logged in (the state every phone button depends on)."""
        screen = Screen(self.context(username).new_page())
        self.opened.append(screen)
        screen.page.goto(path)
        if username is not None and path.startswith("/callcenter/"):
            expect(screen.page.locator("#cc-live")).to_have_attribute("data-state", "live")
            if username in EXTENSIONS:
                expect(screen.page.locator("#cc-status-data")).to_have_attribute("data-logged-in", "1")
        return screen

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def screens(browser: Browser, product: Product) -> Iterator[Screens]:
    opened = Screens(browser, product)
    try:
        yield opened
        errors = [error for screen in opened.opened for error in screen.errors]
        assert not errors, "the pages reported errors:\n" + "\n".join(errors)
    finally:
        opened.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS

