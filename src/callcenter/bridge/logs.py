"""The bridge's logs: the error log (S-5.5, S-5.10), the extended event log (S-5.9) and the console.

Rules:
- Every handler the bridge installs carries ``Redactor``: each known secret value (the bridge secret, the AMI and
  TSAPI passwords, the settings page's admin token) and every ``Secret: ...`` / ``password=...`` field is replaced by
  ``***`` in the message, its arguments and any traceback, before any handler formats it.
- The error log is ``errors.log`` in ``data_dir`` (rotating, warnings and errors of the whole bridge) when
  ``external_log`` is on; the last errors are also kept in memory for the settings page whatever the setting.
- The extended event log is ``events.log`` in ``data_dir`` (rotating) when ``extended_log`` is on: one line per wire
  event the bridge emits (``event <json>``) and per AMI action or message a connector logs to the logger
  ``callcenter.bridge.events`` (connectors use ``event_logger("ami")``). It never reaches the console or error log.
- ``configure`` may be called again with new settings (the settings page): handlers are replaced, not stacked;
  ``close`` removes everything it installed.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.handlers
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Final, TextIO

from callcenter import wire
from callcenter.bridge.settings import BridgeSettings

ERROR_LOG_NAME: Final = "errors.log"
EVENT_LOG_NAME: Final = "events.log"
EVENT_LOGGER: Final = "callcenter.bridge.events"
ERROR_LOG_BYTES: Final = 1_000_000
ERROR_LOG_BACKUPS: Final = 5
EVENT_LOG_BYTES: Final = 10_000_000
EVENT_LOG_BACKUPS: Final = 5
RECENT_ERRORS: Final = 200
MIN_REDACTED_LENGTH: Final = 4  # shorter values would blank out ordinary digits; their fields are still redacted
MASK: Final = "***"

_CHATTY: Final = ("httpx", "httpcore")  # libraries that log every request at INFO or DEBUG
_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# "Secret: x" (AMI Login), "password=x", "password: x", '"password": "x"', "agent_password='x'", "token=x"
_FIELD_PATTERNS: Final = (
    re.compile(r"(?im)^(\s*(?:secret|password|agentpass(?:word)?)\s*:\s*)(\S.*?)(\r?)$"),
    re.compile(
        r"""(?i)(["']?\b[\w-]*(?:password|passwd|secret|token)["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&}\]]+)"""
    ),
)


def event_logger(kind: str) -> logging.Logger:
    """The extended event log for ``kind`` (``ami``, ``wire``, ...): written only when extended_log is on."""
    return logging.getLogger(f"{EVENT_LOGGER}.{kind}")


class Redactor(logging.Filter):
    """Blanks out secrets in every record before it is formatted. Attach it to every handler."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if len(secret) < MIN_REDACTED_LENGTH:
            return
        # The value as written, and as repr() or JSON would escape it.
        for form in {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}:
            if form and form not in self._secrets:
                self._secrets.append(form)
        self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _FIELD_PATTERNS:
            text = pattern.sub(_mask_field, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_callcenter_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record (nor leak its arguments unredacted)
            message = f"{record.msg!s} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record._callcenter_redacted = True
        return True


def _mask_field(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[:1] in ("'", '"') else ""
    tail = match.group(3) if match.re.groups >= 3 else ""
    return f"{match.group(1)}{quote}{MASK}{quote}{tail}"


class RecentErrors(logging.Handler):
    """The last warnings and errors, in memory, for the settings page's Error log."""

    def __init__(self, capacity: int = RECENT_ERRORS) -> None:
        super().__init__(logging.WARNING)
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)


class BridgeLogs:
    """The handlers of one running bridge; ``configure(settings)`` applies S-5.9/S-5.10 and may be called again."""

    def __init__(self, *, console: TextIO | None = None, console_level: int = logging.INFO) -> None:
        self.redactor = Redactor()
        self.recent = RecentErrors()
        self.recent.addFilter(self.redactor)
        self._console: logging.Handler | None = None
        if console is not None:
            self._console = logging.StreamHandler(console)
            self._console.setLevel(console_level)
            self._console.setFormatter(logging.Formatter(_FORMAT))
            self._console.addFilter(self.redactor)
        self._error_file: logging.Handler | None = None
        self._event_file: logging.Handler | None = None
        self.error_log_path: Path | None = None
        self.event_log_path: Path | None = None
        self._installed = False
        self._old_root_level = logging.getLogger().level
        self._chatty_levels: dict[str, int] = {}

    @property
    def extended(self) -> bool:
        return self._event_file is not None

    def configure(self, settings: BridgeSettings) -> None:
        """Install (or re-install) the handlers for ``settings``; raises OSError when data_dir cannot be written."""
        for secret in settings.secrets():
            self.redactor.add(secret)
        root = logging.getLogger()
        events = logging.getLogger(EVENT_LOGGER)
        if not self._installed:
            root.setLevel(logging.INFO)
            for name in _CHATTY:
                # httpx says "HTTP Request: POST ... 200 OK" at INFO for every batch the bridge delivers; the
                # deliverer reports what matters (failures, back-off, dead letters) itself.
                self._chatty_levels[name] = logging.getLogger(name).level
                logging.getLogger(name).setLevel(logging.WARNING)
            root.addHandler(self.recent)
            if self._console is not None:
                root.addHandler(self._console)
            events.propagate = False  # the event log is its own file, never the console or the error log
            self._installed = True
        self._replace_files(settings)

    def _replace_files(self, settings: BridgeSettings) -> None:
        root = logging.getLogger()
        events = logging.getLogger(EVENT_LOGGER)
        new_error: logging.Handler | None = None
        new_event: logging.Handler | None = None
        if settings.external_log or settings.extended_log:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        error_path = settings.data_dir / ERROR_LOG_NAME
        event_path = settings.data_dir / EVENT_LOG_NAME
        if settings.external_log:
            new_error = self._file_handler(error_path, ERROR_LOG_BYTES, ERROR_LOG_BACKUPS, logging.WARNING)
        if settings.extended_log:
            try:
                new_event = self._file_handler(event_path, EVENT_LOG_BYTES, EVENT_LOG_BACKUPS, logging.DEBUG)
            except OSError:
                if new_error is not None:
                    new_error.close()
                raise
        for old, new, logger in ((self._error_file, new_error, root), (self._event_file, new_event, events)):
            if old is not None:
                logger.removeHandler(old)
                old.close()
            if new is not None:
                logger.addHandler(new)
        events.setLevel(logging.DEBUG if new_event is not None else logging.CRITICAL + 1)
        self._error_file, self._event_file = new_error, new_event
        self.error_log_path = error_path if new_error is not None else None
        self.event_log_path = event_path if new_event is not None else None

    def _file_handler(self, path: Path, max_bytes: int, backups: int, level: int) -> logging.Handler:
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8")
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler.addFilter(self.redactor)
        return handler

    def log_event(self, event: wire.Event) -> None:
        """One wire event in the extended event log (cheap no-op when it is off)."""
        if self._event_file is not None:
            event_logger("wire").debug("event %s", wire.encode(event).decode("utf-8", "replace"))

    def close(self) -> None:
        root = logging.getLogger()
        events = logging.getLogger(EVENT_LOGGER)
        for handler in (self._error_file, self.recent, self._console):
            if handler is not None:
                root.removeHandler(handler)
        if self._event_file is not None:
            events.removeHandler(self._event_file)
        for handler in (self._error_file, self._event_file, self._console):
            if handler is not None:
                handler.close()
        self._error_file = self._event_file = None
        if self._installed:
            events.propagate = True
            events.setLevel(logging.NOTSET)
            root.setLevel(self._old_root_level)
            for name, level in self._chatty_levels.items():
                logging.getLogger(name).setLevel(level)
        self._installed = False


def read_error_log(data_dir: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of the error log in ``data_dir`` (older rotated files first), [] when there is none."""
    paths = [data_dir / f"{ERROR_LOG_NAME}.{n}" for n in range(ERROR_LOG_BACKUPS, 0, -1)]
    paths.append(data_dir / ERROR_LOG_NAME)
    tail: collections.deque[str] = collections.deque(maxlen=max(lines, 0))
    for path in paths:
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    tail.append(line.rstrip("\n"))
        except FileNotFoundError:
            continue
    return list(tail)


def print_error_log(settings: BridgeSettings, lines: int, out: TextIO | None = None) -> int:
    """``callcenter bridge errors``: the error log for people; 0 when shown, 1 when there is none to show."""
    out = sys.stdout if out is None else out
    path = settings.data_dir / ERROR_LOG_NAME
    found = read_error_log(settings.data_dir, lines)
    if not found:
        why = "" if settings.external_log else " (external_log is off in [bridge], so errors go only to the console)"
        exists = path.exists() or any(path.parent.glob(f"{ERROR_LOG_NAME}.*"))
        out.write(f"the error log {path} is empty{why}\n" if exists else f"no error log at {path}{why}\n")
        return 0 if exists else 1
    redactor = Redactor(settings.secrets())  # written redacted; redact again in case an older bridge wrote it
    for line in found:
        out.write(redactor.redact(line) + "\n")
    return 0
