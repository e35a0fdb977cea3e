"""The ``callcenter`` command.

    callcenter serve [--host H] [--port P]   run the CRM (ASGI: pages, WebSocket, bridge endpoint)
    callcenter demo                           set up a SQLite demo database and run the product
    callcenter seed-demo                      load the demo data (idempotent)
    callcenter replay CAPTURE --ext 100=alice a raw AMI capture through the bridge and the CRM's call rules, on a
                                              throwaway database: one JSON line per stored call (--help: options)
    callcenter bridge ...                     the bridge daemon and its tools (run, replay, capture, ...)
    callcenter pbxsim ...                     the simulated PBX (speaks AMI on a TCP port)
    callcenter <django command> ...           any Django management command (migrate, createsuperuser, ...)

Bridge and simulator commands never load Django: they run on a desk or beside the PBX without the CRM installed.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

# Sub-commands that live outside Django; each module exposes main(argv) -> int.
_STANDALONE = {
    "bridge": "callcenter.bridge.cli",
    "pbxsim": "callcenter.pbxsim.cli",
}
_CRM_ALIASES = {
    "serve": "serve",
    "demo": "demo",
    "seed-demo": "seed_demo",
    "replay": "replay",
    "add-bridge": "add_bridge",
}


def _usage() -> str:
    return (__doc__ or "").strip() + "\n"


def _django_main(argv: Sequence[str], typed: str | None = None) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callcenter.crm.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    # The settings are read first, so that a wrong variable is one line naming it (exit 2) for every command and
    # for --help, instead of a traceback from wherever Django happens to read them.
    try:
        settings.INSTALLED_APPS  # noqa: B018 - loads callcenter.crm.settings
    except ImproperlyConfigured as exc:
        command = typed or (argv[0] if argv and not argv[0].startswith("-") else "")
        sys.stderr.write(f"callcenter{' ' + command if command else ''}: {_one_line(str(exc))}\n")
        return 2
    execute_from_command_line(["callcenter", *argv])
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command in _STANDALONE:
        module = importlib.import_module(_STANDALONE[command])
        entry: Callable[[list[str]], int] = module.main
        return entry(rest)
    if command == "demo":
        if {"-h", "--help"} & set(rest):
            # Only the options are printed: a one-off key lets the settings load, and var/ is left untouched.
            if not os.environ.get("CALLCENTER_SECRET_KEY") and not os.environ.get("CALLCENTER_SECRET_KEY_FILE"):
                import secrets

                os.environ["CALLCENTER_SECRET_KEY"] = secrets.token_urlsafe(48)
        else:
            from callcenter.demo_env import apply_demo_environment

            apply_demo_environment()
    if command == "replay":
        # Never the configured database: a temporary SQLite file, made for this run and deleted after it.
        from callcenter.replay_env import apply_replay_environment, discard_replay_environment

        directory = apply_replay_environment()
        try:
            return _django_main(["replay", *rest], command)
        finally:
            discard_replay_environment(directory)
    if command in _CRM_ALIASES:
        return _django_main([_CRM_ALIASES[command], *rest], command)
    return _django_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
