"""Settings from the environment: readable values are parsed, unreadable ones fail loudly and say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from callcenter.crm import env


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "on"])
def test_it_reads_true_booleans(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CC_TEST_FLAG", raw)
    assert env.env_bool("CC_TEST_FLAG", False) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off", ""])
def test_it_reads_false_booleans(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CC_TEST_FLAG", raw)
    assert env.env_bool("CC_TEST_FLAG", True) is False


def test_an_unset_boolean_takes_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC_TEST_FLAG", raising=False)
    assert env.env_bool("CC_TEST_FLAG", True) is True


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "<script>"])
def test_a_bad_boolean_fails_loudly_naming_the_variable_and_the_choices(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("CC_TEST_FLAG", raw)
    with pytest.raises(ImproperlyConfigured) as caught:
        env.env_bool("CC_TEST_FLAG", False)
    assert "CC_TEST_FLAG" in str(caught.value)
    assert "use 'true' or 'false'" in str(caught.value)


def test_it_reads_whole_numbers_and_defaults_when_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_TEST_INT", " 42 ")
    assert env.env_int("CC_TEST_INT", 7) == 42
    monkeypatch.setenv("CC_TEST_INT", "")
    assert env.env_int("CC_TEST_INT", 7) == 7
    monkeypatch.delenv("CC_TEST_INT")
    assert env.env_int("CC_TEST_INT", 7) == 7


@pytest.mark.parametrize("raw", ["forty", "4.5", "0x10", "1e3"])
def test_a_bad_whole_number_fails_loudly(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CC_TEST_INT", raw)
    with pytest.raises(ImproperlyConfigured, match=r"CC_TEST_INT=.* is not a whole number"):
        env.env_int("CC_TEST_INT", 0)


def test_a_secret_may_come_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-from-file\n", encoding="utf-8")
    monkeypatch.setenv("CC_TEST_SECRET", "from-the-environment")
    monkeypatch.setenv("CC_TEST_SECRET_FILE", str(secret))
    assert env.env_str("CC_TEST_SECRET") == "s3cr3t-from-file"


def test_an_unreadable_secret_file_fails_loudly_naming_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-secret"
    monkeypatch.setenv("CC_TEST_SECRET_FILE", str(missing))
    with pytest.raises(ImproperlyConfigured) as caught:
        env.env_str("CC_TEST_SECRET")
    assert "CC_TEST_SECRET_FILE" in str(caught.value)
    assert str(missing) in str(caught.value)
    assert "fix the path" in str(caught.value)


def test_a_string_without_a_file_comes_from_the_environment_or_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC_TEST_SECRET_FILE", raising=False)
    monkeypatch.setenv("CC_TEST_SECRET", "plain")
    assert env.env_str("CC_TEST_SECRET") == "plain"
    monkeypatch.delenv("CC_TEST_SECRET")
    assert env.env_str("CC_TEST_SECRET", "fallback") == "fallback"


def test_a_list_is_split_on_commas_without_empty_items(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_TEST_LIST", " a.example , ,b.example,")
    assert env.env_list("CC_TEST_LIST", ["x"]) == ["a.example", "b.example"]
    monkeypatch.delenv("CC_TEST_LIST")
    assert env.env_list("CC_TEST_LIST", ["x"]) == ["x"]


def test_a_relative_sqlite_url_lies_under_the_base_directory(tmp_path: Path) -> None:
    db = env.database_from_url("sqlite:///var/callcenter.sqlite3", tmp_path)
    assert db["ENGINE"] == "django.db.backends.sqlite3"
    assert db["NAME"] == str(tmp_path / "var" / "callcenter.sqlite3")


def test_an_absolute_sqlite_url_keeps_its_path(tmp_path: Path) -> None:
    db = env.database_from_url("sqlite:////srv/data/cc.sqlite3", tmp_path)
    assert db["NAME"] == "/srv/data/cc.sqlite3"


def test_a_sqlite_url_without_a_file_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="names no file"):
        env.database_from_url("sqlite:///", tmp_path)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_postgres_url_gives_every_connection_part(tmp_path: Path, scheme: str) -> None:
    db = env.database_from_url(f"{scheme}://cc%40user:p%2Fss@db.example:6543/call%20center?sslmode=require",
                               tmp_path)
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert db["NAME"] == "call center"
    assert db["USER"] == "cc@user"
    assert db["PASSWORD"] == "p/ss"
    assert db["HOST"] == "db.example"
    assert db["PORT"] == "6543"
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_a_postgres_url_without_password_or_port_leaves_them_empty(tmp_path: Path) -> None:
    db = env.database_from_url("postgres://postgres@127.0.0.1/callcenter", tmp_path)
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == ("postgres", "", "127.0.0.1", "")


def test_a_postgres_url_without_a_database_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="names no database"):
        env.database_from_url("postgres://postgres@127.0.0.1:5432/", tmp_path)


@pytest.mark.parametrize("url", ["mysql://root@localhost/cc", "oracle://x/y", "not a url", ""])
def test_an_unknown_database_scheme_fails_loudly_saying_what_is_supported(tmp_path: Path, url: str) -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        env.database_from_url(url, tmp_path)
    assert "is not supported" in str(caught.value)
    assert "sqlite:///" in str(caught.value) and "postgres://" in str(caught.value)
