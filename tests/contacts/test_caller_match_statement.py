"""match_caller runs the match from its once-compiled SQL; it must find exactly what the queryset finds."""

from __future__ import annotations

import pytest

from callcenter.contacts.actions import MatchRules, contacts_matching_number, create_contact, match_caller

pytestmark = pytest.mark.django_db

RULES = MatchRules(digits_to_scan=10, prefix="0", internal_digits=3)


def _contacts() -> list[int]:
    made = [
        create_contact(last_name=f"Shared {i}", phones=["+30 210 123 4567", f"69{i:08d}"], rules=RULES).pk
        for i in range(5)
    ]
    made.append(create_contact(company="Alone", phones=["0030-2310-999999"], rules=RULES).pk)
    return made


@pytest.mark.parametrize(
    ("number", "dialled"),
    [
        ("2101234567", False),
        ("00302101234567", False),
        ("02101234567", True),  # dialled with the outside-line prefix
        ("2310999999", False),
        ("6900000003", False),
        ("2109999999", False),  # nobody
        ("101", False),  # internal
        ("", False),
        ("'; DROP TABLE contacts_contact; --", False),
    ],
)
@pytest.mark.parametrize("limit", [1, 3, 20])
def test_it_finds_the_same_contacts_in_the_same_order_as_the_queryset(number: str, dialled: bool, limit: int) -> None:
    _contacts()
    expected = list(contacts_matching_number(number, rules=RULES, dialled=dialled)[:limit])
    found = match_caller(number, rules=RULES, dialled=dialled, limit=limit)
    assert [c.pk for c in found] == [c.pk for c in expected]
    assert [(c.last_name, c.company, c.created_at) for c in found] == [
        (c.last_name, c.company, c.created_at) for c in expected
    ]


def test_five_contacts_sharing_a_number_come_oldest_first_up_to_the_limit() -> None:
    made = _contacts()
    assert [c.pk for c in match_caller("+302101234567", rules=RULES)] == made[:5]
    assert [c.pk for c in match_caller("+302101234567", rules=RULES, limit=2)] == made[:2]
    assert match_caller("+302101234567", rules=RULES, limit=0) == []


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        match_caller("2101234567", rules=RULES, limit=-1)


def test_each_match_is_one_query(django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    _contacts()
    match_caller("2101234567", rules=RULES)
    with django_assert_num_queries(1):
        assert len(match_caller("2101234567", rules=RULES)) == 5
    with django_assert_num_queries(1):
        assert len(match_caller("2310999999", rules=RULES)) == 1
