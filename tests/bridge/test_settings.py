"""The bridge's settings file: every S-5 field read, every bad input refused with a sentence naming the field."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from callcenter import wire
from callcenter.bridge.settings import (
    EXAMPLE_FILE,
    Secret,
    SettingsError,
    load_settings,
    to_raw,
    write_settings_file,
)
from tests.bridge.conftest import AGENT_PASSWORD, AMI_SECRET, BRIDGE_SECRET, TSAPI_PASSWORD

NO_ENV: dict[str, str] = {"HOME": "/home/alice"}


def problems_of(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(path, env=NO_ENV if env is None else env)
    return caught.value.problems


def test_the_documented_example_is_valid_once_its_secret_files_exist(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    shutil.copy(EXAMPLE_FILE, path)
    (tmp_path / "bridge.secret").write_text(BRIDGE_SECRET + "\n")
    (tmp_path / "ami.secret").write_text(AMI_SECRET + "\n")

    settings = load_settings(path, env=NO_ENV)

    assert settings.phone_system is wire.PhoneSystem.ASTERISK
    assert (settings.address, settings.port, settings.callback_address, settings.callback_port) == (
        "127.0.0.1", 5050, "127.0.0.1", 8000)
    assert settings.secret.reveal() == BRIDGE_SECRET
    assert settings.secret_file == tmp_path / "bridge.secret"
    assert settings.asterisk.secret.reveal() == AMI_SECRET
    assert settings.extensions == ("100", "101")
    assert settings.data_dir == Path("/home/alice/.local/share/callcenter-bridge")
    assert settings.crm_url == "http://127.0.0.1:8000"
    assert settings.asterisk.port == 5038 and settings.asterisk.status_timeout == 5.0


def test_every_field_is_read(write_config: Callable[..., Path], tmp_path: Path) -> None:
    path = write_config(
        bridge={"address": "0.0.0.0", "port": 6000, "callback_address": "crm.example", "callback_port": 443,
                "callback_scheme": "https", "bridge_id": "desk-7", "extended_log": True, "external_log": False,
                "run_at_startup": True, "data_dir": "state", "extensions": [100, "101", "100"], "internal_digits": 3,
                "heartbeat_seconds": 10},
        asterisk={"host": "pbx.example", "port": 15038, "username": "proxy", "channel": "PJSIP", "context": "agents",
                  "extension": "100", "status_timeout": 2.5, "process_newchannel": False, "process_newstate": False,
                  "profile": "lab", "busy_mode": "both", "originate_context": "ctx", "originate_channel": "SIP/{ext}"},
        tsapi={"internal_phone": "200", "username": "avaya", "password_file": "missing.secret", "group_id": "7",
               "service": "AVAYA#CM#CSTA#AES", "auto_in": False, "agent_id": "42", "agent_password": AGENT_PASSWORD},
        tapi={"phone_type": "custom", "phone_type_name": "Vendor TSP", "internal_phone": "300"},
    )
    settings = load_settings(path, env=NO_ENV)

    assert settings.address == "0.0.0.0" and settings.port == 6000
    assert settings.crm_url == "https://crm.example:443"
    assert settings.service_url == "http://127.0.0.1:6000"
    assert settings.bridge_id == "desk-7"
    assert (settings.extended_log, settings.external_log, settings.run_at_startup) == (True, False, True)
    assert settings.data_dir == tmp_path / "state"  # relative to the settings file
    assert settings.extensions == ("100", "101")
    assert settings.internal_digits == 3 and settings.heartbeat_seconds == 10.0
    assert settings.followed_extensions == ("100",)  # [asterisk] extension: a desk bridge
    ast = settings.asterisk
    assert (ast.host, ast.port, ast.username, ast.channel, ast.context, ast.extension) == (
        "pbx.example", 15038, "proxy", "PJSIP", "agents", "100")
    assert (ast.status_timeout, ast.process_newchannel, ast.process_newstate, ast.profile, ast.busy_mode) == (
        2.5, False, False, "lab", "both")
    assert (ast.originate_context, ast.originate_channel) == ("ctx", "SIP/{ext}")
    ts = settings.tsapi
    assert (ts.internal_phone, ts.username, ts.group_id, ts.service, ts.auto_in, ts.agent_id) == (
        "200", "avaya", "7", "AVAYA#CM#CSTA#AES", False, "42")
    # an inactive phone system's secret files are not read (a missing one must not stop the bridge), but kept
    assert not ts.password and ts.password_file == tmp_path / "missing.secret"
    assert ts.agent_password.reveal() == AGENT_PASSWORD
    tapi = settings.tapi
    assert (tapi.phone_type, tapi.phone_type_name, tapi.internal_phone) == ("custom", "Vendor TSP", "300")


def test_the_tsapi_secrets_are_read_when_tsapi_is_chosen(write_config: Callable[..., Path]) -> None:
    path = write_config(
        bridge={"phone_system": "tsapi"},
        tsapi={"internal_phone": "200", "username": "avaya", "password": TSAPI_PASSWORD, "service": "S",
               "agent_password": AGENT_PASSWORD},
    )
    settings = load_settings(path, env=NO_ENV)
    assert settings.tsapi.password.reveal() == TSAPI_PASSWORD
    assert settings.tsapi.agent_password.reveal() == AGENT_PASSWORD
    assert settings.followed_extensions == ("200",)
    assert set(settings.secrets()) == {BRIDGE_SECRET, AMI_SECRET, TSAPI_PASSWORD, AGENT_PASSWORD}


def test_a_missing_bridge_secret_says_where_to_put_one(write_config: Callable[..., Path]) -> None:
    path = write_config(drop=(("bridge", "secret"),))
    assert problems_of(path) == [
        '[bridge] secret is missing; set secret_file = "/path/to/file" (or secret = "...") in [bridge], or the '
        "environment variable CALLCENTER_BRIDGE_SECRET"
    ]


def test_secrets_may_come_from_the_environment(write_config: Callable[..., Path], tmp_path: Path) -> None:
    path = write_config(drop=(("bridge", "secret"), ("asterisk", "secret")))
    ami_file = tmp_path / "ami-from-env"
    ami_file.write_text(AMI_SECRET)
    env = {**NO_ENV, "CALLCENTER_BRIDGE_SECRET": BRIDGE_SECRET, "CALLCENTER_AMI_SECRET_FILE": str(ami_file)}
    settings = load_settings(path, env=env)
    assert settings.secret.reveal() == BRIDGE_SECRET
    assert settings.secret.origin == "environment variable CALLCENTER_BRIDGE_SECRET"
    assert settings.asterisk.secret.reveal() == AMI_SECRET


def test_the_settings_file_wins_over_the_environment(write_config: Callable[..., Path]) -> None:
    settings = load_settings(write_config(), env={**NO_ENV, "CALLCENTER_BRIDGE_SECRET": "x" * 20})
    assert settings.secret.reveal() == BRIDGE_SECRET


def test_a_missing_ami_secret_is_refused_for_asterisk(write_config: Callable[..., Path]) -> None:
    path = write_config(drop=(("asterisk", "secret"),))
    assert problems_of(path) == [
        '[asterisk] secret is missing; set secret_file = "/path/to/file" (or secret = "...") in [asterisk], or the '
        "environment variable CALLCENTER_AMI_SECRET"
    ]


def test_an_unreadable_secret_file_is_named(write_config: Callable[..., Path], tmp_path: Path) -> None:
    path = write_config(drop=(("bridge", "secret"),), bridge={"secret_file": "nowhere.secret"})
    assert problems_of(path) == [
        f"[bridge] secret_file: the secret file {tmp_path / 'nowhere.secret'} cannot be read (No such file or "
        "directory); create it with the secret on its first line, readable by this user, or fix the path"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_secret_file_without_permission_is_named(write_config: Callable[..., Path], tmp_path: Path) -> None:
    secret = tmp_path / "locked.secret"
    secret.write_text(BRIDGE_SECRET)
    secret.chmod(0)
    path = write_config(drop=(("bridge", "secret"),), bridge={"secret_file": str(secret)})
    assert problems_of(path) == [
        f"[bridge] secret_file: the secret file {secret} cannot be read (Permission denied); create it with the "
        "secret on its first line, readable by this user, or fix the path"
    ]


def test_an_empty_secret_file_is_refused(write_config: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "empty.secret").write_text("\n\n")
    path = write_config(drop=(("bridge", "secret"),), bridge={"secret_file": "empty.secret"})
    assert problems_of(path) == [
        f"[bridge] secret_file: the secret file {tmp_path / 'empty.secret'} is empty; put the secret on its first line"
    ]


def test_a_secret_and_a_secret_file_together_are_refused(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"secret_file": "x"})
    assert problems_of(path) == ["[bridge] give either secret or secret_file, not both"]


def test_a_short_bridge_secret_is_refused_without_showing_it(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"secret": "short-one"})
    problems = problems_of(path)
    assert problems == [
        "[bridge] secret (the settings file) is too short: 9 characters; use at least 16, the one "
        "`callcenter add-bridge` printed"
    ]
    assert "short-one" not in problems[0]


@pytest.mark.parametrize(("value", "message"), [
    (70000, "[bridge] port 70000 is out of range; use a port from 1 to 65535 (1024 or more needs no administrator "
            "rights)"),
    (0, "[bridge] port 0 is out of range; use a port from 1 to 65535 (1024 or more needs no administrator rights)"),
    ("http", "[bridge] port must be a whole number from 1 to 65535, not 'http'"),
    (True, "[bridge] port must be a whole number from 1 to 65535, not True"),
])
def test_a_bad_port_is_refused(write_config: Callable[..., Path], value: object, message: str) -> None:
    assert problems_of(write_config(bridge={"port": value})) == [message]


def test_a_bad_ami_port_is_refused(write_config: Callable[..., Path]) -> None:
    assert problems_of(write_config(asterisk={"port": 65536})) == [
        "[asterisk] port 65536 is out of range; use a port from 1 to 65535 (1024 or more needs no administrator "
        "rights)"
    ]


def test_equal_ports_on_the_same_address_are_refused(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"port": 5050, "callback_port": 5050})
    assert problems_of(path) == [
        "[bridge] service port 5050 equals callback port 5050 on the same address 127.0.0.1; choose different ports"
    ]


@pytest.mark.parametrize(("address", "callback"), [("localhost", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                                   ("::1", "[::1]"), ("Bridge.Example", "bridge.example")])
def test_equal_ports_on_the_same_host_spelled_differently_are_refused(
    write_config: Callable[..., Path], address: str, callback: str
) -> None:
    path = write_config(bridge={"address": address, "callback_address": callback, "port": 7000,
                                "callback_port": 7000})
    [problem] = problems_of(path)
    assert problem.startswith("[bridge] service port 7000 equals callback port 7000 on the same address ")
    assert problem.endswith("; choose different ports")


def test_equal_ports_on_different_hosts_are_fine(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"callback_address": "10.0.0.9", "port": 8000, "callback_port": 8000})
    assert load_settings(path, env=NO_ENV).port == 8000


def test_an_unknown_phone_system_is_refused(write_config: Callable[..., Path]) -> None:
    assert problems_of(write_config(bridge={"phone_system": "cisco"})) == [
        "[bridge] phone_system 'cisco' is unknown; use one of: asterisk, tsapi, tapi"
    ]


def test_a_custom_tapi_phone_needs_its_driver_name(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"phone_system": "tapi"}, tapi={"phone_type": "custom", "internal_phone": "100"})
    assert problems_of(path) == [
        "[tapi] phone_type_name is required when phone_type is custom; give the TAPI driver's name"
    ]


def test_tapi_needs_a_phone_type_and_an_internal_phone(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"phone_system": "tapi"})
    assert problems_of(path) == [
        '[tapi] phone_type is required with phone_system = "tapi"; give the PBX model, or "custom" with '
        "phone_type_name",
        '[tapi] internal_phone is required with phone_system = "tapi"; give the extension whose calls are followed',
    ]


def test_tsapi_needs_its_login(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"phone_system": "tsapi"})
    assert problems_of(path) == [
        '[tsapi] internal_phone is required with phone_system = "tsapi"; give the extension whose calls are followed',
        '[tsapi] username is required with phone_system = "tsapi"; give the Avaya service user',
        '[tsapi] service is required with phone_system = "tsapi"; give the Avaya service name to log in to',
        '[tsapi] password is missing; set password_file = "/path/to/file" (or password = "...") in [tsapi], or the '
        "environment variable CALLCENTER_TSAPI_PASSWORD",
    ]


def test_asterisk_needs_a_manager_user(write_config: Callable[..., Path]) -> None:
    assert problems_of(write_config(drop=(("asterisk", "username"),))) == [
        '[asterisk] username is required with phone_system = "asterisk"; give the manager user from the PBX\'s '
        "manager.conf"
    ]


@pytest.mark.parametrize(("values", "message"), [
    ({"status_timeout": 0}, "[asterisk] status_timeout 0 is out of range; use seconds above 0 and at most 300 "
                            "(5 is usual)"),
    ({"status_timeout": "5"}, "[asterisk] status_timeout must be a number of seconds (without quotes), not '5'"),
    ({"busy_mode": "away"}, "[asterisk] busy_mode 'away' is unknown; use one of: dnd, queue, both"),
    ({"profile": "office"}, "[asterisk] profile 'office' is unknown; use one of: production, lab"),
    ({"originate_channel": "PJSIP/100"}, "[asterisk] originate_channel 'PJSIP/100' has no {ext} for the agent's "
                                         'extension; e.g. "PJSIP/{ext}"'),
    ({"process_newstate": "yes"}, "[asterisk] process_newstate must be true or false (without quotes), not 'yes'"),
    ({"extension": "10a"}, "[asterisk] extension '10a' is not an extension number; use digits only"),
    ({"prot": 5038}, "[asterisk] has an unknown setting 'prot'; check the spelling (known: host, port, username, "
                     "secret, secret_file, channel, context, extension, status_timeout, process_newchannel, "
                     "process_newstate, profile, busy_mode, originate_context, originate_channel)"),
])
def test_bad_asterisk_settings_are_named(
    write_config: Callable[..., Path], values: dict[str, object], message: str
) -> None:
    assert problems_of(write_config(asterisk=values)) == [message]


@pytest.mark.parametrize(("values", "message"), [
    ({"extensions": "100"}, '[bridge] extensions must be a list, e.g. extensions = ["100", "101"] (empty = all)'),
    ({"extensions": ["1 00"]}, "[bridge] extensions: '1 00' is not an extension number; use digits in quotes, e.g. "
                               'extensions = ["100", "101"]'),
    ({"callback_scheme": "ftp"}, "[bridge] callback_scheme 'ftp' is unknown; use one of: http, https"),
    ({"extended_log": 1}, "[bridge] extended_log must be true or false (without quotes), not 1"),
    ({"address": "my host"}, "[bridge] address 'my host' is not a host name or IP address; e.g. address = "
                             '"127.0.0.1"'),
    ({"bridge_id": ""}, "[bridge] bridge_id must be 1-200 characters; use the id given to `callcenter add-bridge`"),
    ({"internal_digits": 9}, "[bridge] internal_digits 9 is out of range; use 0 (only agents' phones are internal) or "
                             "1-8, as in the CRM's call-center settings"),
    ({"internal_digits": "3"}, "[bridge] internal_digits must be a whole number (without quotes), not '3'"),
    ({"heartbeat_seconds": 0}, "[bridge] heartbeat_seconds 0 is out of range; use 1 to 3600 seconds (30 is usual)"),
])
def test_bad_common_settings_are_named(
    write_config: Callable[..., Path], values: dict[str, object], message: str
) -> None:
    assert problems_of(write_config(bridge=values)) == [message]


def test_an_unknown_table_is_refused(write_config: Callable[..., Path]) -> None:
    assert problems_of(write_config(asterix={"host": "x"})) == [
        "unknown table [asterix]; the tables are [bridge], [asterisk], [tsapi], [tapi]"
    ]


def test_every_problem_is_reported_at_once(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"port": 99999, "phone_system": "x"}, asterisk={"busy_mode": "?"})
    assert len(problems_of(path)) == 3


def test_the_message_names_the_file(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"port": 99999})
    with pytest.raises(SettingsError) as caught:
        load_settings(path, env=NO_ENV)
    assert str(caught.value).startswith(f"{path}: [bridge] port 99999 is out of range")


def test_invalid_toml_is_reported_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text("[bridge]\nport = \n")
    [problem] = problems_of(path)
    assert problem.startswith("not valid TOML: ") and "line 2" in problem
    assert str(EXAMPLE_FILE) in problem


def test_a_missing_settings_file_points_at_the_example(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert problems_of(path) == [
        f"the settings file {path} does not exist; copy the documented example {EXAMPLE_FILE} there and edit it "
        "(callcenter bridge check --config FILE tests it)"
    ]


def test_a_home_relative_data_dir_uses_home(write_config: Callable[..., Path]) -> None:
    path = write_config(bridge={"data_dir": "~/bridge-data"})
    assert load_settings(path, env=NO_ENV).data_dir == Path("/home/alice/bridge-data")


# ---- secrets never show ------------------------------------------------------------------------------------------


def test_a_secret_never_shows_itself() -> None:
    secret = Secret("hunter2-hunter2-hunter2", "the settings file")
    assert repr(secret) == "***" and str(secret) == "***"
    assert f"{secret}" == "***" and f"{secret!r}" == "***" and "%s" % secret == "***"  # noqa: UP031 - as logging does
    assert secret.reveal() == "hunter2-hunter2-hunter2"
    assert secret == Secret("hunter2-hunter2-hunter2") and secret != Secret("other")
    assert not Secret() and secret


def test_settings_never_show_their_secrets(write_config: Callable[..., Path]) -> None:
    settings = load_settings(write_config(), env=NO_ENV)
    for text in (repr(settings), str(settings), settings.describe(), repr(settings.asterisk)):
        assert BRIDGE_SECRET not in text
        assert AMI_SECRET not in text
    described = settings.describe()
    assert "secret = *** (from the settings file)" in described
    assert 'phone_system = "asterisk"' in described and "port = 5050" in described


# ---- writing back (the settings page) ------------------------------------------------------------------------------


def test_written_settings_read_back_the_same_and_only_their_owner_reads_them(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "ami.secret").write_text(AMI_SECRET)
    path = write_config(drop=(("asterisk", "secret"),), asterisk={"secret_file": "ami.secret"})
    settings = load_settings(path, env=NO_ENV)

    raw = to_raw(settings)
    assert raw["asterisk"]["secret_file"] == str(tmp_path / "ami.secret")  # a file stays a file
    assert raw["bridge"]["secret"] == BRIDGE_SECRET  # a value written in the file stays there
    write_settings_file(path, raw)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_settings(path, env=NO_ENV)
    assert again == settings


def test_a_secret_from_the_environment_is_not_written(write_config: Callable[..., Path]) -> None:
    path = write_config(drop=(("bridge", "secret"),))
    env = {**NO_ENV, "CALLCENTER_BRIDGE_SECRET": BRIDGE_SECRET}
    settings = load_settings(path, env=env)
    write_settings_file(path, to_raw(settings))
    assert BRIDGE_SECRET not in path.read_text()
    assert load_settings(path, env=env).secret.reveal() == BRIDGE_SECRET
