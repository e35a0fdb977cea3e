"""``callcenter seed-demo``: load the demo data (idempotent, deterministic); see callcenter.crm.demo."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from callcenter.crm import demo


class Command(BaseCommand):
    help = (
        "Load the demo data: administrator Carol, agents Alice (ext 100) and Bob (ext 101), contacts with Greek "
        "numbers, activity types, a call-center campaign and the call-center settings. Running it again adds and "
        "changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--contacts", type=int, default=demo.DEFAULT_CONTACTS, metavar="N",
            help=f"contacts in all, the fixed known callers included (default {demo.DEFAULT_CONTACTS})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count = options["contacts"]
        if count < 0:
            raise CommandError(f"--contacts {count}: give a number of contacts of 0 or more", returncode=2)
        try:
            report = demo.seed(count)
        except ValidationError as exc:
            raise CommandError(f"the demo data was refused: {'; '.join(exc.messages)}") from exc
        for line in report.lines():
            self.stdout.write(line)
