"""Login throttling on the CRM (issue 11, finding 4): per account and address, in the database (so it holds across
CRM processes), with a message saying when to try again, and never blocking the other users."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from django.test import Client
from django.utils import timezone, translation

from callcenter.crm import login
from callcenter.crm.models import LoginFailure
from callcenter.resources.models import Resource
from tests.conftest import PASSWORD

ATTACKER = "203.0.113.9"
ALICE_DESK = "192.0.2.10"
BOB_DESK = "192.0.2.11"
LOCKED = "Too many failed log-ins"


def _post(address: str, username: str, password: str, path: str = "/login/", client: Client | None = None) -> str:
    response = (client or Client()).post(path, {"username": username, "password": password},
                                         REMOTE_ADDR=address)
    if response.status_code == 302:
        return "logged in"
    return response.content.decode()


def _fail(times: int, address: str, username: str = "alice") -> None:
    for _ in range(times):
        assert "logged in" != _post(address, username, "wrong-password")


def test_five_wrong_passwords_lock_the_account_from_that_address_even_for_the_right_one(
    alice: Resource, bob: Resource
) -> None:
    _fail(4, ATTACKER)
    _fail(1, ATTACKER)
    page = _post(ATTACKER, "alice", PASSWORD)
    assert page != "logged in" and LOCKED in page
    until = timezone.localtime(timezone.now() + login.LOCK).strftime("%H:%M")
    assert re.search(r"Try again at \d\d:\d\d \(in 1[45] minutes\)", page), page
    assert until[:2] in page
    # The other users: bob from his own desk, and alice from hers, log in as usual.
    assert _post(BOB_DESK, "bob", PASSWORD) == "logged in"
    assert _post(ALICE_DESK, "alice", PASSWORD) == "logged in"


def test_the_lock_lifts_after_fifteen_minutes_and_a_success_clears_the_count(alice: Resource) -> None:
    _fail(5, ATTACKER)
    LoginFailure.objects.update(at=timezone.now() - login.LOCK - dt.timedelta(seconds=1))
    assert _post(ATTACKER, "alice", PASSWORD) == "logged in"
    assert not LoginFailure.objects.filter(address=ATTACKER, username="alice").exists()


def test_the_fifth_failure_already_says_when_to_try_again(alice: Resource) -> None:
    _fail(3, ATTACKER)
    assert LOCKED not in _post(ATTACKER, "alice", "wrong")
    assert LOCKED in _post(ATTACKER, "alice", "wrong")


def test_many_accounts_from_one_address_lock_that_address_but_not_known_users_there(
    alice: Resource, bob: Resource
) -> None:
    assert _post(BOB_DESK, "bob", PASSWORD) == "logged in"  # bob normally works from here
    for n in range(login.ADDRESS_LIMIT):
        _post(BOB_DESK, f"guess{n}", "wrong")
    assert LOCKED in _post(BOB_DESK, "alice", PASSWORD)  # never logged in from there: locked
    assert _post(BOB_DESK, "bob", PASSWORD) == "logged in"  # a known user of that address: not blocked
    assert _post(ALICE_DESK, "alice", PASSWORD) == "logged in"


def test_an_account_attacked_from_many_addresses_still_works_from_its_usual_place(alice: Resource) -> None:
    assert _post(ALICE_DESK, "alice", PASSWORD) == "logged in"
    for n in range(login.ACCOUNT_LIMIT):
        _post(f"198.51.100.{n + 1}", "alice", "wrong")
    assert LOCKED in _post("198.51.100.200", "alice", PASSWORD)
    assert _post(ALICE_DESK, "alice", PASSWORD) == "logged in"


def test_the_admin_login_is_throttled_too(carol: Resource) -> None:
    _fail(5, ATTACKER, "carol")
    assert LOCKED in _post(ATTACKER, "carol", PASSWORD, path="/admin/login/?next=/admin/")


def test_the_message_is_in_greek_for_greek_users(alice: Resource) -> None:
    _fail(5, ATTACKER)
    client = Client(HTTP_ACCEPT_LANGUAGE="el")
    page = _post(ATTACKER, "alice", PASSWORD, client=client)
    with translation.override("el"):
        expected = translation.gettext("Too many failed log-ins for this account from your address. Try again at "
                                       "%(time)s (in %(minutes)s minutes).")
    assert expected != "Too many failed log-ins for this account from your address. Try again at %(time)s (in " \
                       "%(minutes)s minutes)."
    assert expected.split("%(time)s")[0] in page


def test_each_failure_is_one_log_line_with_account_and_address_never_the_password(
    alice: Resource, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="callcenter.crm.login"):
        _post(ATTACKER, "alice", "hunter2-secret")
    lines = [record.getMessage() for record in caplog.records if record.name == "callcenter.crm.login"]
    assert lines == [f"failed login for account 'alice' from {ATTACKER}"]
    assert "hunter2-secret" not in caplog.text


def test_behind_a_trusted_proxy_the_forwarded_address_counts(alice: Resource, settings: object) -> None:
    import ipaddress

    settings.CALLCENTER_TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.1")]  # type: ignore[attr-defined]
    for _ in range(5):
        Client().post("/login/", {"username": "alice", "password": "x"}, REMOTE_ADDR="10.0.0.1",
                      HTTP_X_FORWARDED_FOR=f"{ATTACKER}, 10.0.0.1")
    assert LoginFailure.objects.filter(address=ATTACKER).count() == 5
    response = Client().post("/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.0.0.1",
                             HTTP_X_FORWARDED_FOR=ALICE_DESK)
    assert response.status_code == 302


def test_failures_counted_by_another_crm_process_lock_this_one(alice: Resource) -> None:
    """The state is in the database, not in a process: failures another CRM process wrote lock here too."""
    now = timezone.now()
    LoginFailure.objects.bulk_create(
        LoginFailure(username="alice", address=ATTACKER, at=now - dt.timedelta(minutes=n)) for n in range(5)
    )
    assert LOCKED in _post(ATTACKER, "alice", PASSWORD)
    assert _post(ALICE_DESK, "alice", PASSWORD) == "logged in"
