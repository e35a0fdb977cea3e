"""The Call Center screen's notifications in a real browser against the real product (SPEC S-2.6, S-3.5, S-3.7,
S-3.10, S-4.19): what the settings that shape them make the agent see.

The product, the browser and the screens are those of tests/e2e/conftest.py (one `callcenter demo --no-calls` for the
module); calls are placed through the simulated PBX's AMI as in test_call_center_screen.py. Settings are changed the
way a user changes them (the administrator's Call center settings page, the agent's own Call center options) and put
back when the test ends.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from playwright.sync_api import Locator, Page, expect

from callcenter import demo_product, numbers
from callcenter.crm import demo
from tests.e2e.conftest import Product, Screens
from tests.e2e.test_call_center_screen import digits, unknown_number
from tests.test_demo_product import until

pytestmark = pytest.mark.e2e

# A page whose tab can be told to be hidden (``window.__e2eHidden = true``), and whose desktop notifications are
# recorded instead of shown: ``Notification`` is a stub with the permission granted that keeps title, body and tag of
# each notification in ``window.__notifications``. Added to the context before the screen is (re)loaded.
HIDDEN_TAB_AND_NOTIFICATIONS = """
(() => {
  window.__e2eHidden = false;
  window.__notifications = [];
  Object.defineProperty(Document.prototype, "hidden", {
    configurable: true, get: () => !!window.__e2eHidden });
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true, get: () => (window.__e2eHidden ? "hidden" : "visible") });
  class RecordedNotification {
    static get permission() { return "granted"; }
    static requestPermission() { return Promise.resolve("granted"); }
    constructor(title, options) {
      const opts = options || {};
      this.title = title;
      this.body = opts.body || "";
      this.tag = opts.tag || "";
      this.closed = false;
      this.onclick = null;
      window.__notifications.push(this);
    }
    close() { this.closed = true; }
  }
  window.Notification = RecordedNotification;
})();
"""


@contextmanager
def ticked(screens: Screens, username: str, url: str, saved: str, **checkboxes: bool) -> Iterator[None]:
    """``username`` sets the check boxes ``#id_<name>`` of the settings form at ``url`` for the block (``saved``: the
    page's success message), then puts each back as it was."""
    page = screens.open(username, url).page
    before = {name: page.locator(f"#id_{name}").is_checked() for name in checkboxes}

    def save(values: dict[str, bool]) -> None:
        page.goto(url)
        for name, value in values.items():
            page.locator(f"#id_{name}").set_checked(value)
        page.locator("main form button[type=submit]").click()
        expect(page.locator(".messages .success")).to_have_text(saved)

    save(checkboxes)
    try:
        yield
    finally:
        save(before)


def call_center_settings(screens: Screens, **checkboxes: bool) -> AbstractContextManager[None]:
    """Carol (an administrator) sets S-3 switches on the Call center settings page for the block."""
    return ticked(screens, "carol", "/settings/call-center/", "Call center settings saved.", **checkboxes)


def own_notify_option(screens: Screens, username: str, notify: bool) -> AbstractContextManager[None]:
    """``username`` sets S-2.6 (Notify on new call) on their own Call center options for the block."""
    return ticked(screens, username, "/resources/me/options/", "Call center options saved.", notify_new_call=notify)


def pop_of(page: Page, number: str) -> Locator:
    """The notification window of the call from ``number`` (shown as the screen shows numbers)."""
    return page.locator(".pop").filter(
        has=page.locator(".pop-number", has_text=numbers.display(number, "GR")))


# ---- S-3.7 create call when answered: the pop comes from the leg ---------------------------------------------------


def test_with_create_call_when_answered_a_group_call_pops_from_the_leg_and_only_the_answering_agent_gets_the_row(
    product: Product, screens: Screens
) -> None:
    with call_center_settings(screens, create_call_when_answered=True):
        alice, bob = screens.open("alice"), screens.open("bob")
        number = unknown_number()
        product.ami.ring(number, demo_product.RING_GROUP)  # rings Alice (100) and Bob (101) together

        alices_pop, bobs_pop = pop_of(alice.page, number), pop_of(bob.page, number)
        expect(alices_pop).to_be_visible()
        expect(bobs_pop).to_be_visible()
        expect(alices_pop.locator(".pop-title")).to_have_text("Incoming call")
        expect(alices_pop.locator("button.answer")).to_be_visible()
        # Ringing, unanswered: stored for nobody, so neither list has the call.
        expect(alice.page.locator("#cc-answer")).to_be_enabled()  # her phone rings (status from the legs)
        alice.quiet()
        expect(alice.row(number)).to_have_count(0)
        expect(bob.row(number)).to_have_count(0)

        bob.quiet()
        since = product.ami.mark()
        clicked = alice.page.evaluate("Date.now()")
        bobs_pop.locator("button.answer").click()
        product.ami.wait_for(lambda m: m.get("Event") == "Newstate" and m.get("ChannelStateDesc") == "Up"
                             and m.get("Channel", "").startswith("PJSIP/101-"), "Bob's phone picked up", since=since)

        expect(bob.row(number)).to_have_attribute("data-state", "up")
        expect(bob.row(number)).to_have_count(1)
        expect(alices_pop).to_have_count(0)  # leg.ended: answered elsewhere
        # ... taken away then, not gone by itself at the end of Alice's notification seconds (10).
        shown = next(p for p in alice.pops() if digits(p["number"]).endswith(number))
        assert clicked <= shown["removed"] < shown["added"] + 9_000, (
            f"Alice's pop went {(shown['removed'] - clicked) / 1000:.2f} s after Bob answered, "
            f"{(shown['removed'] - shown['added']) / 1000:.2f} s after it came")
        expect(alice.page.locator("#cc-answer")).to_be_disabled()
        alice.quiet()
        expect(alice.row(number)).to_have_count(0)
        until(lambda: product.db.calls_of("bob", f"c.number = '{number}'"), "Bob's row of the call in the CRM")
        assert product.db.calls_of("alice", f"c.number = '{number}'") == []
        # One pop each: Bob's row, which follows the leg he answered, did not pop again.
        assert [digits(p["number"])[-10:] for p in alice.pops()] == [number]
        assert [digits(p["number"])[-10:] for p in bob.pops()] == [number]


# ---- S-2.6 notify on new call, per agent ---------------------------------------------------------------------------


def test_an_agent_with_notify_on_new_call_off_gets_the_row_without_a_pop(
    product: Product, screens: Screens
) -> None:
    with own_notify_option(screens, "alice", notify=False):
        alice, bob = screens.open("alice"), screens.open("bob")
        alices, bobs = unknown_number(), unknown_number()
        product.ami.ring(alices, "100")
        expect(alice.row(alices)).to_have_attribute("data-state", "ringing")
        product.ami.ring(bobs, "101")
        expect(pop_of(bob.page, bobs)).to_be_visible()  # Bob's option is on
        expect(bob.row(bobs)).to_have_attribute("data-state", "ringing")
        alice.quiet()
        # At once, not waiting: a pop would stay its 10 s.
        assert alice.page.locator(".pop").count() == 0
        assert alice.pops() == [], f"Alice was notified although her option is off: {alice.pops()}"
        assert [digits(p["number"])[-10:] for p in bob.pops()] == [bobs]


# ---- S-3.10 auto-open activity from incoming call -----------------------------------------------------------------


def test_auto_open_activity_opens_the_activity_created_for_an_incoming_call(
    product: Product, screens: Screens
) -> None:
    with call_center_settings(screens, auto_open_activity=True):
        screen = screens.open("alice")
        page = screen.page
        number = unknown_number()
        with page.context.expect_page() as opened:
            product.ami.ring(number, "100")
        activity = opened.value
        row = screen.row(number)
        expect(row).to_have_attribute("data-state", "ringing")
        expect(row.locator("td.activity")).to_have_text(demo.PHONE_CALL)
        activity.wait_for_load_state()
        expect(activity).to_have_url(re.compile(r"/activities/\d+/$"))
        expect(activity.locator(".activity-detail .eyebrow")).to_contain_text(demo.PHONE_CALL)
        call_link = activity.locator(".activity-detail a[href*='/callcenter/?call=']")
        expect(call_link).to_contain_text(number)
        assert call_link.get_attribute("href").endswith(f"?call={row.get_attribute('data-call')}")
        expect(screen.flash()).to_have_count(0)  # opened, not offered as a link (a blocked window)


# ---- S-3.5 auto-show: a hidden screen raises a desktop notification ----------------------------------------------


def test_auto_show_notifies_on_the_desktop_while_the_screen_is_hidden(
    product: Product, screens: Screens
) -> None:
    with call_center_settings(screens, auto_show_screen=True):
        screen = screens.open("alice")
        page = screen.page
        page.context.add_init_script(HIDDEN_TAB_AND_NOTIFICATIONS)
        page.reload()
        expect(page.locator("#cc-live")).to_have_attribute("data-state", "live")
        expect(page.locator("#cc-status-data")).to_have_attribute("data-logged-in", "1")
        expect(page.locator("#cc-notify-setup")).to_be_hidden()  # permission granted: nothing to ask

        # In view: the screen's own pop, no desktop notification.
        shown = unknown_number()
        product.ami.ring(shown, "100")
        expect(pop_of(page, shown)).to_be_visible()
        screen.quiet()
        assert page.evaluate("window.__notifications.length") == 0

        # Hidden behind another tab: the system notification stands in.
        page.evaluate("window.__e2eHidden = true")
        assert page.evaluate("document.hidden") is True
        number = unknown_number()
        product.ami.ring(number, "100")
        page.wait_for_function("() => window.__notifications.length > 0")
        screen.quiet()
        notices = page.evaluate(
            "window.__notifications.map((n) => ({title: n.title, body: n.body, tag: n.tag}))")
        assert len(notices) == 1, notices
        notice = notices[0]
        assert notice["title"] == "Incoming call"
        assert number in digits(notice["body"]), notice
        call_id = screen.row(number).get_attribute("data-call")
        assert notice["tag"] == f"call-{call_id}", notice
