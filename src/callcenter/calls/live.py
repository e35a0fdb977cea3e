"""Live pushes to browsers: leave only after commit, and each names its recipients.

Groups: ``resource-<id>`` (the resource's own screens) and ``administrators`` (every administrator's screen). A call
with no resource (an extension nobody owns) goes to administrators only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from callcenter.calls.models import Bridge, Call
from callcenter.resources.models import Resource

log = logging.getLogger(__name__)

ADMINISTRATORS = "administrators"


def resource_group(resource_id: int) -> str:
    return f"resource-{resource_id}"


def _send_on_commit(groups: Iterable[str], message: dict[str, Any]) -> None:
    targets = sorted(set(groups))

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        for group in targets:
            try:
                async_to_sync(layer.group_send)(group, message)
            except Exception:  # noqa: BLE001 - a push is best effort; the screen reloads on reconnect
                log.warning("live push to %s failed", group, exc_info=True)

    transaction.on_commit(send)


def call_changed(call: Call, *, new: bool) -> None:
    groups = [ADMINISTRATORS]
    if call.resource_id is not None:
        groups.append(resource_group(call.resource_id))
    _send_on_commit(
        groups,
        {"type": "call.changed", "call_id": call.pk, "new": new, "resource_id": call.resource_id},
    )


def agent_changed(resource: Resource) -> None:
    _send_on_commit(
        [resource_group(resource.pk)],
        {"type": "agent.changed", "resource_id": resource.pk, "busy": resource.pbx_busy},
    )


def bridge_changed(bridge: Bridge, *, extensions: Iterable[str]) -> None:
    resource_ids = Resource.objects.filter(extension__in=list(extensions)).values_list("pk", flat=True)
    _send_on_commit(
        [ADMINISTRATORS, *(resource_group(pk) for pk in resource_ids)],
        {"type": "bridge.changed", "bridge_id": bridge.pk, "connected": bridge.pbx_connected},
    )
