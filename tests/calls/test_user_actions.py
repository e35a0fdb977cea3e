"""What users do on the Call Center screen (S-4), through calls.actions, on calls made by the real path (wire events
through receive_events, as the bridge endpoint applies them). Commands go to a real HTTP listener standing in for
the bridge."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from callcenter import wire
from callcenter.activities.models import Activity, ActivityItem
from callcenter.calls import actions
from callcenter.calls.actions import receive_events
from callcenter.calls.models import Call, CallLeg, CallState, ProcessedEvent
from callcenter.campaigns.models import Campaign, CampaignItem, CampaignType
from callcenter.contacts.actions import AllSlotsFull, create_contact
from callcenter.contacts.models import Contact, ContactPhone

from .screen_support import NowEvents, call_ended, log_in

pytestmark = pytest.mark.django_db


def _only_call() -> Call:
    return Call.objects.select_related("contact").get()


@pytest.fixture
def campaign_type(asterisk):
    ctype = CampaignType.objects.create(name="Call center")
    asterisk.campaign_type = ctype
    asterisk.save()
    return ctype


# ---- S-4.2 working campaign ---------------------------------------------------------------------------------------


def test_the_working_campaign_must_be_of_the_call_center_type_and_available_today(alice, campaign_type):
    other_type = CampaignType.objects.create(name="Mailing")
    today = timezone.localdate()
    good = Campaign.objects.create(campaign_type=campaign_type, name="Winter")
    wrong_type = Campaign.objects.create(campaign_type=other_type, name="Letters")
    expired = Campaign.objects.create(campaign_type=campaign_type, name="Summer",
                                      available_from=today - dt.timedelta(days=90),
                                      available_to=today - dt.timedelta(days=1))
    inactive = Campaign.objects.create(campaign_type=campaign_type, name="Paused", active=False)
    for refused, error_id in ((wrong_type, "wrong_campaign_type"), (expired, "campaign_unavailable"),
                              (inactive, "campaign_unavailable")):
        with pytest.raises(actions.Refused) as caught:
            actions.set_working_campaign(alice, refused)
        assert caught.value.error_id == error_id
        assert refused.name in caught.value.message
    actions.set_working_campaign(alice, good)
    alice.refresh_from_db()
    assert alice.working_campaign == good
    actions.set_working_campaign(alice, None)
    alice.refresh_from_db()
    assert alice.working_campaign is None


def test_no_campaign_can_be_chosen_while_no_campaign_type_is_set(alice, asterisk):
    campaign = Campaign.objects.create(campaign_type=CampaignType.objects.create(name="Any"), name="X")
    with pytest.raises(actions.Refused, match="No call-center campaign type is set"):
        actions.set_working_campaign(alice, campaign)


def test_the_only_available_campaign_is_filled_in_and_an_expired_choice_replaced(alice, campaign_type):
    today = timezone.localdate()
    expired = Campaign.objects.create(campaign_type=campaign_type, name="Summer",
                                      available_to=today - dt.timedelta(days=1))
    alice.working_campaign = expired
    alice.save()
    only = Campaign.objects.create(campaign_type=campaign_type, name="Winter", available_from=today)
    assert actions.fill_in_working_campaign(alice) == only
    alice.refresh_from_db()
    assert alice.working_campaign == only


def test_with_two_available_campaigns_the_agent_chooses(alice, campaign_type):
    Campaign.objects.create(campaign_type=campaign_type, name="A")
    Campaign.objects.create(campaign_type=campaign_type, name="B")
    assert actions.fill_in_working_campaign(alice) is None
    alice.refresh_from_db()
    assert alice.working_campaign is None


def test_an_activity_created_by_hand_takes_the_working_campaign_with_its_items(alice, campaign_type, sale_type):
    campaign = Campaign.objects.create(campaign_type=campaign_type, name="Winter")
    CampaignItem.objects.create(campaign=campaign, description="Fibre 200", unit_price=Decimal("30"))
    from callcenter.resources.models import CallCenterSettings

    settings = CallCenterSettings.load()
    settings.insert_campaign_items = True
    settings.save()
    call_ended()  # stored before any campaign was chosen
    assert _only_call().campaign is None
    actions.set_working_campaign(alice, campaign)
    activity = actions.create_activity_for_call(_only_call(), sale_type, user=alice.user)
    assert activity.campaign == campaign
    assert [item.description for item in activity.items.all()] == ["Fibre 200"]
    assert activity.created_by == alice.user
    assert _only_call().campaign == campaign


def test_an_expired_working_campaign_is_not_given_to_an_activity_made_by_hand(alice, campaign_type, phone_call_type):
    today = timezone.localdate()
    campaign = Campaign.objects.create(campaign_type=campaign_type, name="Winter")
    actions.set_working_campaign(alice, campaign)
    Campaign.objects.filter(pk=campaign.pk).update(available_to=today - dt.timedelta(days=1))  # it expired since
    call_ended()
    activity = actions.create_activity_for_call(_only_call(), phone_call_type)
    assert activity.campaign is None


# ---- S-4.8 Update -------------------------------------------------------------------------------------------------


def test_update_sets_the_contact_of_the_call_and_of_its_activity_and_stores_no_number(alice, asterisk,
                                                                                      phone_call_type):
    asterisk.incoming_activity_type = phone_call_type
    asterisk.save()
    eleni = create_contact(first_name="Eleni", phones=["2109999999"])
    call_ended(number="6970000001")
    call = _only_call()
    assert call.contact is None and call.activity.contact is None
    actions.set_call_contact(call, eleni)
    call = _only_call()
    assert call.contact == eleni
    assert Activity.objects.get().contact == eleni
    assert list(ContactPhone.objects.filter(contact=eleni).values_list("number", flat=True)) == ["2109999999"]


def test_update_changes_the_call_contact_but_not_an_activity_that_has_one(alice, asterisk, phone_call_type):
    asterisk.incoming_activity_type = phone_call_type
    asterisk.save()
    first = create_contact(first_name="First", phones=["2101234567"])
    second = create_contact(first_name="Second")
    call_ended(number="00302101234567")
    assert Activity.objects.get().contact == first
    actions.set_call_contact(_only_call(), second)
    assert _only_call().contact == second
    assert Activity.objects.get().contact == first


def test_update_with_a_contact_deleted_meanwhile_is_refused_and_changes_nothing(alice, asterisk):
    gone = create_contact(first_name="Gone")
    call_ended()
    stale = Contact.objects.get(pk=gone.pk)
    gone.delete()
    with pytest.raises(actions.Refused) as caught:
        actions.set_call_contact(_only_call(), stale)
    assert caught.value.error_id == "no_such_contact"
    assert _only_call().contact is None


def test_a_contact_deleted_mid_call_leaves_the_call_and_its_activity_without_contact(alice, asterisk,
                                                                                     phone_call_type):
    asterisk.incoming_activity_type = phone_call_type
    asterisk.save()
    maria = create_contact(first_name="Maria", phones=["2101234567"])
    e = NowEvents()
    receive_events(None, [e.ringing("100", 0), e.answered("100", 2)])
    assert _only_call().contact == maria
    maria.delete()
    receive_events(None, [e.ended("100", 30)])
    call = _only_call()
    assert (call.contact, call.state, call.duration) == (None, CallState.ENDED, 28)
    assert Activity.objects.get().contact is None


# ---- S-4.17 Link to contact ---------------------------------------------------------------------------------------


def test_linking_stores_the_number_in_the_first_free_slot_and_sets_the_activity_contact(alice, asterisk,
                                                                                        phone_call_type):
    asterisk.incoming_activity_type = phone_call_type
    asterisk.save()
    nikos = create_contact(first_name="Nikos", phones={1: "2100000001", 3: "2100000003"})
    call_ended(number="00306971112223")
    linked = actions.link_call_to_contact(_only_call(), nikos)
    assert linked.slot == 2
    assert _only_call().contact == nikos
    assert Activity.objects.get().contact == nikos
    assert dict(nikos.phones.values_list("slot", "number")) == {1: "2100000001", 2: "00306971112223",
                                                                 3: "2100000003"}


def test_linking_does_not_store_a_number_the_contact_has_already(alice, asterisk):
    nikos = create_contact(first_name="Nikos", last_name="A", phones=["+30 697 111 2223"])
    create_contact(first_name="Nikos", last_name="B", phones=["6971112223"])  # two matches: no contact set
    call_ended(number="00306971112223")
    assert _only_call().contact is None
    linked = actions.link_call_to_contact(_only_call(), nikos)
    assert linked.slot is None
    assert nikos.phones.count() == 1


def test_linking_an_outgoing_call_stores_the_number_without_the_call_prefix(alice, asterisk):
    asterisk.call_prefix = "0"
    asterisk.save()
    nikos = create_contact(first_name="Nikos")
    call_ended(number="02101234567", direction=wire.Direction.OUTBOUND)
    actions.link_call_to_contact(_only_call(), nikos)
    assert list(nikos.phones.values_list("number", flat=True)) == ["2101234567"]


def test_with_all_slots_full_nothing_changes_until_the_agent_chooses(alice, asterisk):
    full = create_contact(first_name="Full", phones=["2100000001", "2100000002", "2100000003", "2100000004"])
    call_ended(number="6970000009")
    with pytest.raises(AllSlotsFull):
        actions.link_call_to_contact(_only_call(), full)
    assert _only_call().contact is None  # the link was rolled back with the refused number
    linked = actions.link_call_to_contact(_only_call(), full, replace_slot=3)
    assert linked.slot == 3
    assert dict(full.phones.values_list("slot", "number"))[3] == "6970000009"
    assert _only_call().contact == full


def test_declining_to_replace_a_slot_links_without_storing_the_number(alice, asterisk):
    full = create_contact(first_name="Full", phones=["2100000001", "2100000002", "2100000003", "2100000004"])
    call_ended(number="6970000009")
    linked = actions.link_call_to_contact(_only_call(), full, store_number=False)
    assert (linked.slot, _only_call().contact) == (None, full)
    assert sorted(full.phones.values_list("number", flat=True)) == ["2100000001", "2100000002", "2100000003",
                                                                     "2100000004"]


def test_two_agents_linking_the_same_call_at_once_make_one_link_and_one_refusal(alice, bob, asterisk):
    first = create_contact(first_name="First")
    second = create_contact(first_name="Second")
    call_ended(number="6970000009")
    seen_by_alice = _only_call()
    seen_by_bob = _only_call()  # both loaded the call while it had no contact
    actions.link_call_to_contact(seen_by_alice, first)
    with pytest.raises(actions.Refused) as caught:
        actions.link_call_to_contact(seen_by_bob, second)
    assert caught.value.error_id == "already_linked"
    assert "First" in caught.value.message
    assert _only_call().contact == first
    assert second.phones.count() == 0  # the refused link stored nothing


def test_linking_to_a_new_contact_creates_it_with_the_number_and_a_refused_link_creates_nothing(alice, asterisk):
    call_ended(number="+30 697 000 0009")
    linked = actions.link_call_to_new_contact(_only_call(), first_name="Ελένη", last_name="Ιωάννου")
    assert linked.contact.search_text == "ελενη ιωαννου"
    assert list(linked.contact.phones.values_list("slot", "number")) == [(1, "+30 697 000 0009")]
    stale = Call.objects.get()
    stale.contact = None  # as another agent's screen still has it
    before = Contact.objects.count()
    with pytest.raises(actions.Refused):
        actions.link_call_to_new_contact(stale, first_name="Late")
    assert Contact.objects.count() == before


def test_a_call_without_a_number_is_linked_without_storing_one(alice, asterisk):
    anonymous = create_contact(company="Anonymous Ltd")
    call_ended(number="")
    linked = actions.link_call_to_contact(_only_call(), anonymous)
    assert linked.slot is None and anonymous.phones.count() == 0


def test_linking_a_call_cleared_meanwhile_is_refused(alice, asterisk):
    someone = create_contact(first_name="Someone")
    call_ended()
    stale = _only_call()
    actions.clear_all(alice)
    with pytest.raises(actions.Refused) as caught:
        actions.link_call_to_contact(stale, someone)
    assert caught.value.error_id == "no_such_call"


# ---- S-4.18 Create activity ---------------------------------------------------------------------------------------


def test_a_call_gets_one_activity_linked_to_resource_contact_and_time(alice, asterisk, phone_call_type, sale_type):
    giorgos = create_contact(first_name="Γιώργος", phones=["2101234567"])
    call_ended()
    call = _only_call()
    activity = actions.create_activity_for_call(call, phone_call_type, user=alice.user)
    assert (activity.call, activity.resource, activity.contact, activity.starts_at) == (
        call, alice, giorgos, call.started_at)
    with pytest.raises(actions.Refused) as caught:
        actions.create_activity_for_call(call, sale_type)  # a second click, or another agent at once
    assert caught.value.error_id == "has_activity"
    assert Activity.objects.count() == 1


def test_an_inactive_activity_type_is_refused(alice, asterisk, phone_call_type):
    phone_call_type.active = False
    phone_call_type.save()
    call_ended()
    with pytest.raises(actions.Refused, match="not active"):
        actions.create_activity_for_call(_only_call(), phone_call_type)


# ---- S-4.15 / S-4.16 Clear ----------------------------------------------------------------------------------------


def test_clear_selected_removes_ended_calls_keeps_activities_and_contacts_and_skips_calls_in_progress(
        alice, asterisk, phone_call_type):
    asterisk.incoming_activity_type = phone_call_type
    asterisk.save()
    maria = create_contact(first_name="Maria", phones=["2101234567"])
    call_ended()
    ended = _only_call()
    live_call = NowEvents()
    receive_events(None, [live_call.ringing("100", 100), live_call.answered("100", 101)])
    up = Call.objects.exclude(pk=ended.pk).get()
    result = actions.clear_calls(alice.user, [ended.pk, up.pk])
    assert (result.cleared, result.in_progress) == (1, 1)
    assert list(Call.objects.values_list("pk", flat=True)) == [up.pk]
    assert Activity.objects.count() == 2 and Activity.objects.filter(call__isnull=True).count() == 1
    assert Contact.objects.filter(pk=maria.pk).exists()
    assert CallLeg.objects.get(pbx_call_id=ended.pbx_call_id).cleared is True


def test_a_cleared_call_stays_cleared_when_the_bridge_delivers_its_events_again(alice, asterisk):
    e = NowEvents()
    batch = [e.ringing("100", 0), e.answered("100", 1), e.ended("100", 9)]
    receive_events(None, batch)
    actions.clear_calls(alice.user, [_only_call().pk])
    ProcessedEvent.objects.all().delete()  # even a bridge that lost track of what it sent
    receive_events(None, batch)
    receive_events(None, [e.ended("100", 12)])  # and a late event for it
    assert Call.objects.count() == 0


def test_an_agent_cannot_clear_another_agents_calls_but_an_administrator_can(alice, bob, carol, asterisk):
    call_ended("101")
    bobs = _only_call()
    assert actions.clear_calls(alice.user, [bobs.pk]).cleared == 0
    assert Call.objects.filter(pk=bobs.pk).exists()
    assert actions.clear_calls(carol.user, [bobs.pk]).cleared == 1
    assert not Call.objects.filter(pk=bobs.pk).exists()


def test_clear_all_takes_only_the_own_calls_even_for_an_administrator_and_ignores_filters(alice, carol, asterisk):
    old = call_ended("199", start=dt.datetime(2020, 1, 2, tzinfo=dt.UTC).timestamp())
    call_ended("199")
    call_ended("100")
    result = actions.clear_all(carol)
    assert (result.cleared, result.in_progress) == (2, 0)
    assert list(Call.objects.values_list("extension", flat=True)) == ["100"]
    assert CallLeg.objects.get(pbx_call_id=old.call_id).cleared


def test_a_call_stored_without_its_leg_is_remembered_as_cleared(alice, asterisk):
    call_ended()
    call = _only_call()
    CallLeg.objects.all().delete()  # a row from before legs were kept
    actions.clear_calls(alice.user, [call.pk])
    assert CallLeg.objects.get(pbx_call_id=call.pbx_call_id, extension="100").cleared


# ---- commands (S-4.6, S-4.9 - S-4.13) through a real listener standing in for the bridge --------------------------


def test_dial_adds_the_call_prefix_to_outside_numbers_only_and_remembers_the_number(alice, bridge, asterisk,
                                                                                    bridge_listener):
    asterisk.call_prefix = "0"
    asterisk.save()
    log_in(alice, bridge, bridge_listener)
    assert actions.dial(alice, "210 123 4567").ok
    assert actions.dial(alice, "+30 210 1234567").ok
    assert actions.dial(alice, "101").ok
    dialled = [(c.extension, c.number) for c in bridge_listener.received]
    assert dialled == [("100", "02101234567"), ("100", "000302101234567"), ("100", "101")]
    alice.refresh_from_db()
    assert alice.last_dialled == "101"


def test_redial_calls_the_selected_calls_number_or_else_the_last_number_dialled(alice, bridge, asterisk,
                                                                              bridge_listener):
    log_in(alice, bridge, bridge_listener)
    assert actions.redial(alice).error_id == "no_number"
    actions.dial(alice, "2107654321")
    call_ended(number="2109998877")
    actions.redial(alice, _only_call())
    actions.redial(alice)
    assert [c.number for c in bridge_listener.received] == ["2107654321", "2109998877", "2109998877"]


def test_dial_works_only_while_logged_in_with_a_number(alice, bridge, asterisk, bridge_listener):
    result = actions.dial(alice, "2101234567")
    assert (result.ok, result.error_id) == (False, "not_logged_in")
    assert "No bridge has reported" in result.message
    log_in(alice, bridge, bridge_listener)
    for bad in ("", "   ", "abc", "<script>alert(1)</script>", "'; DROP TABLE calls_call; --", "9" * 81):
        refused = actions.dial(alice, bad)
        assert not refused.ok and refused.error_id in ("no_number", "invalid_number"), bad
    assert bridge_listener.received == []


def test_answer_needs_a_ringing_call_and_names_it(alice, bridge, asterisk, bridge_listener):
    log_in(alice, bridge, bridge_listener)
    assert actions.answer(alice).error_id == "no_ringing_call"
    e = NowEvents()
    receive_events(None, [e.ringing("100", 100)])
    assert actions.answer(alice).ok
    assert isinstance(bridge_listener.received[-1], wire.Answer) and bridge_listener.received[-1].call_id == e.call_id


def test_answer_works_with_create_call_when_answered_where_a_ringing_call_has_no_row(alice, bridge, asterisk,
                                                                                     bridge_listener):
    asterisk.create_call_when_answered = True
    asterisk.save()
    log_in(alice, bridge, bridge_listener)
    e = NowEvents()
    receive_events(None, [e.ringing("100", 100)])
    assert Call.objects.count() == 0
    assert actions.answer(alice).ok
    assert bridge_listener.received[-1].call_id == e.call_id


def test_end_call_and_transfer_need_a_call_in_progress(alice, bridge, asterisk, bridge_listener):
    log_in(alice, bridge, bridge_listener)
    assert actions.hangup(alice).error_id == "no_current_call"
    assert actions.transfer(alice, "101").error_id == "no_current_call"
    e = NowEvents()
    receive_events(None, [e.ringing("100", 100), e.answered("100", 102)])
    call = _only_call()
    assert actions.transfer(alice, "101", call).ok
    assert actions.hangup(alice, call).ok
    transfer, hangup = bridge_listener.received
    assert isinstance(transfer, wire.Transfer) and (transfer.target, transfer.call_id) == ("101", e.call_id)
    assert isinstance(hangup, wire.Hangup) and hangup.call_id == e.call_id


def test_a_transfer_goes_only_to_an_internal_number(alice, bridge, asterisk, bridge_listener):
    log_in(alice, bridge, bridge_listener)
    e = NowEvents()
    receive_events(None, [e.ringing("100", 100), e.answered("100", 102)])
    for outside in ("2101234567", "+101", "", "<b>101</b>x"):
        result = actions.transfer(alice, outside)
        assert not result.ok and result.error_id in ("not_internal", "no_number"), outside
    assert bridge_listener.received == []


def test_a_call_selected_from_another_agent_is_not_what_answer_or_hangup_act_on(alice, bob, bridge, asterisk,
                                                                              bridge_listener):
    log_in(alice, bridge, bridge_listener)
    bobs = NowEvents()
    receive_events(None, [bobs.ringing("101", 100), bobs.answered("101", 101)])
    mine = NowEvents()
    receive_events(None, [mine.ringing("100", 100), mine.answered("100", 101)])
    actions.hangup(alice, Call.objects.get(extension="101"))
    assert bridge_listener.received[-1].call_id == mine.call_id and bridge_listener.received[-1].extension == "100"


def test_busy_sends_the_wanted_state_and_the_screen_shows_what_the_pbx_reports(alice, bridge, asterisk,
                                                                              bridge_listener):
    log_in(alice, bridge, bridge_listener)
    assert actions.set_busy(alice, True).ok
    assert bridge_listener.received == [wire.SetBusy(command_id=bridge_listener.received[0].command_id, extension="100",
                                              busy=True)]
    alice.refresh_from_db()
    assert alice.pbx_busy is None  # nothing until the PBX says so
    receive_events(None, [wire.AgentState(event_id="dnd-1", occurred_at=timezone.now().timestamp(),
                                          extension="100", dnd=True)])
    alice.refresh_from_db()
    assert alice.pbx_busy is True


def test_a_bridge_refusal_comes_back_with_its_message(alice, bridge, asterisk, bridge_listener):
    log_in(alice, bridge, bridge_listener)
    bridge_listener.reply = (200, wire.encode(wire.CommandResult(command_id="x", ok=False, error_id="pbx_refused",
                                                          message="The PBX refused: extension 100 is busy")))
    result = actions.set_busy(alice, False)
    assert (result.ok, result.error_id, result.message) == (
        False, "pbx_refused", "The phone system refused it (The PBX refused: extension 100 is busy).")


def test_a_resource_without_an_extension_gets_a_clear_refusal(alice, asterisk):
    alice.extension = None
    alice.save()
    for result in (actions.dial(alice, "2101234567"), actions.answer(alice), actions.hangup(alice),
                   actions.transfer(alice, "101"), actions.set_busy(alice, True)):
        assert (result.ok, result.error_id) == (False, "no_extension")


def test_the_activity_items_of_a_cleared_call_stay(alice, campaign_type, sale_type):
    from callcenter.resources.models import CallCenterSettings

    campaign = Campaign.objects.create(campaign_type=campaign_type, name="Winter")
    CampaignItem.objects.create(campaign=campaign, description="Router", unit_price=Decimal("5"))
    settings = CallCenterSettings.load()
    settings.insert_campaign_items = True
    settings.incoming_activity_type = sale_type
    settings.save()
    actions.set_working_campaign(alice, campaign)
    call_ended()
    actions.clear_all(alice)
    assert ActivityItem.objects.get().description == "Router"
