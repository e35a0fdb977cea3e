"""Live faults: how fast the bridge notices a lost PBX, reconnects and reconciles, on the real Asterisk 22.

What it does (tests/live's harness: the Asterisk 22 + chan_pjsip lab of ../shared/asterisk-pjsip with SIPp phones,
the real CRM `callcenter serve` on SQLite, the real bridge `callcenter bridge run`, all child processes). Each round
has its own Asterisk, CRM and bridge, and one answered inbound call (00302101234567 -> Alice, 100) talking ~3 s
when the fault comes. The PBX is quiet (no chatter): the bridge hears from it during the call only through the
answers to its own Ping, every 4 s, as on a small office PBX.
- pbx-kill9: Asterisk SIGKILLed, started again 3 s later on the same directory and ports;
- pbx-restart: `core restart now` (Asterisk hangs up every call, says so, and starts again in the same process);
- bridge-kill9: the bridge SIGKILLed; the caller hangs up while it is dead; the bridge started again 2 s later;
- secret (once): the AMI secret changed on the PBX (manager.conf + manager reload) and the bridge restarted: its
  logins are refused (counted over --refused seconds from the first; the call ends meanwhile), then it is
  restarted with the new secret.

Threads sample every 10 ms: the bridge's /health (pbx_connected), the CRM's Bridge row (pbx_connected, as the
bridge's LinkState set it), Alice's open legs in the CRM, and whether the AMI port accepts TCP connections.

Figures, in seconds, median and max over the rounds:
- notice: the fault -> the bridge's /health says the PBX link is down (bridge), -> the CRM's Bridge row says so (CRM)
- accept: Asterisk (re)started -> its AMI accepts TCP connections. The ANCHOR: how long Asterisk itself takes to come
  back, which no bridge can beat; every other figure is also given as a ratio to its median.
- reconnect: the AMI accepts again -> the bridge's /health says connected (for bridge-kill9: the bridge started ->
  connected, its own start-up)
- reconcile: the bridge connected -> the CRM has closed Alice's call (no open leg). pbx-restart: the command -> the
  call closed, since Asterisk reports the hang-ups itself before it goes.
- end: the call's stored end minus the fault's moment. Negative: talk time lost, the bridge last heard from the PBX
  that much before the fault (Ping every 4 s; pbx-alive.json saved at most once a second). Positive: talk time added
  (e.g. a late read of the closed connection on a loaded machine). For secret: vs the old bridge's stop.

Output: progress on stderr; on stdout one summary line per fault, starting with "live_faults <fault>:".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _common
from _common import ROOT, log

sys.path.insert(0, str(ROOT))

from tests.bridge.live_crm import CrmTemplate, build_template  # noqa: E402
from tests.live import faults, labs  # noqa: E402
from tests.live.stack import LiveCrm  # noqa: E402

GIORGOS = "00302101234567"
RING_TIMEOUT_S = "8"
SAMPLE_S = 0.01
WAIT_S = 90.0


class Probe:
    """Samples ``read()`` every 10 ms in a thread; keeps the moments its value changed."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self.read = read
        self.changes: list[tuple[float, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            value = self.read()
            if not self.changes or self.changes[-1][1] != value:
                self.changes.append((now, value))
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def first(self, holds: Callable[[Any], bool], after: float) -> float:
        """The first moment at or after ``after`` when the value satisfied ``holds``."""
        for i, (when, value) in enumerate(self.changes):
            until = self.changes[i + 1][0] if i + 1 < len(self.changes) else float("inf")
            if until > after and holds(value):
                return max(when, after)
        raise AssertionError(f"never seen after {after:.3f}: {self.changes[-5:]}")


def health(port: int) -> bool | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as answer:  # noqa: S310
            return bool(json.loads(answer.read()).get("pbx_connected"))
    except (OSError, ValueError):
        return None


def wait(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    return labs.wait_until(condition, what, timeout=timeout, interval=0.05)


# ---- one round ----------------------------------------------------------------------------------------------------


class Round:
    """A fresh Asterisk, CRM and bridge; the probes run while the block is open."""

    def __init__(self, template: CrmTemplate, directory: Path) -> None:
        self.directory = directory
        self.lab = labs.PjsipLab(directory / "pbx")
        self.crm = LiveCrm(template, directory / "crm")
        self.bridge: faults.FaultBridge | None = None
        self.probes: dict[str, Probe] = {}

    @contextlib.contextmanager
    def running(self) -> Iterator[Round]:
        try:
            self.lab.start()
            self.lab.ami.db_put("lab", "timeout", RING_TIMEOUT_S)
            self.crm.start()
            self.bridge = faults.FaultBridge(self.directory / "bridge", self.lab, self.crm).start()
            bridge_port = self.bridge.port
            self.probes = {
                "health": Probe(lambda: health(bridge_port)),
                "crm_link": Probe(lambda: faults.crm_bridge(self.crm)[0]),
                "open": Probe(lambda: faults.open_legs_of(self.crm, "100")),
                "accept": Probe(lambda: faults.accepting(self.lab.ami_port)),
            }
            with contextlib.ExitStack() as stack:
                for probe in self.probes.values():
                    stack.enter_context(probe)
                yield self
        finally:
            if self.bridge is not None:
                self.bridge.stop()
            self.crm.stop()
            self.lab.stop()

    def answered_call(self, talk: float = 3.0) -> labs.Caller:
        self.lab.phone("100", "answer", ring=1)
        caller = self.lab.call("100", GIORGOS, talk=120)
        wait(lambda: any(leg.answered_at for leg in faults.crm_legs(self.crm)), "the call answered in the CRM")
        time.sleep(talk)
        return caller

    def ended_at(self) -> float:
        [leg] = faults.crm_legs(self.crm)
        assert leg.ended_at is not None
        return leg.ended_at

    def connected(self) -> None:
        assert self.bridge is not None
        self.bridge.wait_connected(WAIT_S)

    def closed(self) -> None:
        wait(lambda: faults.open_legs_of(self.crm, "100") == 0 and faults.crm_legs(self.crm), "the call closed")


def pbx_kill9(r: Round) -> dict[str, float]:
    r.answered_call()
    killed = faults.kill_asterisk(r.lab)
    r.lab.stop_phones()
    time.sleep(max(0.0, killed + 3 - time.time()))
    spawned = faults.start_asterisk(r.lab)
    faults.wait_asterisk_booted(r.lab)
    r.connected()
    r.closed()
    time.sleep(0.2)
    p = r.probes
    accepted = p["accept"].first(bool, spawned)
    connected = p["health"].first(lambda v: v is True, accepted)
    return {
        "notice_bridge": p["health"].first(lambda v: v is False, killed) - killed,
        "notice_crm": p["crm_link"].first(lambda v: v is False, killed) - killed,
        "accept": accepted - spawned,
        "reconnect": connected - accepted,
        "reconcile": p["open"].first(lambda v: v == 0, connected) - connected,
        "end": r.ended_at() - killed,
    }


def pbx_restart(r: Round) -> dict[str, float]:
    r.answered_call()
    asked = faults.restart_now(r.lab)
    faults.wait_asterisk_booted(r.lab)
    r.connected()
    r.closed()
    time.sleep(0.2)
    p = r.probes
    closed_port = p["accept"].first(lambda v: not v, asked)
    accepted = p["accept"].first(bool, closed_port)
    connected = p["health"].first(lambda v: v is True, accepted)
    return {
        "notice_bridge": p["health"].first(lambda v: v is False, asked) - asked,
        "notice_crm": p["crm_link"].first(lambda v: v is False, asked) - asked,
        "accept": accepted - asked,
        "reconnect": connected - accepted,
        "reconcile": p["open"].first(lambda v: v == 0, asked) - asked,
        "end": r.ended_at() - asked,
    }


def bridge_kill9(r: Round) -> dict[str, float]:
    assert r.bridge is not None
    caller = r.answered_call()
    killed = r.bridge.kill(signal.SIGKILL)
    faults.hang_up(r.lab, "PJSIP/trunk-")
    caller.wait()
    r.lab.wait_idle()
    time.sleep(max(0.0, killed + 2 - time.time()))
    started = time.time()
    r.bridge.launch()
    r.connected()
    r.closed()
    time.sleep(0.2)
    p = r.probes
    connected = p["health"].first(lambda v: v is True, started)
    return {
        "reconnect": connected - started,
        "reconcile": p["open"].first(lambda v: v == 0, connected) - connected,
        "end": r.ended_at() - killed,
    }


def secret(r: Round, refused_s: float) -> dict[str, float]:
    assert r.bridge is not None
    capture = r.lab.recorder(r.directory / "ami.raw")
    caller = r.answered_call()
    faults.change_ami_secret(r.lab, "rotated-bench-secret")
    stopped = r.bridge.kill(signal.SIGTERM)
    launched = time.time()
    r.bridge.launch()
    wait(lambda: "login refused" in faults.crm_bridge(r.crm)[1], "the CRM to show the refused login")
    shown = time.time()
    faults.hang_up(r.lab, "PJSIP/trunk-")
    caller.wait()
    first = min(faults.login_refusals(capture.text(), r.lab.ami_user))
    time.sleep(max(0.0, first + refused_s - time.time()))
    refusals = [when for when in faults.login_refusals(capture.text(), r.lab.ami_user) if when <= first + refused_s]
    r.bridge.kill(signal.SIGTERM)
    r.bridge.set_secret("rotated-bench-secret")
    started = time.time()
    r.bridge.launch()
    r.connected()
    r.closed()
    time.sleep(0.2)
    capture.stop()
    p = r.probes
    connected = p["health"].first(lambda v: v is True, started)
    return {
        "shown": shown - launched,
        "refusals": float(len(refusals)),
        "reconnect": connected - started,
        "reconcile": p["open"].first(lambda v: v == 0, connected) - connected,
        "end": r.ended_at() - stopped,
    }


# ---- the figures --------------------------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} (max {max(values):.2f})"


def signed(values: list[float]) -> str:
    return ", ".join(f"{value:+.2f}" for value in values)


def ratio(values: list[float], anchor: float) -> str:
    return f"{statistics.median(values) / anchor:.2f}x" if values and anchor > 0 else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each fault (default 3)")
    parser.add_argument("--refused", type=float, default=10.0, help="seconds of refused logins (default 10)")
    parser.add_argument("--only", action="append", default=[],
                        choices=["pbx-kill9", "pbx-restart", "bridge-kill9", "secret"])
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs, captures)")
    options = parser.parse_args(argv)
    reason = labs.unavailable("pjsip") or labs.missing_libraries(labs.pjsip_package())
    if reason:
        print(f"live_faults: SKIPPED - {reason}", flush=True)
        return 0
    _common.interrupt_on_signals()
    work = Path(tempfile.mkdtemp(prefix="live-faults-"))
    results: dict[str, list[dict[str, float]]] = {}
    try:
        log(f"building the CRM template in {work}")
        template = build_template(work / "template")
        plan = [(name, run) for name, run in (("pbx-kill9", pbx_kill9), ("pbx-restart", pbx_restart),
                                               ("bridge-kill9", bridge_kill9))
                if not options.only or name in options.only]
        for i in range(options.rounds):
            for name, run in plan:
                with Round(template, work / f"{name}-{i}").running() as r:
                    figures = run(r)
                log(f"{name} round {i + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
                results.setdefault(name, []).append(figures)
        if not options.only or "secret" in options.only:
            with Round(template, work / "secret").running() as r:
                figures = secret(r, options.refused)
            log("secret: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
            results["secret"] = [figures]
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        labs.reap_all()
        if options.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    def values(name: str, key: str) -> list[float]:
        return [figures[key] for figures in results.get(name, []) if key in figures]

    anchors = values("pbx-kill9", "accept")
    anchor = statistics.median(anchors) if anchors else 0.0
    if anchors:
        print(f"live_faults anchor: Asterisk started -> its AMI accepts connections {spread(anchors)} s "
              f"(n={len(anchors)})", flush=True)
    if "pbx-kill9" in results:
        n = "pbx-kill9"
        print(f"live_faults pbx-kill9: notice bridge {spread(values(n, 'notice_bridge'))} s, CRM "
              f"{spread(values(n, 'notice_crm'))} s; reconnect after accept {spread(values(n, 'reconnect'))} s = "
              f"{ratio(values(n, 'reconnect'), anchor)} anchor; reconcile {spread(values(n, 'reconcile'))} s = "
              f"{ratio(values(n, 'reconcile'), anchor)}; stored end vs kill {signed(values(n, 'end'))} s "
              f"(the connection Asterisk's death closed marks it); n={len(results[n])}", flush=True)
    if "pbx-restart" in results:
        n = "pbx-restart"
        print(f"live_faults pbx-restart: notice bridge {spread(values(n, 'notice_bridge'))} s, CRM "
              f"{spread(values(n, 'notice_crm'))} s; Asterisk back (command -> accept) {spread(values(n, 'accept'))} "
              f"s = {ratio(values(n, 'accept'), anchor)} anchor; reconnect after accept "
              f"{spread(values(n, 'reconnect'))} s = {ratio(values(n, 'reconnect'), anchor)}; call closed (command "
              f"-> CRM) {spread(values(n, 'reconcile'))} s; stored end vs command {signed(values(n, 'end'))} s; "
              f"n={len(results[n])}", flush=True)
    if "bridge-kill9" in results:
        n = "bridge-kill9"
        print(f"live_faults bridge-kill9: bridge start -> connected {spread(values(n, 'reconnect'))} s = "
              f"{ratio(values(n, 'reconnect'), anchor)} anchor; reconcile {spread(values(n, 'reconcile'))} s = "
              f"{ratio(values(n, 'reconcile'), anchor)}; stored end vs kill {signed(values(n, 'end'))} s "
              f"(last-alive kept on disk); n={len(results[n])}", flush=True)
    if "secret" in results:
        [f] = results["secret"]
        refused = options.refused
        print(f"live_faults secret: refusal shown in the CRM {f['shown']:.2f} s after the bridge started; "
              f"{f['refusals']:.0f} refused logins in the {refused:g} s from the first (back-off); with the right "
              f"secret connected {f['reconnect']:.2f} s after start = {f['reconnect'] / anchor if anchor else 0:.2f}x "
              f"anchor, reconcile {f['reconcile']:.2f} s; stored end vs the old bridge's stop {f['end']:+.2f} s",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
