"""The simulated clock: a scheduled step happens at its due time on the simulated clock, however late the event loop
runs it. Each test holds the loop up on purpose (a blocking ``time.sleep`` on the loop's thread), so what it proves
does not depend on how busy the machine is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from callcenter.pbxsim.clock import Clock

SPEED = 10.0  # 1 simulated second = 0.1 s of real time


def hold_up_the_loop(clock: Clock, sim_seconds: float) -> None:
    """Block the event loop's thread for ``sim_seconds`` of simulated time (nothing else can run meanwhile)."""
    time.sleep(sim_seconds / clock.speed)


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_a_timer_that_runs_late_sees_its_due_time_as_now() -> None:
    clock = Clock(SPEED)
    seen: list[tuple[float, float]] = []
    timer = clock.call_later(1, lambda: seen.append((clock.now(), clock.wall())))
    hold_up_the_loop(clock, 3)  # the timer is due after 1 s; the loop gets to it 2 s late at the earliest
    await until(lambda: seen)
    (now, wall), = seen
    assert now == timer.due
    assert wall - timer.due >= 2, "the callback really ran late"


async def test_a_chain_of_late_timers_keeps_the_scenario_spacing() -> None:
    clock = Clock(SPEED)
    stamps: list[float] = []
    walls: list[float] = []

    def ring() -> None:
        stamps.append(clock.now())
        hold_up_the_loop(clock, 5)  # far longer than the 3 s until the next step
        clock.call_later(3, answer)

    def answer() -> None:
        stamps.append(clock.now())
        hold_up_the_loop(clock, 8)
        clock.call_later(6, lambda: (stamps.append(clock.now()), walls.append(clock.wall())))

    rings = clock.call_later(0.5, ring)
    await until(lambda: len(stamps) == 3)
    assert stamps == pytest.approx([rings.due, rings.due + 3, rings.due + 9], rel=0, abs=1e-6)
    assert stamps[1] - stamps[0] == pytest.approx(3, rel=0, abs=1e-6)
    assert stamps[2] - stamps[1] == pytest.approx(6, rel=0, abs=1e-6)
    # Ring at 0.5 held the loop to 5.5, so the answer (due 3.5) ran at 5.5 or later and held it to 13.5 or later:
    # the hang-up, due at 9.5, ran at least 4 s late.
    assert walls[0] - stamps[2] >= 4 - 1e-6, "the steps really ran late"


async def test_timers_run_in_due_order_even_when_a_late_one_schedules_into_the_past() -> None:
    clock = Clock(SPEED)
    order: list[tuple[str, float]] = []

    def first() -> None:
        order.append(("first", clock.now()))
        clock.call_later(0.5, lambda: order.append(("first+0.5", clock.now())))

    one = clock.call_later(1, first)
    two = clock.call_later(2, lambda: order.append(("second", clock.now())))
    assert two.due - one.due < 1.5
    hold_up_the_loop(clock, 4)  # both are overdue when the loop wakes; first's follow-up is due before second
    await until(lambda: len(order) == 3)
    assert [name for name, _ in order] == ["first", "first+0.5", "second"]
    assert [t for _, t in order] == pytest.approx([one.due, one.due + 0.5, two.due], rel=0, abs=1e-6)


async def test_now_outside_a_timer_never_passes_a_step_still_to_run_and_never_goes_back() -> None:
    clock = Clock(SPEED)
    ran: list[float] = []
    timer = clock.call_later(1, lambda: ran.append(clock.now()))
    hold_up_the_loop(clock, 3)
    # An AMI action handled now, before the loop has run the late timer, happened before that step in simulated
    # time: its events must not carry a later Timestamp than the step's.
    before = clock.now()
    assert before == timer.due and clock.wall() > timer.due
    await until(lambda: ran)
    after = clock.now()
    assert before <= ran[0] <= after
    readings = [clock.now() for _ in range(1000)]
    assert readings == sorted(readings)


async def test_a_cancelled_timer_neither_runs_nor_holds_the_clock_back() -> None:
    clock = Clock(SPEED)
    ran: list[str] = []
    timer = clock.call_later(1, lambda: ran.append("cancelled"))
    clock.call_later(2, lambda: ran.append("kept"))
    timer.cancel()
    hold_up_the_loop(clock, 1.5)
    assert clock.now() > timer.due, "a cancelled step does not stop the clock"
    await until(lambda: ran)
    await asyncio.sleep(0.05)
    assert ran == ["kept"]


async def test_a_backlog_of_due_steps_lets_the_event_loop_turn() -> None:
    clock = Clock(SPEED)
    steps = 0
    turned_at: list[int] = []

    def step() -> None:
        nonlocal steps
        steps += 1
        if steps < 200:
            clock.call_later(0, step)  # due at once: a rate the machine cannot keep

    clock.call_later(0, step)
    asyncio.get_running_loop().call_soon(lambda: turned_at.append(steps))
    await until(lambda: steps == 200 and turned_at)
    assert turned_at[0] < 200, "other callbacks (socket reads) ran while the steps were behind"


async def test_a_failing_step_is_kept_and_the_others_still_run() -> None:
    clock = Clock(SPEED)
    ran: list[float] = []

    def broken() -> None:
        raise RuntimeError("a bug in a call flow")

    clock.call_later(0.1, broken)
    clock.call_later(0.2, lambda: ran.append(clock.now()))
    await until(lambda: ran)
    assert [type(e) for e in clock.errors] == [RuntimeError]
