"""``callcenter pbxsim``: arguments, errors people read, and a real run with a scenario."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from callcenter import cli as top
from callcenter.pbxsim.cli import main


def test_it_lists_the_built_in_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-scenarios"]) == 0
    out = capsys.readouterr().out
    assert "inbound_answered" in out and "ringgroup" in out and "transfer_attended" in out


def test_the_top_level_command_dispatches_to_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert top.main(["pbxsim", "--list-scenarios"]) == 0
    assert "click_to_call" in capsys.readouterr().out


def test_without_a_secret_it_says_how_to_give_one(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLCENTER_PBXSIM_SECRET", raising=False)
    assert main(["--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no AMI secret: give --secret-file FILE, set CALLCENTER_PBXSIM_SECRET, or give --secret" in err


def test_an_empty_secret_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "secret"
    empty.write_text("\n")
    assert main(["--secret-file", str(empty)]) == 2
    assert "is empty; write the AMI secret on its first line" in capsys.readouterr().err


def test_a_port_in_use_is_named_with_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port), "--secret", "s3cret-never-shown"]) == 2
    captured = capsys.readouterr()
    assert f"port {port} on 127.0.0.1 is already in use" in captured.err
    assert "choose another port with --port (0 picks a free one)" in captured.err
    assert "s3cret-never-shown" not in captured.out + captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenario", "no_such_flow"], "no scenario file no_such_flow; give a path, or one of the built-in"),
        (["--agents", "3", "--agent", "100"], "give either --agents N or --agent EXT"),
        (["--agent", "alice"], "the extension must be digits"),
        (["--host", "192.0.2.1"], "not a loopback address"),
        (["--unknown-ratio", "1.5"], "--unknown-ratio must be between 0 and 1"),
    ],
)
def test_bad_arguments_get_a_clear_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--secret", "x", "--port", "0"]) == 2
    assert message in capsys.readouterr().err


def test_argparse_refuses_a_zero_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--rate", "0", "--secret", "x"])
    assert info.value.code == 2
    assert "must be more than zero" in capsys.readouterr().err


def test_it_runs_a_scenario_on_a_free_port_and_exits(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    secret_file = tmp_path / "ami.secret"
    secret_file.write_text("s3cret-never-shown\n")
    scenario = tmp_path / "late.scenario"
    scenario.write_text('at 20 inbound c1 from 00302101234567 "Γιώργος Παπαδόπουλος" to 100 abandon-after 5\n')
    port_file = tmp_path / "port"
    result: list[int] = []
    # --wait-for-login: the scenario's clock starts when we have logged in, however long that takes on a busy
    # machine, so we see the call from its start.
    runner = threading.Thread(target=lambda: result.append(main([
        "--port", "0", "--port-file", str(port_file), "--secret-file", str(secret_file), "--speed", "50",
        "--scenario", str(scenario), "--exit-after-scenarios", "--wait-for-login"])))
    runner.start()
    deadline = time.monotonic() + 30
    while not port_file.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    port = int(port_file.read_text())
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"Action: Login\r\nUsername: crm\r\nSecret: s3cret-never-shown\r\n\r\n")
        while b"Event: Hangup\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    runner.join(timeout=30)
    assert result == [0]
    assert "Γιώργος Παπαδόπουλος".encode() in received
    out, err = capfd.readouterr()
    assert f"AMI on 127.0.0.1:{port} (user crm)" in out and "scenario late ended" in out
    assert out.index("waiting for an AMI client to log in") < out.index("scenario late (")
    assert not list(tmp_path.glob(".port.*")), "the port file's temporary copy is gone"
    assert "s3cret-never-shown" not in out + err
