"""The unit-level cases of the fault proofs (proof/crm_outage.py, proof/bridge_kills.py), run by `make test`: the
same code with real processes (the CRM, the bridge, the simulated PBX over TCP), on a small scale. What is checked is
what the proof checks (nothing lost, nothing stored twice, nothing left open, compared with the PBX's own record of the
legs it rang); never how fast (the catch-up figures are the proof's, not the test's)."""

from __future__ import annotations

from pathlib import Path

from proof import _stack, bridge_kills, crm_outage


def test_a_crm_killed_for_a_short_outage_under_load_loses_and_duplicates_no_call(tmp_path: Path) -> None:
    options = _stack.parse_options(crm_outage.NAME, "", crm_outage.add_arguments, [
        "--db", "sqlite", "--warm-up", "2", "--outage-seconds", "4", "--outage-minutes", "0.25", "--tail", "1"])
    results = _stack.Results(crm_outage.NAME)

    crm_outage.one_database("sqlite", options, results, tmp_path / "sqlite")

    (stored_once, figure, ok), (catch_up, caught, _resumed_fast_enough) = results.lines
    assert ok, f"{stored_once}: {figure}"
    assert "caught up in" in caught, f"{catch_up}: {caught}"  # within the proof's limit (15 minutes), not a timing


def test_a_bridge_killed_twice_under_load_loses_nothing_it_accepted_and_leaves_no_call_open(tmp_path: Path) -> None:
    options = _stack.parse_options(bridge_kills.NAME, "", bridge_kills.add_arguments, [
        "--kills", "2", "--rate", "10", "--tail", "1"])
    results = _stack.Results(bridge_kills.NAME)

    bridge_kills.run(options, results, tmp_path)

    [(what, figure, ok)] = results.lines
    assert ok, f"{what}: {figure}"
    assert "kills 2," in figure and "lost 0 " in figure and "open-after 0," in figure
