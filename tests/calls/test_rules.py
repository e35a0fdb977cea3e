"""The call rules (S-3) through calls.actions.receive_events, the function the bridge endpoint calls."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from callcenter import wire
from callcenter.activities.models import Activity
from callcenter.calls.actions import receive_events
from callcenter.calls.models import Call, CallKind, CallLeg, CallState, ProcessedEvent
from callcenter.campaigns.models import Campaign, CampaignItem, CampaignType
from callcenter.contacts.actions import create_contact
from callcenter.resources.models import PhoneSystem

from .conftest import T0, Events

pytestmark = pytest.mark.django_db


def test_it_stores_an_answered_inbound_call_with_contact_talk_time_and_caller_name(alice, asterisk):
    giorgos = create_contact(first_name="Γιώργος", last_name="Παπαδόπουλος", phones=["210 123 4567"])
    e = Events()
    receipt = receive_events(None, [
        e.ringing("100", 0, name="Γιώργος Παπαδόπουλος"),
        e.answered("100", 3),
        e.ended("100", 9, hung_up_by=wire.HungUpBy.AGENT),
    ])
    assert (receipt.accepted, receipt.duplicates) == (3, 0)
    call = Call.objects.get()
    assert call.resource == alice
    assert call.kind == CallKind.INCOMING
    assert call.state == CallState.ENDED
    assert call.number == "00302101234567"
    assert call.number_key == "2101234567"
    assert call.contact == giorgos
    assert call.caller_name == "Γιώργος Παπαδόπουλος"
    assert call.duration == 6
    assert call.started_at == dt.datetime.fromtimestamp(T0, tz=dt.UTC)


def test_an_unanswered_inbound_call_is_missed_with_zero_duration(alice, asterisk):
    e = Events()
    receive_events(None, [e.ringing("100", 0), e.ended("100", 8, cause=19)])
    call = Call.objects.get()
    assert (call.kind, call.duration, call.answered_at) == (CallKind.MISSED, 0, None)


def test_an_outgoing_call_nobody_answered_stays_outgoing(alice, asterisk):
    e = Events()
    receive_events(None, [e.ringing("100", 0, direction=wire.Direction.OUTBOUND), e.ended("100", 20)])
    call = Call.objects.get()
    assert (call.kind, call.duration) == (CallKind.OUTGOING, 0)


def test_every_event_is_taken_once_however_often_it_is_delivered(alice, asterisk):
    e = Events()
    batch = [e.ringing("100", 0), e.answered("100", 2), e.ended("100", 5)]
    first = receive_events(None, batch)
    again = receive_events(None, batch + batch)
    assert (first.accepted, again.accepted, again.duplicates) == (3, 0, 6)
    assert Call.objects.count() == 1
    assert ProcessedEvent.objects.count() == 3
    assert Call.objects.get().duration == 3


def test_events_out_of_order_give_the_same_call(alice, asterisk):
    e = Events()
    ringing, answered, ended = e.ringing("100", 0), e.answered("100", 2), e.ended("100", 7)
    receive_events(None, [ended])
    receive_events(None, [answered])
    assert Call.objects.count() == 0  # nothing to show before the ringing says who called
    receive_events(None, [ringing])
    call = Call.objects.get()
    assert (call.kind, call.state, call.duration) == (CallKind.INCOMING, CallState.ENDED, 5)


def test_with_create_when_answered_only_the_first_answerer_of_a_group_gets_the_call(alice, bob, carol, asterisk):
    asterisk.create_call_when_answered = True
    asterisk.save()
    e = Events()
    receive_events(None, [e.ringing("100", 0), e.ringing("101", 0), e.ringing("199", 0)])
    assert Call.objects.count() == 0
    receive_events(None, [e.answered("101", 4)])
    receive_events(None, [e.answered("100", 4.1)])  # a late second answer (a race the PBX let through)
    receive_events(None, [
        e.ended("100", 4.2, answered_elsewhere=True, cause=26),
        e.ended("199", 4.2, answered_elsewhere=True, cause=26),
        e.ended("101", 10),
    ])
    call = Call.objects.get()
    assert call.resource == bob
    assert call.duration == 6
    assert call.answer_group == e.call_id


def test_with_create_when_answered_an_unanswered_call_is_stored_for_nobody(alice, asterisk):
    asterisk.create_call_when_answered = True
    asterisk.save()
    e = Events()
    receive_events(None, [e.ringing("100", 0), e.ended("100", 30, cause=19)])
    assert Call.objects.count() == 0


def test_without_create_when_answered_every_agent_rung_gets_a_row(alice, bob, asterisk):
    e = Events()
    receive_events(None, [
        e.ringing("100", 0), e.ringing("101", 0), e.answered("101", 4),
        e.ended("100", 4, answered_elsewhere=True, cause=26), e.ended("101", 10),
    ])
    rows = {c.resource.user.username: c for c in Call.objects.select_related("resource__user")}
    assert rows["alice"].kind == CallKind.MISSED
    assert (rows["bob"].kind, rows["bob"].duration) == (CallKind.INCOMING, 6)


def test_a_transferred_call_shows_the_original_caller_on_the_second_agent(alice, bob, asterisk):
    e = Events()
    receive_events(None, [
        e.ringing("100", 0), e.answered("100", 2), e.transferred("100", 5, target="101"), e.ended("100", 5),
        e.ringing("101", 5, transferred_from="100"), e.answered("101", 8), e.ended("101", 20),
    ])
    first = Call.objects.get(resource=alice)
    second = Call.objects.get(resource=bob)
    assert (first.transferred_to, first.duration, first.kind) == ("101", 3, CallKind.INCOMING)
    assert (second.number, second.transferred_from, second.duration) == ("00302101234567", "100", 12)


def test_transferred_calls_are_stored_even_with_create_when_answered(alice, bob, asterisk):
    asterisk.create_call_when_answered = True
    asterisk.save()
    e = Events()
    receive_events(None, [
        e.ringing("100", 0), e.answered("100", 2), e.transferred("100", 5, target="101"), e.ended("100", 5),
        e.ringing("101", 5, transferred_from="100"), e.answered("101", 8), e.ended("101", 20),
    ])
    assert sorted(Call.objects.values_list("extension", flat=True)) == ["100", "101"]


def test_internal_calls_are_ignored_unless_the_setting_is_on(alice, bob, asterisk):
    e = Events()
    internal = [
        e.ringing("100", 0, number="101", direction=wire.Direction.INTERNAL, internal_direction="out"),
        e.ringing("101", 0, number="100", direction=wire.Direction.INTERNAL, internal_direction="in"),
    ]
    receive_events(None, internal)
    assert Call.objects.count() == 0
    assert CallLeg.objects.count() == 2  # the facts are kept; nothing is shown

    asterisk.update_from_internal_calls = True
    asterisk.save()
    e2 = Events("2.0")
    receive_events(None, [
        e2.ringing("100", 0, number="101", direction=wire.Direction.INTERNAL, internal_direction="out"),
        e2.ringing("101", 0, number="100", direction=wire.Direction.INTERNAL, internal_direction="in"),
    ])
    rows = {c.extension: c for c in Call.objects.all()}
    assert rows["100"].kind == rows["101"].kind == CallKind.INTERNAL
    assert (rows["100"].direction, rows["101"].direction) == ("out", "in")


def test_nothing_is_stored_while_the_phone_system_is_none(alice, cc_settings):
    assert cc_settings.phone_system == PhoneSystem.NONE
    e = Events()
    receive_events(None, [e.ringing("100", 0)])
    assert Call.objects.count() == 0


def test_a_call_for_an_unknown_extension_is_kept_for_administrators(asterisk, caplog):
    e = Events()
    receive_events(None, [e.ringing("555", 0)])
    call = Call.objects.get()
    assert call.resource is None and call.extension == "555"
    assert "belongs to no resource" in caplog.text


def test_several_matching_contacts_leave_the_call_without_contact(alice, asterisk):
    create_contact(first_name="Anna", phones=["2101234567"])
    create_contact(first_name="Eleni", phones=["+30 210 1234567"])
    e = Events()
    receive_events(None, [e.ringing("100", 0)])
    assert Call.objects.get().contact is None


def test_activities_are_created_with_the_configured_types_and_linked(alice, asterisk, phone_call_type):
    asterisk.incoming_activity_type = phone_call_type
    asterisk.outgoing_activity_type = phone_call_type
    asterisk.save()
    maria = create_contact(first_name="Maria", phones=["6971234567"])
    e = Events()
    receive_events(None, [e.ringing("100", 0, number="+306971234567"), e.answered("100", 1), e.ended("100", 3)])
    out = Events("9.9")
    receive_events(None, [out.ringing("100", 0, number="06971234567", direction=wire.Direction.OUTBOUND)])
    activities = list(Activity.objects.order_by("id"))
    assert len(activities) == 2
    assert all(a.activity_type == phone_call_type and a.resource == alice and a.contact == maria for a in activities)
    assert {a.call.kind for a in activities} == {CallKind.INCOMING, CallKind.OUTGOING}


def test_a_sale_opportunity_gets_the_working_campaigns_items(alice, asterisk, sale_type):
    ctype = CampaignType.objects.create(name="Call center")
    campaign = Campaign.objects.create(campaign_type=ctype, name="Winter offer", active=True)
    CampaignItem.objects.create(campaign=campaign, description="Fibre 200", quantity=1, unit_price=Decimal("30"))
    CampaignItem.objects.create(campaign=campaign, description="Router", quantity=2, unit_price=Decimal("5"))
    asterisk.incoming_activity_type = sale_type
    asterisk.campaign_type = ctype
    asterisk.insert_campaign_items = True
    asterisk.save()
    alice.working_campaign = campaign
    alice.save()
    e = Events()
    receive_events(None, [e.ringing("100", 0)])
    activity = Activity.objects.get()
    assert activity.campaign == campaign
    assert [(i.description, i.quantity) for i in activity.items.all()] == [("Fibre 200", 1), ("Router", 2)]
    assert activity.total() == Decimal("40")


def test_an_expired_working_campaign_is_not_linked(alice, asterisk, sale_type):
    ctype = CampaignType.objects.create(name="Call center")
    expired = Campaign.objects.create(
        campaign_type=ctype, name="Summer", active=True,
        available_from=dt.date(2020, 6, 1), available_to=dt.date(2020, 8, 31),
    )
    asterisk.incoming_activity_type = sale_type
    asterisk.campaign_type = ctype
    asterisk.insert_campaign_items = True
    asterisk.save()
    alice.working_campaign = expired
    alice.save()
    receive_events(None, [Events().ringing("100", 0)])
    activity = Activity.objects.get()
    assert activity.campaign is None
    assert activity.items.count() == 0


def test_agent_state_sets_busy_and_an_older_report_does_not_undo_a_newer(alice, asterisk):
    newer = wire.AgentState(event_id="a2", occurred_at=T0 + 10, extension="100", dnd=True)
    older = wire.AgentState(event_id="a1", occurred_at=T0 + 5, extension="100", dnd=False)
    receive_events(None, [newer])
    receive_events(None, [older])
    alice.refresh_from_db()
    assert alice.pbx_busy is True


def test_a_link_state_updates_its_bridge_and_warns_on_a_phone_system_mismatch(bridge, cc_settings, caplog):
    cc_settings.phone_system = PhoneSystem.TSAPI
    cc_settings.save()
    receive_events(bridge, [wire.LinkState(
        event_id="l1", occurred_at=T0, phone_system=wire.PhoneSystem.ASTERISK, pbx_connected=True,
        extensions=("100", "101"), bridge_version="0.1.0",
    )])
    bridge.refresh_from_db()
    assert bridge.pbx_connected is True
    assert bridge.extensions == ["100", "101"]
    assert "reports phone system asterisk but the CRM is set to tsapi" in caplog.text


def test_a_cleared_call_does_not_come_back_when_its_events_are_replayed(alice, asterisk):
    e = Events()
    batch = [e.ringing("100", 0), e.answered("100", 1), e.ended("100", 2)]
    receive_events(None, batch)
    call = Call.objects.get()
    CallLeg.objects.filter(call=call).update(cleared=True)
    call.delete()
    ProcessedEvent.objects.all().delete()  # even if the bridge's ids were forgotten
    receive_events(None, batch)
    assert Call.objects.count() == 0


def test_one_bad_event_is_kept_for_an_administrator_and_does_not_block_the_rest(alice, asterisk, monkeypatch):
    from callcenter.calls import actions

    real = actions._merge_event

    def explode_on_one(leg, event):
        if event.event_id.endswith(":1"):
            raise RuntimeError("boom")
        return real(leg, event)

    monkeypatch.setattr(actions, "_merge_event", explode_on_one)
    e = Events()
    receipt = receive_events(None, [e.ringing("100", 0), e.answered("100", 1), e.ended("100", 2)])
    assert (receipt.accepted, receipt.failed) == (2, 1)
    failed = ProcessedEvent.objects.get(failed=True)
    assert "RuntimeError: boom" in failed.error
    assert failed.payload["type"] == "call.answered"
    assert Call.objects.get().state == CallState.ENDED


def test_changing_digits_to_scan_rekeys_stored_calls(alice, asterisk, carol, client):
    asterisk.call_prefix = "0"
    asterisk.save()
    receive_events(None, [Events().ringing("100", 0, number="00302101234567")])
    out = Events("7.7")
    receive_events(None, [out.ringing("100", 0, number="06971234567", direction=wire.Direction.OUTBOUND)])
    client.force_login(carol.user)
    data = {
        "phone_system": "asterisk", "digits_to_scan": "8", "internal_digits": "3", "phone_region": "GR",
        "call_prefix": "0",
    }
    response = client.post("/settings/call-center/", data)
    assert response.status_code == 302
    keys = dict(Call.objects.values_list("number", "number_key"))
    assert keys == {"00302101234567": "01234567", "06971234567": "71234567"}
