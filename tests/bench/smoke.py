"""What the smoke tests of bench/ share: running a benchmark script as a person runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
NUMBER = r"\d+(?:\.\d+)?"  # a figure as the summary lines print it


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python bench/<script>.py args`` from the repository, without the test run's Django and Callcenter settings;
    its output captured; five minutes at most."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CALLCENTER_"))}
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{script}.py"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
