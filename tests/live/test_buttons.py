"""Every button of the Call Center screen (S-4.6, S-4.10-4.13) against a real Asterisk 22, through the real CRM.

The agent logs in through the CRM's login form and presses the buttons as the screen does: the post its htmx makes
(the phone form's fields with the CSRF token, HX-Request), read back as the flash message the screen would show. The
CRM sends the signed command to the real bridge at the resource's service address and port (S-2.2/2.3, set here to
where the test's bridge listens), the bridge acts on the PBX, and each test checks the PBX's own state (channels,
AstDB, device state, what the SIPp phones received) and the CRM's rows.

Labs: the PJSIP lab (SIPp phones 100 Alice, 101 Bob, the PSTN far end) with this module's own configs (``pbx`` is
overridden below), and the Local-channel lab (profile "lab": phones are Local/10x@phones).

The shipped PJSIP lab lacks what these tests need, so ``_lab_configs`` writes the lab's configs with:
- pjsip.conf ``send_connected_line=no`` on the agents' endpoints: the SIPp phone scenarios cannot handle Asterisk's
  connected-line re-INVITEs (the scenario aborts on the "unexpected" INVITE and the phone is no longer in the call;
  a click-to-dial sends one to the agent's phone as soon as the far end answers);
- features.conf ``[featuremap] atxfer => *2`` (AMI Atxfer runs the attended-transfer feature) and ``[general]
  transferannouncesound =`` (the feature first plays ``pbx-transfer`` to the transferer; the lab has no sounds, and
  a sound that cannot be played aborts the transfer: "Unable to acquire target extension").
"""

from __future__ import annotations

import html
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import labs
from .conftest import RING_TIMEOUT_S, _one_test, running_lab
from .labs import LocalLab, Message, PjsipLab, wait_until
from .stack import WAIT, LiveBridge, LiveCrm, settle

GIORGOS = ("00302101234567", "Γιώργος Παπαδόπουλος")
MARIA = ("+302107654321", "Μαρία Κωνσταντίνου")
HELEN_NUMBER, HELEN = "2109876543", "Helen Carter"  # the CRM has her as 00302109876543
PASSWORDS = {"alice": "demo-alice", "bob": "demo-bob", "carol": "demo-carol"}  # crm/demo.py LOGINS

# ---- the screen ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flash:
    """The message the screen shows after a button: its level (success, error ...) and text."""

    level: str
    text: str


_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_FLASH = re.compile(r'<p class="flash (\w+)"><span class="text">(.*?)</span>', re.S)
_DATA = re.compile(r'data-([a-z-]+)="([^"]*)"')
_BUSY = re.compile(r'id="cc-busy"[^>]*aria-checked="(true|false)"', re.S)


class Screen:
    """One agent's Call Center screen over real HTTP (httpx, the session cookie and CSRF token of a real login)."""

    PATHS = {"call": "dial", "redial": "redial", "answer": "answer", "end call": "hangup", "transfer": "transfer",
             "busy": "busy"}

    def __init__(self, crm: LiveCrm, username: str) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{crm.port}", timeout=60, trust_env=False,
                                 headers={"Accept-Language": "en"})
        login = self.http.get("/login/")
        reply = self.http.post("/login/", data={"username": username, "password": PASSWORDS[username],
                                                "csrfmiddlewaretoken": _token(login.text)})
        assert reply.status_code == 302, f"the CRM refused {username}'s login: {reply.status_code}"
        page = self.http.get("/callcenter/")
        assert page.status_code == 200, page.status_code
        self.token = _token(page.text)

    def press(self, button: str, *, number: str = "", call: int | None = None) -> Flash:
        """``button`` (Call, Redial, Answer, End call, Transfer) as the screen posts it: the phone form's fields."""
        return self._post(self.PATHS[button.lower()], {"number": number, "call": "" if call is None else str(call)})

    def busy(self, on: bool) -> Flash:
        """The Busy switch (its own form: busy=on|off)."""
        return self._post("busy", {"busy": "on" if on else "off"})

    def _post(self, path: str, fields: dict[str, str]) -> Flash:
        reply = self.http.post(f"/callcenter/{path}/", data={"csrfmiddlewaretoken": self.token, **fields},
                               headers={"HX-Request": "true", "X-CSRFToken": self.token})
        assert reply.status_code == 200, f"POST {path}: {reply.status_code} {reply.text[:300]}"
        found = _FLASH.search(reply.text)
        assert found, f"POST {path} answered no message: {reply.text[:300]}"
        return Flash(found.group(1), html.unescape(found.group(2)).strip())

    def status(self) -> dict[str, Any]:
        """What the status bar shows: logged-in, ringing, in-call, call-answered (bools) and busy (the switch)."""
        text = self.http.get("/callcenter/status/").text
        data: dict[str, Any] = {key: value == "1" for key, value in _DATA.findall(text)
                                if key in ("logged-in", "ringing", "in-call", "call-answered")}
        busy = _BUSY.search(text)
        data["busy"] = busy is not None and busy.group(1) == "true"
        return data

    def wait(self, what: str, **wanted: Any) -> dict[str, Any]:
        """The status once every ``key=value`` of ``wanted`` shows (logged_in=True, ringing=True ...)."""
        want = {key.replace("_", "-"): value for key, value in wanted.items()}
        return dict(wait_until(lambda: (now := self.status()) and all(now.get(k) == v for k, v in want.items())
                               and now, what, timeout=WAIT, interval=0.2, detail=lambda: repr(self.status())))

    def close(self) -> None:
        self.http.close()


def _token(text: str) -> str:
    found = _CSRF.search(text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def _point_resources_at(crm: LiveCrm, bridge: LiveBridge) -> None:
    """S-2.1-2.5 for every resource: Active, the service address/port where the test's bridge listens, the internal
    address/port where the CRM listens (what an administrator sets in Call center options)."""
    db = sqlite3.connect(crm.database, timeout=30)
    try:
        with db:
            db.execute("UPDATE resources_resource SET cc_active = 1, service_address = '127.0.0.1', service_port = ?,"
                       " internal_address = '127.0.0.1', internal_port = ?", (bridge.port, crm.port))
    finally:
        db.close()


@pytest.fixture
def alice(crm: LiveCrm) -> Iterator[Callable[[LiveBridge], Screen]]:
    """alice(bridge): Alice logged in, her resource pointed at ``bridge``, her screen showing Logged in."""
    opened: list[Screen] = []

    def open_screen(bridge: LiveBridge) -> Screen:
        _point_resources_at(crm, bridge)
        screen = Screen(crm, "alice")
        opened.append(screen)
        screen.wait("Alice's screen to show Logged in", logged_in=True)
        return screen

    yield open_screen
    for screen in opened:
        screen.close()


# ---- the PBX's side ----------------------------------------------------------------------------------------------


def _channel(lab: PjsipLab | LocalLab, prefix: str, state: str = "Up") -> str:
    """The name of the first channel starting with ``prefix`` once it is in ``state``."""
    return lab.wait_channel(prefix, state, timeout=WAIT)


def _talk(seconds: float) -> None:
    """The people talk a while (so that a talk time is at least a second): a scene, not a measurement."""
    time.sleep(seconds)


def _getvar(lab: PjsipLab | LocalLab, variable: str) -> str:
    reply = lab.ami.action("Getvar", Variable=variable)
    assert reply.get("Response") == "Success", reply
    return reply.get("Value", "")


def _hint(lab: PjsipLab | LocalLab, ext: str) -> int:
    """The hint ext@ext-local's state: 0 idle, 1 in use, 2 busy, 8 ringing (+ combinations)."""
    reply = lab.ami.action("ExtensionState", Exten=ext, Context="ext-local")
    assert reply.get("Response") == "Success", reply
    return int(reply.get("Status", "-1"))


class Events:
    """An AMI session of the test's own with events on, read afterwards (the socket keeps them meanwhile)."""

    def __init__(self, lab: PjsipLab | LocalLab) -> None:
        self.ami = labs.Ami(lab.ami_port, user=lab.ami_user, secret=lab.ami_secret, events=True)

    def drain(self) -> list[Message]:
        got: list[Message] = []
        try:
            while True:
                got.append(self.ami.read(timeout=2))
        except (TimeoutError, OSError):
            pass
        self.ami.close()
        return [message for message in got if "Event" in message]


def _lines(events: list[Message], *names: str) -> str:
    return "\n".join(f"{e['Event']} {e.get('Channel', '')} {e.get('ChannelStateDesc', '')} {e.get('Exten', '')}"
                     for e in events if e["Event"] in names)


def _ended(lab: PjsipLab | LocalLab) -> None:
    """The PBX's own account: nothing left."""
    assert not lab.channels(), lab.ami.command("core show channels")


def _call_times(crm: LiveCrm, username: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{crm.database}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT c.* FROM calls_call c JOIN resources_resource r ON r.id = c.resource_id"
                          " JOIN auth_user u ON u.id = r.user_id WHERE u.username = ? ORDER BY c.started_at",
                          (username,)).fetchall()
    finally:
        db.close()


# ---- the PJSIP lab of this module -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def buttons_lab(_labs_here: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PjsipLab]:
    configs = labs.pjsip_transfer_configs(tmp_path_factory.mktemp("buttons-lab-configs") / "configs")
    with running_lab(PjsipLab(tmp_path_factory.mktemp("buttons-lab"), config_dir=configs)) as lab:
        yield lab


@pytest.fixture
def pbx(buttons_lab: PjsipLab, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PjsipLab]:
    """This module's ``pbx`` (and so ``bridge``'s): the PJSIP lab with this module's configs, cleared per test as
    conftest's ``pbx`` is."""
    with _one_test(buttons_lab, request, tmp_path):
        yield buttons_lab


# ---- PJSIP lab: Call, Redial, End call -----------------------------------------------------------------------------


def test_call_rings_alices_phone_then_the_far_end_and_end_call_hangs_up(
        pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm, alice: Callable[[LiveBridge], Screen]) -> None:
    screen = alice(bridge)
    phone = pbx.phone("100", "answer", ring=1)
    far_end = pbx.pstn("answer", ring=1)
    events = Events(pbx)

    flash = screen.press("Call", number=HELEN_NUMBER)
    assert flash.level == "success", flash
    agent = _channel(pbx, "PJSIP/100-")
    _channel(pbx, "PJSIP/trunk-")  # the far end answered
    screen.wait("the screen to show Alice in an answered call", in_call=True, call_answered=True)
    _talk(2)

    flash = screen.press("End call")
    assert flash.level == "success", flash
    pbx.wait_idle()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", HELEN_NUMBER, HELEN, "alice", True)]
    assert rows[0].duration > 0 and rows[0].direction == "out" and rows[0].state == "ended"
    assert "INVITE sip:100@" in phone.messages()  # her phone rang first ...
    assert f"INVITE sip:{HELEN_NUMBER}@" in far_end.messages()  # ... then the number dialled
    assert "BYE sip:" in phone.messages()  # End call hung up her phone
    timeline = events.drain()
    order = [(e["Event"], e.get("Channel", "").split("-")[0]) for e in timeline
             if e["Event"] in ("Newchannel", "Newstate", "Hangup")]
    assert order.index(("Newstate", "PJSIP/100")) < order.index(("Newchannel", "PJSIP/trunk")), \
        _lines(timeline, "Newchannel", "Newstate", "Hangup")
    [hangup] = [e for e in timeline if e["Event"] == "Hangup" and e.get("Channel") == agent]
    assert hangup.get("Cause") == "16", hangup  # hung up by the command (Hangup Cause 16), not by the far end
    _ended(pbx)


def test_redial_calls_the_last_number_dialled_again(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm,
                                                   alice: Callable[[LiveBridge], Screen]) -> None:
    screen = alice(bridge)
    pbx.phone("100", "answer", ring=1)
    pbx.pstn("answer", ring=1, talk=2)  # the far end hangs up 2 s after answering
    assert screen.press("Call", number=HELEN_NUMBER).level == "success"
    rows = settle(pbx, bridge, crm)
    assert len(rows) == 1, rows
    screen.wait("the screen to show Alice idle", in_call=False, ringing=False)

    flash = screen.press("Redial")
    assert flash.level == "success", flash
    assert HELEN_NUMBER in flash.text, flash
    _channel(pbx, "PJSIP/trunk-")
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", HELEN_NUMBER, HELEN, "alice", True)] * 2
    assert all(row.duration > 0 for row in rows)
    assert rows[0].pbx_call_id != rows[1].pbx_call_id
    _ended(pbx)


def test_end_call_hangs_up_an_answered_inbound_call(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm,
                                                   alice: Callable[[LiveBridge], Screen]) -> None:
    screen = alice(bridge)
    pbx.phone("100", "answer", ring=1)
    caller = pbx.call("100", GIORGOS[0], talk=120)
    _channel(pbx, "PJSIP/100-")
    screen.wait("the screen to show Alice's call answered", in_call=True, call_answered=True)
    _talk(1)
    flash = screen.press("End call")
    assert flash.level == "success", flash
    caller.wait()
    assert "BYE sip:" in caller.messages()  # the caller was hung up on, long before its 120 s
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True)]
    assert rows[0].duration > 0
    _ended(pbx)


def test_end_call_with_no_call_is_refused_with_a_reason(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm,
                                                       alice: Callable[[LiveBridge], Screen]) -> None:
    screen = alice(bridge)
    flash = screen.press("End call")
    assert flash == Flash("error", "There is no call in progress."), flash
    _ended(pbx)


# ---- PJSIP lab: Transfer --------------------------------------------------------------------------------------------


def test_transfer_moves_an_answered_inbound_call_to_bob_with_the_original_caller(
        pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm, alice: Callable[[LiveBridge], Screen]) -> None:
    screen = alice(bridge)
    pbx.phone("100", "answer", ring=1)
    bob = pbx.phone("101", "answer", ring=1, talk=3)  # Bob hangs up 3 s after answering
    caller = pbx.call("100", GIORGOS[0], talk=120)
    _channel(pbx, "PJSIP/100-")
    screen.wait("the screen to show Alice's call answered", in_call=True, call_answered=True)
    _talk(2)

    flash = screen.press("Transfer", number="101")
    assert flash.level == "success", flash
    assert caller.wait() == 0, caller.log()  # Bob took the caller, then hung up
    assert "INVITE sip:101@" in bob.messages()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True), ("incoming", *GIORGOS, "bob", True)]
    alice_row, bob_row = rows
    assert (alice_row.transferred_to, bob_row.transferred_from) == ("101", "100")
    assert alice_row.duration > 0 and bob_row.duration > 0
    _ended(pbx)


def test_transfer_to_an_outside_number_is_refused(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm,
                                                 alice: Callable[[LiveBridge], Screen]) -> None:
    screen = alice(bridge)
    flash = screen.press("Transfer", number=HELEN_NUMBER)
    assert flash.level == "error" and "internal number" in flash.text, flash
    _ended(pbx)


# ---- PJSIP lab: Busy -----------------------------------------------------------------------------------------------


def test_busy_on_sets_dnd_on_the_pbx_callers_get_busy_and_busy_off_clears_it(
        pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm, alice: Callable[[LiveBridge], Screen]) -> None:
    screen = alice(bridge)
    phone = pbx.phone("100", "answer", ring=1)
    wait_until(lambda: crm.busy("alice") is False, "the bridge to report Alice available at start")

    flash = screen.busy(True)
    assert flash.level == "success", flash
    assert pbx.ami.db_get("DND", "100") == "YES"
    assert _getvar(pbx, "DEVICE_STATE(Custom:DND100)") == "BUSY"
    wait_until(lambda: crm.busy("alice") is True, "the CRM to show Alice busy")
    screen.wait("the Busy switch to show on", busy=True)
    assert crm.busy("bob") is not True
    caller = pbx.call("100", GIORGOS[0])
    assert caller.wait() != 0
    assert "486 Busy Here" in caller.messages()
    assert "INVITE sip:" not in phone.messages()
    assert settle(pbx, bridge, crm) == []  # her phone never rang

    flash = screen.busy(False)
    assert flash.level == "success", flash
    assert pbx.ami.db_get("DND", "100") is None
    assert _getvar(pbx, "DEVICE_STATE(Custom:DND100)") == "NOT_INUSE"
    wait_until(lambda: crm.busy("alice") is False, "the CRM to show Alice available again")
    screen.wait("the Busy switch to show off", busy=False)
    assert _hint(pbx, "100") == 0  # the hint PJSIP/100&Custom:DND100: idle
    caller = pbx.call("100", GIORGOS[0], talk=1)
    assert caller.wait() == 0, caller.log()  # her phone rings and answers again
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True)]
    _ended(pbx)


def test_a_call_in_progress_is_not_reported_as_busy(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm,
                                                    alice: Callable[[LiveBridge], Screen]) -> None:
    """The hint PJSIP/100&Custom:DND100 goes Busy in every call of 100's: that is no DND, AstDB says so."""
    screen = alice(bridge)
    wait_until(lambda: crm.busy("alice") is False, "the bridge to report Alice available at start")
    pbx.phone("100", "answer", ring=1)
    caller = pbx.call("100", GIORGOS[0], talk=120)
    _channel(pbx, "PJSIP/100-")
    wait_until(lambda: _hint(pbx, "100") & 3, "the hint 100@ext-local to show the phone in use or busy")
    screen.wait("the screen to show Alice's call answered", in_call=True, call_answered=True)
    flags, switch = set(), set()
    for _ in range(15):  # while she talks: the CRM's flag and the screen's switch, looked at again and again
        flags.add(crm.busy("alice"))
        switch.add(screen.status()["busy"])
        time.sleep(0.2)
    assert (flags, switch) == ({False}, {False}), f"Alice shown busy during a call (hint state {_hint(pbx, '100')})"
    assert pbx.ami.db_get("DND", "100") is None
    pbx.ami.action("Hangup", Channel=_channel(pbx, "PJSIP/100-"))
    caller.wait()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True)]
    assert crm.busy("alice") is False
    _ended(pbx)


# ---- PJSIP lab: Answer ---------------------------------------------------------------------------------------------


def test_answer_picks_up_a_phone_that_accepts_remote_answer(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm,
                                                           alice: Callable[[LiveBridge], Screen]) -> None:
    screen = alice(bridge)
    phone = pbx.phone("100", "notify")  # rings until a NOTIFY Event: talk
    caller = pbx.call("100", MARIA[0], talk=3)
    _channel(pbx, "PJSIP/100-", "Ringing")
    screen.wait("the screen to show Alice's phone ringing", ringing=True)

    flash = screen.press("Answer")
    assert flash.level == "success", flash
    assert caller.wait() == 0, caller.log()  # answered, talked, hung up
    assert re.search(r"NOTIFY sip:100@.*?Event: talk", phone.messages(), re.S), "no NOTIFY Event: talk reached 100"
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *MARIA, "alice", True)]
    assert rows[0].duration > 0
    _ended(pbx)


def test_answer_with_nothing_ringing_is_refused_with_a_reason(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm,
                                                             alice: Callable[[LiveBridge], Screen]) -> None:
    screen = alice(bridge)
    phone = pbx.phone("100", "notify")
    flash = screen.press("Answer")
    assert flash == Flash("error", "No call is ringing."), flash
    assert "NOTIFY" not in phone.messages()
    _ended(pbx)


# ---- click-to-call by another AMI client (a PBX portal) --------------------------------------------------------


def test_click_to_call_by_another_ami_client_is_alices_outgoing_call(pbx: PjsipLab, bridge: LiveBridge,
                                                                     crm: LiveCrm) -> None:
    pbx.phone("100", "answer", ring=1)
    far_end = pbx.pstn("answer", ring=1, talk=3)
    reply = pbx.ami.action("Originate", Channel="PJSIP/100", Context="from-internal", Exten=HELEN_NUMBER,
                           Priority="1", CallerID="100", Async="true")
    assert reply.get("Response") == "Success", reply
    _channel(pbx, "PJSIP/trunk-")
    rows = settle(pbx, bridge, crm)
    assert f"INVITE sip:{HELEN_NUMBER}@" in far_end.messages()
    assert [row.seen for row in rows] == [("outgoing", HELEN_NUMBER, HELEN, "alice", True)]
    assert rows[0].duration > 0
    _ended(pbx)


def test_click_to_call_by_another_ami_client_on_local_channels_is_alices_outgoing_call(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("100", "answer", ring=1)
    local_pbx.phone("out", "answer", ring=1, talk=3)  # the outside number answers, hangs up 3 s later
    reply = local_pbx.ami.action("Originate", Channel="Local/100@phones", Context="from-internal",
                                 Exten=HELEN_NUMBER, Priority="1", CallerID="100", Async="true")
    assert reply.get("Response") == "Success", reply
    _channel(local_pbx, f"Local/{HELEN_NUMBER}@outside-")
    rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", HELEN_NUMBER, HELEN, "alice", True)]
    assert rows[0].duration > 0
    _ended(local_pbx)


# ---- Local-channel lab: Call, Answer ---------------------------------------------------------------------------


def test_call_on_local_channels_is_an_outgoing_call_to_the_number_dialled(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm,
        alice: Callable[[LiveBridge], Screen]) -> None:
    bridge = start_bridge(local_pbx)
    screen = alice(bridge)
    local_pbx.phone("100", "answer", ring=1)
    local_pbx.phone("out", "answer", ring=1, talk=3)
    flash = screen.press("Call", number=HELEN_NUMBER)
    assert flash.level == "success", flash
    _channel(local_pbx, f"Local/{HELEN_NUMBER}@outside-")
    rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", HELEN_NUMBER, HELEN, "alice", True)]
    assert rows[0].duration > 0 and rows[0].direction == "out"
    _ended(local_pbx)


def test_answer_on_local_channels_is_refused_with_a_reason(local_pbx: LocalLab,
                                                           start_bridge: Callable[..., LiveBridge], crm: LiveCrm,
                                                           alice: Callable[[LiveBridge], Screen]) -> None:
    bridge = start_bridge(local_pbx)
    screen = alice(bridge)
    local_pbx.phone("100", "noanswer")
    assert local_pbx.inbound("100", GIORGOS[0]).get("Response") == "Success"
    screen.wait("the screen to show Alice's phone ringing", ringing=True)

    flash = screen.press("Answer")
    assert flash.level == "error", flash
    assert re.search(r"cannot answer|pick up", flash.text, re.I), flash  # says why, and what to do instead
    _channel(local_pbx, "Local/100@phones-", "Ringing")  # still ringing: nothing was answered
    rows = settle(local_pbx, bridge, crm, timeout=WAIT + RING_TIMEOUT_S)  # rings out
    assert [row.seen for row in rows] == [("missed", *GIORGOS, "alice", False)]
    _ended(local_pbx)


def test_an_attended_transfer_gives_bob_the_original_caller_and_alice_her_talk_time(
        pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> None:
    pbx.phone("100", "answer", ring=1)
    bob = pbx.phone("101", "answer", ring=1)
    caller = pbx.call("100", GIORGOS[0], talk=300)
    alice_channel = _channel(pbx, "PJSIP/100-")
    _talk(2)

    reply = pbx.ami.action("Atxfer", Channel=alice_channel, Exten="101", Context="from-internal")
    assert reply.get("Response") == "Success", reply
    bob_channel = _channel(pbx, "PJSIP/101-")  # Bob answered the consultation
    assert "INVITE sip:101@" in bob.messages()
    _talk(2)
    reply = pbx.ami.action("Hangup", Channel=alice_channel)  # Alice hangs up: the transfer completes
    assert reply.get("Response") == "Success", reply
    wait_until(lambda: not any(c["Channel"] == alice_channel for c in pbx.channels()), "Alice's channel to go")
    assert any(c["Channel"].startswith("PJSIP/trunk-") for c in pbx.channels()), "the caller was lost"
    _talk(2)  # the caller talks with Bob
    pbx.ami.action("Hangup", Channel=bob_channel)
    caller.wait()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True), ("incoming", *GIORGOS, "bob", True)]
    alice_row, bob_row = rows
    assert (alice_row.transferred_to, bob_row.transferred_from) == ("101", "100")
    assert alice_row.pbx_call_id == bob_row.pbx_call_id
    assert alice_row.duration > 0 and bob_row.duration > 0
    [alice_call], [bob_call] = _call_times(crm, "alice"), _call_times(crm, "bob")
    assert alice_call["ended_at"] < bob_call["ended_at"]  # her talk time ends at the transfer, not with the caller
    _ended(pbx)
