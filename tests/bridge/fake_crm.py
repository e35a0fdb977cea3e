"""A small CRM stand-in for the delivery tests: a real HTTP/1.1 server (asyncio streams + h11) whose answer to each
request is chosen by the test, and a relay that sits in front of the real CRM and can misbehave for a while.

Behaviours (``FakeCrm.script``: one per request, then ``FakeCrm.then`` for every request after):
  "ok"        verify the signature, store new event ids, answer a BatchReceipt (accepted / duplicates)
  "ok-lost"   store like "ok", then close the connection without answering (the CRM committed, the bridge never heard)
  "500"       HTTP 500 with a JSON error
  "garbage"   HTTP 200 with an HTML page
  "wrong-json" HTTP 200 with JSON that is not a receipt
  "short"     HTTP 200 with a receipt counting one event too few
  "hang"      never answer
  "close"     close the connection without answering
  "401"       HTTP 401 as the real CRM words it
A batch containing an id in ``FakeCrm.refuse_ids`` gets 400 (like the CRM's invalid_batch) whatever the script says;
an id in ``FakeCrm.refuse_each`` is refused on its own in the receipt (the CRM's per-event answer) with its reason;
a batch containing an id in ``FakeCrm.poison_ids`` gets a 500 (a CRM bug that one event triggers) every time.
``GET /bridge/v1/health`` answers ``FakeCrm.health`` (200 by default; counted in ``health_probes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
import httpx

from callcenter import wire


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int


def _response(conn: h11.Connection, status: int, body: bytes, content_type: str = "application/json") -> bytes:
    data = conn.send(h11.Response(status_code=status, headers=[("Content-Type", content_type),
                                                                  ("Content-Length", str(len(body)))]))
    return data + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())


class _Server:
    """Accepts connections on 127.0.0.1 and hands every complete request to ``handle``."""

    def __init__(self, handle: Callable[[Request], object]) -> None:
        self._handle = handle
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        number = self.connections
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, reader, number)
                if request is None:
                    return
                outcome = self._handle(request)
                if asyncio.iscoroutine(outcome):
                    outcome = await outcome
                if outcome is None:  # close without answering
                    return
                assert isinstance(outcome, tuple)
                status, body, content_type = outcome
                writer.write(_response(conn, status, body, content_type))
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.RemoteProtocolError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader, number: int) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {name.decode().lower(): value.decode() for name, value in head.headers}
                return Request(head.method.decode(), head.target.decode(), headers, bytes(body), number)
            elif isinstance(event, h11.ConnectionClosed):
                return None


@dataclass
class FakeCrm:
    secret: str
    bridge_id: str = "office"
    script: list[str] = field(default_factory=list)
    then: str = "ok"
    refuse_ids: set[str] = field(default_factory=set)
    refuse_each: dict[str, str] = field(default_factory=dict)
    poison_ids: set[str] = field(default_factory=set)
    health: int = 200
    health_probes: int = 0
    stored: list[str] = field(default_factory=list)  # event ids in the order the CRM took them
    requests: list[Request] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)  # what each request got

    def __post_init__(self) -> None:
        self._server = _Server(self._handle)
        self._seen: set[str] = set()
        self.hung = asyncio.Event()

    async def start(self, port: int = 0) -> FakeCrm:
        await self._server.start(port)
        return self

    async def stop(self) -> None:
        await self._server.stop()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def connections(self) -> int:
        return self._server.connections

    def batch_sizes(self) -> list[int]:
        return [len(json.loads(request.body)["events"]) for request in self.requests]

    async def _handle(self, request: Request) -> tuple[int, bytes, str] | None:
        if request.method == "GET" and request.path == "/bridge/v1/health":
            self.health_probes += 1
            return self.health, json.dumps({"status": "ok" if self.health == 200 else "down"}).encode(), "a/json"
        self.requests.append(request)
        behaviour = self.script.pop(0) if self.script else self.then
        try:
            wire.verify(self.secret, request.headers.get(wire.SIGNATURE_HEADER.lower()), request.body, now=time.time())
        except wire.AuthError as exc:
            behaviour = "401"
            reason = str(exc)
        else:
            reason = "signature does not match; check that both sides have the same bridge secret"
        if request.headers.get(wire.BRIDGE_HEADER.lower()) != self.bridge_id:
            behaviour = "401"
        batch = wire.decode_batch(request.body)
        ids = [event.event_id for event in batch.events]
        if behaviour not in ("401",) and self.refuse_ids & set(ids):
            behaviour = "400"
        if behaviour not in ("401",) and self.poison_ids & set(ids):
            behaviour = "500"
        self.answers.append(behaviour)
        if behaviour in ("ok", "ok-lost", "short"):
            accepted = duplicates = 0
            refused = []
            for index, event_id in enumerate(ids):
                if event_id in self.refuse_each:
                    refused.append(wire.RefusedEvent(index=index, event_id=event_id, reason=self.refuse_each[event_id]))
                elif event_id in self._seen:
                    duplicates += 1
                else:
                    self._seen.add(event_id)
                    self.stored.append(event_id)
                    accepted += 1
            if behaviour == "ok-lost":
                return None
            if behaviour == "short":
                accepted -= 1
            receipt = wire.BatchReceipt(accepted=accepted, duplicates=duplicates, refused=refused)
            return 200, wire.encode(receipt), "application/json"
        if behaviour == "500":
            return 500, b'{"error_id": "server_error", "message": "database is locked"}', "application/json"
        if behaviour in ("502", "503"):
            return int(behaviour), b"<html>Bad Gateway</html>", "text/html"
        if behaviour == "garbage":
            return 200, b"<html><body>Bad gateway, try later</body></html>", "text/html"
        if behaviour == "wrong-json":
            return 200, b'{"status": "ok"}', "application/json"
        if behaviour == "hang":
            self.hung.set()
            await asyncio.Event().wait()
        if behaviour == "close":
            return None
        if behaviour == "401":
            body = json.dumps({"error_id": "unauthenticated", "message": reason}).encode()
            return 401, body, "application/json"
        if behaviour == "400":
            message = f"invalid event batch: {sorted(self.refuse_ids)}"
            return 400, json.dumps({"error_id": "invalid_batch", "message": message}).encode(), "application/json"
        raise AssertionError(f"unknown behaviour {behaviour!r}")


class FlakyRelay:
    """Sits in front of the real CRM: the first requests get ``script`` answers ("500", "garbage", "close"), later
    ones are forwarded as they are."""

    def __init__(self, target: str, script: list[str]) -> None:
        self.target = target.rstrip("/")
        self.script = list(script)
        self.answers: list[str] = []
        self._server = _Server(self._handle)
        self._client = httpx.AsyncClient(timeout=60)

    async def start(self) -> FlakyRelay:
        await self._server.start()
        return self

    async def stop(self) -> None:
        await self._server.stop()
        await self._client.aclose()

    @property
    def url(self) -> str:
        return self._server.url

    async def _handle(self, request: Request) -> tuple[int, bytes, str] | None:
        behaviour = self.script.pop(0) if self.script else "forward"
        self.answers.append(behaviour)
        if behaviour == "500":
            return 500, b"Internal Server Error", "text/plain"
        if behaviour == "garbage":
            return 200, b"\x00\xffnot json at all", "application/octet-stream"
        if behaviour == "close":
            return None
        headers = {name: value for name, value in request.headers.items()
                   if name in ("content-type", wire.BRIDGE_HEADER.lower(), wire.SIGNATURE_HEADER.lower())}
        with contextlib.suppress(httpx.HTTPError):
            answer = await self._client.post(self.target + request.path, content=request.body, headers=headers)
            return answer.status_code, answer.content, answer.headers.get("content-type", "application/json")
        return 502, b"relay could not reach the CRM", "text/plain"
