"""Run every benchmark in bench/ in turn, with its default arguments, and print their summary lines at the end.

A benchmark is any bench/*.py whose name does not start with "_". By convention it prints its progress on stderr and
only its summary lines (figure, anchor, ratio) on stdout; both pass through live, and the stdout lines are repeated
in the recap. A benchmark that exits non-zero, or prints no summary line, is a failure and makes this exit 1.

Extra arguments after "--" go to every benchmark: `python -m scripts.run_benches -- --lookups 500`.
`--only NAME` (repeatable) runs the named benchmarks alone.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def discover(only: list[str]) -> list[Path]:
    scripts = sorted(path for path in BENCH_DIR.glob("*.py") if not path.name.startswith("_"))
    if only:
        known = {path.stem: path for path in scripts}
        unknown = [name for name in only if name not in known]
        if unknown:
            raise SystemExit(f"no benchmark named {', '.join(unknown)} in {BENCH_DIR}; have {', '.join(known)}")
        scripts = [known[name] for name in only]
    return scripts


def run_child(argv: list[str], cwd: Path) -> tuple[int, list[str], float]:
    """Run ``argv`` (a benchmark or a proof module), echoing its output live; (exit code, stdout lines, seconds).
    A SIGTERM is passed on to it, and after a Ctrl-C (which it gets too) it is waited for, so it cleans up (drops its
    databases, stops its children) before this runner goes."""
    started = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=cwd)
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: child.send_signal(signum))
    lines: list[str] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            print(line, end="", flush=True)
            if line.strip():
                lines.append(line.rstrip("\n"))
        code = child.wait()
    except KeyboardInterrupt:
        child.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return code, lines, time.monotonic() - started


def run_one(script: Path, extra: list[str]) -> tuple[int, list[str], float]:
    """Run the benchmark ``script``; see run_child."""
    return run_child([sys.executable, str(script), *extra], BENCH_DIR.parent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run this benchmark only")
    parser.add_argument("extra", nargs="*", help="arguments passed to every benchmark (after --)")
    options = parser.parse_args(argv)

    scripts = discover(options.only)
    if not scripts:
        print(f"no benchmarks in {BENCH_DIR}", flush=True)
        return 1
    recap: list[str] = []
    failures = 0
    try:
        for script in scripts:
            print(f"=== {script.stem}: {script.relative_to(BENCH_DIR.parent)} {' '.join(options.extra)}".rstrip(),
                  flush=True)
            code, lines, seconds = run_one(script, options.extra)
            recap.extend(lines)
            if code != 0:
                failures += 1
                recap.append(f"{script.stem}: FAILED (exit {code}, {seconds:.0f}s)")
            elif not lines:
                failures += 1
                recap.append(f"{script.stem}: FAILED (exit 0 but printed no summary line)")
    except KeyboardInterrupt:
        print("\n=== interrupted", flush=True)
        return 130

    print("\n=== summary", flush=True)
    for line in recap:
        print(line, flush=True)
    print(f"=== {len(scripts)} benchmark(s), {failures} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
