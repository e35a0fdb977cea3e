"""The environment of `callcenter demo`, set before Django reads its settings (so no Django import here).

The demo runs on its own SQLite database, var/demo.sqlite3 under the working directory (or CALLCENTER_HOME), unless
CALLCENTER_DATABASE_URL names another; and with a secret key generated once into var/demo-secret.txt (readable by the
owner only) unless CALLCENTER_SECRET_KEY or CALLCENTER_SECRET_KEY_FILE is set. Variables already set always win.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, MutableMapping
from pathlib import Path

DEMO_DATABASE_URL = "sqlite:///var/demo.sqlite3"
KEY_FILE_NAME = "demo-secret.txt"


def apply_demo_environment(environ: MutableMapping[str, str] | None = None) -> Path:
    """Fill in the demo's defaults in ``environ`` (os.environ by default); returns the var directory."""
    env = os.environ if environ is None else environ
    var = demo_var_dir(env)
    (var / "static").mkdir(parents=True, exist_ok=True)  # STATIC_ROOT: WhiteNoise warns when it is missing
    env.setdefault("CALLCENTER_DATABASE_URL", DEMO_DATABASE_URL)
    if not env.get("CALLCENTER_SECRET_KEY") and not env.get("CALLCENTER_SECRET_KEY_FILE"):
        env["CALLCENTER_SECRET_KEY_FILE"] = str(ensure_secret_file(var / KEY_FILE_NAME))
    return var


def demo_var_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the demo keeps its files: var/ under CALLCENTER_HOME, else under the working directory."""
    env = os.environ if environ is None else environ
    return Path(env.get("CALLCENTER_HOME") or Path.cwd()) / "var"


def ensure_secret_file(path: Path, nbytes: int = 48) -> Path:
    """A random secret on the first line of ``path``, made once (readable by the owner only) and reused after; an
    empty file gets a new one. The demo keeps its Django key, bridge secret and AMI secret this way."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if not path.read_text(encoding="utf-8").strip():
            path.write_text(secrets.token_urlsafe(nbytes) + "\n", encoding="utf-8")
        os.chmod(path, 0o600)
        return path
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(nbytes) + "\n")
    return path
