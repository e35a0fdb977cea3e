"""bench/call_list.py still runs end to end: a tiny SQLite run prints one well-formed line per filter, checks its
bulk-loaded calls against the real call rules, and reuses its cached database the second time.

No timing is asserted (speed belongs in the benchmark's own figures); this only keeps the script from rotting.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.bench.smoke import NUMBER, run_bench

FILTERS = ["agent", "agent-number", "agent-name", "admin", "admin-number", "admin-name"]
SUMMARY = re.compile(
    rf"^call_list sqlite (?P<filter>[a-z-]+): calls=3,000 p50=(?P<p50>{NUMBER})ms p95=(?P<p95>{NUMBER})ms "
    rf"p99=(?P<p99>{NUMBER})ms \(n=(?P<samples>\d+), best of (?P<rounds>\d+) rounds: p95 "
    rf"(?P<round_p95s>{NUMBER}ms(?:/{NUMBER}ms)*)\) \| naive ListView p50=(?P<naive>{NUMBER})ms \(n=(?P<naive_n>\d+)\) "
    rf"ratio=\d+x \| target p95<50ms: (?:OK|MISSED) \| db=(?:cached|built in \d+s) \| loadavg=\d+\.\d$"
)


def _run(cache_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_bench("call_list", "--calls", "3000", "--contacts", "200", "--db", "sqlite", "--samples", "12",
                     "--rounds", "2", "--warmup", "2", "--naive-samples", "2", "--cache-dir", str(cache_dir))


@pytest.mark.slow
def test_a_small_sqlite_run_prints_one_line_per_filter_and_reuses_its_database(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == len(FILTERS), first.stdout
    for line, name in zip(lines, FILTERS, strict=True):
        found = SUMMARY.match(line)
        assert found, line
        assert found["filter"] == name
        assert int(found["samples"]) == 12
        assert int(found["naive_n"]) == 2
        assert 0 < float(found["p50"]) <= float(found["p95"]) <= float(found["p99"])
        round_p95s = [float(p95.removesuffix("ms")) for p95 in found["round_p95s"].split("/")]
        assert len(round_p95s) == int(found["rounds"]) == 2
        assert float(found["p95"]) == min(round_p95s)
        assert "db=built in" in line
    assert "sampled calls equal what the call rules write" in first.stderr

    second = _run(tmp_path)
    assert second.returncode == 0, second.stderr
    assert all("| db=cached |" in line for line in second.stdout.splitlines()), second.stdout
    assert "reusing" in second.stderr
