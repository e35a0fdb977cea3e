"""The live channel of the Call Center screen: /ws/callcenter/ through the real ASGI application (session cookie,
origin check, routing), with pushes made by the real rules (wire events through receive_events) and user actions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.conf import settings
from django.db import connections, transaction
from django.test import Client
from django.utils import timezone

from callcenter import wire
from callcenter.calls import actions
from callcenter.calls.actions import receive_events
from callcenter.calls.models import Call
from callcenter.contacts.actions import create_contact
from callcenter.crm.asgi import application
from callcenter.resources.models import PhoneSystem, Resource

from .screen_support import NowEvents, call_ended

pytestmark = pytest.mark.django_db(transaction=True)

XSS = "<img src=x onerror=alert(1)>"


class WebsocketCommunicator(ApplicationCommunicator):
    """A browser's WebSocket at the ASGI level (channels.testing needs daphne, which this project does not use)."""

    def __init__(self, app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        super().__init__(app, {
            "type": "websocket", "path": path, "raw_path": path.encode(), "query_string": b"", "headers": headers,
            "subprotocols": [], "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
        })

    async def connect(self, timeout: float = 1) -> tuple[bool, Any]:
        await self.send_input({"type": "websocket.connect"})
        response = await self.receive_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        return True, response.get("subprotocol")

    async def send_to(self, text_data: str) -> None:
        await self.send_input({"type": "websocket.receive", "text": text_data})

    async def send_json_to(self, data: Any) -> None:
        await self.send_to(json.dumps(data))

    async def receive_json_from(self, timeout: float = 1) -> Any:
        response = await self.receive_output(timeout)
        assert response["type"] == "websocket.send", response
        return json.loads(response["text"])

    async def disconnect(self, code: int = 1000, timeout: float = 1) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Iterator[None]:
    """A new in-memory layer for each test: its queues belong to the test's event loop."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
async def close_connections_of_the_sync_thread():
    """The database connections the consumer and the tests opened in asgiref's sync thread, closed before the test
    database is dropped (PostgreSQL refuses to drop a database in use)."""
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def on(cc_settings):
    cc_settings.phone_system = PhoneSystem.ASTERISK
    cc_settings.save()
    return cc_settings


def _session_cookie(resource: Resource | None) -> str:
    client = Client()
    if resource is not None:
        client.force_login(resource.user)
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return ""


async def _connect(resource: Resource | None, *, origin: str = "http://localhost") -> WebsocketCommunicator:
    cookie = await database_sync_to_async(_session_cookie)(resource)
    headers = [(b"origin", origin.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, "/ws/callcenter/", headers=headers)


async def _connected(resource: Resource) -> WebsocketCommunicator:
    communicator = await _connect(resource)
    connected, _code = await communicator.connect()
    assert connected
    return communicator


async def _pushes(communicator: WebsocketCommunicator) -> list[dict[str, Any]]:
    """Every message the screen was sent until it goes quiet."""
    received = []
    while not await communicator.receive_nothing(timeout=0.3):
        received.append(await communicator.receive_json_from())
    return received


async def test_anonymous_users_are_refused(db):
    communicator = await _connect(None)
    connected, _code = await communicator.connect()
    assert not connected


async def test_a_page_of_another_site_is_refused_even_with_the_users_cookie(alice):
    communicator = await _connect(alice, origin="http://evil.example")
    connected, _code = await communicator.connect()
    assert not connected


async def test_a_logged_in_user_who_is_not_a_resource_is_refused(db):
    from django.contrib.auth.models import User

    def make() -> str:
        client = Client()
        client.force_login(User.objects.create_user("dora", password="x" * 12))
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    cookie = await database_sync_to_async(make)()
    communicator = WebsocketCommunicator(application, "/ws/callcenter/",
                                         headers=[(b"origin", b"http://localhost"), (b"cookie", cookie.encode())])
    connected, code = await communicator.connect()
    assert not connected


async def test_an_agent_gets_a_new_incoming_call_with_what_the_pop_shows_and_not_another_agents(alice, bob, on):
    await database_sync_to_async(create_contact)(first_name=XSS, last_name="Π.", phones=["2101234567"])
    screen = await _connected(alice)
    e = NowEvents()
    await database_sync_to_async(receive_events)(None, [e.ringing("100", 100, number="00302101234567"),
                                                        e.ringing("101", 100, number="00302101234567")])
    pushes = await _pushes(screen)
    assert len(pushes) == 1
    push = pushes[0]  # Bob's call, rung in the same batch, is not Alice's business
    call = await database_sync_to_async(Call.objects.get)(extension="100")
    assert push["type"] == "call.changed" and push["call_id"] == call.pk and push["resource_id"] == alice.pk
    assert push["new"] is True and push["incoming"] is True and push["state"] == "ringing"
    assert push["number"] == "+30 21 0123 4567"
    assert push["contact"] == f"{XSS} Π."  # data: the script writes it with textContent, never as markup
    assert push["kind"] == "incoming" and push["activity_id"] is None
    await screen.disconnect()


async def test_an_administrator_gets_every_call_once(alice, carol, on):
    screen = await _connected(carol)
    await database_sync_to_async(call_ended)("100")
    await database_sync_to_async(call_ended)("199")
    await database_sync_to_async(call_ended)("555")  # nobody's extension
    pushes = await _pushes(screen)
    calls = {(p["call_id"], p["push_id"]) for p in pushes if p["type"] == "call.changed"}
    assert len({call_id for call_id, _push in calls}) == 3
    assert len(calls) == len([p for p in pushes if p["type"] == "call.changed"])  # none twice
    await screen.disconnect()


async def test_a_push_leaves_only_after_commit_and_never_for_a_rolled_back_write(alice, on):
    screen = await _connected(alice)

    def commit_later() -> None:
        with transaction.atomic():
            call_ended("100")
            assert async_to_sync(screen.receive_nothing)(timeout=0.3)  # still inside the transaction

    await database_sync_to_async(commit_later)()
    pushes = await _pushes(screen)
    call = await database_sync_to_async(Call.objects.get)()
    assert pushes and {(p["type"], p["call_id"], p["state"]) for p in pushes} == {("call.changed", call.pk, "ended")}
    assert [p["new"] for p in pushes][0] is True

    class Undo(Exception):
        pass

    def roll_back() -> None:
        try:
            with transaction.atomic():
                call_ended("100")
                raise Undo
        except Undo:
            pass

    await database_sync_to_async(roll_back)()
    assert await screen.receive_nothing(timeout=0.5)
    assert await database_sync_to_async(Call.objects.count)() == 1
    await screen.disconnect()


async def test_updates_and_clears_made_by_users_are_pushed(alice, on):
    await database_sync_to_async(call_ended)("100")
    call = await database_sync_to_async(Call.objects.get)()
    eleni = await database_sync_to_async(create_contact)(first_name="Eleni")
    screen = await _connected(alice)
    await database_sync_to_async(actions.set_call_contact)(call, eleni)
    changed = await _pushes(screen)
    assert [(p["type"], p["new"], p["contact"]) for p in changed] == [("call.changed", False, "Eleni")]
    await database_sync_to_async(actions.clear_all)(alice)
    cleared = await _pushes(screen)
    assert cleared == [{"type": "calls.cleared", "call_ids": [call.pk], "push_id": cleared[0]["push_id"]}]
    await screen.disconnect()


async def test_busy_and_bridge_reports_are_pushed(alice, bridge, on):
    screen = await _connected(alice)
    now = timezone.now().timestamp()
    await database_sync_to_async(receive_events)(None, [wire.AgentState(event_id="dnd", occurred_at=now,
                                                                        extension="100", dnd=True)])
    await database_sync_to_async(receive_events)(bridge, [wire.LinkState(
        event_id="link", occurred_at=now, phone_system=wire.PhoneSystem.ASTERISK, pbx_connected=True,
        extensions=("100",))])
    pushes = await _pushes(screen)
    assert [(p["type"], p.get("busy"), p.get("connected")) for p in pushes] == [
        ("agent.changed", True, None), ("bridge.changed", None, True)]
    await screen.disconnect()


async def test_the_screen_may_ping_and_anything_else_it_sends_is_ignored(alice, on):
    screen = await _connected(alice)
    await screen.send_to(text_data="not json at all")
    await screen.send_to(text_data='{"type": "call.changed", "call_id": 1}')
    assert await screen.receive_nothing(timeout=0.3)
    await screen.send_json_to({"type": "ping"})
    assert await screen.receive_json_from() == {"type": "pong"}
    await screen.disconnect()


async def test_a_new_call_with_an_auto_created_activity_names_it_for_auto_open(alice, on, phone_call_type):
    def configure() -> None:
        on.incoming_activity_type = phone_call_type
        on.auto_open_activity = True
        on.save()

    await database_sync_to_async(configure)()
    screen = await _connected(alice)
    e = NowEvents()
    await database_sync_to_async(receive_events)(None, [e.ringing("100", 100)])
    push = (await _pushes(screen))[0]
    call = await database_sync_to_async(Call.objects.select_related("activity").get)()
    assert push["new"] and push["activity_id"] == call.activity.pk
    await screen.disconnect()


@pytest.fixture
def when_answered(on):
    on.create_call_when_answered = True
    on.save()
    return on


async def test_create_when_answered_pops_each_ringing_agent_from_its_leg_after_commit(alice, bob, carol,
                                                                                        when_answered):
    """S-3.7 + S-4.19: no row until someone answers, yet every ringing agent gets its pop (leg.ringing) after commit,
    an agent whose phone did not ring and an administrator get nothing, and the pop goes (leg.ended) once the call
    is answered elsewhere."""
    await database_sync_to_async(create_contact)(first_name=XSS, last_name="Π.", phones=["2101234567"])
    screens = {r.extension: await _connected(r) for r in (alice, bob, carol)}
    e = NowEvents()

    class Undo(Exception):
        pass

    def roll_back() -> None:
        try:
            with transaction.atomic():
                receive_events(None, [e.ringing("100", 100, name="ACME"), e.ringing("101", 100, name="ACME")])
                raise Undo
        except Undo:
            pass

    await database_sync_to_async(roll_back)()
    for screen in screens.values():
        assert await screen.receive_nothing(timeout=0.3)  # a rolled-back write pushes nothing

    def ring() -> None:
        with transaction.atomic():
            receive_events(None, [e.ringing("100", 100, name="ACME"), e.ringing("101", 100, name="ACME")])
            assert async_to_sync(screens["100"].receive_nothing)(timeout=0.3)  # still inside the transaction

    await database_sync_to_async(ring)()
    assert await database_sync_to_async(Call.objects.count)() == 0
    for ext, resource in (("100", alice), ("101", bob)):
        [push] = await _pushes(screens[ext])
        assert push["type"] == "leg.ringing" and push["resource_id"] == resource.pk
        assert (push["pbx_call_id"], push["extension"]) == (e.call_id, ext)
        assert push["incoming"] is True and push["state"] == "ringing"
        assert push["number"] == "+30 21 0123 4567" and push["caller_name"] == "ACME"
        assert push["contact"] == f"{XSS} Π."  # data: the script writes it with textContent, never as markup
    assert await screens["199"].receive_nothing(timeout=0.3)  # an administrator whose phone did not ring

    await database_sync_to_async(receive_events)(None, [e.answered("101", 103),
                                                        e.ended("100", 103, answered_elsewhere=True)])
    alice_pushes = await _pushes(screens["100"])
    assert [(p["type"], p["pbx_call_id"], p["extension"]) for p in alice_pushes] == [("leg.ended", e.call_id, "100")]
    bob_pushes = await _pushes(screens["101"])
    assert [p["type"] for p in bob_pushes] == ["leg.ended", "call.changed"]  # his pop gives way to his call's
    assert bob_pushes[1]["new"] is True and bob_pushes[1]["state"] == "up"
    carol_pushes = await _pushes(screens["199"])
    assert [p["type"] for p in carol_pushes] == ["call.changed"]
    for screen in screens.values():
        await screen.disconnect()


async def test_create_when_answered_a_call_that_ends_unanswered_takes_its_pop_away(alice, when_answered):
    screen = await _connected(alice)
    e = NowEvents()
    await database_sync_to_async(receive_events)(None, [e.ringing("100", 100)])
    assert [p["type"] for p in await _pushes(screen)] == ["leg.ringing"]
    await database_sync_to_async(receive_events)(None, [e.ended("100", 130)])
    assert [p["type"] for p in await _pushes(screen)] == ["leg.ended"]
    assert await database_sync_to_async(Call.objects.count)() == 0
    await screen.disconnect()
