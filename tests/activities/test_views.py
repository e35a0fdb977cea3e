"""The activity page (opened from the Call Center screen): its fields and items, with the calls' visibility rules."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from callcenter.activities.models import Activity, ActivityItem
from callcenter.calls.models import Call
from callcenter.contacts.actions import create_contact
from tests.calls.screen_support import call_ended, client_for

pytestmark = pytest.mark.django_db

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def activity(alice, cc_settings, db):
    from callcenter.activities.models import ActivityKind, ActivityType
    from callcenter.resources.models import PhoneSystem

    cc_settings.phone_system = PhoneSystem.ASTERISK
    cc_settings.incoming_activity_type = ActivityType.objects.create(name="Sale", kind=ActivityKind.SALE_OPPORTUNITY)
    cc_settings.save()
    create_contact(first_name=XSS, phones=["2101234567"])
    call_ended("100")
    activity = Activity.objects.get()
    ActivityItem.objects.create(activity=activity, description="Fibre 200", quantity=2, unit_price=Decimal("30"),
                                position=1)
    ActivityItem.objects.create(activity=activity, description=XSS, quantity=1, unit_price=Decimal("5"), position=2)
    return activity


def test_it_shows_the_activity_with_its_items_and_total_escaped(alice, activity):
    response = client_for(alice).get(reverse("activities:detail", args=[activity.pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Fibre 200" in page and "65.00" in page and "Sale" in page
    assert XSS not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert f"?call={Call.objects.get().pk}" in page


def test_another_agent_gets_a_404_and_an_administrator_sees_it(alice, bob, carol, activity):
    url = reverse("activities:detail", args=[activity.pk])
    assert client_for(bob).get(url).status_code == 404
    assert client_for(carol).get(url).status_code == 200
    assert client_for(alice).get(reverse("activities:detail", args=[activity.pk + 1000])).status_code == 404


def test_anonymous_users_are_sent_to_log_in(activity):
    response = Client().get(reverse("activities:detail", args=[activity.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
