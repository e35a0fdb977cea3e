"""``callcenter demo``: the whole product in one command: the CRM, the bridge and a simulated PBX ringing the agents.

Run through the ``callcenter`` CLI, which first points the settings at var/demo.sqlite3 and a generated secret key
(callcenter.demo_env). Then:
1. check the ports before anything else happens (the CRM's is bound and kept, the bridge's and an explicit AMI
   port are tried): a clash is one sentence naming the option to change, exit status 2, nothing left running;
2. apply the migrations and load the demo data (its resources' call-center options point at this demo's bridge);
3. allow the bridge ``demo`` to talk to the CRM (``callcenter add-bridge``, only when var/demo-bridge.secret and the
   CRM's row do not agree already, so the secret is reused across runs) and make the simulator's AMI secret
   (var/demo-ami.secret); both files are the owner's only and never printed;
4. run the simulated PBX, the bridge (its settings written to var/demo-bridge.toml) and the CRM under one supervisor
   (callcenter.demo_product) until Ctrl-C, printing one banner and then one line per simulated call.
"""

from __future__ import annotations

import hmac
import io
import logging
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from callcenter import demo_product
from callcenter.bridge.logs import Redactor
from callcenter.calls.models import Bridge
from callcenter.crm import demo
from callcenter.crm.management.commands.serve import DEFAULT_HOST, DEFAULT_PORT, bind, port_number
from callcenter.crm.server import CrmServer
from callcenter.demo_env import demo_var_dir, ensure_secret_file
from callcenter.supervisor import Component, ListenError, Supervisor, listen

QUIET_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _database_name() -> str:
    database = settings.DATABASES["default"]
    if str(database["ENGINE"]).endswith("sqlite3"):
        return str(database["NAME"])
    return f"{database.get('NAME')} on {database.get('HOST') or 'localhost'} (CALLCENTER_DATABASE_URL)"


def _port(text: str, option: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise CommandError(f"{option} {text!r} is not a port number; give one from 1 to 65535", returncode=2) from None
    if not 1 <= port <= 65535:
        raise CommandError(f"{option} {port} is out of range; give one from 1 to 65535", returncode=2)
    return port


def _check_free(port: int, what: str, option: str) -> None:
    """Whether ``port`` can be listened on now, on loopback (the socket is closed again at once)."""
    try:
        listen(demo_product.BRIDGE_ADDRESS, port, what=what, option=option).close()
    except ListenError as exc:
        raise CommandError(str(exc), returncode=2) from None


def _callback_address(host: str) -> str:
    """Where the bridge reaches the CRM: the address it listens on, loopback for a wildcard or localhost."""
    if host in ("0.0.0.0", "", "localhost", "::"):  # noqa: S104 - naming the wildcard, not binding to it
        return "127.0.0.1"
    return host.strip("[]")


def ensure_demo_bridge(var: Path) -> Path:
    """The CRM's bridge ``demo`` and its secret in var/demo-bridge.secret, agreeing; made (with
    ``callcenter add-bridge``) only when they do not agree already. Returns the secret file."""
    secret_path = var / demo_product.BRIDGE_SECRET_NAME
    known = demo_product.read_secret(secret_path) if secret_path.is_file() else ""
    row = Bridge.objects.filter(bridge_id=demo_product.BRIDGE_ID).first()
    if known and row is not None and row.active and hmac.compare_digest(row.secret.encode(), known.encode()):
        return secret_path
    call_command("add_bridge", demo_product.BRIDGE_ID, name="Demo bridge", secret_file=secret_path,
                 stdout=io.StringIO())
    secret_path.chmod(0o600)
    return secret_path


def _quiet_console() -> Redactor:
    """The demo's console shows warnings and errors only (the bridge sets the root logger to INFO for its error
    log), with every secret blanked out: add them to the redactor returned."""
    redactor = Redactor()
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
            handler.addFilter(redactor)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return redactor


class Command(BaseCommand):
    help = ("Run the whole product for trying it out: set up the demo database (migrations and demo data), then run "
            "the CRM, the bridge and a simulated PBX that rings the agents, until Ctrl-C.")
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=DEFAULT_HOST, help=f"address for the CRM (default {DEFAULT_HOST})")
        parser.add_argument("--port", default=str(DEFAULT_PORT), help=f"port for the CRM (default {DEFAULT_PORT})")
        parser.add_argument("--bridge-port", default=str(demo.BRIDGE_PORT), metavar="PORT",
                            help=f"port of the bridge's command listener on 127.0.0.1 (default {demo.BRIDGE_PORT})")
        parser.add_argument("--ami-port", default=None, metavar="PORT",
                            help="port of the simulated PBX's AMI on 127.0.0.1 (default "
                                 f"{demo_product.DEFAULT_AMI_PORT} if free, else any free port)")
        parser.add_argument("--contacts", type=int, default=demo.DEFAULT_CONTACTS, metavar="N",
                            help=f"demo contacts (default {demo.DEFAULT_CONTACTS})")
        calls = parser.add_mutually_exclusive_group()
        low, high = demo_product.DEFAULT_EVERY
        calls.add_argument("--calls-every", default=f"{low:g}-{high:g}", metavar="S|MIN-MAX",
                           help=f"seconds between simulated incoming calls (default {low:g}-{high:g})")
        calls.add_argument("--no-calls", action="store_true", help="no simulated incoming calls")

    def handle(self, *args: Any, **options: Any) -> None:
        port = port_number(options["port"])
        bridge_port = _port(options["bridge_port"], "--bridge-port")
        ami_port = None if options["ami_port"] is None else _port(options["ami_port"], "--ami-port")
        if port == bridge_port:
            raise CommandError(f"port {port} is the demo bridge's port; choose another with --port or --bridge-port",
                               returncode=2)
        if ami_port is not None and ami_port in (port, bridge_port):
            raise CommandError(f"--ami-port {ami_port} is taken by the CRM or the bridge; choose another",
                               returncode=2)
        if options["contacts"] < 0:
            raise CommandError(f"--contacts {options['contacts']}: give 0 or more", returncode=2)
        try:
            every = None if options["no_calls"] else demo_product.parse_every(options["calls_every"])
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from None

        sock = bind(options["host"], port)
        try:
            _check_free(bridge_port, "the demo bridge", "--bridge-port")
            if ami_port is not None:
                _check_free(ami_port, "the simulated PBX", "--ami-port")
        except CommandError:
            sock.close()
            raise
        self.check(display_num_errors=False)
        crm = CrmServer(sock, access_log=False, own_signals=False)
        crm.config.load()  # imports the ASGI application now: that sets Django's logging up again
        redactor = _quiet_console()
        crm_address = _callback_address(options["host"])
        var = demo_var_dir()
        var.mkdir(parents=True, exist_ok=True)

        self.stdout.write(f"Preparing the demo database: {_database_name()}")
        call_command("migrate", interactive=False, verbosity=0)
        try:
            report = demo.seed(options["contacts"], crm_port=port, bridge_port=bridge_port, crm_address=crm_address)
        except ValidationError as exc:
            raise CommandError(f"the demo data was refused: {'; '.join(exc.messages)}") from exc
        self.stdout.write(report.lines()[0])
        bridge_secret = demo_product.read_secret(ensure_demo_bridge(var))
        ami_secret = demo_product.read_secret(ensure_secret_file(var / demo_product.AMI_SECRET_NAME))
        redactor.add(bridge_secret)
        redactor.add(ami_secret)

        def say(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        pbx = demo_product.DemoPbx(ami_secret=ami_secret, port=ami_port, callers=demo.demo_callers(options["contacts"]),
                                   every=every, out=say)
        bridge = demo_product.DemoBridge(pbx, settings_path=var / demo_product.BRIDGE_SETTINGS_NAME,
                                         crm_address=crm_address, crm_port=port, bridge_port=bridge_port)
        components: list[Component] = [demo_product.StopsAfter(crm, bridge.finished), bridge, pbx]

        def banner() -> None:
            lines = ["", "Callcenter demo is running:"]
            for component in components:
                lines += [f"  {line}" for line in component.describe()]
            lines.append("  Logins (username / password):")
            lines += [f"  {line}" for line in report.lines()[2:]]
            lines.append("  Log in as alice to see calls pop up; Answer, End call, Transfer (to 101), Busy and Call "
                         "all work on the simulated PBX.")
            lines += ["Ctrl-C to stop.", ""]
            say("\n".join(lines))

        status = Supervisor(components, on_ready=banner).run()
        if status:
            sys.exit(status)
        say("Demo stopped.")
