"""POST /bridge/v1/events: signed, idempotent, and clear about what is wrong."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command

from callcenter import wire
from callcenter.calls.models import Bridge, Call, ProcessedEvent

from .conftest import SECRET, Events

pytestmark = pytest.mark.django_db
URL = "/bridge/v1/events"


def _post(client, body: bytes, *, bridge_id: str = "office", secret: str = SECRET, at: float | None = None,
          signature: str | None = None):
    headers = {wire.BRIDGE_HEADER: bridge_id}
    headers[wire.SIGNATURE_HEADER] = signature if signature is not None else wire.sign(
        secret, body, int(time.time() if at is None else at)
    )
    return client.post(URL, body, content_type="application/json", headers=headers)


def _batch(*events: wire.Event, bridge_id: str = "office") -> bytes:
    return wire.encode(wire.EventBatch(bridge_id=bridge_id, events=list(events)))


def test_a_signed_batch_is_stored_once_and_acknowledged(client, bridge, alice, asterisk):
    e = Events()
    body = _batch(e.ringing("100", 0), e.answered("100", 2), e.ended("100", 4))
    first = _post(client, body)
    again = _post(client, body)
    assert first.status_code == again.status_code == 200
    assert wire.decode_receipt(first.content) == wire.BatchReceipt(accepted=3, duplicates=0)
    assert wire.decode_receipt(again.content) == wire.BatchReceipt(accepted=0, duplicates=3)
    assert Call.objects.count() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": "another-secret-of-enough-length"}, "signature does not match"),
        ({"bridge_id": "nobody"}, "no active bridge 'nobody'"),
        ({"at": time.time() - 3600}, "away from this clock"),
        ({"signature": "nonsense"}, "malformed"),
        ({"signature": ""}, "missing X-Callcenter-Signature"),
    ],
)
def test_a_badly_signed_request_is_refused_with_401_and_stores_nothing(client, bridge, alice, asterisk, kwargs,
                                                                       message):
    response = _post(client, _batch(Events().ringing("100", 0)), **kwargs)
    assert response.status_code == 401
    assert response.json()["error_id"] == "unauthenticated"
    assert message in response.json()["message"]
    assert SECRET not in response.content.decode()
    assert ProcessedEvent.objects.count() == 0


def test_an_inactive_bridge_is_refused(client, bridge, alice, asterisk):
    Bridge.objects.filter(pk=bridge.pk).update(active=False)
    assert _post(client, _batch(Events().ringing("100", 0))).status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not valid JSON"),
        (b'{"bridge_id": "office", "events": [{"type": "call.exploded"}]}', "invalid event batch"),
        (b'{"bridge_id": "office", "events": [{"type": "call.ringing", "event_id": "x"}]}', "occurred_at"),
        (b'{"bridge_id": "office", "events": [], "v": 99}', "schema version 99"),
    ],
)
def test_a_malformed_batch_gets_400_naming_the_problem(client, bridge, body, message):
    response = _post(client, body)
    assert response.status_code == 400
    assert response.json()["error_id"] == "invalid_batch"
    assert message in response.json()["message"]


def test_a_batch_signed_by_one_bridge_cannot_speak_for_another(client, bridge):
    Bridge.objects.create(bridge_id="other", secret="other-secret-of-enough-length")
    response = _post(client, _batch(Events().ringing("100", 0), bridge_id="other"))
    assert response.status_code == 400
    assert "signed by 'office'" in response.json()["message"]


def test_an_oversized_batch_gets_413(client, bridge, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = _post(client, b"x" * 5000)
    assert response.status_code == 413
    assert response.json()["error_id"] == "too_large"


def test_only_post_is_allowed(client, bridge):
    assert client.get(URL).status_code == 405


def test_a_hostile_caller_name_is_stored_as_text(client, bridge, alice, asterisk):
    hostile = "<img src=x onerror=alert(1)>"
    _post(client, _batch(Events().ringing("100", 0, name=hostile)))
    assert Call.objects.get().caller_name == hostile


def test_add_bridge_prints_a_new_secret_that_signs_requests(client, alice, asterisk, tmp_path):
    out = io.StringIO()
    call_command("add_bridge", "desk-alice", stdout=out)
    secret = out.getvalue().strip().splitlines()[-1]
    assert len(secret) >= 32
    response = _post(client, _batch(Events().ringing("100", 0), bridge_id="desk-alice"), bridge_id="desk-alice",
                     secret=secret)
    assert response.status_code == 200
    path = tmp_path / "secret"
    call_command("add_bridge", "desk-alice", "--secret-file", str(path), stdout=io.StringIO())
    assert path.read_text().strip() != secret
    assert oct(path.stat().st_mode & 0o777) == "0o600"
