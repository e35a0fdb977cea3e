"""``callcenter seed-demo``: idempotent, deterministic demo data that the rest of the product can be shown with."""

from __future__ import annotations

import datetime as dt
import io
import re
import unicodedata

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.forms.models import model_to_dict
from django.test import Client
from django.utils import timezone

from callcenter import numbers
from callcenter.activities.models import ActivityKind, ActivityType
from callcenter.campaigns.actions import available_campaigns
from callcenter.campaigns.models import Campaign, CampaignItem, CampaignType
from callcenter.contacts.actions import match_caller
from callcenter.contacts.models import Contact, ContactPhone
from callcenter.crm import demo
from callcenter.resources.models import CallCenterSettings, PhoneSystem, Resource

LOGIN_LINE = re.compile(r"^\s+(\w+)\s+/\s+(\S+)\s+(.+)$")


def _seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _snapshot() -> dict[str, object]:
    """Everything seeding writes, as plain values."""
    return {
        "users": sorted(User.objects.values_list("username", "first_name", "last_name", "email", "is_staff",
                                                 "is_superuser", "password")),
        "resources": sorted(
            tuple(sorted(model_to_dict(r, exclude=["id"]).items())) for r in Resource.objects.all()
        ),
        "contacts": sorted(Contact.objects.values_list("id", "first_name", "last_name", "company", "email",
                                                       "search_text", "updated_at")),
        "phones": sorted(ContactPhone.objects.values_list("contact_id", "slot", "number", "digits", "key")),
        "activity_types": sorted(ActivityType.objects.values_list("id", "name", "kind", "active")),
        "campaign_types": sorted(CampaignType.objects.values_list("id", "name")),
        "campaigns": sorted(Campaign.objects.values_list("id", "campaign_type_id", "name", "active",
                                                         "available_from", "available_to")),
        "items": sorted(CampaignItem.objects.values_list("id", "campaign_id", "position", "description",
                                                         "quantity", "unit_price")),
        "settings": sorted(model_to_dict(CallCenterSettings.load()).items()),
    }


def _is_greek(text: str) -> bool:
    return any("GREEK" in unicodedata.name(ch, "") for ch in text)


@pytest.mark.django_db
def test_seeding_twice_adds_and_changes_nothing() -> None:
    _seed()
    first = _snapshot()
    second_output = _seed()
    assert _snapshot() == first
    assert "300 contacts (0 new)" in second_output
    assert Contact.objects.count() == demo.DEFAULT_CONTACTS
    assert User.objects.count() == 3 and Resource.objects.count() == 3
    assert ActivityType.objects.count() == 2 and CampaignType.objects.count() == 1
    assert Campaign.objects.count() == 2 and CampaignItem.objects.count() == 6


@pytest.mark.django_db
def test_seeding_on_a_later_day_keeps_a_campaign_that_is_still_available() -> None:
    today = timezone.localdate()
    demo.seed(20, today=today)
    before = _snapshot()
    demo.seed(20, today=today + dt.timedelta(days=30))
    assert _snapshot() == before


@pytest.mark.django_db
def test_seeding_long_after_moves_the_active_campaign_back_around_today() -> None:
    today = timezone.localdate()
    demo.seed(10, today=today - dt.timedelta(days=400))
    demo.seed(10, today=today)
    call_center = CampaignType.objects.get(name=demo.CAMPAIGN_TYPE)
    assert [c.name for c in available_campaigns(call_center, today)] == [demo.ACTIVE_CAMPAIGN]
    assert Campaign.objects.count() == 2


@pytest.mark.django_db
def test_the_printed_logins_work_for_alice_bob_and_carol() -> None:
    output = _seed("--contacts", "10")
    logins = {m.group(1): (m.group(2), m.group(3)) for m in map(LOGIN_LINE.match, output.splitlines()) if m}
    assert set(logins) == {"alice", "bob", "carol"}
    for username, (password, _role) in logins.items():
        client = Client()
        assert client.login(username=username, password=password), username
        assert client.get("/").status_code == 200
    assert "extension 100" in logins["alice"][1] and "extension 101" in logins["bob"][1]
    assert logins["carol"][1] == "administrator"
    assert not Client().login(username="alice", password="demo-bob")


@pytest.mark.django_db
def test_the_people_and_their_call_center_options() -> None:
    _seed("--contacts", "10")
    alice, bob, carol = (Resource.objects.get(user__username=name) for name in ("alice", "bob", "carol"))
    assert (alice.extension, bob.extension) == ("100", "101")
    assert not alice.is_administrator and not bob.is_administrator
    assert carol.is_administrator and carol.user.is_staff and carol.user.is_superuser
    for resource in (alice, bob, carol):
        assert resource.cc_active
        assert (resource.service_address, resource.service_port) == ("127.0.0.1", 5050)
        assert (resource.internal_address, resource.internal_port) == ("127.0.0.1", 8000)
        assert resource.notify_new_call and resource.notification_seconds > 0


@pytest.mark.django_db
def test_seeding_restores_a_changed_demo_password() -> None:
    _seed("--contacts", "5")
    alice = User.objects.get(username="alice")
    alice.set_password("something else")
    alice.save()
    _seed("--contacts", "5")
    assert Client().login(username="alice", password="demo-alice")


@pytest.mark.django_db
def test_the_callers_of_the_ami_captures_are_known_contacts() -> None:
    _seed()
    (giorgos,) = match_caller("00302101234567")
    assert (giorgos.first_name, giorgos.last_name) == ("Γιώργος", "Παπαδόπουλος")
    assert len(match_caller("+302107654321")) == 1
    assert len(match_caller("00302109876543")) == 1
    # The switchboard shared by two colleagues: one caller, two contacts to choose from.
    assert {c.first_name for c in match_caller("2310555010")} == {"Ελένη", "Κώστας"}


@pytest.mark.django_db
def test_greek_and_english_names_are_stored_intact_and_searchable() -> None:
    _seed()
    contacts = list(Contact.objects.all())
    greek = [c for c in contacts if _is_greek(c.first_name + c.last_name)]
    english = [c for c in contacts if (c.first_name + c.last_name).isascii()]
    assert len(greek) > len(contacts) / 2 and len(english) > len(contacts) / 10
    assert len(greek) + len(english) == len(contacts)
    stored = Contact.objects.get(email=demo.KNOWN_CONTACTS[0].email)
    assert stored.display_name == "Γιώργος Παπαδόπουλος"
    assert stored.search_text == "γιωργοσ παπαδοπουλοσ"
    assert Contact.objects.filter(last_name="Παπαδοπούλου").exists()  # women carry the female form


@pytest.mark.django_db
def test_the_numbers_look_like_greek_numbers_written_in_many_ways() -> None:
    _seed()
    phones = list(ContactPhone.objects.all())
    national = [p.digits[-10:] for p in phones]
    greek = [n for n in national if n.startswith("2") or n.startswith("69")]
    assert len(greek) >= len(phones) - 1  # one London number
    assert sum(n.startswith("69") for n in national) > len(phones) / 4
    assert sum(n.startswith("21") for n in national) > 10
    assert sum(n.startswith("23") for n in national) > 10
    assert all(len(p.digits) in (10, 12, 14) for p in phones)
    raw = [p.number for p in phones]
    assert sum(r.startswith("+30") for r in raw) > 10
    assert sum(r.startswith("0030") for r in raw) > 10
    assert sum(" " in r for r in raw) > 10 and sum(r.isdigit() and len(r) == 10 for r in raw) > 10
    assert any("-" in r for r in raw) and any("." in r for r in raw)
    per_contact = [c.phones.count() for c in Contact.objects.all()]
    assert {1, 2, 3, 4} <= set(per_contact)
    assert 3 <= per_contact.count(4) <= len(per_contact) // 5
    assert all(p.key == numbers.digits_only(p.number)[-10:] for p in phones)


def test_the_contacts_are_the_same_on_every_run_and_for_every_count() -> None:
    assert demo.demo_contacts(300) == demo.demo_contacts(300)
    assert demo.demo_contacts(300)[:80] == demo.demo_contacts(80)
    assert len(demo.demo_contacts(2)) == len(demo.KNOWN_CONTACTS)
    emails = [spec.email for spec in demo.demo_contacts(1000)]
    assert len(set(emails)) == len(emails)


@pytest.mark.django_db
def test_a_smaller_count_seeds_that_many_contacts_and_a_larger_one_adds_the_rest() -> None:
    assert "25 contacts (25 new)" in _seed("--contacts", "25")
    first_25 = set(Contact.objects.values_list("email", flat=True))
    assert "40 contacts (15 new)" in _seed("--contacts", "40")
    assert first_25 < set(Contact.objects.values_list("email", flat=True))


@pytest.mark.django_db
def test_a_negative_count_is_refused_with_a_message() -> None:
    with pytest.raises(CommandError, match="--contacts -1"):
        _seed("--contacts", "-1")
    assert not Contact.objects.exists()


@pytest.mark.django_db
def test_the_activity_types_campaigns_and_call_center_settings() -> None:
    _seed("--contacts", "5")
    phone_call = ActivityType.objects.get(name="Phone call")
    sale = ActivityType.objects.get(name="Sale opportunity")
    assert phone_call.kind == ActivityKind.PHONE_CALL and sale.kind == ActivityKind.SALE_OPPORTUNITY
    call_center = CampaignType.objects.get(name="Call center")
    today = timezone.localdate()
    (active,) = available_campaigns(call_center, today)
    assert active.items.count() == 3 and all(item.unit_price >= 0 for item in active.items.all())
    expired = Campaign.objects.exclude(pk=active.pk).get(campaign_type=call_center)
    assert expired.active and expired.available_to < today and not expired.is_available(today)
    settings = CallCenterSettings.load()
    assert settings.phone_system == PhoneSystem.ASTERISK
    assert (settings.digits_to_scan, settings.internal_digits) == (10, 3)
    assert settings.incoming_activity_type == phone_call
    assert settings.outgoing_activity_type == phone_call
    assert settings.default_activity_type == phone_call
    assert settings.campaign_type == call_center
