"""``callcenter replay CAPTURE --ext 100=alice ...``: what the CRM stores for a raw AMI capture.

The capture goes through the bridge's codec and translator and then the CRM's call rules (calls.actions), the whole
path a live call takes, and one JSON line per stored call is printed, in order of start. Support staff use it to
explain any call: ``--explain`` also prints, to stderr, the wire events and, leg by leg, why a leg made no row.

It runs only on a throwaway database: the ``callcenter`` command (callcenter.replay_env) points the settings at a new
temporary SQLite file before Django starts and deletes it afterwards; here the file is migrated, the settings,
resources and contacts are made from the options, and nothing else is ever read or written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from callcenter import numbers
from callcenter.bridge.connectors.ami.translate import PROFILES
from callcenter.calls import replay
from callcenter.replay_env import REPLAY_DATABASE_ENV

EXIT_USAGE = 2


def _agent(text: str) -> tuple[str, str]:
    try:
        return replay.parse_agent(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole_number(low: int, high: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; {what} is {low} to {high}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; {what} is {low} to {high}")
        return value

    return parse


def _prefix(text: str) -> str:
    if not (text == "" or (text.isascii() and text.isdigit())) or len(text) > numbers.MAX_PREFIX_LENGTH:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the call prefix is up to {numbers.MAX_PREFIX_LENGTH} digits, e.g. 0 for an outside line"
        )
    return text


class Command(BaseCommand):
    help = (
        "Replay a raw AMI capture through the bridge (codec and translator) and the CRM's call rules on a throwaway "
        "database, and print one JSON line per stored call: resource, extension, type, number, contact, answered, "
        "started, duration (and transferred_to / transferred_from). Run it as `callcenter replay`."
    )
    requires_system_checks = []  # nothing to check on a database made a moment ago

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("capture", metavar="CAPTURE",
                            help="file of raw AMI bytes, as `callcenter bridge capture` records them ('-': stdin)")
        parser.add_argument("--ext", dest="agents", action="append", type=_agent, default=[], metavar="N=USERNAME",
                            help="a resource USERNAME with extension N (repeat); calls of other extensions are "
                                 "stored without resource")
        parser.add_argument("--create-when-answered", action="store_true",
                            help="S-3.7: store incoming calls only once answered, for the first agent who answers")
        parser.add_argument("--digits", type=_whole_number(numbers.MIN_DIGITS_TO_SCAN, numbers.MAX_DIGITS_TO_SCAN,
                                                           "digits to scan"),
                            default=10, metavar="N", help="S-3.2 digits to scan when matching numbers (default 10)")
        parser.add_argument("--internal-digits", type=_whole_number(numbers.MIN_INTERNAL_DIGITS,
                                                                    numbers.MAX_INTERNAL_DIGITS, "internal digits"),
                            default=3, metavar="N",
                            help="S-3.9: a number of exactly N digits is internal (default 3)")
        parser.add_argument("--update-internal", action="store_true",
                            help="S-3.11: record internal calls (off: they are ignored)")
        parser.add_argument("--profile", choices=sorted(PROFILES), default="production",
                            help="how agent channels are recognised: production (PJSIP/SIP/IAX2 phones) or lab (the "
                                 "Local-channel phones of the test captures); default production")
        parser.add_argument("--prefix", type=_prefix, default="", metavar="P",
                            help="S-3.8 call prefix, stripped from dialled numbers before matching")
        parser.add_argument("--contacts", type=Path, metavar="FILE.csv",
                            help="contacts to match callers against: name,number[,number...] a line (UTF-8)")
        parser.add_argument("--explain", action="store_true",
                            help="also print to stderr the wire events and why each leg made a row or none")

    def handle(self, *args: Any, **options: Any) -> None:
        run_log: list[str] = []  # the product's own log lines (resources saved, ...): only errors are shown
        try:
            with replay.collected_log("callcenter", run_log):
                self._replay(options)
        except replay.ReplayError as exc:
            raise CommandError(str(exc), returncode=EXIT_USAGE) from None
        finally:
            connections.close_all()
            for line in run_log:
                if line.startswith(("error", "critical")):
                    self.stderr.write(line)

    def _replay(self, options: dict[str, Any]) -> None:
        database = _throwaway_database()
        setup = replay.ReplaySetup(
            agents=replay.agents_from(options["agents"]),
            profile=options["profile"],
            digits_to_scan=options["digits"],
            internal_digits=options["internal_digits"],
            create_call_when_answered=options["create_when_answered"],
            update_internal=options["update_internal"],
            prefix=options["prefix"],
            contacts=replay.read_contacts(options["contacts"]) if options["contacts"] else (),
        )
        # The capture first: a bad one is refused before a second goes into making the database.
        translation = self._translate(options["capture"], setup)

        call_command("migrate", interactive=False, verbosity=0, database="default")
        replay.prepare(setup)
        rules_log: list[str] = []
        receipt = replay.deliver(translation.events, rules_log)

        for record in replay.stored_calls():
            self.stdout.write(replay.encode_record(record))
        self.stdout.flush()

        if options["explain"]:
            for line in replay.explain(translation, setup, receipt, rules_log):
                self.stderr.write(line)
            self.stderr.write(f"(throwaway database {database}, deleted after this run)")
        else:
            self._notes(translation, setup, receipt, rules_log)

    def _translate(self, capture: str, setup: replay.ReplaySetup) -> replay.Translation:
        config = replay.translator_config(setup)
        if capture == "-":
            return replay.translate_capture(sys.stdin.buffer, config, name="stdin")
        try:
            source: BinaryIO = open(capture, "rb")  # closed by the with below
        except OSError as exc:
            raise replay.ReplayError(f"cannot read the capture {capture!r}: {exc.strerror or exc}") from None
        with source:
            try:
                return replay.translate_capture(source, config, name=capture)
            except OSError as exc:  # a directory opens on some systems and fails on read
                raise replay.ReplayError(f"cannot read the capture {capture!r}: {exc.strerror or exc}") from None

    def _notes(self, translation: replay.Translation, setup: replay.ReplaySetup, receipt: Any,
               rules_log: list[str]) -> None:
        """Without --explain, stderr says only what may surprise: skipped garbage, nothing recognised, failures."""
        if translation.malformed:
            self.stderr.write(f"note: {translation.malformed} malformed AMI message(s) skipped (first: "
                              f"{translation.first_malformed})")
        if not translation.events:
            self.stderr.write(f"note: no call events: {replay.no_calls_hint(setup.profile)}")
        if receipt.failed:
            self.stderr.write(f"note: {receipt.failed} event(s) failed in the call rules; --explain shows which")
            for line in rules_log:
                if line.startswith(("error", "critical")):
                    self.stderr.write(f"  {line}")


def _throwaway_database() -> str:
    """The temporary SQLite file `callcenter replay` made for this run; refuses any other database."""
    expected = os.environ.get(REPLAY_DATABASE_ENV, "")
    database = settings.DATABASES["default"]
    name = str(database.get("NAME") or "")
    fresh = bool(expected) and (not os.path.exists(expected) or os.path.getsize(expected) == 0)
    if not (str(database.get("ENGINE", "")).endswith("sqlite3") and expected and name == expected and fresh):
        raise CommandError(
            "replay runs only as `callcenter replay ...`, which makes a throwaway database for the run; it never "
            "touches a configured database",
            returncode=EXIT_USAGE,
        )
    return name
