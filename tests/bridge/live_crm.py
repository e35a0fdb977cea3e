"""The real CRM in a child process (``callcenter serve``) on a SQLite file, for delivery tests over real sockets.

``build_template`` runs ``callcenter migrate``, ``add-bridge office --secret-file`` and ``seed-demo`` once; each test
copies the database file and serves its own copy, so tests never share rows. The rows are read back with the
standard sqlite3 module, as anyone inspecting the file would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

CALLCENTER = [sys.executable, "-m", "callcenter"]


def crm_environment(database: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CALLCENTER_"))}
    env.update(
        CALLCENTER_DATABASE_URL=f"sqlite:///{database}",
        CALLCENTER_SECRET_KEY="delivery-tests-secret-key-0123456789",
        CALLCENTER_LOG_LEVEL="WARNING",
    )
    return env


@dataclass(frozen=True)
class CrmTemplate:
    database: Path
    secret_file: Path

    @property
    def secret(self) -> str:
        return self.secret_file.read_text(encoding="utf-8").strip()

    def copy(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / "crm.sqlite3"
        shutil.copyfile(self.database, target)
        return target


def build_template(directory: Path) -> CrmTemplate:
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "template.sqlite3"
    secret_file = directory / "bridge.secret"
    env = crm_environment(database)
    for args in (["migrate", "--no-input", "-v", "0"], ["add-bridge", "office", "--secret-file", str(secret_file)],
                 ["seed-demo"]):
        done = subprocess.run([*CALLCENTER, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"callcenter {' '.join(args)} failed: {done.stdout}\n{done.stderr}")
    # The copies are served in WAL mode; fold everything into the main file so a copy is complete.
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return CrmTemplate(database, secret_file)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CrmProcess:
    """``callcenter serve`` on 127.0.0.1:``port`` for ``database``; start() waits until it accepts connections."""

    def __init__(self, database: Path, port: int, log_path: Path) -> None:
        self.database = database
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> CrmProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*CALLCENTER, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"],
                env=crm_environment(self.database), stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the CRM exited with {self.process.returncode}: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the CRM did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # ---- what the CRM stored ----------------------------------------------------------------------------------------

    def _query(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql).fetchall()

    def processed_ids(self) -> list[str]:
        return [str(row[0]) for row in self._query("SELECT event_id FROM calls_processedevent")]

    def failed_events(self) -> int:
        return int(self._query("SELECT count(*) FROM calls_processedevent WHERE failed")[0][0])  # type: ignore[arg-type]

    def calls_by_kind(self, prefix: str) -> Counter[str]:
        rows = self._query(f"SELECT kind, count(*) FROM calls_call WHERE pbx_call_id LIKE '{prefix}-%' GROUP BY kind")
        return Counter({str(kind): int(count) for kind, count in rows})  # type: ignore[call-overload]

    def open_calls(self, prefix: str) -> int:
        rows = self._query(f"SELECT count(*) FROM calls_call WHERE pbx_call_id LIKE '{prefix}-%' AND state != 'ended'")
        return int(rows[0][0])  # type: ignore[call-overload]
