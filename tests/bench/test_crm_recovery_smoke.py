"""bench/crm_recovery.py still runs end to end: one short trial of the product's deliverer and of the anchor (the
deliverer before issue 11) against a real CRM process that is stopped and started, and one well-formed line each.

No timing is asserted (speed belongs in the benchmark's own figures); this only keeps the script from rotting.
"""

from __future__ import annotations

import re

import pytest

from tests.bench.smoke import NUMBER, run_bench

LINE = re.compile(
    rf"^crm_recovery (?P<name>product|anchor): first delivery {NUMBER} s \(median\), {NUMBER} s \(worst\) after the "
    rf"CRM answers again; {NUMBER} s / {NUMBER} s after it listens; 1 trials, 1 s down each; .+$"
)


@pytest.mark.slow
def test_one_trial_prints_the_product_the_anchor_and_their_ratio() -> None:
    done = run_bench("crm_recovery", "--trials", "1", "--down", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [LINE.match(line).group("name") for line in lines[:2]] == ["product", "anchor"], lines  # type: ignore[union-attr]
    assert re.fullmatch(rf"crm_recovery ratio: anchor/product {NUMBER}x \(medians\)", lines[2]), lines
