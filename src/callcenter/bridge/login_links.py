"""One-time login links for the bridge's settings page (issue 11, finding 5: the bridge no longer prints a lasting
login link with its token).

A link carries a random token (256 bits) that works once and for ``LINK_SECONDS``. The running bridge never prints
or logs one: ``callcenter bridge login-link`` makes it, in another process, by writing the token's SHA-256 (never the
token) and its expiry time to a file in ``<data_dir>/login-links/`` (the directory 0700, the file 0600: only the
bridge's own user, who can read its settings and secrets anyway, can make one); the bridge reads and deletes that
file when the link is opened. The tray makes its links in memory (``LinkBook``), also once-only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import shlex
import time
from pathlib import Path
from typing import Final

from callcenter.bridge.settings import BridgeSettings

LINK_SECONDS: Final = 600.0
DIRECTORY_NAME: Final = "login-links"
_TOKEN: Final = re.compile(r"[A-Za-z0-9_.~-]{1,200}")
_MAX_MEMORY: Final = 100


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def links_dir(data_dir: Path) -> Path:
    return data_dir / DIRECTORY_NAME


def issue(data_dir: Path, *, now: float | None = None, seconds: float = LINK_SECONDS) -> str:
    """A new one-time token, recorded (as its digest) for the bridge that uses ``data_dir``."""
    directory = links_dir(data_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    expires = (time.time() if now is None else now) + seconds
    _forget_expired(directory, expires - seconds)
    token = new_token()
    path = directory / digest(token)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(f"{expires:.3f}\n")
    return token


def redeem(data_dir: Path, token: str, *, now: float | None = None) -> bool:
    """Whether ``token`` is a link made by ``issue`` that has not expired or been used; it is used up either way."""
    if not _TOKEN.fullmatch(token):
        return False
    directory = links_dir(data_dir)
    path = directory / digest(token)
    try:
        text = path.read_text(encoding="ascii")
        path.unlink()
    except (OSError, UnicodeDecodeError):
        return False
    now = time.time() if now is None else now
    _forget_expired(directory, now)
    try:
        return float(text.strip()) > now
    except ValueError:
        return False


def _forget_expired(directory: Path, now: float) -> None:
    with contextlib.suppress(OSError):
        for path in directory.iterdir():
            with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
                if float(path.read_text(encoding="ascii").strip()) <= now:
                    path.unlink()


class LinkBook:
    """One-time tokens kept in memory by the running bridge (the tray's links); digests only."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}

    def issue(self, *, now: float | None = None, seconds: float = LINK_SECONDS) -> str:
        now = time.monotonic() if now is None else now
        self._expiry = {key: end for key, end in self._expiry.items() if end > now}
        while len(self._expiry) >= _MAX_MEMORY:
            del self._expiry[next(iter(self._expiry))]
        token = new_token()
        self._expiry[digest(token)] = now + seconds
        return token

    def add(self, token: str, *, now: float | None = None, seconds: float = LINK_SECONDS) -> None:
        """Accept ``token`` (made elsewhere) once."""
        self._expiry[digest(token)] = (time.monotonic() if now is None else now) + seconds

    def redeem(self, token: str, *, now: float | None = None) -> bool:
        if not _TOKEN.fullmatch(token):
            return False
        key = digest(token)
        for known in list(self._expiry):
            if hmac.compare_digest(known, key):
                end = self._expiry.pop(known)
                return end > (time.monotonic() if now is None else now)
        return False


def login_link_command(settings: BridgeSettings) -> str:
    """What to type for a link to this bridge's page (named in the start banner and on the login page)."""
    command = "callcenter bridge login-link"
    if settings.source is not None:
        source = str(settings.source)
        command += f" --config {shlex.quote(source)}"
    return command


def page_url(host: str, port: int) -> str:
    """The settings page's address for a bridge listening on ``host``: always a loopback one (the page answers
    nobody else)."""
    host = host.strip().strip("[]")
    if host in ("", "0.0.0.0", "localhost"):  # noqa: S104 - a wildcard listener answers on the loopback too
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    try:
        address = ipaddress.ip_address(host)
        loopback = address.is_loopback or (
            isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None
            and address.ipv4_mapped.is_loopback
        )
    except ValueError:
        loopback = False
    if not loopback:
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def link_for(settings: BridgeSettings, token: str) -> str:
    return f"{page_url(settings.address, settings.port)}login?token={token}"
