"""Proof: the CRM scales out. Two CRM processes on one PostgreSQL database with Redis as the channel layer: the
bridge posts to process A, the agents' screens listen on process B, and every pop arrives; a process killed while
calls flow loses nothing.

How (every part real, on loopback):
- a throwaway PostgreSQL database (`migrate`, `add-bridge`, `seed-demo`, then 40 agents at extensions 200-239, each
  with a session as the login form makes it) and an empty Redis database (a free DB number of the server at
  127.0.0.1:6379, flushed at the end);
- the simulated Asterisk (pbxsim, in a thread of this process) with the 40 phones; inbound calls at 10 calls/s to
  them in turn (each phone gets one every 4 s, rings 0.6 s and talks 1-2.5 s, or the caller gives up after 0.3 s);
- the real bridge, `callcenter bridge run`, posting to process A;
- `callcenter serve` processes and one WebSocket per agent and process at /ws/callcenter/ (the Call Center screen's
  live socket, bench/screen_pop.py's client), each logged in with its agent's session cookie.
Pop latency is from the PBX writing the call's DialBegin (time.time(), in this process) to the agent's socket
receiving the message the screen pops for (`call.changed` new and incoming, for its own resource).

Phases (--seconds of calls each, default 30, --quick 10):
1. one process: A alone with the in-process channel layer (no Redis), the screens on A: the one-process figure;
2. scale-out: A and B, both with CALLCENTER_REDIS_URL; the bridge still posts to A; every agent has a screen on B
   (the figure) and one on A (the same calls through Redis without the second process, for reference);
3. kill: calls go on while A is killed (SIGKILL) and started again 3 s later on the same port; the bridge keeps its
   events and delivers them once A is back; then the calls stop and the PBX goes idle.
Checked: in phases 1 and 2 every call pops on every screen it should (on B in phase 2) within 10 s of its end; in
phase 3 no screen on B closes, and over the whole run every leg the PBX rang is one call row in PostgreSQL (0 lost,
0 duplicated), every row and leg ended, no event failed. Printed: p50 and p99 pop latency of each phase, and how
many of phase 3's calls popped on B. That count is not required to be all: a push leaves after its commit, so the
pop of a call that A had stored just before it was killed dies with A (the call itself is stored; the screen's list
shows it when it next loads), and the proof says when such calls rang relative to the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from proof import _stack
from proof._stack import BridgeProcess, CrmServer, Database, PbxThread, Results, fmt_ms, log, percentile

sys.path.insert(0, str(_stack.ROOT / "bench"))
from screen_pop import AgentLogin, Screen, agent_login  # noqa: E402 - bench/ is not a package; its client is reused

NAME = "scale_out"
RATE = 10.0
AGENTS = 40
FIRST_EXTENSION = 200
POP_DEADLINE_S = 10.0
DEFAULT_REDIS = "redis://127.0.0.1:6379"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pg-url", default=_stack.DEFAULT_PG_URL,
                        help="a PostgreSQL database to connect to for creating the throwaway one")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS, help=f"the Redis server (default {DEFAULT_REDIS})")
    parser.add_argument("--seconds", type=float, default=None, help="seconds of calls per phase (default 30; --quick"
                                                                    " 10)")


# ---- set-up -------------------------------------------------------------------------------------------------------


def make_agents(db: Database, count: int) -> list[AgentLogin]:
    """``count`` agents (resources with the Call Center on and new-call notification), each with a session made
    with Django's session engine, as the login form would."""
    os.environ.update(_stack.crm_environment(db))
    os.environ["DJANGO_SETTINGS_MODULE"] = "callcenter.crm.settings"
    import django

    django.setup()
    from django.db import connections, transaction

    logins = []
    with transaction.atomic():
        for index in range(count):
            extension = str(FIRST_EXTENSION + index)
            logins.append(agent_login(f"scale{extension}", extension))
    connections.close_all()
    return logins


@contextlib.contextmanager
def redis_database(server: str) -> Any:
    """The URL of an empty database of the Redis ``server`` (the first empty one from 15 down), flushed at the
    end."""
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{server}/{number}")
        if client.dbsize() == 0:
            break
        client.close()
    else:
        raise RuntimeError(f"no empty database on the Redis server {server} (1-15 all hold keys)")
    log(f"redis: using the empty database {number}")
    try:
        yield f"{server}/{number}"
    finally:
        client.flushdb()
        client.close()
        log(f"redis: flushed database {number}")


# ---- screens --------------------------------------------------------------------------------------------------------


class Screens:
    """One WebSocket per agent on a CRM process, in the PBX thread's event loop."""

    def __init__(self, pbx: PbxThread, logins: list[AgentLogin], port: int) -> None:
        self.pbx = pbx
        self.screens = [Screen(login) for login in logins]
        self.port = port
        self.tasks: list[asyncio.Task[None]] = []

    def open(self) -> Screens:
        async def open_all() -> None:
            url, origin = f"ws://127.0.0.1:{self.port}/ws/callcenter/", f"http://127.0.0.1:{self.port}"
            readies = [asyncio.Event() for _ in self.screens]
            self.tasks = [asyncio.create_task(screen.run(url, origin, ready))
                          for screen, ready in zip(self.screens, readies, strict=True)]
            await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 60)

        self.pbx.run(open_all())
        refused = [screen.closed for screen in self.screens if screen.socket is None]
        if refused:
            raise RuntimeError(f"{len(refused)} WebSockets on port {self.port} were refused or closed: {refused[0]}")
        return self

    def pops(self) -> dict[str, float]:
        def collect() -> dict[str, float]:
            return {number: at for screen in self.screens for number, at in screen.pops.items()}

        return dict(self.pbx.call(collect))

    def closed(self) -> list[str]:
        return [screen.closed for screen in self.screens if screen.socket is None]

    def close(self) -> None:
        async def close_all() -> None:
            for screen in self.screens:
                if screen.socket is not None:
                    with contextlib.suppress(Exception):
                        await screen.socket.close()
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.pbx.run(close_all(), timeout=30)


def calls_of_phase(pbx: PbxThread, seconds: float) -> list[str]:
    """Calls at RATE for ``seconds``; the callers' numbers (last 10 digits) placed."""
    first = pbx.calls_started
    pbx.set_rate(RATE)
    time.sleep(seconds)
    pbx.set_rate(0)
    numbers: list[str] = pbx.call(lambda: list(pbx.driver.numbers[first:]))
    return numbers


def wait_pops(pbx: PbxThread, screens: Screens, numbers: list[str]) -> tuple[list[float], list[str]]:
    """(sorted latencies, numbers that never popped) once every call popped or POP_DEADLINE_S passed."""
    deadline = time.monotonic() + POP_DEADLINE_S
    while True:
        pops = screens.pops()
        rang = pbx.record.rang_by_number
        missing = [n for n in numbers if n not in pops or n not in rang]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    latencies = sorted(pops[n] - rang[n] for n in numbers if n in pops and n in rang)
    return latencies, missing


def figure(latencies: list[float]) -> str:
    if not latencies:
        return "p50 - p99 -"
    return f"p50 {fmt_ms(percentile(latencies, 0.5))} p99 {fmt_ms(percentile(latencies, 0.99))}"


# ---- the proof ------------------------------------------------------------------------------------------------------


def run(options: argparse.Namespace, results: Results, workdir: Path) -> None:
    seconds = options.seconds or (10.0 if options.quick else 30.0)
    with _stack.database("postgres", workdir, options.pg_url) as db, redis_database(options.redis_url) as redis_url:
        log("postgres: migrate, add-bridge, seed-demo, agents and sessions ...")
        secret_file = _stack.prepare_crm(db, workdir)
        logins = make_agents(db, AGENTS)
        ami_secret = "proof-ami-" + os.urandom(8).hex()
        pbx = PbxThread([login.extension for login in logins], ami_secret)
        opened: list[Screens] = []
        servers: list[CrmServer | BridgeProcess] = []
        try:
            # 1. One process, the in-process channel layer.
            crm_a = CrmServer(db, workdir, label="crm-a-alone")
            bridge = BridgeProcess(workdir, crm_port=crm_a.port, secret_file=secret_file, ami_port=pbx.port,
                                   ami_secret=ami_secret)
            servers += [crm_a, bridge]
            crm_a.start()
            bridge.start()
            alone = Screens(pbx, logins, crm_a.port).open()
            opened.append(alone)
            log(f"phase 1, one process: A on {crm_a.port} (no Redis), {AGENTS} screens on A, {RATE:g} calls/s for "
                f"{seconds:g} s")
            numbers = calls_of_phase(pbx, seconds)
            one_latencies, one_missing = wait_pops(pbx, alone, numbers)
            log(f"  {len(numbers)} calls: {figure(one_latencies)}, {len(one_missing)} without a pop")
            alone.close()
            crm_a.stop()

            # 2. Two processes with Redis: the bridge posts to A, the screens listen on B (and on A, for reference).
            crm_a = CrmServer(db, workdir, label="crm-a", port=crm_a.port, CALLCENTER_REDIS_URL=redis_url)
            crm_b = CrmServer(db, workdir, label="crm-b", CALLCENTER_REDIS_URL=redis_url)
            servers += [crm_a, crm_b]
            crm_a.start()
            crm_b.start()
            on_b = Screens(pbx, logins, crm_b.port).open()
            on_a = Screens(pbx, logins, crm_a.port).open()
            opened += [on_b, on_a]
            _stack.wait_until(lambda: bridge.metrics()["callcenter_bridge_outbox_depth"] == 0,
                              "the bridge to deliver to A again", timeout=120, interval=0.2)
            log(f"phase 2, scale-out: A on {crm_a.port} and B on {crm_b.port} with Redis; the bridge posts to A; "
                f"screens on B and on A; {RATE:g} calls/s for {seconds:g} s")
            numbers = calls_of_phase(pbx, seconds)
            b_latencies, b_missing = wait_pops(pbx, on_b, numbers)
            a_latencies, a_missing = wait_pops(pbx, on_a, numbers)
            log(f"  {len(numbers)} calls: on B {figure(b_latencies)}, {len(b_missing)} without a pop; on A "
                f"{figure(a_latencies)}, {len(a_missing)} without a pop")

            # 3. A killed while calls flow, started again.
            log(f"phase 3: calls at {RATE:g}/s; A killed (SIGKILL) after {seconds / 3:.0f} s, started again 3 s later")
            on_a.close()
            first = pbx.calls_started
            pbx.set_rate(RATE)
            time.sleep(seconds / 3)
            crm_a.kill()
            killed_at = time.time()
            time.sleep(3)
            crm_a.start()
            time.sleep(seconds / 3)
            pbx.set_rate(0)
            kill_numbers: list[str] = pbx.call(lambda: list(pbx.driver.numbers[first:]))
            _stack.settle(pbx, bridge, db)
            kill_latencies, kill_missing = wait_pops(pbx, on_b, kill_numbers)
            log(f"  {len(kill_numbers)} calls; {len(kill_numbers) - len(kill_missing)} popped on B")
            rang = pbx.record.rang_by_number
            near_kill = [rang[n] - killed_at for n in kill_missing if n in rang]
            if kill_missing:
                log(f"  calls without a pop on B rang at {', '.join(f'{t:+.2f}' for t in near_kill)} s from the kill")
            bridge.stop()
            seen = _stack.compare(pbx.record, db)
            closed_b = on_b.closed()
        finally:
            for screens in opened:
                screens.close()
            for server in servers:
                server.stop()
            pbx.close()
    results.add(
        f"scale-out: bridge -> CRM process A, {AGENTS} agents' WebSockets on process B (PostgreSQL, Redis channel "
        f"layer), {RATE:g} calls/s: every pop arrives",
        f"two processes {figure(b_latencies)} ({len(b_latencies)} pops, {len(b_missing)} lost); one process "
        f"{figure(one_latencies)} ({len(one_latencies)} pops, {len(one_missing)} lost); same process via Redis "
        f"{figure(a_latencies)}",
        not b_missing and not one_missing and not a_missing and bool(b_latencies),
    )
    results.add(
        "scale-out: CRM process A SIGKILLed while calls flow, started again: nothing lost",
        f"{seen.pbx_legs:,} legs rung in the run, {seen.stored:,} stored once; lost {len(seen.missing)}, "
        f"duplicated {seen.duplicated}, open {seen.open_after}, failed {seen.failed_events}; "
        f"{len(kill_numbers) - len(kill_missing)} of {len(kill_numbers)} calls of the kill phase popped on B"
        f"{'' if not near_kill else f' (the others rang {min(near_kill):+.1f} to {max(near_kill):+.1f} s from'}"
        f"{'' if not near_kill else ' the kill)'}"
        f"{'' if not closed_b else f'; {len(closed_b)} screens on B closed ({closed_b[0][:100]})'}",
        not seen.missing and seen.duplicated == 0 and seen.open_after == 0 and seen.failed_events == 0
        and not closed_b,
    )


def main(argv: list[str] | None = None) -> int:
    return _stack.run_proof_module(NAME, __doc__ or "", add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
