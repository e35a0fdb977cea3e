"""Run several long-lived components in one process and stop them together.

`callcenter serve` runs one component (the CRM's web server); `callcenter demo` runs the CRM and, as the product
grows, the bridge and the simulated PBX beside it. Rules:
- start every component; once all say they are ready, call ``on_ready`` (which prints the URLs and logins);
- Ctrl-C (SIGINT) or SIGTERM asks every component to stop, and waits for them (a second signal is left to the
  components, uvicorn treats it as "stop now");
- a component that stops on its own, or fails, stops the others: a demo with a dead part is not a demo;
- the exit status is 0 after a requested stop, 1 when a component failed or ended unasked.

No Django here: the bridge and the simulator run under this supervisor without the CRM installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 10.0


class Component(ABC):
    """One part of the running product."""

    name: str = "component"

    @abstractmethod
    async def run(self, ready: asyncio.Event) -> None:
        """Run until stop() is called; set ``ready`` once serving. Returning early means the component ended."""

    @abstractmethod
    def stop(self) -> None:
        """Ask run() to return soon. Called from the event loop, possibly before run() set ``ready``."""

    def describe(self) -> list[str]:
        """Lines for the banner printed once everything is ready (where it listens, ...)."""
        return []


class ListenError(Exception):
    """A port cannot be listened on; the message says which and what to do."""


def listen(host: str, port: int, *, what: str = "the CRM", option: str = "--port") -> socket.socket:
    """A listening TCP socket on ``host``:``port``, or ListenError saying why not and how to choose another port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host!r}: {exc.strerror}; give an address of this machine, such as "
                          "--host 127.0.0.1") from exc
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(
                f"port {port} on {host} is already in use, so {what} cannot listen there; stop the program "
                f"using it, or choose another port with {option} (for example {option} {_other_port(port)})"
            ) from exc
        if exc.errno == errno.EACCES:
            raise ListenError(
                f"not allowed to listen on port {port} on {host}; choose a port of 1024 or more with {option}"
            ) from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ListenError(
                f"{host} is not an address of this machine; use --host 127.0.0.1 or one of its addresses"
            ) from exc
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _other_port(port: int) -> int:
    return port + 1 if port < 65535 else 8000


def url_for(sock: socket.socket, scheme: str = "http") -> str:
    """The address a person types to reach ``sock``: a wildcard address is shown as the loopback one."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):  # noqa: S104 - naming the wildcard, not binding to it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/"


class Supervisor:
    def __init__(self, components: Sequence[Component], *, on_ready: Callable[[], None] | None = None) -> None:
        if not components:
            raise ValueError("nothing to run")
        self.components = list(components)
        self.on_ready = on_ready
        self._stop_requested: asyncio.Event | None = None

    def request_stop(self) -> None:
        if self._stop_requested is not None:
            self._stop_requested.set()

    def run(self) -> int:
        """Run everything until a signal or a failure; the exit status for the command."""
        return asyncio.run(self.run_async())

    async def run_async(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread / Windows
                loop.add_signal_handler(sig, self._stop_requested.set)
        ready = {component: asyncio.Event() for component in self.components}
        tasks = {
            asyncio.create_task(component.run(ready[component]), name=component.name): component
            for component in self.components
        }
        stop_waiter: asyncio.Future[Any] = asyncio.create_task(self._stop_requested.wait())
        all_ready: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(event.wait() for event in ready.values()))
        )
        running: set[asyncio.Future[Any]] = set(tasks)
        failed = False
        try:
            done, _pending = await asyncio.wait(running | {all_ready, stop_waiter},
                                                return_when=asyncio.FIRST_COMPLETED)
            if all_ready in done and not self._stop_requested.is_set():
                if self.on_ready is not None:
                    self.on_ready()
                done, _pending = await asyncio.wait(running | {stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
            else:
                all_ready.cancel()
            for task in tasks:
                if task in done:
                    failed = True
                    self._report_end(tasks[task], task)
        finally:
            for component in self.components:
                component.stop()
            finished, unfinished = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_SECONDS)
            for task in unfinished:
                log.warning("%s did not stop within %.0f s; cancelling it", tasks[task].name, STOP_TIMEOUT_SECONDS)
                task.cancel()
            for task in finished:
                if not task.cancelled() and task.exception() is not None and not failed:
                    failed = True
                    self._report_end(tasks[task], task)
            stop_waiter.cancel()
            for sig in signals:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
        return 1 if failed else 0

    @staticmethod
    def _report_end(component: Component, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            sys.stderr.write(f"{component.name} was cancelled\n")
            return
        exc = task.exception()
        if exc is None:
            sys.stderr.write(f"{component.name} stopped unexpectedly; stopping everything\n")
        else:
            log.error("%s failed", component.name, exc_info=exc)
            sys.stderr.write(f"{component.name} failed: {exc}; stopping everything\n")
