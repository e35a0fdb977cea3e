"""Call flows on the Local-channel lab (../shared/asterisk: Asterisk 22 without SIP): the phones are Local channels
driven by AstDB, and the bridge recognises them with the "lab" channel profile. The same product, another shape of
channels: the rows must be the same as on a SIP PBX."""

from __future__ import annotations

from collections.abc import Callable

from .labs import LocalLab
from .stack import LiveBridge, LiveCrm, settle

GIORGOS = ("00302101234567", "Γιώργος Παπαδόπουλος")
HELEN = ("00302109876543", "Helen Carter")


def test_an_answered_inbound_call_on_local_channels_is_one_incoming_row(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("100", "answer", ring=1, talk=3)
    assert local_pbx.inbound("100", GIORGOS[0]).get("Response") == "Success"
    rows = settle(local_pbx, bridge, crm)
    assert [row.seen for row in rows] == [("incoming", *GIORGOS, "alice", True)]
    assert rows[0].duration > 0


def test_a_ring_group_call_on_local_channels_is_a_row_per_agent_it_rang(
        local_pbx: LocalLab, start_bridge: Callable[..., LiveBridge], crm: LiveCrm) -> None:
    bridge = start_bridge(local_pbx)
    local_pbx.phone("100", "noanswer")
    local_pbx.phone("101", "answer", ring=2, talk=3)
    local_pbx.phone("102", "noanswer")
    assert local_pbx.inbound("600", HELEN[0]).get("Response") == "Success"
    rows = settle(local_pbx, bridge, crm)
    assert sorted(row.seen for row in rows) == [("incoming", *HELEN, "bob", True), ("missed", *HELEN, "alice", False)]
