"""Hypothesis fuzz of POST /bridge/v1/events (issue 11): hostile headers and bodies, and signed random bodies that get
past authentication. Whatever comes in: never a 5xx, never a traceback in the log, nothing stored by a refused
request, and a 200's receipt accounts for every event of the batch (accepted + duplicates + refused)."""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from callcenter import wire
from callcenter.calls.models import ProcessedEvent

from .conftest import SECRET

pytestmark = pytest.mark.django_db
URL = "/bridge/v1/events"
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NOW = time.time()

_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_hostile_numbers = st.sampled_from([1e300, -1e300, -5, 0, 5.0, 10**400, 2**63, -(2**63), NOW + 3 * 86_400, NOW,
                                    NOW - 60, float("inf"), float("nan"), 1e-300, 946_684_799.9])
_hostile_text = st.sampled_from(["", "\x00", "a\x00b", "x" * 10_000, "<script>alert(1)</script>", "'; DROP TABLE x;--",
                                 "\u202e", "\ud7ff", "Νίκος", "100", "office"]) | st.text(max_size=50)


@st.composite
def _event(draw: st.DrawFn) -> Any:
    """A plausible wire event, with some of its fields replaced by hostile or random values (or none at all)."""
    index = draw(st.integers(0, 5))
    kind = draw(st.sampled_from(["call.ringing", "call.answered", "call.transferred", "call.ended", "agent.state",
                                 "bridge.link", "bridge.calls", "call.exploded"]))
    event: dict[str, Any] = {
        "type": kind, "event_id": f"fz:{index}:{kind}", "occurred_at": NOW - 100 + index,
        "call_id": f"call-{index % 2}", "extension": draw(st.sampled_from(["100", "101", "200"])),
        "direction": "in", "target": "101", "kind": "blind", "phone_system": "asterisk", "pbx_connected": True,
        "gone_at": NOW - 50,
    }
    for key in draw(st.lists(st.sampled_from(sorted(event) + ["v", "legs", "extensions", "remote_name", "cause",
                                                                "remote_number", "dnd", "hung_up_by"]),
                             max_size=draw(st.sampled_from([0, 0, 1, 2]))),):
        event[key] = draw(_hostile_numbers | _hostile_text | _json)
    if draw(st.integers(0, 5)) == 0:
        event.pop(draw(st.sampled_from(sorted(event))), None)
    return event


def _encode(value: Any) -> bytes:
    try:
        return msgspec.json.encode(value)
    except (OverflowError, TypeError, ValueError, msgspec.EncodeError):
        return b'{"bridge_id": "office", "events": []}'


@st.composite
def _signed_body(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["events", "events", "events", "random-json", "bytes", "utf8-broken"]))
    if shape == "bytes":
        return draw(st.binary(max_size=300))
    if shape == "random-json":
        return _encode(draw(_json))
    envelope: dict[str, Any] = {"bridge_id": draw(st.sampled_from(["office"] * 6 + ["other", ""])),
                                "events": draw(st.lists(_event(), max_size=6))}
    if draw(st.integers(0, 5)) == 0:
        envelope[draw(st.sampled_from(["v", "bridge_id", "events", "extra"]))] = draw(_hostile_numbers | _json)
    body = _encode(envelope)
    if shape == "utf8-broken" and len(body) > 2:
        cut = draw(st.integers(1, len(body) - 1))
        body = body[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + body[cut:]
    return body


def _check(response: Any, before: int, caplog: pytest.LogCaptureFixture, batch: bytes) -> None:
    assert response.status_code < 500, response.content[:300]
    stored = ProcessedEvent.objects.count() - before
    event(f"HTTP {response.status_code}" + (", stored some" if stored else ""))
    if response.status_code != 200:
        assert stored == 0
        assert response.json()["error_id"] in ("unauthenticated", "invalid_batch", "too_large", "method_not_allowed")
    else:
        receipt = wire.decode_receipt(response.content)
        events = msgspec.json.decode(batch)["events"]
        assert receipt.accepted + receipt.duplicates + len(receipt.refused) == len(events)
        assert stored <= receipt.accepted
        event("some refused" if receipt.refused else "none refused")
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in caplog.text


@FUZZ
@given(
    bridge_id=st.sampled_from(["office", "OFFICE", "", "x" * 300, "off\x00ice", "nobody"]) | st.text(max_size=20),
    signature=st.one_of(
        st.text(max_size=100),
        st.builds(lambda t, v: f"t={t},v1={v}", _hostile_numbers.map(str) | st.text(max_size=20),
                  st.text(alphabet="0123456789abcdefABCDEFg", max_size=70)),
        st.sampled_from(["t=1" + "0" * 400 + ",v1=00", "t=" + "9" * 5000, "t=1,t=2,v1=00", ",,,", "=", "t=,v1="]),
    ),
    body=st.binary(max_size=200),
)
def test_random_headers_and_bodies_are_4xx_and_store_nothing(client, bridge, caplog, bridge_id, signature, body):
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    before = ProcessedEvent.objects.count()
    headers = {wire.BRIDGE_HEADER: bridge_id.replace("\n", " ").replace("\r", " "),
               wire.SIGNATURE_HEADER: signature.replace("\n", " ").replace("\r", " ")}
    response = client.post(URL, body, content_type="application/json", headers=headers)
    assert response.status_code in (400, 401), response.content[:300]
    assert ProcessedEvent.objects.count() == before
    assert not [r for r in caplog.records if r.exc_info] and "Traceback" not in caplog.text


@FUZZ
@given(body=_signed_body())
def test_signed_random_bodies_never_give_a_5xx(client, bridge, alice, asterisk, caplog, body):
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    before = ProcessedEvent.objects.count()
    headers = {wire.BRIDGE_HEADER: "office", wire.SIGNATURE_HEADER: wire.sign(SECRET, body, int(time.time())),
               wire.RECEIPT_HEADER: wire.PER_EVENT_RECEIPT}
    response = client.post(URL, body, content_type="application/json", headers=headers)
    _check(response, before, caplog, body)
