"""The daemon's sub-commands of ``callcenter bridge`` (registered in ``cli.build_parser``):

    callcenter bridge run [--config FILE] [--tray]     run the bridge until Ctrl-C / SIGTERM / Exit
    callcenter bridge check [--config FILE]            check the settings and print them (secrets as ***)
    callcenter bridge errors [--config FILE] [--lines N]   show the error log (S-5.5)
    callcenter bridge autostart on|off [--config FILE]     start the bridge at log-on, or not (S-5.11)
    callcenter bridge login-link [--config FILE]       print a one-time link to the running bridge's settings page

``--config`` defaults to ``$CALLCENTER_BRIDGE_CONFIG``, else ``~/.config/callcenter/bridge.toml``. Exit status 2
means the settings (or the port, the data directory, the phone system) are wrong: the message says what to do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from callcenter.bridge import autostart, login_links, logs
from callcenter.bridge.settings import ENV_CONFIG, BridgeSettings, SettingsError, default_config_path, load_settings


def add_daemon_commands(commands: argparse._SubParsersAction[Any]) -> None:
    config_help = "the settings file (default: $CALLCENTER_BRIDGE_CONFIG, else ~/.config/callcenter/bridge.toml)"

    run = commands.add_parser(
        "run", help="run the bridge: connect to the PBX, deliver calls to the CRM, take its commands",
        description="Runs the bridge until Ctrl-C or SIGTERM (or Exit on its settings page). It prints where it "
        "listens and where its local settings page is; `callcenter bridge login-link` prints a link to log in there.",
    )
    run.add_argument("--config", type=Path, help=config_help)
    run.add_argument("--tray", action="store_true",
                     help="show a tray icon with the bridge's menu (needs: pip install 'callcenter[tray]')")
    run.set_defaults(handler=_run, own_logging=True)

    check = commands.add_parser(
        "check", help="check the settings file and print the effective settings (never the secrets)",
    )
    check.add_argument("--config", type=Path, help=config_help)
    check.set_defaults(handler=_check)

    errors = commands.add_parser("errors", help="show the error log (S-5.5)")
    errors.add_argument("--config", type=Path, help=config_help)
    errors.add_argument("--lines", type=_count, default=50, metavar="N", help="how many last lines (default 50)")
    errors.set_defaults(handler=_errors)

    start = commands.add_parser(
        "autostart", help="start the bridge when you log on (on) or not (off) (S-5.11)",
        description="Linux: writes or removes a systemd user unit (~/.config/systemd/user/callcenter-bridge.service)."
        " Windows: a Startup-folder entry. Prints what to run to activate it.",
    )
    start.add_argument("state", choices=["on", "off"])
    start.add_argument("--config", type=Path, help=config_help)
    start.set_defaults(handler=_autostart)

    link = commands.add_parser(
        "login-link", help="print a one-time link to the bridge's settings page (works once, for 10 minutes)",
        description="Prints a link that logs in to the settings page of the bridge that uses these settings, once, "
        "within 10 minutes; open it on the bridge's machine. It works while the bridge runs in another process (it "
        "leaves the link's fingerprint in the bridge's data directory, readable by this user only). The bridge never "
        "prints or logs such a link itself.",
    )
    link.add_argument("--config", type=Path, help=config_help)
    link.set_defaults(handler=_login_link)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("give at least 1")
    return value


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config) if args.config is not None else default_config_path()


def _load(args: argparse.Namespace) -> BridgeSettings | None:
    try:
        return load_settings(_config_path(args))
    except SettingsError as exc:
        named = args.config is None and bool(os.environ.get(ENV_CONFIG))
        for problem in str(exc).splitlines():
            where = f" (the file named by {ENV_CONFIG})" if named and "does not exist" in problem else ""
            print(f"callcenter bridge {args.command}: {problem}{where}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 2
    from callcenter.bridge import tray
    from callcenter.bridge.daemon import Bridge, StartupError

    if args.tray and not tray.available():
        print(f"callcenter bridge run: {tray.INSTALL_HINT}", file=sys.stderr)
        return 2
    level = getattr(logging, str(args.log_level).upper(), logging.WARNING)
    bridge_logs = logs.BridgeLogs(console=sys.stderr, console_level=level)
    try:
        if args.tray:
            return tray.run_with_tray(settings, bridge_logs)
        asyncio.run(Bridge(settings, logs=bridge_logs, out=sys.stdout).run())
        return 0
    except StartupError as exc:
        print(f"callcenter bridge run: {exc}", file=sys.stderr)
        return 2
    except tray.TrayUnavailable as exc:
        print(f"callcenter bridge run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130
    finally:
        bridge_logs.close()


def _check(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 2
    sys.stdout.write(settings.describe())
    problems: list[str] = []
    from callcenter.bridge.control import StartError
    from callcenter.bridge.daemon import make_connector

    try:
        make_connector(settings)  # builds it, connects nothing
    except StartError as exc:
        problems.append(str(exc))
    if settings.run_at_startup != autostart.is_enabled():
        wanted = "on" if settings.run_at_startup else "off"
        print(f"note: run_at_startup is {str(settings.run_at_startup).lower()} but the log-on entry is "
              f"{'missing' if settings.run_at_startup else 'present'}; run `callcenter bridge autostart {wanted}`")
    for problem in problems:
        print(f"callcenter bridge check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"callcenter bridge check: the settings in {settings.source} are valid")
    return 0


def _login_link(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 2
    try:
        token = login_links.issue(settings.data_dir)
    except OSError as exc:
        print(f"callcenter bridge login-link: cannot write to [bridge] data_dir {settings.data_dir} "
              f"({exc.strerror}); run this as the user the bridge runs as", file=sys.stderr)
        return 2
    minutes = int(login_links.LINK_SECONDS // 60)
    if not _answers(settings.service_url + "/health"):
        print(f"callcenter bridge login-link: note: no bridge answers at {settings.service_url} now; the link works "
              f"if it starts within {minutes} minutes", file=sys.stderr)
    print(f"Open this link on this machine within {minutes} minutes; it works once:", file=sys.stderr)
    print(login_links.link_for(settings, token))
    return 0


def _answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=3) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _errors(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return 2
    return logs.print_error_log(settings, args.lines)


def _autostart(args: argparse.Namespace) -> int:
    try:
        if args.state == "off":
            result = autostart.disable()
        else:
            settings = _load(args)
            if settings is None:
                print("callcenter bridge autostart: fix the settings first; a bridge that cannot start would be "
                      "restarted for nothing", file=sys.stderr)
                return 2
            assert settings.source is not None
            result = autostart.enable(settings.source)
    except (autostart.AutostartError, OSError) as exc:
        print(f"callcenter bridge autostart: {exc}", file=sys.stderr)
        return 2
    if not result.enabled:
        print(f"callcenter bridge autostart: {result.hint}", file=sys.stderr)
        return 1
    print(result.hint)
    return 0
