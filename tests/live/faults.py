"""Faults on the live stack (tests/live/test_faults.py, bench/live_faults.py): the lab's Asterisk killed and started
again, restarted by itself, its AMI secret changed; the bridge killed and started again; and the two accounts of the
calls to compare, the PBX's own (a raw AMI capture) and the CRM's (its legs, with their times).

Rules
- Asterisk is started again on the same directory and ports (run-asterisk.sh renders the configs again, the AstDB in
  DIR/var/lib stays), as a service manager would. ``core restart now`` hangs up every call and execs Asterisk again
  in the same process (same PID). ``manager reload`` with a new secret keeps the sessions already logged in; only new
  logins need the new secret.
- The bridge is started again on the same settings and data directory (outbox, pbx-alive.json), as its service
  manager would after a crash or an upgrade.
- The PBX's account: each agent channel's start (Newchannel), answer (Newstate Up) and end (Hangup) at Asterisk's
  own Timestamp (timestampevents=yes), read from a capture of another AMI session (labs.AmiRecorder), which hears
  the events the bridge hears when the bridge hears them.
- ``Chatter`` sends a UserEvent every 0.5 s: the background noise of a busy PBX (phones registering, device states,
  queues). A quiet PBX says nothing during a call but the answers to the bridge's own Ping (every 4 s), so the last
  moment the bridge knew the PBX alive is that much older; with chatter it is at most ~0.5 s old, and a test can
  hold the product to its promise tightly. (The lab's AMI user reads everything, UserEvents too.)
- Nothing here measures the machine: waits are for conditions, with generous deadlines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from .labs import Ami, PjsipLab, spawn, stop_process, wait_booted, wait_until
from .stack import WAIT, LiveBridge, LiveCrm, _clean_env

# ---- the PBX ----------------------------------------------------------------------------------------------------


def accepting(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _forget_session(lab: PjsipLab) -> None:
    """The lab's own AMI session died with the Asterisk it was logged in to; the next use opens a new one."""
    if lab._ami is not None:
        with contextlib.suppress(OSError):
            lab._ami.sock.close()
        lab._ami = None


def kill_asterisk(lab: PjsipLab, sig: int = signal.SIGKILL) -> float:
    """Send ``sig`` to the lab's Asterisk and wait until it is gone; returns the moment it was sent (time.time())."""
    process = lab.process
    assert process is not None and process.poll() is None, "the lab's Asterisk is not running"
    sent = time.time()
    process.send_signal(sig)
    process.wait(timeout=60)
    stop_process(process)  # reaped: out of the registry of running children
    _forget_session(lab)
    return sent


def start_asterisk(lab: PjsipLab) -> float:
    """Start the lab's Asterisk again on the same directory and ports (without waiting for it); returns the moment it
    was started. The configs are rendered again, with ``lab.ami_secret``."""
    assert lab.directory is not None and (lab.process is None or lab.process.poll() is not None)
    env = dict(os.environ, PHONE_BASE=str(lab.phone_ports["100"]), PSTN_PORT=str(lab.pstn_port),
               AMI_USER=lab.ami_user, AMI_SECRET=lab.ami_secret)
    started = time.time()
    lab.process = spawn(["sh", str(lab.package / "run-asterisk.sh"), str(lab.directory), str(lab.ami_port),
                         str(lab.sip_port)], log=lab.logdir / "asterisk-again.out", env=env)
    return started


def restart_now(lab: PjsipLab) -> float:
    """``core restart now`` (as an administrator types it); returns the moment it was asked. Asterisk answers by
    closing every AMI connection, ours too."""
    ami = Ami(lab.ami_port, user=lab.ami_user, secret=lab.ami_secret, timeout=10)
    asked = time.time()
    with contextlib.suppress(OSError, EOFError, TimeoutError):
        ami.command("core restart now")
    ami.sock.close()
    _forget_session(lab)
    return asked


def wait_asterisk_booted(lab: PjsipLab, timeout: float = 90.0) -> None:
    """Until the lab's Asterisk accepts a login, says FullyBooted and has its SIP transport (as PjsipLab.start)."""
    assert lab.process is not None
    [log] = sorted(lab.logdir.glob("asterisk-*.out"), key=lambda path: path.stat().st_mtime)[-1:]
    wait_booted(lab.ami_port, user=lab.ami_user, secret=lab.ami_secret, process=lab.process, log=log,
                timeout=timeout)
    wait_until(lambda: "transport-udp" in lab.ami.command("pjsip show transports"), "the PJSIP transport",
               timeout=timeout)


def change_ami_secret(lab: PjsipLab, secret: str) -> None:
    """The administrator sets a new secret for the AMI user in manager.conf and types ``manager reload``."""
    assert lab.directory is not None
    conf = lab.directory / "etc" / "manager.conf"
    old = f"secret = {lab.ami_secret}"
    text = conf.read_text(encoding="utf-8")
    assert old in text, f"no {old!r} in {conf}"
    conf.write_text(text.replace(old, f"secret = {secret}"), encoding="utf-8")
    lab.ami.command("manager reload")  # the lab's own session stays logged in
    lab.ami_secret = secret
    with contextlib.closing(Ami(lab.ami_port, user=lab.ami_user, secret=secret).sock):
        pass  # the new secret works


def hang_up(lab: PjsipLab, prefix: str) -> None:
    """Hang up the live channel whose name starts with ``prefix`` (PJSIP/trunk-: the outside caller hangs up)."""
    [channel] = [c["Channel"] for c in lab.channels() if c.get("Channel", "").startswith(prefix)]
    reply = lab.ami.action("Hangup", Channel=channel, Cause="16")
    assert reply.get("Response") == "Success", reply


def agent_channel(lab: PjsipLab, ext: str, state: str = "Up") -> str:
    """The name of agent ``ext``'s channel once it is in ``state``."""

    def found() -> str:
        for channel in lab.channels():
            if channel.get("Channel", "").startswith(f"PJSIP/{ext}-") and channel.get("ChannelStateDesc") == state:
                return channel["Channel"]
        return ""

    return str(wait_until(found, f"agent {ext}'s channel to be {state}", timeout=WAIT, interval=0.1))


class Chatter:
    """A UserEvent every ``every`` s on a session of its own, until the block ends or the PBX goes away."""

    def __init__(self, lab: PjsipLab, every: float = 0.5) -> None:
        self.lab = lab
        self.every = every
        self.sent = 0
        self._stop = threading.Event()
        self._ami: Ami | None = None
        self._thread = threading.Thread(target=self._run, name="ami-chatter", daemon=True)

    def __enter__(self) -> Chatter:
        self._ami = Ami(self.lab.ami_port, user=self.lab.ami_user, secret=self.lab.ami_secret, timeout=5)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._ami is not None
        while not self._stop.wait(self.every):
            try:
                self._ami.action("UserEvent", UserEvent="chatter")
            except (OSError, EOFError, TimeoutError):
                return  # the PBX went away
            self.sent += 1

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._ami is not None:
            with contextlib.suppress(OSError):
                self._ami.sock.close()


# ---- the PBX's account: a raw AMI capture -----------------------------------------------------------------------


def messages(raw: str) -> list[dict[str, str]]:
    """The complete messages of a raw AMI capture, each as its headers (the first value of each)."""
    found = []
    for block in raw.split("\r\n\r\n")[:-1]:
        headers: dict[str, str] = {}
        for line in block.split("\r\n"):
            key, sep, value = line.partition(":")
            if sep:
                headers.setdefault(key.strip(), value.strip())
        if headers:
            found.append(headers)
    return found


@dataclass
class PbxLeg:
    """One agent channel as Asterisk reported it (epoch seconds, Asterisk's clock)."""

    channel: str
    uniqueid: str
    linkedid: str
    started: float
    answered: float | None = None
    ended: float | None = None

    @property
    def talk(self) -> float:
        """The PBX's talk time (answer to hang-up): what CDR calls billsec."""
        assert self.answered is not None and self.ended is not None, self
        return self.ended - self.answered


def agent_legs(raw: str, ext: str) -> list[PbxLeg]:
    """Agent ``ext``'s channels in a capture, oldest first."""
    legs: dict[str, PbxLeg] = {}
    for message in messages(raw):
        event, channel = message.get("Event", ""), message.get("Channel", "")
        if not channel.startswith(f"PJSIP/{ext}-") or "Timestamp" not in message:
            continue
        when = float(message["Timestamp"])
        uniqueid = message.get("Uniqueid", "")
        if event == "Newchannel":
            legs[uniqueid] = PbxLeg(channel, uniqueid, message.get("Linkedid", ""), when)
        elif uniqueid in legs:
            leg = legs[uniqueid]
            if event == "Newstate" and message.get("ChannelStateDesc") == "Up" and leg.answered is None:
                leg.answered = when
            elif event == "Hangup":
                leg.ended = when
    return sorted(legs.values(), key=lambda leg: leg.started)


def last_heard(raw: str) -> float:
    """Asterisk's Timestamp of the last event in a capture: the PBX was alive then, and the bridge heard it too."""
    stamps = [float(m["Timestamp"]) for m in messages(raw) if "Timestamp" in m and "Event" in m]
    assert stamps, "the capture holds no event"
    return max(stamps)


def login_refusals(raw: str, user: str) -> list[float]:
    """When Asterisk refused a login of ``user`` (the security event InvalidPassword, Service AMI)."""
    return [float(m["Timestamp"]) for m in messages(raw)
            if m.get("Event") == "InvalidPassword" and m.get("Service") == "AMI" and m.get("AccountID") == user]


# ---- the CRM's account ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrmLeg:
    """One row of the CRM's call legs, its times as epoch seconds."""

    call_id: str
    extension: str
    rang_at: float | None
    answered_at: float | None
    ended_at: float | None
    reconciled: bool
    call: int | None


def _epoch(value: str | None) -> float | None:
    if value is None:
        return None
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # Django keeps UTC in SQLite
    return moment.timestamp()


def _query(crm: LiveCrm, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    with contextlib.closing(sqlite3.connect(f"file:{crm.database}?mode=ro", uri=True, timeout=30)) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, params).fetchall()


def crm_legs(crm: LiveCrm) -> list[CrmLeg]:
    return [CrmLeg(row["pbx_call_id"], row["extension"], _epoch(row["rang_at"]), _epoch(row["answered_at"]),
                   _epoch(row["ended_at"]), bool(row["reconciled"]), row["call_id"])
            for row in _query(crm, "SELECT * FROM calls_callleg ORDER BY rang_at, extension")]


def crm_bridge(crm: LiveCrm) -> tuple[bool, str]:
    """The CRM's Bridge row for the harness's bridge: (connected to the PBX, detail), as the bridge last said."""
    [row] = _query(crm, "SELECT pbx_connected, detail FROM calls_bridge WHERE bridge_id = 'office'")
    return bool(row[0]), str(row[1])


def live_lists(crm: LiveCrm, since: float = 0.0) -> int:
    """How many bridge.calls lists (sent by the bridge at every (re)connect) taken at ``since`` or later the CRM has
    applied."""
    rows = _query(crm, "SELECT occurred_at FROM calls_processedevent WHERE event_type = 'bridge.calls'")
    return sum(1 for row in rows if (_epoch(row[0]) or 0.0) >= since)


def open_legs_of(crm: LiveCrm, ext: str) -> int:
    """Open legs of an extension: what makes the agent's phone show ringing or in a call (queries.phone_state)."""
    return int(_query(crm, "SELECT count(*) FROM calls_callleg WHERE extension = ? AND ended_at IS NULL",
                      (ext,))[0][0])


# ---- the bridge -------------------------------------------------------------------------------------------------


class FaultBridge(LiveBridge):
    """A LiveBridge that can be launched without waiting for the PBX link, killed, and given another AMI secret;
    started again it keeps its settings file, port and data directory."""

    def launch(self) -> FaultBridge:
        self.process = spawn([sys.executable, "-m", "callcenter", "bridge", "run", "--config", str(self.config)],
                             log=self.log, env=_clean_env())
        return self

    def start(self) -> FaultBridge:
        self.launch()
        self.wait_connected()
        return self

    def connected(self) -> bool | None:
        """/health's pbx_connected; None while the bridge does not answer."""
        try:
            return bool(self.health().get("pbx_connected"))
        except (OSError, ValueError):
            return None

    def wait_connected(self, timeout: float = 90.0) -> None:
        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bridge exited with {self.process.returncode}:\n{self.output()}")
            return bool(self.connected())

        wait_until(up, "the bridge to connect to the PBX", timeout=timeout, interval=0.05, detail=self.output)

    def kill(self, sig: int = signal.SIGKILL) -> float:
        """Send ``sig`` and wait until the bridge is gone; returns the moment it was sent."""
        process = self.process
        assert process is not None and process.poll() is None, "the bridge is not running"
        sent = time.time()
        process.send_signal(sig)
        process.wait(timeout=60)
        stop_process(process)
        return sent

    def set_secret(self, secret: str) -> None:
        """Its settings file's [asterisk] secret (used at the next start)."""
        lines = self.config.read_text(encoding="utf-8").splitlines()
        section = ""
        for i, line in enumerate(lines):
            if line.startswith("["):
                section = line
            elif section == "[asterisk]" and line.startswith("secret = "):
                lines[i] = f"secret = \"{secret}\""
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def errors(self) -> str:
        path = self.data / "errors.log"
        return path.read_text(errors="replace") if path.exists() else ""
