"""The secrets audit's scanner (proof/secrets_audit.py) can fail: a secret planted in a file in any of the forms it
searches for (plain, URL-encoded, form-encoded, base64 and URL-safe base64 at any byte offset inside a longer
encoded text) is found, and a file without it is clean."""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from proof.secrets_audit import files_under, needles, scan

SECRET = "ami-pw-Zq8/+x y&z=%é~"


@pytest.mark.parametrize("offset", [0, 1, 2, 5])
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode])
def test_a_secret_inside_a_longer_base64_text_is_found(tmp_path: Path, offset: int, encode: object) -> None:
    planted = tmp_path / "log"
    planted.write_bytes(b"Authorization: Basic " + encode(b"u" * offset + b":" + SECRET.encode() + b" tail"))  # type: ignore[operator]
    assert [hit[0] for hit in scan([planted], {"AMI password": SECRET})] != []


@pytest.mark.parametrize("form", [lambda s: s, lambda s: quote(s, safe=""), quote_plus])
def test_a_plain_or_url_encoded_secret_is_found(tmp_path: Path, form: object) -> None:
    planted = tmp_path / "page.html"
    planted.write_text(f"<a href='/x?next={form(SECRET)}&y=1'>", encoding="utf-8")  # type: ignore[operator]
    hits = scan([planted], {"AMI password": SECRET, "other": "not-there-0123456789"})
    assert {(name, path) for name, _form, path, _count in hits} == {("AMI password", planted)}


def test_a_clean_run_directory_has_no_hit_and_skipped_files_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "crm.log").write_text("INFO login failed for alice from 127.0.0.1\n", encoding="utf-8")
    (tmp_path / "ami.secret").write_text(SECRET + "\n", encoding="utf-8")
    files = files_under(tmp_path, skip=[tmp_path / "ami.secret"])
    assert files == [tmp_path / "logs" / "crm.log"]
    assert scan(files, {"AMI password": SECRET}) == []


def test_needles_are_distinct_and_long_enough_not_to_match_by_chance() -> None:
    found = needles(SECRET)
    assert len(set(found.values())) == len(found)
    assert min(len(needle) for needle in found.values()) >= 16
