"""``callcenter demo``: a ready-to-try Callcenter in one command.

Run through the ``callcenter`` CLI, which first points the settings at var/demo.sqlite3 and a generated secret key
(callcenter.demo_env). Then: bind the port (a clash is reported before anything else happens), apply the migrations,
load the demo data, and run the parts of the product under one supervisor until Ctrl-C. Today that is the CRM; the
bridge and the simulated PBX join the same component list.
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from callcenter.crm import demo
from callcenter.crm.management.commands.serve import DEFAULT_HOST, DEFAULT_PORT, bind, port_number
from callcenter.crm.server import CrmServer
from callcenter.supervisor import Component, Supervisor


def _database_name() -> str:
    database = settings.DATABASES["default"]
    if str(database["ENGINE"]).endswith("sqlite3"):
        return str(database["NAME"])
    return f"{database.get('NAME')} on {database.get('HOST') or 'localhost'} (CALLCENTER_DATABASE_URL)"


class Command(BaseCommand):
    help = ("Set up the demo database (migrations and demo data) and run the CRM until Ctrl-C, printing the URL "
            "and the demo logins.")
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=DEFAULT_HOST, help=f"address for the CRM (default {DEFAULT_HOST})")
        parser.add_argument("--port", default=str(DEFAULT_PORT), help=f"port for the CRM (default {DEFAULT_PORT})")
        parser.add_argument("--contacts", type=int, default=demo.DEFAULT_CONTACTS, metavar="N",
                            help=f"demo contacts (default {demo.DEFAULT_CONTACTS})")

    def handle(self, *args: Any, **options: Any) -> None:
        port = port_number(options["port"])
        if port == demo.BRIDGE_PORT:
            raise CommandError(f"port {port} is the demo bridge's service port; choose another with --port",
                               returncode=2)
        if options["contacts"] < 0:
            raise CommandError(f"--contacts {options['contacts']}: give 0 or more", returncode=2)
        sock = bind(options["host"], port)
        self.check(display_num_errors=False)

        self.stdout.write(f"Preparing the demo database: {_database_name()}")
        call_command("migrate", interactive=False, verbosity=0)
        try:
            report = demo.seed(options["contacts"], crm_port=port)
        except ValidationError as exc:
            raise CommandError(f"the demo data was refused: {'; '.join(exc.messages)}") from exc
        self.stdout.write(report.lines()[0])

        components: list[Component] = [CrmServer(sock)]

        def banner() -> None:
            lines = ["", "Callcenter demo is running:"]
            for component in components:
                lines += [f"  {line}" for line in component.describe()]
            lines.append("  Logins (username / password):")
            lines += [f"  {line}" for line in report.lines()[2:]]
            lines += ["Ctrl-C to stop.", ""]
            self.stdout.write("\n".join(lines))
            self.stdout.flush()

        status = Supervisor(components, on_ready=banner).run()
        if status:
            sys.exit(status)
        self.stdout.write("Demo stopped.")
