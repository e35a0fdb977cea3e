"""A wrong or missing CALLCENTER_* variable is one line naming it, exit status 2, for every `callcenter` command
(and its --help), never a traceback (issue 11, finding 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.child_process import clean_env

# Every CRM command of `callcenter` (cli._CRM_ALIASES) and the Django commands an operator types.
COMMANDS = ["serve", "demo", "seed-demo", "replay", "add-bridge", "migrate", "check", "createsuperuser", "shell"]
# demo and replay make their own key, so a missing key is no error for them.
OWN_KEY = {"demo", "replay"}


def _callcenter(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callcenter", *args], cwd=cwd, env=clean_env(CALLCENTER_HOME=str(cwd), **env),
        capture_output=True, text=True, encoding="utf-8", timeout=120, stdin=subprocess.DEVNULL,
    )


def _assert_one_line(result: subprocess.CompletedProcess[str], variable: str, command: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"callcenter {command}: "), lines[0]
    assert variable in lines[0]


@pytest.mark.parametrize("help_flag", [["--help"], []], ids=["help", "run"])
def test_a_missing_secret_key_is_one_line_for_every_command(tmp_path: Path, help_flag: list[str]) -> None:
    for command in COMMANDS:
        if command in OWN_KEY:
            continue
        result = _callcenter([command, *help_flag], tmp_path)
        _assert_one_line(result, "CALLCENTER_SECRET_KEY", command)
        assert "set it" in result.stderr


@pytest.mark.parametrize("help_flag", [["--help"], []], ids=["help", "run"])
def test_a_bad_variable_is_one_line_for_every_command(tmp_path: Path, help_flag: list[str]) -> None:
    for command in COMMANDS:
        result = _callcenter([command, *help_flag], tmp_path, CALLCENTER_SECRET_KEY="k" * 50,
                             CALLCENTER_TIME_ZONE="Mars/Olympus_Mons")
        _assert_one_line(result, "CALLCENTER_TIME_ZONE", command)
    assert not (tmp_path / "var" / "demo.sqlite3").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CALLCENTER_DEBUG", "maybe"),
        ("CALLCENTER_DATABASE_URL", "mysql://db/callcenter"),
        ("CALLCENTER_DATABASE_URL", "postgres://db:99999999/callcenter"),
        ("CALLCENTER_REDIS_URL", "http://127.0.0.1:6379"),
        ("CALLCENTER_LOG_LEVEL", "loud"),
        ("CALLCENTER_PHONE_REGION", "XX"),
        ("CALLCENTER_SECRET_KEY_FILE", "/nonexistent/secret"),
        ("CALLCENTER_SECURE_COOKIES", "sometimes"),
    ],
)
def test_each_variable_is_named_when_wrong(tmp_path: Path, variable: str, value: str) -> None:
    env = {"CALLCENTER_SECRET_KEY": "k" * 50, variable: value}
    if variable == "CALLCENTER_SECRET_KEY_FILE":
        del env["CALLCENTER_SECRET_KEY"]
    _assert_one_line(_callcenter(["serve", "--help"], tmp_path, **env), variable, "serve")


@pytest.mark.parametrize(
    ("args", "variable"),
    [
        (["pbxsim"], "CALLCENTER_PBXSIM_SECRET"),
        (["bridge", "capture", "--host", "127.0.0.1", "--user", "crm", "out.raw"], "CALLCENTER_AMI_SECRET"),
        (["bridge", "check"], "CALLCENTER_BRIDGE_CONFIG"),
        (["bridge", "login-link"], "CALLCENTER_BRIDGE_CONFIG"),
    ],
)
def test_the_commands_without_django_name_their_variable_too(tmp_path: Path, args: list[str], variable: str) -> None:
    env = {"CALLCENTER_BRIDGE_CONFIG": str(tmp_path / "missing.toml")} if "CONFIG" in variable else {}
    result = _callcenter(args, tmp_path, **env)
    _assert_one_line(result, variable, " ".join(args[:2]) if args[0] == "bridge" else args[0])
