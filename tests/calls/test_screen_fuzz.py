"""Every page and form of the CRM, fuzzed with hostile values as a logged-in agent, another agent and an
administrator (CSRF enforced): never a 5xx, and a refused request stores nothing. Per target: the well-formed requests
of the pages' own forms, then 50 derandomized hostile ones (CALLCENTER_FUZZ_EXAMPLES sets more; 200 per target take
about 8 minutes per database pass on the 2-core machine); `make proof` (proof/screen_fuzz.py) runs 200 per target on
SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from proof.screen_fuzz import Finding, Session, Tally, build_world, fuzz_target, targets

EXAMPLES = int(os.environ.get("CALLCENTER_FUZZ_EXAMPLES", "50"))
TARGETS = {target.name: target for target in targets()}


@pytest.fixture(scope="module")
def session(django_db_setup: None, django_db_blocker: Any) -> Iterator[Session]:
    """One world for the module (its pages are read once to learn their forms), rolled back at the end; each
    example runs in a savepoint of its own on top of it."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield Session(build_world())
        transaction.set_rollback(True)


def test_the_urlconf_is_walked_not_listed() -> None:
    """New pages get fuzzed without being named: the walk finds the screen, its actions, the settings and the admin,
    and leaves out only the signed bridge endpoint."""
    routes = {route.route for target in TARGETS.values() for route in target.routes}
    assert {"callcenter/", "callcenter/dial/", "callcenter/calls/<int:pk>/link/new/", "settings/call-center/",
            "resources/<int:pk>/options/", "activities/<int:pk>/", "login/", "i18n/setlang/"} <= routes
    assert any(name.startswith("admin ") for name in TARGETS)
    assert "bridge/v1/events" not in routes


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_5xx_and_nothing_stored_when_refused(session: Session, name: str) -> None:
    tally = Tally()
    fuzz_target(TARGETS[name], session, tally, EXAMPLES)
    assert tally.requests >= EXAMPLES


@pytest.mark.django_db
def test_the_fuzz_finds_a_planted_server_error(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: a Busy that raises on the way to the bridge is found and reported as a 500."""
    from callcenter.calls import actions

    def broken(resource: object, busy: bool) -> object:
        raise ValueError("planted")

    monkeypatch.setattr(actions, "set_busy", broken)
    with pytest.raises(Finding, match="500 .*ValueError: planted"):
        fuzz_target(TARGETS["calls:busy"], session, Tally(), EXAMPLES)


@pytest.mark.django_db
def test_the_fuzz_finds_a_planted_write_by_a_refused_request(session: Session, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """The check can fail: a Busy that stores a row and then reports a refusal is found, naming the table."""
    from callcenter import wire
    from callcenter.calls import actions
    from callcenter.contacts.models import Contact

    def leaky(resource: object, busy: bool) -> wire.CommandResult:
        Contact.objects.create(company="leaked")
        return wire.CommandResult(command_id="", ok=False, error_id="refused", message="refused")

    monkeypatch.setattr(actions, "set_busy", leaky)
    with pytest.raises(Finding, match=r"stored rows in \['contacts.Contact'\]"):
        fuzz_target(TARGETS["calls:busy"], session, Tally(), EXAMPLES)
