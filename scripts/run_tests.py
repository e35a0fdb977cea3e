"""Run the whole test suite: every test on SQLite, then the database tests again on PostgreSQL.

PostgreSQL: CALLCENTER_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/callcenter_test_<random>);
pytest-django creates the throwaway test database and drops it afterwards. When the server cannot be reached the run
fails with a message saying how to start it; set CALLCENTER_SKIP_POSTGRES=1 to run on SQLite alone (never in CI).

pytest's exit code 5 ("no tests collected") counts as a failure: a suite that ran nothing proves nothing.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
from urllib.parse import urlsplit

PYTEST = [sys.executable, "-m", "pytest"]


def _run(label: str, args: list[str], env: dict[str, str]) -> int:
    print(f"\n=== {label}: pytest {' '.join(args)}", flush=True)
    code = subprocess.call([*PYTEST, *args], env=env)
    if code == 5:
        print(f"=== {label}: no tests were collected; that is a failure", flush=True)
        return 1
    return code


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=3):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="run one pass only")
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for pytest")
    options = parser.parse_args(argv)

    base_env = dict(os.environ)
    base_env.pop("CALLCENTER_DATABASE_URL", None)
    os.makedirs("var", exist_ok=True)
    failures = 0

    if options.only in (None, "sqlite"):
        failures += _run("SQLite", [*options.pytest_args], base_env) != 0

    if options.only in (None, "postgres"):
        url = os.environ.get("CALLCENTER_TEST_POSTGRES_URL") or (
            f"postgres://postgres@127.0.0.1:5432/callcenter_test_{secrets.token_hex(4)}"
        )
        if not _reachable(url):
            message = (
                f"PostgreSQL is not reachable at {urlsplit(url).hostname}:{urlsplit(url).port or 5432}; start it "
                "(pg_ctlcluster --skip-systemctl-redirect <version> main start) or set "
                "CALLCENTER_TEST_POSTGRES_URL"
            )
            if os.environ.get("CALLCENTER_SKIP_POSTGRES") == "1" and not os.environ.get("CI"):
                print(f"\n=== PostgreSQL pass skipped (CALLCENTER_SKIP_POSTGRES=1): {message}", flush=True)
            else:
                print(f"\n=== {message}", flush=True)
                failures += 1
        else:
            env = dict(base_env, CALLCENTER_DATABASE_URL=url)
            failures += _run("PostgreSQL", ["-m", "django_db", *options.pytest_args], env) != 0

    print("\n=== all passes green" if not failures else f"\n=== {failures} pass(es) failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
