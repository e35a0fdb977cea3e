"""bench/screen_pop.py still runs end to end: a tiny run (a few agents, a low rate, seconds) through the simulated
PBX, the real bridge, the CRM in a child process and the agents' WebSockets prints one well-formed line per rate and
loses no pop.

No timing is asserted (speed belongs in the benchmark's own figures); this only keeps the script from rotting.
"""

from __future__ import annotations

import re

import pytest

from tests.bench.smoke import NUMBER, run_bench

SUMMARY = re.compile(
    rf"^screen_pop rate=(?P<rate>{NUMBER})/s agents=10: p50=(?P<p50>{NUMBER})ms p99=(?P<p99>{NUMBER})ms "
    rf"max={NUMBER}ms lost=(?P<lost>\d+)/(?P<rung>\d+) \| anchor: WebSocket ping round trip on the same server "
    rf"p50={NUMBER}ms \(n=\d+\), pop/ping ratio={NUMBER}x \| bridge->CRM POST p50={NUMBER}ms \(n=\d+\) "
    rf"\| CPU per call: CRM {NUMBER}ms \(\d+% of a core\), PBX\+bridge\+screens {NUMBER}ms \(\d+%\)"
    rf"(?: \| calls started up to {NUMBER}s late)?(?P<target> \| target p99<100ms at 50/s: (?:OK|MISSED))? "
    rf"\| loadavg=\d+\.\d$"
)


@pytest.mark.slow
def test_a_small_run_prints_one_line_per_rate_and_every_ringing_call_pops() -> None:
    done = run_bench("screen_pop", "--agents", "10", "--rates", "4,50", "--seconds", "1", "--pings", "5")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    first, second = (SUMMARY.match(line) for line in lines)
    assert first, lines[0]
    assert second, lines[1]
    assert (first["rate"], second["rate"]) == ("4", "50")
    assert (first["rung"], second["rung"]) == ("4", "50")
    assert first["lost"] == second["lost"] == "0"
    assert first["target"] is None  # the target is stated at 50 calls/s only
    assert second["target"] is not None
    for found in (first, second):
        assert 0 < float(found["p50"]) <= float(found["p99"])
