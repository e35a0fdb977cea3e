"""A batch of bridge events pauses the cyclic garbage collector while it runs and leaves no reference cycles behind:
its rows are freed by reference counting when the batch ends (calls.actions._collector_paused, _Batch.release)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from callcenter import wire
from callcenter.calls import actions
from callcenter.calls.models import Call, CallLeg
from callcenter.resources.models import CallCenterSettings

from .screen_support import NowEvents

pytestmark = pytest.mark.django_db


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def _answered_call(call_id: str) -> list[wire.Event]:
    e = NowEvents(call_id)
    return [e.ringing("100", 0, number="2101234567"), e.answered("100", 2), e.ended("100", 30)]


def test_a_batch_runs_without_the_collector_and_turns_it_back_on(alice, asterisk, phone_call_type, collector_on,
                                                                  monkeypatch):
    asterisk.incoming_activity_type = phone_call_type
    asterisk.save()
    seen: list[bool] = []
    apply = actions._Batch.apply

    def watched(self: actions._Batch, events: list[wire.Event]) -> None:
        seen.append(gc.isenabled())
        apply(self, events)

    monkeypatch.setattr(actions._Batch, "apply", watched)
    receipt = actions.receive_events(None, _answered_call("gc.1"))
    assert receipt.accepted == 3 and seen == [False]
    assert gc.isenabled()
    assert Call.objects.get(pbx_call_id="gc.1").activity is not None


def test_a_collector_turned_off_by_someone_else_stays_off(alice, asterisk):
    gc.disable()
    try:
        actions.receive_events(None, _answered_call("gc.2"))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_released_batch_leaves_no_cycles_among_its_rows(alice, asterisk, phone_call_type, collector_on):
    asterisk.incoming_activity_type = phone_call_type
    asterisk.save()
    events = _answered_call("gc.3")
    batch = actions._Batch(actions._Context.load(), None, events)
    batch.apply(events)
    leg = batch.legs[("gc.3", "100")]
    call = leg.call
    assert call is not None and call.leg is leg and call.activity is not None  # the cycles a batch makes
    rows = [weakref.ref(leg), weakref.ref(call), weakref.ref(call.activity)]
    gc.disable()  # only reference counting may free them now
    try:
        batch.release()
        del batch, leg, call
        assert [row() for row in rows] == [None, None, None]
    finally:
        gc.enable()
    assert CallLeg.objects.get(pbx_call_id="gc.3").call_id == Call.objects.get(pbx_call_id="gc.3").pk
    assert CallCenterSettings.load().incoming_activity_type == phone_call_type
