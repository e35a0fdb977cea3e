"""How soon the bridge delivers again once the CRM comes back (issue 11, "fast recovery").

A real CRM process (``callcenter serve`` on SQLite) and a real bridge deliverer (outbox + Deliverer, its default
back-off capped at 5 s and its health probe every 0.3 s) in this process. Each trial: the CRM is stopped, events
queue for ``--down`` seconds (so the back-off reaches its cap), the CRM is started again on the same port. Two
figures: from the moment the CRM answers again (its first 200 on GET /bridge/v1/health, polled by this script every
20 ms) to the first event confirmed -- the bridge's part -- and from the moment it accepts TCP connections (a freshly
started CRM takes about a second more to answer its first request) to the first event confirmed.
The anchor, measured in the same run after the product's trials: the deliverer as it was before issue 11 (back-off
capped at 30 s, no health probe), the same trials (``--no-anchor`` skips it).

Prints on stdout one summary line for each (median and worst seconds over ``--trials``) and the anchor/product
ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import _common
from _common import ROOT, child_environment, free_port

CALLCENTER = [sys.executable, "-m", "callcenter"]
SECRET_KEY = "crm-recovery-bench-key-0123456789"


def log(message: str) -> None:
    print(f"[crm_recovery] {message}", file=sys.stderr, flush=True)


def prepare(database_url: str, workdir: Path) -> str:
    env = child_environment(database_url, SECRET_KEY)
    secret_file = workdir / "bridge.secret"
    for args in (["migrate", "--no-input", "-v", "0"], ["add-bridge", "office", "--secret-file", str(secret_file)]):
        done = subprocess.run([*CALLCENTER, *args], env=env, capture_output=True, text=True, cwd=ROOT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"callcenter {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return secret_file.read_text(encoding="utf-8").strip()


def start_crm(database_url: str, port: int, log_path: Path) -> tuple[subprocess.Popen[bytes], float]:
    """The CRM process and the monotonic time at which it first accepted a connection."""
    command = [*CALLCENTER, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    with log_path.open("ab") as output:
        child = subprocess.Popen(command, env=child_environment(database_url, SECRET_KEY), stdout=output,
                                 stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the CRM exited with {child.returncode}; see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return child, time.monotonic()
        except OSError:
            time.sleep(0.005)
    child.kill()
    raise RuntimeError(f"the CRM did not listen on port {port} within 120 s")


def first_answer(port: int, since: float) -> list[float]:
    """Poll the CRM's health every 20 ms in a thread; the list gets the monotonic time of its first 200."""
    answered: list[float] = []

    def poll() -> None:
        while time.monotonic() - since < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/bridge/v1/health", timeout=5) as response:
                    if response.status == 200:
                        answered.append(time.monotonic())
                        return
            except OSError:
                pass
            time.sleep(0.02)

    threading.Thread(target=poll, daemon=True).start()
    return answered


def stop_crm(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(timeout=20)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


async def trials(options: argparse.Namespace, workdir: Path, *, anchor: bool) -> list[tuple[float, float]]:
    from callcenter.bridge import synthetic
    from callcenter.bridge.delivery import Deliverer
    from callcenter.bridge.outbox import Outbox

    workdir.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{workdir / 'crm.sqlite3'}"
    log("migrate, add-bridge ...")
    secret = await asyncio.to_thread(prepare, database_url, workdir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    outbox = Outbox(workdir / "outbox.sqlite3")
    await outbox.start()
    legacy = {"backoff_cap": 30.0, "probe_every": None} if anchor else {}
    deliverer = Deliverer(outbox, url, "office", secret, **legacy)  # type: ignore[arg-type]
    events = synthetic.traffic(options.trials * 10 + 10, prefix=f"recovery{int(time.time())}")
    figures: list[tuple[float, float]] = []
    crm, _listening = await asyncio.to_thread(start_crm, database_url, port, workdir / "crm.log")
    try:
        deliverer.start()
        for trial in range(1, options.trials + 1):
            await asyncio.to_thread(stop_crm, crm)
            for _ in range(4):
                outbox.put(next(events))
            await outbox.flush()
            await asyncio.sleep(options.down)
            before = deliverer.delivered_total
            crm, listening = await asyncio.to_thread(start_crm, database_url, port, workdir / "crm.log")
            answered = first_answer(port, listening)
            while deliverer.delivered_total == before:
                await asyncio.sleep(0.005)
                if time.monotonic() - listening > 120:
                    raise RuntimeError("no delivery within 120 s of the CRM coming back")
            delivered = time.monotonic()
            while not answered and time.monotonic() - listening < 120:
                await asyncio.sleep(0.005)
            ready = min(answered[0], delivered) if answered else delivered
            figures.append((delivered - ready, delivered - listening))
            log(f"trial {trial}: first delivery {figures[-1][0]:.2f} s after the CRM answered again, "
                f"{figures[-1][1]:.2f} s after it listened ({deliverer.failures_total} failed attempts in all)")
    finally:
        await deliverer.stop()
        await outbox.close()
        stop_crm(crm)
    return figures


def summary(name: str, figures: list[tuple[float, float]], options: argparse.Namespace, what: str) -> float:
    answered = [bridge for bridge, _total in figures]
    listened = [total for _bridge, total in figures]
    print(f"crm_recovery {name}: first delivery {statistics.median(answered):.2f} s (median), {max(answered):.2f} s "
          f"(worst) after the CRM answers again; {statistics.median(listened):.2f} s / {max(listened):.2f} s after it "
          f"listens; {len(figures)} trials, {options.down:g} s down each; {what}", flush=True)
    return statistics.median(answered)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--down", type=float, default=8.0, help="seconds the CRM stays down in each trial")
    parser.add_argument("--no-anchor", action="store_true",
                        help="skip the anchor (the deliverer as before: back-off cap 30 s, no health probe)")
    options = parser.parse_args()
    _common.interrupt_on_signals()
    with tempfile.TemporaryDirectory(prefix="crm-recovery-") as directory:
        product = asyncio.run(trials(options, Path(directory) / "product", anchor=False))
    product_median = summary("product", product, options, "back-off cap 5 s, health probe every 0.3 s")
    if options.no_anchor:
        return 0
    with tempfile.TemporaryDirectory(prefix="crm-recovery-anchor-") as directory:
        before = asyncio.run(trials(options, Path(directory) / "anchor", anchor=True))
    anchor_median = summary("anchor", before, options, "the deliverer before issue 11: back-off cap 30 s, no probe")
    print(f"crm_recovery ratio: anchor/product {anchor_median / max(product_median, 0.001):.0f}x (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
