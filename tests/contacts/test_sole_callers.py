"""sole_callers(): the caller matches of a whole batch of bridge events in two queries tell exactly what
match_caller(limit=2) tells for each number alone: the one contact, or nobody when none or several match."""

from __future__ import annotations

import pytest

from callcenter.contacts.actions import MatchRules, create_contact, match_caller, sole_callers

pytestmark = pytest.mark.django_db

NUMBERS = [
    "2101234567", "+30 210 123 4567", "00302101234567", "210-123-4567",  # one contact, written four ways
    "6977654321", "+306977654321",  # two contacts share it
    "2310999888",  # nobody
    "0 2101234567",  # with the call prefix: matches only when dialled
    "101", "", "   ", "abc", "Καλημέρα", "1" * 300, "<script>",
]


@pytest.mark.parametrize("rules", [MatchRules(digits_to_scan=10, prefix="0", internal_digits=3),
                                   MatchRules(digits_to_scan=7, prefix="", internal_digits=3),
                                   MatchRules(digits_to_scan=10, prefix="9", internal_digits=4)])
def test_each_number_gets_the_contact_match_caller_finds_alone(rules) -> None:
    one = create_contact(first_name="Μαρία", phones=["210 123 4567"], rules=rules)
    create_contact(first_name="Twin A", phones=["6977654321"], rules=rules)
    create_contact(first_name="Twin B", phones=["+30 697 765 4321"], rules=rules)
    wanted = [(number, dialled) for number in NUMBERS for dialled in (False, True)]

    found = sole_callers(wanted, rules=rules)

    assert set(found) == set(wanted)
    for number, dialled in wanted:
        alone = match_caller(number, rules=rules, dialled=dialled, limit=2)
        assert found[(number, dialled)] == (alone[0] if len(alone) == 1 else None), (number, dialled)
    assert found[("2101234567", False)] == one  # the comparison compared something
    assert found[("6977654321", False)] is None


def test_many_numbers_take_two_queries_per_five_hundred(django_assert_max_num_queries) -> None:
    rules = MatchRules(digits_to_scan=10, prefix="", internal_digits=3)
    create_contact(first_name="Μαρία", phones=["2101234567"], rules=rules)
    wanted = [(f"21{index:08d}", False) for index in range(1200)] + [("2101234567", False)]
    with django_assert_max_num_queries(4):
        found = sole_callers(wanted, rules=rules)
    assert found[("2101234567", False)] is not None
    assert sum(contact is not None for contact in found.values()) == 1
