"""The CRM's web server as a supervised component: uvicorn running the ASGI application in this process, on a socket
bound beforehand (so a port clash is reported before anything else starts, in words, not as a traceback)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import warnings
from collections.abc import Iterator

import uvicorn

from callcenter.supervisor import Component, url_for

ASGI_APPLICATION = "callcenter.crm.asgi:application"

# WhiteNoise serves static files with a synchronous iterator; under ASGI Django says so once per process. The files
# are small, so the warning is noise for someone running the CRM.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")


def freeze_startup_objects() -> None:
    """Leave what start-up made (Django, the apps, URL patterns, translations, templates) out of the garbage
    collector's full collections: it lives as long as the process, and walking it made each full collection stall
    the CRM, and the screen pops waiting on it, for about 50 ms (45-68 -> 16-34 ms, bench/screen_pop.py)."""
    gc.collect()
    gc.freeze()


class _SupervisedServer(uvicorn.Server):
    """uvicorn without its own SIGINT/SIGTERM handling: the supervisor stops the parts, in the order it wants."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CrmServer(Component):
    name = "CRM web server"

    def __init__(self, sock: socket.socket, *, access_log: bool = True, own_signals: bool = True) -> None:
        """``own_signals=False``: uvicorn leaves Ctrl-C to the supervisor (the demo stops the bridge before the CRM,
        so the bridge's last events still reach it)."""
        self.sock = sock
        self.url = url_for(sock)
        self.config = uvicorn.Config(
            ASGI_APPLICATION,
            lifespan="off",
            access_log=access_log,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(self.config) if own_signals else _SupervisedServer(self.config)

    async def run(self, ready: asyncio.Event) -> None:
        if not self.config.loaded:
            self.config.load()  # imports the application (Django, every app, the URLs) before serving
        freeze_startup_objects()
        serving = asyncio.create_task(self._serve())
        while not self.server.started and not serving.done():
            await asyncio.sleep(0.02)
        if self.server.started:
            ready.set()
        await serving

    async def _serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        except SystemExit as exc:  # uvicorn exits the process when it cannot start; here that is a failure
            raise RuntimeError(f"the web server could not start (status {exc.code})") from None

    def stop(self) -> None:
        self.server.should_exit = True

    def describe(self) -> list[str]:
        return [f"CRM        {self.url}"]
