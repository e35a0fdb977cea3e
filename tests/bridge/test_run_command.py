"""`callcenter bridge run|check|errors|autostart` as a person types them: real processes, real signals."""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from callcenter.bridge import cli
from tests.bridge.conftest import AMI_SECRET, BRIDGE_SECRET, free_port
from tests.child_process import ChildProcess, clean_env

ROOT = Path(__file__).resolve().parents[2]


SETTINGS_PAGE = re.compile(r"settings page:(.*)")


@pytest.fixture
def processes() -> Iterator[list[ChildProcess]]:
    started: list[ChildProcess] = []
    yield started
    for process in started:
        process.stop()


def run_stub(processes: list[ChildProcess], *args: str) -> ChildProcess:
    process = ChildProcess(["-m", "tests.bridge.stub_bridge_main", *args], ROOT, clean_env())
    processes.append(process)
    return process


def run_callcenter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "callcenter", *args], cwd=ROOT, env=env or clean_env(),
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_run_serves_until_a_signal_then_exits_cleanly(
    write_config: Callable[..., Path], processes: list[ChildProcess], tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    config = write_config(bridge={"port": port, "callback_port": free_port(), "extended_log": True})
    bridge = run_stub(processes, "run", "--config", str(config))

    page = bridge.wait_for(SETTINGS_PAGE, 30).group(1).strip()
    assert page.startswith(f"http://127.0.0.1:{port}/ ") and "token" not in "".join(bridge.stdout)
    assert f"callcenter bridge login-link --config {config}" in "".join(bridge.stdout)
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
    assert health["status"] == "ok" and health["pbx_connected"] is True
    # The login link comes from another process, only when asked, and works once.
    asked = run_callcenter("bridge", "login-link", "--config", str(config))
    assert asked.returncode == 0, asked.stderr
    link = asked.stdout.strip()
    assert link.startswith(f"http://127.0.0.1:{port}/login?token=") and "no bridge answers" not in asked.stderr
    with httpx.Client() as browser:
        assert browser.get(link).status_code == 303 and browser.get(f"http://127.0.0.1:{port}/").status_code == 200
    assert httpx.get(link, timeout=5).status_code == 403

    bridge.process.send_signal(sig)
    assert bridge.finish(20) == 0
    stderr = "".join(bridge.stderr)
    assert "Traceback" not in stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    assert (tmp_path / "data" / "outbox.sqlite3").exists()
    everything = stderr + "".join(bridge.stdout) + "".join(
        path.read_text(errors="replace") for path in (tmp_path / "data").glob("*.log*")
    )
    assert BRIDGE_SECRET not in everything and AMI_SECRET not in everything


def test_run_on_a_busy_port_says_so_in_one_line(
    write_config: Callable[..., Path], processes: list[ChildProcess]
) -> None:
    port = free_port()
    first = run_stub(processes, "run", "--config", str(write_config(bridge={"port": port})))
    first.wait_for(SETTINGS_PAGE, 30)
    second = run_stub(processes, "run", "--config", str(write_config("other.toml", bridge={"port": port})))
    assert second.finish(20) == 2
    assert "".join(second.stderr) == (
        f"callcenter bridge run: port {port} on 127.0.0.1 is in use (by another bridge?); choose another port in "
        "[bridge] port\n"
    )
    first.process.send_signal(signal.SIGINT)
    assert first.finish(20) == 0


def test_run_with_bad_settings_lists_the_problems_and_exits_2(write_config: Callable[..., Path]) -> None:
    config = write_config(bridge={"port": 70000}, drop=(("asterisk", "secret"),))
    result = run_callcenter("bridge", "run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"callcenter bridge run: {config}: [bridge] port 70000 is out of range; use a port from 1 to 65535 (1024 or "
        "more needs no administrator rights)",
        f'callcenter bridge run: {config}: [asterisk] secret is missing; set secret_file = "/path/to/file" (or '
        'secret = "...") in [asterisk], or the environment variable CALLCENTER_AMI_SECRET',
    ]
    assert result.stdout == ""


def test_run_with_a_phone_system_not_available_here_exits_2(write_config: Callable[..., Path]) -> None:
    config = write_config(bridge={"phone_system": "tapi"}, tapi={"phone_type": "x", "internal_phone": "100"})
    result = run_callcenter("bridge", "run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == (
        'callcenter bridge run: phone_system = "tapi" is not available on this machine or in this version of the '
        'bridge (Windows TAPI has no connector yet); use phone_system = "asterisk"\n'
    )


def test_run_tray_without_pystray_says_how_to_install_it(write_config: Callable[..., Path]) -> None:
    if _has_pystray():
        pytest.skip("pystray is installed here")
    result = run_callcenter("bridge", "run", "--tray", "--config", str(write_config()))
    assert result.returncode == 2
    assert result.stderr == (
        "callcenter bridge run: the tray icon needs pystray and Pillow: pip install 'callcenter[tray]'\n"
    )


def _has_pystray() -> bool:
    return importlib.util.find_spec("pystray") is not None and importlib.util.find_spec("PIL") is not None


# ---- check, errors, autostart (in-process) --------------------------------------------------------------------


def test_check_prints_the_effective_settings_without_secrets(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config()
    code = cli.main(["check", "--config", str(config)])
    out, err = capsys.readouterr()
    assert "[bridge]" in out and "[asterisk]" in out and 'username = "crm"' in out
    assert "secret = *** (from the settings file)" in out
    assert BRIDGE_SECRET not in out + err and AMI_SECRET not in out + err
    assert code == 0 and f"the settings in {config} are valid" in out


def test_check_says_when_the_phone_system_cannot_run_here(
    write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(bridge={"phone_system": "tsapi"},
                          tsapi={"internal_phone": "100", "username": "u", "password": "p", "service": "s"})
    assert cli.main(["check", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert 'phone_system = "tsapi"' in out
    assert err.startswith('callcenter bridge check: phone_system = "tsapi" is not available in this version')


def test_check_names_every_problem(write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(bridge={"port": 8000})
    assert cli.main(["check", "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        f"callcenter bridge check: {config}: [bridge] service port 8000 equals callback port 8000 on the same "
        "address 127.0.0.1; choose different ports\n"
    )


def test_errors_prints_the_error_log(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "errors.log").write_text("".join(f"line {n}\n" for n in range(10)))
    assert cli.main(["errors", "--config", str(config), "--lines", "2"]) == 0
    assert capsys.readouterr().out == "line 8\nline 9\n"


def test_autostart_on_and_off_write_and_remove_the_user_unit(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", "linux")
    bin_dir = tmp_path / "bin"  # a systemctl that records its arguments: no systemd user session in CI
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "systemctl.log"}"\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    config = write_config()
    unit = tmp_path / "xdg" / "systemd" / "user" / "callcenter-bridge.service"

    assert cli.main(["autostart", "on", "--config", str(config)]) == 0
    assert f'"bridge" "run" "--config" "{config}"' in unit.read_text()
    assert "enabled it" in capsys.readouterr().out
    assert "--user enable callcenter-bridge.service" in (tmp_path / "systemctl.log").read_text()
    assert cli.main(["autostart", "off"]) == 0
    assert not unit.exists()
    assert f"removed {unit}" in capsys.readouterr().out


def test_autostart_without_a_user_session_says_what_to_do_in_one_line(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", "linux")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text('#!/bin/sh\necho "Failed to connect to bus: No medium found" >&2\nexit 1\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert cli.main(["autostart", "on", "--config", str(write_config())]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "loginctl enable-linger" in err and "No medium found" in err


def test_autostart_refuses_settings_that_cannot_start(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = write_config(bridge={"phone_system": "pbx"})
    assert cli.main(["autostart", "on", "--config", str(config)]) == 2
    assert "fix the settings first" in capsys.readouterr().err
    assert not (tmp_path / "xdg").exists()
