"""Proof: the CRM down for 10 minutes at 20 calls/s loses nothing and stores nothing twice; how fast the bridge
catches up once it is back.

How (every part real, on loopback):
- the simulated Asterisk (pbxsim, in a thread of this process) serves AMI on a TCP port; 450 agents' phones
  (extensions 100-549), inbound calls to them in turn, so no phone is ever busy: four in five answered after 0.6 s
  and talking 1-2.5 s, one in five missed (the caller gives up after 0.3 s). Each leg the PBX rings is recorded
  (Linkedid, extension) as it writes the DialBegin: the truth the CRM is compared with;
- the real bridge, `callcenter bridge run`, following every 3-digit extension, delivering to
- the real CRM, `callcenter serve`, on a fresh SQLite file (--db sqlite, the default) or a throwaway PostgreSQL
  database (--db postgres), or both one after the other (--db both, the default); `migrate`, `add-bridge`, `seed-demo`.
Timeline: 20 calls/s for 10 s with the CRM up; the CRM is killed (SIGKILL); the outage; the CRM is started again on
the same database and port while calls go on at 20 calls/s; the PBX stops calling 10 s after the catch-up; then the
PBX goes idle and the bridge delivers everything. --db both (the default) runs it on SQLite, then on PostgreSQL.

What is compressed: the outage's *calls*, not its clock. Ten minutes at 20 calls/s is 12,000 calls; they are placed
during a 120 s real outage at 100 calls/s (--quick: 2,400 calls, two minutes' worth, in 24 s). The PBX, the bridge
and the CRM all run on the real clock; the backlog the CRM finds when it comes back is the full 12,000 calls' events.

Checked afterwards: every leg the PBX rang is one call row in the CRM (0 missing, 0 duplicated, no row of a leg the
PBX never rang), every row and leg ended, no event failed, and every event the bridge took in was delivered
(its events_in_total = events_delivered_total, outbox empty). Figures: the time from the CRM accepting connections
again (it accepts TCP connections) to the bridge getting in touch (its first connection, a health probe or a retry,
seen in /proc/net/tcp; PASS only within 5 s, the back-off cap of issue 11 item 5, whose target is 1 s) and to its
first delivery (the first batch, up to 5,000 events, acknowledged), and the catch-up time (CRM back -> every event
queued before that moment delivered, i.e. the backlog is 0), with the backlog's size in events.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from proof import _stack
from proof._stack import BridgeProcess, CrmServer, PbxThread, Results, log

NAME = "crm_outage"
BASE_RATE = 20.0  # calls per second, the call center's own rate
OUTAGE_MINUTES = 10.0
AGENTS = 450
RESUME_TARGET_S = 5.0  # issue 11 item 5: the back-off is capped at 5 s (and a health probe makes it 1 s)
CATCH_UP_LIMIT_S = 900.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both",
                        help="the CRM's database(s) (default both; postgres: a throwaway database on --pg-url)")
    parser.add_argument("--pg-url", default=_stack.DEFAULT_PG_URL,
                        help="a PostgreSQL database to connect to for creating the throwaway one")
    parser.add_argument("--outage-seconds", type=float, default=None,
                        help="real length of the outage (default 120; --quick 24)")
    parser.add_argument("--outage-minutes", type=float, default=None,
                        help="the outage whose calls (at 20 calls/s) are placed during it (default 10; --quick 2)")
    parser.add_argument("--warm-up", type=float, default=10.0, help="seconds of calls before the outage (default 10)")
    parser.add_argument("--tail", type=float, default=10.0,
                        help="seconds of calls after the catch-up (default 10)")


def run(options: argparse.Namespace, results: Results, workdir: Path) -> None:
    kinds = ["sqlite", "postgres"] if options.db == "both" else [options.db]
    for kind in kinds:
        try:
            one_database(kind, options, results, workdir / kind)
        except _stack.PostgresUnreachable as exc:
            results.add(f"{kind}: the CRM's database", f"unreachable: {exc}", False)


def one_database(kind: str, options: argparse.Namespace, results: Results, workdir: Path) -> None:
    workdir.mkdir(parents=True)
    minutes = options.outage_minutes or (2.0 if options.quick else OUTAGE_MINUTES)
    outage_s = options.outage_seconds or (24.0 if options.quick else 120.0)
    outage_calls = round(minutes * 60 * BASE_RATE)
    outage_rate = outage_calls / outage_s
    with _stack.database(kind, workdir, options.pg_url) as db:
        log(f"{kind}: migrate, add-bridge, seed-demo ...")
        secret_file = _stack.prepare_crm(db, workdir)
        ami_secret = "proof-ami-" + os.urandom(8).hex()
        pbx = PbxThread(_stack.agents(AGENTS), ami_secret)
        crm = CrmServer(db, workdir)
        bridge = BridgeProcess(workdir, crm_port=crm.port, secret_file=secret_file, ami_port=pbx.port,
                               ami_secret=ami_secret)
        try:
            crm.start()
            bridge.start()
            log(f"{kind}: CRM on {crm.port}, bridge on {bridge.port}, PBX AMI on {pbx.port}; "
                f"{BASE_RATE:g} calls/s for {options.warm_up:g} s")
            pbx.set_rate(BASE_RATE)
            time.sleep(options.warm_up)

            before = pbx.calls_started
            crm.kill()
            down_at = time.time()
            pbx.set_rate(outage_rate)
            log(f"{kind}: CRM killed (SIGKILL); {outage_calls:,} calls ({minutes:g} min at {BASE_RATE:g}/s) at "
                f"{outage_rate:g}/s during a {outage_s:g} s outage")
            watch_until(down_at + outage_s, bridge)
            pbx.set_rate(BASE_RATE)
            during = pbx.calls_started - before
            metrics = bridge.metrics()
            log(f"{kind}: {during:,} calls placed during the outage; outbox "
                f"{metrics['callcenter_bridge_outbox_depth']:,.0f} events; starting the CRM again")
            back_at = crm.start()
            backlog_mark = bridge.metrics()["callcenter_bridge_events_in_total"]
            delivered_at_back = metrics["callcenter_bridge_events_delivered_total"]
            contact, first_delivery, caught_up = catch_up(bridge, crm.port, back_at, backlog_mark, delivered_at_back,
                                                          kind)
            backlog = backlog_mark - delivered_at_back
            time.sleep(options.tail)
            pbx.set_rate(0)
            log(f"{kind}: {pbx.calls_started:,} calls in all; waiting for the PBX to go idle and the bridge to deliver")
            _stack.settle(pbx, bridge, db)
            final = bridge.metrics()
            bridge.stop()
            crm.stop()
            queued, dead = bridge.outbox_contents(workdir / "outbox-after")
            seen = _stack.compare(pbx.record, db)
            stored_events = len(_stack.processed_event_ids(db))
        finally:
            bridge.stop()
            crm.stop()
            pbx.close()
    events_in = int(final["callcenter_bridge_events_in_total"])
    delivered = int(final["callcenter_bridge_events_delivered_total"])
    lost = len(seen.missing) + (events_in - delivered) + len(queued)
    ok = (lost == 0 and seen.duplicated == 0 and seen.open_after == 0 and seen.failed_events == 0 and not dead
          and caught_up is not None)
    if seen.missing:
        log(f"{kind}: legs the PBX rang that the CRM has no row for (first 10): {seen.missing[:10]}")
    results.add(
        f"{kind}: CRM killed for a {minutes:g}-min outage at {BASE_RATE:g} calls/s ({during:,} calls placed in "
        f"{outage_s:g} s real), then back: every call stored once",
        f"{seen.pbx_legs:,} legs rung, {seen.stored:,} stored once; lost {lost}, duplicated {seen.duplicated}, "
        f"open {seen.open_after}, failed {seen.failed_events}, dead letters {len(dead)}; events in {events_in:,}, "
        f"delivered {delivered:,}, stored {stored_events:,}",
        ok,
    )
    resumed = contact is not None and contact <= RESUME_TARGET_S
    if contact is not None and first_delivery is not None and caught_up is not None:
        figure = (f"bridge back in touch {contact:.2f} s after the CRM returned (issue target 1 s; PASS within the "
                  f"{RESUME_TARGET_S:g} s back-off cap), first batch acknowledged at {first_delivery:.2f} s, caught up "
                  f"in {caught_up:.1f} s")
    else:
        figure = (f"in touch {contact}, first delivery {first_delivery}, caught up {caught_up} (None: not within "
                  f"{CATCH_UP_LIMIT_S:g} s)")
    results.add(f"{kind}: catch-up after the outage (CRM back -> backlog of {backlog:,.0f} events delivered, calls "
                f"going on at {BASE_RATE:g}/s)", figure, resumed and caught_up is not None)


def watch_until(deadline: float, bridge: BridgeProcess) -> None:
    """Sleep until ``deadline`` (time.time()), logging the outbox every 10 s."""
    last = 0.0
    while (now := time.time()) < deadline:
        if now - last >= 10:
            last = now
            metrics = bridge.metrics()
            log(f"  outbox {metrics['callcenter_bridge_outbox_depth']:,.0f} events, "
                f"{metrics['callcenter_bridge_events_in_total']:,.0f} taken in")
        time.sleep(min(1.0, max(0.0, deadline - now)))


def catch_up(bridge: BridgeProcess, crm_port: int, back_at: float, backlog_mark: float, delivered_before: float,
             kind: str, limit: float = CATCH_UP_LIMIT_S) -> tuple[float | None, float | None, float | None]:
    """Seconds from the CRM's return to: the bridge's first connection to it (its health probe or a retry), its
    first delivery (a batch acknowledged), every event taken in before that return delivered. Polls /proc/net/tcp
    and /metrics every 20 ms; None for what did not happen within ``limit`` s."""
    contact: float | None = None
    first: float | None = None
    last_log = time.time()
    while (now := time.time()) - back_at < limit:
        if contact is None and _stack.established_to(crm_port):
            contact = now - back_at
            log(f"{kind}: the bridge got in touch with the CRM {contact:.2f} s after it was back")
        metrics = bridge.metrics()
        delivered = metrics["callcenter_bridge_events_delivered_total"]
        if first is None and delivered > delivered_before:
            first = now - back_at
            log(f"{kind}: first delivery {first:.2f} s after the CRM was back")
        if delivered >= backlog_mark:
            log(f"{kind}: caught up in {now - back_at:.1f} s (outbox {metrics['callcenter_bridge_outbox_depth']:,.0f})")
            return contact, first, now - back_at
        if now - last_log >= 10:
            last_log = now
            log(f"  catching up: {delivered - delivered_before:,.0f} of {backlog_mark - delivered_before:,.0f} "
                f"delivered, outbox {metrics['callcenter_bridge_outbox_depth']:,.0f}")
        time.sleep(0.02)
    return contact, first, None


def main(argv: list[str] | None = None) -> int:
    return _stack.run_proof_module(NAME, __doc__ or "", add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
