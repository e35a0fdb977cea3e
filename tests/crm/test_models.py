"""The CRM data model: every SPEC field is stored (a round trip through the database) and validated (full_clean
messages and, where a form could be bypassed, database constraints)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from callcenter.activities.models import Activity, ActivityItem, ActivityKind, ActivityStatus, ActivityType
from callcenter.calls.models import Call, CallDirection, CallKind, CallState, format_duration
from callcenter.campaigns.models import Campaign, CampaignItem, CampaignType
from callcenter.contacts.models import Contact, ContactPhone, fold_for_search
from callcenter.resources.models import CallCenterSettings, PhoneSystem, Resource

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


def _errors(instance: Any, **kwargs: Any) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean(**kwargs)
    return caught.value.message_dict


def _user(username: str) -> User:
    return User.objects.create_user(username, password="x")


def _call(resource: Resource | None = None, **fields: Any) -> Call:
    values: dict[str, Any] = {
        "kind": CallKind.INCOMING,
        "direction": CallDirection.INBOUND,
        "started_at": T0,
        "extension": "100",
        "pbx_call_id": "1700000000.1",
        "number": "2101234567",
        "number_key": "2101234567",
    }
    values.update(fields)
    return Call(resource=resource, **values)


def _campaign(**fields: Any) -> Campaign:
    campaign_type = CampaignType.objects.get_or_create(name="Call center")[0]
    values: dict[str, Any] = {"campaign_type": campaign_type, "name": "Spring offer"}
    values.update(fields)
    return Campaign(**values)


# --- Resource (S-2) ----------------------------------------------------------------------------------------------


def test_a_resource_stores_its_extension_administrator_flag_and_every_call_center_option() -> None:
    Resource.objects.create(
        user=_user("dora"),
        is_administrator=True,
        extension="1234",
        cc_active=True,  # S-2.1
        service_address="bridge.example",  # S-2.2
        service_port=6001,  # S-2.3
        internal_address="10.0.0.5",  # S-2.4
        internal_port=8443,  # S-2.5
        notify_new_call=False,  # S-2.6
        notification_seconds=25,  # S-2.7
    )
    stored = Resource.objects.get(user__username="dora")
    assert stored.is_administrator is True
    assert stored.extension == "1234"
    assert stored.cc_active is True
    assert stored.service_address == "bridge.example"
    assert stored.service_port == 6001
    assert stored.internal_address == "10.0.0.5"
    assert stored.internal_port == 8443
    assert stored.notify_new_call is False
    assert stored.notification_seconds == 25


def test_a_new_resource_is_inactive_non_admin_with_unprivileged_default_ports() -> None:
    stored = Resource.objects.get(pk=Resource.objects.create(user=_user("dora")).pk)
    assert stored.cc_active is False
    assert stored.is_administrator is False
    assert stored.extension is None
    assert stored.service_port >= 1024 and stored.internal_port >= 1024
    assert stored.service_port != stored.internal_port
    assert stored.notify_new_call is True
    stored.full_clean()


def test_a_resource_keeps_its_working_campaign() -> None:
    campaign = _campaign()
    campaign.save()
    resource = Resource.objects.create(user=_user("dora"), working_campaign=campaign)
    assert Resource.objects.get(pk=resource.pk).working_campaign == campaign


@pytest.mark.parametrize("field", ["service_port", "internal_port"])
@pytest.mark.parametrize("port", [0, 65536, 100000])
def test_a_port_outside_1_to_65535_is_refused(field: str, port: int) -> None:
    resource = Resource(user=_user("dora"), **{field: port})
    assert field in _errors(resource)


@pytest.mark.parametrize("field", ["service_port", "internal_port"])
def test_the_database_refuses_a_port_outside_1_to_65535(alice: Resource, field: str) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Resource.objects.filter(pk=alice.pk).update(**{field: 70000})


@pytest.mark.parametrize("port", [1, 65535])
def test_the_ends_of_the_port_range_are_allowed(port: int) -> None:
    resource = Resource.objects.create(user=_user("dora"), service_port=port, internal_port=3000)
    resource.full_clean()
    assert Resource.objects.get(pk=resource.pk).service_port == port


def test_it_refuses_equal_ports_on_the_same_address_naming_the_port() -> None:
    resource = Resource(user=_user("dora"), service_address="127.0.0.1", internal_address="127.0.0.1",
                        service_port=5050, internal_port=5050)
    errors = _errors(resource)
    assert "5050" in errors["internal_port"][0]
    assert "choose different ports" in errors["internal_port"][0]


def test_it_compares_addresses_ignoring_case_and_surrounding_space() -> None:
    resource = Resource(user=_user("dora"), service_address="CRM.example", internal_address="crm.example",
                        service_port=7000, internal_port=7000)
    assert "internal_port" in _errors(resource)


def test_equal_ports_on_different_addresses_are_allowed() -> None:
    resource = Resource(user=_user("dora"), service_address="10.0.0.2", internal_address="10.0.0.1",
                        service_port=5050, internal_port=5050)
    resource.full_clean()


@pytest.mark.parametrize(
    "address", ["", "<script>", "bad host", "x" * 300, "κέντρο.gr", "'; DROP TABLE x; --", "localhost\n"]
)
def test_an_address_that_is_not_a_host_is_refused(address: str) -> None:
    resource = Resource(user=_user("dora"), service_address=address, internal_address=address)
    errors = _errors(resource)
    assert "service_address" in errors and "internal_address" in errors


@pytest.mark.parametrize("address", ["127.0.0.1", "crm.example.com", "fe80::1", "[::1]", "localhost"])
def test_host_names_and_ip_addresses_are_accepted(address: str) -> None:
    Resource(user=_user("dora"), service_address=address, service_port=5050, internal_port=8000).full_clean()


@pytest.mark.parametrize("seconds", [0, 601])
def test_a_notification_duration_outside_1_to_600_seconds_is_refused(seconds: int) -> None:
    assert "notification_seconds" in _errors(Resource(user=_user("dora"), notification_seconds=seconds))


def test_the_database_refuses_a_notification_duration_of_zero(alice: Resource) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Resource.objects.filter(pk=alice.pk).update(notification_seconds=0)


@pytest.mark.parametrize("extension", ["abc", "123456789", "10 0", "<script>", "١٠٠", "+100", "100\n"])
def test_an_extension_is_one_to_eight_ascii_digits(extension: str) -> None:
    assert "extension" in _errors(Resource(user=_user("dora"), extension=extension))


def test_two_resources_cannot_share_an_extension(alice: Resource) -> None:
    assert "extension" in _errors(Resource(user=_user("dora"), extension="100"))
    with pytest.raises(IntegrityError), transaction.atomic():
        Resource.objects.create(user=_user("eve"), extension="100")


def test_several_resources_may_have_no_extension() -> None:
    Resource.objects.create(user=_user("dora"))
    Resource.objects.create(user=_user("eve"))
    assert Resource.objects.filter(extension__isnull=True).count() == 2


def test_a_user_is_at_most_one_resource(alice: Resource) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Resource.objects.create(user=alice.user)


def test_a_resource_is_named_by_its_user() -> None:
    assert str(Resource(user=User(username="dora", first_name="Dora", last_name="Demo"))) == "Dora Demo"
    assert str(Resource(user=User(username="dora"))) == "dora"


# --- CRM call-center settings (S-3) ------------------------------------------------------------------------------


def test_the_settings_store_every_call_center_field() -> None:
    outgoing = ActivityType.objects.create(name="Outgoing call")
    incoming = ActivityType.objects.create(name="Incoming call")
    default = ActivityType.objects.create(name="Phone call")
    campaign_type = CampaignType.objects.create(name="Call center")
    settings = CallCenterSettings.load()
    settings.phone_system = PhoneSystem.ASTERISK  # S-3.1
    settings.digits_to_scan = 12  # S-3.2
    settings.outgoing_activity_type = outgoing  # S-3.3
    settings.incoming_activity_type = incoming  # S-3.4
    settings.auto_show_screen = False  # S-3.5
    settings.default_activity_type = default  # S-3.6
    settings.create_call_when_answered = True  # S-3.7
    settings.call_prefix = "0"  # S-3.8
    settings.internal_digits = 4  # S-3.9
    settings.auto_open_activity = True  # S-3.10
    settings.update_from_internal_calls = True  # S-3.11
    settings.campaign_type = campaign_type  # S-3.12
    settings.insert_campaign_items = True  # S-3.13
    settings.phone_region = "CY"
    settings.full_clean()
    settings.save()

    stored = CallCenterSettings.objects.get()
    assert stored.phone_system == PhoneSystem.ASTERISK
    assert stored.digits_to_scan == 12
    assert stored.outgoing_activity_type == outgoing
    assert stored.incoming_activity_type == incoming
    assert stored.auto_show_screen is False
    assert stored.default_activity_type == default
    assert stored.create_call_when_answered is True
    assert stored.call_prefix == "0"
    assert stored.internal_digits == 4
    assert stored.auto_open_activity is True
    assert stored.update_from_internal_calls is True
    assert stored.campaign_type == campaign_type
    assert stored.insert_campaign_items is True
    assert stored.phone_region == "CY"


def test_the_settings_start_with_the_call_center_off_and_the_spec_defaults() -> None:
    stored = CallCenterSettings.load()
    assert stored.phone_system == PhoneSystem.NONE
    assert stored.enabled is False
    assert stored.digits_to_scan == 10
    assert stored.internal_digits == 3
    assert stored.call_prefix == ""
    assert stored.phone_region == "GR"
    assert stored.outgoing_activity_type is None and stored.incoming_activity_type is None
    assert stored.default_activity_type is None and stored.campaign_type is None


@pytest.mark.parametrize("system", [PhoneSystem.ASTERISK, PhoneSystem.TSAPI, PhoneSystem.TAPI])
def test_any_phone_system_but_none_turns_the_call_center_on(system: str) -> None:
    assert CallCenterSettings(phone_system=system).enabled is True


def test_an_unknown_phone_system_is_refused() -> None:
    assert "phone_system" in _errors(CallCenterSettings(pk=1, phone_system="avaya"))


def test_deleting_an_activity_type_or_campaign_type_empties_the_setting() -> None:
    activity_type = ActivityType.objects.create(name="Phone call")
    campaign_type = CampaignType.objects.create(name="Call center")
    settings = CallCenterSettings.load()
    settings.default_activity_type = activity_type
    settings.campaign_type = campaign_type
    settings.save()
    activity_type.delete()
    campaign_type.delete()
    stored = CallCenterSettings.load()
    assert stored.default_activity_type is None and stored.campaign_type is None


@pytest.mark.parametrize("digits", [0, 3, 16, 300])
def test_digits_to_scan_outside_4_to_15_is_refused(digits: int) -> None:
    assert "digits_to_scan" in _errors(CallCenterSettings(pk=1, digits_to_scan=digits))


@pytest.mark.parametrize("digits", [4, 15])
def test_digits_to_scan_may_be_4_or_15(digits: int) -> None:
    CallCenterSettings(pk=1, digits_to_scan=digits).full_clean(validate_unique=False)


@pytest.mark.parametrize("digits", [3, 16])
def test_the_database_refuses_digits_to_scan_outside_4_to_15(digits: int) -> None:
    CallCenterSettings.load()
    with pytest.raises(IntegrityError), transaction.atomic():
        CallCenterSettings.objects.update(digits_to_scan=digits)


@pytest.mark.parametrize("digits", [0, 9])
def test_internal_digits_outside_1_to_8_are_refused(digits: int) -> None:
    assert "internal_digits" in _errors(CallCenterSettings(pk=1, internal_digits=digits))
    CallCenterSettings.load()
    with pytest.raises(IntegrityError), transaction.atomic():
        CallCenterSettings.objects.update(internal_digits=digits)


@pytest.mark.parametrize("prefix", ["0a", "+0", "<script>", "'; --", "٠", "1234567", "0\n"])
def test_a_call_prefix_that_is_not_up_to_six_ascii_digits_is_refused(prefix: str) -> None:
    assert "call_prefix" in _errors(CallCenterSettings(pk=1, call_prefix=prefix))


@pytest.mark.parametrize("region", ["XX", "G", "ΕΛ", "<s"])
def test_an_unknown_phone_region_is_refused(region: str) -> None:
    assert "phone_region" in _errors(CallCenterSettings(pk=1, phone_region=region))


def test_a_lower_case_phone_region_is_stored_upper_case() -> None:
    settings = CallCenterSettings.load()
    settings.phone_region = "cy"
    settings.full_clean()
    settings.save()
    assert CallCenterSettings.load().phone_region == "CY"


def test_the_settings_are_a_single_row() -> None:
    first = CallCenterSettings.load()
    assert CallCenterSettings.load().pk == first.pk == CallCenterSettings.SINGLETON_PK
    assert CallCenterSettings.objects.count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        CallCenterSettings.objects.create(pk=2)
    assert "Constraint “callcentersettings_single_row” is violated." in _errors(CallCenterSettings(pk=2))["__all__"]
    assert CallCenterSettings.objects.count() == 1


# --- Contacts with four phone slots ------------------------------------------------------------------------------


def test_a_contact_stores_its_name_company_email_notes_and_four_phones() -> None:
    contact = Contact.objects.create(first_name="Γιώργος", last_name="Παπαδόπουλος", company="ACME",
                                     email="g@example.com", notes="<b>VIP</b>", search_text="γιωργοσ")
    for slot in (1, 2, 3, 4):
        ContactPhone.objects.create(contact=contact, slot=slot, number=f"+30 210 000 000{slot}",
                                    digits=f"302100000000{slot}", key=f"210000000{slot}")
    stored = Contact.objects.get(pk=contact.pk)
    assert (stored.first_name, stored.last_name, stored.company) == ("Γιώργος", "Παπαδόπουλος", "ACME")
    assert (stored.email, stored.notes, stored.search_text) == ("g@example.com", "<b>VIP</b>", "γιωργοσ")
    assert stored.created_at is not None and stored.updated_at is not None
    assert [(p.slot, p.number, p.digits, p.key) for p in stored.phones.all()] == [
        (slot, f"+30 210 000 000{slot}", f"302100000000{slot}", f"210000000{slot}") for slot in (1, 2, 3, 4)
    ]


def test_a_contact_needs_a_first_name_a_last_name_or_a_company() -> None:
    errors = _errors(Contact())
    assert "Give the contact a first name, a last name or a company." in errors["__all__"]
    with pytest.raises(IntegrityError), transaction.atomic():
        Contact.objects.create()
    Contact(company="ACME").full_clean()


def test_an_invalid_email_is_refused() -> None:
    assert "email" in _errors(Contact(last_name="Demo", email="not an email"))


@pytest.mark.parametrize("slot", [0, 5])
def test_a_phone_slot_outside_1_to_4_is_refused(slot: int) -> None:
    contact = Contact.objects.create(last_name="Demo")
    phone = ContactPhone(contact=contact, slot=slot, number="2101234567", digits="2101234567", key="2101234567")
    assert "slot" in _errors(phone)
    with pytest.raises(IntegrityError), transaction.atomic():
        phone.save()


def test_a_slot_holds_one_number() -> None:
    contact = Contact.objects.create(last_name="Demo")
    ContactPhone.objects.create(contact=contact, slot=1, number="210", digits="210", key="210")
    duplicate = ContactPhone(contact=contact, slot=1, number="211", digits="211", key="211")
    assert _errors(duplicate)["__all__"] == ["Phone with this Contact and Slot already exists."]
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()
    other = Contact.objects.create(last_name="Other")
    ContactPhone.objects.create(contact=other, slot=1, number="210", digits="210", key="210")


def test_a_phone_without_a_match_key_is_refused_by_the_database() -> None:
    contact = Contact.objects.create(last_name="Demo")
    with pytest.raises(IntegrityError), transaction.atomic():
        ContactPhone.objects.create(contact=contact, slot=1, number="abc", digits="", key="")


def test_a_number_longer_than_80_characters_is_refused() -> None:
    contact = Contact.objects.create(last_name="Demo")
    phone = ContactPhone(contact=contact, slot=1, number="1" * 81, digits="1", key="1")
    assert "number" in _errors(phone)


def test_the_match_key_is_indexed() -> None:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, ContactPhone._meta.db_table)
    assert any(c["index"] and c["columns"] == ["key"] for c in constraints.values())


def test_deleting_a_contact_deletes_its_phones() -> None:
    contact = Contact.objects.create(last_name="Demo")
    ContactPhone.objects.create(contact=contact, slot=1, number="210", digits="210", key="210")
    contact.delete()
    assert ContactPhone.objects.count() == 0


@pytest.mark.parametrize(
    ("first", "last", "company", "shown"),
    [
        ("Alice", "Agent", "", "Alice Agent"),
        ("Alice", "Agent", "ACME", "Alice Agent (ACME)"),
        ("", "Agent", "", "Agent"),
        ("", "", "ACME", "ACME"),
        ("Ελένη", "", "Γαλαξίας", "Ελένη (Γαλαξίας)"),
    ],
)
def test_a_contact_is_displayed_by_name_and_company(first: str, last: str, company: str, shown: str) -> None:
    contact = Contact(first_name=first, last_name=last, company=company)
    assert contact.display_name == shown
    assert str(contact) == shown


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("ΠΑΠΑΔΌΠΟΥΛΟΣ", "παπαδοπουλοσ"),
        ("Παπαδόπουλος", "παπαδοπουλοσ"),
        ("Ελένη Ζωή", "ελενη ζωη"),
        ("Προϊόν ΐ ΰ", "προιον ι υ"),
        ("Ωραίος", "ωραιοσ"),
        ("Müller", "muller"),
        ("Straße", "strasse"),
    ],
)
def test_search_folding_ignores_case_accents_and_greek_final_sigma(text: str, folded: str) -> None:
    assert fold_for_search(text) == folded


def test_a_contact_computes_its_folded_search_text_from_name_and_company() -> None:
    contact = Contact(first_name="Γιώργος", last_name="Παπαδόπουλος", company="Γαλαξίας Α.Ε.")
    assert contact.computed_search_text() == "γιωργοσ παπαδοπουλοσ γαλαξιασ α.ε."


# --- Activities --------------------------------------------------------------------------------------------------


def test_an_activity_type_stores_its_kind_including_sale_opportunity() -> None:
    ActivityType.objects.create(name="Sale opportunity", kind=ActivityKind.SALE_OPPORTUNITY, active=False)
    stored = ActivityType.objects.get(name="Sale opportunity")
    assert stored.kind == ActivityKind.SALE_OPPORTUNITY
    assert stored.active is False
    assert stored.is_sale_opportunity is True


def test_only_the_sale_opportunity_kind_is_a_sale_opportunity() -> None:
    assert ActivityType(kind=ActivityKind.SALE_OPPORTUNITY).is_sale_opportunity
    assert not ActivityType(kind=ActivityKind.PHONE_CALL).is_sale_opportunity
    assert ActivityType().kind == ActivityKind.PHONE_CALL


def test_an_activity_type_has_a_known_kind_and_a_unique_name() -> None:
    assert "kind" in _errors(ActivityType(name="Odd", kind="odd"))
    ActivityType.objects.create(name="Phone call")
    assert "name" in _errors(ActivityType(name="Phone call"))
    with pytest.raises(IntegrityError), transaction.atomic():
        ActivityType.objects.create(name="Phone call")


def test_an_activity_is_linked_to_contact_resource_call_and_campaign_with_its_items(alice: Resource) -> None:
    activity_type = ActivityType.objects.create(name="Sale opportunity", kind=ActivityKind.SALE_OPPORTUNITY)
    contact = Contact.objects.create(last_name="Demo")
    call = _call(alice)
    call.save()
    campaign = _campaign()
    campaign.save()
    campaign_item = CampaignItem.objects.create(campaign=campaign, description="Router", unit_price=Decimal("49.90"))
    activity = Activity.objects.create(
        activity_type=activity_type, subject="Call from 2101234567", notes="wants a router",
        status=ActivityStatus.DONE, starts_at=T0, contact=contact, resource=alice, call=call, campaign=campaign,
        created_by=alice.user,
    )
    ActivityItem.objects.create(activity=activity, description="Router", quantity=Decimal("2"),
                                unit_price=Decimal("49.90"), campaign_item=campaign_item, position=1)
    ActivityItem.objects.create(activity=activity, description="Cable", quantity=Decimal("3"),
                                unit_price=Decimal("1.50"), position=2)

    stored = Activity.objects.get(pk=activity.pk)
    assert stored.activity_type == activity_type
    assert (stored.subject, stored.notes, stored.status) == ("Call from 2101234567", "wants a router", "done")
    assert stored.starts_at == T0
    assert stored.contact == contact and stored.resource == alice and stored.campaign == campaign
    assert stored.call == call and Call.objects.get(pk=call.pk).activity == stored
    assert stored.created_by == alice.user and stored.created_at is not None
    assert [(i.description, i.quantity, i.unit_price, i.campaign_item, i.position) for i in stored.items.all()] == [
        ("Router", Decimal("2.00"), Decimal("49.90"), campaign_item, 1),
        ("Cable", Decimal("3.00"), Decimal("1.50"), None, 2),
    ]
    assert stored.total() == Decimal("104.30")


def test_a_call_has_at_most_one_activity(alice: Resource) -> None:
    activity_type = ActivityType.objects.create(name="Phone call")
    call = _call(alice)
    call.save()
    Activity.objects.create(activity_type=activity_type, subject="first", starts_at=T0, call=call)
    second = Activity(activity_type=activity_type, subject="second", starts_at=T0, call=call)
    assert "call" in _errors(second)
    with pytest.raises(IntegrityError), transaction.atomic():
        second.save()


def test_an_activity_needs_a_type_a_subject_and_a_start_and_a_known_status() -> None:
    errors = _errors(Activity(status="lost"))
    assert {"activity_type", "subject", "starts_at", "status"} <= set(errors)


def test_an_activity_survives_the_deletion_of_what_it_links_to(alice: Resource) -> None:
    activity_type = ActivityType.objects.create(name="Phone call")
    contact = Contact.objects.create(last_name="Demo")
    call = _call(alice)
    call.save()
    activity = Activity.objects.create(activity_type=activity_type, subject="s", starts_at=T0, contact=contact,
                                       call=call, resource=alice)
    call.delete()
    contact.delete()
    stored = Activity.objects.get(pk=activity.pk)
    assert stored.call is None and stored.contact is None and stored.resource == alice


def test_an_activity_type_in_use_cannot_be_deleted() -> None:
    activity_type = ActivityType.objects.create(name="Phone call")
    Activity.objects.create(activity_type=activity_type, subject="s", starts_at=T0)
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        activity_type.delete()


def test_item_quantities_and_prices_are_not_negative() -> None:
    item = ActivityItem(description="Router", quantity=Decimal("-1"), unit_price=Decimal("-2"))
    errors = _errors(item, exclude=["activity"])
    assert {"quantity", "unit_price"} <= set(errors)


def test_an_item_amount_is_quantity_times_unit_price() -> None:
    assert ActivityItem(quantity=Decimal("3"), unit_price=Decimal("1.50")).amount == Decimal("4.50")


# --- Campaigns ---------------------------------------------------------------------------------------------------


def test_a_campaign_stores_its_type_name_activity_dates_and_items() -> None:
    campaign = _campaign(active=False, available_from=dt.date(2026, 3, 1), available_to=dt.date(2026, 3, 31))
    campaign.full_clean()
    campaign.save()
    CampaignItem.objects.create(campaign=campaign, description="Router", quantity=Decimal("1"),
                                unit_price=Decimal("49.90"), position=1)
    stored = Campaign.objects.get(pk=campaign.pk)
    assert stored.campaign_type.name == "Call center"
    assert stored.name == "Spring offer"
    assert stored.active is False
    assert (stored.available_from, stored.available_to) == (dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    assert [(i.description, i.quantity, i.unit_price, i.position) for i in stored.items.all()] == [
        ("Router", Decimal("1.00"), Decimal("49.90"), 1)
    ]


def test_a_campaign_cannot_end_before_it_starts() -> None:
    campaign = _campaign(available_from=dt.date(2026, 4, 1), available_to=dt.date(2026, 3, 1))
    assert "“Available from” must not be after “available to”." in _errors(campaign)["__all__"]
    with pytest.raises(IntegrityError), transaction.atomic():
        campaign.save()


def test_a_campaign_may_last_a_single_day_or_be_open_ended() -> None:
    _campaign(name="One day", available_from=dt.date(2026, 4, 1), available_to=dt.date(2026, 4, 1)).full_clean()
    _campaign(name="From", available_from=dt.date(2026, 4, 1)).full_clean()
    _campaign(name="To", available_to=dt.date(2026, 4, 1)).full_clean()


def test_a_campaign_name_is_unique_within_its_type() -> None:
    _campaign().save()
    assert _errors(_campaign())["__all__"] == ["Campaign with this Campaign type and Name already exists."]
    with pytest.raises(IntegrityError), transaction.atomic():
        _campaign().save()
    other_type = CampaignType.objects.create(name="Retention")
    _campaign(campaign_type=other_type).save()


def test_a_campaign_type_name_is_unique_and_in_use_types_cannot_be_deleted() -> None:
    _campaign().save()
    assert "name" in _errors(CampaignType(name="Call center"))
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        CampaignType.objects.get(name="Call center").delete()


def test_a_campaign_item_is_deleted_with_its_campaign_and_is_not_negative() -> None:
    campaign = _campaign()
    campaign.save()
    CampaignItem.objects.create(campaign=campaign, description="Router")
    assert {"quantity", "unit_price"} <= set(
        _errors(CampaignItem(campaign=campaign, description="x", quantity=Decimal(-1), unit_price=Decimal(-1)))
    )
    campaign.delete()
    assert CampaignItem.objects.count() == 0


@pytest.mark.parametrize(
    ("active", "start", "end", "day", "available"),
    [
        (True, None, None, dt.date(2026, 3, 15), True),
        (False, None, None, dt.date(2026, 3, 15), False),
        (True, dt.date(2026, 3, 1), dt.date(2026, 3, 31), dt.date(2026, 3, 1), True),
        (True, dt.date(2026, 3, 1), dt.date(2026, 3, 31), dt.date(2026, 3, 31), True),
        (True, dt.date(2026, 3, 1), dt.date(2026, 3, 31), dt.date(2026, 2, 28), False),
        (True, dt.date(2026, 3, 1), dt.date(2026, 3, 31), dt.date(2026, 4, 1), False),
        (True, dt.date(2026, 3, 1), None, dt.date(2030, 1, 1), True),
        (True, None, dt.date(2026, 3, 31), dt.date(2020, 1, 1), True),
        (False, dt.date(2026, 3, 1), dt.date(2026, 3, 31), dt.date(2026, 3, 15), False),
    ],
)
def test_a_campaign_is_available_when_active_and_within_its_dates(
    active: bool, start: dt.date | None, end: dt.date | None, day: dt.date, available: bool
) -> None:
    campaign = Campaign(name="Spring", active=active, available_from=start, available_to=end)
    assert campaign.is_available(day) is available


# --- Calls -------------------------------------------------------------------------------------------------------


def test_a_call_stores_every_field(alice: Resource) -> None:
    contact = Contact.objects.create(last_name="Demo")
    campaign = _campaign()
    campaign.save()
    answered, ended = T0 + dt.timedelta(seconds=8), T0 + dt.timedelta(seconds=75)
    call = _call(
        alice, kind=CallKind.OUTGOING, direction=CallDirection.OUTBOUND, state=CallState.ENDED,
        answered_at=answered, ended_at=ended, duration=67, number="0 210-123 4567", number_key="2101234567",
        caller_name="Γιώργος Π.", contact=contact, campaign=campaign, extension="100",
        pbx_call_id="1700000000.42", pbx_leg_id="PJSIP/100-00000001", transferred_to="101",
        transferred_from="102", reconciled=True,
    )
    call.full_clean()
    call.save()
    activity = Activity.objects.create(activity_type=ActivityType.objects.create(name="Phone call"),
                                       subject="s", starts_at=T0, call=call)

    stored = Call.objects.get(pk=call.pk)
    assert stored.resource == alice
    assert stored.kind == CallKind.OUTGOING and stored.direction == CallDirection.OUTBOUND
    assert stored.state == CallState.ENDED
    assert (stored.started_at, stored.answered_at, stored.ended_at) == (T0, answered, ended)
    assert stored.duration == 67
    assert (stored.number, stored.number_key) == ("0 210-123 4567", "2101234567")
    assert stored.caller_name == "Γιώργος Π."
    assert stored.contact == contact and stored.campaign == campaign and stored.activity == activity
    assert (stored.extension, stored.pbx_call_id, stored.pbx_leg_id) == ("100", "1700000000.42",
                                                                          "PJSIP/100-00000001")
    assert (stored.transferred_to, stored.transferred_from) == ("101", "102")
    assert stored.reconciled is True
    assert stored.created_at is not None and stored.updated_at is not None


@pytest.mark.parametrize("kind", [CallKind.INCOMING, CallKind.OUTGOING, CallKind.MISSED, CallKind.INTERNAL])
def test_every_call_type_is_stored(alice: Resource, kind: str) -> None:
    call = _call(alice, kind=kind)
    call.full_clean()
    call.save()
    assert Call.objects.get(pk=call.pk).kind == kind


def test_a_call_of_an_unknown_type_direction_or_state_is_refused() -> None:
    errors = _errors(_call(kind="lost", direction="sideways", state="gone"))
    assert {"kind", "direction", "state"} <= set(errors)


def test_a_call_needs_a_start_an_extension_and_a_pbx_call_id() -> None:
    errors = _errors(_call(started_at=None, extension="", pbx_call_id=""))
    assert {"started_at", "extension", "pbx_call_id"} <= set(errors)


def test_a_call_without_a_resource_is_kept() -> None:
    call = _call(None)
    call.full_clean()
    call.save()
    assert Call.objects.get(pk=call.pk).resource is None


def test_a_call_is_stored_once_per_pbx_call_and_extension(alice: Resource, bob: Resource) -> None:
    _call(alice, extension="100").save()
    _call(bob, extension="101").save()
    duplicate = _call(alice, extension="100")
    assert _errors(duplicate)["__all__"] == ["Call with this PBX call id and Extension already exists."]
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()
    assert Call.objects.count() == 2


def test_a_call_cannot_be_answered_or_end_before_it_started() -> None:
    before = T0 - dt.timedelta(seconds=1)
    assert "call_answered_after_start" in _errors(_call(answered_at=before))["__all__"][0]
    with pytest.raises(IntegrityError), transaction.atomic():
        _call(answered_at=before).save()
    with pytest.raises(IntegrityError), transaction.atomic():
        _call(ended_at=before).save()


def test_a_negative_duration_is_refused() -> None:
    assert "duration" in _errors(_call(duration=-1))


def test_deleting_a_resource_or_contact_keeps_its_calls(alice: Resource) -> None:
    contact = Contact.objects.create(last_name="Demo")
    call = _call(alice, contact=contact)
    call.save()
    contact.delete()
    alice.delete()
    stored = Call.objects.get(pk=call.pk)
    assert stored.resource is None and stored.contact is None


def test_talk_time_runs_from_answer_to_hang_up() -> None:
    call = _call(answered_at=T0 + dt.timedelta(seconds=5), ended_at=T0 + dt.timedelta(seconds=65))
    assert call.talk_seconds() == 60


def test_a_call_never_answered_has_no_talk_time() -> None:
    assert _call(ended_at=T0 + dt.timedelta(seconds=30)).talk_seconds() == 0
    assert _call(ended_at=T0 + dt.timedelta(seconds=30), duration=12).talk_seconds() == 0


def test_a_call_in_progress_counts_its_talk_time_up_to_now() -> None:
    call = _call(answered_at=T0, state=CallState.UP)
    assert call.talk_seconds(now=T0 + dt.timedelta(minutes=2, seconds=3)) == 123
    assert call.in_progress is True


def test_a_call_in_progress_without_a_clock_reports_its_stored_duration() -> None:
    assert _call(answered_at=T0, duration=17).talk_seconds() == 17


def test_a_clock_behind_the_answer_gives_no_negative_talk_time() -> None:
    assert _call(answered_at=T0).talk_seconds(now=T0 - dt.timedelta(seconds=5)) == 0


def test_an_ended_call_is_not_in_progress() -> None:
    assert _call(state=CallState.ENDED).in_progress is False
    assert _call(state=CallState.RINGING).in_progress is True


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00:00"), (5, "0:00:05"), (65, "0:01:05"), (3600, "1:00:00"), (3725, "1:02:05"), (36000, "10:00:00"),
     (-3, "0:00:00")],
)
def test_a_duration_is_shown_as_h_mm_ss(seconds: int, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_a_call_is_described_by_type_number_and_start() -> None:
    assert str(_call(kind=CallKind.MISSED, number="2101234567")) == "missed 2101234567 2026-03-02 09:30"
