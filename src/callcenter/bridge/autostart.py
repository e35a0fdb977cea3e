"""Run at startup (S-5.11): start ``callcenter bridge run --config FILE`` when the user logs on.

- Linux: a systemd *user* unit ``callcenter-bridge.service`` in ``$XDG_CONFIG_HOME/systemd/user`` (default
  ``~/.config``), restarted on failure, but not after exit status 2 (bad settings: a restart cannot help), then
  ``systemctl --user daemon-reload`` and ``systemctl --user enable`` (the ``systemctl`` found on the PATH of ``env``).
  No administrator rights are needed. Without systemctl, or without a user session manager (``systemctl --user``
  fails: no D-Bus user session, e.g. over su or in a container), the unit is written but not enabled, and the result
  says in one line what to do instead (``enabled`` is False).
- Windows: ``callcenter-bridge.cmd`` in the user's Startup folder (``%APPDATA%\\Microsoft\\Windows\\Start Menu\\
  Programs\\Startup``), which starts the bridge minimised at log-on.
- The command is the absolute path of the ``callcenter`` executable running now (the one beside this Python),
  falling back to ``python -m callcenter``; the settings file is made absolute too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Final

UNIT_NAME: Final = "callcenter-bridge.service"
STARTUP_NAME: Final = "callcenter-bridge.cmd"
SYSTEMCTL_SECONDS: Final = 20.0


class AutostartError(Exception):
    """Run at startup cannot be set up here; the text says why and what to do instead."""


@dataclass(frozen=True)
class AutostartResult:
    path: Path
    changed: bool
    hint: str
    enabled: bool = True  # False: written, but nothing will start it (the hint says what to do)


def callcenter_command() -> list[str]:
    """The absolute command that runs ``callcenter`` with this installation."""
    beside = Path(sys.executable).parent
    for name in ("callcenter", "callcenter.exe"):
        candidate = beside / name
        if candidate.is_file():
            return [str(candidate.absolute())]
    found = shutil.which("callcenter")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "callcenter"]


def unit_path(env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def startup_path(env: Mapping[str, str] = os.environ) -> Path:
    appdata = env.get("APPDATA")
    if not appdata:
        raise AutostartError("APPDATA is not set, so the Startup folder cannot be found; log on as a normal user")
    return Path(appdata) / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup" / STARTUP_NAME


def _systemd_quote(word: str) -> str:
    """One word of an ExecStart line: quoted, with systemd's specifiers (%) and escapes doubled."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def unit_text(command: Sequence[str], config: PurePath) -> str:
    exec_start = " ".join(_systemd_quote(word) for word in [*command, "bridge", "run", "--config", str(config)])
    return (
        "# Written by `callcenter bridge autostart on`; remove it with `callcenter bridge autostart off`.\n"
        "[Unit]\n"
        "Description=Callcenter bridge (PBX <-> CRM)\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={exec_start}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "# exit status 2 = the settings are wrong: restarting cannot help, `callcenter bridge check` says why\n"
        "RestartPreventExitStatus=2\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def _cmd_quote(word: str) -> str:
    return '"' + word.replace("%", "%%") + '"'


def startup_text(command: Sequence[str], config: PurePath) -> str:
    words = " ".join(_cmd_quote(word) for word in [*command, "bridge", "run", "--config", str(config)])
    return (
        "@echo off\r\n"
        "rem Written by `callcenter bridge autostart on`; remove it with `callcenter bridge autostart off`.\r\n"
        f'start "Callcenter bridge" /min {words}\r\n'
    )


def _write(path: Path, text: str) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(text.encode("utf-8"))
    os.replace(temporary, path)
    return True


def _absolute(config: Path) -> Path:
    return Path(os.path.abspath(config.expanduser()))


def enable(
    config: Path,
    *,
    platform: str = sys.platform,
    env: Mapping[str, str] = os.environ,
    command: Sequence[str] | None = None,
) -> AutostartResult:
    """Write the start-at-log-on entry for ``config``; say what to run to activate it."""
    command = list(command or callcenter_command())
    if platform.startswith("linux"):
        path = unit_path(env)
        changed = _write(path, unit_text(command, _absolute(config)))
        run = " ".join([*command, "bridge", "run", "--config", str(_absolute(config))])
        problem = _systemctl(env, "daemon-reload") or _systemctl(env, "enable", UNIT_NAME)
        if problem:
            return AutostartResult(path, changed, f"wrote {path}, but {problem}; or start `{run}` from your "
                                   "desktop's autostart programs", enabled=False)
        hint = (
            f"wrote {path} and enabled it: the bridge starts when you log on; start it now with "
            f"`systemctl --user start {UNIT_NAME}` (to keep it running while you are logged out: "
            "`loginctl enable-linger $USER`)"
        )
        return AutostartResult(path, changed, hint)
    if platform == "win32":
        path = startup_path(env)
        changed = _write(path, startup_text(command, _absolute(config)))
        return AutostartResult(path, changed, f"wrote {path}; the bridge starts at your next log-on")
    raise AutostartError(
        f"run at startup is set up on Linux (systemd) and Windows, not on {platform}; start "
        f"`callcenter bridge run --config {config}` from your system's log-on items instead"
    )


def _systemctl(env: Mapping[str, str], *args: str) -> str:
    """Run ``systemctl --user ARGS``; '' when it worked, else what went wrong and what to do (for the hint)."""
    typed = " ".join(["systemctl", "--user", *args])
    found = shutil.which("systemctl", path=env["PATH"]) if env.get("PATH") else None
    if found is None:
        return f"systemctl is not installed here, so `{typed}` cannot enable it (no systemd)"
    try:
        done = subprocess.run(  # noqa: S603 - a fixed command, no shell
            [found, "--user", *args], env=dict(env), capture_output=True, text=True, timeout=SYSTEMCTL_SECONDS,
            stdin=subprocess.DEVNULL, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = "it did not answer" if isinstance(exc, subprocess.TimeoutExpired) else str(exc)
        return f"`{typed}` failed ({reason})"
    if done.returncode == 0:
        return ""
    said = next((line.strip() for line in (done.stderr or "").splitlines() if line.strip()), "")
    reason = said[:200] or f"exit status {done.returncode}"
    return (
        f"`{typed}` failed ({reason}): this login has no systemd user session; log in as this user on the desktop "
        "or over SSH (`loginctl enable-linger $USER` keeps it running after you log out) and run "
        "`callcenter bridge autostart on` again"
    )


def disable(
    *, platform: str = sys.platform, env: Mapping[str, str] = os.environ
) -> AutostartResult:
    """Remove the start-at-log-on entry (nothing to do when there is none)."""
    if platform.startswith("linux"):
        path = unit_path(env)
        existed = path.exists()
        if existed:
            _systemctl(env, "disable", UNIT_NAME)  # best effort: the link is removed below anyway
        path.unlink(missing_ok=True)
        # `systemctl enable` links the unit from default.target.wants; a dangling link would stay behind.
        wants = path.parent / "default.target.wants" / UNIT_NAME
        if wants.is_symlink() or wants.exists():
            wants.unlink()
        if existed:
            _systemctl(env, "daemon-reload")
        hint = (
            f"removed {path}; if it is running, stop it with:\n"
            f"  systemctl --user stop {UNIT_NAME} && systemctl --user daemon-reload"
            if existed else f"there was no {path}; nothing to do"
        )
        return AutostartResult(path, existed, hint)
    if platform == "win32":
        path = startup_path(env)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return AutostartResult(path, existed, f"removed {path}" if existed else f"there was no {path}; nothing to do")
    raise AutostartError(f"run at startup is set up on Linux (systemd) and Windows, not on {platform}")


def is_enabled(*, platform: str = sys.platform, env: Mapping[str, str] = os.environ) -> bool:
    try:
        if platform.startswith("linux"):
            return unit_path(env).exists()
        if platform == "win32":
            return startup_path(env).exists()
    except AutostartError:
        return False
    return False
