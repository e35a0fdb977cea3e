"""``callcenter bridge ...``: the bridge's command line.

    callcenter bridge replay CAPTURE [--ext 100 ...] [--profile lab|production] [--internal-digits N]
    callcenter bridge capture --host H [--port 5038] --user U [--secret-file F] OUT [--seconds N]
    callcenter bridge run | check | errors | autostart on|off [--config FILE]   the daemon (bridge/commands.py)
    callcenter bridge login-link [--config FILE]   a one-time link to the running bridge's settings page

``replay`` reads a raw AMI byte capture (from ``capture``, ``nc`` or a tcpdump payload) through the same codec and
translator as the live bridge and prints one JSON wire event per line. ``capture`` logs in to a real AMI port and
records the raw bytes Asterisk sends, for support cases; the secret is never printed, logged or recorded.

Each sub-command is a function registered in ``build_parser()``; more (``run``, ...) are added the same way.
Exit codes: 0 done, 1 the PBX or the capture failed us, 2 a usage or login error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from callcenter import wire
from callcenter.bridge.commands import add_daemon_commands
from callcenter.bridge.connectors.ami.codec import (
    NEED_DATA,
    Action,
    AMIConnection,
    LocalProtocolError,
    Message,
    RemoteProtocolError,
)
from callcenter.bridge.connectors.ami.pipeline import Pipeline
from callcenter.bridge.connectors.ami.translate import PROFILES, TranslatorConfig

SECRET_ENV = "CALLCENTER_AMI_SECRET"  # noqa: S105 - the name of the variable, not a secret
DEFAULT_AMI_PORT = 5038
CHUNK = 64 * 1024

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A problem with what the user asked for; the text says what to do."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callcenter bridge", description="The PBX bridge and its tools.")
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"],
        help="how much the bridge logs to stderr (default: warning)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    replay = commands.add_parser(
        "replay", help="translate a raw AMI capture into wire events (one JSON line each)",
        description="Reads a raw AMI byte capture through the live codec and translator; prints one JSON wire "
        "event per line on stdout.",
    )
    replay.add_argument("capture", metavar="CAPTURE", help="file of raw AMI bytes ('-' reads stdin)")
    _add_translator_options(replay)
    replay.set_defaults(handler=_replay)

    capture = commands.add_parser(
        "capture", help="log in to AMI and record the raw bytes Asterisk sends",
        description="Logs in to the Asterisk Manager Interface, turns events on and records every byte received "
        "until Ctrl-C, --seconds, or the PBX closes the connection. The secret is read from --secret-file or "
        f"${SECRET_ENV} (--secret works too, but other users can see it in the process list).",
    )
    capture.add_argument("--host", required=True, help="the Asterisk server")
    capture.add_argument("--port", type=_port, default=DEFAULT_AMI_PORT, help="its AMI port (default 5038)")
    capture.add_argument("--user", required=True, help="the manager.conf user")
    capture.add_argument("--secret", help="the user's secret (prefer --secret-file or $" + SECRET_ENV + ")")
    capture.add_argument("--secret-file", type=Path, help="a file holding the secret on its first line")
    capture.add_argument("--seconds", type=_positive, help="stop after this many seconds (default: until Ctrl-C)")
    capture.add_argument(
        "--timeout", type=_positive, default=10.0,
        help="seconds to wait for the connection and each login reply (S-5.14 status request timeout; default 10)",
    )
    capture.add_argument("out", metavar="OUT", type=Path, help="file to write the raw bytes to")
    capture.set_defaults(handler=_capture)
    add_daemon_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    handler: Command = args.handler
    if getattr(args, "own_logging", False):  # the daemon installs its own (redacting) handlers
        return handler(args)
    with _logging_to_stderr(args.log_level.upper()):
        try:
            return handler(args)
        except UsageError as exc:
            print(f"callcenter bridge {args.command}: {exc}", file=sys.stderr)
            return 2


@contextlib.contextmanager
def _logging_to_stderr(level: str) -> Iterator[None]:
    """The command's own log lines go to stderr (stdout carries the events), for the command's duration only."""
    logger = logging.getLogger("callcenter")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


# ---- options -------------------------------------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a number") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is out of range; use 1-65535")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _add_translator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ext", action="append", default=[], metavar="EXT",
        help="an extension to follow (repeat, or separate with commas); default: every agent",
    )
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="production",
        help="how agent channels are recognised: production (PJSIP/SIP/IAX2 phones) or lab (the Local-channel "
        "phones of the test captures); default production",
    )
    parser.add_argument(
        "--internal-digits", type=int, default=0, metavar="N",
        help="a number of exactly N digits is internal (S-3.9); default 0: only agent channels are internal",
    )
    parser.add_argument("--channel", action="append", default=[], help="only this device, e.g. PJSIP/100 (repeat)")
    parser.add_argument("--context", action="append", default=[], help="only agent channels in this context (repeat)")
    parser.add_argument("--no-newchannel", action="store_true", help="do not detect ringing from Newchannel")
    parser.add_argument("--no-newstate", action="store_true", help="do not detect ringing from Newstate")


def _translator_config(args: argparse.Namespace) -> TranslatorConfig:
    extensions = frozenset(ext.strip() for value in args.ext for ext in value.split(",") if ext.strip())
    try:
        return TranslatorConfig.for_profile(
            args.profile,
            extensions=extensions,
            internal_digits=args.internal_digits,
            channels=tuple(args.channel),
            contexts=tuple(args.context),
            process_newchannel=not args.no_newchannel,
            process_newstate=not args.no_newstate,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


# ---- replay --------------------------------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    config = _translator_config(args)
    if args.capture == "-":
        return replay(sys.stdin.buffer, sys.stdout.buffer, config, name="stdin")
    try:
        source = open(args.capture, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read the capture {args.capture!r}: {exc.strerror or exc}") from exc
    with source:
        return replay(source, sys.stdout.buffer, config, name=args.capture)


def replay(source: BinaryIO, out: BinaryIO, config: TranslatorConfig, *, name: str = "capture") -> int:
    """Translate the AMI bytes of ``source`` and write one JSON wire event per line to ``out``."""
    pipeline = Pipeline(config)
    read = 0
    try:
        while True:
            chunk = source.read(CHUNK)
            read += len(chunk)
            for event in pipeline.receive(chunk):
                out.write(wire.encode(event) + b"\n")
            if not chunk:
                break
    except RemoteProtocolError as exc:
        print(f"callcenter bridge replay: {name} cannot be read as AMI after {read} bytes: {exc}", file=sys.stderr)
        return 1
    finally:
        out.flush()
    return 0


# ---- capture -------------------------------------------------------------------------------------------------------


def _secret(args: argparse.Namespace) -> str:
    if args.secret:
        return str(args.secret)
    if args.secret_file is not None:
        try:
            lines = Path(args.secret_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read the secret file {str(args.secret_file)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"the secret file {str(args.secret_file)!r} is not UTF-8 text") from None
        if not lines or not lines[0]:
            raise UsageError(f"the secret file {str(args.secret_file)!r} is empty; put the secret on its first line")
        return lines[0]
    secret = os.environ.get(SECRET_ENV, "")
    if secret:
        return secret
    raise UsageError(
        f"no AMI secret: give --secret-file FILE or set {SECRET_ENV} (or --secret, visible in the process list)"
    )


def _capture(args: argparse.Namespace) -> int:
    secret = _secret(args)
    return asyncio.run(
        capture(args.host, args.port, args.user, secret, args.out, seconds=args.seconds, timeout=args.timeout)
    )


class _Refused(Exception):
    pass


async def capture(
    host: str,
    port: int,
    user: str,
    secret: str,
    out: Path,
    *,
    seconds: float | None = None,
    timeout: float = 10.0,
    stop: asyncio.Event | None = None,
) -> int:
    """Log in, turn events on and record every byte received to ``out`` until ``seconds`` pass, ``stop`` is set
    (Ctrl-C sets it), or the PBX closes. Nothing is written when the login fails."""
    where = f"AMI at {host}:{port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        print(f"callcenter bridge capture: cannot connect to {where}: {reason}", file=sys.stderr)
        return 1
    stop = stop or asyncio.Event()
    restore = _stop_on_ctrl_c(stop)
    connection = AMIConnection("client")
    received = bytearray()
    try:
        try:
            await _log_in(reader, writer, connection, received, user, secret, timeout)
        except _Refused as exc:
            print(f"callcenter bridge capture: {where} refused the login of user {user!r}: {exc}. Check the user "
                  "and its secret in manager.conf (and its permit/deny lines).", file=sys.stderr)
            return 2
        except LocalProtocolError:
            print("callcenter bridge capture: the user name or secret contains a line break", file=sys.stderr)
            return 2
        except (OSError, TimeoutError, asyncio.IncompleteReadError, RemoteProtocolError) as exc:
            print(f"callcenter bridge capture: logging in to {where} failed: {_why(exc)}", file=sys.stderr)
            return 1
        writer.write(connection.send(Action("Events", (("EventMask", "on"),))))
        await writer.drain()
        deadline = None if seconds is None else time.monotonic() + seconds
        with open(out, "wb") as file:
            file.write(received)
            pbx_closed, recorded = await _record(reader, file, stop, deadline)
            total = len(received) + recorded
            if not pbx_closed:
                total += await _log_off(reader, writer, connection, file)
        print(f"callcenter bridge capture: recorded {total} bytes from {where} to {out}", file=sys.stderr)
        return 0
    finally:
        restore()
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _log_in(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    connection: AMIConnection,
    received: bytearray,
    user: str,
    secret: str,
    timeout: float,
) -> None:
    async def next_message() -> Message:
        while True:
            message = connection.next_event()
            if isinstance(message, Message):
                return message
            if message is not NEED_DATA:
                raise asyncio.IncompleteReadError(b"", None)
            data = await asyncio.wait_for(reader.read(CHUNK), timeout)
            received.extend(data)
            connection.receive_data(data)

    banner = await next_message()
    if banner.kind != "banner":
        raise RemoteProtocolError(f"it did not greet as an Asterisk Manager (got {banner.name or banner.error!r})")
    writer.write(connection.send(Action("Login", (("Username", user), ("Secret", secret)))))
    login_id = connection.last_action_id
    await writer.drain()
    while True:
        reply = await next_message()
        if reply.kind == "response" and reply.action_id == login_id:
            if reply.name.lower() == "success":
                return
            raise _Refused(reply.get("Message") or reply.name or "no reason given")


async def _record(
    reader: asyncio.StreamReader, file: BinaryIO, stop: asyncio.Event, deadline: float | None
) -> tuple[bool, int]:
    """Copy bytes to ``file`` until ``stop``, the deadline or the end of the stream; (PBX closed?, bytes)."""
    total = 0
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            reading = asyncio.ensure_future(reader.read(CHUNK))
            done, _pending = await asyncio.wait({reading, stopping}, timeout=remaining,
                                                return_when=asyncio.FIRST_COMPLETED)
            if reading not in done:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await reading
                continue
            try:
                data = reading.result()
            except OSError:
                return True, total
            if not data:
                return True, total
            file.write(data)
            file.flush()
            total += len(data)
        return False, total
    finally:
        stopping.cancel()


async def _log_off(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: AMIConnection, file: BinaryIO
) -> int:
    """Say goodbye and record what arrives until the PBX closes (at most a second)."""
    total = 0
    with contextlib.suppress(OSError, TimeoutError):
        writer.write(connection.send(Action("Logoff")))
        await writer.drain()
        end = time.monotonic() + 1.0
        while (left := end - time.monotonic()) > 0:
            data = await asyncio.wait_for(reader.read(CHUNK), left)
            if not data:
                break
            file.write(data)
            total += len(data)
    return total


def _stop_on_ctrl_c(stop: asyncio.Event) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, stop.set)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals (Windows)
        return lambda: None

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGINT)

    return restore


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no reply in time"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection was closed"
    return str(exc) or type(exc).__name__
