"""bench/caller_lookup.py still runs end to end: a tiny SQLite run prints a well-formed summary line.

No timing is asserted (speed belongs in the benchmark's own figures); this only keeps the script from rotting.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.bench.smoke import NUMBER, run_bench

SUMMARY = re.compile(
    rf"^caller_lookup sqlite: contacts=(?P<contacts>\d+) phones=(?P<phones>\d+) "
    rf"match p50=(?P<p50>{NUMBER})ms p99=(?P<p99>{NUMBER})ms "
    rf"\(n=(?P<lookups>\d+), best of (?P<rounds>\d+) rounds: p99 (?P<round_p99s>{NUMBER}ms(?:/{NUMBER}ms)*)\) "
    rf"\| LIKE\(number\) p50=(?P<like>{NUMBER})ms \(n=\d+\) \| ratio=(?P<ratio>\d+)x "
    rf"\| LIKE\(digits\) p50={NUMBER}ms ratio=\d+x "
    r"\| target p99<1ms: (?:OK|MISSED), >=100x: (?:OK|MISSED) \| db=(?:cached|built in \d+s) \| loadavg=\d+\.\d$"
)


def _run(cache_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_bench("caller_lookup", "--contacts", "2000", "--lookups", "50", "--db", "sqlite", "--cache-dir",
                     str(cache_dir))


@pytest.mark.slow
def test_a_small_sqlite_run_prints_one_summary_line_with_figures_and_reuses_its_database(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 1, first.stdout
    found = SUMMARY.match(lines[0])
    assert found, lines[0]
    assert int(found["contacts"]) == 2000
    assert 2000 <= int(found["phones"]) <= 8000  # one to four numbers each
    assert int(found["lookups"]) == 50
    assert 0 < float(found["p50"]) <= float(found["p99"])
    round_p99s = [float(p99.removesuffix("ms")) for p99 in found["round_p99s"].split("/")]
    assert len(round_p99s) == int(found["rounds"]) == 3
    assert float(found["p99"]) == min(round_p99s)
    assert float(found["like"]) > 0
    assert "db=built in" in lines[0]
    assert "equal what create_contact writes" in first.stderr

    second = _run(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "| db=cached |" in second.stdout, second.stdout
    assert "reusing the cached database" in second.stderr
