"""The real Asterisk labs of ../shared as private child processes, a small AMI client, and SIPp phones and callers.

Rules
- The labs are found through CALLCENTER_ASTERISK_DIR (the directory holding ``asterisk-pjsip/`` and ``asterisk/``),
  default ``<repo>/../shared``. ``unavailable()`` says in one line why they cannot run here (no labs, no sipp, a
  missing runtime library), or returns ''.
- Each tarball is unpacked once into ``<repo>/var/live-asterisk/<name>-<size>-<mtime>/`` (gitignored), under a file
  lock, into a temporary directory renamed into place, so a half-unpacked tree is never used and two test sessions
  do not unpack at once. Instance directories are short ``/tmp/astXXXX`` dirs (the control socket path must stay
  under 108 bytes); their logs are copied into the test's directory when the instance stops, then removed.
- Ports are chosen free on 127.0.0.1 (TCP for AMI, UDP for SIP, the phones, the PSTN far end and every SIPp media
  port), from 10000-19999 for UDP (neither the ephemeral range nor Asterisk's RTP range 20000-30000).
- Every child process runs under ``setpriv --pdeathsig TERM`` (it dies with the test process even when that is
  killed) and is registered; ``stop_process`` sends SIGTERM, then SIGKILL after a grace period, and ``reap_all``
  stops whatever is left at the end of the session. Nothing is ever killed by name.
- Nothing here times the machine: every wait is for a condition, with a generous deadline.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENV_DIR = "CALLCENTER_ASTERISK_DIR"
CACHE = REPO / "var" / "live-asterisk"
HERE = Path(__file__).resolve().parent

PJSIP_AMI_USER, PJSIP_AMI_SECRET = "crm", "crm-lab-secret"
LOCAL_AMI_USER, LOCAL_AMI_SECRET = "crm", "lab-secret"
RUNTIME_PACKAGES = ("libedit2 libjansson4 libxml2 libxslt1.1 libsqlite3-0 libssl3 libuuid1 libcrypt1 libstdc++6 "
                    "xz-utils sip-tester")


def shared_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or REPO.parent / "shared").resolve()


def pjsip_tarball() -> Path | None:
    found = sorted((shared_dir() / "asterisk-pjsip").glob("asterisk-*-pjsip-*.tar.xz"))
    return found[-1] if found else None


def local_lab_dir() -> Path:
    return shared_dir() / "asterisk"


def unavailable(which: str = "pjsip") -> str:
    """'' when the lab ``which`` (pjsip or local) can run here, else one line saying why and what to do."""
    where = shared_dir()
    hint = f"set {ENV_DIR} to the directory holding asterisk-pjsip/ and asterisk/ (now {where})"
    if which == "pjsip":
        if pjsip_tarball() is None:
            return f"no Asterisk PJSIP lab tarball in {where}/asterisk-pjsip; {hint}"
        if shutil.which("sipp") is None:
            return "sipp is not installed (the PJSIP lab's phones); apt-get install sip-tester (.ci/run does)"
    else:
        lab = local_lab_dir()
        if not (lab / "run-asterisk.sh").is_file() or not list(lab.glob("asterisk-*.tar.xz")):
            return f"no Asterisk Local-channel lab (run-asterisk.sh + tarball) in {lab}; {hint}"
    if shutil.which("xz") is None and shutil.which("tar") is None:
        return f"cannot unpack the lab: apt-get install {RUNTIME_PACKAGES}"
    return ""


def missing_libraries(tree: Path) -> str:
    """The runtime libraries ``tree``'s Asterisk cannot find, as one line naming the packages; '' when none."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(tree / "lib"))
    done = subprocess.run(["ldd", str(tree / "bin" / "asterisk")], env=env, capture_output=True, text=True,
                          check=False)
    missing = sorted({line.split()[0] for line in done.stdout.splitlines() if "not found" in line})
    if not missing:
        return ""
    return f"the lab's Asterisk misses {' '.join(missing)}; apt-get install {RUNTIME_PACKAGES} (.ci/run does)"


# ---- unpacking once ---------------------------------------------------------------------------------------------


def unpacked(tarball: Path) -> Path:
    """The directory ``tarball`` is unpacked in, shared by every session while the tarball is unchanged."""
    stat = tarball.stat()
    name = tarball.name.removesuffix(".tar.xz")
    target = CACHE / f"{name}-{stat.st_size}-{stat.st_mtime_ns}"
    if (target / ".complete").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / ".complete").exists():
            return target
        scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=CACHE))
        try:
            if shutil.which("xz") and shutil.which("tar"):
                subprocess.run(["tar", "-xJf", str(tarball), "-C", str(scratch)], check=True, capture_output=True)
            else:
                import tarfile

                with tarfile.open(tarball) as archive:
                    archive.extractall(scratch, filter="data")
            (scratch / ".complete").write_text(f"{tarball}\n", encoding="utf-8")
            shutil.rmtree(target, ignore_errors=True)
            scratch.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return target


def pjsip_package() -> Path:
    """The unpacked PJSIP lab: run-asterisk.sh, lab/, sipp/, bin/, lib/ ..."""
    tarball = pjsip_tarball()
    assert tarball is not None, unavailable("pjsip")
    [package] = [path for path in unpacked(tarball).iterdir() if (path / "run-asterisk.sh").is_file()]
    return package


def local_tree() -> Path:
    """The unpacked Local-channel lab's Asterisk tree (bin/asterisk, lib/, modules/)."""
    [tarball] = sorted(local_lab_dir().glob("asterisk-*.tar.xz"))[-1:]
    [tree] = [path for path in unpacked(tarball).iterdir() if (path / "bin" / "asterisk").is_file()]
    return tree


# ---- ports ------------------------------------------------------------------------------------------------------

_handed_out: set[int] = set()


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_tcp_port() -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def free_udp_ports(count: int = 1, *, step: int = 1) -> int:
    """The first of ``count`` free UDP ports ``step`` apart (SIPp binds a media port and the one 2 above it)."""
    rng = random.Random()
    for _ in range(1000):
        base = rng.randrange(10000, 19990 - count * step)
        wanted = [base + i * step for i in range(count)]
        if not any(port in _handed_out for port in wanted) and all(_udp_free(port) for port in wanted):
            _handed_out.update(wanted)
            return base
    raise RuntimeError("no free UDP ports on 127.0.0.1 between 10000 and 19999")


def media_port() -> int:
    """A free UDP port for SIPp's media, with the one 2 above it free too (SIPp binds both)."""
    base = free_udp_ports(3)
    return base


# ---- child processes --------------------------------------------------------------------------------------------

_processes: list[subprocess.Popen[bytes]] = []


def spawn(args: list[str], *, log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
          ) -> subprocess.Popen[bytes]:
    """``args`` as a registered child whose output goes to ``log``; it gets SIGTERM if this process dies."""
    if shutil.which("setpriv"):
        args = ["setpriv", "--pdeathsig", "TERM", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    _processes.append(process)
    return process


def stop_process(process: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL when it is still there ``grace`` seconds later; always reaped."""
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=30)
    with contextlib.suppress(ValueError):
        _processes.remove(process)


def reap_all() -> list[str]:
    """Stop every child still running (at the end of the session); returns what had been left behind."""
    left = [" ".join(map(str, process.args)) for process in _processes if process.poll() is None]
    for process in list(_processes):
        stop_process(process, grace=5)
    _processes.clear()
    return left


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.1,
               detail: Callable[[], str] | None = None) -> Any:
    """The first truthy value of ``condition()`` within ``timeout`` s; AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail else ""
            raise AssertionError(f"{what}: not within {timeout:g} s{extra}")
        time.sleep(interval)


# ---- AMI --------------------------------------------------------------------------------------------------------


class Message(dict[str, str]):
    """One AMI message: the first value of each key, and ``pairs`` in order (Output: repeats in Command replies)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        for key, value in pairs:
            self.setdefault(key, value)
        self.pairs = pairs
        self.events: list[Message] = []  # the list events of an EventList response

    def all(self, key: str) -> list[str]:
        return [value for name, value in self.pairs if name == key]


class Ami:
    """A synchronous AMI session for the tests' own checks and actions (events off unless asked)."""

    def __init__(self, port: int, *, user: str = PJSIP_AMI_USER, secret: str = PJSIP_AMI_SECRET,
                 events: bool = False, timeout: float = 20.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buffer = b""
        self.counter = 0
        self.banner = self._line(time.monotonic() + timeout)
        reply = self.action("Login", Username=user, Secret=secret, Events="on" if events else "off")
        if reply.get("Response") != "Success":
            raise RuntimeError(f"AMI login refused: {reply.get('Message')}")

    def _line(self, deadline: float) -> str:
        while b"\r\n" not in self.buffer:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("AMI connection closed")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def read(self, timeout: float | None = None) -> Message:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        pairs: list[tuple[str, str]] = []
        while True:
            line = self._line(deadline)
            if not line:
                if pairs:
                    return Message(pairs)
                continue
            key, _, value = line.partition(":")
            pairs.append((key.strip(), value.strip()))

    def action(self, name: str, *pairs: tuple[str, str], **fields: str) -> Message:
        """The response to the action (with ``events`` filled for an EventList action)."""
        self.counter += 1
        action_id = f"live-{os.getpid()}-{self.counter}"
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        lines += [f"{key}: {value}" for key, value in (*pairs, *fields.items())]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + self.timeout
        response: Message | None = None
        while True:
            message = self.read(max(0.01, deadline - time.monotonic()))
            if message.get("ActionID") != action_id:
                continue
            if response is None and "Response" in message:
                response = message
                if message.get("EventList", "").lower() != "start":
                    return response
            elif response is not None:
                if message.get("EventList", "").lower() == "complete":
                    return response
                response.events.append(message)

    def command(self, text: str) -> str:
        reply = self.action("Command", Command=text)
        return "\n".join(reply.all("Output"))

    def channels(self) -> list[Message]:
        return self.action("CoreShowChannels").events

    def db_put(self, family: str, key: str, value: str) -> None:
        reply = self.action("DBPut", Family=family, Key=key, Val=value)
        assert reply.get("Response") == "Success", reply

    def db_get(self, family: str, key: str) -> str | None:
        reply = self.action("DBGet", Family=family, Key=key)
        if reply.get("Response") != "Success":
            return None
        return reply.events[0].get("Val") if reply.events else None

    def db_del(self, family: str, key: str) -> None:
        self.action("DBDel", Family=family, Key=key)  # a key already absent is fine

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError):
            self.action("Logoff")
        self.sock.close()


def wait_booted(port: int, *, user: str, secret: str, process: subprocess.Popen[bytes], log: Path,
                timeout: float = 90.0) -> None:
    """Until Asterisk on ``port`` accepts a login and says FullyBooted; fails early when the process ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Asterisk exited with {process.returncode}: {_tail(log)}")
        try:
            ami = Ami(port, user=user, secret=secret, events=True, timeout=5)
        except (OSError, EOFError, RuntimeError):
            time.sleep(0.2)
            continue
        try:
            while time.monotonic() < deadline:
                if ami.read(timeout=max(0.01, deadline - time.monotonic())).get("Event") == "FullyBooted":
                    return
        except (OSError, EOFError):
            time.sleep(0.2)
        finally:
            ami.sock.close()
    raise RuntimeError(f"Asterisk on AMI port {port} did not boot within {timeout:g} s: {_tail(log)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class AmiRecorder:
    """Every byte Asterisk sends on one AMI session (events on), from the banner to the Logoff, into ``path``:
    the raw capture format of tests/fixtures/ami (what ``ami.py capture`` writes)."""

    def __init__(self, port: int, path: Path, *, user: str, secret: str) -> None:
        self.path = path
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.file = path.open("wb")
        login = f"Action: Login\r\nActionID: capture-1\r\nUsername: {user}\r\nSecret: {secret}\r\nEvents: on\r\n\r\n"
        self.sock.sendall(login.encode())
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._run, name=f"ami-capture-{port}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError):
            while data := self.sock.recv(65536):
                self.file.write(data)

    def text(self) -> str:
        self.file.flush()
        return self.path.read_bytes().decode("utf-8", "replace")

    def stop(self) -> Path:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"Action: Logoff\r\nActionID: capture-2\r\n\r\n")
        self.thread.join(10)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        self.file.close()
        return self.path


# ---- SIPp -------------------------------------------------------------------------------------------------------


@dataclass
class Phone:
    """One SIPp UAS (the lab's sipp/phone.sh): a phone's port in one MODE (answer, noanswer, busy, notify)."""

    ext: str
    port: int
    mode: str
    process: subprocess.Popen[bytes]
    logdir: Path

    def log(self) -> str:
        return _tail(self.logdir / f"phone-{self.port}.log", 40) + "\n" + _tail(self.logdir / f"phone-{self.port}.err")

    def messages(self) -> str:
        """The SIP trace of this phone (every message it sent and received)."""
        path = self.logdir / f"phone-{self.port}.msg"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass
class Caller:
    """One SIPp UAC call (sipp/call.sh, or a scenario of tests/live/sipp); ``wait()`` gives SIPp's exit status:
    0 = the call went as the scenario says (answered, or cancelled for caller-cancel.xml)."""

    number: str
    caller: str
    local_port: int
    process: subprocess.Popen[bytes]
    logdir: Path

    def wait(self, timeout: float = 120.0) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.process)
            raise AssertionError(f"the SIPp call {self.caller} -> {self.number} still ran after {timeout:g} s:\n"
                                 f"{self.log()}") from None

    def log(self) -> str:
        return "\n".join(_tail(self.logdir / f"call-{self.local_port}.{ext}", 40) for ext in ("log", "err"))

    def messages(self) -> str:
        path = self.logdir / f"call-{self.local_port}.msg"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_bound(port: int, process: subprocess.Popen[bytes], what: str, log: Callable[[], str]) -> None:
    def bound() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        return not _udp_free(port)

    wait_until(bound, f"{what} to listen on UDP {port}", timeout=30, interval=0.05)


# ---- the PJSIP lab ----------------------------------------------------------------------------------------------

EXTENSIONS = ("100", "101", "102")


def pjsip_transfer_configs(directory: Path, *, digit_timeout: int | None = None) -> Path:
    """The PJSIP lab's configs (a CONFIG_DIR for ``PjsipLab(config_dir=...)``) with what transfers and click-to-dial
    need on SIPp phones: ``atxfer => *2`` (AMI Atxfer and the transfer key), no transfer prompt (the lab has no
    sounds, and the attended-transfer feature would fail to play ``pbx-transfer``), optionally a shorter wait for the
    transfer digits, and ``send_connected_line=no`` on the phones (SIPp phones cannot answer Asterisk's connected-line
    re-INVITEs: the phone's scenario aborts and the call gets stuck)."""
    shutil.copytree(pjsip_package() / "lab", directory)
    general = "transferannouncesound =\n" + (f"transferdigittimeout = {digit_timeout}\n" if digit_timeout else "")
    (directory / "features.conf").write_text(f"[general]\n{general}\n[featuremap]\natxfer => *2\n", encoding="utf-8")
    pjsip = directory / "pjsip.conf"
    text = pjsip.read_text(encoding="utf-8")
    template = "[phone-endpoint](!)\ntype=endpoint\n"
    assert template in text, "the lab's pjsip.conf has no [phone-endpoint] template"
    pjsip.write_text(text.replace(template, template + "send_connected_line=no\n"), encoding="utf-8")
    return directory


class _LabAmi:
    """What both labs offer over their AMI: the tests' own session, raw capture, the live channels, waits."""

    ami_port: int
    ami_user: str
    ami_secret: str
    _ami: Ami | None

    @property
    def ami(self) -> Ami:
        """The tests' own AMI session (events off), opened on first use."""
        if self._ami is None:
            self._ami = Ami(self.ami_port, user=self.ami_user, secret=self.ami_secret)
        return self._ami

    def recorder(self, path: Path) -> AmiRecorder:
        return AmiRecorder(self.ami_port, path, user=self.ami_user, secret=self.ami_secret)

    def channels(self) -> list[Message]:
        return self.ami.channels()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until Asterisk has no channel left (``core show channels``: 0 active channels)."""
        wait_until(lambda: not self.channels(), "Asterisk to have no channels", timeout=timeout,
                   interval=0.2, detail=lambda: self.ami.command("core show channels"))

    def wait_channel(self, prefix: str, state: str = "Up", suffix: str = "", timeout: float = 30.0) -> str:
        """The name of the first channel starting with ``prefix`` (``PJSIP/100-``, ``Local/100@phones-``) and ending
        with ``suffix``, once it is in ``state`` (Ringing, Up)."""

        def found() -> str:
            for channel in self.channels():
                name = channel.get("Channel", "")
                if name.startswith(prefix) and name.endswith(suffix) and channel.get("ChannelStateDesc") == state:
                    return name
            return ""

        return str(wait_until(found, f"a channel {prefix}…{suffix} to be {state}", timeout=timeout, interval=0.1,
                              detail=lambda: self.ami.command("core show channels")))


@dataclass
class PjsipLab(_LabAmi):
    """One private Asterisk 22 with chan_pjsip (the lab's run-asterisk.sh), its SIPp phones and callers.

    ``start()`` picks free ports and waits for FullyBooted; ``phone(ext, mode, ...)`` (re)starts a phone,
    ``pstn(mode, ...)`` the far end of outbound trunk calls, ``call(number, caller)`` places a call;
    ``stop_phones()`` and ``stop()`` end everything by PID. ``logdir`` keeps SIPp's logs and, after stop(), the
    instance's Asterisk logs.
    """

    logdir: Path
    package: Path = field(default_factory=pjsip_package)
    ami_user: str = PJSIP_AMI_USER
    ami_secret: str = PJSIP_AMI_SECRET
    process: subprocess.Popen[bytes] | None = None
    directory: Path | None = None
    ami_port: int = 0
    sip_port: int = 0
    pstn_port: int = 0
    phone_ports: dict[str, int] = field(default_factory=dict)
    phones: dict[str, Phone] = field(default_factory=dict)
    callers: list[Caller] = field(default_factory=list)
    config_dir: Path | None = None  # run-asterisk.sh's CONFIG_DIR (a test's own *.conf); None = the lab's lab/
    _ami: Ami | None = None

    profile = "production"
    originate_channel = "PJSIP/{ext}"

    def start(self, attempts: int = 3) -> PjsipLab:
        self.logdir.mkdir(parents=True, exist_ok=True)
        problem = missing_libraries(self.package)
        if problem:
            raise RuntimeError(problem)
        for attempt in range(1, attempts + 1):
            self.directory = Path(tempfile.mkdtemp(prefix="ast"))
            self.ami_port = free_tcp_port()
            self.sip_port = free_udp_ports()
            self.pstn_port = free_udp_ports()
            base = free_udp_ports(len(EXTENSIONS))
            self.phone_ports = {ext: base + i for i, ext in enumerate(EXTENSIONS)}
            env = dict(os.environ, PHONE_BASE=str(base), PSTN_PORT=str(self.pstn_port), AMI_USER=self.ami_user,
                       AMI_SECRET=self.ami_secret)
            log = self.logdir / f"asterisk-{attempt}.out"
            self.process = spawn(["sh", str(self.package / "run-asterisk.sh"), str(self.directory),
                                  str(self.ami_port), str(self.sip_port),
                                  *([str(self.config_dir)] if self.config_dir else [])], log=log, env=env)
            try:
                wait_booted(self.ami_port, user=self.ami_user, secret=self.ami_secret, process=self.process, log=log)
                self.ami.command("core show version")  # a CLI round trip: the instance answers
                wait_until(lambda: "transport-udp" in self.ami.command("pjsip show transports"),
                           "the PJSIP transport", timeout=30)
                return self
            except RuntimeError:
                self.stop()
                if attempt == attempts:
                    raise
        return self

    # ---- phones and calls ----

    def phone(self, ext: str, mode: str = "answer", ring: float = 1, talk: float = 3600) -> Phone:
        """(Re)start ``ext``'s phone in ``mode``: answer after ``ring`` s and talk ``talk`` s (then hang up); noanswer;
        busy after ``ring`` s (486); notify (answer on a NOTIFY Event: talk)."""
        self.stop_phone(ext)
        return self._uas(ext, self.phone_ports[ext], mode, ring, talk)

    def pstn(self, mode: str = "answer", ring: float = 1, talk: float = 3600) -> Phone:
        """(Re)start the PSTN far end that outbound trunk calls ring."""
        self.stop_phone("pstn")
        return self._uas("pstn", self.pstn_port, mode, ring, talk)

    def _uas(self, ext: str, port: int, mode: str, ring: float, talk: float) -> Phone:
        env = dict(os.environ, LOGDIR=str(self.logdir), MEDIA_PORT=str(media_port()), IP="127.0.0.1")
        process = spawn(["sh", str(self.package / "sipp" / "phone.sh"), str(port), mode, f"{ring:g}", f"{talk:g}"],
                        log=self.logdir / f"phone-{ext}.out", env=env)
        phone = Phone(ext, port, mode, process, self.logdir)
        self.phones[ext] = phone
        _wait_bound(port, process, f"phone {ext} ({mode})", phone.log)
        return phone

    def stop_phone(self, ext: str) -> None:
        phone = self.phones.pop(ext, None)
        if phone is not None:
            stop_process(phone.process, grace=5)
            wait_until(lambda: _udp_free(phone.port), f"phone {ext}'s port {phone.port} to be free", timeout=15)

    def stop_phones(self) -> None:
        for caller in self.callers:
            stop_process(caller.process, grace=5)
        self.callers.clear()
        for ext in list(self.phones):
            self.stop_phone(ext)

    def call(self, number: str, caller: str, talk: float = 3, *, scenario: str = "", ring: float = 2) -> Caller:
        """Place one call (SIPp UAC) to ``number`` from ``caller``: an outside number comes in on the trunk, 100-102
        is that agent's phone dialling. It talks ``talk`` s once answered, then hangs up. ``scenario`` =
        'caller-cancel' uses tests/live/sipp/caller-cancel.xml: the caller hangs up ``ring`` s after the 180
        Ringing."""
        local_port = free_udp_ports()
        env = dict(os.environ, LOGDIR=str(self.logdir), LOCAL_PORT=str(local_port), MEDIA_PORT=str(media_port()),
                   IP="127.0.0.1", TIMEOUT_S="120")
        log = self.logdir / f"caller-{local_port}.out"
        if not scenario:
            args = ["sh", str(self.package / "sipp" / "call.sh"), str(self.sip_port), number, caller, f"{talk:g}"]
        else:
            rendered = self.logdir / f"call-{local_port}.xml"
            template = (HERE / "sipp" / f"{scenario}.xml").read_text(encoding="utf-8")
            rendered.write_text(template.replace("@RING_MS@", str(int(ring * 1000))), encoding="utf-8")
            args = ["sipp", f"127.0.0.1:{self.sip_port}", "-sf", str(rendered), "-s", number, "-key", "caller", caller,
                    "-i", "127.0.0.1", "-p", str(local_port), "-mi", "127.0.0.1", "-mp", env["MEDIA_PORT"], "-m", "1",
                    "-nostdin", "-timeout", "120", "-timeout_error", "-trace_err", "-error_file",
                    str(self.logdir / f"call-{local_port}.err"), "-trace_msg", "-message_file",
                    str(self.logdir / f"call-{local_port}.msg")]
        process = spawn(args, log=log, env=env)
        placed = Caller(number, caller, local_port, process, self.logdir)
        self.callers.append(placed)
        return placed

    # ---- the PBX's own state ----

    def active_channels(self) -> int:
        """The count ``core show channels`` prints (``N active channels``)."""
        match = re.search(r"(\d+) active channels?", self.ami.command("core show channels"))
        assert match, "core show channels printed no count"
        return int(match.group(1))

    def stop(self) -> None:
        self.stop_phones()
        if self._ami is not None:
            with contextlib.suppress(OSError):
                self._ami.close()
            self._ami = None
        stop_process(self.process, grace=15)
        self.process = None
        if self.directory is not None:
            with contextlib.suppress(OSError):
                shutil.copytree(self.directory / "log", self.logdir / f"asterisk-log-{self.directory.name}",
                                dirs_exist_ok=True)
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


# ---- the Local-channel lab --------------------------------------------------------------------------------------


@dataclass
class LocalLab(_LabAmi):
    """One private Asterisk 22 without SIP (../shared/asterisk): phones are Local channels whose behaviour is AstDB
    ``lab/<ext>/mode|delay|talk``; an inbound call is an Originate of ``Local/<did>@from-pstn``."""

    logdir: Path
    ami_user: str = LOCAL_AMI_USER
    ami_secret: str = LOCAL_AMI_SECRET
    process: subprocess.Popen[bytes] | None = None
    directory: Path | None = None
    ami_port: int = 0
    _ami: Ami | None = None

    profile = "lab"
    originate_channel = "Local/{ext}@phones"

    def start(self, attempts: int = 3) -> LocalLab:
        self.logdir.mkdir(parents=True, exist_ok=True)
        tree = local_tree()
        problem = missing_libraries(tree)
        if problem:
            raise RuntimeError(problem)
        for attempt in range(1, attempts + 1):
            self.directory = Path(tempfile.mkdtemp(prefix="ast"))
            (self.directory / tree.name).symlink_to(tree)  # run-asterisk.sh then finds the tree unpacked
            self.ami_port = free_tcp_port()
            env = dict(os.environ, ASTERISK_AMI_SECRET=self.ami_secret)
            log = self.logdir / f"asterisk-local-{attempt}.out"
            self.process = spawn(["bash", str(local_lab_dir() / "run-asterisk.sh"), str(self.directory),
                                  str(self.ami_port)], log=log, env=env)
            try:
                wait_booted(self.ami_port, user=self.ami_user, secret=self.ami_secret, process=self.process, log=log)
                return self
            except RuntimeError:
                self.stop()
                if attempt == attempts:
                    raise
        return self

    def phone(self, ext: str, mode: str = "answer", ring: float = 1, talk: float = 3600) -> None:
        for key, value in (("mode", mode), ("delay", f"{ring:g}"), ("talk", f"{talk:g}")):
            self.ami.db_put(f"lab/{ext}", key, value)

    def inbound(self, did: str, caller: str) -> Message:
        """The outside caller ``caller`` rings DID ``did`` (100-109, 600): Originate async, returned once the
        caller's channel exists (it stays until the call ends: the caller waits in Wait(3600))."""
        reply = self.ami.action("Originate", Channel=f"Local/{did}@from-pstn", Application="Wait", Data="3600",
                                CallerID=caller, Async="true")
        if reply.get("Response") == "Success":
            wait_until(lambda: any(channel.get("Channel", "").startswith(f"Local/{did}@from-pstn-")
                                   for channel in self.channels()), f"the call to {did} to start", timeout=30)
        return reply

    def stop(self) -> None:
        if self._ami is not None:
            with contextlib.suppress(OSError):
                self._ami.close()
            self._ami = None
        stop_process(self.process, grace=15)
        self.process = None
        if self.directory is not None:
            with contextlib.suppress(OSError):
                shutil.copytree(self.directory / "log", self.logdir / f"asterisk-log-{self.directory.name}",
                                dirs_exist_ok=True)
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


@contextlib.contextmanager
def running(lab: PjsipLab | LocalLab) -> Iterator[PjsipLab | LocalLab]:
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()
