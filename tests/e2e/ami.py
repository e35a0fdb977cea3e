"""The browser tests' hand on the simulated PBX: a small blocking AMI client, logged in to the demo's simulator
with the demo's own AMI user and secret (var/demo-ami.secret), next to the bridge.

It needs nothing from the product but what any AMI client has: it rings an agent the way the simulator's fixture
drivers do (``Originate`` of ``Local/<ext>@from-pstn`` with the caller's id: an outside call comes in through the
trunk), hangs channels up, reads the AstDB (DND) and the channel list, and keeps every event the PBX sends (with the
PBX's own ``Timestamp``) so that a test waits on what the PBX did instead of on time.

One reader thread parses the stream into messages (a list of header dicts, in order); tests wait on them with a
predicate and a deadline.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

Message = dict[str, str]


@dataclass(frozen=True)
class Ring:
    """A call the test placed: what it asked for and when (the test's clock, seconds since the epoch)."""

    number: str
    to: str
    sent_at: float


class AmiError(AssertionError):
    pass


class Ami:
    def __init__(self, port: int, username: str, secret: str, *, host: str = "127.0.0.1") -> None:
        self._sock = socket.create_connection((host, port), timeout=10)
        self._sock.settimeout(None)
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self.messages: list[Message] = []
        self.closed = False
        banner = b""
        while not banner.endswith(b"\r\n"):
            chunk = self._sock.recv(1)
            if not chunk:
                raise AmiError("the simulated PBX closed the AMI connection before its banner")
            banner += chunk
        if not banner.startswith(b"Asterisk Call Manager/"):
            raise AmiError(f"not an AMI banner: {banner!r}")
        self._reader = threading.Thread(target=self._read, name="e2e-ami-reader", daemon=True)
        self._reader.start()
        reply = self.action("Login", Username=username, Secret=secret)
        if reply.get("Response") != "Success":
            raise AmiError(f"AMI login refused: {reply}")

    # ---- the wire -----------------------------------------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    block, buffer = buffer.split(b"\r\n\r\n", 1)
                    message: Message = {}
                    for line in block.decode("utf-8", "replace").split("\r\n"):
                        key, _, value = line.partition(":")
                        if key:
                            message.setdefault(key.strip(), value.strip())
                    with self._lock:
                        self.messages.append(message)
                        self._lock.notify_all()
        except OSError:
            pass
        finally:
            with self._lock:
                self.closed = True
                self._lock.notify_all()

    def _send(self, name: str, headers: dict[str, str]) -> str:
        action_id = f"e2e-{next(self._ids)}"
        lines = [f"Action: {name}", f"ActionID: {action_id}", *(f"{k}: {v}" for k, v in headers.items())]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    def wait_for(self, predicate: Callable[[Message], bool], what: str, *, since: int = 0,
                 seconds: float = 10.0) -> Message:
        """The first message from index ``since`` on that satisfies ``predicate``, waiting up to ``seconds``."""
        deadline = time.monotonic() + seconds
        index = since
        with self._lock:
            while True:
                while index < len(self.messages):
                    message = self.messages[index]
                    index += 1
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AmiError(f"the simulated PBX did not report {what} within {seconds} s")
                self._lock.wait(left)

    def mark(self) -> int:
        """Where the message list ends now: wait on what comes after it."""
        with self._lock:
            return len(self.messages)

    def action(self, name: str, **headers: str) -> Message:
        """Send an action; its Response."""
        since = self.mark()
        action_id = self._send(name, headers)
        return self.wait_for(lambda m: m.get("ActionID") == action_id and "Response" in m,
                             f"the response to {name}", since=since)

    def listing(self, name: str, item: str, **headers: str) -> list[Message]:
        """An action answered by a list of events (CoreShowChannels, DBGet): the items."""
        since = self.mark()
        action_id = self._send(name, headers)
        first = self.wait_for(lambda m: m.get("ActionID") == action_id and "Response" in m,
                              f"the response to {name}", since=since)
        if first.get("Response") != "Success":
            return []
        self.wait_for(lambda m: m.get("ActionID") == action_id and m.get("EventList") == "Complete",
                      f"the end of the {name} list", since=since)
        with self._lock:
            return [m for m in self.messages[since:] if m.get("ActionID") == action_id and m.get("Event") == item]

    def close(self) -> None:
        try:
            self._send("Logoff", {})
        except OSError:
            pass
        self._sock.close()
        self._reader.join(5)

    # ---- what the tests do ------------------------------------------------------------------------------------

    def ring(self, number: str, to: str = "100", *, name: str = "") -> Ring:
        """An outside caller ``number`` (caller name ``name``) calls ``to`` through the trunk; returns at once."""
        caller_id = f'"{name}" <{number}>' if name else f"<{number}>"
        sent_at = time.time()
        reply = self.action("Originate", Channel=f"Local/{to}@from-pstn", Context="from-pstn", Exten=to,
                            Priority="1", CallerID=caller_id, Async="true", Timeout="30000")
        if reply.get("Response") != "Success":
            raise AmiError(f"the simulated PBX refused to ring {to} from {number}: {reply}")
        return Ring(number=number, to=to, sent_at=sent_at)

    def ringing_event(self, ring: Ring, *, seconds: float = 10.0) -> Message:
        """The PBX's event of the agent's phone ringing for ``ring`` (its Timestamp is the PBX's own clock)."""
        return self.wait_for(
            lambda m: (m.get("Event") == "Newstate" and m.get("ChannelStateDesc") == "Ringing"
                       and m.get("Channel", "").startswith(f"PJSIP/{ring.to}-")
                       and m.get("ConnectedLineNum") == ring.number),
            f"phone {ring.to} ringing for {ring.number}", seconds=seconds)

    def channels(self) -> list[Message]:
        return self.listing("CoreShowChannels", "CoreShowChannel")

    def trunk_channel(self, number: str) -> str:
        """The name of the outside caller's channel (the trunk side) of a call from ``number``."""
        for channel in self.channels():
            if channel.get("Channel", "").startswith("PJSIP/trunk-") and channel.get("CallerIDNum") == number:
                return channel["Channel"]
        raise AmiError(f"no call from {number} on the simulated PBX")

    def caller_hangs_up(self, number: str) -> None:
        reply = self.action("Hangup", Channel=self.trunk_channel(number))
        if reply.get("Response") != "Success":
            raise AmiError(f"the simulated PBX did not hang up the call from {number}: {reply}")

    def hang_up_everything(self) -> None:
        self.action("Hangup", Channel="/./")

    def dnd(self, extension: str) -> bool:
        """Whether the PBX has Do Not Disturb on for ``extension`` (FreePBX's AstDB key DND/<ext>)."""
        found = self.listing("DBGet", "DBGetResponse", Family="DND", Key=extension)
        return bool(found) and found[0].get("Val", "").upper() == "YES"

    def clear_dnd(self, extension: str) -> None:
        self.action("DBDel", Family="DND", Key=extension)
