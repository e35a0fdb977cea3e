"""The load generator: calls on a steady grid at the asked rate, from known and unknown Greek callers."""

from __future__ import annotations

import random
import re

import pytest

from callcenter.pbxsim import SimulatedPBX
from callcenter.pbxsim.loadgen import KNOWN_CALLERS, LoadConfig, LoadGenerator, random_greek_number
from tests.pbxsim.amiclient import SECRET, AMIClient

GREEK = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")
GREEK_NUMBER = re.compile(r"^(?:\+30|0030)?(?:69\d{8}|2\d{9})$")


async def test_it_starts_calls_at_the_asked_rate_and_they_reach_the_wire() -> None:
    async with SimulatedPBX(users={"crm": SECRET}, speed=10, agents=["100", "101"]) as pbx:
        client = await AMIClient.connect(pbx.port)
        await client.login()
        load = pbx.start_load(5.0, max_calls=10, seed=7, talk=(1, 2), ring_timeout=2)
        await load.wait()
        assert load.calls_started == 10
        # Simulated start times sit exactly on the grid start + n / rate (0.2 s apart), however late a busy machine
        # runs the timers: no drift, no jitter.
        t0 = load.start_times[0]
        assert load.start_times == pytest.approx([t0 + n * 0.2 for n in range(10)], rel=0, abs=1e-6)
        await client.wait_for(lambda: len([e for e in client.events("Newchannel")
                                           if e.get("Channel", "").startswith("PJSIP/trunk-")]) == 10)
        await pbx.wait_until(lambda: not pbx.channels(), timeout=5)
        await client.close()


async def test_stop_ends_an_endless_load() -> None:
    async with SimulatedPBX(users={"crm": SECRET}, speed=100) as pbx:
        load = pbx.start_load(2.0, seed=1, talk=(1, 1))
        await pbx.wait_until(lambda: load.calls_started >= 3)
        await load.stop()
        started = load.calls_started
        assert not load.running
        await pbx.wait_until(lambda: not pbx.channels(), timeout=5)
        assert load.calls_started == started


def test_callers_are_known_contacts_or_random_greek_numbers_with_greek_names() -> None:
    async_free_pbx = SimulatedPBX(users={"crm": SECRET})
    gen = LoadGenerator(async_free_pbx.core, LoadConfig(rate=1, agents=["100"], unknown_ratio=0.5, seed=3))
    callers = [gen.next_caller() for _ in range(400)]
    known = [c for c in callers if c in KNOWN_CALLERS]
    unknown = [c for c in callers if c not in KNOWN_CALLERS]
    assert 100 < len(known) < 300 and 100 < len(unknown) < 300
    assert all(GREEK_NUMBER.match(number) for number, _ in unknown)
    assert {bool(name) for _, name in unknown} == {True, False}, "unknown callers come with and without a name"
    assert all(GREEK.search(name) for _, name in callers if name)
    again = LoadGenerator(async_free_pbx.core, LoadConfig(rate=1, agents=["100"], unknown_ratio=0.5, seed=3))
    assert [again.next_caller() for _ in range(400)] == callers, "a seed reproduces the same load"


def test_random_numbers_look_greek() -> None:
    rng = random.Random(5)
    numbers = [random_greek_number(rng) for _ in range(200)]
    assert all(GREEK_NUMBER.match(n) for n in numbers)
    assert {n[:3] for n in numbers} & {"+30", "003"} and any(n.startswith("69") for n in numbers)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0, "agents": ["100"]}, "the call rate must be a positive number"),
        ({"rate": 1, "agents": []}, "at least one agent"),
        ({"rate": 1, "agents": ["100"], "unknown_ratio": 2}, "unknown_ratio must be between 0 and 1"),
        ({"rate": 1, "agents": ["100"], "known_callers": ()}, "no known callers"),
        ({"rate": 1, "agents": ["100"], "talk": (5, 1)}, "talk time range"),
    ],
)
def test_bad_load_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoadConfig(**kwargs)  # type: ignore[arg-type]
