"""`callcenter serve` and `callcenter demo` for real: a child process, a real port, real HTTP, Ctrl-C (SIGINT)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.child_process import ChildProcess, clean_env

pytestmark = pytest.mark.slow

STARTUP_SECONDS = 90
URL_LINE = re.compile(r"(http://127\.0\.0\.1:\d+/)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Running(ChildProcess):
    """A `callcenter ...` child process whose output lines are collected as they come."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        super().__init__(["-m", "callcenter", *args], cwd, env)

    def wait_for(self, pattern: re.Pattern[str], seconds: float = STARTUP_SECONDS) -> re.Match[str]:
        return super().wait_for(pattern, seconds)


@pytest.fixture
def processes() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for running in started:
        if running.process.poll() is None:
            running.stop()


def _csrf_token(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token on the login page"
    return match.group(1)


def test_demo_migrates_seeds_serves_and_lets_alice_log_in(tmp_path: Path, processes: list[Running]) -> None:
    port = free_port()
    demo = Running(["demo", "--port", str(port), "--bridge-port", str(free_port()), "--contacts", "60", "--no-calls"],
                   cwd=tmp_path, env=clean_env())
    processes.append(demo)
    url = demo.wait_for(URL_LINE).group(1)
    assert url == f"http://127.0.0.1:{port}/"
    demo.wait_for(re.compile(r"Ctrl-C to stop"), seconds=10)
    for username in ("alice / demo-alice", "bob   / demo-bob", "carol / demo-carol"):
        assert username in demo.output

    with httpx.Client(base_url=url, timeout=10) as browser:
        login_page = browser.get("/login/")
        assert login_page.status_code == 200
        assert browser.get("/static/callcenter/app.css").status_code == 200
        response = browser.post("/login/", data={
            "csrfmiddlewaretoken": _csrf_token(login_page.text), "username": "alice", "password": "demo-alice",
        })
        assert response.status_code == 302 and response.headers["location"] == "/"
        home = browser.get("/")
        assert home.status_code == 200 and "Alice Agent" in home.text
        browser.cookies.set("django_language", "el")
        options = browser.get("/resources/me/options/")
        assert options.status_code == 200 and "Θύρα υπηρεσίας" in options.text

    assert demo.interrupt() == 0
    assert "Traceback" not in demo.stderr_text, demo.stderr_text
    assert "Demo stopped." in demo.output
    assert (tmp_path / "var" / "demo.sqlite3").is_file()
    secret = tmp_path / "var" / "demo-secret.txt"
    assert secret.stat().st_mode & 0o077 == 0 and len(secret.read_text().strip()) >= 40


def _on_a_busy_port(command: str, tmp_path: Path, processes: list[Running], env: dict[str, str]
                    ) -> tuple[int, Running]:
    """`callcenter COMMAND --port P` while another socket listens on P: it exits with 2 and names the busy port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        running = Running([command, "--port", str(port)], cwd=tmp_path, env=env)
        processes.append(running)
        status = running.finish()
    assert status == 2
    assert f"port {port} on 127.0.0.1 is already in use" in running.stderr_text
    assert "Traceback" not in running.stderr_text
    return port, running


def test_demo_reports_a_port_in_use_before_touching_the_database(tmp_path: Path, processes: list[Running]) -> None:
    _port, demo = _on_a_busy_port("demo", tmp_path, processes, clean_env())
    assert "--port" in demo.stderr_text
    assert not (tmp_path / "var" / "demo.sqlite3").exists()


def _serve_env() -> dict[str, str]:
    return clean_env(CALLCENTER_SECRET_KEY="serve-test-key-" + "x" * 40,
                     CALLCENTER_DATABASE_URL="sqlite:///var/serve.sqlite3")


def test_serve_runs_the_crm_until_ctrl_c(tmp_path: Path, processes: list[Running]) -> None:
    (tmp_path / "var").mkdir()
    port = free_port()
    server = Running(["serve", "--port", str(port), "--host", "127.0.0.1"], cwd=tmp_path, env=_serve_env())
    processes.append(server)
    url = server.wait_for(URL_LINE).group(1)
    assert url == f"http://127.0.0.1:{port}/"
    assert "Ctrl-C to stop" in server.wait_for(re.compile("Ctrl-C")).string
    login_page = httpx.get(url + "login/", timeout=10)
    assert login_page.status_code == 200 and 'name="password"' in login_page.text
    assert server.interrupt() == 0
    assert "Traceback" not in server.stderr_text, server.stderr_text
    # The database was never migrated: serve says what to do, and still serves what needs no database.
    assert "callcenter migrate" in server.stderr_text


def test_serve_names_the_busy_port_and_how_to_choose_another(tmp_path: Path, processes: list[Running]) -> None:
    port, server = _on_a_busy_port("serve", tmp_path, processes, _serve_env())
    assert f"--port {port + 1}" in server.stderr_text
    assert server.output == ""


@pytest.mark.parametrize("port", ["http", "0", "70000"])
def test_serve_refuses_a_port_that_is_no_port(tmp_path: Path, processes: list[Running], port: str) -> None:
    server = Running(["serve", "--port", port], cwd=tmp_path, env=_serve_env())
    processes.append(server)
    assert server.finish() == 2
    assert f"--port {port}" in server.stderr_text.replace("'", "")
    assert "1 to 65535" in server.stderr_text and "Traceback" not in server.stderr_text
