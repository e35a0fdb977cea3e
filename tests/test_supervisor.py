"""The supervisor that runs the product's parts together (`serve`, `demo`): ready banner, stop together, failures."""

from __future__ import annotations

import asyncio
import socket

import pytest

from callcenter.supervisor import Component, ListenError, Supervisor, listen, url_for


class Part(Component):
    """A component that records what happened to it; ``fail``/``end`` make it raise or return by itself."""

    def __init__(self, name: str, *, fail_before_ready: bool = False, end_after_ready: bool = False) -> None:
        self.name = name
        self.fail_before_ready = fail_before_ready
        self.end_after_ready = end_after_ready
        self.stopped = asyncio.Event()
        self.stop_calls = 0
        self.finished = False

    async def run(self, ready: asyncio.Event) -> None:
        await asyncio.sleep(0.01)
        if self.fail_before_ready:
            raise OSError(f"{self.name} cannot open its port")
        ready.set()
        if not self.end_after_ready:
            await self.stopped.wait()
        self.finished = True

    def stop(self) -> None:
        self.stop_calls += 1
        self.stopped.set()

    def describe(self) -> list[str]:
        return [f"{self.name} ready"]


async def test_it_announces_once_every_part_is_ready_and_stops_them_all_on_request() -> None:
    parts = [Part("crm"), Part("bridge")]
    announced: list[list[str]] = []
    supervisor: Supervisor

    def on_ready() -> None:
        announced.append([line for part in parts for line in part.describe()])
        asyncio.get_running_loop().call_later(0.02, supervisor.request_stop)

    supervisor = Supervisor(parts, on_ready=on_ready)
    assert await supervisor.run_async() == 0
    assert announced == [["crm ready", "bridge ready"]]
    assert all(part.finished and part.stop_calls >= 1 for part in parts)


async def test_a_part_failing_at_start_stops_the_others_without_an_announcement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    healthy, broken = Part("crm"), Part("pbx simulator", fail_before_ready=True)
    announced: list[bool] = []
    status = await Supervisor([healthy, broken], on_ready=lambda: announced.append(True)).run_async()
    assert status == 1 and announced == []
    assert healthy.finished and healthy.stop_calls >= 1
    assert "pbx simulator failed: pbx simulator cannot open its port" in capsys.readouterr().err


async def test_a_part_ending_by_itself_ends_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    crm, bridge = Part("crm"), Part("bridge", end_after_ready=True)
    assert await Supervisor([crm, bridge]).run_async() == 1
    assert crm.finished
    assert "bridge stopped unexpectedly" in capsys.readouterr().err


def test_it_refuses_to_run_nothing() -> None:
    with pytest.raises(ValueError, match="nothing to run"):
        Supervisor([])


def test_listen_names_a_busy_port_and_suggests_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as caught:
            listen("127.0.0.1", port)
    message = str(caught.value)
    assert f"port {port} on 127.0.0.1 is already in use" in message
    assert f"--port {port + 1}" in message


def test_listen_refuses_an_address_that_is_not_this_machines() -> None:
    with pytest.raises(ListenError, match="--host 127.0.0.1"):
        listen("192.0.2.1", 0)  # TEST-NET-1: documentation only, never local


def test_the_url_of_a_wildcard_socket_is_the_loopback_one() -> None:
    sock = listen("0.0.0.0", 0)
    try:
        port = sock.getsockname()[1]
        assert url_for(sock) == f"http://127.0.0.1:{port}/"
    finally:
        sock.close()
    sock = listen("127.0.0.1", 0)
    try:
        assert url_for(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()
