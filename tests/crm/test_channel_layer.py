"""The channel layer the settings make from CALLCENTER_REDIS_URL (several CRM processes, the screens on any of them):
a screen's consumer waits for its next push with channels_redis's blocking pop, which must never outlast the socket
read that carries it, or the consumer dies and the screen's WebSocket drops (proof/scale_out.py saw it: screens on
the second process closed "no close frame received or sent" while the first process was down and nothing came)."""

from __future__ import annotations

import runpy
import uuid
from typing import Any

import pytest
import redis
from channels_redis.core import RedisChannelLayer
from channels_redis.utils import create_pool

from callcenter.crm import settings as settings_module

REDIS_URL = "redis://127.0.0.1:6379/14"


def settings_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """callcenter.crm.settings as a process started with ``env`` reads it (a fresh copy of the module)."""
    monkeypatch.setenv("CALLCENTER_SECRET_KEY", "channel-layer-tests-key-" + "0" * 32)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(settings_module.__file__)


def redis_layer(monkeypatch: pytest.MonkeyPatch) -> RedisChannelLayer:
    layer = settings_with(monkeypatch, CALLCENTER_REDIS_URL=REDIS_URL)["CHANNEL_LAYERS"]["default"]
    assert layer["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    return RedisChannelLayer(**layer["CONFIG"])


def test_a_screens_socket_read_outlasts_the_layers_blocking_wait_for_its_next_push(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = redis_layer(monkeypatch)

    connection = create_pool(layer.hosts[0]).make_connection()  # its settings only; nothing is connected

    assert connection.socket_timeout is not None  # a Redis that stops answering is still noticed
    assert connection.socket_timeout > layer.brpop_timeout


async def test_a_push_goes_through_the_real_redis_with_these_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}); start it (service redis-server start)")
    layer = redis_layer(monkeypatch)
    channel = await layer.new_channel()
    group = f"resource-test-{uuid.uuid4().hex}"
    try:
        await layer.group_add(group, channel)
        await layer.group_send(group, {"type": "call.changed", "number": "2101234567"})

        assert await layer.receive(channel) == {"type": "call.changed", "number": "2101234567"}
    finally:
        await layer.group_discard(group, channel)
        await layer.flush()
