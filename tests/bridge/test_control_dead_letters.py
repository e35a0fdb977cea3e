"""The bridge's page shows the events the CRM refused on their own (dead letters) and queues them again (issue 11)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from callcenter import wire
from callcenter.bridge.connectors.base import Connector
from callcenter.bridge.control import BridgeStatus, ControlListener, bind_listener, render_metrics
from callcenter.bridge.outbox import DeadLetter, Outbox
from callcenter.bridge.settings import BridgeSettings, load_settings
from tests.bridge.conftest import BRIDGE_SECRET


@dataclass
class OutboxTarget:
    """The running bridge as the listener sees it: settings and a real outbox, no PBX."""

    current: BridgeSettings
    outbox: Outbox

    @property
    def settings(self) -> BridgeSettings:
        return self.current

    @property
    def connector(self) -> Connector | None:
        return None

    def status(self) -> BridgeStatus:
        return BridgeStatus(pbx_running=False, pbx_connected=False, outbox_depth=self.outbox.depth,
                            dead_letters=self.outbox.dead_letters)

    def recent_errors(self) -> list[str]:
        return []

    def dead_letter_list(self, limit: int) -> list[DeadLetter]:
        return self.outbox.dead_letter_list(limit)

    def requeue_dead_letters(self) -> int:
        return self.outbox.requeue_dead_letters()

    async def start_pbx(self) -> None:
        pass

    async def stop_pbx(self) -> None:
        pass

    async def apply_settings(self, settings: BridgeSettings) -> list[str]:
        return []

    def request_exit(self) -> None:
        pass


@pytest.fixture
async def page(write_config: Callable[..., Path], tmp_path: Path) -> AsyncIterator[tuple[OutboxTarget, str]]:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    await outbox.start()
    target = OutboxTarget(load_settings(write_config(), env={}), outbox)
    listener = ControlListener(target, bind_listener("127.0.0.1", 0), env={})
    ready = asyncio.Event()
    serving = asyncio.create_task(listener.serve(ready))
    await asyncio.wait_for(ready.wait(), 5)
    yield target, listener.base_url
    listener.stop()
    await serving
    await outbox.close()


def _csrf(text: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', text)
    assert match
    return match.group(1)


async def _log_in(client: httpx.AsyncClient) -> None:
    form = await client.get("/login")
    response = await client.post("/login", data={"csrf": _csrf(form.text), "token": BRIDGE_SECRET})
    assert response.status_code == 303


async def test_dead_letters_are_listed_with_id_type_time_and_reason_and_can_be_queued_again(page) -> None:
    target, url = page
    outbox = target.outbox
    when = 1_795_632_434.0
    events = [
        wire.CallRinging(event_id="ev-<b>1</b>", occurred_at=when, call_id="c1", extension="100",
                         direction=wire.Direction.INBOUND),
        wire.CallEnded(event_id="ev-2", occurred_at=when + 60, call_id="c1", extension="100"),
        wire.AgentState(event_id="ev-3", occurred_at=when, extension="100", dnd=True),
    ]
    for event in events:
        outbox.put(event)
    await outbox.flush()
    rows = outbox.peek(3)
    outbox.dead_letter(rows[0][0], status=400, reason="occurred_at is <script>before</script> 2000-01-01")
    outbox.dead_letter(rows[1][0], status=500, reason="HTTP 500 3 times while the CRM was healthy")
    assert "callcenter_bridge_dead_letters 2" in render_metrics(target.status(), {}, 0)
    async with httpx.AsyncClient(base_url=url) as client:
        await _log_in(client)
        home = await client.get("/")
        assert "Events the CRM refused (dead letters)" in home.text and "Dead letters (2)" in home.text
        listing = await client.get("/dead-letters")
        assert listing.status_code == 200
        text = listing.text
        assert "ev-&lt;b&gt;1&lt;/b&gt;" in text and "<script>" not in text  # escaped, never markup
        assert "call.ringing" in text and "call.ended" in text and "2026-11-25 18:47:14" in text
        assert "occurred_at is &lt;script&gt;before&lt;/script&gt; 2000-01-01" in text
        assert "HTTP 500 3 times while the CRM was healthy" in text
        assert "Queue them again" in text and "Ξανά στην ουρά" in text
        refused = await client.post("/dead-letters", data={"csrf": "guess"})
        assert refused.status_code == 403 and outbox.dead_letters == 2
        again = await client.post("/dead-letters", data={"csrf": _csrf(text)})
        assert again.status_code == 303
        assert outbox.dead_letters == 0 and outbox.depth == 3
        assert "2 events queued again for the CRM" in (await client.get("/")).text
        assert "No dead letters" in (await client.get("/dead-letters")).text


async def test_the_dead_letters_page_needs_a_login(page) -> None:
    _target, url = page
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/dead-letters")).status_code == 303
        assert (await client.post("/dead-letters", data={"csrf": "x"})).status_code == 403

