"""Bytes from an AMI connection -> wire events: the codec and the translator joined, with no I/O of its own.

The live connector and ``callcenter bridge replay`` both use this, so a replayed capture goes through exactly the
code that handled it live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from callcenter import wire
from callcenter.bridge.connectors.ami.codec import CLOSED, NEED_DATA, AMIConnection, Message
from callcenter.bridge.connectors.ami.translate import Translator, TranslatorConfig

BANNER_PREFIX = b"Asterisk Call Manager/"


@dataclass(slots=True)
class Pipeline:
    """Feed it the bytes of one AMI connection, in order; it returns the wire events they cause.

    ``arrival_time`` is the local time the bytes arrived (for messages without a ``Timestamp`` header); ``None``
    (replay) uses the last PBX ``Timestamp`` seen, so a replay is deterministic.
    """

    config: TranslatorConfig = field(default_factory=TranslatorConfig)
    translator: Translator = field(init=False)
    connection: AMIConnection = field(init=False)
    messages: int = 0
    closed: bool = False
    last_pbx_time: float = 0.0

    def __post_init__(self) -> None:
        self.translator = Translator(self.config)
        self.connection = AMIConnection("client")

    def receive(self, data: bytes, arrival_time: float | None = None) -> list[wire.Event]:
        """Events caused by ``data`` (``b""`` = the PBX closed the connection). Raises the codec's
        RemoteProtocolError only when the stream cannot be parsed any further."""
        self.connection.receive_data(data)
        out: list[wire.Event] = []
        while True:
            message = self.connection.next_event()
            if message is NEED_DATA:
                break
            if message is CLOSED:
                self.closed = True
                break
            assert isinstance(message, Message)
            self.messages += 1
            stamp = message.get("Timestamp")
            if stamp:
                try:
                    value = float(stamp)
                except ValueError:
                    value = math.nan
                if math.isfinite(value) and value > self.last_pbx_time:
                    self.last_pbx_time = value
            out.extend(self.translator.feed(message, self.last_pbx_time if arrival_time is None else arrival_time))
        return out
