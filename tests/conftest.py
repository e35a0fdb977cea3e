"""Shared test people, as in the conventions: agent Alice (ext 100), agent Bob (ext 101), administrator Carol."""

from __future__ import annotations

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
