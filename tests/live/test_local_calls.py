"""Call flows on the Local-channel lab (../shared/asterisk: Asterisk 22 without SIP): the phones are Local channels
driven by AstDB, and the bridge recognises them with the "lab" channel profile. The same product, another shape of
channels: the rows must be the same as on a SIP PBX (test_pjsip_calls.py holds the same flows there).

Channels: an inbound call is ``Local/<did>@from-pstn-…;1`` (the outside caller, an Originate waiting in Wait) and its
``;2`` (the from-pstn dialplan), which dials the agent's phone ``Local/10x@phones-…;1``. An agent's own call is an
Originate of ``Local/<number>@from-internal`` with the agent as CallerID: ``;1`` is the agent's handset, ``;2`` runs
from-internal (the bridge's agent leg), the outside world is ``Local/<number>@outside`` (AstDB lab/out/...).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from .conftest import RING_TIMEOUT_S
from .labs import Ami, LocalLab, Message, wait_until
from .stack import LiveBridge, LiveCrm, settle

GIORGOS = ("00302101234567", "Γιώργος Παπαδόπουλος")
MARIA = ("+302107654321", "Μαρία Κωνσταντίνου")
HELEN = ("00302109876543", "Helen Carter")
ALICE, BOB = '"Agent 100" <100>', '"Agent 101" <101>'


def _channel(pbx: LocalLab, prefix: str, state: str, suffix: str = ";1") -> str:
    """The name of the channel starting with ``prefix`` (Local/100@phones-) and ending with ``suffix`` once it is in
    ``state`` (Ringing, Up)."""
    return pbx.wait_channel(prefix, state, suffix)


def _talk(seconds: float) -> None:
    """The people talk (or it rings) a while: a scene, not a measurement."""
    time.sleep(seconds)


def _ended(pbx: LocalLab) -> None:
    """The PBX's own account: no channel left."""
    assert pbx.channels() == []


def _dial_out(pbx: LocalLab, number: str, agent: str) -> None:
    """The agent (CallerID ``agent``) dials ``number`` from the handset: Originate Local/<number>@from-internal."""
    reply = pbx.ami.action("Originate", Channel=f"Local/{number}@from-internal", Application="Wait", Data="3600",
                           CallerID=agent, Async="true")
    assert reply.get("Response") == "Success", reply


def _far_end(pbx: LocalLab, mode: str, ring: float = 1, talk: float = 3600) -> None:
    """How the outside number an agent dials behaves (AstDB lab/out/mode|delay|talk)."""
    pbx.phone("out", mode, ring=ring, talk=talk)


@contextlib.contextmanager
def _ring_timeout(pbx: LocalLab, seconds: int) -> Iterator[None]:
    """A shorter AstDB lab/timeout (how long from-pstn / from-internal ring an agent) for one test."""
    pbx.ami.db_put("lab", "timeout", str(seconds))
    try:
        yield
    finally:
        pbx.ami.db_put("lab", "timeout", str(RING_TIMEOUT_S))


def _dnd(pbx: LocalLab, ext: str, on: bool) -> None:
    """DND as FreePBX sets it (*78 / *79): AstDB DND/<ext> and the device state Custom:DND<ext>."""
    if on:
        pbx.ami.db_put("DND", ext, "YES")
    else:
        pbx.ami.db_del("DND", ext)
    reply = pbx.ami.action("Setvar", Variable=f"DEVICE_STATE(Custom:DND{ext})", Value="BUSY" if on else "NOT_INUSE")
    assert reply.get("Response") == "Success", reply


def _until(events: Ami, wanted: Callable[[Message], bool], what: str) -> list[Message]:
    """The events of ``events`` (a session with events on) up to the first one ``wanted``."""
    seen: list[Message] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            seen.append(events.read(timeout=max(0.01, deadline - time.monotonic())))
            if wanted(seen[-1]):
                return seen
    raise AssertionError(f"{what}: not within 30 s; events: {[m.get('Event') for m in seen]}")


# ---- inbound -----------------------------------------------------------------------------------------------------


def test_an_answered_inbound_call_on_local_channels_is_one_incoming_row(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("100", "answer", ring=1, talk=3)
    assert local_pbx.inbound("100", GIORGOS[0]).get("Response") == "Success"
    rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True)]
    assert rows[0].duration > 0
    _ended(local_pbx)


def test_an_unanswered_inbound_call_on_local_channels_is_one_missed_row(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("100", "noanswer")
    with _ring_timeout(local_pbx, 3):
        assert local_pbx.inbound("100", MARIA[0]).get("Response") == "Success"
        rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("missed", *MARIA, "alice", False)]
    assert rows[0].duration == 0 and rows[0].direction == "in"
    _ended(local_pbx)


def test_a_caller_who_hangs_up_while_it_rings_on_local_channels_leaves_a_missed_row(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("100", "noanswer")
    assert local_pbx.inbound("100", GIORGOS[0]).get("Response") == "Success"
    _channel(local_pbx, "Local/100@phones-", "Ringing")
    _talk(1)  # it rings a moment
    caller = _channel(local_pbx, "Local/100@from-pstn-", "Ringing")
    reply = local_pbx.ami.action("Hangup", Channel=caller, Cause="16")
    assert reply.get("Response") == "Success", reply
    rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("missed", *GIORGOS, "alice", False)]
    assert rows[0].duration == 0
    _ended(local_pbx)


# ---- DND ---------------------------------------------------------------------------------------------------------


def test_dnd_on_local_channels_gives_callers_busy_and_shows_alice_busy(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("100", "answer", ring=1, talk=3)
    _dnd(local_pbx, "100", True)
    wait_until(lambda: crm.busy("alice") is True, "the CRM to show Alice busy")
    assert crm.busy("bob") is not True

    events = Ami(local_pbx.ami_port, user=local_pbx.ami_user, secret=local_pbx.ami_secret, events=True)
    try:
        reply = local_pbx.ami.action("Originate", Channel="Local/100@from-pstn", Application="Wait", Data="3600",
                                     CallerID=GIORGOS[0], Async="true")
        assert reply.get("Response") == "Success", reply
        seen = _until(events, lambda m: m.get("Event") == "Hangup" and m.get("Cause") == "17"
                      and m.get("Channel", "").startswith("Local/100@from-pstn-"), "the caller to get busy")
    finally:
        events.close()
    assert [m.get("DialStatus") for m in seen if m.get("Event") == "DialEnd"] == ["BUSY"]
    assert not any(m.get("Channel", "").startswith("Local/100@phones-") for m in seen)  # the phone never rang
    rows = settle(local_pbx, bridge, crm)
    assert rows == []  # the phone never rang: nothing for Alice to see
    assert crm.legs() == []
    assert local_pbx.ami.db_get("DND", "100") == "YES"
    _ended(local_pbx)

    _dnd(local_pbx, "100", False)
    wait_until(lambda: crm.busy("alice") is False, "the CRM to show Alice free again")


# ---- ring group ------------------------------------------------------------------------------------------------


def test_a_ring_group_call_on_local_channels_is_a_row_per_agent_it_rang(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("100", "noanswer")
    local_pbx.phone("101", "answer", ring=2, talk=3)
    local_pbx.phone("102", "noanswer")
    assert local_pbx.inbound("600", HELEN[0]).get("Response") == "Success"
    rows = settle(local_pbx, bridge, crm)
    assert sorted(row.seen for row in rows) == [("incoming", *HELEN, "bob", True), ("missed", *HELEN, "alice", False)]
    assert {row.pbx_call_id for row in rows} == {rows[0].pbx_call_id}  # one call
    _ended(local_pbx)


# ---- outbound ----------------------------------------------------------------------------------------------------


def test_alice_dialling_out_on_local_channels_is_one_outgoing_row(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    _far_end(local_pbx, "answer", ring=1, talk=3)
    _dial_out(local_pbx, "2107654321", ALICE)
    rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", "2107654321", MARIA[1], "alice", True)]
    assert rows[0].duration > 0 and rows[0].direction == "out"
    _ended(local_pbx)


def test_an_outgoing_call_on_local_channels_dialled_with_the_call_prefix_matches_the_contact_without_it(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    crm.update_settings(call_prefix="0")
    bridge = start_bridge(local_pbx)
    _far_end(local_pbx, "answer", ring=1, talk=3)
    _dial_out(local_pbx, "02107654321", ALICE)
    rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", "02107654321", MARIA[1], "alice", True)]
    assert rows[0].number_digits == "2107654321"
    assert rows[0].duration > 0
    _ended(local_pbx)


def test_an_unanswered_outgoing_call_on_local_channels_is_an_outgoing_row_without_talk_time(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    _far_end(local_pbx, "noanswer")
    _dial_out(local_pbx, "2109876543", BOB)
    _channel(local_pbx, "Local/2109876543@outside-", "Ringing")
    _talk(1)  # it rings a moment; Bob gives up
    handset = _channel(local_pbx, "Local/2109876543@from-internal-", "Ringing")
    reply = local_pbx.ami.action("Hangup", Channel=handset, Cause="16")
    assert reply.get("Response") == "Success", reply
    rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("outgoing", "2109876543", HELEN[1], "bob", False)]
    assert rows[0].duration == 0 and rows[0].direction == "out"
    _ended(local_pbx)


# ---- internal ----------------------------------------------------------------------------------------------------


def test_an_internal_call_on_local_channels_leaves_no_row_by_default(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("101", "answer", ring=1, talk=3)
    _dial_out(local_pbx, "101", ALICE)
    _channel(local_pbx, "Local/101@phones-", "Up")
    assert settle(local_pbx, bridge, crm) == []
    assert crm.legs(), "the CRM heard of the call (and kept no row, S-3.11)"
    _ended(local_pbx)


def test_an_internal_call_on_local_channels_is_an_internal_row_on_both_sides_with_update_from_internal_calls(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    crm.update_settings(update_from_internal_calls=True)
    bridge = start_bridge(local_pbx)
    local_pbx.phone("101", "answer", ring=1, talk=3)
    _dial_out(local_pbx, "101", ALICE)
    _channel(local_pbx, "Local/101@phones-", "Up")
    rows = settle(local_pbx, bridge, crm)
    assert sorted((row.seen, row.direction) for row in rows) == [
        (("internal", "100", None, "bob", True), "in"),
        (("internal", "101", None, "alice", True), "out"),
    ]
    assert all(row.duration > 0 for row in rows)
    _ended(local_pbx)


# ---- transfers -----------------------------------------------------------------------------------------------------


def test_a_blind_transfer_on_local_channels_moves_the_outside_caller_from_alice_to_bob(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("100", "answer", ring=1)
    local_pbx.phone("101", "answer", ring=1, talk=3)  # Bob hangs up 3 s after answering
    assert local_pbx.inbound("100", GIORGOS[0]).get("Response") == "Success"
    alice_channel = _channel(local_pbx, "Local/100@phones-", "Up")
    _talk(2)
    reply = local_pbx.ami.action("BlindTransfer", Channel=alice_channel, Exten="101", Context="from-internal")
    assert reply.get("Response") == "Success", reply
    _channel(local_pbx, "Local/101@phones-", "Up")
    rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True), ("incoming", *GIORGOS, "bob", True)]
    alice, bob_row = rows
    assert (alice.transferred_to, bob_row.transferred_from) == ("101", "100")
    assert alice.duration > 0 and bob_row.duration > 0
    assert alice.pbx_call_id == bob_row.pbx_call_id
    _ended(local_pbx)
