"""callcenter add-bridge BRIDGE_ID [--name NAME] [--secret-file PATH]: allow a bridge to talk to this CRM.

Prints (or writes to --secret-file, mode 0600) the shared secret once; put it in the bridge's settings. Running it
again for the same id makes a new secret (the old one stops working)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug

from callcenter.calls.models import Bridge


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bridge_id")
        parser.add_argument("--name", default="")
        parser.add_argument("--secret-file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        bridge_id = options["bridge_id"]
        try:
            validate_slug(bridge_id)
        except ValidationError as exc:
            raise CommandError(f"bridge id {bridge_id!r}: use letters, digits, - and _ only") from exc
        secret = secrets.token_urlsafe(32)
        bridge, created = Bridge.objects.update_or_create(
            bridge_id=bridge_id, defaults={"secret": secret, "active": True, "name": options["name"] or bridge_id}
        )
        path: Path | None = options["secret_file"]
        if path is not None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secret + "\n")
            self.stdout.write(f"bridge {bridge_id} {'added' if created else 'given a new secret'}; secret in {path}")
        else:
            self.stdout.write(f"bridge {bridge_id} {'added' if created else 'given a new secret'}; its secret:")
            self.stdout.write(secret)
