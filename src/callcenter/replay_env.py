"""The environment of `callcenter replay`, set before Django reads its settings (so no Django import here).

A replay runs the CRM's call rules against a database of its own: a SQLite file in a new temporary directory, made
and migrated for the run and deleted after it (``discard_replay_environment``). Unlike the demo, nothing the user set
wins: the configured database, its secret key and the Redis channel layer (which would push the replayed calls to
real agents' screens) are all replaced or removed, so a replay never reads or writes anything but its own file.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from urllib.parse import quote

# Names the throwaway database; the replay command refuses to run on any other database.
REPLAY_DATABASE_ENV = "CALLCENTER_REPLAY_DATABASE"
DATABASE_FILE_NAME = "replay.sqlite3"

# Settings a replay must not take from the user's environment (each also as NAME_FILE, which settings read first).
_REPLACED = ("CALLCENTER_DATABASE_URL", "CALLCENTER_SECRET_KEY", "CALLCENTER_REDIS_URL")


def apply_replay_environment(environ: MutableMapping[str, str] | None = None) -> Path:
    """Point ``environ`` (os.environ by default) at a new temporary SQLite file; returns its directory."""
    env = os.environ if environ is None else environ
    directory = Path(tempfile.mkdtemp(prefix="callcenter-replay-"))
    database = directory / DATABASE_FILE_NAME
    for name in _REPLACED:
        env.pop(name, None)
        env.pop(f"{name}_FILE", None)
    # sqlite:/// + an absolute path (which starts with "/") = four slashes: an absolute path (crm.env unquotes it).
    env["CALLCENTER_DATABASE_URL"] = f"sqlite:///{quote(str(database))}"
    env["CALLCENTER_SECRET_KEY"] = secrets.token_urlsafe(48)
    env[REPLAY_DATABASE_ENV] = str(database)
    return directory


def discard_replay_environment(directory: Path) -> None:
    """Delete the temporary directory and the database in it."""
    shutil.rmtree(directory, ignore_errors=True)
