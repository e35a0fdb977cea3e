"""Delivery of the outbox to the CRM over real sockets: first against a scripted stand-in that can fail in every way
the CRM link can (tests/bridge/fake_crm.py), then against the real CRM in a child process (tests/bridge/live_crm.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from callcenter import wire
from callcenter.bridge import synthetic
from callcenter.bridge.delivery import Deliverer
from callcenter.bridge.outbox import Outbox

from .fake_crm import FakeCrm, FlakyRelay
from .live_crm import CrmProcess, CrmTemplate, build_template, free_port

SECRET = "delivery-test-secret-0123456789"
CHILD = Path(__file__).with_name("outbox_child.py")


async def until(condition: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.01)


async def drained(outbox: Outbox, stall: float = 120.0) -> None:
    """Until the outbox is empty, however long a busy machine takes to get there, as long as it gets there: fails
    only when the outbox has not shrunk for ``stall`` seconds (delivery stuck, not slow)."""
    loop = asyncio.get_running_loop()
    depth, since = outbox.depth, loop.time()
    while depth:
        await asyncio.sleep(0.05)
        if outbox.depth < depth:
            depth, since = outbox.depth, loop.time()
        elif loop.time() - since > stall:
            raise AssertionError(f"delivery stuck: {depth} events stayed in the outbox for {stall} s")


def _events(count: int, prefix: str = "dl") -> list[wire.Event]:
    return list(synthetic.traffic(synthetic.calls_for_events(count), prefix=prefix))[:count]


@pytest.fixture
async def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.sqlite3")
    await box.start()
    yield box
    await box.close()


@pytest.fixture
async def crm():
    fake = await FakeCrm(SECRET).start()
    yield fake
    await fake.stop()


@pytest.fixture
async def deliverers():
    made: list[Deliverer] = []

    def make(outbox: Outbox, url: str, **options) -> Deliverer:
        options = {"backoff_first": 0.01, "backoff_cap": 0.05, "timeout": 5.0} | options
        deliverer = Deliverer(outbox, url, "office", options.pop("secret", SECRET), **options)
        made.append(deliverer)
        return deliverer

    yield make
    for deliverer in made:
        await deliverer.stop(timeout=1)


async def _fill(outbox: Outbox, events: list[wire.Event]) -> None:
    for event in events:
        outbox.put(event)
    await outbox.flush()


# ---- against the scripted stand-in ------------------------------------------------------------------------------


async def test_events_arrive_in_order_in_batches_over_one_kept_alive_connection(outbox, crm, deliverers):
    events = _events(1050)
    await _fill(outbox, events)
    deliverer = deliverers(outbox, crm.url, batch_size=500)
    deliverer.start()
    await until(lambda: outbox.depth == 0, what="empty outbox")
    assert crm.stored == [event.event_id for event in events]
    assert crm.batch_sizes() == [500, 500, 50]
    assert crm.connections == 1
    assert {request.headers[wire.BRIDGE_HEADER.lower()] for request in crm.requests} == {"office"}
    assert crm.answers == ["ok", "ok", "ok"]  # every signature verified by the stand-in
    metrics = deliverer.metrics()
    assert (metrics.delivered_total, metrics.failures_total, metrics.crm_reachable) == (1050, 0, True)


async def test_it_wakes_as_soon_as_an_event_is_accepted_without_polling(outbox, crm, deliverers):
    sleeps: list[float] = []

    async def never_wakes(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.Event().wait()

    deliverers(outbox, crm.url, sleep=never_wakes).start()
    await asyncio.sleep(0.05)  # idle on an empty outbox
    for event in _events(3):
        outbox.put(event)
        await until(lambda event=event: event.event_id in crm.stored, timeout=5, what="delivery")
    assert sleeps == []  # woken by the commit each time, not by a timer


@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        ("500", "the CRM answered HTTP 500 (server_error: database is locked)"),
        ("garbage", "answered 200 without a batch receipt"),
        ("wrong-json", "answered 200 without a batch receipt"),
        ("short", "receipt counts 49 accepted + 0 duplicates + 0 refused for a batch of 50 events"),
        ("close", "cannot reach the CRM"),
        ("hang", "did not answer in time"),
        ("ok-lost", "cannot reach the CRM"),
    ],
)
async def test_a_failing_crm_gets_the_same_events_again_until_it_confirms_them(outbox, crm, deliverers, caplog,
                                                                               failure, logged):
    events = _events(120)
    await _fill(outbox, events)
    crm.script = [failure] * 3
    deliverer = deliverers(outbox, crm.url, batch_size=50, timeout=0.3 if failure == "hang" else 5.0)
    with caplog.at_level(logging.ERROR, logger="callcenter.bridge.delivery"):
        deliverer.start()
        await until(lambda: outbox.depth == 0 and deliverer.delivered_total == 120, what="empty outbox, all counted")
    assert crm.stored == [event.event_id for event in events]  # each once, in order
    assert crm.answers[:3] == [failure] * 3
    assert deliverer.failures_total == 3
    assert deliverer.delivered_total == 120
    assert logged in caplog.text
    assert "events kept in the outbox, retry 1 in" in caplog.text
    if failure in ("ok-lost", "short"):
        assert deliverer.duplicates_total == 50  # the CRM had stored them: redelivery is harmless
    assert deliverer.crm_reachable is True and deliverer.last_error == ""


async def test_a_crm_that_refuses_connections_gets_the_events_once_it_listens(outbox, deliverers):
    port = free_port()
    events = _events(60)
    await _fill(outbox, events)
    deliverer = deliverers(outbox, f"http://127.0.0.1:{port}")
    deliverer.start()
    await until(lambda: deliverer.failures_total >= 3, what="refused attempts")
    assert deliverer.crm_reachable is False
    assert "cannot reach the CRM at http://127.0.0.1" in deliverer.last_error
    assert outbox.depth == 60
    crm = await FakeCrm(SECRET).start(port)
    try:
        await until(lambda: outbox.depth == 0, what="empty outbox")
        assert crm.stored == [event.event_id for event in events]
    finally:
        await crm.stop()


async def test_back_off_doubles_from_a_quick_first_retry_to_its_cap_and_starts_over_after_a_success(outbox, crm,
                                                                                                   deliverers):
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    crm.script = ["500"] * 8
    deliverer = deliverers(outbox, crm.url, backoff_first=0.5, backoff_cap=30, sleep=record, jitter=lambda: 1.0,
                           split_after=100)  # a 500 that repeats is not suspected here
    await _fill(outbox, _events(1))
    deliverer.start()
    await until(lambda: outbox.depth == 0)
    assert slept == [0.5, 1, 2, 4, 8, 16, 30, 30]
    crm.script = ["500"]
    await _fill(outbox, _events(2)[1:])
    await until(lambda: outbox.depth == 0)
    assert slept[8:] == [0.5]


async def test_the_jitter_is_full_a_random_wait_up_to_the_ceiling(outbox, deliverers):
    deliverer = deliverers(outbox, "http://127.0.0.1:9", backoff_first=0.2, backoff_cap=30.0, jitter=lambda: 0.25)
    assert [deliverer.backoff_delay(n) for n in (1, 2, 3, 10)] == [0.05, 0.1, 0.2, 7.5]
    spread = deliverers(outbox, "http://127.0.0.1:9", backoff_first=0.2, backoff_cap=30.0,
                        jitter=random.Random(7).random)
    waits = [spread.backoff_delay(4) for _ in range(200)]
    assert all(0 <= wait <= 1.6 for wait in waits)
    assert min(waits) < 0.2 and max(waits) > 1.4  # spread over the whole range


async def test_a_wrong_secret_is_reported_as_such_never_shown_and_the_events_wait(outbox, crm, deliverers, caplog):
    wrong = "not-the-secret-the-crm-knows-42"
    events = _events(10)
    await _fill(outbox, events)
    deliverer = deliverers(outbox, crm.url, secret=wrong)
    with caplog.at_level(logging.DEBUG):
        deliverer.start()
        await until(lambda: deliverer.failures_total >= 3, what="refused attempts")
        assert outbox.depth == 10
        assert "check the bridge secret / clock" in caplog.text
        assert "signature does not match" in caplog.text
        assert "HTTP 401" in deliverer.last_error
        crm.secret = wrong  # the administrator puts the same secret on both sides
        await until(lambda: outbox.depth == 0, what="empty outbox")
    everything = caplog.text + repr(deliverer) + str(deliverer.metrics())
    assert wrong not in everything and SECRET not in everything
    assert crm.stored == [event.event_id for event in events]


async def test_an_event_the_crm_refuses_is_found_by_halving_and_set_aside(outbox, crm, deliverers, caplog):
    events = _events(100)
    bad = events[37].event_id
    crm.refuse_ids = {bad}
    await _fill(outbox, events)
    deliverer = deliverers(outbox, crm.url, batch_size=100)
    with caplog.at_level(logging.ERROR):
        deliverer.start()
        await until(lambda: outbox.depth == 0, what="empty outbox")
    assert crm.stored == [event.event_id for event in events if event.event_id != bad]
    [letter] = outbox.dead_letter_list()
    assert (letter.event_id, letter.status) == (bad, 400)
    assert "invalid_batch" in letter.reason
    assert deliverer.dead_letters_total == 1 and deliverer.failures_total == 0
    assert f"the CRM refused event {bad} call.ringing at " in caplog.text
    assert "on its own (HTTP 400: invalid_batch" in caplog.text
    assert len([r for r in caplog.records if bad in r.getMessage()]) == 1  # one error line per event
    assert len(crm.requests) <= 2 * math.ceil(math.log2(100)) + 1


async def test_a_batch_too_large_for_the_crm_is_split_and_nothing_is_set_aside(outbox, deliverers):
    class SmallCrm(FakeCrm):
        async def _handle(self, request):
            if request.body.count(b'"event_id"') > 30:
                self.requests.append(request)
                return 413, b'{"error_id": "too_large", "message": "a batch may have at most 9000 bytes"}', "a/json"
            return await super()._handle(request)

    crm = await SmallCrm(SECRET).start()
    try:
        events = _events(100)
        await _fill(outbox, events)
        deliverers(outbox, crm.url, batch_size=100).start()
        await until(lambda: outbox.depth == 0, what="empty outbox")
        assert crm.stored == [event.event_id for event in events]
        assert outbox.dead_letters == 0
    finally:
        await crm.stop()


async def test_stop_is_prompt_while_backing_off_or_waiting_for_an_answer(outbox, crm, deliverers):
    crm.then = "500"
    await _fill(outbox, _events(5))
    backing_off = deliverers(outbox, crm.url, backoff_first=3600, backoff_cap=3600)
    task = backing_off.start()
    await until(lambda: backing_off.failures_total == 1)
    await asyncio.wait_for(backing_off.stop(), 2)
    assert task.done() and not task.cancelled()

    crm.then = "hang"
    waiting = deliverers(outbox, crm.url, timeout=3600)
    task = waiting.start()
    await asyncio.wait_for(crm.hung.wait(), 5)
    await asyncio.wait_for(waiting.stop(timeout=0.2), 2)
    assert task.done()
    assert outbox.depth == 5  # nothing confirmed, nothing removed


# ---- against the real CRM ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def crm_template(tmp_path_factory) -> CrmTemplate:
    return build_template(tmp_path_factory.mktemp("crm-template"))


@pytest.fixture
def live_crm(crm_template: CrmTemplate, tmp_path: Path):
    processes: list[CrmProcess] = []

    def make(port: int | None = None) -> CrmProcess:
        database = tmp_path / "crm" / "crm.sqlite3"
        if not database.exists():
            crm_template.copy(database.parent)
        process = CrmProcess(database, port or free_port(), tmp_path / "crm.log")
        processes.append(process)
        return process

    yield make
    for process in processes:
        process.stop()


def _assert_exactly_once(crm: CrmProcess, prefix: str, calls: int, at_least: int) -> None:
    """The CRM holds the first N events of the generated traffic, N >= at_least, each once, none failed."""
    stored = [event_id for event_id in crm.processed_ids() if event_id.startswith(f"{prefix}:")]
    expected = [event.event_id for event in synthetic.traffic(calls, prefix=prefix)][: len(stored)]
    assert len(stored) >= at_least
    assert len(stored) == len(set(stored))
    assert set(stored) == set(expected)
    assert crm.failed_events() == 0


KILL_CALLS = 600
OUTAGE_CALLS = 12_000  # ten minutes of a busy call center (20 calls/s, 51,600 events); see the test's docstring


@pytest.mark.slow
async def test_a_crm_outage_loses_and_duplicates_nothing(outbox, live_crm, deliverers, crm_template):
    """The issue's "10-minute CRM outage at 20 calls/s", compressed in time: the CRM is down while the events of ten
    minutes of traffic -- OUTAGE_CALLS = 12,000 calls, 51,600 events (~86 events/s) -- are generated as fast as this
    machine can (about a second instead of ten minutes), the bridge retrying all the while (capped back-off,
    0.5 s here instead of 30 s); then the CRM starts and drains the backlog. Only the pace is compressed: the count
    of events, the outbox and the delivery path are those of a real ten-minute outage."""
    crm = live_crm()
    deliverer = deliverers(outbox, crm.url, backoff_first=0.05, backoff_cap=0.5, secret=crm_template.secret)
    deliverer.start()
    for count, event in enumerate(synthetic.traffic(OUTAGE_CALLS, prefix="outage"), start=1):
        outbox.put(event)
        if count % 500 == 0:
            await asyncio.sleep(0)  # the bridge keeps trying meanwhile
    await outbox.flush()
    await until(lambda: deliverer.failures_total >= 2, what="failed attempts")
    assert deliverer.crm_reachable is False and deliverer.delivered_total == 0
    total = outbox.depth
    await asyncio.to_thread(crm.start)
    await drained(outbox)
    _assert_exactly_once(crm, "outage", OUTAGE_CALLS, total)
    assert len(crm.processed_ids()) == total
    assert crm.calls_by_kind("outage") == synthetic.expected_call_rows(OUTAGE_CALLS)
    assert crm.open_calls("outage") == 0


@pytest.mark.slow
@pytest.mark.parametrize("crm_up", [False, True], ids=["crm-down", "crm-up-mid-delivery"])
async def test_kill_9_of_the_bridge_and_a_restart_lose_and_duplicate_nothing(tmp_path, live_crm, deliverers,
                                                                             crm_template, crm_up):
    """A bridge process (outbox + deliverer, fed by a generator) reports how many events it has accepted; it is
    killed with SIGKILL past 1,500. With the CRM down, nothing was delivered; with the CRM up, part was, and the
    batch in flight may have been stored by the CRM without the bridge hearing it. After a restart on the same
    outbox file, every accepted event reaches the CRM exactly once."""
    crm = live_crm()
    if crm_up:
        crm.start()
    path = tmp_path / "bridge-outbox.sqlite3"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), crm.url, str(crm_template.secret_file), "kill", str(KILL_CALLS)],
        stdout=subprocess.PIPE, text=True,
    )
    reported = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            reported = int(line.split()[1])
            if reported >= 1500:
                break
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert reported >= 1500
    if not crm_up:
        crm.start()

    outbox = Outbox(path)
    await outbox.start()
    try:
        assert outbox.depth > 0
        deliverers(outbox, crm.url, secret=crm_template.secret).start()
        await drained(outbox)
    finally:
        await outbox.close()
    _assert_exactly_once(crm, "kill", KILL_CALLS, reported)


@pytest.mark.slow
async def test_a_crm_answering_500_and_garbage_for_a_while_loses_nothing(outbox, live_crm, deliverers, crm_template):
    crm = live_crm()
    await asyncio.to_thread(crm.start)
    relay = await FlakyRelay(crm.url, ["500", "garbage", "close", "500", "garbage", "close"]).start()
    try:
        calls = 300
        await _fill(outbox, list(synthetic.traffic(calls, prefix="flaky")))
        total = outbox.depth
        deliverer = deliverers(outbox, relay.url, batch_size=200, secret=crm_template.secret)
        deliverer.start()
        await drained(outbox)
        assert relay.answers[:6] == ["500", "garbage", "close", "500", "garbage", "close"]
        assert deliverer.failures_total == 6
    finally:
        await relay.stop()
    _assert_exactly_once(crm, "flaky", calls, total)
    assert len(crm.processed_ids()) == total
    assert crm.calls_by_kind("flaky") == synthetic.expected_call_rows(calls)


# ---- no poison event, fast recovery (issue 11) ------------------------------------------------------------------


async def test_events_the_crm_refuses_in_its_receipt_become_dead_letters_and_delivery_goes_on(outbox, crm, deliverers,
                                                                                              caplog):
    events = _events(60)
    bad = {events[3].event_id: "occurred_at 1e+300 is ahead of this clock", events[41].event_id: "invalid event"}
    crm.refuse_each = dict(bad)
    await _fill(outbox, events)
    deliverer = deliverers(outbox, crm.url, batch_size=25)
    with caplog.at_level(logging.ERROR):
        deliverer.start()
        await until(lambda: outbox.depth == 0, what="empty outbox")
        later = _events(10, prefix="later")
        for event in later:  # and what comes later is delivered too
            outbox.put(event)
        await until(lambda: len(crm.stored) == 68, what="later events delivered")
    assert crm.stored == [e.event_id for e in [*events, *later] if e.event_id not in bad]
    letters = outbox.dead_letter_list()
    assert {(letter.event_id, letter.reason) for letter in letters} == set(bad.items())
    assert deliverer.dead_letters_total == 2 and deliverer.failures_total == 0 and outbox.dead_letters == 2
    assert deliverer.delivered_total == 68
    for event_id, reason in bad.items():
        [line] = [r for r in caplog.records if event_id in r.getMessage()]
        assert line.levelno == logging.ERROR and reason in line.getMessage() and line.exc_info is None
    assert len(crm.requests) == 4 - 1 + 1  # 25 + 25 + 10, then the 10 later ones: no request repeated


async def test_a_500_that_one_event_causes_while_the_crm_is_healthy_is_split_down_to_it(outbox, crm, deliverers,
                                                                                        caplog):
    events = _events(100)
    poison = events[58].event_id
    crm.poison_ids = {poison}
    await _fill(outbox, events)
    deliverer = deliverers(outbox, crm.url, batch_size=100)
    with caplog.at_level(logging.WARNING):
        deliverer.start()
        await until(lambda: outbox.depth == 0, what="empty outbox")
    assert crm.stored == [e.event_id for e in events if e.event_id != poison]
    [letter] = outbox.dead_letter_list()
    assert (letter.event_id, letter.status) == (poison, 500)
    assert "HTTP 500 3 times while the CRM was healthy" in letter.reason and "database is locked" in letter.reason
    assert crm.health_probes >= 2
    assert "sending them in smaller batches to find the event that causes it" in caplog.text
    assert len(crm.requests) < 60  # a binary search, not one request per event


@pytest.mark.parametrize(("answer", "health"), [("500", 503), ("502", 502), ("503", 200), ("close", 0)],
                         ids=["500-health-failing", "proxy-502-everything", "503", "connection-dropped"])
async def test_a_crm_that_is_down_never_costs_a_dead_letter(outbox, crm, deliverers, answer, health):
    crm.then = answer
    crm.health = health or 503
    events = _events(20)
    await _fill(outbox, events)
    deliverer = deliverers(outbox, crm.url, batch_size=20, split_after=2)
    deliverer.start()
    await until(lambda: deliverer.failures_total >= 12, what="a dozen failed attempts")
    assert outbox.dead_letters == 0 and outbox.depth == 20 and deliverer.dead_letters_total == 0
    crm.then, crm.health = "ok", 200
    await until(lambda: outbox.depth == 0, what="empty outbox")
    assert crm.stored == [e.event_id for e in events] and outbox.dead_letters == 0


async def test_while_the_crm_is_down_it_probes_its_health_and_retries_as_soon_as_it_answers(outbox, deliverers,
                                                                                          caplog):
    """The back-off here never ends on its own (its sleep never wakes): only the health probe can resume delivery."""
    slept: list[float] = []

    async def never_wakes(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.Event().wait()

    port = free_port()
    await _fill(outbox, _events(30))
    deliverer = deliverers(outbox, f"http://127.0.0.1:{port}", sleep=never_wakes, probe_every=0.05)
    deliverer.start()
    await until(lambda: deliverer.health_probes_total >= 3, what="health probes while the CRM is down")
    assert outbox.depth == 30 and len(slept) == 1
    crm = await FakeCrm(SECRET).start(port)
    try:
        with caplog.at_level(logging.INFO, logger="callcenter.bridge.delivery"):
            await until(lambda: outbox.depth == 0, what="delivery resumed by the probe")
        assert crm.health_probes >= 1 and len(slept) == 1
        assert "health check answers again; retrying now" in caplog.text
    finally:
        await crm.stop()


async def test_a_healthy_crm_that_fails_requests_gets_the_full_back_off_not_a_tight_loop(outbox, crm, deliverers):
    crm.then = "500"
    await _fill(outbox, _events(5))
    deliverer = deliverers(outbox, crm.url, backoff_first=3600, backoff_cap=3600, probe_every=0.01, split_after=100)
    deliverer.start()
    await until(lambda: deliverer.failures_total == 1)
    await asyncio.sleep(0.3)
    assert deliverer.failures_total == 1 and crm.health_probes == 0  # a 500 is not "down": no probing, no retry


def test_the_back_off_is_capped_at_5_seconds_by_default(tmp_path):
    deliverer = Deliverer.__new__(Deliverer)
    deliverer.backoff_first, deliverer.backoff_cap, deliverer._jitter = 0.2, 5.0, lambda: 1.0
    assert Deliverer.__init__.__kwdefaults__["backoff_cap"] == 5.0
    assert deliverer.backoff_delay(30) == 5.0


@pytest.mark.slow
async def test_delivery_resumes_when_the_real_crm_process_comes_back(outbox, live_crm, deliverers, crm_template):
    """A real CRM process, stopped then started on the same port: the health probe brings delivery back without
    waiting for the back-off (whose sleep never wakes here)."""

    async def never_wakes(seconds: float) -> None:
        await asyncio.Event().wait()

    crm = live_crm()
    await asyncio.to_thread(crm.start)
    events = list(synthetic.traffic(20, prefix="back"))
    deliverer = deliverers(outbox, crm.url, secret=crm_template.secret, sleep=never_wakes, probe_every=0.1)
    deliverer.start()
    await _fill(outbox, events[:10])
    await until(lambda: outbox.depth == 0, what="first delivery")
    await asyncio.to_thread(crm.stop)
    await _fill(outbox, events[10:])
    await until(lambda: deliverer.failures_total >= 1 and deliverer.health_probes_total >= 2, what="probing")
    await asyncio.to_thread(crm.start)
    await drained(outbox)
    assert sorted(crm.processed_ids()) == sorted(e.event_id for e in events)


@pytest.mark.slow
async def test_a_poison_event_does_not_stop_delivery_to_the_real_crm(outbox, live_crm, deliverers, crm_template):
    """Issue 11, finding 2, end to end: an event with occurred_at 1e300 (what a bridge without the checks at entry
    would have queued) in the middle of the traffic. The real CRM refuses it alone; the bridge sets it aside with the
    reason and delivers everything else."""
    crm = live_crm()
    await asyncio.to_thread(crm.start)
    events = list(synthetic.traffic(40, prefix="poison"))
    poison = wire.CallAnswered(event_id="poison:1e300", occurred_at=1e300, call_id="poison-x", extension="100")
    await _fill(outbox, events[:50])
    outbox._insert([(poison.event_id, time.time(), wire.encode(poison))])  # past put()'s checks, as an old bridge
    await _fill(outbox, events[50:])
    deliverer = deliverers(outbox, crm.url, secret=crm_template.secret, batch_size=30)
    deliverer.start()
    await drained(outbox)
    assert sorted(crm.processed_ids()) == sorted(e.event_id for e in events)
    [letter] = outbox.dead_letter_list()
    assert letter.event_id == poison.event_id and "ahead of this clock" in letter.reason
    assert deliverer.dead_letters_total == 1 and crm.failed_events() == 0
