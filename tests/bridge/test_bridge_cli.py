"""``callcenter bridge replay`` and ``capture``: replay goes through the live codec + translator; capture logs in over a
real TCP socket (to a tiny AMI server started here on 127.0.0.1) and records the raw bytes."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callcenter import cli as top_cli
from callcenter import wire
from callcenter.bridge import cli
from callcenter.bridge.connectors.ami.codec import AMIConnection, Message, encode_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
SECRET = "s3cret-not-to-be-seen"


def fixture(name: str) -> Path:
    return FIXTURES / f"{name}.ami"


def without_banner(data: bytes) -> bytes:
    return data.split(b"\r\n", 1)[1]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def events_of(stdout: str) -> list[wire.Event]:
    return [wire.decode_event(line) for line in stdout.splitlines()]


class FakeAmi:
    """A tiny AMI server in a thread: greets, checks Login, answers Events with a capture's bytes, says Goodbye."""

    def __init__(self, payload: bytes = b"", *, close_after_payload: bool = True) -> None:
        self.payload = payload
        self.close_after_payload = close_after_payload
        self.actions: list[Message] = []
        self.loop = asyncio.new_event_loop()
        self.tasks: set[asyncio.Task[None]] = set()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        starting = asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.server = asyncio.run_coroutine_threadsafe(starting, self.loop).result(5)
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)  # type: ignore[arg-type]
        try:
            await self._serve(reader, writer)
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        connection = AMIConnection("server")
        while data := await reader.read(4096):
            connection.receive_data(data)
            for action in connection.next_events():
                self.actions.append(action)
                name, action_id = action.name.lower(), action.action_id or ""
                if name == "login":
                    if action.get("Username") == "crm" and action.get("Secret") == SECRET:
                        reply = [("Response", "Success"), ("Message", "Authentication accepted")]
                        writer.write(encode_message([reply[0], ("ActionID", action_id), reply[1]]))
                    else:
                        writer.write(encode_message(
                            [("Response", "Error"), ("ActionID", action_id), ("Message", "Authentication failed")]
                        ))
                        await writer.drain()
                        return
                elif name == "events":
                    writer.write(encode_message([("Response", "Success"), ("ActionID", action_id), ("Events", "On")]))
                    writer.write(self.payload)
                    await writer.drain()
                    if self.close_after_payload:
                        return
                elif name == "logoff":
                    writer.write(encode_message(
                        [("Response", "Goodbye"), ("ActionID", action_id), ("Message", "Thanks for all the fish.")]
                    ))
                    await writer.drain()
                    return

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def action_names(self) -> list[str]:
        return [action.name for action in self.actions]


@pytest.fixture
def transfer_pbx() -> Iterator[FakeAmi]:
    pbx = FakeAmi(without_banner(fixture("transfer_blind").read_bytes()))
    yield pbx
    pbx.close()


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "ami.secret"
    path.write_text(SECRET + "\n", encoding="utf-8")
    return path


# ---- replay --------------------------------------------------------------------------------------------------------


def test_replay_prints_one_json_wire_event_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["replay", str(fixture("inbound_answered")), "--profile", "lab"], capsys)
    assert code == 0, err
    events = events_of(out)
    assert [type(event).__name__ for event in events] == ["CallRinging", "CallAnswered", "CallEnded"]
    assert isinstance(events[0], wire.CallRinging) and events[0].remote_name == "Γιώργος Παπαδόπουλος"
    assert all(json.loads(line)["v"] == wire.SCHEMA_VERSION for line in out.splitlines())


def test_replay_follows_the_extensions_asked_for(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["replay", str(fixture("ringgroup")), "--profile", "lab", "--ext", "100"], capsys)
    assert code == 0
    assert {event.extension for event in events_of(out)} == {"100"}  # type: ignore[union-attr]
    code, out, _ = run(["replay", str(fixture("ringgroup")), "--profile", "lab", "--ext", "100,102"], capsys)
    assert {event.extension for event in events_of(out)} == {"100", "102"}  # type: ignore[union-attr]
    code, out, _ = run(["replay", str(fixture("ringgroup")), "--profile", "lab", "--ext", "101", "--ext", "102"],
                       capsys)
    assert {event.extension for event in events_of(out)} == {"101", "102"}  # type: ignore[union-attr]


def test_replay_honours_the_switches_and_filters(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["replay", str(fixture("inbound_answered")), "--profile", "lab"]
    _, default, _ = run(base, capsys)
    _, switched_off, _ = run([*base, "--no-newchannel", "--no-newstate"], capsys)
    assert events_of(default)[0].occurred_at == 1795632435.001004
    assert events_of(switched_off)[0].occurred_at == 1795632435.004912  # the DialBegin
    _, other_device, _ = run([*base, "--channel", "Local/101@phones"], capsys)
    _, other_context, _ = run([*base, "--context", "from-internal"], capsys)
    assert other_device == "" and other_context == ""


def test_replay_of_a_capture_cut_mid_stream_gives_the_same_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = fixture("ringgroup").read_bytes()
    cut = tmp_path / "cut.ami"
    cut.write_bytes(data[data.index(b"Event: Newchannel") :])  # as a tcpdump payload started late would be
    _, whole, _ = run(["replay", str(fixture("ringgroup")), "--profile", "lab"], capsys)
    code, partial, _ = run(["replay", str(cut), "--profile", "lab"], capsys)
    assert code == 0
    assert partial == whole


def test_replay_with_the_production_profile_sees_no_agents_in_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["replay", str(fixture("ringgroup"))], capsys)
    assert (code, out) == (0, "")


def test_replay_skips_garbage_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.ami"
    junk.write_bytes(b"Asterisk Call Manager/11.0.0\r\nthis is not AMI\r\n\r\n\xff\xfe\x00 garbage\r\n\r\n"
                     + fixture("inbound_missed").read_bytes().split(b"\r\n", 1)[1])
    code, out, err = run(["replay", str(junk), "--profile", "lab"], capsys)
    assert code == 0
    assert len(events_of(out)) == 2  # the call after the garbage is still found
    assert "malformed AMI message skipped" in err


def test_replay_of_an_endless_message_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endless = tmp_path / "endless.ami"
    endless.write_bytes(b"Asterisk Call Manager/11.0.0\r\nEvent: Foo\r\n" + b"Key: value\r\n" * 400_000)
    code, _, err = run(["replay", str(endless)], capsys)
    assert code == 1
    assert f"{endless} cannot be read as AMI after" in err


def test_replay_of_a_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["replay", str(tmp_path / "nope.ami")], capsys)
    assert (code, out) == (2, "")
    assert "cannot read the capture" in err and "No such file" in err


def test_replay_refuses_a_bad_setting_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["replay", str(fixture("outbound")), "--internal-digits", "12"], capsys)
    assert code == 2
    assert "internal digits 12 is out of range" in err


def test_the_callcenter_command_dispatches_bridge_replay(capsys: pytest.CaptureFixture[str]) -> None:
    code = top_cli.main(["bridge", "replay", str(fixture("outbound")), "--profile", "lab"])
    out = capsys.readouterr().out
    assert code == 0
    assert [type(event).__name__ for event in events_of(out)] == ["CallRinging", "CallAnswered", "CallEnded"]


# ---- capture -------------------------------------------------------------------------------------------------------


def test_capture_records_the_pbx_bytes_and_their_replay_gives_the_same_events(
    transfer_pbx: FakeAmi, secret_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "support-case.ami"
    argv = ["capture", "--host", "127.0.0.1", "--port", str(transfer_pbx.port), "--user", "crm",
            "--secret-file", str(secret_file), str(out)]
    code, stdout, stderr = run(argv, capsys)
    assert code == 0, stderr
    assert f"recorded {out.stat().st_size} bytes" in stderr
    recorded = out.read_bytes()
    assert recorded.startswith(b"Asterisk Call Manager/11.0.0\r\nResponse: Success")
    assert recorded.endswith(without_banner(fixture("transfer_blind").read_bytes()))
    assert SECRET.encode() not in recorded and SECRET not in stdout + stderr
    assert transfer_pbx.action_names() == ["Login", "Events"]
    assert transfer_pbx.actions[1].get("EventMask") == "on"
    _, replayed, _ = run(["replay", str(out), "--profile", "lab"], capsys)
    _, original, _ = run(["replay", str(fixture("transfer_blind")), "--profile", "lab"], capsys)
    assert replayed == original and len(replayed.splitlines()) == 7


def test_capture_takes_the_secret_from_the_environment(
    transfer_pbx: FakeAmi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(cli.SECRET_ENV, SECRET)
    out = tmp_path / "env.ami"
    code, _, err = run(["capture", "--host", "127.0.0.1", "--port", str(transfer_pbx.port), "--user", "crm",
                        str(out)], capsys)
    assert code == 0, err
    assert out.stat().st_size > 80_000


def test_a_wrong_secret_is_a_clear_error_with_exit_code_2(
    transfer_pbx: FakeAmi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never.ami"
    wrong = "wrong-secret-value"
    code, stdout, stderr = run(["capture", "--host", "127.0.0.1", "--port", str(transfer_pbx.port), "--user", "crm",
                                "--secret", wrong, str(out)], capsys)
    assert code == 2
    assert f"AMI at 127.0.0.1:{transfer_pbx.port} refused the login of user 'crm': Authentication failed" in stderr
    assert "manager.conf" in stderr
    assert wrong not in stdout + stderr
    assert not out.exists()


def test_no_secret_at_all_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(cli.SECRET_ENV, raising=False)
    code, _, err = run(["capture", "--host", "127.0.0.1", "--user", "crm", str(tmp_path / "x.ami")], capsys)
    assert code == 2
    assert f"no AMI secret: give --secret-file FILE or set {cli.SECRET_ENV}" in err


def test_capture_stops_after_the_given_seconds_and_logs_off(
    secret_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pbx = FakeAmi(without_banner(fixture("inbound_missed").read_bytes()), close_after_payload=False)
    try:
        out = tmp_path / "timed.ami"
        code, _, err = run(["capture", "--host", "127.0.0.1", "--port", str(pbx.port), "--user", "crm",
                            "--secret-file", str(secret_file), "--seconds", "0.3", str(out)], capsys)
        assert code == 0, err
        assert pbx.action_names() == ["Login", "Events", "Logoff"]
        assert out.read_bytes().endswith(b"Message: Thanks for all the fish.\r\n\r\n")
    finally:
        pbx.close()


async def test_capture_stops_when_asked_as_by_ctrl_c(secret_file: Path, tmp_path: Path) -> None:
    pbx = FakeAmi(without_banner(fixture("outbound").read_bytes()), close_after_payload=False)
    try:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stop.set)
        out = tmp_path / "stopped.ami"
        code = await cli.capture("127.0.0.1", pbx.port, "crm", SECRET, out, stop=stop)
        assert code == 0
        assert b"Event: Hangup" in out.read_bytes()
        assert pbx.action_names()[-1] == "Logoff"
    finally:
        pbx.close()


def test_capture_says_when_it_cannot_connect(
    secret_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pbx = FakeAmi()
    port = pbx.port
    pbx.close()  # nothing listens there any more
    code, _, err = run(["capture", "--host", "127.0.0.1", "--port", str(port), "--user", "crm",
                        "--secret-file", str(secret_file), str(tmp_path / "x.ami")], capsys)
    assert code == 1
    assert f"cannot connect to AMI at 127.0.0.1:{port}" in err


# ---- config errors: one line naming the key, exit 2, for every sub-command (issue 11, finding 6) ----------------

SETTINGS_COMMANDS = [["run"], ["check"], ["errors"], ["autostart", "on"], ["login-link"]]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"bridge": {"port": "abc"}}, "[bridge] port"),
        ({"bridge": {"heartbeat_seconds": 0}}, "[bridge] heartbeat_seconds"),
        ({"asterisk": {"port": 70000}}, "[asterisk] port"),
        ({"bridge": {"secret": "short"}}, "[bridge] secret"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_for_every_command(
    write_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    change: dict[str, dict[str, object]], named: str,
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = write_config(**change)
    for command in SETTINGS_COMMANDS:
        code = cli.main([*command, "--config", str(config)])
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "fix the settings first" not in line]
        assert code == 2, (command, err)
        assert len(lines) == 1 and lines[0].startswith(f"callcenter bridge {command[0]}: ") and named in lines[0], err
        assert "Traceback" not in err
    assert not (tmp_path / "xdg").exists()


def test_a_missing_settings_file_names_the_variable_that_named_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLCENTER_BRIDGE_CONFIG", str(tmp_path / "nowhere.toml"))
    for command in SETTINGS_COMMANDS:
        assert cli.main(command) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if "fix the settings first" not in line]
        assert len(lines) == 1 and "CALLCENTER_BRIDGE_CONFIG" in lines[0] and "nowhere.toml" in lines[0], lines


def test_every_sub_command_has_help_without_any_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALLCENTER_BRIDGE_CONFIG", str(tmp_path / "nowhere.toml"))
    for command in [["replay"], ["capture"], *SETTINGS_COMMANDS]:
        with pytest.raises(SystemExit) as exited:
            cli.main([*command, "--help"])
        assert exited.value.code == 0
        assert "usage: callcenter bridge" in capsys.readouterr().out


# ---- login-link -------------------------------------------------------------------------------------------------


def test_login_link_prints_a_one_time_link_and_keeps_only_its_digest(
    write_config: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from callcenter.bridge import login_links

    port = 5999
    config = write_config(bridge={"port": port, "address": "0.0.0.0"})
    assert cli.main(["login-link", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    link = out.strip()
    assert link.startswith(f"http://127.0.0.1:{port}/login?token=") and len(out.splitlines()) == 1
    assert "works once" in err and "no bridge answers" in err  # none runs here
    token = link.split("token=", 1)[1]
    data_dir = tmp_path / "data"
    stored = list((data_dir / login_links.DIRECTORY_NAME).iterdir())
    assert [path.name for path in stored] == [login_links.digest(token)]
    assert login_links.redeem(data_dir, token) and not login_links.redeem(data_dir, token)
