"""Phone-number rules, pure (no Django, no database).

Rules (SPEC S-3.2, S-3.8, S-3.9):
- A number is reduced to its digits before anything else: `+`, spaces, dots, dashes, slashes and parentheses are
  formatting. Any Unicode decimal digit counts (a number typed with Arabic-Indic digits still matches); every other
  character is dropped. The raw number is always stored as received; these functions only derive from it.
- The match key is the last N digits ("digits to scan", 4-15): with N=10, `00301234567890` -> `1234567890`. A number
  shorter than N is its whole self, so two short numbers compare whole.
- A number of exactly `internal_digits` digits is internal (an extension).
- The call prefix (for example `0` for an outside line) is added to numbers dialled to the outside, never to internal
  numbers, and is stripped again before matching.
- Display uses E.164/international format through `phonenumbers`, with a default region for numbers written without a
  country code; what cannot be parsed is shown cleaned but otherwise as received.
"""

from __future__ import annotations

import unicodedata
from typing import Final

import phonenumbers

MIN_DIGITS_TO_SCAN: Final = 4
MAX_DIGITS_TO_SCAN: Final = 15
MIN_INTERNAL_DIGITS: Final = 1
MAX_INTERNAL_DIGITS: Final = 8
MAX_RAW_LENGTH: Final = 80  # longer input is not a phone number; it is refused by forms and never matches
MAX_PREFIX_LENGTH: Final = 6

_ASCII_DIGITS: Final = frozenset("0123456789")


def digits_only(raw: str | None) -> str:
    """Every decimal digit of ``raw``, as ASCII, in order; everything else dropped."""
    if not raw:
        return ""
    if raw.isascii():
        return "".join(ch for ch in raw if ch in _ASCII_DIGITS)
    out = []
    for ch in raw:
        value = unicodedata.decimal(ch, None)
        if value is not None:
            out.append(str(value))
    return "".join(out)


def match_key(raw: str | None, digits_to_scan: int) -> str:
    """The last ``digits_to_scan`` digits of ``raw`` ('' when it has none or is too long to be a number)."""
    _check_range("digits to scan", digits_to_scan, MIN_DIGITS_TO_SCAN, MAX_DIGITS_TO_SCAN)
    if raw is None or len(raw) > MAX_RAW_LENGTH:
        return ""
    return digits_only(raw)[-digits_to_scan:]


def is_internal(raw: str | None, internal_digits: int) -> bool:
    """True for a number of exactly ``internal_digits`` digits written without a '+' (an extension)."""
    _check_range("internal digits", internal_digits, MIN_INTERNAL_DIGITS, MAX_INTERNAL_DIGITS)
    if not raw or len(raw) > MAX_RAW_LENGTH or raw.strip().startswith("+"):
        return False
    return len(digits_only(raw)) == internal_digits


def strip_prefix(raw: str | None, prefix: str, internal_digits: int) -> str:
    """The digits of ``raw`` without the outside-line ``prefix`` (when it carries it and is not internal)."""
    digits = digits_only(raw)
    if prefix and digits.startswith(prefix) and len(digits) - len(prefix) > internal_digits:
        return digits[len(prefix) :]
    return digits


def matching_key(raw: str | None, *, digits_to_scan: int, prefix: str = "", internal_digits: int = 3) -> str:
    """The key a number is matched by: prefix stripped, then the last ``digits_to_scan`` digits."""
    if raw is None or len(raw) > MAX_RAW_LENGTH:
        return ""
    return match_key(strip_prefix(raw, prefix, internal_digits), digits_to_scan)


def dial_string(raw: str | None, *, prefix: str, internal_digits: int, international_prefix: str = "00") -> str:
    """What to dial for ``raw``: internal numbers as they are, outside numbers with the call prefix.

    A leading '+' becomes the international access code; an international number always gets the prefix (unless it
    already starts with prefix + access code). Raises ValueError, with a message for people, when ``raw`` holds no
    digits or the prefix is not ASCII digits (the PBX dials ASCII).
    """
    if prefix and not (prefix.isascii() and prefix.isdigit()):
        raise ValueError(f"call prefix {prefix!r} must be digits only")
    if raw is not None and len(raw) > MAX_RAW_LENGTH:
        raise ValueError(f"a phone number has at most {MAX_RAW_LENGTH} characters")
    digits = digits_only(raw)
    if not digits:
        raise ValueError(f"{raw!r} holds no digits to dial")
    if is_internal(raw, internal_digits):
        return digits
    assert raw is not None  # a number with digits
    if raw.strip().startswith("+"):
        return prefix + international_prefix + digits
    if prefix and digits.startswith(prefix + international_prefix):
        return digits  # an international number already dialled with the prefix
    if international_prefix and digits.startswith(international_prefix):
        return prefix + digits
    if prefix and digits.startswith(prefix) and len(digits) > internal_digits + len(prefix) + 4:
        # Already dialled with the prefix (a redial of a number as the PBX reported it).
        return digits
    return prefix + digits


def is_supported_region(region: str) -> bool:
    return region.upper() in phonenumbers.SUPPORTED_REGIONS


def to_e164(raw: str | None, region: str) -> str | None:
    """The E.164 form (+302101234567) of ``raw``, or None when it is not a valid number."""
    if not raw or len(raw) > MAX_RAW_LENGTH:
        return None
    try:
        parsed = phonenumbers.parse(_international_from_00(raw), region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def display(raw: str | None, region: str) -> str:
    """The number for people: international format when valid (+30 21 0123 4567), else the raw text stripped."""
    if not raw:
        return ""
    if len(raw) > MAX_RAW_LENGTH:
        return raw[:MAX_RAW_LENGTH] + "…"
    try:
        parsed = phonenumbers.parse(_international_from_00(raw), region.upper())
    except phonenumbers.NumberParseException:
        return raw.strip()
    if not phonenumbers.is_valid_number(parsed):
        return raw.strip()
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _international_from_00(raw: str) -> str:
    stripped = raw.strip()
    if stripped.startswith("00"):
        return "+" + stripped[2:]
    return stripped


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not (low <= value <= high):
        raise ValueError(f"{what} must be between {low} and {high}, not {value}")
