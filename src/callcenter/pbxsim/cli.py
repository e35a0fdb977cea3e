"""``callcenter pbxsim``: run the simulated PBX (AMI on a TCP port) until Ctrl-C.

    callcenter pbxsim --secret-file ami.secret                            an idle PBX on 127.0.0.1:5038
    callcenter pbxsim --secret-file ami.secret --rate 0.2 --agents 2     a call every 5 s to 100 or 101
    callcenter pbxsim --secret-file ami.secret --scenario ringgroup --speed 10 --exit-after-scenarios
    callcenter pbxsim --secret-file ami.secret --scenario ringgroup --wait-for-login --port 0 --port-file port
    callcenter pbxsim --list-scenarios

The secret comes from --secret-file, the environment (CALLCENTER_PBXSIM_SECRET) or --secret (visible to other users
in the process list: avoid it outside tests); it is never printed or logged. All times are simulated seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from callcenter.pbxsim.loadgen import KNOWN_CALLERS
from callcenter.pbxsim.model import Behaviour
from callcenter.pbxsim.pbx import SimulatedPBX, resolve_scenario
from callcenter.pbxsim.scenario import Scenario, ScenarioError, builtin_scenarios
from callcenter.pbxsim.server import FAULT_KINDS, PortInUseError

SECRET_ENV = "CALLCENTER_PBXSIM_SECRET"  # noqa: S105 (the name of a variable, not a secret)
log = logging.getLogger("callcenter.pbxsim")


class UsageError(Exception):
    pass


def _seconds_or_never(value: str) -> float | None:
    if value.lower() in ("never", "none", "off"):
        return None
    return _seconds(value)


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not number >= 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: use zero or more seconds")
    return number


def _positive(value: str) -> float:
    number = _seconds(value)
    if number == 0:
        raise argparse.ArgumentTypeError(f"{value!r}: must be more than zero")
    return number


def _range(value: str) -> tuple[float, float]:
    lo, sep, hi = value.partition("-")
    try:
        low, high = float(lo), float(hi if sep else lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: write MIN-MAX in seconds, e.g. 5-30") from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f"{value!r}: need 0 <= MIN <= MAX")
    return low, high


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callcenter pbxsim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    net = p.add_argument_group("AMI server")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback; default 127.0.0.1)")
    net.add_argument("--port", type=int, default=5038, help="TCP port (default 5038; 0 picks a free one)")
    net.add_argument("--port-file", type=Path,
                     help="write the port actually bound to this file (it appears complete, never half written)")
    net.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    net.add_argument("--user", default="crm", help="AMI username (default crm)")
    net.add_argument("--secret", help=f"AMI secret (prefer --secret-file or ${SECRET_ENV})")
    net.add_argument("--secret-file", type=Path, help="file holding the AMI secret (first line)")
    pbx = p.add_argument_group("the PBX")
    pbx.add_argument("--agents", type=int, metavar="N", help="N agents with extensions 100, 101, ... (default 4)")
    pbx.add_argument("--agent", action="append", default=[], metavar="EXT[=NAME]",
                     help="an agent extension (repeatable; instead of --agents)")
    pbx.add_argument("--answer-after", type=_seconds_or_never, default=None, metavar="S|never",
                     help="agents answer by themselves after S seconds of ringing (default never: they answer "
                          "only through PJSIPNotify, i.e. the CRM's Answer button, or a scenario step)")
    pbx.add_argument("--hangup-after", type=_seconds_or_never, default=None, metavar="S|never",
                     help="agents hang up after S seconds of talk (default never)")
    pbx.add_argument("--remote-answer-after", type=_seconds_or_never, default=2.0, metavar="S|never",
                     help="outside numbers answer our outbound calls after S seconds (default 2)")
    pbx.add_argument("--remote-hangup-after", type=_seconds_or_never, default=None, metavar="S|never",
                     help="outside numbers hang up after S seconds of talk (default never)")
    pbx.add_argument("--ring-timeout", type=_positive, default=20.0, metavar="S",
                     help="Dial() rings this long before NOANSWER (default 20)")
    pbx.add_argument("--speed", type=_positive, default=1.0, metavar="F",
                     help="simulated time runs F times faster than real time (default 1)")
    sc = p.add_argument_group("scenarios")
    sc.add_argument("--scenario", action="append", default=[], metavar="FILE|NAME",
                    help="run a scenario file (or a built-in one by name); repeatable, run one after the other")
    sc.add_argument("--list-scenarios", action="store_true", help="list the built-in scenarios and exit")
    sc.add_argument("--exit-after-scenarios", action="store_true", help="stop once the scenarios have ended")
    sc.add_argument("--wait-for-login", action="store_true",
                    help="start the scenarios, the load and the fault only once an AMI client has logged in, so "
                         "that a client started after the simulator sees every call from its start")
    load = p.add_argument_group("load generator")
    load.add_argument("--rate", type=_positive, metavar="R", help="start R inbound calls per second")
    load.add_argument("--max-calls", type=int, metavar="N", help="stop the load after N calls")
    load.add_argument("--talk", type=_range, default=(5.0, 30.0), metavar="MIN-MAX",
                      help="callers talk this long once answered (default 5-30)")
    load.add_argument("--unknown-ratio", type=float, default=0.3, metavar="F",
                      help="share of callers with numbers the CRM does not know (default 0.3)")
    load.add_argument("--known-callers", type=Path, metavar="FILE",
                      help="known callers, one 'number,name' a line (default: the demo's Greek contacts)")
    load.add_argument("--seed", type=int, help="random seed for reproducible load")
    fault = p.add_argument_group("faults (for testing a client's resilience)")
    fault.add_argument("--fault", choices=FAULT_KINDS, help="inject this fault on every connected client")
    fault.add_argument("--fault-after", type=_seconds, default=10.0, metavar="S", help="when (default 10)")
    fault.add_argument("--fault-duration", type=_seconds, metavar="S",
                       help="how long a stall lasts / the port stays closed after drop or restart")
    p.add_argument("-v", "--verbose", action="store_true", help="log every session and fault")
    return p


def read_secret(args: argparse.Namespace) -> str:
    if args.secret_file is not None:
        try:
            text = args.secret_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read the secret file {args.secret_file}: {exc.strerror}") from None
        secret = text.splitlines()[0].strip() if text.strip() else ""
        if not secret:
            raise UsageError(f"the secret file {args.secret_file} is empty; write the AMI secret on its first line")
        return secret
    if args.secret:
        return str(args.secret)
    secret = os.environ.get(SECRET_ENV, "").strip()
    if secret:
        return secret
    raise UsageError(f"no AMI secret: give --secret-file FILE, set {SECRET_ENV}, or give --secret")


def read_known_callers(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the known callers file {path}: {exc.strerror}") from None
    callers = []
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        number, _, name = line.replace("\t", ",").partition(",")
        number = number.strip()
        if not number or not all(c.isdigit() or c == "+" for c in number):
            raise UsageError(f"{path}:{n}: {number!r} is not a phone number; write 'number,name'")
        callers.append((number, name.strip()))
    if not callers:
        raise UsageError(f"{path} lists no callers; write one 'number,name' a line")
    return callers


def agents_from(args: argparse.Namespace) -> dict[str, str]:
    if args.agent and args.agents is not None:
        raise UsageError("give either --agents N or --agent EXT (repeated), not both")
    if args.agent:
        agents = {}
        for item in args.agent:
            ext, _, name = str(item).partition("=")
            if not ext.isdigit():
                raise UsageError(f"--agent {item!r}: the extension must be digits, e.g. --agent 100=Alice")
            agents[ext] = name.strip()
        return agents
    count = 4 if args.agents is None else args.agents
    if not 1 <= count <= 900:
        raise UsageError(f"--agents {count}: use 1 to 900")
    return {str(100 + i): "" for i in range(count)}


async def serve(args: argparse.Namespace, secret: str, scenarios: list[Scenario],
                known: Sequence[tuple[str, str]]) -> int:
    agents = agents_from(args)
    pbx = SimulatedPBX(users={args.user: secret}, host=args.host, port=args.port, agents=agents,
                       behaviour=Behaviour(answer_after=args.answer_after, hangup_after=args.hangup_after),
                       remote=Behaviour(answer_after=args.remote_answer_after, hangup_after=args.remote_hangup_after),
                       speed=args.speed, ring_timeout=args.ring_timeout, allow_remote=args.allow_remote)
    try:
        await pbx.start()
    except PortInUseError as exc:
        print(f"callcenter pbxsim: {exc.strerror}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"callcenter pbxsim: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if args.port_file is not None:
            write_port_file(args.port_file, pbx.port)
        ext_list = ", ".join(sorted(agents))
        print(f"callcenter pbxsim: AMI on {pbx.host}:{pbx.port} (user {args.user}); agents {ext_list}; "
              f"speed {args.speed:g}. Ctrl-C stops it.", flush=True)
        if args.wait_for_login:
            print("callcenter pbxsim: waiting for an AMI client to log in", flush=True)
            while pbx.server.logins == 0 and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.02)
            if stop.is_set():
                return 0
        if args.rate:
            pbx.start_load(args.rate, agents=list(agents), known_callers=known, unknown_ratio=args.unknown_ratio,
                           talk=args.talk, max_calls=args.max_calls, seed=args.seed)
            print(f"callcenter pbxsim: {args.rate:g} calls/s to {ext_list}", flush=True)
        if args.fault:
            pbx.clock.call_later(args.fault_after, lambda: pbx.inject_fault(args.fault, args.fault_duration))
        runner = asyncio.ensure_future(_run_scenarios(pbx, scenarios))
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if args.exit_after_scenarios and scenarios:
            waiters.append(runner)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        for w in waiters:
            w.cancel()
        failed = list(pbx.errors)
        for error in failed:
            print(f"callcenter pbxsim: {error}", file=sys.stderr)
        return 1 if failed and args.exit_after_scenarios else 0
    finally:
        await pbx.stop()
        print("callcenter pbxsim: stopped", flush=True)


def write_port_file(path: Path, port: int) -> None:
    """Write the port to a temporary file, then rename it into place: whoever waits for ``path`` to appear never
    reads it empty or half written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(f"{port}\n", encoding="utf-8")
    os.replace(temporary, path)


async def _run_scenarios(pbx: SimulatedPBX, scenarios: list[Scenario]) -> None:
    for scenario in scenarios:
        print(f"callcenter pbxsim: scenario {scenario.name} ({scenario.source})", flush=True)
        run = pbx.start_scenario(scenario)
        await run.wait()
        print(f"callcenter pbxsim: scenario {scenario.name} ended"
              f"{'' if not run.errors else f' with {len(run.errors)} error(s)'}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.list_scenarios:
        for name, path in builtin_scenarios().items():
            first = next((ln[1:].strip() for ln in path.read_text(encoding="utf-8").splitlines()
                          if ln.startswith("#")), "")
            print(f"{name:20} {first}")
        return 0
    try:
        secret = read_secret(args)
        scenarios = [resolve_scenario(s) for s in args.scenario]
        known = read_known_callers(args.known_callers) if args.known_callers else list(KNOWN_CALLERS)
        agents_from(args)
        if not 0 <= args.unknown_ratio <= 1:
            raise UsageError("--unknown-ratio must be between 0 and 1")
        if args.max_calls is not None and args.max_calls < 1:
            raise UsageError("--max-calls must be at least 1")
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port {args.port} is not a TCP port (0-65535)")
        return asyncio.run(serve(args, secret, scenarios, known))
    except (UsageError, ScenarioError, ValueError) as exc:
        print(f"callcenter pbxsim: {exc}", file=sys.stderr)
        return 2
