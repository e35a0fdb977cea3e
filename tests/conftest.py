"""Shared test people, as in the conventions: agent Alice (ext 100), agent Bob (ext 101), administrator Carol."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import translation

from callcenter.resources.models import CallCenterSettings, Resource

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _default_language() -> Iterator[None]:
    """Every test starts in the default language: LocaleMiddleware activates a request's language on the test's own
    thread and never deactivates it, so one test's Greek page would otherwise make the next test's messages Greek."""
    with translation.override(settings.LANGUAGE_CODE):
        yield


def wait_past_midnight(now: dt.datetime) -> float:
    """Seconds to wait before a test may run at local time ``now``: from two minutes before local midnight until
    three minutes after it, until 00:03; otherwise 0."""
    minute_of_day = now.hour * 60 + now.minute
    if 3 <= minute_of_day < 24 * 60 - 2:
        return 0.0
    day = now.date() if minute_of_day < 3 else now.date() + dt.timedelta(days=1)
    return (dt.datetime.combine(day, dt.time(0, 3), tzinfo=now.tzinfo) - now).total_seconds()


@pytest.fixture(autouse=True)
def _not_across_midnight() -> None:
    """Tests make calls a few minutes in the past and read the screen's list, which shows today's by default: a test
    running across local midnight would see yesterday's calls vanish. Such a test waits until 00:03 instead."""
    time.sleep(wait_past_midnight(dt.datetime.now(zoneinfo.ZoneInfo(settings.TIME_ZONE))))


def _resource(username: str, first: str, last: str, extension: str | None, *, admin: bool = False) -> Resource:
    user = User.objects.create_user(
        username, password=PASSWORD, first_name=first, last_name=last, is_staff=admin, is_superuser=admin
    )
    return Resource.objects.create(user=user, extension=extension, is_administrator=admin, cc_active=True)


@pytest.fixture
def alice(db: None) -> Resource:
    return _resource("alice", "Alice", "Agent", "100")


@pytest.fixture
def bob(db: None) -> Resource:
    return _resource("bob", "Bob", "Agent", "101")


@pytest.fixture
def carol(db: None) -> Resource:
    return _resource("carol", "Carol", "Supervisor", "199", admin=True)


@pytest.fixture
def cc_settings(db: None) -> CallCenterSettings:
    return CallCenterSettings.load()
