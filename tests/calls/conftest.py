from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from callcenter import wire
from callcenter.activities.models import ActivityKind, ActivityType
from callcenter.calls.models import Bridge
from callcenter.resources.models import CallCenterSettings, PhoneSystem

from .screen_support import bridge_listener  # noqa: F401 - a fixture for the screen's command tests

T0 = 1_795_632_434.0
SECRET = "s3cret-bridge-token-for-tests-only"


@pytest.fixture
def asterisk(cc_settings: CallCenterSettings) -> CallCenterSettings:
    cc_settings.phone_system = PhoneSystem.ASTERISK
    cc_settings.save()
    return cc_settings


@pytest.fixture
def phone_call_type(db: None) -> ActivityType:
    return ActivityType.objects.create(name="Phone call", kind=ActivityKind.PHONE_CALL)


@pytest.fixture
def sale_type(db: None) -> ActivityType:
    return ActivityType.objects.create(name="Sale opportunity", kind=ActivityKind.SALE_OPPORTUNITY)


@pytest.fixture
def bridge(db: None) -> Bridge:
    return Bridge.objects.create(bridge_id="office", name="Office PBX", secret=SECRET)


class Events:
    """Builds wire events for one call, with stable ids and times relative to T0."""

    def __init__(self, call_id: str = "1795632434.0") -> None:
        self.call_id = call_id
        self._seq = itertools.count()

    def _common(self, ext: str, at: float) -> dict[str, Any]:
        return {
            "event_id": f"t:{self.call_id}:{ext}:{next(self._seq)}",
            "occurred_at": T0 + at,
            "call_id": self.call_id,
            "extension": ext,
        }

    def ringing(self, ext: str, at: float = 0, number: str = "00302101234567", name: str = "",
                direction: wire.Direction = wire.Direction.INBOUND, **extra: Any) -> wire.CallRinging:
        return wire.CallRinging(**self._common(ext, at), direction=direction, remote_number=number,
                                remote_name=name, **extra)

    def answered(self, ext: str, at: float) -> wire.CallAnswered:
        return wire.CallAnswered(**self._common(ext, at))

    def transferred(self, ext: str, at: float, target: str) -> wire.CallTransferred:
        return wire.CallTransferred(**self._common(ext, at), target=target, kind=wire.TransferKind.BLIND)

    def ended(self, ext: str, at: float, **extra: Any) -> wire.CallEnded:
        return wire.CallEnded(**self._common(ext, at), **extra)


@pytest.fixture
def events() -> Callable[..., Events]:
    return Events
