"""Bytes from an AMI connection -> wire events: the codec and the translator joined, with no I/O of its own.

The live connector and ``callcenter bridge replay`` both use this, so a replayed capture goes through exactly the
code that handled it live.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callcenter import wire
from callcenter.bridge.connectors.ami.codec import CLOSED, NEED_DATA, AMIConnection, Message
from callcenter.bridge.connectors.ami.translate import Translator, TranslatorConfig


@dataclass(slots=True)
class Pipeline:
    """Feed it the bytes of one AMI connection, in order; it returns the wire events they cause.

    ``arrival_time`` is the local time the bytes arrived (for messages without a ``Timestamp`` header); ``None``
    (replay) stands in the latest PBX ``Timestamp`` seen plus one microsecond per message since, so a replay is
    deterministic and two untimed messages never share a time (nor an AgentState event id).
    """

    config: TranslatorConfig = field(default_factory=TranslatorConfig)
    translator: Translator = field(init=False)
    connection: AMIConnection = field(init=False)
    messages: int = 0
    closed: bool = False
    _untimed: int = 0

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
            translator = self.translator
            pbx_time = translator.pbx_time
            when = pbx_time + (self._untimed + 1) * 1e-6 if arrival_time is None else arrival_time
            out.extend(translator.feed(message, when))
            self._untimed = 0 if translator.pbx_time != pbx_time else self._untimed + 1
        return out

