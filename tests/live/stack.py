"""The product's real CRM (``callcenter serve``) and bridge (``callcenter bridge run``) as child processes, on a lab,
and the waits that read what they stored.

- ``LiveCrm`` serves a copy of the session's template database (tests/bridge/live_crm.py: migrated, bridge
  ``office`` added, demo data seeded: alice 100, bob 101, carol 199 and the demo contacts). Its call-center settings
  can be changed with ``update_settings`` (sqlite3; the CRM reads them for every batch of events). ``calls()`` reads
  the calls table as a person would see it: kind, number, contact, resource, duration ...
- ``LiveBridge`` writes a settings file for the lab (AMI port, user and secret, channel profile) and the CRM (port,
  the template's bridge secret), runs the bridge and waits until its /health says it is connected to the PBX.
- ``settle()`` waits until the PBX has no channel, every leg the CRM knows has ended, and the bridge has delivered
  everything it produced: then the rows are final and can be compared exactly.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bridge.live_crm import CALLCENTER, CrmProcess, CrmTemplate, crm_environment

from .labs import LocalLab, PjsipLab, free_tcp_port, spawn, stop_process, wait_until

WAIT = 30.0  # seconds any condition may take on a loaded machine; never a timing assertion


@dataclass(frozen=True)
class CallRow:
    """One row of the CRM's calls table, as the Call Center screen lists it."""

    kind: str
    number: str
    contact: str | None  # "First Last" of the matched contact
    resource: str | None  # the agent's username
    extension: str
    state: str
    answered: bool
    duration: int
    direction: str
    transferred_to: str
    transferred_from: str
    caller_name: str
    number_digits: str
    pbx_call_id: str

    @property
    def seen(self) -> tuple[str, str, str | None, str | None, bool]:
        """What a person checks first: (kind, number, contact, resource, answered)."""
        return (self.kind, self.number, self.contact, self.resource, self.answered)


class LiveCrm:
    """``callcenter serve`` on a copy of the template database, in ``directory``."""

    def __init__(self, template: CrmTemplate, directory: Path) -> None:
        self.template = template
        self.database = template.copy(directory)
        self.directory = directory
        self.process = CrmProcess(self.database, free_tcp_port(), directory / "crm.log")

    @property
    def port(self) -> int:
        return self.process.port

    def start(self, timeout: float = 120.0) -> LiveCrm:
        """CrmProcess.start, but spawned like every live child: registered, and ended with the test process."""
        process = self.process
        process.process = spawn([*CALLCENTER, "serve", "--host", "127.0.0.1", "--port", str(process.port),
                                 "--no-access-log"], log=process.log_path, env=crm_environment(self.database))

        def listening() -> bool:
            if process.process is not None and process.process.poll() is not None:
                raise RuntimeError(f"the CRM exited with {process.process.returncode}: "
                                   f"{process.log_path.read_text(errors='replace')}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", process.port), timeout=0.5):
                return True
            return False

        wait_until(listening, f"the CRM to listen on port {process.port}", timeout=timeout, interval=0.05)
        return self

    def stop(self) -> None:
        stop_process(self.process.process, grace=15)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30) as db:
            db.row_factory = sqlite3.Row
            return db.execute(sql, params).fetchall()

    def update_settings(self, **fields: Any) -> None:
        """Change the call-center settings (S-3): create_call_when_answered, call_prefix, update_from_internal_calls
        ... The CRM reads them for every batch of events it takes."""
        columns = ", ".join(f"{name} = ?" for name in fields)
        db = sqlite3.connect(self.database, timeout=30)
        try:
            with db:
                db.execute(f"UPDATE resources_callcentersettings SET {columns} WHERE id = 1", tuple(fields.values()))
        finally:
            db.close()

    def calls(self) -> list[CallRow]:
        rows = self._query(
            "SELECT c.*, u.username, ct.first_name, ct.last_name FROM calls_call c"
            " LEFT JOIN resources_resource r ON r.id = c.resource_id LEFT JOIN auth_user u ON u.id = r.user_id"
            " LEFT JOIN contacts_contact ct ON ct.id = c.contact_id ORDER BY c.started_at, c.extension, c.id"
        )
        return [
            CallRow(
                kind=row["kind"], number=row["number"],
                contact=f"{row['first_name']} {row['last_name']}".strip() if row["contact_id"] else None,
                resource=row["username"], extension=row["extension"], state=row["state"],
                answered=row["answered_at"] is not None, duration=int(row["duration"]), direction=row["direction"],
                transferred_to=row["transferred_to"], transferred_from=row["transferred_from"],
                caller_name=row["caller_name"], number_digits=row["number_digits"], pbx_call_id=row["pbx_call_id"],
            )
            for row in rows
        ]

    def legs(self) -> list[sqlite3.Row]:
        return self._query("SELECT * FROM calls_callleg ORDER BY rang_at, extension")

    def open_legs(self) -> int:
        return int(self._query("SELECT count(*) FROM calls_callleg WHERE ended_at IS NULL")[0][0])

    def failed_events(self) -> list[str]:
        return [f"{row['event_id']}: {row['error']}"
                for row in self._query("SELECT event_id, error FROM calls_processedevent WHERE failed")]

    def busy(self, username: str) -> bool | None:
        """The agent's Busy switch as the PBX reported it (Resource.pbx_busy); None = never reported."""
        [row] = self._query("SELECT r.pbx_busy FROM resources_resource r JOIN auth_user u ON u.id = r.user_id"
                            " WHERE u.username = ?", (username,))
        return None if row[0] is None else bool(row[0])

    def bridge_connected(self) -> bool:
        rows = self._query("SELECT pbx_connected FROM calls_bridge WHERE bridge_id = 'office'")
        return bool(rows and rows[0][0])

    def wait_calls(self, condition: Any, what: str, timeout: float = WAIT) -> list[CallRow]:
        """The calls once ``condition(calls)`` holds; AssertionError with the rows otherwise."""
        return wait_until(lambda: (rows := self.calls()) and condition(rows) and rows, what, timeout=timeout,
                          interval=0.2, detail=lambda: "\n".join(map(repr, self.calls())))


class BridgeControlPort:
    """What a test reads from a running bridge's control port (``self.port``): /health and /metrics."""

    port: int

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as answer:  # noqa: S310
            return str(answer.read().decode())

    def health(self) -> dict[str, Any]:
        return dict(json.loads(self._get("/health")))

    def metrics(self) -> dict[str, float]:
        """The unlabelled samples, by name."""
        values: dict[str, float] = {}
        for line in self._get("/metrics").splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values


class LiveBridge(BridgeControlPort):
    """``callcenter bridge run`` for ``lab`` and ``crm``, with its settings file, data and logs in ``directory``."""

    def __init__(self, directory: Path, lab: PjsipLab | LocalLab, crm: LiveCrm, *,
                 extensions: tuple[str, ...] = ("100", "101"), **asterisk: Any) -> None:
        self.directory = directory
        self.port = free_tcp_port()
        self.config = directory / "bridge.toml"
        self.log = directory / "bridge.out"
        self.data = directory / "bridge-data"
        settings = {
            "bridge": {
                "phone_system": "asterisk", "address": "127.0.0.1", "port": self.port,
                "callback_address": "127.0.0.1", "callback_port": crm.port, "bridge_id": "office",
                "secret_file": str(crm.template.secret_file), "data_dir": str(self.data),
                "extensions": list(extensions), "internal_digits": 3, "extended_log": True, "external_log": True,
            },
            "asterisk": {
                "host": "127.0.0.1", "port": lab.ami_port, "username": lab.ami_user, "secret": lab.ami_secret,
                "profile": lab.profile, "originate_channel": lab.originate_channel,
                "originate_context": "from-internal", **asterisk,
            },
        }
        lines: list[str] = []
        for table, values in settings.items():
            lines.append(f"[{table}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
            lines.append("")
        directory.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines), encoding="utf-8")
        self.config.chmod(0o600)
        self.process: Any = None

    def start(self) -> LiveBridge:
        self.process = spawn([sys.executable, "-m", "callcenter", "bridge", "run", "--config", str(self.config)],
                             log=self.log, env=_clean_env())

        def connected() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bridge exited with {self.process.returncode}:\n{self.output()}")
            try:
                return bool(self.health().get("pbx_connected"))
            except OSError:
                return False

        wait_until(connected, "the bridge to connect to the PBX", timeout=90, interval=0.2, detail=self.output)
        return self

    def output(self) -> str:
        parts = [self.log.read_text(errors="replace") if self.log.exists() else ""]
        for name in ("errors.log", "events.log"):
            path = self.data / name
            if path.exists():
                parts.append(f"--- {name} (end)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)

    def stop(self) -> None:
        stop_process(self.process, grace=20)


def _clean_env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLCENTER_", "DJANGO_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def settle(lab: PjsipLab | LocalLab, bridge: LiveBridge, crm: LiveCrm, timeout: float = WAIT) -> list[CallRow]:
    """The CRM's calls once everything is over: the PBX has no channel, no leg is open in the CRM, and the bridge has
    delivered everything it produced (outbox empty, nothing new read from the PBX between two looks)."""
    lab.wait_idle(timeout)
    last: tuple[float, float] | None = None

    def quiet() -> bool:
        nonlocal last
        metrics = bridge.metrics()
        now = (metrics["callcenter_bridge_events_in_total"], metrics["callcenter_bridge_events_delivered_total"])
        done = (metrics["callcenter_bridge_outbox_depth"] == 0 and crm.open_legs() == 0 and now == last)
        last = now
        return done

    wait_until(quiet, "the bridge to deliver every event and the CRM to close every leg", timeout=timeout,
               interval=0.5, detail=lambda: f"open legs: {crm.open_legs()}\n{bridge.output()}")
    failed = crm.failed_events()
    assert not failed, f"the CRM failed to apply events: {failed}"
    rows = crm.calls()
    assert all(row.state == "ended" for row in rows), f"a call is still shown in progress: {rows}"
    return rows
