"""Login throttling for every CRM log-in (the login page and the admin's), kept in the database so that it holds
across several CRM processes.

The rule (README, "Security"):
- 5 failed log-ins for one account from one address within 15 minutes: that account cannot log in from that
  address until 15 minutes after the last of them.
- 20 failed log-ins from one address within 15 minutes, whatever the accounts: nobody can log in from that address
  for 15 minutes after the last, except accounts that logged in successfully from it in the last 30 days.
- 20 failed log-ins for one account within 15 minutes, from any addresses: that account cannot log in for 15 minutes
  after the last, except from addresses where it logged in successfully in the last 30 days.
- While locked, even the right password is refused and the page says at what time to try again; attempts made while
  locked are not counted, so the lock ends when it says. A successful log-in clears that account's failures from
  that address.

So the lock-out never blocks the other users: an attacker's guesses lock only the attacker's own address, and never
an account from the places it is normally used. Each failure is one log line with the account and the address,
never the password.

The address is the client's (REMOTE_ADDR), or, behind a proxy listed in CALLCENTER_TRUSTED_PROXIES, the last address
of X-Forwarded-For that is not one of those proxies.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import math
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from callcenter.crm.models import LoginFailure, LoginSuccess

log = logging.getLogger("callcenter.crm.login")

PAIR_LIMIT = 5
ADDRESS_LIMIT = 20
ACCOUNT_LIMIT = 20
WINDOW = dt.timedelta(minutes=15)
LOCK = dt.timedelta(minutes=15)
KNOWN_FOR = dt.timedelta(days=30)
LOCKED_ATTRIBUTE = "callcenter_login_locked_until"


def account_key(username: object) -> str:
    return str(username or "").strip().lower()[:150]


def client_address(request: HttpRequest) -> str:
    remote = str(request.META.get("REMOTE_ADDR") or "")[:45]
    proxies = _trusted_proxies()
    if not proxies or not _in(remote, proxies):
        return remote
    forwarded = [part.strip() for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    for address in reversed(forwarded):
        if address and not _in(address, proxies):
            try:
                return str(ipaddress.ip_address(address))[:45]
            except ValueError:
                return remote  # a forged or broken header: count it against the proxy's own address
    return remote


def _trusted_proxies() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return list(getattr(settings, "CALLCENTER_TRUSTED_PROXIES", []))


def _in(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def locked_until(username: str, address: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """When ``username`` may log in from ``address`` again, or None when it may now."""
    now = now or timezone.now()
    known = LoginSuccess.objects.filter(username=username, address=address, at__gt=now - KNOWN_FOR).exists()
    scopes = [(Q(username=username, address=address), PAIR_LIMIT)]
    if not known:
        scopes += [(Q(address=address), ADDRESS_LIMIT), (Q(username=username), ACCOUNT_LIMIT)]
    until: dt.datetime | None = None
    for scope, limit in scopes:
        end = _lock_end(scope, limit, now)
        if end is not None and (until is None or end > until):
            until = end
    return until


def _lock_end(scope: Q, limit: int, now: dt.datetime) -> dt.datetime | None:
    times = list(
        LoginFailure.objects.filter(scope, at__gt=now - WINDOW - LOCK).order_by("-at").values_list("at", flat=True)[
            :limit
        ]
    )
    if len(times) < limit:
        return None
    newest, oldest = times[0], times[-1]
    if newest - oldest > WINDOW or newest + LOCK <= now:
        return None
    return newest + LOCK


def record_failure(username: str, address: str, now: dt.datetime | None = None) -> None:
    now = now or timezone.now()
    LoginFailure.objects.filter(at__lte=now - WINDOW - LOCK).delete()
    LoginFailure.objects.create(username=username, address=address, at=now)


def record_success(username: str, address: str, now: dt.datetime | None = None) -> None:
    now = now or timezone.now()
    LoginFailure.objects.filter(username=username, address=address).delete()
    LoginSuccess.objects.update_or_create(username=username, address=address, defaults={"at": now})


def minutes_left(until: dt.datetime, now: dt.datetime | None = None) -> int:
    return max(1, math.ceil((until - (now or timezone.now())).total_seconds() / 60))


class ThrottleBackend:
    """First in AUTHENTICATION_BACKENDS: refuses any log-in that is locked, before a password is even checked (so
    authenticate() returns None and the login form says when to try again). It has no get_user(): it never logs
    anyone in, so sessions (and the test client's force_login) name the ModelBackend."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, **credentials: Any) -> None:
        if request is None or username is None:
            return None
        until = locked_until(account_key(username), client_address(request))
        if until is not None:
            setattr(request, LOCKED_ATTRIBUTE, until)
            raise PermissionDenied("locked")
        return None


def on_login_failed(sender: object, credentials: dict[str, Any], request: HttpRequest | None = None,
                    **kwargs: Any) -> None:
    """user_login_failed: count the failure (not one refused while locked) and log it, never the password."""
    if request is None:
        return
    username, address = account_key(credentials.get("username")), client_address(request)
    until = getattr(request, LOCKED_ATTRIBUTE, None)
    if until is not None:
        log.warning("login refused: account %r from %s is locked until %s", username, address,
                    timezone.localtime(until).strftime("%H:%M:%S"))
        return
    record_failure(username, address)
    log.warning("failed login for account %r from %s", username, address)
    until = locked_until(username, address)
    if until is not None:
        setattr(request, LOCKED_ATTRIBUTE, until)
        log.warning("login locked: account %r from %s until %s", username, address,
                    timezone.localtime(until).strftime("%H:%M:%S"))


def on_logged_in(sender: object, request: HttpRequest | None = None, user: Any = None, **kwargs: Any) -> None:
    if request is None or user is None:
        return
    record_success(account_key(user.get_username()), client_address(request))
