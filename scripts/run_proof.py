"""Run the proof suite: every proof/<name>.py (not starting with "_"), each as a child `python -m proof.<name>`.

A proof module prints its progress on stderr and, as its last stdout lines, one or more result lines exactly

    PROOF <name> | <what was checked> | <figure> | PASS      (or FAIL)

and exits 0 when all of its lines say PASS, 1 otherwise. Modules run one after another in sorted order, their output
passing through live. At the end this prints a table of every PROOF line and each module's wall time, and exits 1 if
any module failed, exited non-zero, or printed no PROOF line.

`--only NAME[,NAME...]` runs the named modules alone; `--quick` is passed to every module (a shorter smoke run, e.g.
fewer trials). Ctrl-C or SIGTERM reaches the running module, which cleans up (kills its children, drops its
databases) before this exits.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from scripts.run_benches import run_child

ROOT = Path(__file__).resolve().parent.parent
PROOF_DIR = ROOT / "proof"
PROOF_PREFIX = "PROOF "


def discover(only: list[str]) -> list[str]:
    names = sorted(path.stem for path in PROOF_DIR.glob("*.py") if not path.name.startswith("_"))
    if only:
        unknown = [name for name in only if name not in names]
        if unknown:
            raise SystemExit(f"no proof module named {', '.join(unknown)} in {PROOF_DIR}; have {', '.join(names)}")
        names = [name for name in names if name in only]
    return names


def parse_result(line: str) -> tuple[str, str, str, str] | None:
    """(name, what, figure, verdict) of a `PROOF name | what | figure | PASS|FAIL` line, else None."""
    if not line.startswith(PROOF_PREFIX):
        return None
    parts = [part.strip() for part in line[len(PROOF_PREFIX):].split(" | ")]
    if len(parts) < 4 or parts[-1] not in ("PASS", "FAIL"):
        return None
    return parts[0], " | ".join(parts[1:-2]), parts[-2], parts[-1]


def print_table(rows: list[tuple[str, str, str, str]], limits: tuple[int, ...] = (24, 60, 60, 7)) -> None:
    """The PROOF lines as a table, long cells wrapped within their column."""
    header = ("module", "what was checked", "figure", "verdict")
    wrapped = [[textwrap.wrap(cell, limit) or [""] for cell, limit in zip(row, limits, strict=True)]
               for row in [header, *rows]]
    widths = [max(len(line) for row in wrapped for line in row[index]) for index in range(len(header))]
    for number, row in enumerate(wrapped):
        for line in range(max(len(cell) for cell in row)):
            cells = [cell[line] if line < len(cell) else "" for cell in row]
            print(" | ".join(text.ljust(width) for text, width in zip(cells, widths, strict=True)).rstrip(),
                  flush=True)
        if number == 0:
            print("-+-".join("-" * width for width in widths), flush=True)


def run_one(name: str, extra: list[str]) -> tuple[int, list[str], float]:
    """Run ``python -m proof.<name>``, echoing its output live; returns (exit code, its stdout lines, seconds)."""
    return run_child([sys.executable, "-m", f"proof.{name}", *extra], ROOT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], metavar="NAME[,NAME...]",
                        help="run these proof modules only (comma-separated, repeatable)")
    parser.add_argument("--quick", action="store_true", help="a shorter smoke run of every module")
    options = parser.parse_args(argv)

    only = [name.strip() for value in options.only for name in value.split(",") if name.strip()]
    names = discover(only)
    if not names:
        print(f"no proof modules in {PROOF_DIR}", flush=True)
        return 1
    extra = ["--quick"] if options.quick else []
    rows: list[tuple[str, str, str, str]] = []
    timings: list[tuple[str, float, str]] = []
    failures = 0
    try:
        for name in names:
            print(f"=== {name}: python -m proof.{name} {' '.join(extra)}".rstrip(), flush=True)
            code, lines, seconds = run_one(name, extra)
            results = [parsed for parsed in map(parse_result, lines) if parsed is not None]
            rows.extend(results)
            if code != 0:
                status = f"FAILED (exit {code})"
            elif not results:
                status = "FAILED (printed no PROOF line)"
            elif any(verdict != "PASS" for *_rest, verdict in results):
                status = "FAILED (a FAIL line, exit 0)"
            else:
                status = "ok"
            failures += status != "ok"
            timings.append((name, seconds, status))
    except KeyboardInterrupt:
        print("\n=== interrupted", flush=True)
        return 130

    print("\n=== proof results", flush=True)
    print_table(rows)
    print("\n=== wall time per module", flush=True)
    for name, seconds, status in timings:
        print(f"{name:<24} {seconds:8.1f} s  {status}", flush=True)
    print(f"=== {len(names)} module(s), {failures} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
