"""Run at startup (S-5.11): the systemd user unit on Linux and the Startup entry on Windows, as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcenter.bridge import autostart

COMMAND = ["/opt/callcenter/.venv/bin/callcenter"]
NO_BUS = "Failed to connect to bus: No medium found"


def fake_systemctl(tmp_path: Path, *, fails: bool = False) -> dict[str, str]:
    """A `systemctl` on PATH that records its arguments (one line per call) and fails like a login without a user
    session when asked to; the environment to run it with. Real systemd user sessions are not available in CI."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "systemctl"
    failing = f'echo "{NO_BUS}" >&2; exit 1' if fails else "exit 0"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "systemctl.log"}"\n{failing}\n')
    script.chmod(0o755)
    return {"PATH": str(bin_dir), "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}


def systemctl_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "systemctl.log"
    return log.read_text().splitlines() if log.exists() else []


def test_the_linux_unit_runs_this_callcenter_with_the_settings_file(tmp_path: Path) -> None:
    env = fake_systemctl(tmp_path)
    config = tmp_path / "my settings" / "bridge.toml"

    result = autostart.enable(config, platform="linux", env=env, command=COMMAND)

    unit = tmp_path / "config" / "systemd" / "user" / "callcenter-bridge.service"
    assert result.path == unit and result.changed
    text = unit.read_text()
    assert (
        f'ExecStart="/opt/callcenter/.venv/bin/callcenter" "bridge" "run" "--config" "{config}"\n' in text
    )
    for line in ("[Service]", "Type=simple", "Restart=on-failure", "RestartPreventExitStatus=2",
                 "[Install]", "WantedBy=default.target"):
        assert line + "\n" in text
    assert result.enabled and "enabled it" in result.hint
    assert "systemctl --user start callcenter-bridge.service" in result.hint
    assert autostart.is_enabled(platform="linux", env=env)
    # the same again changes nothing
    assert not autostart.enable(config, platform="linux", env=env, command=COMMAND).changed


def test_on_enables_the_unit_with_systemctl(tmp_path: Path) -> None:
    env = fake_systemctl(tmp_path)
    result = autostart.enable(tmp_path / "bridge.toml", platform="linux", env=env, command=COMMAND)
    assert result.enabled
    assert systemctl_calls(tmp_path) == ["--user daemon-reload", "--user enable callcenter-bridge.service"]


def test_without_a_user_session_manager_it_says_in_one_line_what_to_do(tmp_path: Path) -> None:
    env = fake_systemctl(tmp_path, fails=True)
    result = autostart.enable(tmp_path / "bridge.toml", platform="linux", env=env, command=COMMAND)
    assert not result.enabled and result.path.exists()
    assert "\n" not in result.hint
    assert NO_BUS in result.hint and "loginctl enable-linger" in result.hint
    assert "desktop's autostart" in result.hint and "bridge run --config" in result.hint


def test_without_systemctl_it_says_in_one_line_what_to_do(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "empty"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = autostart.enable(tmp_path / "bridge.toml", platform="linux", env=env, command=COMMAND)
    assert not result.enabled and result.path.exists()
    assert "\n" not in result.hint and "systemctl is not installed" in result.hint
    assert "desktop's autostart" in result.hint


def test_off_disables_the_unit_with_systemctl(tmp_path: Path) -> None:
    env = fake_systemctl(tmp_path)
    autostart.enable(tmp_path / "bridge.toml", platform="linux", env=env, command=COMMAND)
    autostart.disable(platform="linux", env=env)
    assert systemctl_calls(tmp_path)[2:] == ["--user disable callcenter-bridge.service", "--user daemon-reload"]


def test_a_relative_settings_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = autostart.enable(Path("bridge.toml"), platform="linux", env=env, command=COMMAND)
    assert f'"--config" "{tmp_path / "bridge.toml"}"' in result.path.read_text()


def test_percent_signs_and_quotes_are_escaped_for_systemd(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    config = Path('/srv/100% "sure"/bridge.toml')
    text = autostart.enable(config, platform="linux", env=env, command=COMMAND).path.read_text()
    assert '"--config" "/srv/100%% \\"sure\\"/bridge.toml"' in text


def test_without_xdg_config_home_the_unit_goes_under_home(tmp_path: Path) -> None:
    assert autostart.unit_path({"HOME": str(tmp_path)}) == (
        tmp_path / ".config" / "systemd" / "user" / "callcenter-bridge.service"
    )


def test_off_removes_the_unit_and_its_enable_link(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    unit = autostart.enable(tmp_path / "bridge.toml", platform="linux", env=env, command=COMMAND).path
    wants = unit.parent / "default.target.wants"
    wants.mkdir()
    (wants / unit.name).symlink_to(unit)

    result = autostart.disable(platform="linux", env=env)

    assert result.changed and not unit.exists() and not (wants / unit.name).is_symlink()
    assert "systemctl --user stop callcenter-bridge.service" in result.hint
    again = autostart.disable(platform="linux", env=env)
    assert not again.changed and again.hint == f"there was no {unit}; nothing to do"
    assert not autostart.is_enabled(platform="linux", env=env)


def test_windows_gets_a_startup_folder_entry(tmp_path: Path) -> None:
    env = {"APPDATA": str(tmp_path / "Roaming")}
    config = Path("C:/Users/alice/100% bridge.toml")
    command = ["C:/Program Files/Callcenter/callcenter.exe"]

    result = autostart.enable(config, platform="win32", env=env, command=command)

    entry = tmp_path / "Roaming" / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup" / (
        "callcenter-bridge.cmd")
    assert result.path == entry
    text = entry.read_bytes().decode()
    assert text.startswith("@echo off\r\n")
    assert ('start "Callcenter bridge" /min "C:/Program Files/Callcenter/callcenter.exe" "bridge" "run" "--config" '
            f'"{Path(config).absolute()}"'.replace("%", "%%") + "\r\n") in text
    assert autostart.is_enabled(platform="win32", env=env)
    assert autostart.disable(platform="win32", env=env).changed and not entry.exists()


def test_windows_without_appdata_is_explained() -> None:
    with pytest.raises(autostart.AutostartError, match="APPDATA is not set"):
        autostart.enable(Path("b.toml"), platform="win32", env={}, command=COMMAND)


def test_other_systems_are_told_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(autostart.AutostartError) as caught:
        autostart.enable(tmp_path / "b.toml", platform="darwin", env={}, command=COMMAND)
    assert str(caught.value).startswith("run at startup is set up on Linux (systemd) and Windows, not on darwin")


def test_the_command_is_the_callcenter_of_this_installation() -> None:
    command = autostart.callcenter_command()
    assert Path(command[0]).is_absolute()
    assert command[-1] == "callcenter" or Path(command[0]).name.startswith("callcenter")
