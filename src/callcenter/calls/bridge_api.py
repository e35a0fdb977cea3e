"""The CRM's endpoints for bridges: ``POST /bridge/v1/events`` takes a signed batch of wire events;
``GET /bridge/v1/health`` says whether the CRM can store them.

Answers of /events (JSON): 200 with a BatchReceipt that answers per event (accepted, duplicates, and ``refused``: each
event that is invalid on its own, with its position, id and reason; a bridge that does not send
``X-Callcenter-Receipt: per-event`` gets a 400 ``invalid_batch`` instead, as before that field existed);
401 ``unauthenticated`` (unknown or inactive bridge, missing, malformed, stale or wrong signature); 400
``invalid_batch`` (the envelope is not the wire format, or not UTF-8; the message names the problem); 413
``too_large``; 405 for other methods. Errors carry a stable ``error_id`` and a message for people, and are logged as
one line (never a traceback). Every event is decoded and checked (schema, bounds, time range: wire.check_event) on
its own, so one bad event never fails its batch.

/health is unauthenticated and cheap: 200 ``{"status": "ok"}`` when the database answers, else 503; it shows no data
and no secret. The bridge polls it while deliveries fail, to resume as soon as the CRM is back.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from callcenter import wire
from callcenter.calls.actions import receive_events
from callcenter.calls.models import Bridge

log = logging.getLogger(__name__)

_MAX_BRIDGE_ID: Final = 200


def error(status: int, error_id: str, message: str, **details: object) -> JsonResponse:
    response = JsonResponse({"error_id": error_id, "message": message, "details": details}, status=status)
    # This module logs its own line for a refusal, saying why; Django's "Unauthorized: /bridge/v1/events" would be
    # a second line for the same request (django.utils.log.log_response skips a response marked so).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def authenticate(request: HttpRequest, body: bytes) -> Bridge:
    """The active bridge that signed ``body``; raises wire.AuthError saying what is wrong."""
    bridge_id = request.headers.get(wire.BRIDGE_HEADER, "")
    if not bridge_id:
        raise wire.AuthError(f"missing {wire.BRIDGE_HEADER} header")
    if len(bridge_id) > _MAX_BRIDGE_ID or not bridge_id.isprintable():
        raise wire.AuthError(
            f"{wire.BRIDGE_HEADER} is not a bridge id (at most {_MAX_BRIDGE_ID} printable characters)"
        )
    bridge = Bridge.objects.filter(bridge_id=bridge_id, active=True).first()
    if bridge is None:
        raise wire.AuthError(f"no active bridge {bridge_id[:100]!r}; add it with `callcenter add-bridge`")
    wire.verify(bridge.secret, request.headers.get(wire.SIGNATURE_HEADER), body, now=time.time())
    return bridge


def _client(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", ""))[:60]


@csrf_exempt  # bridges authenticate by signature, not by session cookie
def events(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return error(405, "method_not_allowed", "POST a signed event batch here")
    try:
        body = request.body
    except RequestDataTooBig:
        message = f"a batch may have at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
        log.warning("bridge request refused from %s: %s", _client(request), message)
        return error(413, "too_large", message)
    try:
        bridge = authenticate(request, body)
    except wire.AuthError as exc:
        log.warning("bridge request refused from %s: %s", _client(request), exc)
        return error(401, "unauthenticated", str(exc))
    try:
        batch = wire.decode_raw_batch(body)
    except wire.WireError as exc:
        log.warning("bridge %s sent an invalid batch: %s", bridge, exc)
        return error(400, "invalid_batch", str(exc))
    if batch.bridge_id != bridge.bridge_id:
        log.warning("bridge %s sent a batch that says it is from %r", bridge, batch.bridge_id)
        return error(
            400, "invalid_batch", f"batch says bridge {batch.bridge_id!r} but is signed by {bridge.bridge_id!r}"
        )
    now = time.time()
    valid: list[wire.Event] = []
    positions: dict[str, int] = {}
    refused: list[wire.RefusedEvent] = []
    for index, raw in enumerate(batch.events):
        try:
            event = wire.checked_event(bytes(raw), now)
        except wire.WireError as exc:
            refused.append(wire.RefusedEvent(index=index, event_id=wire.event_id_of(raw), reason=str(exc)[:500]))
            continue
        valid.append(event)
        positions.setdefault(event.event_id, index)
    receipt = receive_events(bridge, valid) if valid else None
    answer = receipt.as_wire(positions) if receipt is not None else wire.BatchReceipt(accepted=0, duplicates=0)
    if refused:
        answer = wire.BatchReceipt(
            accepted=answer.accepted, duplicates=answer.duplicates,
            refused=sorted([*refused, *answer.refused], key=lambda r: r.index),
        )
    if answer.refused:
        first = answer.refused[0]
        log.warning(
            "bridge %s: %d of %d events refused, the rest stored; first: event %r (#%d): %s",
            bridge, len(answer.refused), len(batch.events), first.event_id, first.index, first.reason,
        )
        if request.headers.get(wire.RECEIPT_HEADER) != wire.PER_EVENT_RECEIPT:
            # An older bridge cannot read `refused`: refuse the batch as a whole (the rest is stored all the same,
            # so its resending is harmless); it splits the batch down to the event and sets that one aside.
            return error(400, "invalid_batch", f"event {first.event_id!r} (#{first.index}): {first.reason}",
                         refused=len(answer.refused))
    if receipt is not None and receipt.failed:
        log.error("bridge %s: %d events could not be applied; see processed bridge events", bridge, receipt.failed)
    return HttpResponse(wire.encode(answer), content_type="application/json")


def health(request: HttpRequest) -> HttpResponse:
    """200 when the database answers, 503 otherwise; nothing else (no authentication, no data, no secrets)."""
    if request.method not in ("GET", "HEAD"):
        return error(405, "method_not_allowed", "GET this address")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        log.warning("health check: the database does not answer (%s)", type(exc).__name__)
        return JsonResponse({"status": "unavailable", "message": "the CRM's database does not answer"}, status=503)
    return JsonResponse({"status": "ok"})
