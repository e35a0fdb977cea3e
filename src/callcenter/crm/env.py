"""Settings from the environment, through helpers that fail loudly.

A value that cannot be read raises ImproperlyConfigured naming the variable and what it accepts. Every secret may also
come from a file: NAME_FILE=/path reads the value from that file (Docker/systemd credentials style).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str | None:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{name}_FILE={file_name!r} cannot be read ({exc.strerror}); fix the path"
            ) from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 'true' or 'false'")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (compared without case); the default when unset or empty."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ImproperlyConfigured(f"{name}={raw!r} is not one of {', '.join(choices)}; use one of them")


def env_time_zone(name: str, default: str) -> str:
    """An IANA time zone name (Europe/Athens); Django would only fail on it later, with a traceback."""
    raw = env_str(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a time zone; use an IANA name such as Europe/Athens or UTC"
        ) from exc
    return value


def env_url(name: str, schemes: tuple[str, ...], example: str) -> str | None:
    """A URL with one of ``schemes``, or None when unset or empty."""
    raw = env_str(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip()
    try:
        scheme = urlsplit(value).scheme
    except ValueError:
        scheme = ""
    if scheme not in schemes:
        shown = raw if "@" not in raw else "(a URL)"  # a URL may carry a password
        raise ImproperlyConfigured(f"{name}={shown!r} is not a {' or '.join(schemes)} URL; use e.g. {example}")
    return value


def database_from_url(url: str, base_dir: Path, name: str = "CALLCENTER_DATABASE_URL") -> dict[str, object]:
    """sqlite:///relative/or/absolute/path.sqlite3 or postgres://user:pass@host:port/name (``name``: the variable it
    came from, named in the errors)."""
    try:
        parts = urlsplit(url)
        port = parts.port if parts.scheme in ("postgres", "postgresql") else None
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name} is not a valid URL ({exc}); use sqlite:///var/callcenter.sqlite3 or "
            "postgres://user:pass@host:5432/name"
        ) from None
    if parts.scheme == "sqlite":
        raw_path = unquote(parts.path)
        if raw_path in ("", "/"):
            raise ImproperlyConfigured(f"{name} {url!r} names no file; use sqlite:///var/callcenter.sqlite3")
        # As dj-database-url: three slashes and a relative path, four slashes and an absolute one.
        path = Path(raw_path[1:]) if raw_path.startswith("/") else Path(raw_path)
        if not path.is_absolute():
            path = base_dir / path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
            },
        }
    if parts.scheme in ("postgres", "postgresql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"{name} names no database; use postgres://user@host:5432/callcenter")
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "CONN_MAX_AGE": 60,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"{name} scheme {parts.scheme!r} is not supported; use sqlite:///path or postgres://user@host/name"
    )
