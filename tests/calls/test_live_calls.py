"""``LiveCalls``: at every (re)connect the bridge says which legs the PBX still has; the CRM closes every other open
leg of the extensions it covers, whatever the bridge remembers (a bridge killed and restarted remembers nothing),
at the last moment the bridge knew the PBX was alive. Both ways of applying events (a batch, one at a time) agree."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from callcenter import wire
from callcenter.calls.actions import GONE_CAUSE_TEXT, gone_legs, receive_event, receive_events
from callcenter.calls.models import Call, CallKind, CallLeg, CallState, ProcessedEvent

from .conftest import T0, Events

pytestmark = pytest.mark.django_db

Apply = Callable[[Sequence[wire.Event]], None]


def _as_batch(events: Sequence[wire.Event]) -> None:
    receive_events(None, events)


def _one_by_one(events: Sequence[wire.Event]) -> None:
    for event in events:
        assert receive_event(None, event) in ("accepted", "duplicate")


@pytest.fixture(params=[_as_batch, _one_by_one], ids=["batch", "one-by-one"])
def apply(request: pytest.FixtureRequest) -> Apply:
    return request.param  # type: ignore[no-any-return]


def live(at: float, *legs: tuple[str, str], gone_at: float, extensions: tuple[str, ...] = ()) -> wire.LiveCalls:
    return wire.LiveCalls(event_id=f"live:{at}", occurred_at=T0 + at, extensions=extensions,
                          legs=tuple(wire.LiveLeg(call_id=call_id, extension=ext) for call_id, ext in legs),
                          gone_at=T0 + gone_at)


def test_an_answered_call_the_pbx_no_longer_has_ends_when_the_pbx_was_last_seen(alice, asterisk, apply):
    e = Events()
    apply([e.ringing("100", 0), e.answered("100", 2)])
    apply([live(60, gone_at=6)])
    call = Call.objects.get()
    assert (call.state, call.kind, call.duration, call.reconciled) == (CallState.ENDED, CallKind.INCOMING, 4, True)
    assert call.ended_at.timestamp() == T0 + 6
    assert CallLeg.objects.get().ended_at.timestamp() == T0 + 6


def test_a_ringing_call_the_pbx_no_longer_has_is_missed(alice, asterisk, apply):
    e = Events()
    apply([e.ringing("100", 0)])
    apply([live(30, gone_at=5)])
    call = Call.objects.get()
    assert (call.state, call.kind, call.duration) == (CallState.ENDED, CallKind.MISSED, 0)


def test_live_legs_and_legs_of_other_extensions_stay_open(alice, bob, asterisk, apply):
    talking, elsewhere, gone = Events("c-live"), Events("c-bob"), Events("c-gone")
    apply([talking.ringing("100", 0), talking.answered("100", 1), elsewhere.ringing("101", 0),
           gone.ringing("100", 2), gone.answered("100", 3)])
    apply([live(60, ("c-live", "100"), gone_at=10, extensions=("100",))])
    states = dict(Call.objects.values_list("pbx_call_id", "state"))
    assert states == {"c-live": CallState.UP, "c-bob": CallState.RINGING, "c-gone": CallState.ENDED}


def test_an_end_is_never_before_the_leg_began_nor_its_answer(alice, asterisk, apply):
    e = Events()
    apply([e.ringing("100", 0), e.answered("100", 20)])
    apply([live(60, gone_at=5)])  # the bridge last saw the PBX before this call was answered (clocks apart)
    call = Call.objects.get()
    assert call.ended_at == call.answered_at and call.duration == 0


def test_an_ended_call_is_not_touched_and_the_list_is_taken_once(alice, asterisk, apply):
    e = Events()
    apply([e.ringing("100", 0), e.answered("100", 1), e.ended("100", 9)])
    before = Call.objects.values_list("ended_at", "duration", "reconciled").get()
    apply([live(60, gone_at=5)])
    apply([live(60, gone_at=5)])  # redelivered
    assert Call.objects.values_list("ended_at", "duration", "reconciled").get() == before
    assert ProcessedEvent.objects.filter(event_type="bridge.calls").count() == 1


def test_a_leg_that_began_after_the_list_was_taken_is_not_closed_by_it(alice, asterisk, apply):
    e = Events()
    apply([live(10, gone_at=5), e.ringing("100", 20)])
    assert Call.objects.get().state == CallState.RINGING


def test_later_events_of_a_closed_leg_in_the_same_batch_still_apply(alice, asterisk):
    e = Events()
    receive_events(None, [e.ringing("100", 0), e.answered("100", 1)])
    receive_events(None, [live(30, gone_at=4), e.ended("100", 40, hung_up_by=wire.HungUpBy.AGENT)])
    leg = CallLeg.objects.get()
    assert leg.ended_at.timestamp() == T0 + 4  # the earliest end wins
    assert Call.objects.get().duration == 3


def test_the_reconciled_end_says_why(alice, asterisk):
    e = Events()
    receive_events(None, [e.ringing("100", 0)])
    [end] = gone_legs(live(30, gone_at=4))
    assert (end.reconciled, end.cause_text, end.call_id, end.extension) == (True, GONE_CAUSE_TEXT, e.call_id, "100")
