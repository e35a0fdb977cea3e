"""Faults against the real PBX (Asterisk 22 + chan_pjsip, SIPp phones), the real CRM and the real bridge: Asterisk
restarted or killed mid-call, the bridge killed mid-call, the AMI secret changed. Each test ends in the rows a person
expects in the CRM and counts what was lost, duplicated, left open or given a wrong time, against the PBX's own
account: a raw AMI capture with Asterisk's Timestamps (tests/live/faults.py).

Tolerances, each explained where it is used:
- EXACT: a moment the bridge heard from Asterisk (a Newstate Up, a Hangup) is stored as Asterisk stamped it.
- A PBX that dies closes the AMI connection at once (the kernel does it for a killed Asterisk): the bridge knows when
  it went, but for a late read on a loaded machine.
- Where calls end unseen while the bridge is dead, the truth is only known to when the bridge last heard from the
  PBX: the test makes the PBX chatter (a UserEvent every 0.5 s, as a busy PBX does) so that moment is close to the
  bridge's death, and allows for the chatter's period, the bridge's one-second saving of it and a late read.
- No test asserts how long anything took (noticing, reconnecting, reconciling): bench/live_faults.py prints those.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .faults import (
    Chatter,
    CrmLeg,
    FaultBridge,
    agent_channel,
    agent_legs,
    change_ami_secret,
    crm_bridge,
    crm_legs,
    hang_up,
    kill_asterisk,
    live_lists,
    login_refusals,
    open_legs_of,
    restart_now,
    start_asterisk,
    wait_asterisk_booted,
)
from .labs import AmiRecorder, PjsipLab, wait_until
from .stack import WAIT, LiveCrm, settle

GIORGOS = ("00302101234567", "Γιώργος Παπαδόπουλος")
MARIA = ("+302107654321", "Μαρία Κωνσταντίνου")
HELEN = ("00302109876543", "Helen Carter")

# A moment the bridge heard from Asterisk is stored as Asterisk stamped it (microseconds in the CRM's database).
EXACT = 0.01
# The bridge takes "the PBX was alive" from the moment it reads a message: on a loaded machine that read may come a
# little after the PBX wrote it (or was killed right after writing it).
LATE_READ = 2.0
# Chatter period (0.5 s) + the bridge keeps the last-alive moment on disk at most once a second (1 s) + a late chatter
# thread or a late read on a loaded machine (1.5 s): how long before a kill of the bridge its file may say.
SAVED_ALIVE = 3.0
# CoreShowChannels gives a channel's age in whole seconds (Duration HH:MM:SS, cut down), so the start a bridge derives
# from it is up to 1 s after Asterisk's; plus the moment between Asterisk writing the list and the bridge reading it.
AGE_ROUNDING = 1.0 + LATE_READ


@pytest.fixture
def bridge_for(crm: LiveCrm, tmp_path: Path) -> Iterator[Callable[..., FaultBridge]]:
    """start(lab, **asterisk_settings): the real bridge, connected; it can be killed and started again (same settings
    file, port and data directory)."""
    made: list[FaultBridge] = []

    def start(lab: PjsipLab, **asterisk: Any) -> FaultBridge:
        bridge = FaultBridge(tmp_path / f"bridge-{len(made) + 1}", lab, crm, **asterisk)
        made.append(bridge)
        return bridge.start()

    try:
        yield start
    finally:
        for bridge in made:
            bridge.stop()


def _talk(seconds: float) -> None:
    """The people talk a while (or the PBX stays down a while): a scene, not a measurement."""
    time.sleep(max(0.0, seconds))


def _answered_in_crm(crm: LiveCrm, count: int = 1) -> list[CrmLeg]:
    return list(wait_until(lambda: (legs := crm_legs(crm)) and sum(leg.answered_at is not None for leg in legs)
                           >= count and legs, f"{count} answered call(s) in the CRM", timeout=WAIT, interval=0.1,
                           detail=lambda: "\n".join(map(repr, crm_legs(crm)))))


def _leg(crm: LiveCrm, ext: str) -> CrmLeg:
    [leg] = [leg for leg in crm_legs(crm) if leg.extension == ext]
    return leg


def _not_in_a_call(crm: LiveCrm, *exts: str) -> None:
    """The agents' phones show no call (the screen's phone state reads the open legs of the extension)."""
    assert {ext: open_legs_of(crm, ext) for ext in exts} == {ext: 0 for ext in exts}


def _restart_bridge(bridge: FaultBridge, crm: LiveCrm) -> None:
    """Start the bridge again and wait until the CRM has applied its list of the PBX's live calls."""
    started = time.time()
    bridge.start()
    wait_until(lambda: live_lists(crm, since=started), "the CRM to apply the restarted bridge's list of live calls",
               timeout=WAIT, detail=bridge.output)


# ---- the PBX restarts or dies -------------------------------------------------------------------------------------


def test_a_core_restart_ends_alices_and_bobs_calls_when_asterisk_hung_them_up(
        fresh_pbx: PjsipLab, bridge_for: Callable[..., FaultBridge], crm: LiveCrm, tmp_path: Path) -> None:
    pbx = fresh_pbx
    bridge = bridge_for(pbx)
    capture = pbx.recorder(tmp_path / "before-restart.raw")
    pbx.phone("100", "answer", ring=1)
    pbx.phone("101", "answer", ring=1)
    callers = [pbx.call("100", GIORGOS[0], talk=120), pbx.call("101", MARIA[0], talk=120)]
    _answered_in_crm(crm, 2)
    _talk(2)

    restart_now(pbx)  # Asterisk hangs up both calls (BYE to phones and callers), then execs itself again
    for caller in callers:
        caller.wait()
    wait_asterisk_booted(pbx)
    bridge.wait_connected()
    rows = settle(pbx, bridge, crm)
    raw = capture.stop().read_bytes().decode("utf-8", "replace")

    assert sorted(row.seen for row in rows) == sorted([("incoming", *GIORGOS, "alice", True),
                                                       ("incoming", *MARIA, "bob", True)])
    for ext, row in (("100", next(r for r in rows if r.resource == "alice")),
                     ("101", next(r for r in rows if r.resource == "bob"))):
        [truth] = agent_legs(raw, ext)
        leg = _leg(crm, ext)
        # Asterisk reported the Hangups before it closed the AMI: the bridge heard them, nothing to guess.
        assert not leg.reconciled and row.state == "ended"
        assert leg.answered_at is not None and abs(leg.answered_at - truth.answered) < EXACT, (leg, truth)
        assert leg.ended_at is not None and abs(leg.ended_at - truth.ended) < EXACT, (leg, truth)
        assert abs(row.duration - truth.talk) < 1, (row, truth)
    _not_in_a_call(crm, "100", "101")
    assert crm_bridge(crm)[0]

    # The restarted Asterisk numbers its channels from 0 again (PJSIP/100-00000000 ...): a new call is a new row.
    after = pbx.recorder(tmp_path / "after-restart.raw")
    caller = pbx.call("100", HELEN[0], talk=2)
    assert caller.wait() == 0, caller.log()
    rows = settle(pbx, bridge, crm)
    [truth] = agent_legs(after.stop().read_bytes().decode("utf-8", "replace"), "100")
    assert sorted(row.seen for row in rows) == sorted([("incoming", *GIORGOS, "alice", True),
                                                       ("incoming", *MARIA, "bob", True),
                                                       ("incoming", *HELEN, "alice", True)])
    [new] = [row for row in rows if row.number == HELEN[0]]
    assert new.state == "ended" and abs(new.duration - truth.talk) < 1


def test_asterisk_killed_mid_call_ends_alices_call_when_the_pbx_died_not_at_the_reconnect(
        fresh_pbx: PjsipLab, bridge_for: Callable[..., FaultBridge], crm: LiveCrm, tmp_path: Path) -> None:
    pbx = fresh_pbx
    bridge = bridge_for(pbx)
    capture = pbx.recorder(tmp_path / "before-kill.raw")
    pbx.phone("100", "answer", ring=1)
    pbx.call("100", GIORGOS[0], talk=120)
    _answered_in_crm(crm)
    _talk(4)
    killed_at = kill_asterisk(pbx)
    [truth] = agent_legs(capture.stop().read_bytes().decode("utf-8", "replace"), "100")
    assert truth.ended is None  # killed: Asterisk never said the call ended

    wait_until(lambda: bridge.connected() is False, "the bridge to see the PBX link down", timeout=WAIT)
    wait_until(lambda: not crm_bridge(crm)[0], "the CRM to show the bridge without its PBX", timeout=WAIT)
    pbx.stop_phones()  # the phone and the caller lost the call with Asterisk (no BYE will ever come)
    _talk(killed_at + 5 - time.time())  # the PBX stays down about 5 s
    restarted_at = start_asterisk(pbx)
    wait_asterisk_booted(pbx)
    bridge.wait_connected()
    rows = settle(pbx, bridge, crm)

    assert [(row.seen, row.state) for row in rows] == [(("incoming", *GIORGOS, "alice", True), "ended")]
    leg = _leg(crm, "100")
    assert leg.reconciled
    assert leg.answered_at is not None and abs(leg.answered_at - truth.answered) < EXACT, (leg, truth)
    # The call ended when Asterisk died: the kernel closed the AMI connection at that moment, so the bridge knew the
    # PBX alive until then (but for a late read), and not a moment after.
    assert leg.ended_at is not None and killed_at - EXACT <= leg.ended_at <= killed_at + LATE_READ, (leg, killed_at)
    assert leg.ended_at < restarted_at
    assert truth.answered is not None
    assert int(killed_at - truth.answered) <= rows[0].duration <= killed_at + LATE_READ - truth.answered  # ~4 s
    _not_in_a_call(crm, "100")
    assert crm_bridge(crm)[0]


# ---- the bridge dies ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_call_up_while_the_bridge_restarts_stays_one_call_and_gets_its_real_end(
        pbx: PjsipLab, bridge_for: Callable[..., FaultBridge], crm: LiveCrm, tmp_path: Path, sig: int) -> None:
    bridge = bridge_for(pbx)
    capture = pbx.recorder(tmp_path / "call.raw")
    pbx.phone("100", "answer", ring=3)  # a 3 s ring: an answer taken for the call's start would show in the talk time
    caller = pbx.call("100", GIORGOS[0], talk=120)
    _answered_in_crm(crm)

    bridge.kill(sig)
    _restart_bridge(bridge, crm)
    rows = crm.calls()
    assert [(row.seen, row.state) for row in rows] == [(("incoming", *GIORGOS, "alice", True), "up")]
    assert open_legs_of(crm, "100") == 1

    _talk(1)
    hang_up(pbx, "PJSIP/trunk-")  # the caller hangs up
    assert caller.wait() == 0, caller.log()
    rows = settle(pbx, bridge, crm)
    [truth] = agent_legs(capture.stop().read_bytes().decode("utf-8", "replace"), "100")
    assert [(row.seen, row.state) for row in rows] == [(("incoming", *GIORGOS, "alice", True), "ended")]
    leg = _leg(crm, "100")
    assert not leg.reconciled
    assert leg.answered_at is not None and abs(leg.answered_at - truth.answered) < EXACT, (leg, truth)
    assert leg.ended_at is not None and abs(leg.ended_at - truth.ended) < EXACT, (leg, truth)
    assert abs(rows[0].duration - truth.talk) < 1, (rows[0], truth)


def test_a_call_that_ends_while_the_bridge_is_dead_is_closed_when_the_bridge_died_not_at_its_restart(
        pbx: PjsipLab, bridge_for: Callable[..., FaultBridge], crm: LiveCrm, tmp_path: Path) -> None:
    bridge = bridge_for(pbx)
    capture = pbx.recorder(tmp_path / "call.raw")
    pbx.phone("100", "answer", ring=1)
    with Chatter(pbx):
        caller = pbx.call("100", MARIA[0], talk=120)
        _answered_in_crm(crm)
        _talk(2)
        killed_at = bridge.kill(signal.SIGKILL)
    hang_up(pbx, "PJSIP/trunk-")
    assert caller.wait() == 0, caller.log()
    pbx.wait_idle()
    _talk(2)  # the bridge stays dead a while after the call ended
    restarted_at = time.time()
    _restart_bridge(bridge, crm)
    rows = settle(pbx, bridge, crm)
    [truth] = agent_legs(capture.stop().read_bytes().decode("utf-8", "replace"), "100")

    assert [(row.seen, row.state) for row in rows] == [(("incoming", *MARIA, "alice", True), "ended")]
    leg = _leg(crm, "100")
    assert leg.reconciled
    assert leg.answered_at is not None and abs(leg.answered_at - truth.answered) < EXACT, (leg, truth)
    # Closed when the dead bridge last knew the PBX alive (kept on disk), not when it came back.
    assert leg.ended_at is not None and killed_at - SAVED_ALIVE <= leg.ended_at <= killed_at + EXACT, (leg, killed_at)
    assert leg.ended_at < restarted_at
    _not_in_a_call(crm, "100")


def test_a_call_answered_while_the_bridge_is_dead_is_stored_once_as_answered_from_the_start_asterisk_reports(
        pbx: PjsipLab, bridge_for: Callable[..., FaultBridge], crm: LiveCrm, tmp_path: Path) -> None:
    bridge = bridge_for(pbx)
    capture = pbx.recorder(tmp_path / "call.raw")
    bridge.kill(signal.SIGKILL)
    pbx.phone("100", "answer", ring=3)
    caller = pbx.call("100", HELEN[0], talk=120)
    agent_channel(pbx, "100", "Up")
    _talk(1)
    _restart_bridge(bridge, crm)
    rows = crm.calls()
    assert [(row.seen, row.state) for row in rows] == [(("incoming", *HELEN, "alice", True), "up")]

    _talk(1)
    hang_up(pbx, "PJSIP/trunk-")
    assert caller.wait() == 0, caller.log()
    rows = settle(pbx, bridge, crm)
    [truth] = agent_legs(capture.stop().read_bytes().decode("utf-8", "replace"), "100")
    assert [(row.seen, row.state) for row in rows] == [(("incoming", *HELEN, "alice", True), "ended")]
    leg = _leg(crm, "100")
    assert not leg.reconciled
    assert leg.rang_at is not None and truth.started - EXACT <= leg.rang_at <= truth.started + AGE_ROUNDING, \
        (leg, truth)
    assert leg.ended_at is not None and abs(leg.ended_at - truth.ended) < EXACT, (leg, truth)
    # CoreShowChannels does not say when a channel was answered, only its age: the talk time counts from the start,
    # so it lies between Asterisk's own talk time (billsec) and the whole call (ringing included).
    assert truth.ended is not None and truth.talk - 1 < rows[0].duration <= truth.ended - truth.started + 1, \
        (rows[0], truth)


# ---- the AMI secret changes ---------------------------------------------------------------------------------------

NEW_SECRET = "rotated-lab-secret-2"


def _secret_changed_and_bridge_restarted(pbx: PjsipLab, bridge: FaultBridge, crm: LiveCrm) -> float:
    """The administrator gives the AMI user a new secret (manager.conf, manager reload): the bridge's session stays
    logged in until the bridge is restarted (an upgrade, a reboot), then its logins are refused. Returns when the
    bridge was stopped, once the CRM shows why it cannot log in."""
    change_ami_secret(pbx, NEW_SECRET)
    stopped_at = bridge.kill(signal.SIGTERM)
    bridge.launch()
    wait_until(lambda: "login refused" in crm_bridge(crm)[1], "the CRM to show why the bridge cannot log in",
               timeout=WAIT, detail=bridge.output)
    return stopped_at


def _refusals(capture: AmiRecorder, user: str, count: int) -> list[float]:
    wait_until(lambda: len(login_refusals(capture.text(), user)) >= count, f"{count} refused logins", timeout=WAIT)
    return login_refusals(capture.text(), user)


def test_a_changed_ami_secret_is_reported_clearly_retried_with_back_off_and_the_right_secret_reconnects(
        fresh_pbx: PjsipLab, bridge_for: Callable[..., FaultBridge], crm: LiveCrm, tmp_path: Path) -> None:
    pbx = fresh_pbx
    old_secret = pbx.ami_secret
    bridge = bridge_for(pbx)
    capture = pbx.recorder(tmp_path / "ami-all.raw")
    _secret_changed_and_bridge_restarted(pbx, bridge, crm)

    connected, detail = crm_bridge(crm)
    assert not connected
    assert "'crm'" in detail and "check username/secret" in detail, detail
    assert bridge.connected() is False
    assert "AMI login refused for user 'crm'" in bridge.errors()

    # Meanwhile Bob answers a call.
    pbx.phone("101", "answer", ring=2)
    bob_caller = pbx.call("101", MARIA[0], talk=120)
    agent_channel(pbx, "101", "Up")

    # It keeps trying, with back-off: after its n-th refusal it waits at least 0.5 * 2**(n-1) s (1 s doubling, times
    # a jitter of 0.5-1), so n attempts take at least 0.5 * (2**(n-1) - 1) s. A slow machine only makes fewer.
    _refusals(capture, pbx.ami_user, 3)
    _talk(2)
    refusals = login_refusals(capture.text(), pbx.ami_user)
    window = refusals[-1] - refusals[0]
    assert len(refusals) <= 1 + math.log2(2 * window + 1) + 1, (len(refusals), window)  # +1: Asterisk's stamps

    bridge.kill(signal.SIGTERM)
    bridge.set_secret(NEW_SECRET)
    _restart_bridge(bridge, crm)
    assert crm_bridge(crm)[0]
    output = bridge.output()
    assert NEW_SECRET not in output and old_secret not in output  # never logged

    hang_up(pbx, "PJSIP/trunk-")
    assert bob_caller.wait() == 0, bob_caller.log()
    rows = settle(pbx, bridge, crm)
    [truth] = agent_legs(capture.stop().read_bytes().decode("utf-8", "replace"), "101")
    # Bob's call was answered while the bridge could not log in: one row, from the start Asterisk reports.
    assert [(row.seen, row.state) for row in rows] == [(("incoming", *MARIA, "bob", True), "ended")]
    bob = _leg(crm, "101")
    assert not bob.reconciled
    assert bob.rang_at is not None and truth.started - EXACT <= bob.rang_at <= truth.started + AGE_ROUNDING
    assert bob.ended_at is not None and abs(bob.ended_at - truth.ended) < EXACT, (bob, truth)
    _not_in_a_call(crm, "101")


def test_a_call_that_ends_while_the_bridge_cannot_log_in_is_closed_when_the_bridge_last_knew_the_calls(
        fresh_pbx: PjsipLab, bridge_for: Callable[..., FaultBridge], crm: LiveCrm, tmp_path: Path) -> None:
    pbx = fresh_pbx
    bridge = bridge_for(pbx)
    capture = pbx.recorder(tmp_path / "ami-all.raw")
    pbx.phone("100", "answer", ring=1)
    caller = pbx.call("100", GIORGOS[0], talk=120)
    _answered_in_crm(crm)
    stopped_at = _secret_changed_and_bridge_restarted(pbx, bridge, crm)
    hang_up(pbx, "PJSIP/trunk-")  # Alice's caller hangs up while the bridge cannot log in
    assert caller.wait() == 0, caller.log()
    refusals = _refusals(capture, pbx.ami_user, 3)

    bridge.kill(signal.SIGTERM)
    bridge.set_secret(NEW_SECRET)
    _restart_bridge(bridge, crm)
    rows = settle(pbx, bridge, crm)
    [truth] = agent_legs(capture.stop().read_bytes().decode("utf-8", "replace"), "100")
    assert [(row.seen, row.state) for row in rows] == [(("incoming", *GIORGOS, "alice", True), "ended")]
    alice = _leg(crm, "100")
    assert alice.reconciled
    assert alice.answered_at is not None and abs(alice.answered_at - truth.answered) < EXACT
    # Closed when the bridge last knew the PBX's calls (it was stopped then, and said so on disk), not when a refused
    # login last told it the PBX was up; the PBX ended it in between (truth.ended).
    assert alice.ended_at is not None and stopped_at - EXACT <= alice.ended_at <= stopped_at + LATE_READ, \
        (alice, stopped_at, truth, refusals)
    _not_in_a_call(crm, "100")
