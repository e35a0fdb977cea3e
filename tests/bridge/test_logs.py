"""The bridge's logs: error log and extended event log in data_dir, and no secret in any line."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from callcenter import wire
from callcenter.bridge import logs
from callcenter.bridge.logs import BridgeLogs, Redactor, event_logger, print_error_log, read_error_log
from callcenter.bridge.settings import BridgeSettings, load_settings
from tests.bridge.conftest import AMI_SECRET, BRIDGE_SECRET

log = logging.getLogger("callcenter.bridge.test")


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("callcenter.bridge.test", logging.ERROR, __file__, 1, message, args, exc_info)


def formatted(redactor: Redactor, rec: logging.LogRecord) -> str:
    assert redactor.filter(rec)
    return logging.Formatter("%(message)s").format(rec)


def test_known_secrets_are_blanked_in_the_message_its_arguments_and_tracebacks() -> None:
    redactor = Redactor([BRIDGE_SECRET, AMI_SECRET])
    try:
        raise ValueError(f"login refused for secret {AMI_SECRET}")
    except ValueError as exc:
        error = exc
    text = formatted(redactor, record("sent %s to %r", BRIDGE_SECRET, {"k": AMI_SECRET}, exc=error))
    assert BRIDGE_SECRET not in text and AMI_SECRET not in text
    assert "sent *** to {'k': '***'}" in text
    assert "ValueError: login refused for secret ***" in text


@pytest.mark.parametrize(("line", "shown"), [
    ("Action: Login\r\nUsername: crm\r\nSecret: s3cr3t-value\r\n", "Action: Login\r\nUsername: crm\r\nSecret: ***\r\n"),
    ("connect password=abc123 user=x", "connect password=*** user=x"),
    ('{"agent_password": "9999", "agent_id": "42"}', '{"agent_password": "***", "agent_id": "42"}'),
    ("url /login?token=QWERTY&next=/", "url /login?token=***&next=/"),
    ("AgentLogin(password='1234')", "AgentLogin(password='***')"),
])
def test_secret_fields_are_blanked_whatever_their_value(line: str, shown: str) -> None:
    assert formatted(Redactor(), record(line)) == shown


def test_short_values_are_not_blanked_everywhere_but_their_fields_still_are() -> None:
    redactor = Redactor(["100"])  # as short as an extension: blanking it would blank every extension
    assert formatted(redactor, record("extension 100 rang")) == "extension 100 rang"
    assert formatted(redactor, record("password: 100")) == "password: ***"


def test_a_secret_escaped_by_repr_is_blanked_too() -> None:
    secret = 'quo"te\\back-slash'
    text = formatted(Redactor([secret]), record("%r and %s", secret, secret.replace("\\", "\\\\")))
    assert "quo" not in text


@pytest.fixture
def settings_for(write_config: Callable[..., Path]) -> Callable[..., BridgeSettings]:
    def make(**bridge: object) -> BridgeSettings:
        return load_settings(write_config(bridge=bridge), env={})

    return make


@pytest.fixture
def bridge_logs() -> Iterator[tuple[BridgeLogs, io.StringIO]]:
    console = io.StringIO()
    installed = BridgeLogs(console=console)
    yield installed, console
    installed.close()


def test_the_error_log_keeps_warnings_and_errors_without_secrets(
    settings_for: Callable[..., BridgeSettings], bridge_logs: tuple[BridgeLogs, io.StringIO]
) -> None:
    settings = settings_for(external_log=True)
    installed, console = bridge_logs
    installed.configure(settings)

    log.info("connected to the PBX")
    log.warning("the CRM refused the batch: wrong secret %s", BRIDGE_SECRET)
    log.error("AMI login failed for secret %s", AMI_SECRET)

    text = (settings.data_dir / logs.ERROR_LOG_NAME).read_text()
    assert "connected to the PBX" not in text  # info is not an error
    assert "WARNING callcenter.bridge.test: the CRM refused the batch: wrong secret ***" in text
    assert "ERROR callcenter.bridge.test: AMI login failed for secret ***" in text
    for output in (text, console.getvalue(), "\n".join(installed.recent.lines)):
        assert BRIDGE_SECRET not in output and AMI_SECRET not in output
    assert "connected to the PBX" in console.getvalue()
    assert read_error_log(settings.data_dir, 1) == [text.splitlines()[-1]]


def test_without_external_log_no_file_is_written_but_the_page_still_sees_errors(
    settings_for: Callable[..., BridgeSettings], bridge_logs: tuple[BridgeLogs, io.StringIO]
) -> None:
    settings = settings_for(external_log=False)
    installed, _console = bridge_logs
    installed.configure(settings)
    log.error("the PBX is unreachable")
    assert not (settings.data_dir / logs.ERROR_LOG_NAME).exists()
    assert installed.recent.lines[-1].endswith("ERROR callcenter.bridge.test: the PBX is unreachable")


def test_the_extended_log_has_every_event_and_pbx_action_and_nothing_else(
    settings_for: Callable[..., BridgeSettings], bridge_logs: tuple[BridgeLogs, io.StringIO]
) -> None:
    settings = settings_for(extended_log=True, external_log=True)
    installed, console = bridge_logs
    installed.configure(settings)
    event = wire.CallRinging(event_id="e1", occurred_at=1.0, call_id="c1", extension="100",
                             direction=wire.Direction.INBOUND, remote_number="2101234567", remote_name="Νίκος")

    installed.log_event(event)
    event_logger("ami").debug("-> Action: Login\r\nUsername: crm\r\nSecret: %s\r\n", AMI_SECRET)
    log.error("an error")

    events = (settings.data_dir / logs.EVENT_LOG_NAME).read_text(encoding="utf-8")
    assert 'event {"type":"call.ringing"' in events and "Νίκος" in events
    assert "Secret: ***" in events and AMI_SECRET not in events
    assert "an error" not in events
    errors = (settings.data_dir / logs.ERROR_LOG_NAME).read_text()
    assert "call.ringing" not in errors and "Login" not in errors
    assert "call.ringing" not in console.getvalue()


def test_logs_can_be_switched_on_and_off_while_running(
    settings_for: Callable[..., BridgeSettings], bridge_logs: tuple[BridgeLogs, io.StringIO]
) -> None:
    installed, _console = bridge_logs
    off = settings_for(extended_log=False, external_log=False)
    on = settings_for(extended_log=True, external_log=True)
    event = wire.AgentState(event_id="a1", occurred_at=1.0, extension="100", dnd=True)

    installed.configure(off)
    installed.log_event(event)
    installed.configure(on)
    installed.configure(on)  # again: handlers are replaced, not stacked
    installed.log_event(event)
    log.error("once")
    installed.configure(off)
    installed.log_event(event)
    log.error("not in the file")

    assert (on.data_dir / logs.EVENT_LOG_NAME).read_text().count('"agent.state"') == 1
    errors = (on.data_dir / logs.ERROR_LOG_NAME).read_text()
    assert errors.count("once") == 1 and "not in the file" not in errors


def test_each_delivered_batch_is_not_logged_by_the_http_client_but_its_errors_are(
    settings_for: Callable[..., BridgeSettings], bridge_logs: tuple[BridgeLogs, io.StringIO]
) -> None:
    installed, console = bridge_logs
    installed.configure(settings_for())
    http = logging.getLogger("httpx")
    http.info('HTTP Request: POST http://127.0.0.1:8000/bridge/v1/events "HTTP/1.1 200 OK"')
    http.warning("connection pool is full")
    assert "HTTP Request" not in console.getvalue() and "connection pool is full" in console.getvalue()
    installed.close()
    assert http.level == logging.NOTSET


def test_close_removes_every_handler(settings_for: Callable[..., BridgeSettings]) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    installed = BridgeLogs(console=io.StringIO())
    installed.configure(settings_for(extended_log=True))
    installed.close()
    assert root.handlers == before
    assert logging.getLogger(logs.EVENT_LOGGER).handlers == []


def test_errors_command_prints_the_last_lines_across_rotated_files(
    settings_for: Callable[..., BridgeSettings]
) -> None:
    settings = settings_for()
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "errors.log.1").write_text("old 1\nold 2\n")
    (settings.data_dir / "errors.log").write_text(f"new 1 secret {BRIDGE_SECRET}\nnew 2\n")
    out = io.StringIO()
    assert print_error_log(settings, 3, out) == 0
    assert out.getvalue() == "old 2\nnew 1 secret ***\nnew 2\n"


def test_errors_command_says_when_there_is_no_log(settings_for: Callable[..., BridgeSettings]) -> None:
    settings = settings_for(external_log=False)
    out = io.StringIO()
    assert print_error_log(settings, 10, out) == 1
    assert out.getvalue() == (
        f"no error log at {settings.data_dir / 'errors.log'} (external_log is off in [bridge], so errors go only "
        "to the console)\n"
    )
