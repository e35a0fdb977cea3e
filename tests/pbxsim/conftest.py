"""Fixtures: a simulated PBX on an ephemeral loopback port, with time 100x compressed, and logged-in clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callcenter.pbxsim import SimulatedPBX
from tests.pbxsim.amiclient import SECRET, AMIClient

SPEED = 100.0  # a 10 s call takes 0.1 s
# Phones ring for an hour of simulated time (36 s here) before Dial() gives up, not the PBX's 20 s (0.2 s here): a
# test that waits for a phone to ring and then answers it must not lose the call to a busy machine's slowness. The
# tests of the no-answer timeout set their own.
RING_TIMEOUT = 3600.0


@pytest.fixture
async def pbx() -> AsyncIterator[SimulatedPBX]:
    async with SimulatedPBX(users={"crm": SECRET}, agents={"100": "Alice", "101": "Bob", "102": "Carol",
                                                          "103": "Dave"}, speed=SPEED,
                            ring_timeout=RING_TIMEOUT) as sim:
        yield sim
        assert sim.errors == [], "the simulator itself failed"


@pytest.fixture
async def client(pbx: SimulatedPBX) -> AsyncIterator[AMIClient]:
    c = await AMIClient.connect(pbx.port)
    response = await c.login()
    assert response.name == "Success"
    yield c
    await c.close()
