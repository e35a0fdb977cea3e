"""scripts/run_proof.py: the PROOF line format, and a module fails on a FAIL line, a non-zero exit or no PROOF line."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripts import run_proof


def test_a_proof_line_is_read_and_anything_else_is_not() -> None:
    assert run_proof.parse_result("PROOF race | sqlite: 1,000 trials | {1: 1000} | PASS") == (
        "race", "sqlite: 1,000 trials", "{1: 1000}", "PASS")
    assert run_proof.parse_result("PROOF race | a | b | c | FAIL") == ("race", "a | b", "c", "FAIL")
    for line in ("PROOF race | no verdict | x", "PROOF race | x | y | MAYBE", "progress",
                 "  PROOF a | b | c | PASS"):
        assert run_proof.parse_result(line) is None


@pytest.mark.parametrize(("code", "lines", "failed"), [
    (0, ["PROOF a | what | 3 | PASS"], 0),
    (0, ["PROOF a | what | 3 | PASS", "PROOF a | other | 1 | FAIL"], 1),
    (1, ["PROOF a | what | 3 | PASS"], 1),
    (0, ["all good, I promise"], 1),
])
def test_the_runner_fails_a_module_that_fails_in_any_way(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str], code: int,
                                                         lines: list[str], failed: int) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "_helper.py").write_text("")
    monkeypatch.setattr(run_proof, "PROOF_DIR", tmp_path)
    ran: list[tuple[str, list[str]]] = []

    def fake_run_one(name: str, extra: list[str]) -> tuple[int, list[str], float]:
        ran.append((name, extra))
        return code, lines, 1.0

    monkeypatch.setattr(run_proof, "run_one", fake_run_one)
    assert run_proof.main(["--quick"]) == (1 if failed else 0)
    assert ran == [("a", ["--quick"])]  # "_helper" is not a proof module
    out = capsys.readouterr().out
    assert f"1 module(s), {failed} failed" in out
    assert "what" in out or not any(line.startswith("PROOF") for line in lines)


def test_only_names_an_unknown_module(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    monkeypatch.setattr(run_proof, "PROOF_DIR", tmp_path)
    with pytest.raises(SystemExit, match="no proof module named nope"):
        run_proof.main(["--only", "a,nope"])
