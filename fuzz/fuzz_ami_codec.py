"""Coverage-guided fuzzing of the AMI codec with atheris (libFuzzer for Python).

Invariant (the first comment of callcenter/bridge/connectors/ami/codec.py): whatever bytes arrive, we yield messages
or raise RemoteProtocolError, and the same input fed whole or byte by byte yields the same messages. Checked here for
every input, also against the line-by-line path (fast path off) and fed in pieces of a size the input chooses; any
other exception, or any difference, is a crash that libFuzzer saves as a reproducer.

    make fuzz                                        # installs atheris, runs 60 s
    .venv/bin/python fuzz/fuzz_ami_codec.py tests/fixtures/ami -max_total_time=600   # the captures as seeds
    .venv/bin/python fuzz/fuzz_ami_codec.py crash-<sha1>                             # replay one crash

Without atheris installed it runs the same check on random mutations of the captures for a few seconds (``--seconds``),
so the harness itself stays runnable; atheris is not a dependency of the project or its tests.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

try:
    import atheris
except ImportError:  # pragma: no cover - depends on the machine
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from callcenter.bridge.connectors.ami import codec
else:
    from callcenter.bridge.connectors.ami import codec

LIMITS = [
    {},
    {"max_line": 40, "max_message": 120, "max_buffer": 300},
    {"max_line": 8, "max_message": 8, "max_buffer": 8},
]


def parse(data: bytes, step: int, *, fast: bool, role: str, limits: dict[str, int]) -> tuple[list[codec.Message], bool]:
    """The messages of ``data`` fed ``step`` bytes at a time then closed, and whether RemoteProtocolError ended it."""
    connection = codec.AMIConnection(role, **limits)  # type: ignore[arg-type]
    connection._fast = fast
    messages: list[codec.Message] = []
    try:
        for start in range(0, len(data), step):
            connection.receive_data(data[start : start + step])
            messages.extend(connection.next_events())
        connection.receive_data(b"")
        messages.extend(connection.next_events())
        if connection.next_event() is not codec.CLOSED:
            raise AssertionError("not CLOSED after the end of the stream and every message")
    except codec.RemoteProtocolError:
        return messages, True
    return messages, False


def check(raw: bytes) -> None:
    """One fuzz input: its first two bytes choose the limits, role and piece size; the rest is the stream."""
    if len(raw) < 2:
        return
    limits = LIMITS[raw[0] % len(LIMITS)]
    role = "server" if raw[0] & 0x80 else "client"
    data = raw[2:]
    whole = parse(data, max(len(data), 1), fast=True, role=role, limits=limits)
    for step, fast in ((1, True), (raw[1] + 1, True), (max(len(data), 1), False)):
        other = parse(data, step, fast=fast, role=role, limits=limits)
        if other != whole:
            raise AssertionError(f"fed {step} bytes at a time (fast path {fast}) the messages differ from fed whole:\n"
                                 f"{other!r}\n!=\n{whole!r}")
    for message in whole[0]:  # every message must be readable, and equal to itself once its headers are parsed
        assert message == message and message.get("Event") == message.get("event")


def fallback(seconds: float) -> int:
    """Without atheris: random mutations of the captures, for ``seconds``."""
    captures = [path.read_bytes() for path in sorted((ROOT / "tests" / "fixtures" / "ami").glob("*.ami"))]
    rng = random.Random(0)
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        capture = rng.choice(captures)
        start = rng.randrange(len(capture))
        data = bytearray(capture[start : start + rng.randrange(1, 3000)])
        for _ in range(rng.randrange(8)):
            at = rng.randrange(len(data) + 1)
            data[at:at] = rng.choice([b"\r", b"\n", b":", b"\r\n\r\n", b"\xce", bytes([rng.randrange(256)])])
            if rng.random() < 0.3:
                at = rng.randrange(len(data) + 1)
                del data[at : at + rng.randrange(50)]
        check(bytes([rng.randrange(256), rng.randrange(256)]) + bytes(data))
        runs += 1
    print(f"fuzz_ami_codec: atheris is not installed; {runs} random mutations of the captures held the invariant "
          f"(pip install atheris for coverage-guided fuzzing)")
    return 0


def main() -> int:
    if atheris is None:
        seconds = 5.0
        if "--seconds" in sys.argv:
            seconds = float(sys.argv[sys.argv.index("--seconds") + 1])
        return fallback(seconds)
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
