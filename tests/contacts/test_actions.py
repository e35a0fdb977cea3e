"""Contacts and their four phone slots, written only through contacts.actions, and caller matching (S-3.2, S-4.17)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from callcenter.contacts.actions import (
    AllSlotsFull,
    MatchRules,
    create_contact,
    match_caller,
    put_number_in_slot,
    rekey_phones,
    set_phones,
    update_contact,
)
from callcenter.contacts.models import Contact, ContactPhone
from callcenter.resources.models import CallCenterSettings, Resource
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

BAD_INPUT = [
    None,
    "",
    "   ",
    "abc",
    "<script>alert('x')</script>",
    "'; DROP TABLE contacts_contact; --",
    "Καλημέρα σας",
    "1" * 300,
]


def _slots(contact: Contact) -> dict[int, tuple[str, str]]:
    return {phone.slot: (phone.number, phone.key) for phone in ContactPhone.objects.filter(contact=contact)}


def _settings(**fields: object) -> CallCenterSettings:
    settings = CallCenterSettings.load()
    for name, value in fields.items():
        setattr(settings, name, value)
    settings.save()
    return settings


# --- creating contacts and filling slots ---------------------------------------------------------------------------


def test_it_creates_a_contact_with_its_numbers_in_slots_from_one() -> None:
    contact = create_contact(first_name=" Γιώργος ", last_name="Παπαδόπουλος ",
                             phones=["+30 210 123 4567", "0030 69 1234 5678"])
    stored = Contact.objects.get(pk=contact.pk)
    assert (stored.first_name, stored.last_name) == ("Γιώργος", "Παπαδόπουλος")
    assert stored.search_text == "γιωργοσ παπαδοπουλοσ"
    assert _slots(stored) == {1: ("+30 210 123 4567", "2101234567"), 2: ("0030 69 1234 5678", "6912345678")}
    assert ContactPhone.objects.get(contact=stored, slot=2).digits == "00306912345678"


def test_it_keys_numbers_by_the_current_digits_to_scan() -> None:
    _settings(digits_to_scan=7)
    contact = create_contact(company="ACME", phones={3: "210 123 4567"})
    assert _slots(contact) == {3: ("210 123 4567", "1234567")}


def test_it_refuses_a_contact_without_a_name_and_stores_nothing() -> None:
    with pytest.raises(ValidationError) as caught:
        create_contact(phones=["2101234567"])
    assert "Give the contact a first name, a last name or a company." in caught.value.messages
    assert Contact.objects.count() == 0 and ContactPhone.objects.count() == 0


@pytest.mark.parametrize("number", ["abc", "<script>alert('x')</script>", "'; DROP TABLE x; --", "Καλημέρα"])
def test_it_refuses_a_number_without_digits_and_stores_nothing(number: str) -> None:
    with pytest.raises(ValidationError) as caught:
        create_contact(last_name="Demo", phones=[number])
    assert "holds no digits" in caught.value.messages[0]
    assert Contact.objects.count() == 0 and ContactPhone.objects.count() == 0


def test_it_refuses_an_over_long_number() -> None:
    with pytest.raises(ValidationError) as caught:
        create_contact(last_name="Demo", phones=["1" * 300])
    assert caught.value.messages == ["A phone number has at most 80 characters."]
    assert Contact.objects.count() == 0


def test_it_refuses_a_fifth_number() -> None:
    with pytest.raises(ValidationError) as caught:
        create_contact(last_name="Demo", phones=["2101", "2102", "2103", "2104", "2105"])
    assert caught.value.messages == ["A contact has at most 4 phone numbers."]
    assert Contact.objects.count() == 0


def test_it_refuses_slot_five() -> None:
    contact = create_contact(last_name="Demo")
    with pytest.raises(ValidationError) as caught:
        set_phones(contact, {5: "2101234567"})
    assert caught.value.messages == ["A contact has phone slots 1 to 4, not 5."]
    assert ContactPhone.objects.count() == 0


def test_setting_phones_replaces_the_named_slots_clears_empty_ones_and_keeps_the_rest() -> None:
    contact = create_contact(last_name="Demo", phones=["2101111111", "2102222222", "2103333333"])
    set_phones(contact, {1: "2109999999", 2: "", 4: "2104444444"})
    assert _slots(contact) == {
        1: ("2109999999", "2109999999"),
        3: ("2103333333", "2103333333"),
        4: ("2104444444", "2104444444"),
    }


def test_updating_a_contact_refolds_its_search_text() -> None:
    contact = create_contact(last_name="Demo")
    update_contact(contact, first_name=" Ελένη ", company="Γαλαξίας")
    stored = Contact.objects.get(pk=contact.pk)
    assert stored.first_name == "Ελένη"
    assert stored.search_text == "ελενη demo γαλαξιασ"


def test_updating_a_contact_to_no_name_is_refused() -> None:
    contact = create_contact(last_name="Demo")
    with pytest.raises(ValidationError):
        update_contact(contact, last_name="  ")
    assert Contact.objects.get(pk=contact.pk).last_name == "Demo"


# --- S-4.17: the call's number into a slot -----------------------------------------------------------------------


def test_a_number_goes_into_the_first_free_slot() -> None:
    contact = create_contact(last_name="Demo", phones={1: "2101111111", 3: "2103333333"})
    assert put_number_in_slot(contact, "+30 210 555 0000") == 2
    assert _slots(contact)[2] == ("+30 210 555 0000", "2105550000")


def test_a_number_already_in_a_slot_is_not_stored_twice() -> None:
    contact = create_contact(last_name="Demo", phones=["210 555 0000"])
    assert put_number_in_slot(contact, "0030 (210) 555-0000") is None
    assert _slots(contact) == {1: ("210 555 0000", "2105550000")}


def test_when_all_four_slots_are_full_it_asks_which_to_replace() -> None:
    contact = create_contact(last_name="Demo", phones=["2101111111", "2102222222", "2103333333", "2104444444"])
    with pytest.raises(AllSlotsFull) as caught:
        put_number_in_slot(contact, "2105550000")
    assert caught.value.contact.pk == contact.pk
    assert "all 4 phone slots" in str(caught.value)
    assert [number for number, _key in _slots(contact).values()] == [
        "2101111111", "2102222222", "2103333333", "2104444444"
    ]


def test_the_chosen_slot_is_replaced() -> None:
    contact = create_contact(last_name="Demo", phones=["2101111111", "2102222222", "2103333333", "2104444444"])
    assert put_number_in_slot(contact, "2105550000", replace_slot=3) == 3
    assert _slots(contact)[3] == ("2105550000", "2105550000")
    assert len(_slots(contact)) == 4
    assert match_caller("2103333333") == []
    assert match_caller("2105550000") == [contact]


def test_a_number_already_there_is_not_moved_into_the_slot_to_replace() -> None:
    contact = create_contact(last_name="Demo", phones=["2101111111", "2102222222", "2103333333", "2104444444"])
    assert put_number_in_slot(contact, "2102222222", replace_slot=1) is None
    assert _slots(contact)[1] == ("2101111111", "2101111111")


@pytest.mark.parametrize("slot", [0, 5])
def test_replacing_a_slot_that_does_not_exist_is_refused(slot: int) -> None:
    contact = create_contact(last_name="Demo", phones=["2101111111", "2102222222", "2103333333", "2104444444"])
    with pytest.raises(ValidationError):
        put_number_in_slot(contact, "2105550000", replace_slot=slot)
    assert len(_slots(contact)) == 4


@pytest.mark.parametrize("number", ["", "abc", "<script>", "1" * 300])
def test_a_bad_number_is_not_put_in_a_slot(number: str) -> None:
    contact = create_contact(last_name="Demo")
    with pytest.raises(ValidationError):
        put_number_in_slot(contact, number)
    assert ContactPhone.objects.count() == 0


# --- rekeying when "digits to scan" changes ----------------------------------------------------------------------


def test_rekeying_recomputes_every_match_key_from_the_stored_digits() -> None:
    long = create_contact(last_name="Long", phones=["+30 210 123 4567"])
    short = create_contact(last_name="Short", phones=["12345"])
    assert rekey_phones(7) == 2
    assert _slots(long) == {1: ("+30 210 123 4567", "1234567")}
    assert _slots(short) == {1: ("12345", "12345")}
    rekey_phones(15)
    assert _slots(long) == {1: ("+30 210 123 4567", "302101234567")}


@pytest.mark.parametrize("digits", [3, 16])
def test_rekeying_to_an_invalid_digits_to_scan_is_refused(digits: int) -> None:
    contact = create_contact(last_name="Demo", phones=["2101234567"])
    with pytest.raises(ValueError, match="4-15"):
        rekey_phones(digits)
    assert _slots(contact) == {1: ("2101234567", "2101234567")}


def test_changing_digits_to_scan_on_the_settings_page_rekeys_the_phones(carol: Resource) -> None:
    contact = create_contact(last_name="Demo", phones=["+30 210 123 4567"])
    client = Client()
    client.login(username="carol", password=PASSWORD)
    form = {
        "phone_system": "asterisk", "digits_to_scan": "8", "call_prefix": "", "internal_digits": "3",
        "phone_region": "GR",
    }
    response = client.post(reverse("call_center_settings"), form)
    assert response.status_code == 302
    assert CallCenterSettings.load().digits_to_scan == 8
    assert _slots(contact) == {1: ("+30 210 123 4567", "01234567")}
    assert match_caller("99 01234567") == [contact]


def test_saving_the_settings_page_without_changing_digits_leaves_keys_alone(carol: Resource) -> None:
    contact = create_contact(last_name="Demo", phones=["2101234567"])
    ContactPhone.objects.filter(contact=contact).update(key="marker")
    client = Client()
    client.login(username="carol", password=PASSWORD)
    form = {"phone_system": "none", "digits_to_scan": "10", "internal_digits": "3", "phone_region": "GR"}
    assert client.post(reverse("call_center_settings"), form).status_code == 302
    assert _slots(contact)[1][1] == "marker"


# --- caller matching ---------------------------------------------------------------------------------------------


def test_a_caller_matches_the_contact_with_that_number_in_any_slot() -> None:
    contact = create_contact(last_name="Demo", phones={4: "+30 210 123 4567"})
    create_contact(last_name="Other", phones=["2109999999"])
    assert match_caller("2101234567") == [contact]
    assert match_caller("00302101234567") == [contact]
    assert match_caller("(210) 123-4567") == [contact]


def test_the_spec_example_matches_on_the_last_ten_digits() -> None:
    contact = create_contact(last_name="Demo", phones=["1234567890"])
    assert match_caller("00301234567890") == [contact]


def test_every_contact_with_the_number_is_returned_for_the_caller_to_choose() -> None:
    first = create_contact(last_name="First", phones=["2101234567"])
    second = create_contact(last_name="Second", phones={3: "+30 210 1234567"})
    create_contact(last_name="Third", phones=["2107654321"])
    assert match_caller("2101234567") == [first, second]
    assert match_caller("2101234567", limit=1) == [first]


def test_a_contact_with_the_number_in_two_slots_is_returned_once() -> None:
    contact = create_contact(last_name="Demo", phones=["2101234567", "+30 2101234567"])
    assert match_caller("2101234567") == [contact]


def test_an_unknown_number_matches_nobody() -> None:
    create_contact(last_name="Demo", phones=["2101234567"])
    assert match_caller("2107654321") == []


def test_a_short_number_compares_whole() -> None:
    short = create_contact(last_name="Short", phones=["12345"])
    create_contact(last_name="Longer", phones=["9912345"])
    assert match_caller("12345") == [short]
    assert match_caller("9912345") != [short]


def test_internal_numbers_never_match_a_contact() -> None:
    create_contact(last_name="Odd", phones=["101"])
    assert match_caller("101") == []
    assert match_caller("101", dialled=True) == []


def test_the_call_prefix_is_stripped_only_from_dialled_numbers() -> None:
    _settings(call_prefix="0")
    nine_digits = create_contact(last_name="Nine", phones=["123456789"])
    with_zero = create_contact(last_name="Zero", phones=["0123456789"])
    assert match_caller("0123456789", dialled=True) == [nine_digits]
    assert match_caller("0123456789") == [with_zero]


def test_matching_follows_the_rules_it_is_given() -> None:
    contact = create_contact(last_name="Demo", phones=["+30 210 123 4567"],
                             rules=MatchRules(digits_to_scan=7, prefix="", internal_digits=3))
    rules = MatchRules(digits_to_scan=7, prefix="", internal_digits=3)
    assert match_caller("999 123 4567", rules=rules) == [contact]


@pytest.mark.parametrize("raw", BAD_INPUT)
def test_bad_input_is_a_safe_no_match(raw: str | None) -> None:
    create_contact(last_name="Demo", phones=["2101234567"])
    assert match_caller(raw) == []
    assert match_caller(raw, dialled=True) == []
    assert Contact.objects.count() == 1


def test_digits_inside_sql_looking_text_are_matched_as_digits_only() -> None:
    contact = create_contact(last_name="Demo", phones=["2101234567"])
    assert match_caller("2101234567'; DROP TABLE contacts_contact; --") == [contact]
    assert Contact.objects.count() == 1
