"""Every write to contacts and their phone slots goes through here, and so does caller matching.

Rules:
- A phone slot stores the number as entered, its digits, and the match key (last N digits, N from the settings).
  A number with no digit is refused with a message, never stored.
- Matching returns every contact with a slot whose key equals the caller's key; the caller of this function decides
  what to do with several (the screen offers the choice, S-3.2/S-4.8).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import router, transaction
from django.db.models import QuerySet
from django.db.models.functions import Right
from django.utils.translation import gettext as _

from callcenter import numbers
from callcenter.contacts.models import PHONE_SLOTS, Contact, ContactPhone
from callcenter.resources.models import CallCenterSettings


class AllSlotsFull(Exception):
    """The contact's four phone slots are taken; ask which one to replace (S-4.17)."""

    def __init__(self, contact: Contact) -> None:
        super().__init__(f"all {len(PHONE_SLOTS)} phone slots of contact {contact.pk} are full")
        self.contact = contact


@dataclass(frozen=True)
class MatchRules:
    digits_to_scan: int
    prefix: str
    internal_digits: int

    @classmethod
    def current(cls) -> MatchRules:
        s = CallCenterSettings.load()
        return cls(digits_to_scan=s.digits_to_scan, prefix=s.call_prefix, internal_digits=s.internal_digits)

    def key(self, raw: str | None, *, dialled: bool = False) -> str:
        """The match key of ``raw``; a number ``dialled`` from here loses the call prefix first (S-3.8)."""
        return numbers.matching_key(
            raw,
            digits_to_scan=self.digits_to_scan,
            prefix=self.prefix if dialled else "",
            internal_digits=self.internal_digits,
        )


def _phone_row(contact: Contact, slot: int, number: str, rules: MatchRules) -> ContactPhone:
    number = (number or "").strip()
    if slot not in PHONE_SLOTS:
        raise ValidationError(_("A contact has phone slots 1 to 4, not %(slot)s.") % {"slot": slot})
    if len(number) > numbers.MAX_RAW_LENGTH:
        raise ValidationError(
            _("A phone number has at most %(max)d characters.") % {"max": numbers.MAX_RAW_LENGTH}
        )
    digits = numbers.digits_only(number)
    if not digits:
        raise ValidationError(_("“%(number)s” holds no digits; enter a phone number such as +30 210 123 4567.")
                              % {"number": number[:40]})
    return ContactPhone(contact=contact, slot=slot, number=number, digits=digits, key=rules.key(number))


@transaction.atomic
def create_contact(
    *,
    first_name: str = "",
    last_name: str = "",
    company: str = "",
    email: str = "",
    notes: str = "",
    phones: Mapping[int, str] | Iterable[str] = (),
    rules: MatchRules | None = None,
) -> Contact:
    contact = Contact(first_name=first_name.strip(), last_name=last_name.strip(), company=company.strip(),
                      email=email.strip(), notes=notes)
    contact.search_text = contact.computed_search_text()
    contact.full_clean()
    contact.save()
    set_phones(contact, phones, rules=rules)
    return contact


@transaction.atomic
def update_contact(contact: Contact, **fields: str) -> Contact:
    for name, value in fields.items():
        setattr(contact, name, value.strip() if isinstance(value, str) else value)
    contact.search_text = contact.computed_search_text()
    contact.full_clean()
    contact.save()
    return contact


@transaction.atomic
def set_phones(contact: Contact, phones: Mapping[int, str] | Iterable[str], *, rules: MatchRules | None = None) -> None:
    """Replace the contact's slots with ``phones`` ({slot: number}, or numbers filling slots 1, 2, ...); empty
    numbers clear their slot."""
    rules = rules or MatchRules.current()
    by_slot = dict(phones) if isinstance(phones, Mapping) else dict(enumerate(phones, start=1))
    if len(by_slot) > len(PHONE_SLOTS) and not isinstance(phones, Mapping):
        raise ValidationError(_("A contact has at most 4 phone numbers."))
    rows = [_phone_row(contact, slot, number, rules) for slot, number in by_slot.items() if (number or "").strip()]
    contact.phones.filter(slot__in=list(by_slot)).delete()
    ContactPhone.objects.bulk_create(rows)


@transaction.atomic
def put_number_in_slot(contact: Contact, number: str, *, replace_slot: int | None = None,
                       rules: MatchRules | None = None) -> int | None:
    """S-4.17: store ``number`` in the first free slot (or in ``replace_slot``). Returns the slot used, or None when
    the number is already one of the contact's. Raises AllSlotsFull when every slot is taken and no slot to replace
    was named."""
    rules = rules or MatchRules.current()
    locked = Contact.objects.select_for_update().get(pk=contact.pk)
    taken = {phone.slot: phone for phone in locked.phones.all()}
    key = rules.key(number)
    if key and any(phone.key == key for phone in taken.values()):
        return None
    if replace_slot is None:
        free = [slot for slot in PHONE_SLOTS if slot not in taken]
        if not free:
            raise AllSlotsFull(locked)
        slot = free[0]
    else:
        slot = replace_slot
    row = _phone_row(locked, slot, number, rules)
    ContactPhone.objects.filter(contact=locked, slot=slot).delete()
    row.save()
    return slot


def rekey_phones(digits_to_scan: int) -> int:
    """Recompute every match key after "digits to scan" changed: one UPDATE from the stored digits."""
    if not numbers.MIN_DIGITS_TO_SCAN <= digits_to_scan <= numbers.MAX_DIGITS_TO_SCAN:
        raise ValueError(f"digits to scan must be 4-15, not {digits_to_scan}")
    return ContactPhone.objects.update(key=Right("digits", digits_to_scan))


def _contacts_with_key(key: str) -> QuerySet[Contact]:
    """The match itself, in one place: contacts having a slot with this key, oldest first."""
    return Contact.objects.filter(pk__in=ContactPhone.objects.filter(key=key).values("contact_id")).order_by("id")


def contacts_matching_number(
    raw: str | None, *, rules: MatchRules | None = None, dialled: bool = False
) -> QuerySet[Contact]:
    """Every contact with a phone slot whose match key equals the number's (S-3.2). Empty for numbers without
    digits, over-long input, or internal numbers. ``dialled``: an outgoing number, which may carry the call prefix."""
    rules = rules or MatchRules.current()
    key = rules.key(raw, dialled=dialled)
    if not key or numbers.is_internal(raw, rules.internal_digits):
        return Contact.objects.none()
    return _contacts_with_key(key)


_KEY_PARAMETER = "\x00caller match key\x00"  # stands for the key in the compiled statement; no key can equal it


@functools.lru_cache(maxsize=32)
def _compiled_match(alias: str, limit: int) -> tuple[str, tuple[object, ...]]:
    """SQL and parameters of ``_contacts_with_key(key)[:limit]`` on database ``alias``, ``_KEY_PARAMETER`` in the
    key's place. Compiling that queryset costs about 0.3 ms of Python, three quarters of a whole caller match on a
    million contacts (bench/caller_lookup.py); the statement never changes, only the key, so it is compiled once."""
    query = _contacts_with_key(_KEY_PARAMETER)[:limit].query
    sql, params = query.get_compiler(using=alias).as_sql()
    return sql, tuple(params)


def sole_callers(
    wanted: Iterable[tuple[str, bool]], *, rules: MatchRules | None = None
) -> dict[tuple[str, bool], Contact | None]:
    """For each (raw number, dialled) of ``wanted``: the one contact it matches, or None when it matches none or
    several -- what ``match_caller(raw, dialled=dialled, limit=2)`` says when it returns exactly one contact. Two
    queries (per 500 numbers) however many numbers: the lookups of a whole batch of bridge events at once."""
    rules = rules or MatchRules.current()
    keys: dict[tuple[str, bool], str] = {}
    for raw, dialled in set(wanted):
        key = rules.key(raw, dialled=dialled)
        keys[(raw, dialled)] = key if key and not numbers.is_internal(raw, rules.internal_digits) else ""
    owners: dict[str, set[int]] = {}
    distinct = sorted({key for key in keys.values() if key})
    for start in range(0, len(distinct), 500):
        for key, contact_id in ContactPhone.objects.filter(key__in=distinct[start:start + 500]).values_list(
            "key", "contact_id"
        ):
            owners.setdefault(key, set()).add(contact_id)
    sole = {key: next(iter(ids)) for key, ids in owners.items() if len(ids) == 1}
    contacts = Contact.objects.in_bulk(set(sole.values()))
    return {pair: contacts.get(sole[key]) if key in sole else None for pair, key in keys.items()}


def match_caller(
    raw: str | None, *, rules: MatchRules | None = None, dialled: bool = False, limit: int = 20
) -> list[Contact]:
    """The contacts matching ``raw``, at most ``limit``, oldest first (with several, the caller offers the choice).

    The same match as ``contacts_matching_number(...)[:limit]``, run from its once-compiled SQL: this is the lookup
    made for every ringing call."""
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    rules = rules or MatchRules.current()
    key = rules.key(raw, dialled=dialled)
    if not key or limit == 0 or numbers.is_internal(raw, rules.internal_digits):
        return []
    alias = router.db_for_read(Contact)
    sql, params = _compiled_match(alias, limit)
    return list(Contact.objects.raw(sql, [key if p == _KEY_PARAMETER else p for p in params], using=alias))
