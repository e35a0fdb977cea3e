"""The codec and translator joined (the path of both the live connector and ``bridge replay``): times for messages
the PBX sent without a Timestamp."""

from __future__ import annotations

from callcenter import wire
from callcenter.bridge.connectors.ami.codec import encode_message
from callcenter.bridge.connectors.ami.pipeline import Pipeline

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


def dnd(state: str, timestamp: str | None = None) -> bytes:
    headers = [("Event", "DeviceStateChange")]
    if timestamp:
        headers.append(("Timestamp", timestamp))
    return encode_message([*headers, ("Device", "Custom:DND100"), ("State", state)])


def test_a_replay_times_untimed_messages_after_the_last_pbx_time_and_never_twice_the_same() -> None:
    stream = BANNER + dnd("BUSY", "1700000000.500000") + dnd("NOT_INUSE") + dnd("BUSY") + dnd("NOT_INUSE")
    first = Pipeline().receive(stream)
    second = Pipeline().receive(stream)
    assert first == second  # deterministic
    times = [event.occurred_at for event in first]
    assert times[0] == 1700000000.5
    assert times == sorted(times) and len(set(times)) == 4
    assert all(1700000000.5 <= t < 1700000000.501 for t in times)
    assert len({event.event_id for event in first}) == 4
    assert [event.dnd for event in first if isinstance(event, wire.AgentState)] == [True, False, True, False]


def test_live_bytes_without_timestamps_take_the_arrival_time() -> None:
    pipeline = Pipeline()
    assert pipeline.receive(BANNER, arrival_time=10.0) == []
    events = pipeline.receive(dnd("BUSY"), arrival_time=1700000123.25)
    assert [event.occurred_at for event in events] == [1700000123.25]
    assert pipeline.receive(b"") == [] and pipeline.closed
    assert pipeline.messages == 2  # the banner and the event
