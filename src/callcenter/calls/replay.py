"""A raw AMI capture through the whole path: the bridge's codec and translator, then the CRM's call rules.

``callcenter replay`` (crm/management/commands/replay.py) runs these steps on a throwaway database it makes for the
run; the functions here use whatever database is current and never choose one themselves.

1. ``translate_capture``: the capture's bytes through ``Pipeline`` (the code the live bridge runs), into wire events.
   A capture in which not one well-formed AMI message is found is refused (``ReplayError``).
2. ``prepare``: the call-center settings (phone system Asterisk and the S-3 options given), a resource per
   ``--ext N=username`` and the contacts of a CSV file, all through the same actions as the CRM's own pages.
3. ``deliver``: the wire events to ``calls.actions.receive_events`` in the bridge's batches, as a bridge delivers them.
4. ``stored_calls``: one record per stored call, in order of start; ``explain`` says, leg by leg, what the rules made
   of each call and why a leg made no row.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.utils import timezone

from callcenter import numbers, wire
from callcenter.bridge.connectors.ami.codec import AMIConnection, Message
from callcenter.bridge.connectors.ami.pipeline import Pipeline
from callcenter.bridge.connectors.ami.translate import PROFILES, TranslatorConfig
from callcenter.calls.actions import Receipt, receive_events
from callcenter.calls.models import Call, CallLeg, ProcessedEvent
from callcenter.contacts.actions import MatchRules, create_contact, match_caller
from callcenter.contacts.models import PHONE_SLOTS
from callcenter.resources.actions import ensure_resource, update_call_center_settings
from callcenter.resources.models import CallCenterSettings, PhoneSystem

CHUNK = 64 * 1024
BATCH = 500  # the bridge's default delivery batch (bridge.delivery)
_EXTENSION = re.compile(r"[0-9]{1,8}")
_USERNAME = UnicodeUsernameValidator()


class ReplayError(Exception):
    """Input the replay cannot use; the text says what is wrong and what to do."""


# ---- what to replay with -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactRow:
    line: int
    name: str
    numbers: tuple[str, ...]
    source: str = "contacts file"


@dataclass(frozen=True)
class ReplaySetup:
    """The CRM the capture is replayed into: agents (extension -> username), S-3 settings and contacts."""

    agents: Mapping[str, str] = field(default_factory=dict)
    profile: str = "production"
    digits_to_scan: int = 10
    internal_digits: int = 3
    create_call_when_answered: bool = False
    update_internal: bool = False
    prefix: str = ""
    contacts: Sequence[ContactRow] = ()


def parse_agent(text: str) -> tuple[str, str]:
    """``100=alice`` -> ("100", "alice"); ValueError says what is wrong."""
    extension, equals, username = text.partition("=")
    extension, username = extension.strip(), username.strip()
    if not equals or not extension or not username:
        raise ValueError(f"{text!r} is not EXTENSION=USERNAME; write it like 100=alice")
    if not _EXTENSION.fullmatch(extension):
        raise ValueError(f"{text!r}: the extension {extension!r} is not 1 to 8 digits")
    try:
        _USERNAME(username)
    except ValidationError:
        raise ValueError(f"{text!r}: the username {username!r} may hold letters, digits and @ . + - _ only") from None
    if len(username) > 150:
        raise ValueError(f"{text!r}: a username has at most 150 characters")
    return extension, username


def agents_from(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    """The extension -> username map of several ``--ext``; one extension per user and one user per extension."""
    agents: dict[str, str] = {}
    owner: dict[str, str] = {}
    for extension, username in pairs:
        if agents.get(extension, username) != username:
            raise ReplayError(f"--ext {extension} is given twice ({agents[extension]} and {username}); give it once")
        if owner.get(username, extension) != extension:
            raise ReplayError(f"--ext: {username} is given two extensions ({owner[username]} and {extension}); "
                              "a resource has one extension")
        agents[extension] = username
        owner[username] = extension
    return agents


def read_contacts(path: Path) -> list[ContactRow]:
    """Contacts from a CSV file: ``name,number[,number...]`` a line (at most four numbers); a first line
    ``name,number...`` is a header. UTF-8 (a byte-order mark is fine)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ReplayError(f"cannot read the contacts file {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReplayError(f"the contacts file {str(path)!r} is not UTF-8 text; save it as UTF-8 CSV") from None
    rows: list[ContactRow] = []
    reader = csv.reader(io.StringIO(text))
    try:
        for cells in reader:
            line = reader.line_num
            cells = [cell.strip() for cell in cells]
            if not any(cells):
                continue
            if line == 1 and _is_header(cells):
                continue
            name, phones = cells[0], tuple(cell for cell in cells[1:] if cell)
            where = f"contacts file {str(path)!r}, line {line}"
            if not name or not phones:
                raise ReplayError(f"{where}: write a name and at least one number, like: Maria Papadopoulou,"
                                  "+302101234567")
            if len(phones) > len(PHONE_SLOTS):
                raise ReplayError(f"{where}: {len(phones)} numbers; a contact has at most {len(PHONE_SLOTS)}")
            rows.append(ContactRow(line, name, phones, source=f"contacts file {str(path)!r}"))
    except csv.Error as exc:
        raise ReplayError(f"contacts file {str(path)!r} is not valid CSV: {exc}") from None
    return rows


def _is_header(cells: Sequence[str]) -> bool:
    return cells[0].lower() == "name" and all(cell.lower().startswith(("number", "phone")) for cell in cells[1:])


# ---- 1. capture -> wire events -----------------------------------------------------------------------------------


@dataclass
class Translation:
    events: list[wire.Event]
    size: int = 0
    messages: int = 0  # well-formed AMI messages (banner, events, responses)
    malformed: int = 0
    first_malformed: str = ""
    log: list[str] = field(default_factory=list)  # what the translator logged (skipped messages, ...)


class _Collect(logging.Handler):
    def __init__(self, into: list[str], limit: int = 200) -> None:
        super().__init__(logging.DEBUG)
        self.into = into
        self.limit = limit

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.into) < self.limit:
            self.into.append(f"{record.levelname.lower()} {record.name}: {record.getMessage()}")


class collected_log:  # noqa: N801 - used as a context manager, like contextlib's
    """Collect the records of ``logger`` (instead of the console) while inside."""

    def __init__(self, logger: str, into: list[str], level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(logger)
        self.handler = _Collect(into)
        self.level = level

    def __enter__(self) -> None:
        self.saved = self.logger.level, self.logger.propagate
        self.logger.addHandler(self.handler)
        self.logger.setLevel(self.level)
        self.logger.propagate = False

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]


def translator_config(setup: ReplaySetup) -> TranslatorConfig:
    """Every agent channel is followed (a server bridge), so a call to an extension nobody owns shows too."""
    if setup.profile not in PROFILES:
        raise ReplayError(f"unknown profile {setup.profile!r}; use one of: {', '.join(sorted(PROFILES))}")
    return TranslatorConfig.for_profile(setup.profile, internal_digits=setup.internal_digits)


def translate_capture(source: BinaryIO, config: TranslatorConfig, *, name: str = "capture") -> Translation:
    """The wire events of the raw AMI bytes in ``source``, by the live bridge's pipeline. A second codec reads the
    same bytes only to count well-formed and malformed messages: a capture with no well-formed one is refused."""
    pipeline = Pipeline(config)
    counter = AMIConnection("client")
    result = Translation(events=[])
    with collected_log("callcenter.bridge", result.log, logging.DEBUG):
        while True:
            chunk = source.read(CHUNK)
            result.size += len(chunk)
            result.events.extend(pipeline.receive(chunk))
            counter.receive_data(chunk)
            while isinstance(message := counter.next_event(), Message):
                if message.kind == "malformed":
                    result.malformed += 1
                    result.first_malformed = result.first_malformed or _printable(message.error)
                else:
                    result.messages += 1
            if not chunk:
                break
    if result.size == 0:
        raise ReplayError(f"{name} is empty; give a capture of the raw bytes Asterisk sent (callcenter bridge capture)")
    if result.messages == 0:
        raise ReplayError(
            f"{name} is not an AMI capture: not one Asterisk Manager message in its {result.size} bytes (first "
            f"problem: {result.first_malformed or 'none'}). Give the raw bytes Asterisk sent, as recorded by "
            "`callcenter bridge capture`, nc or a tcpdump payload."
        )
    return result


def _printable(text: str, limit: int = 120) -> str:
    shown = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return shown + ("..." if len(text) > limit else "")


# ---- 2. the CRM to replay into -----------------------------------------------------------------------------------


def prepare(setup: ReplaySetup) -> None:
    """Settings, resources and contacts, through the CRM's own actions (the same validation as its pages)."""
    try:
        update_call_center_settings(
            phone_system=PhoneSystem.ASTERISK,
            digits_to_scan=setup.digits_to_scan,
            internal_digits=setup.internal_digits,
            create_call_when_answered=setup.create_call_when_answered,
            update_from_internal_calls=setup.update_internal,
            call_prefix=setup.prefix,
        )
    except ValidationError as exc:
        raise ReplayError(f"the settings were refused: {'; '.join(exc.messages)}") from None
    for extension, username in setup.agents.items():
        try:
            ensure_resource(username, extension=extension, options={"cc_active": True})
        except ValidationError as exc:
            raise ReplayError(f"--ext {extension}={username}: {'; '.join(exc.messages)}") from None
    rules = MatchRules.current()
    for row in setup.contacts:
        first, _space, last = row.name.partition(" ")
        try:
            create_contact(first_name=first, last_name=last, phones=row.numbers, rules=rules)
        except ValidationError as exc:
            raise ReplayError(f"{row.source}, line {row.line} ({row.name}): {'; '.join(exc.messages)}") from None


# ---- 3. the call rules -------------------------------------------------------------------------------------------


def deliver(events: Sequence[wire.Event], log_lines: list[str] | None = None) -> Receipt:
    """The events to the call rules in the bridge's batches; what the rules log goes to ``log_lines``."""
    total = Receipt()
    lines: list[str] = [] if log_lines is None else log_lines
    with collected_log("callcenter.calls", lines):
        for start in range(0, len(events), BATCH):
            receipt = receive_events(None, events[start:start + BATCH])
            total.accepted += receipt.accepted
            total.duplicates += receipt.duplicates
            total.failed += receipt.failed
    return total


# ---- 4. what was stored, and why -----------------------------------------------------------------------------------


def _started(when: dt.datetime) -> str:
    return timezone.localtime(when).isoformat(timespec="microseconds")


def stored_calls() -> list[dict[str, object]]:
    """One record per stored call, in order of start."""
    records: list[dict[str, object]] = []
    for call in Call.objects.select_related("resource__user", "contact").order_by("started_at", "pk"):
        record: dict[str, object] = {
            "resource": call.resource.user.get_username() if call.resource else None,
            "extension": call.extension,
            "type": call.kind,
            "number": call.number,
            "contact": call.contact.display_name if call.contact else None,
            "answered": call.answered_at is not None,
            "started": _started(call.started_at),
            "duration": call.duration,
        }
        if call.transferred_to:
            record["transferred_to"] = call.transferred_to
        if call.transferred_from:
            record["transferred_from"] = call.transferred_from
        records.append(record)
    return records


def describe_event(event: wire.Event) -> str:
    """One readable line per wire event: time, type and the fields that say something."""
    fields = wire.to_builtins(event)
    kind = fields.pop("type")
    for name in ("v", "event_id", "occurred_at"):
        fields.pop(name, None)
    when = dt.datetime.fromtimestamp(event.occurred_at, tz=dt.UTC)
    parts = [f"{name}={_shown(value)}" for name, value in fields.items() if value not in ("", None, False, [])]
    return f"{_started(when)} {kind} {' '.join(parts)}"


def _shown(value: object) -> str:
    if isinstance(value, str) and value and not any(ch.isspace() or ch == '"' for ch in value):
        return value
    return json.dumps(value, ensure_ascii=False)


def explain(translation: Translation, setup: ReplaySetup, receipt: Receipt, rules_log: Sequence[str]) -> Iterator[str]:
    """For support staff: the wire events, then each leg of each call and what the rules made of it."""
    settings = CallCenterSettings.load()
    yield (f"capture: {translation.size} bytes, {translation.messages} AMI messages"
           + (f", {translation.malformed} malformed (skipped)" if translation.malformed else "")
           + f"; profile {setup.profile}")
    yield (f"settings: phone system Asterisk, digits to scan {settings.digits_to_scan}, internal digits "
           f"{settings.internal_digits}, call prefix {settings.call_prefix or '(none)'}, create-when-answered "
           f"{_on(settings.create_call_when_answered)}, update-internal {_on(settings.update_from_internal_calls)}")
    agents = ", ".join(f"{ext}={user}" for ext, user in sorted(setup.agents.items())) or "none"
    yield f"resources: {agents}; contacts: {len(setup.contacts)}"
    yield f"wire events ({len(translation.events)}):"
    for event in translation.events:
        yield f"  {describe_event(event)}"
    if not any(isinstance(event, wire.CALL_EVENTS) for event in translation.events):
        yield f"  no call events: {no_calls_hint(setup.profile)}"
    for line in translation.log:
        yield f"  translator: {line}"
    yield (f"call rules: {receipt.accepted} events accepted, {receipt.duplicates} duplicates"
           + (f", {receipt.failed} FAILED" if receipt.failed else ""))
    for line in rules_log:
        yield f"  {line}"
    yield "legs:"
    rules = MatchRules.current()
    failures = _failures()
    for leg in CallLeg.objects.select_related("call__resource__user", "call__contact").order_by("rang_at", "pk"):
        yield f"  call {leg.pbx_call_id} extension {leg.extension} ({_leg_summary(leg)}):"
        for line in _why(leg, settings, rules, has_contacts=bool(setup.contacts)):
            yield f"    {line}"
        for error in failures.get((leg.pbx_call_id, leg.extension), []):
            yield f"    an event FAILED in the call rules: {error}"


def no_calls_hint(profile: str) -> str:
    other = "lab" if profile == "production" else "production"
    return (f"no agent channel was recognised with the {profile} profile; if the phones are "
            f"{'Local channels (the lab captures)' if other == 'lab' else 'PJSIP/SIP/IAX2 channels'}, "
            f"try --profile {other}")


def _on(value: bool) -> str:
    return "on" if value else "off"


def _leg_summary(leg: CallLeg) -> str:
    parts = [leg.direction or "direction unknown", f"number {leg.remote_number or '(none)'}"]
    parts.append("answered" if leg.answered_at else "not answered")
    if leg.transferred_from:
        parts.append(f"transferred from {leg.transferred_from}")
    if leg.transferred_to:
        parts.append(f"transferred to {leg.transferred_to}")
    return ", ".join(parts)


def _failures() -> dict[tuple[str, str], list[str]]:
    failures: dict[tuple[str, str], list[str]] = {}
    for event in ProcessedEvent.objects.filter(failed=True).order_by("pk"):
        payload = event.payload if isinstance(event.payload, dict) else {}
        key = (str(payload.get("call_id", "")), str(payload.get("extension", "")))
        failures.setdefault(key, []).append(f"{event.event_type} {event.event_id}: {event.error}")
    return failures


def _why(leg: CallLeg, settings: CallCenterSettings, rules: MatchRules, *, has_contacts: bool) -> Iterator[str]:
    """What the rules (calls.actions.project) made of ``leg``, in words."""
    call = leg.call
    if call is not None:
        owner = f"resource {call.resource.user.get_username()}" if call.resource else "no resource"
        yield f"stored: {call.kind} for {owner}, {'answered' if call.answered_at else 'not answered'}, " \
              f"duration {call.duration} s"
        if call.resource is None:
            yield (f"extension {leg.extension} belongs to no resource (no --ext {leg.extension}=USERNAME): stored "
                   "without resource, for administrators")
        if call.transferred_from and settings.create_call_when_answered:
            yield "came by transfer: stored although create-when-answered is on (a transferred call always is)"
        yield from _contact_lines(call, rules, has_contacts=has_contacts)
        return
    if leg.cleared:
        yield "no row: cleared from the screen"
    elif not settings.enabled:
        yield "no row: the phone system is None, so the call center is off"
    elif leg.rang_at is None:
        yield ("no row: no ringing was seen for this leg (did the capture start after it rang?), so its direction and "
               "number are unknown")
    elif leg.direction.startswith("internal") and not settings.update_from_internal_calls:
        yield "no row: internal call ignored: update-internal is off (--update-internal records internal calls)"
    elif leg.direction in ("in", "internal-in") and settings.create_call_when_answered and not leg.transferred_from:
        first = Call.objects.filter(answer_group=leg.pbx_call_id).first()
        if first is not None:
            yield f"no row: create-when-answered: stored for {first.extension} who answered first"
        elif leg.answered_at is None:
            yield "no row: create-when-answered: nobody answered, so the call is stored for nobody"
        else:
            yield "no row: create-when-answered, yet no agent's row was stored (see any failure below)"
    else:
        yield "no row, and no rule says why: see any failure below, and report it with this output"


def _contact_lines(call: Call, rules: MatchRules, *, has_contacts: bool) -> Iterator[str]:
    if call.kind == "internal" or not call.number:
        return
    dialled = call.direction == "out"
    found = match_caller(call.number, rules=rules, dialled=dialled, limit=5)
    key = rules.key(call.number, dialled=dialled)
    if numbers.is_internal(call.number, rules.internal_digits):
        yield f"number {call.number} has {rules.internal_digits} digits, so it is internal: no contact is looked up"
    elif not found:
        yield f"no contact has a number ending in {key}" + ("" if has_contacts else " (no --contacts FILE.csv given)")
    elif len(found) == 1:
        yield f"contact: {found[0].display_name} (number ending in {key})"
    else:
        names = ", ".join(contact.display_name for contact in found)
        yield (f"{len(found)}{'+' if len(found) == 5 else ''} contacts have a number ending in {key} ({names}): the "
               "call keeps none and the screen offers the choice")


def encode_record(record: Mapping[str, object]) -> str:
    return json.dumps(record, ensure_ascii=False)
