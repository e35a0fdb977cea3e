"""Screen pop: from the PBX writing a call's ringing to the notification arriving on the agent's WebSocket.

What it measures (issue 5, item 7; target p99 < 100 ms at 50 new calls/s on this 2-core machine):
- Real parts end to end: the simulated Asterisk (SimulatedPBX, AMI on loopback) with --agents phones; the real bridge
  (bridge.daemon.Bridge as `callcenter bridge run` wires it: AMI connector, outbox, deliverer, control listener);
  the real CRM (`callcenter serve`: uvicorn with the ASGI application, a throwaway SQLite database, the in-process
  channel layer); and one WebSocket client per agent at /ws/callcenter/, logged in with its own session (made with
  Django's session engine, as the login form would).
- Calls: at each rate (--rates, default 10, 50 and 200 new calls/s) for --seconds, inbound calls from numbers used
  once each (a third of them belong to contacts, some carry a caller name) ring the agents in turn; each phone rings
  for a while, is answered, and the caller hangs up, all before that agent's next call (a phone still busy would
  refuse it), so every call makes the ringing, answered and ended events and pushes of a real one, and the CRM
  creates its row and activity.
- The clock: everything is stamped with time.time() on this one machine. The start is when the simulator has handed
  the call's DialBegin (what the bridge announces the ringing from) to the bridge's socket: a sink of the simulator's
  event stream, run right after the AMI server wrote the event. The end is when the agent's client receives the
  message the screen pops its window for (`call.changed` new and incoming, or `leg.ringing` with "create call when
  answered", for its own resource), matched by the caller's number.
- lost = calls rung (DialBegin written) without a pop within --deadline seconds after the rate's last call.
- The anchor, measured in the same run on the same server and connections: the WebSocket ping round trip (the
  screen's `{"type":"ping"}`, answered by the consumer with a pong), --pings per second from random clients while
  the calls run. The ratio is pop p50 / ping p50: how many "trips to the CRM and back" a pop costs. Printed beside
  it: the bridge-to-CRM delivery time (the deliverer's POST of a batch until the CRM's receipt), which the pop
  contains.
- Processes: the CRM runs alone in a child process (one uvicorn worker, as `callcenter serve` runs); the simulator,
  the bridge and the 200 clients share this process's event loop. On two cores that gives the CRM one core to
  itself, as it would have on its server, while the PBX, the bridge and the browsers, which live on other machines
  in production, share the other. Their own delays (the bridge reading AMI, the clients reading frames) are inside
  the figure, so it is an upper bound of what the CRM adds. This process collects its garbage between rates, not
  during them: full collections of a heap that holds all of those parts (and Django, from the set-up) stalled it for
  20-120 ms several times a run, which separate, smaller processes would not. The CRM collects as in production.

Output: progress on stderr; on stdout one summary line per rate, starting with "screen_pop rate=".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common
from _common import child_environment, cpu_seconds, free_port, interrupt_on_signals, log, percentile, serving

TARGET_P99_MS = 100.0
TARGET_RATE = 50.0
FIRST_EXTENSION = 100
CONTACT_SHARE = 3  # every third caller is a contact
SECRET_KEY = "screen-pop-bench-key-" + "0123456789abcdef" * 3


def fmt_ms(seconds: float) -> str:
    return _common.fmt_ms(seconds, small_decimals=1)


def national(n: int) -> str:
    """The n-th caller's number (used once): a Greek mobile."""
    return f"69{n:08d}"


def as_reported(rng: random.Random, number: str) -> str:
    return rng.choice(("", "", "+30", "0030")) + number


def extensions(agents: int) -> list[str]:
    return [str(FIRST_EXTENSION + index) for index in range(agents)]


# --------------------------------------------------------------------------------------------------------------------
# The CRM: a throwaway SQLite database prepared here, served by `callcenter serve` in a child process
# --------------------------------------------------------------------------------------------------------------------


def crm_environment(database: Path) -> dict[str, str]:
    return child_environment(f"sqlite:///{database}", SECRET_KEY)


@dataclass(frozen=True)
class AgentLogin:
    extension: str
    resource_id: int
    session_key: str


def agent_login(username: str, extension: str) -> AgentLogin:
    """An agent (a resource with the Call Center on and new-call notification) and a session for it made with
    Django's session engine, as the login form would make it. Django must be set up."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from callcenter.resources.actions import ensure_resource

    resource = ensure_resource(username, first_name="Πράκτορας", last_name=extension, extension=extension,
                               options={"cc_active": True, "notify_new_call": True})
    store = SessionStore()
    store[SESSION_KEY] = str(resource.user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = resource.user.get_session_auth_hash()
    store.create()
    assert store.session_key is not None
    return AgentLogin(extension, resource.pk, store.session_key)


def prepare_crm(database: Path, workdir: Path, agents: int, contact_numbers: Sequence[str]) -> list[AgentLogin]:
    """Migrate; the settings, agents and contacts through the product's actions; the bridge `demo` (its secret in
    workdir); one session per agent. Returns the agents' logins."""
    os.environ.update(crm_environment(database))
    os.environ["DJANGO_SETTINGS_MODULE"] = "callcenter.crm.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections, transaction

    from callcenter import demo_product
    from callcenter.activities.actions import ensure_activity_type
    from callcenter.activities.models import ActivityKind
    from callcenter.contacts.actions import MatchRules, create_contact
    from callcenter.crm import demo
    from callcenter.resources.actions import update_call_center_settings
    from callcenter.resources.models import PhoneSystem

    call_command("migrate", verbosity=0, interactive=False)
    logins = []
    with transaction.atomic():
        phone_call = ensure_activity_type("Τηλεφώνημα", ActivityKind.PHONE_CALL)
        update_call_center_settings(phone_system=PhoneSystem.ASTERISK, digits_to_scan=10, internal_digits=3,
                                    incoming_activity_type=phone_call, outgoing_activity_type=phone_call,
                                    default_activity_type=phone_call, phone_region="GR")
        for index, extension in enumerate(extensions(agents)):
            logins.append(agent_login(f"agent{index + 1:03d}", extension))
        rules = MatchRules.current()
        names = [spec for spec in demo.generated_contacts(min(len(contact_numbers), 500))]
        for index, number in enumerate(contact_numbers):
            spec = names[index % len(names)]
            create_contact(first_name=spec.first_name, last_name=spec.last_name, company=spec.company,
                           phones={1: number}, rules=rules)
    call_command("add_bridge", demo_product.BRIDGE_ID, secret_file=workdir / demo_product.BRIDGE_SECRET_NAME,
                 stdout=open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
    connections.close_all()
    return logins


def crm_server(database: Path, port: int, log_path: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "callcenter", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log"]
    return serving(command, port, crm_environment(database), log_path, name="the CRM", timeout=60)


# --------------------------------------------------------------------------------------------------------------------
# The agents' screens: one WebSocket each, recording when each pop arrives
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Screen:
    login: AgentLogin
    pops: dict[str, float] = field(default_factory=dict)  # caller's national number -> time.time() of its pop
    pings: deque[float] = field(default_factory=deque)  # send times of the pings waiting for their pong
    round_trips: list[float] = field(default_factory=list)
    messages: int = 0
    socket: Any = None
    closed: str = ""

    async def run(self, url: str, origin: str, ready: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        from callcenter import numbers

        try:
            async with connect(url, origin=origin, additional_headers={"Cookie": f"sessionid={self.login.session_key}"},
                               open_timeout=30, ping_interval=None) as ws:
                self.socket = ws
                ready.set()
                async for raw in ws:
                    now = time.time()
                    self.messages += 1
                    message = json.loads(raw)
                    kind = message.get("type")
                    if kind == "pong":
                        if self.pings:
                            self.round_trips.append(now - self.pings.popleft())
                    elif message.get("resource_id") == self.login.resource_id and (
                            (kind == "call.changed" and message.get("new") and message.get("incoming"))
                            or kind == "leg.ringing"):  # what the screen pops for (callcenter.js, handle())
                        caller = numbers.digits_only(message.get("number", ""))[-10:]
                        self.pops.setdefault(caller, now)
        except Exception as exc:  # noqa: BLE001 - reported with the figures: a closed screen loses its pops
            self.closed = f"{type(exc).__name__}: {exc}"
        finally:
            ready.set()
            self.socket = None

    async def ping(self) -> None:
        ws = self.socket
        if ws is not None:
            self.pings.append(time.time())
            await ws.send('{"type":"ping"}')


# --------------------------------------------------------------------------------------------------------------------
# One rate
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class RateResult:
    rate: float
    placed: int
    rung: int
    popped: int
    latencies: list[float]
    round_trips: list[float]
    posts: list[float]
    behind: float  # how late the last call started (the machine could not keep the rate)
    crm_cpu: float  # CPU seconds the CRM process used during the rate
    load_cpu: float  # CPU seconds this process (simulator, bridge, screens) used
    seconds: float  # wall seconds the rate took (calls and the wait for the last pops)


class Ringing:
    """A sink of the simulator's event stream, after its AMI server's: when each caller's DialBegin was written."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def __call__(self, event: Any) -> None:
        if event.name != "DialBegin":
            return
        now = time.time()
        headers = dict(event.headers)
        if headers.get("DestChannel", "").startswith("PJSIP/trunk"):
            return
        caller = headers.get("CallerIDNum", "")
        digits = "".join(ch for ch in caller if ch.isdigit())[-10:]
        self.at.setdefault(digits, now)


class Trace:
    """--breakdown: when each call's ringing left the bridge's connector (emit), and when the POST that carried it
    began and got its answer, keyed like Ringing."""

    def __init__(self) -> None:
        self.emitted: dict[str, float] = {}
        self.posted: dict[str, float] = {}
        self.answered: dict[str, float] = {}
        self._in_flight: dict[int, list[str]] = {}

    def emit(self, event: Any) -> None:
        from callcenter import wire

        if isinstance(event, wire.CallRinging):
            self.emitted.setdefault(event.remote_number[-10:], time.time())

    def request(self, request: Any) -> None:
        now = time.time()
        body = json.loads(request.content)
        ringing = [event["remote_number"][-10:] for event in body.get("events", ())
                   if event.get("type") == "call.ringing"]
        for number in ringing:
            self.posted.setdefault(number, now)
        self._in_flight[id(request)] = ringing

    def response(self, response: Any) -> None:
        now = time.time()
        for number in self._in_flight.pop(id(response.request), ()):
            self.answered.setdefault(number, now)

    def log(self, ringing: Ringing, pops: dict[str, float], numbers: Sequence[str]) -> None:
        stages = {"PBX write -> bridge emit": (ringing.at, self.emitted), "emit -> POST start": (self.emitted,
                  self.posted), "POST start -> CRM answer": (self.posted, self.answered),
                  "POST start -> pop": (self.posted, pops)}
        for name, (first, second) in stages.items():
            gaps = sorted(second[n] - first[n] for n in numbers if n in first and n in second)
            if gaps:
                log(f"  {name}: p50={fmt_ms(percentile(gaps, 0.5))} p99={fmt_ms(percentile(gaps, 0.99))} "
                    f"max={fmt_ms(gaps[-1])}")
        slowest = sorted((n for n in numbers if n in pops and n in ringing.at),
                         key=lambda n: pops[n] - ringing.at[n])[-5:]
        for n in slowest:
            start = ringing.at[n]
            marks = [f"{name} +{fmt_ms(at[n] - start)}" for name, at in (("emit", self.emitted), ("POST", self.posted),
                     ("answer", self.answered), ("pop", pops)) if n in at]
            log(f"  slow call {n} at {time.strftime('%H:%M:%S', time.localtime(start))}.{int(start % 1 * 1000):03d}: "
                f"{', '.join(marks)}")


async def run_rate(rate: float, options: argparse.Namespace, pbx: Any, screens: list[Screen], ringing: Ringing,
                   posts: list[float], numbers_iter: Iterator[tuple[str, str]], crm_pid: int,
                   trace: Trace | None = None) -> RateResult:
    from callcenter.pbxsim import Behaviour

    rng = random.Random(int(rate * 1000) + options.seed)
    exts = [screen.login.extension for screen in screens]
    # Each phone rings, is answered, and the caller hangs up before its next call comes (len(exts) / rate s later).
    spacing = len(exts) / rate
    ring = min(3.0, 0.3 * spacing)
    talk = min(5.0, 0.3 * spacing)
    for ext in exts:
        pbx.set_behaviour(ext, Behaviour(answer_after=ring))
    for screen in screens:
        screen.round_trips.clear()
        screen.pings.clear()
    del posts[:]
    total = max(1, round(rate * options.seconds))
    placed: list[str] = []
    loop = asyncio.get_running_loop()
    stop_pinging = asyncio.Event()

    async def pinger() -> None:
        interval = 1.0 / options.pings
        while not stop_pinging.is_set():
            await rng.choice(screens).ping()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_pinging.wait(), interval)

    pinging = asyncio.create_task(pinger())
    crm_cpu, load_cpu = cpu_seconds(crm_pid), cpu_seconds(os.getpid())
    start = loop.time()
    behind = 0.0
    for index in range(total):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            behind = -delay
            await asyncio.sleep(0)  # let the bridge and the screens read even when behind
        number, reported = next(numbers_iter)
        name = rng.choice(("", "", "Σπύρος Μαυρίδης", "Άννα Νικολάου"))
        pbx.inbound_call(reported, exts[index % len(exts)], name=name, hangup_after=talk)
        placed.append(number)
    # Wait for the pops (or the deadline).
    deadline = loop.time() + options.deadline
    popped_by: dict[str, float] = {}
    while loop.time() < deadline:
        popped_by = {number: at for screen in screens for number, at in screen.pops.items()}
        if all(number in ringing.at and number in popped_by for number in placed):
            break
        await asyncio.sleep(0.05)
    stop_pinging.set()
    await pinging
    crm_cpu, load_cpu = cpu_seconds(crm_pid) - crm_cpu, cpu_seconds(os.getpid()) - load_cpu
    seconds = loop.time() - start
    rung = [number for number in placed if number in ringing.at]
    latencies = sorted(popped_by[number] - ringing.at[number] for number in rung if number in popped_by)
    round_trips = sorted(rt for screen in screens for rt in screen.round_trips)
    if trace is not None:
        trace.log(ringing, popped_by, rung)
    # Let the last calls end and reach the CRM before the next rate.
    await asyncio.sleep(ring + talk + 0.5)
    return RateResult(rate, len(placed), len(rung), len(latencies), latencies, round_trips, sorted(posts), behind,
                      crm_cpu, load_cpu, seconds)


def report(result: RateResult, agents: int) -> str:
    rate = f"{result.rate:g}"
    parts = [f"screen_pop rate={rate}/s agents={agents}:"]
    if result.latencies:
        parts.append(f"p50={fmt_ms(percentile(result.latencies, 0.5))} p99={fmt_ms(percentile(result.latencies, 0.99))}"
                     f" max={fmt_ms(result.latencies[-1])}")
    else:
        parts.append("p50=- p99=- max=-")
    parts.append(f"lost={result.rung - result.popped}/{result.rung}")
    line = " ".join(parts)
    if result.placed != result.rung:
        line += f" (and {result.placed - result.rung} of {result.placed} calls never rang)"
    if result.round_trips:
        ping = percentile(result.round_trips, 0.5)
        ratio = percentile(result.latencies, 0.5) / ping if result.latencies and ping else float("nan")
        line += (f" | anchor: WebSocket ping round trip on the same server p50={fmt_ms(ping)} "
                 f"(n={len(result.round_trips)}), pop/ping ratio={ratio:.1f}x")
    if result.posts:
        line += f" | bridge->CRM POST p50={fmt_ms(percentile(result.posts, 0.5))} (n={len(result.posts)})"
    line += (f" | CPU per call: CRM {fmt_ms(result.crm_cpu / max(1, result.placed))} "
             f"({result.crm_cpu / result.seconds:.0%} of a core), PBX+bridge+screens "
             f"{fmt_ms(result.load_cpu / max(1, result.placed))} ({result.load_cpu / result.seconds:.0%})")
    if result.behind > 0.05:
        line += f" | calls started up to {result.behind:.2f}s late"
    if result.rate == TARGET_RATE:
        ok = bool(result.latencies) and result.popped == result.rung and \
            percentile(result.latencies, 0.99) * 1000 < TARGET_P99_MS
        line += f" | target p99<{TARGET_P99_MS:g}ms at {TARGET_RATE:g}/s: {'OK' if ok else 'MISSED'}"
    return line + f" | loadavg={os.getloadavg()[0]:.1f}"


# --------------------------------------------------------------------------------------------------------------------
# The whole run
# --------------------------------------------------------------------------------------------------------------------


async def run_all(options: argparse.Namespace, workdir: Path, crm_port: int, crm_pid: int, logins: list[AgentLogin],
                  calls: list[tuple[str, str]]) -> list[RateResult]:
    import httpx

    from callcenter import demo_product
    from callcenter.bridge.daemon import Bridge
    from callcenter.bridge.settings import load_settings
    from callcenter.pbxsim import SimulatedPBX

    ami_secret = "screen-pop-ami-" + os.urandom(8).hex()
    (workdir / demo_product.AMI_SECRET_NAME).write_text(ami_secret + "\n", encoding="utf-8")
    exts = [login.extension for login in logins]
    results: list[RateResult] = []
    async with SimulatedPBX(users={demo_product.AMI_USER: ami_secret}, agents={ext: "" for ext in exts},
                            ring_timeout=30.0) as pbx:
        ringing = Ringing()
        pbx.core.sinks.append(ringing)  # after the AMI server's sink: the bytes are written when this runs
        settings_path = workdir / demo_product.BRIDGE_SETTINGS_NAME
        demo_product.write_private(settings_path, demo_product.bridge_settings_text(
            crm_address="127.0.0.1", crm_port=crm_port, bridge_port=free_port(), ami_port=pbx.port, extensions=exts))
        settings = load_settings(settings_path, env={})
        posts: list[float] = []
        sent: dict[int, float] = {}

        trace = Trace() if options.breakdown else None

        async def on_request(request: httpx.Request) -> None:
            sent[id(request)] = time.perf_counter()
            if trace is not None:
                trace.request(request)

        async def on_response(response: httpx.Response) -> None:
            began = sent.pop(id(response.request), None)
            if began is not None and response.status_code == 200:
                posts.append(time.perf_counter() - began)
            if trace is not None:
                trace.response(response)

        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0),
                                   limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                                   event_hooks={"request": [on_request], "response": [on_response]})
        bridge = Bridge(settings, handle_signals=False, deliverer_options={"client": client})
        if trace is not None:
            emit = bridge.emit

            def traced_emit(event: Any) -> None:
                trace.emit(event)
                emit(event)

            bridge.emit = traced_emit  # type: ignore[method-assign]  # the connector is given self.emit at start
        screens = [Screen(login) for login in logins]
        tasks: list[asyncio.Task[None]] = []
        try:
            await bridge.start()
            quiet_console()
            deadline = time.monotonic() + 20
            while not bridge.pbx_connected:
                if time.monotonic() > deadline:
                    raise RuntimeError("the bridge did not connect to the simulated PBX within 20 s")
                await asyncio.sleep(0.05)
            log(f"bridge connected to the simulator; opening {len(screens)} WebSockets...")
            url, origin = f"ws://127.0.0.1:{crm_port}/ws/callcenter/", f"http://127.0.0.1:{crm_port}"
            for start in range(0, len(screens), 25):  # a few at a time, as screens open over a morning
                batch = screens[start:start + 25]
                readies = [asyncio.Event() for _ in batch]
                tasks += [asyncio.create_task(screen.run(url, origin, ready))
                          for screen, ready in zip(batch, readies, strict=True)]
                await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 60)
            refused = [screen for screen in screens if screen.socket is None]
            if refused:
                raise RuntimeError(f"{len(refused)} WebSockets were refused or closed: {refused[0].closed}")
            await settle(bridge)
            numbers_iter = iter(calls)
            for rate in options.rates:
                log(f"rate {rate:g}/s: {round(rate * options.seconds)} calls over {options.seconds:g}s...")
                # This process holds what the PBX, the bridge and the browsers would each hold on their own machines,
                # and Django from the set-up: its full collections stalled it for 20-120 ms several times a run. It
                # collects between rates instead (the CRM collects as it does in production).
                gc.collect()
                gc.freeze()
                gc.disable()
                try:
                    result = await run_rate(rate, options, pbx, screens, ringing, posts, numbers_iter, crm_pid, trace)
                finally:
                    gc.enable()
                results.append(result)
                line = report(result, len(screens))
                print(line, flush=True)
                closed = [screen for screen in screens if screen.socket is None]
                if closed:
                    log(f"  {len(closed)} WebSockets closed: {closed[0].closed}")
                await settle(bridge)
        finally:
            for screen in screens:
                if screen.socket is not None:
                    with contextlib.suppress(Exception):
                        await screen.socket.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await bridge.shutdown()
            await client.aclose()
    return results


def quiet_console() -> None:
    """Warnings and errors only on the console: the bridge sets the root logger to INFO for its error log, and a
    line per delivery would bury the figures."""
    import logging

    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)


async def settle(bridge: Any, limit: float = 30.0) -> None:
    """Until the bridge's outbox is empty (every event so far is in the CRM), at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        outbox = bridge.outbox
        if outbox is None or (outbox.depth == 0 and outbox.pending == 0):
            return
        await asyncio.sleep(0.05)
    log(f"the bridge's outbox did not empty within {limit:g}s")


def plan_calls(options: argparse.Namespace) -> list[tuple[str, str]]:
    """(national number, as the PBX reports it) of every call of the run; each number is used once."""
    rng = random.Random(options.seed)
    total = sum(max(1, round(rate * options.seconds)) for rate in options.rates)
    base = rng.randrange(10_000_000, 80_000_000)
    return [(national(base + index), as_reported(rng, national(base + index))) for index in range(total)]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10,50,200", help="new calls per second, comma-separated (default "
                                                             "10,50,200)")
    parser.add_argument("--agents", type=int, default=200, help="agents, each with a phone and a screen (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of calls at each rate (default 20)")
    parser.add_argument("--deadline", type=float, default=5.0,
                        help="seconds after a rate's last call by which every pop must have arrived (default 5)")
    parser.add_argument("--pings", type=float, default=10.0, help="anchor pings per second (default 10)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (database, logs)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also log, per rate, how long each stage took (bridge, POST, CRM) and the slowest calls")
    options = parser.parse_args(argv)
    try:
        options.rates = [float(rate) for rate in options.rates.split(",") if rate.strip()]
    except ValueError:
        parser.error(f"--rates {options.rates!r}: give numbers of calls per second, such as 10,50,200")
    if not options.rates or min(options.rates) <= 0:
        parser.error("--rates: give at least one positive rate")
    if not 1 <= options.agents <= 900:
        parser.error("--agents: from 1 to 900 (extensions 100-999)")
    if options.seconds <= 0 or options.deadline <= 0 or options.pings <= 0:
        parser.error("--seconds, --deadline and --pings must be positive")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    interrupt_on_signals()
    workdir = Path(tempfile.mkdtemp(prefix="screen_pop-"))
    try:
        calls = plan_calls(options)
        database = workdir / "crm.sqlite3"
        log(f"CRM database {database}: migrate, {options.agents} agents with sessions, "
            f"{len(calls[::CONTACT_SHARE]):,} contacts...")
        logins = prepare_crm(database, workdir, options.agents, [number for number, _r in calls[::CONTACT_SHARE]])
        port = free_port()
        with crm_server(database, port, workdir / "crm.log") as crm:
            log(f"CRM serving on 127.0.0.1:{port} (child process {crm.pid})")
            asyncio.run(run_all(options, workdir, port, crm.pid, logins, calls))
        return 0
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if options.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
