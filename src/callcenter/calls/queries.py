"""What the Call Center screen reads (S-4): whose calls a user sees, the filtered list, the phone's state.

Rules
- Visibility: an administrator sees every call (those of extensions nobody owns too); a resource sees only the calls
  recorded for itself; anyone else sees none. Every view that takes a call id looks it up through ``visible_calls``,
  so another agent's id is simply not found (404), never shown.
- The list is read newest first, ``-started_at, -id``, from the from-date on (inclusive, local midnight), and pages
  by a cursor (the last row's start time and id), never by OFFSET or COUNT: the first page of a resource's calls is
  one index range scan (call_resource_started; call_started for administrators) however many calls are stored.
- Search (S-4.3) matches the contact's name or company (folded: case, accents and Greek final sigma ignored) and,
  for text that looks like a phone number, numbers: one of at least "digits to scan" digits by match key (index
  lookups: the call's number and every phone slot of contacts), any as a part of the call's own number.
- The phone's state (ringing / in a call, S-4.11-4.13) comes from the open call legs of the resource's extension,
  not from the rows: with "create call when answered" a ringing call has no row yet.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from callcenter import numbers
from callcenter.calls.models import Call, CallLeg
from callcenter.contacts.actions import MatchRules
from callcenter.contacts.models import Contact, ContactPhone, fold_for_search
from callcenter.resources.models import Resource
from callcenter.resources.permissions import is_administrator, resource_of

PAGE_SIZE = 50
MAX_SEARCH_LENGTH = 100
# An open leg older than this is a leftover of a lost end event, not a phone that still rings.
OPEN_LEG_MAX_AGE = dt.timedelta(hours=12)


def visible_calls(user: Any) -> QuerySet[Call]:
    if is_administrator(user):
        return Call.objects.all()
    resource = resource_of(user)
    if resource is None:
        return Call.objects.none()
    return Call.objects.filter(resource=resource)


_NUMBER_LIKE = re.compile(r"\+?[0-9][0-9\s().\-/]*", re.ASCII)


def looks_like_a_number(text: str) -> bool:
    """Digits with the usual formatting only: '+30 210-123 4567' is searched as a number, 'flat 12' is not."""
    return _NUMBER_LIKE.fullmatch(text.strip()) is not None


def search_condition(text: str, rules: MatchRules) -> Q:
    """S-4.3 for ``text`` (already stripped and at most MAX_SEARCH_LENGTH characters); an empty Q for ''."""
    if not text:
        return Q()
    folded = fold_for_search(text)
    digits = numbers.digits_only(text) if looks_like_a_number(text) else ""
    if not digits:
        return Q(contact__search_text__contains=folded)
    # A part of a number matches no index, so a number search reads every call of the range: keep the test of each
    # row cheap. The contacts whose name holds the text are found once, not joined to every row read (the same rows;
    # 2x faster for an administrator's week of calls, bench/call_list.py).
    condition = Q(contact__in=Contact.objects.filter(search_text__contains=folded).values("pk"))
    condition |= Q(number_digits__contains=digits)
    if len(digits) >= rules.digits_to_scan:
        key = rules.key(digits)
        condition |= Q(number_key=key) | Q(contact__in=ContactPhone.objects.filter(key=key).values("contact_id"))
    return condition


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: strictly after (older than) this row."""

    started_at: dt.datetime
    call_id: int

    def encode(self) -> str:
        return f"{self.started_at.timestamp():.6f}_{self.call_id}"

    @classmethod
    def decode(cls, raw: str | None) -> Cursor | None:
        """None for a missing or malformed cursor (the list then starts at the top)."""
        if not raw or len(raw) > 60:
            return None
        stamp, _sep, call_id = raw.partition("_")
        try:
            return cls(dt.datetime.fromtimestamp(float(stamp), tz=dt.UTC), int(call_id))
        except (ValueError, OverflowError, OSError):
            return None


@dataclass(frozen=True)
class Page:
    calls: list[Call]
    next_cursor: Cursor | None


def day_start(day: dt.date) -> dt.datetime:
    """Local midnight at the start of ``day`` (S-4.1: the from-date is inclusive)."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def call_list(
    user: Any,
    *,
    from_date: dt.date,
    search: str = "",
    cursor: Cursor | None = None,
    limit: int = PAGE_SIZE,
    rules: MatchRules | None = None,
) -> Page:
    """One page of the calls ``user`` sees, newest first, from ``from_date`` on, matching ``search``."""
    rules = rules or MatchRules.current()
    calls = visible_calls(user).filter(started_at__gte=day_start(from_date))
    if search:
        calls = calls.filter(search_condition(search, rules))
    if cursor is not None:
        calls = calls.filter(
            Q(started_at__lt=cursor.started_at) | Q(started_at=cursor.started_at, id__lt=cursor.call_id)
        )
    rows = list(
        calls.select_related("contact", "activity__activity_type", "resource__user").order_by("-started_at", "-id")[
            : limit + 1
        ]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = Cursor(rows[-1].started_at, rows[-1].pk) if more and rows else None
    return Page(rows, next_cursor)


def matches_filters(call: Call, user: Any, *, from_date: dt.date, search: str, rules: MatchRules | None = None) -> bool:
    """Whether ``call`` belongs in the list as filtered (for a row pushed live)."""
    calls = visible_calls(user).filter(pk=call.pk, started_at__gte=day_start(from_date))
    if search:
        calls = calls.filter(search_condition(search, rules or MatchRules.current()))
    return calls.exists()


@dataclass(frozen=True)
class PhoneState:
    """What the resource's phone is doing, from its open legs: ``ringing`` (an inbound call waiting to be answered)
    and ``current`` (a call in progress: answered, or being dialled out)."""

    ringing: CallLeg | None = None
    current: CallLeg | None = None


def open_legs(resource: Resource, *, now: dt.datetime | None = None) -> list[CallLeg]:
    if not resource.extension:
        return []
    since = (now or timezone.now()) - OPEN_LEG_MAX_AGE
    return list(
        CallLeg.objects.filter(
            extension=resource.extension, ended_at__isnull=True, rang_at__gte=since, cleared=False
        ).order_by("-rang_at")[:10]
    )


def phone_state(resource: Resource | None, *, now: dt.datetime | None = None) -> PhoneState:
    if resource is None:
        return PhoneState()
    ringing = current = None
    for leg in open_legs(resource, now=now):
        inbound = leg.direction in ("in", "internal-in")
        if leg.answered_at is None and inbound:
            ringing = ringing or leg
        else:
            current = current or leg
    return PhoneState(ringing=ringing, current=current)


def search_contacts(text: str, *, rules: MatchRules | None = None, limit: int = 20) -> list[Contact]:
    """Contacts for the Caller and Link to contact searches: by folded name or company, or by phone (a whole number
    by its match key, three or more digits as part of a stored number)."""
    text = (text or "").strip()[:MAX_SEARCH_LENGTH]
    if not text:
        return []
    rules = rules or MatchRules.current()
    condition = Q()
    folded = fold_for_search(text).strip()
    digits = numbers.digits_only(text) if looks_like_a_number(text) else ""
    if folded and not digits:
        condition |= Q(search_text__contains=folded)
    if len(digits) >= rules.digits_to_scan:
        condition |= Q(pk__in=ContactPhone.objects.filter(key=rules.key(digits)).values("contact_id"))
    elif len(digits) >= 3:
        condition |= Q(pk__in=ContactPhone.objects.filter(digits__contains=digits).values("contact_id"))
    if not condition:
        return []
    return list(Contact.objects.filter(condition).prefetch_related("phones")[:limit])
