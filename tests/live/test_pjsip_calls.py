"""Call flows on a real Asterisk 22 with chan_pjsip (../shared/asterisk-pjsip): SIPp plays the agents' phones 100
(Alice), 101 (Bob), 102 (no CRM resource) and the PSTN; the product's real bridge and CRM run as child processes.
Each test ends in the rows a person expects in the CRM's calls table and in the PBX's own state.

Numbers: the callers are demo contacts written differently in the CRM (00302101234567 is Γιώργος Παπαδόπουλος,
+302107654321 Μαρία Κωνσταντίνου, 00302109876543 Helen Carter), so every row also shows the matching.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .labs import PjsipLab, wait_until
from .stack import CallRow, LiveBridge, LiveCrm, settle

GIORGOS = ("00302101234567", "Γιώργος Παπαδόπουλος")
MARIA = ("+302107654321", "Μαρία Κωνσταντίνου")
HELEN = ("00302109876543", "Helen Carter")


def _agent_channel(pbx: PjsipLab, ext: str, state: str = "Up") -> str:
    """The name of agent ``ext``'s channel once it is in ``state`` (PJSIP/100-0000002a)."""
    return pbx.wait_channel(f"PJSIP/{ext}-", state)


def _talk(seconds: float) -> None:
    """The people talk a while (so that a talk time is at least a second): a scene, not a measurement."""
    time.sleep(seconds)


def _ended(pbx: PjsipLab) -> None:
    """The PBX's own account: nothing left (core show channels: 0 active channels)."""
    assert pbx.active_channels() == 0


# ---- inbound -----------------------------------------------------------------------------------------------------


def test_an_answered_inbound_call_is_one_incoming_row_for_alice_with_the_contact(pbx: PjsipLab, bridge: LiveBridge,
                                                                                 crm: LiveCrm) -> None:
    pbx.phone("100", "answer", ring=1)
    caller = pbx.call("100", GIORGOS[0], talk=3)
    assert caller.wait() == 0, caller.log()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True)]
    assert rows[0].duration > 0 and rows[0].state == "ended" and rows[0].extension == "100"
    _ended(pbx)


def test_an_unanswered_inbound_call_is_one_missed_row(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> None:
    phone = pbx.phone("100", "noanswer")
    caller = pbx.call("100", MARIA[0])
    assert caller.wait() != 0  # the PSTN caller gets 480 when the ring timeout passes
    assert "SIP/2.0 480" in caller.messages()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("missed", *MARIA, "alice", False)]
    assert rows[0].duration == 0
    assert "CANCEL sip:" in phone.messages()  # Asterisk gave up ringing the phone
    _ended(pbx)


def test_a_phone_that_answers_busy_leaves_a_missed_row(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> None:
    pbx.phone("101", "busy", ring=1)
    caller = pbx.call("101", HELEN[0])
    assert caller.wait() != 0
    assert "486 Busy Here" in caller.messages()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("missed", *HELEN, "bob", False)]
    assert rows[0].duration == 0
    _ended(pbx)


def test_a_caller_who_hangs_up_while_it_rings_leaves_a_missed_row(pbx: PjsipLab, bridge: LiveBridge,
                                                                  crm: LiveCrm) -> None:
    phone = pbx.phone("100", "noanswer")
    caller = pbx.call("100", GIORGOS[0], scenario="caller-cancel", ring=2)
    assert caller.wait() == 0, caller.log()  # 180, CANCEL, 200, 487
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("missed", *GIORGOS, "alice", False)]
    assert rows[0].duration == 0
    assert "CANCEL sip:" in phone.messages()
    _ended(pbx)


# ---- DND ---------------------------------------------------------------------------------------------------------


def _dnd(pbx: PjsipLab, ext: str, on: bool) -> None:
    """DND as FreePBX sets it (*78 / *79): AstDB DND/<ext> and the device state Custom:DND<ext>."""
    if on:
        pbx.ami.db_put("DND", ext, "YES")
    else:
        pbx.ami.db_del("DND", ext)
    reply = pbx.ami.action("Setvar", Variable=f"DEVICE_STATE(Custom:DND{ext})", Value="BUSY" if on else "NOT_INUSE")
    assert reply.get("Response") == "Success", reply


def test_dnd_on_the_pbx_gives_callers_busy_and_shows_alice_busy(fresh_pbx: PjsipLab, start_bridge: Callable[...,
                                                                LiveBridge], crm: LiveCrm) -> None:
    pbx = fresh_pbx
    bridge = start_bridge(pbx)
    phone = pbx.phone("100", "answer", ring=1)
    _dnd(pbx, "100", True)
    wait_until(lambda: crm.busy("alice") is True, "the CRM to show Alice busy")
    assert crm.busy("bob") is not True

    caller = pbx.call("100", GIORGOS[0])
    assert caller.wait() != 0
    assert "486 Busy Here" in caller.messages()
    rows = settle(pbx, bridge, crm)
    assert rows == []  # the phone never rang: nothing for Alice to see
    assert "INVITE sip:" not in phone.messages()
    assert pbx.ami.db_get("DND", "100") == "YES"
    _ended(pbx)

    _dnd(pbx, "100", False)
    wait_until(lambda: crm.busy("alice") is False, "the CRM to show Alice free again")
    assert pbx.ami.db_get("DND", "100") is None


def test_dnd_set_on_the_phone_with_star_78_shows_alice_busy_without_a_call_row(
        fresh_pbx: PjsipLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    pbx = fresh_pbx
    bridge = start_bridge(pbx)
    dialled = pbx.call("*78", "100")
    assert dialled.wait() == 0, dialled.log()  # the dialplan answers, sets DND and hangs up
    wait_until(lambda: crm.busy("alice") is True, "the CRM to show Alice busy")
    assert pbx.ami.db_get("DND", "100") == "YES"
    assert settle(pbx, bridge, crm) == []  # a feature code is no call

    dialled = pbx.call("*79", "100")
    assert dialled.wait() == 0, dialled.log()
    wait_until(lambda: crm.busy("alice") is False, "the CRM to show Alice free again")
    assert pbx.ami.db_get("DND", "100") is None
    assert settle(pbx, bridge, crm) == []
    _ended(pbx)


# ---- ring group ------------------------------------------------------------------------------------------------


def _ring_group_call(pbx: PjsipLab) -> None:
    """Group 600 rings 100, 101 and 102 at once; Bob answers after 2 s, hangs up 3 s later."""
    phones = [pbx.phone("100", "noanswer"), pbx.phone("101", "answer", ring=2, talk=3), pbx.phone("102", "noanswer")]
    caller = pbx.call("600", HELEN[0], talk=60)
    assert caller.wait() == 0, caller.log()
    for phone in phones:
        assert "INVITE sip:" in phone.messages(), f"phone {phone.ext} did not ring"


def test_a_ring_group_call_is_a_row_per_agent_it_rang(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> None:
    _ring_group_call(pbx)
    rows = settle(pbx, bridge, crm)
    assert sorted(row.seen for row in rows) == [("incoming", *HELEN, "bob", True), ("missed", *HELEN, "alice", False)]
    assert {row.pbx_call_id for row in rows} == {rows[0].pbx_call_id}  # one call
    assert [row.duration > 0 for row in sorted(rows, key=lambda row: row.resource or "")] == [False, True]
    _ended(pbx)


def test_a_ring_group_call_with_create_call_when_answered_is_one_row_for_who_answered(
        pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> None:
    crm.update_settings(create_call_when_answered=True)
    _ring_group_call(pbx)
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *HELEN, "bob", True)]
    assert rows[0].duration > 0
    _ended(pbx)


def test_a_queue_call_is_a_row_per_agent_it_rang_and_incoming_for_who_answered(pbx: PjsipLab, bridge: LiveBridge,
                                                                                 crm: LiveCrm) -> None:
    """Queue 700 (ringall, members 100-102): the caller is answered by the queue first, then the agents ring."""
    pbx.phone("100", "answer", ring=2, talk=3)
    pbx.phone("101", "noanswer")
    pbx.phone("102", "noanswer")
    caller = pbx.call("700", GIORGOS[0], talk=60)
    assert caller.wait() == 0, caller.log()
    rows = settle(pbx, bridge, crm)
    assert sorted(row.seen for row in rows) == [("incoming", *GIORGOS, "alice", True),
                                                ("missed", *GIORGOS, "bob", False)]
    assert [row.duration > 0 for row in sorted(rows, key=lambda row: row.resource or "")] == [True, False]
    _ended(pbx)


# ---- outbound ----------------------------------------------------------------------------------------------------


def test_alice_dialling_out_through_the_trunk_is_one_outgoing_row(pbx: PjsipLab, bridge: LiveBridge,
                                                                   crm: LiveCrm) -> None:
    far_end = pbx.pstn("answer", ring=1)
    call = pbx.call("2107654321", "100", talk=3)
    assert call.wait() == 0, call.log()
    assert "INVITE sip:2107654321@" in far_end.messages()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", "2107654321", MARIA[1], "alice", True)]
    assert rows[0].duration > 0 and rows[0].direction == "out"
    _ended(pbx)


def test_an_outgoing_call_dialled_with_the_call_prefix_matches_the_contact_without_it(
        pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> None:
    crm.update_settings(call_prefix="0")
    pbx.pstn("answer", ring=1)
    call = pbx.call("02107654321", "100", talk=3)
    assert call.wait() == 0, call.log()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", "02107654321", MARIA[1], "alice", True)]
    assert rows[0].number_digits == "2107654321"
    assert rows[0].duration > 0
    _ended(pbx)


def test_an_unanswered_outgoing_call_is_an_outgoing_row_without_talk_time(pbx: PjsipLab, bridge: LiveBridge,
                                                                          crm: LiveCrm) -> None:
    pbx.pstn("busy", ring=1)
    call = pbx.call("2109876543", "101")
    assert call.wait() != 0
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", "2109876543", HELEN[1], "bob", False)]
    assert rows[0].duration == 0
    _ended(pbx)


# ---- internal ----------------------------------------------------------------------------------------------------


def test_an_internal_call_leaves_no_row_by_default(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> None:
    phone = pbx.phone("101", "answer", ring=1)
    call = pbx.call("101", "100", talk=3)
    assert call.wait() == 0, call.log()
    assert "INVITE sip:101@" in phone.messages()
    assert settle(pbx, bridge, crm) == []
    assert crm.legs(), "the CRM heard of the call (and kept no row, S-3.11)"
    _ended(pbx)


def test_an_internal_call_is_an_internal_row_on_both_sides_with_update_from_internal_calls(
        pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> None:
    crm.update_settings(update_from_internal_calls=True)
    pbx.phone("101", "answer", ring=1)
    call = pbx.call("101", "100", talk=3)
    assert call.wait() == 0, call.log()
    rows = settle(pbx, bridge, crm)
    assert sorted((row.seen, row.direction) for row in rows) == [
        (("internal", "100", None, "bob", True), "in"),
        (("internal", "101", None, "alice", True), "out"),
    ]
    assert all(row.duration > 0 for row in rows)
    _ended(pbx)


# ---- transfers -----------------------------------------------------------------------------------------------------


def test_a_blind_transfer_moves_the_outside_caller_from_alice_to_bob(pbx: PjsipLab, bridge: LiveBridge,
                                                                     crm: LiveCrm) -> None:
    pbx.phone("100", "answer", ring=1)
    bob = pbx.phone("101", "answer", ring=1, talk=3)  # Bob hangs up 3 s after answering
    caller = pbx.call("100", GIORGOS[0], talk=120)
    alice_channel = _agent_channel(pbx, "100")
    _talk(2)
    reply = pbx.ami.action("BlindTransfer", Channel=alice_channel, Exten="101", Context="from-internal")
    assert reply.get("Response") == "Success", reply
    assert caller.wait() == 0, caller.log()
    assert "INVITE sip:101@" in bob.messages()
    rows = settle(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True), ("incoming", *GIORGOS, "bob", True)]
    alice, bob_row = rows
    assert (alice.transferred_to, bob_row.transferred_from) == ("101", "100")
    assert alice.duration > 0 and bob_row.duration > 0
    assert alice.pbx_call_id == bob_row.pbx_call_id
    _ended(pbx)


def _redirect_to_bob(pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> list[CallRow]:
    """Alice answers the outside caller and talks; AMI Redirect sends the caller's channel to 101 (what the bridge
    itself does for a transfer on an Asterisk without BlindTransfer); Bob answers, hangs up 3 s later."""
    pbx.phone("100", "answer", ring=1)
    bob = pbx.phone("101", "answer", ring=1, talk=3)
    caller = pbx.call("100", GIORGOS[0], talk=120)
    _agent_channel(pbx, "100")
    _talk(2)
    [trunk] = [channel["Channel"] for channel in pbx.channels() if channel["Channel"].startswith("PJSIP/trunk-")]
    reply = pbx.ami.action("Redirect", Channel=trunk, Exten="101", Context="from-internal", Priority="1")
    assert reply.get("Response") == "Success", reply
    assert caller.wait() == 0, caller.log()
    assert "INVITE sip:101@" in bob.messages()
    rows = settle(pbx, bridge, crm)
    _ended(pbx)
    return rows


def test_a_redirect_of_the_caller_to_bob_leaves_alice_her_answered_call_and_rings_bob_with_the_caller(
        pbx: PjsipLab, bridge: LiveBridge, crm: LiveCrm) -> None:
    rows = _redirect_to_bob(pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True), ("incoming", *GIORGOS, "bob", True)]
    alice, bob_row = rows
    assert alice.duration > 0 and bob_row.duration > 0
    assert alice.pbx_call_id == bob_row.pbx_call_id


def test_a_redirect_of_the_caller_to_bob_is_shown_as_a_transfer_from_alice(pbx: PjsipLab, bridge: LiveBridge,
                                                                             crm: LiveCrm) -> None:
    alice, bob_row = _redirect_to_bob(pbx, bridge, crm)
    assert (alice.transferred_to, bob_row.transferred_from) == ("101", "100")
