"""``callcenter serve``: run the CRM (pages, admin, and as the product grows WebSockets and the bridge endpoint)."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

from callcenter.crm.server import CrmServer
from callcenter.supervisor import ListenError, Supervisor, listen

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise CommandError(f"--port {text!r} is not a port number; give one from 1 to 65535", returncode=2) from None
    if not 1 <= port <= 65535:
        raise CommandError(f"--port {port} is out of range; give one from 1 to 65535", returncode=2)
    return port


def bind(host: str, port: int) -> Any:
    try:
        return listen(host, port)
    except ListenError as exc:
        raise CommandError(str(exc), returncode=2) from None


def unapplied_migrations_warning() -> str | None:
    try:
        connection = connections["default"]
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return f"Warning: the database cannot be read ({exc}); pages will fail until it can."
    if plan:
        return (f"Warning: {len(plan)} database migration(s) not applied; run `callcenter migrate` "
                "(or `callcenter demo` for a ready-made demo).")
    return None


class Command(BaseCommand):
    help = "Run the CRM web server (ASGI, uvicorn) until Ctrl-C."
    requires_system_checks = []  # checked below, after the port is known to be free

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=DEFAULT_HOST,
                            help=f"address to listen on (default {DEFAULT_HOST}; 0.0.0.0 for every interface, then "
                                 "list the names in CALLCENTER_ALLOWED_HOSTS)")
        parser.add_argument("--port", default=str(DEFAULT_PORT), help=f"port to listen on (default {DEFAULT_PORT})")
        parser.add_argument("--no-access-log", action="store_true", help="do not log every request")

    def handle(self, *args: Any, **options: Any) -> None:
        port = port_number(options["port"])
        sock = bind(options["host"], port)
        self.check(display_num_errors=False)
        warning = unapplied_migrations_warning()
        if warning:
            self.stderr.write(warning)
        server = CrmServer(sock, access_log=not options["no_access_log"])

        def banner() -> None:
            self.stdout.write(f"Callcenter CRM running at {server.url}")
            self.stdout.write("Ctrl-C to stop.")
            self.stdout.flush()

        status = Supervisor([server], on_ready=banner).run()
        if status:
            sys.exit(status)
