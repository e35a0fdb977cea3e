"""The CRM's endpoint for bridges: ``POST /bridge/v1/events`` takes a signed batch of wire events.

Answers (JSON): 200 with a BatchReceipt; 401 ``unauthenticated`` (unknown or inactive bridge, missing, stale or
wrong signature); 400 ``invalid_batch`` (not the wire format; the message names the field); 413 ``too_large``;
405 for other methods. Errors carry a stable ``error_id`` and a message for people. The bridge retries anything but
a 200, except 400/413, which it reports and sets aside.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from callcenter import wire
from callcenter.calls.actions import receive_events
from callcenter.calls.models import Bridge

log = logging.getLogger(__name__)


def error(status: int, error_id: str, message: str, **details: object) -> JsonResponse:
    return JsonResponse({"error_id": error_id, "message": message, "details": details}, status=status)


def authenticate(request: HttpRequest, body: bytes) -> Bridge:
    """The active bridge that signed ``body``; raises wire.AuthError saying what is wrong."""
    bridge_id = request.headers.get(wire.BRIDGE_HEADER, "")
    if not bridge_id:
        raise wire.AuthError(f"missing {wire.BRIDGE_HEADER} header")
    bridge = Bridge.objects.filter(bridge_id=bridge_id[:100], active=True).first()
    if bridge is None:
        raise wire.AuthError(f"no active bridge {bridge_id[:100]!r}; add it with `callcenter add-bridge`")
    wire.verify(bridge.secret, request.headers.get(wire.SIGNATURE_HEADER), body, now=time.time())
    return bridge


@csrf_exempt  # bridges authenticate by signature, not by session cookie
def events(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return error(405, "method_not_allowed", "POST a signed event batch here")
    try:
        body = request.body
    except RequestDataTooBig:
        return error(413, "too_large", f"a batch may have at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")
    try:
        bridge = authenticate(request, body)
    except wire.AuthError as exc:
        log.warning("bridge request refused from %s: %s", request.META.get("REMOTE_ADDR"), exc)
        return error(401, "unauthenticated", str(exc))
    try:
        batch = wire.decode_batch(body)
    except wire.WireError as exc:
        log.warning("bridge %s sent an invalid batch: %s", bridge, exc)
        return error(400, "invalid_batch", str(exc))
    if batch.bridge_id != bridge.bridge_id:
        return error(
            400, "invalid_batch", f"batch says bridge {batch.bridge_id!r} but is signed by {bridge.bridge_id!r}"
        )
    receipt = receive_events(bridge, batch.events)
    if receipt.failed:
        log.error("bridge %s: %d events could not be applied; see processed bridge events", bridge, receipt.failed)
    return HttpResponse(wire.encode(receipt.as_wire()), content_type="application/json")
