"""A small AMI client for the simulator's tests: a real TCP socket, the shared codec, and a copy of every raw byte."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from callcenter.bridge.connectors.ami.codec import CLOSED, NEED_DATA, Action, AMIConnection, Message

SECRET = "s3cret-ami"  # the test PBX's secret for user "crm"


class AMIClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = AMIConnection("client")
        self.raw = bytearray()
        self.chunks: list[bytes] = []  # the reads as they arrived
        self.messages: list[Message] = []  # everything received, in order
        self.banner: Message | None = None
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> AMIClient:
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        await client.wait_for(lambda: client.banner is not None, what="the banner")
        return client

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                self.raw += data
                self.chunks.append(data)
                self.conn.receive_data(data)
                while True:
                    msg = self.conn.next_event()
                    if msg is NEED_DATA or msg is CLOSED:
                        break
                    assert isinstance(msg, Message)
                    if msg.kind == "banner":
                        self.banner = msg
                    else:
                        self.messages.append(msg)
                self._changed.set()
                if not data:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self.closed.set()
            self._changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 3.0, what: str = "a condition") -> None:
        async def loop() -> None:
            while not predicate():
                if self.closed.is_set() and not predicate():
                    raise ConnectionError(f"the connection closed while waiting for {what}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, name: str, **headers: str | list[str]) -> str:
        pairs: list[tuple[str, str]] = []
        for key, value in headers.items():
            for v in value if isinstance(value, list) else [value]:
                pairs.append((key, v))
        data = self.conn.send(Action(name, tuple(pairs)))
        self.writer.write(data)
        return self.conn.last_action_id

    def responses(self, action_id: str) -> list[Message]:
        return [m for m in self.messages if m.action_id == action_id]

    async def action(self, name: str, timeout: float = 3.0, **headers: str | list[str]) -> Message:
        """Send an action; return its response (after the whole event list, if it opens one)."""
        action_id = self.send(name, **headers)

        def complete() -> bool:
            got = self.responses(action_id)
            if not got:
                return False
            if got[0].event_list == "start":
                return any(m.event_list == "complete" for m in got)
            return True

        await self.wait_for(complete, timeout, what=f"the answer to {name}")
        return self.responses(action_id)[0]

    async def login(self, username: str = "crm", secret: str = SECRET) -> Message:
        return await self.action("Login", Username=username, Secret=secret)

    def events(self, name: str | None = None) -> list[Message]:
        return [m for m in self.messages if m.kind == "event" and (name is None or m.name == name)]

    async def wait_event(self, name: str, timeout: float = 3.0, **match: str) -> Message:
        def find() -> Message | None:
            for m in self.events(name):
                if all(m.get(k) == v for k, v in match.items()):
                    return m
            return None

        await self.wait_for(lambda: find() is not None, timeout, what=f"event {name} {match}")
        found = find()
        assert found is not None
        return found

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
