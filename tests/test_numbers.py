"""The phone-number rules (S-3.2 match key, S-3.8 dial prefix, S-3.9 internal numbers, display), pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcenter import numbers

FORMATTING = "+ .-/()"
BAD_INPUT = [
    "",
    "   ",
    "abc",
    "<script>alert('x')</script>",
    "'; DROP TABLE x; --",
    "Καλημέρα",
]
TOO_LONG = "1" * 300

digit_strings = st.text(alphabet="0123456789", min_size=0, max_size=20)
formatting_runs = st.text(alphabet=FORMATTING, max_size=3)


def _interleave(digits: str, separators: list[str]) -> str:
    return "".join(sep + digit for digit, sep in zip(digits, separators, strict=False)) + "".join(
        separators[len(digits) :]
    )


# --- match key (S-3.2) -------------------------------------------------------------------------------------------


def test_the_match_key_is_the_last_n_digits_as_in_the_spec_example() -> None:
    assert numbers.match_key("00301234567890", 10) == "1234567890"


@pytest.mark.parametrize(
    "raw",
    [
        "+30 123 456 7890",
        "0030.123.456.7890",
        "0030-123-456-7890",
        "0030/123/456/7890",
        "+30 (123) 456-78 90",
        "  +30\t1234567890 ",
    ],
)
def test_formatting_characters_do_not_change_the_match_key(raw: str) -> None:
    assert numbers.match_key(raw, 10) == "1234567890"


def test_a_number_shorter_than_the_digits_to_scan_is_its_whole_self() -> None:
    assert numbers.match_key("12-345", 10) == "12345"
    assert numbers.match_key("12345", 10) != numbers.match_key("9912345", 10)


def test_unicode_digits_count_as_digits() -> None:
    arabic_indic = "٢١٠١٢٣٤٥٦٧"
    fullwidth = "２１０１２３４５６７"
    assert numbers.match_key(arabic_indic, 10) == "2101234567"
    assert numbers.match_key(fullwidth, 10) == "2101234567"


@pytest.mark.parametrize("raw", [None, *BAD_INPUT, TOO_LONG])
def test_bad_input_has_an_empty_match_key(raw: str | None) -> None:
    assert numbers.match_key(raw, 10) == ""


def test_only_the_digits_of_text_around_a_number_are_kept() -> None:
    assert numbers.match_key("<script>alert(1)</script>", 10) == "1"
    assert numbers.match_key("tel:210-123-4567; DROP TABLE x", 10) == "2101234567"


@pytest.mark.parametrize("digits_to_scan", [0, 3, 16, 300])
def test_digits_to_scan_outside_4_to_15_is_a_clear_error(digits_to_scan: int) -> None:
    with pytest.raises(ValueError, match="digits to scan must be between 4 and 15"):
        numbers.match_key("2101234567", digits_to_scan)


def test_the_matching_key_strips_the_call_prefix_before_taking_the_last_digits() -> None:
    assert numbers.matching_key("0123456789", digits_to_scan=10, prefix="0", internal_digits=3) == "123456789"
    assert numbers.matching_key("0123456789", digits_to_scan=10, prefix="", internal_digits=3) == "0123456789"


def test_the_matching_key_keeps_a_number_that_is_only_prefix_and_extension() -> None:
    # "0" + "100" is not an outside number with a prefix: nothing is stripped.
    assert numbers.matching_key("0100", digits_to_scan=10, prefix="0", internal_digits=3) == "0100"


@pytest.mark.parametrize("raw", [None, *BAD_INPUT, TOO_LONG])
def test_bad_input_has_an_empty_matching_key(raw: str | None) -> None:
    assert numbers.matching_key(raw, digits_to_scan=10, prefix="0", internal_digits=3) == ""


@given(digits=digit_strings, separators=st.lists(formatting_runs, min_size=21, max_size=21), n=st.integers(4, 15))
def test_property_formatting_characters_never_change_the_key(digits: str, separators: list[str], n: int) -> None:
    formatted = _interleave(digits, separators)
    assert numbers.match_key(formatted, n) == numbers.match_key(digits, n)


@given(raw=st.text(max_size=90), n=st.integers(4, 15))
def test_property_the_key_is_at_most_n_ascii_digits_ending_the_number(raw: str, n: int) -> None:
    key = numbers.match_key(raw, n)
    assert len(key) <= n
    assert all(ch in "0123456789" for ch in key)
    assert numbers.digits_only(raw).endswith(key)


@given(tail=st.text(alphabet="0123456789", min_size=10, max_size=10), a=digit_strings, b=digit_strings)
def test_property_numbers_sharing_the_last_n_digits_share_the_key(tail: str, a: str, b: str) -> None:
    assert numbers.match_key(a + tail, 10) == numbers.match_key("+" + b + tail, 10) == tail


# --- internal numbers (S-3.9) ------------------------------------------------------------------------------------


def test_a_number_of_exactly_the_internal_digits_is_internal() -> None:
    assert numbers.is_internal("100", 3)
    assert numbers.is_internal(" 1-0-1 ", 3)
    assert not numbers.is_internal("1000", 3)
    assert not numbers.is_internal("10", 3)
    assert numbers.is_internal("1000", 4)


def test_a_number_written_with_a_plus_is_never_internal() -> None:
    assert not numbers.is_internal("+100", 3)


@pytest.mark.parametrize("raw", [None, *BAD_INPUT, TOO_LONG, "1" * 81])
def test_bad_input_is_never_internal(raw: str | None) -> None:
    assert numbers.is_internal(raw, 3) is False


@pytest.mark.parametrize("internal_digits", [0, 9, -1])
def test_internal_digits_outside_1_to_8_is_a_clear_error(internal_digits: int) -> None:
    with pytest.raises(ValueError, match="internal digits must be between 1 and 8"):
        numbers.is_internal("100", internal_digits)


@given(digits=st.text(alphabet="0123456789", min_size=1, max_size=8), separators=st.lists(formatting_runs.filter(
    lambda s: "+" not in s), min_size=9, max_size=9))
def test_property_internal_depends_only_on_the_digit_count(digits: str, separators: list[str]) -> None:
    assert numbers.is_internal(_interleave(digits, separators), len(digits))


# --- dial string (S-3.8) -----------------------------------------------------------------------------------------


def test_an_outside_number_is_dialled_with_the_call_prefix() -> None:
    assert numbers.dial_string("210 123 4567", prefix="0", internal_digits=3) == "02101234567"


def test_an_internal_number_is_never_dialled_with_the_call_prefix() -> None:
    assert numbers.dial_string("101", prefix="0", internal_digits=3) == "101"
    assert numbers.dial_string("1-0-1", prefix="9", internal_digits=3) == "101"


def test_without_a_prefix_the_number_is_dialled_as_its_digits() -> None:
    assert numbers.dial_string("(210) 123-4567", prefix="", internal_digits=3) == "2101234567"


def test_a_plus_becomes_the_international_access_code() -> None:
    assert numbers.dial_string("+30 210 123 4567", prefix="", internal_digits=3) == "00302101234567"


def test_an_international_number_gets_the_call_prefix_too() -> None:
    assert numbers.dial_string("+30 210 123 4567", prefix="0", internal_digits=3) == "000302101234567"
    assert numbers.dial_string("0030 210 123 4567", prefix="0", internal_digits=3) == "000302101234567"
    assert numbers.dial_string("0030 210 123 4567", prefix="9", internal_digits=3) == "900302101234567"


def test_a_number_that_already_carries_the_prefix_is_not_prefixed_twice() -> None:
    # A redial of an outgoing call, whose number was stored as dialled.
    assert numbers.dial_string("02101234567", prefix="0", internal_digits=3) == "02101234567"
    assert numbers.dial_string("000302101234567", prefix="0", internal_digits=3) == "000302101234567"


@pytest.mark.parametrize("raw", [None, *BAD_INPUT])
def test_a_number_without_digits_cannot_be_dialled(raw: str | None) -> None:
    with pytest.raises(ValueError, match="no digits to dial"):
        numbers.dial_string(raw, prefix="0", internal_digits=3)  # type: ignore[arg-type]


def test_an_over_long_number_cannot_be_dialled() -> None:
    with pytest.raises(ValueError, match="at most 80 characters"):
        numbers.dial_string(TOO_LONG, prefix="0", internal_digits=3)


@pytest.mark.parametrize("prefix", ["a", "0a", "<script>", "'; --", "٠", "０"])
def test_a_prefix_that_is_not_ascii_digits_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="must be digits only"):
        numbers.dial_string("2101234567", prefix=prefix, internal_digits=3)


@given(digits=st.text(alphabet="0123456789", min_size=1, max_size=8), prefix=st.text(alphabet="0123456789",
                                                                                    max_size=3))
def test_property_internal_numbers_are_dialled_as_they_are(digits: str, prefix: str) -> None:
    assert numbers.dial_string(digits, prefix=prefix, internal_digits=len(digits)) == digits


@given(raw=st.text(max_size=100), prefix=st.sampled_from(["", "0", "9"]))
def test_property_dialling_any_text_gives_ascii_digits_or_a_clear_error(raw: str, prefix: str) -> None:
    try:
        dialled = numbers.dial_string(raw, prefix=prefix, internal_digits=3)
    except ValueError as exc:
        assert str(exc)
    else:
        assert dialled.isascii() and dialled.isdigit()
        assert dialled.endswith(numbers.digits_only(raw))


# --- E.164 and display, default region GR ------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["210 123 4567", "2101234567", "+30 210 1234567", "0030 210 1234567", "+302101234567"])
def test_a_greek_number_has_its_e164_form(raw: str) -> None:
    assert numbers.to_e164(raw, "GR") == "+302101234567"


def test_the_region_is_read_case_insensitively() -> None:
    assert numbers.to_e164("6912345678", "gr") == "+306912345678"


def test_a_number_with_a_country_code_keeps_it_whatever_the_region() -> None:
    assert numbers.to_e164("+44 20 7946 0958", "GR") == "+442079460958"


@pytest.mark.parametrize("raw", [None, "12", *BAD_INPUT, TOO_LONG])
def test_what_is_not_a_valid_number_has_no_e164_form(raw: str | None) -> None:
    assert numbers.to_e164(raw, "GR") is None


def test_a_valid_number_is_displayed_in_international_format() -> None:
    assert numbers.display("2101234567", "GR") == "+30 21 0123 4567"


def test_what_cannot_be_parsed_is_displayed_as_received_without_surrounding_space() -> None:
    assert numbers.display("  101 ", "GR") == "101"
    assert numbers.display("<script>alert(1)</script>", "GR") == "<script>alert(1)</script>"
    assert numbers.display(None, "GR") == ""


def test_an_over_long_number_is_displayed_shortened() -> None:
    shown = numbers.display(TOO_LONG, "GR")
    assert shown == "1" * numbers.MAX_RAW_LENGTH + "…"


def test_supported_regions_are_two_letter_country_codes() -> None:
    assert numbers.is_supported_region("GR")
    assert numbers.is_supported_region("cy")
    assert not numbers.is_supported_region("XX")
    assert not numbers.is_supported_region("")


@settings(max_examples=60)
@given(raw=st.text(max_size=100))
def test_property_display_and_e164_never_raise(raw: str) -> None:
    e164 = numbers.to_e164(raw, "GR")
    assert e164 is None or (e164.startswith("+") and e164[1:].isdigit())
    assert isinstance(numbers.display(raw, "GR"), str)
