"""The Call Center screen in a real browser against the real product (issue 5, item 6; SPEC S-2.6/2.7, S-3, S-4, S-7).

One `callcenter demo --no-calls` runs for the module (tests/e2e/conftest.py); each test places its own calls through the
simulated PBX's AMI and waits on state (the page, the PBX's events, the CRM's rows), never on time. Every test uses
callers of its own (a fresh unknown number, or a demo contact no other test calls), so the tests do not depend on each
other's calls or on their order; a test that changes a setting others rely on puts it back.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Locator, expect

from callcenter import numbers
from callcenter.crm import demo
from tests.e2e.conftest import CONTACTS, Product, Screen, Screens, log_in
from tests.test_demo_product import until

pytestmark = pytest.mark.e2e

_unknown = itertools.count(1)
# Demo contacts (number as the PBX sends it, the contact as the screen names it); each test calls its own.
HELEN = ("2109876543", "Helen Carter (Aegean Logistics Ltd)")  # stored as "0030 210 987 6543"
MARIA = ("2107654321", "Μαρία Κωνσταντίνου (Ελαιουργική Κρήτης Α.Ε.)")  # stored as "210-7654321"
GIORGOS = ("2101234567", "Γιώργος Παπαδόπουλος")  # stored as "210 123 4567"
FULL_CONTACTS = [spec for spec in demo.demo_contacts(CONTACTS) if len(spec.phones) == 4]
XSS = "<img src=x onerror=alert(1)>"


def unknown_number() -> str:
    """A caller no demo contact has and no other test uses."""
    return f"2109990{next(_unknown):03d}"


def digits(text: str) -> str:
    return numbers.digits_only(text)


def incoming(product: Product, screen: Screen, number: str, *, to: str = "100", name: str = "",
             state: str = "ringing") -> Locator:
    """Ring ``to`` from ``number`` and return the call's row once the screen shows it ringing; with
    ``state="ended"`` the caller then hangs up (a missed call) and the row is returned once it shows that."""
    product.ami.ring(number, to, name=name)
    row = screen.row(number)
    expect(row).to_have_attribute("data-state", "ringing")
    if state == "ended":
        product.ami.caller_hangs_up(number)
        expect(row).to_have_attribute("data-state", "ended")
        until(lambda: not any(c.get("CallerIDNum") == number for c in product.ami.channels()),
              f"the PBX to be done with the call from {number}")
        screen.quiet()
    return row


def select_call(screen: Screen, row: Locator) -> str:
    """Click a row; its id once its details are shown."""
    call_id = row.get_attribute("data-call")
    assert call_id
    row.locator("td.when").click()
    expect(screen.page.locator("#cc-details-data")).to_have_attribute("data-call", call_id)
    screen.quiet()
    return call_id


def phones_of(product: Product, email: str) -> dict[int, str]:
    return dict(product.db.rows(
        "SELECT p.slot, p.number FROM contacts_contactphone p JOIN contacts_contact c ON c.id = p.contact_id "
        "WHERE c.email = ? ORDER BY p.slot", email))


@contextmanager
def incoming_calls_without_activity(screens: Screens) -> Iterator[None]:
    """Carol clears S-3.4 (auto-create activity from incoming call) for the block, then sets it back."""
    settings = screens.open("carol", "/settings/call-center/")
    page = settings.page
    field = page.locator("#id_incoming_activity_type")
    before = field.input_value()
    field.select_option("")
    page.locator("main form button[type=submit]").click()
    expect(page.locator(".messages .success")).to_have_text("Call center settings saved.")
    try:
        yield
    finally:
        page.goto("/settings/call-center/")
        page.locator("#id_incoming_activity_type").select_option(before)
        page.locator("main form button[type=submit]").click()
        expect(page.locator(".messages .success")).to_have_text("Call center settings saved.")


# ---- logging in -------------------------------------------------------------------------------------------------


def test_login_refuses_a_wrong_password_then_opens_the_call_center_screen(screens: Screens) -> None:
    page = screens.open(None, "/callcenter/").page
    expect(page).to_have_url(re.compile(r"/login/\?next=/callcenter/$"))
    log_in(page, "alice", "not-her-password")
    expect(page.locator("main p.error")).to_have_text("Your username and password didn't match. Please try again.")
    expect(page.locator("#cc")).to_have_count(0)
    log_in(page, "alice", "demo-alice")
    expect(page).to_have_url(re.compile(r"/callcenter/$"))
    expect(page.locator(".topbar .who")).to_have_text("Alice Agent")
    expect(page.locator("#cc-live")).to_have_attribute("data-state", "live")
    expect(page.locator("#cc-logged-in")).to_be_checked()


# ---- notifications (S-4.19, S-2.6/2.7) ----------------------------------------------------------------------------


def test_an_incoming_call_pops_within_one_second_of_ringing(
    product: Product, screens: Screens, artifacts: Path
) -> None:
    screen = screens.open("alice")
    page = screen.page
    number, contact = HELEN
    ring = product.ami.ring(number, "100")
    pop = page.locator(".pop").filter(has=page.locator(".pop-contact", has_text=contact))
    expect(pop).to_be_visible()
    page.wait_for_function("(name) => window.__e2ePops.some((p) => p.contact === name && p.painted)", arg=contact)
    shown = next(p for p in screen.pops() if p["contact"] == contact)
    rang = float(product.ami.ringing_event(ring)["Timestamp"])
    painted = shown["painted"] / 1000
    # From the moment the test told the PBX to ring (before the PBX's own ring, at `rang`) to the window's first frame.
    assert painted - ring.sent_at < 1.0, (
        f"the pop came {painted - ring.sent_at:.3f} s after the ring was asked for "
        f"({painted - rang:.3f} s after the PBX rang the phone)")
    expect(pop.locator(".pop-number")).to_have_text(numbers.display(number, "GR"))
    expect(pop.locator("button.answer")).to_be_visible()
    row = screen.row(number)
    expect(row).to_have_attribute("data-state", "ringing")
    select_call(screen, row)
    expect(page.locator("#cc-number")).to_have_value(number)  # S-4.9: selecting a call fills its number in
    expect(page.locator("#cc-answer")).to_be_enabled()
    expect(pop).to_be_visible()  # still there (10 s) for the picture
    page.screenshot(path=artifacts / "popped-call.png")


def test_the_pop_shows_number_and_contact_and_goes_after_the_notification_seconds(
    product: Product, screens: Screens
) -> None:
    options = screens.open("bob", "/resources/me/options/").page
    options.locator("#id_notification_seconds").fill("2")
    options.locator("main form button[type=submit]").click()
    expect(options.locator(".messages .success")).to_have_text("Call center options saved.")

    screen = screens.open("bob")
    page = screen.page
    number, contact = MARIA
    product.ami.ring(number, "101")
    pop = page.locator(".pop").filter(has=page.locator(".pop-contact", has_text=contact))
    expect(pop).to_be_visible()
    expect(pop.locator(".pop-number")).to_have_text(numbers.display(number, "GR"))
    assert digits(pop.locator(".pop-number").inner_text()).endswith(number)
    expect(pop.locator(".pop-contact")).to_have_text(contact)
    expect(pop).to_have_count(0)  # gone by itself
    shown = next(p for p in screen.pops() if p["contact"] == contact)
    seconds = (shown["removed"] - shown["added"]) / 1000
    assert 1.9 <= seconds <= 6.0, f"the pop stayed {seconds:.2f} s, not Bob's 2 s (the default is 10)"


# ---- phone control: the buttons reach the PBX (S-4.11 - S-4.13, S-4.6) ------------------------------------------


def test_answer_and_end_call_reach_the_simulated_pbx(product: Product, screens: Screens) -> None:
    screen = screens.open("alice")
    page = screen.page
    number = unknown_number()
    row = incoming(product, screen, number)
    expect(page.locator("#cc-hangup")).to_be_disabled()

    since = product.ami.mark()
    page.locator("#cc-answer").click()
    product.ami.wait_for(lambda m: m.get("Event") == "Newstate" and m.get("ChannelStateDesc") == "Up"
                         and m.get("Channel", "").startswith("PJSIP/100-"), "Alice's phone picked up", since=since)
    expect(row).to_have_attribute("data-state", "up")
    expect(page.locator("#cc-status-data")).to_have_attribute("data-call-answered", "1")
    expect(page.locator("#cc-answer")).to_be_disabled()  # nothing rings any more

    since = product.ami.mark()
    page.locator("#cc-hangup").click()
    product.ami.wait_for(lambda m: m.get("Event") == "Hangup" and m.get("Channel", "").startswith("PJSIP/100-"),
                         "Alice's phone hung up", since=since)
    expect(row).to_have_attribute("data-state", "ended")
    expect(row.locator("td.type .badge")).to_have_text("Incoming")
    expect(page.locator("#cc-hangup")).to_be_disabled()


def test_transfer_rings_bobs_phone_with_the_caller(product: Product, screens: Screens) -> None:
    screen = screens.open("alice")
    page = screen.page
    number = unknown_number()
    row = incoming(product, screen, number)
    page.locator(".pop button.answer").click()  # the notification window's Answer this time
    expect(row).to_have_attribute("data-state", "up")
    expect(page.locator(".pop")).to_have_count(0)

    page.locator("#cc-number").fill("101")
    since = product.ami.mark()
    page.locator("#cc-transfer").click()
    product.ami.wait_for(lambda m: m.get("Event") == "Newstate" and m.get("ChannelStateDesc") == "Ringing"
                         and m.get("Channel", "").startswith("PJSIP/101-") and m.get("ConnectedLineNum") == number,
                         "Bob's phone ringing with the caller", since=since)
    expect(row).to_have_attribute("data-state", "ended")  # Alice's part of the call is over
    until(lambda: product.db.calls_of("bob", f"c.number = '{number}' AND c.ended_at IS NULL"),
          "the transferred call on Bob's row in the CRM")


def test_busy_sets_dnd_on_the_pbx_and_the_switch_shows_what_the_pbx_reports(
    product: Product, screens: Screens
) -> None:
    screen = screens.open("alice")
    page = screen.page
    busy = page.locator("#cc-busy")
    expect(busy).to_have_attribute("aria-checked", "false")
    screen.quiet()
    busy.click()
    until(lambda: product.ami.dnd("100"), "DND on for 100 on the PBX")
    expect(busy).to_have_attribute("aria-checked", "true")
    screen.quiet()  # the switch was swapped in with the new status: click the wired-up one
    busy.click()
    until(lambda: not product.ami.dnd("100"), "DND off for 100 on the PBX")
    expect(busy).to_have_attribute("aria-checked", "false")
    # Set on the phone itself (the PBX, not the screen): the switch follows what the PBX reports.
    product.ami.action("DBPut", Family="DND", Key="100", Val="YES")
    expect(busy).to_have_attribute("aria-checked", "true")


# ---- number and keypad (S-4.9, S-4.10) -----------------------------------------------------------------------------


def test_keypad_digits_back_and_delete_edit_the_number_and_call_and_redial_dial_it(
    product: Product, screens: Screens
) -> None:
    screen = screens.open("alice")
    page = screen.page
    field = page.locator("#cc-number")
    call, redial = page.locator("#cc-call"), page.locator("#cc-redial")
    expect(field).to_have_value("")
    expect(call).to_be_disabled()

    def press(keys: str) -> None:
        for key in keys:
            page.locator(f'.keypad .key[data-key="{key}"]').click()

    number, contact = GIORGOS
    press("99")
    expect(field).to_have_value("99")
    page.locator("#cc-delete").click()
    expect(field).to_have_value("")
    press(number + "8")
    page.locator("#cc-back").click()
    expect(field).to_have_value(number)

    def dialled(since: int) -> None:
        product.ami.wait_for(lambda m: m.get("Event") == "Newexten" and m.get("Application") == "Dial"
                             and m.get("AppData", "").startswith(f"PJSIP/{number}@"),
                             f"the PBX dialling {number}", since=since)

    since = product.ami.mark()
    call.click()
    dialled(since)
    rows = screen.row(number)
    expect(rows).to_have_count(1)
    expect(rows.locator("td.type .badge")).to_have_text("Outgoing")
    expect(rows.locator("td.contact")).to_have_text(contact)
    page.locator("#cc-hangup").click()
    expect(rows).to_have_attribute("data-state", "ended")

    # Redial with the Number field empty: the last number dialled.
    page.locator("#cc-delete").click()
    expect(field).to_have_value("")
    since = product.ami.mark()
    redial.click()
    dialled(since)
    expect(rows).to_have_count(2)
    expect(rows.first.locator("td.type .badge")).to_have_text("Outgoing")
    page.locator("#cc-hangup").click()
    expect(rows.first).to_have_attribute("data-state", "ended")
    assert screen.pops() == []  # notification windows are for incoming calls only


# ---- link to contact (S-4.17) -------------------------------------------------------------------------------------


def _link_dialog_to(screen: Screen, row: Locator, spec: demo.ContactSpec) -> Locator:
    """Open Link to contact for the row's call and press Link on ``spec``'s search result; the dialog."""
    page = screen.page
    select_call(screen, row)
    page.locator("#cc-link").click()
    dialog = page.locator("#cc-dialog")
    expect(page.locator("#cc-link-q")).to_be_visible()
    screen.quiet()  # htmx wires the dialog's search field up only once it has settled
    page.locator("#cc-link-q").fill(digits(spec.phones[0])[-10:])
    result = page.locator("#cc-link-results li").filter(has_text=f"{spec.first_name} {spec.last_name}")
    expect(result).to_have_count(1)
    screen.quiet()
    result.get_by_role("button", name="Link", exact=True).click()
    expect(page.locator("#cc-dialog-title")).to_have_text("All phone slots are full")
    screen.quiet()
    return dialog


def test_link_to_a_contact_with_all_slots_full_stores_the_number_in_the_chosen_slot(
    product: Product, screens: Screens
) -> None:
    spec = FULL_CONTACTS[0]
    before = phones_of(product, spec.email)
    assert len(before) == 4
    screen = screens.open("alice")
    number = unknown_number()
    row = incoming(product, screen, number, state="ended")
    dialog = _link_dialog_to(screen, row, spec)
    expect(dialog.locator("label.slot")).to_have_count(4)
    dialog.locator('input[name="replace_slot"][value="2"]').check()
    dialog.get_by_role("button", name="Replace").click()

    name = f"{spec.first_name} {spec.last_name}"
    expect(screen.flash()).to_contain_text(f"Linked to {name}; the number is saved in phone slot 2.")
    expect(dialog).to_be_hidden()
    expect(row.locator("td.contact")).to_have_text(name)
    assert phones_of(product, spec.email) == {**before, 2: number}


def test_link_to_a_contact_with_all_slots_full_without_storing_the_number(
    product: Product, screens: Screens
) -> None:
    spec = FULL_CONTACTS[1]
    before = phones_of(product, spec.email)
    screen = screens.open("alice")
    number = unknown_number()
    row = incoming(product, screen, number, state="ended")
    dialog = _link_dialog_to(screen, row, spec)
    dialog.get_by_role("button", name="Link without storing the number").click()

    name = f"{spec.first_name} {spec.last_name}"
    expect(screen.flash()).to_contain_text(f"Linked to {name}.")
    expect(dialog).to_be_hidden()
    expect(row.locator("td.contact")).to_have_text(name)
    assert phones_of(product, spec.email) == before


# ---- activities (S-4.18, S-3.6) -----------------------------------------------------------------------------------


def test_create_activity_asks_for_the_type_and_links_the_activity_to_the_call(
    product: Product, screens: Screens
) -> None:
    with incoming_calls_without_activity(screens):
        screen = screens.open("alice")
        page = screen.page
        row = incoming(product, screen, unknown_number(), state="ended")
        expect(row.locator("td.activity")).to_have_text("—")
        select_call(screen, row)
        page.locator("#cc-activity").click()
        dialog = page.locator("#cc-dialog")
        expect(dialog.locator("#cc-dialog-title")).to_have_text("Create activity")
        screen.quiet()
        dialog.locator("#cc-activity-type").select_option(label=demo.SALE_OPPORTUNITY)
        dialog.get_by_role("button", name="Create activity").click()
        expect(screen.flash()).to_contain_text("created.")
        expect(dialog).to_be_hidden()
        expect(row.locator("td.activity")).to_have_text(demo.SALE_OPPORTUNITY)
        expect(page.locator("#cc-activity")).to_be_disabled()


def test_double_click_on_a_call_without_activity_creates_one_of_the_default_type(
    product: Product, screens: Screens
) -> None:
    with incoming_calls_without_activity(screens):
        screen = screens.open("alice")
        row = incoming(product, screen, unknown_number(), state="ended")
        expect(row.locator("td.activity")).to_have_text("—")
        row.locator("td.when").dblclick()
        expect(screen.flash()).to_contain_text("created.")
        expect(row.locator("td.activity")).to_have_text(demo.PHONE_CALL)  # S-3.6: the default type
        expect(screen.page.locator("#cc-dialog")).to_be_hidden()


# ---- caller (S-4.8) -----------------------------------------------------------------------------------------------


def test_update_caller_sets_the_calls_contact_without_storing_the_number(
    product: Product, screens: Screens
) -> None:
    screen = screens.open("alice")
    page = screen.page
    number = unknown_number()
    row = incoming(product, screen, number, state="ended")
    expect(row.locator("td.contact")).to_have_text("—")
    select_call(screen, row)
    helen = "helen.carter@example.com"
    before = phones_of(product, helen)
    page.locator("#cc-caller-q").fill("Carter")
    option = page.locator("#cc-caller-choice option").filter(has_text=HELEN[1])
    expect(option).to_have_count(1)
    page.locator("#cc-caller-choice").select_option(option.get_attribute("value"))
    page.locator("#cc-update").click()
    expect(screen.flash()).to_have_text(f"The call's contact is now {HELEN[1]}.")
    expect(row.locator("td.contact")).to_have_text(HELEN[1])
    expect(page.locator("#cc-link")).to_be_disabled()  # it has its contact now
    assert phones_of(product, helen) == before


# ---- clearing (S-4.15, S-4.16) ------------------------------------------------------------------------------------


def test_clear_selected_and_clear_all_ask_first_and_keep_a_call_in_progress(
    product: Product, screens: Screens
) -> None:
    screen = screens.open("alice")
    page = screen.page
    first, second, ringing = unknown_number(), unknown_number(), unknown_number()
    first_row = incoming(product, screen, first, state="ended")
    second_row = incoming(product, screen, second, state="ended")
    ringing_row = incoming(product, screen, ringing)
    expect(ringing_row.locator("input[name=ids]")).to_be_disabled()
    screen.quiet()  # no refresh of a row can come and untick its box

    first_row.locator("input[name=ids]").check()
    screen.confirm = False
    page.locator("#cc-clear-selected").click()
    assert len(screen.dialogs) == 1 and screen.dialogs[0].startswith("confirm: Clear the selected calls")
    expect(first_row).to_be_visible()  # declined: nothing was sent
    screen.confirm = True
    page.locator("#cc-clear-selected").click()
    expect(screen.flash()).to_have_text("1 call cleared.")
    expect(first_row).to_have_count(0)
    expect(second_row).to_be_visible()

    page.locator("#cc-clear-all").click()
    assert screen.dialogs[-1].startswith("confirm: Clear all your calls")
    expect(screen.flash()).to_contain_text("1 call in progress was left alone.")
    expect(second_row).to_have_count(0)
    expect(ringing_row).to_have_attribute("data-state", "ringing")
    page.reload()
    expect(screen.row(ringing)).to_be_visible()
    expect(screen.row(second)).to_have_count(0)
    expect(screen.row(first)).to_have_count(0)


# ---- the working campaign (S-4.2) ---------------------------------------------------------------------------------


def test_refresh_needs_a_working_campaign_and_the_only_available_one_is_filled_in(
    product: Product, screens: Screens
) -> None:
    today = dt.datetime.now(ZoneInfo("Europe/Athens")).date()
    admin = screens.open("carol", "/admin/campaigns/campaign/add/").page
    admin.locator("#id_campaign_type").select_option(label=demo.CAMPAIGN_TYPE)
    admin.locator("#id_name").fill("E2E second campaign")
    admin.locator("#id_available_from").fill((today - dt.timedelta(days=1)).isoformat())
    admin.locator("#id_available_to").fill((today + dt.timedelta(days=1)).isoformat())
    admin.locator("input[name=_continue]").click()
    expect(admin.locator(".messagelist .success")).to_be_visible()
    change_url = admin.url
    try:
        screen = screens.open("alice")
        page = screen.page
        select = page.locator("#cc-campaign-select")
        expect(select.locator("option")).to_have_count(3)  # "— choose —" and the two available campaigns
        select.select_option("")
        expect(page.locator("#cc-campaign .campaign-warning")).to_have_text(
            "Choose a campaign: the list is refreshed only with one chosen.")
        page.locator("#cc-refresh").click()
        expect(screen.flash()).to_have_text(
            "Choose a campaign first: the list is refreshed only once a campaign is chosen (Campaign, above).")
        expect(page.locator("#cc-flash .flash")).to_have_class(re.compile(r"\bwarning\b"))
    finally:
        admin.goto(change_url)
        admin.locator("#id_active").uncheck()
        admin.locator("input[name=_save]").click()
        expect(admin.locator(".messagelist .success")).to_be_visible()

    # One campaign available again: the screen fills it in for Alice, and Refresh works.
    page.reload()
    expect(page.locator("#cc-campaign-select option:checked")).to_have_text(demo.ACTIVE_CAMPAIGN)
    expect(page.locator("#cc-campaign .campaign-warning")).to_have_count(0)
    number = unknown_number()
    product.ami.ring(number, "100")
    expect(screen.row(number)).to_be_visible()
    with page.expect_response(lambda r: "/callcenter/calls/?" in r.url) as refreshed:
        page.locator("#cc-refresh").click()
    assert refreshed.value.ok and "Choose a campaign" not in refreshed.value.text()
    screen.quiet()
    expect(screen.row(number)).to_be_visible()
    expect(screen.flash()).to_have_count(0)


# ---- who sees what ------------------------------------------------------------------------------------------------


def test_an_agent_sees_only_her_calls_and_the_administrator_sees_everyones(
    product: Product, screens: Screens
) -> None:
    alice, carol = screens.open("alice"), screens.open("carol")
    alices, bobs = unknown_number(), unknown_number()
    product.ami.ring(alices, "100")
    product.ami.ring(bobs, "101")
    expect(carol.row(alices)).to_be_visible()
    expect(carol.row(bobs)).to_be_visible()
    expect(carol.row(alices).locator("td.resource")).to_have_text("Alice Agent")
    expect(carol.row(bobs).locator("td.resource")).to_have_text("Bob Agent")
    expect(alice.row(alices)).to_be_visible()
    expect(alice.row(bobs)).to_have_count(0)
    # A pop for Alice's own call; none on Carol's screen, which shows every call but pops only her own.
    assert [digits(p["number"])[-10:] for p in alice.pops()] == [alices]
    assert carol.pops() == []
    alice.page.reload()
    expect(alice.row(alices)).to_be_visible()
    expect(alice.row(bobs)).to_have_count(0)
    expect(alice.page.locator("#cc-table th", has_text="Resource")).to_have_count(0)
    bobs_id = carol.row(bobs).get_attribute("data-call")
    assert alice.page.request.get(f"/callcenter/calls/{bobs_id}/").status == 404


# ---- markup from the PBX is text ----------------------------------------------------------------------------------


def test_a_caller_name_with_markup_is_shown_as_text(product: Product, screens: Screens) -> None:
    screen = screens.open("alice")
    page = screen.page
    number = unknown_number()
    row = incoming(product, screen, number, name=XSS)
    pop = page.locator(".pop").filter(has=page.locator(".pop-number", has_text=numbers.display(number, "GR")))
    expect(pop.locator(".pop-contact")).to_have_text(XSS)
    expect(row.locator("td.contact")).to_have_text(XSS)
    select_call(screen, row)
    expect(page.locator("#cc-details-data")).to_contain_text(XSS)
    page.reload()
    expect(screen.row(number).locator("td.contact")).to_have_text(XSS)
    select_call(screen, screen.row(number))
    expect(page.locator("#cc-details-data")).to_contain_text(XSS)
    assert page.evaluate("Array.from(document.images).map((image) => image.getAttribute('src'))") == []
    assert screen.dialogs == []


# ---- Greek (S-7) --------------------------------------------------------------------------------------------------


def test_the_greek_screen_uses_the_manuals_labels(product: Product, screens: Screens, artifacts: Path) -> None:
    screen = screens.open("alice")
    page = screen.page
    page.locator("#language").select_option("el")
    expect(page.locator("html")).to_have_attribute("lang", "el")
    expect(page.locator("#cc-live")).to_have_attribute("data-state", "live")
    expect(page.locator(".topbar nav a[aria-current=page]")).to_have_text("Κέντρο κλήσεων")
    for selector, label in [
        ("#cc-answer", "Απάντηση"), ("#cc-hangup", "Τέλος κλήσης"), ("#cc-transfer", "Μεταφορά"),
        ("#cc-busy", "Απασχολημένος"), ("label[for=cc-logged-in]", "Έχει γίνει είσοδος"),
        ("#cc-refresh", "Ανανέωση"), ("#cc-clear-selected", "Καθαρισμός επιλεγμένων"),
        ("#cc-clear-all", "Καθαρισμός όλων"), ("#cc-link", "Σύνδεση με επαφή"),
        ("#cc-activity", "Δημιουργία δραστηριότητας"), ("#cc-back", "Πίσω"), ("#cc-delete", "Διαγραφή"),
        ("#cc-redial", "Επανάκληση"), ("#cc-call", "Κλήση"), ("label[for=cc-from]", "Από ημερομηνία"),
        ("label[for=cc-number]", "Αριθμός"), ("#cc-details-title", "Στοιχεία κλήσης"),
        ("label[for=cc-q]", "Πεδίο αναζήτησης"), ("label[for=cc-campaign-select]", "Καμπάνια"),
        (".toolbar-label", "Ενέργειες"),
    ]:
        expect(page.locator(selector)).to_have_text(label)
    for header in ("Αριθμός", "Επαφή", "Διάρκεια", "Δραστηριότητα"):
        expect(page.locator("#cc-table thead th", has_text=header)).to_have_count(1)
    number = unknown_number()
    row = incoming(product, screen, number)
    expect(row.locator("td.type .badge")).to_have_text("Εισερχόμενη")
    expect(page.locator(".pop .pop-title")).to_have_text("Εισερχόμενη κλήση")
    pop = page.locator(".pop").first
    buttons = [b.bounding_box() for b in pop.locator(".pop-actions button").all()]
    assert len(buttons) >= 2 and len({round(b["y"]) for b in buttons}) == 1, f"the pop's buttons wrap: {buttons}"
    assert pop.locator(".pop-actions button").evaluate_all(
        "(buttons) => buttons.every((b) => b.scrollWidth <= b.clientWidth)"), "a pop button's label is cut"
    box, details = pop.bounding_box(), page.locator("section[aria-labelledby=cc-details-title]").bounding_box()
    assert box["y"] + box["height"] <= details["y"] or box["y"] >= details["y"] + details["height"], (
        "the pop covers the call details")
    select_call(screen, row)
    expect(page.locator("label[for=cc-caller-q]")).to_have_text("Καλών")
    expect(page.locator("#cc-update")).to_have_text("Ενημέρωση")
    page.screenshot(path=artifacts / "greek-screen.png")
