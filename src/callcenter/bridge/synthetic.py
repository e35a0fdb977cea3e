"""Synthetic call traffic as wire events, for the outbox benchmark, delivery tests and load checks.

A deterministic mix shaped like a small inbound call center whose calls ring a group of two agents (extensions 100 and
101, Alice and Bob of the demo data): per ten calls, six are answered by one of the two (5 events: two ringings, the
answer, two ends, the other leg "answered elsewhere"), three are outgoing (3 events) and one rings both and is missed
(4 events) -- 4.3 events per call, so 20 calls/s is about 86 events/s. Event ids are stable: the same (prefix, index)
always yields the same events, so a redelivery is recognisable as one. By default the calls' events are interleaved
by time, as a PBX reports them, so most ends and answers find their call stored by an earlier batch.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from typing import Final, TypedDict

from callcenter import wire

AGENTS: Final = ("100", "101")
T0: Final = 1_795_632_434.0


class _Common(TypedDict):
    event_id: str
    occurred_at: float
    call_id: str
    extension: str
    leg_id: str


def _remote_number(index: int) -> str:
    if index % 3 == 0:
        return f"69{index * 7919 % 100_000_000:08d}"  # Greek mobile
    return f"21{index * 104_729 % 100_000_000:08d}"  # Athens landline


def _shape(index: int) -> str:
    slot = index % 10
    if slot < 6:
        return "answered"
    if slot < 9:
        return "outgoing"
    return "missed"


def call_events(index: int, *, prefix: str = "syn", t0: float = T0, calls_per_second: float = 20.0) -> list[wire.Event]:
    """The events of call number ``index``, in the order the PBX reports them."""
    call_id = f"{prefix}-{index}"
    start = t0 + index / calls_per_second
    number = _remote_number(index)
    counter = iter(range(10))

    def common(ext: str, at: float) -> _Common:
        return {"event_id": f"{prefix}:{index}:{ext}:{next(counter)}", "occurred_at": start + at, "call_id": call_id,
                "extension": ext, "leg_id": f"{call_id}.{ext}"}

    shape = _shape(index)
    if shape == "outgoing":
        agent = AGENTS[index % 2]
        return [
            wire.CallRinging(**common(agent, 0), direction=wire.Direction.OUTBOUND, remote_number=number),
            wire.CallAnswered(**common(agent, 8)),
            wire.CallEnded(**common(agent, 95), cause=16, cause_text="Normal Clearing",
                           hung_up_by=wire.HungUpBy.AGENT),
        ]
    events: list[wire.Event] = [
        wire.CallRinging(**common(ext, 0), direction=wire.Direction.INBOUND, remote_number=number,
                         remote_name="Πελάτης" if index % 4 == 0 else "")
        for ext in AGENTS
    ]
    if shape == "missed":
        events += [
            wire.CallEnded(**common(ext, 20), cause=16, cause_text="Normal Clearing",
                           hung_up_by=wire.HungUpBy.REMOTE)
            for ext in AGENTS
        ]
        return events
    answerer, other = (AGENTS[0], AGENTS[1]) if index % 2 == 0 else (AGENTS[1], AGENTS[0])
    events += [
        wire.CallAnswered(**common(answerer, 3)),
        wire.CallEnded(**common(other, 3), cause=26, cause_text="Answered elsewhere",
                       hung_up_by=wire.HungUpBy.UNKNOWN, answered_elsewhere=True),
        wire.CallEnded(**common(answerer, 60), cause=16, cause_text="Normal Clearing",
                       hung_up_by=wire.HungUpBy.REMOTE),
    ]
    return events


def traffic(calls: int, *, start: int = 0, prefix: str = "syn", t0: float = T0, calls_per_second: float = 20.0,
            interleaved: bool = True) -> Iterator[wire.Event]:
    """The events of calls ``start`` .. ``start + calls - 1``. Interleaved (the default), they come in the order
    the PBX reports them, by time: a call's end arrives a minute or more after its ringing, after the ringing of the
    ~1,000 calls that started meanwhile. Otherwise call after call."""
    if not interleaved:
        for index in range(start, start + calls):
            yield from call_events(index, prefix=prefix, t0=t0, calls_per_second=calls_per_second)
        return
    waiting: list[tuple[float, int, wire.Event]] = []
    order = 0
    for index in range(start, start + calls):
        call_start = t0 + index / calls_per_second
        while waiting and waiting[0][0] <= call_start:
            yield heapq.heappop(waiting)[2]
        for event in call_events(index, prefix=prefix, t0=t0, calls_per_second=calls_per_second):
            heapq.heappush(waiting, (event.occurred_at, order, event))
            order += 1
    while waiting:
        yield heapq.heappop(waiting)[2]


def events_per_call(index: int) -> int:
    return {"answered": 5, "outgoing": 3, "missed": 4}[_shape(index)]


def calls_for_events(events: int) -> int:
    """The fewest calls whose traffic has at least ``events`` events."""
    calls = total = 0
    while total < events:
        total += events_per_call(calls)
        calls += 1
    return calls


def expected_call_rows(calls: int, *, start: int = 0) -> Counter[str]:
    """The Call rows (by type) the CRM's rules make of these calls with the demo settings (every leg that rang is a
    row: an answered group call is one incoming row and one missed row)."""
    rows: Counter[str] = Counter()
    for index in range(start, start + calls):
        shape = _shape(index)
        if shape == "answered":
            rows["incoming"] += 1
            rows["missed"] += 1
        elif shape == "outgoing":
            rows["outgoing"] += 1
        else:
            rows["missed"] += 2
    return rows
