"""AMI parsing speed: panoramisk 1.4 against our codec, and our codec + translator, on one large stream.

What it measures (issue 3, item 6):
- The stream: the real Asterisk captures of tests/fixtures/ami/*.ami joined (the banner kept only once) and repeated
  until it holds at least --messages messages (default 200,000), then cut into --chunk-byte pieces (default 4 KiB, what
  one socket read returns). Every parser gets the same pieces, made before the clock starts.
- (a) panoramisk 1.4, through its own parsing path: ``AMIProtocol.data_received`` (decode, split on blank lines,
  ``Message.from_line``). Its ``handle_message`` (action/future bookkeeping and dispatch, not parsing) is replaced by
  a plain list append, which only makes panoramisk faster, never slower.
- (b) our codec: ``AMIConnection.receive_data`` + ``next_event()`` until NEED_DATA, as the connector does. The codec
  frames, checks, classifies and decodes every message, but builds an event's ``headers`` tuple only when it is first
  read (see codec.py), so (b) does not pay for tuples nobody reads. For comparison, "(b') codec, every header read"
  also reads ``headers`` of every message: panoramisk always builds its dict of every header.
- (c) our codec + translator: ``Pipeline`` (codec, translator with the lab channel profile, Timestamp handling), the
  code path of the live connector and of ``callcenter bridge replay``.
- Each is run --repeat times (default 3), interleaved; the best run counts. Time is the process's CPU time
  (time.process_time), so other programs on a shared machine do not count against a parser; figures are messages
  per second of one core's time. Garbage collection stays on, as in the product.
- Targets: codec >= 4.5x panoramisk; codec + translator >= 100,000 msgs/s. Missing a target is reported, not an
  error, unless --check-targets is given.

Output: progress on stderr; on stdout one summary line per parser, each starting with "ami_parse".
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "ami"
sys.path.insert(0, str(ROOT / "src"))

from callcenter.bridge.connectors.ami.codec import NEED_DATA, AMIConnection  # noqa: E402

TARGET_RATIO = 4.5
TARGET_PIPELINE = 100_000
BANNER = b"Asterisk Call Manager/"

_started = time.monotonic()


def progress(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


def build_stream(minimum: int) -> tuple[bytes, int]:
    """The captures joined, banner once, repeated to at least ``minimum`` messages; returns (stream, messages)."""
    captures = sorted(FIXTURES.glob("*.ami"))
    if not captures:
        raise SystemExit(f"no AMI captures in {FIXTURES}")
    bodies = []
    banner = b""
    for capture in captures:
        data = capture.read_bytes()
        if data.startswith(BANNER):
            line_end = data.index(b"\n") + 1
            banner = banner or data[:line_end]
            data = data[line_end:]
        bodies.append(data)
    body = b"".join(bodies)
    per_copy = body.count(b"\r\n\r\n")  # every message of these captures ends with one
    copies = -(-max(minimum - 1, 1) // per_copy)
    return banner + body * copies, 1 + per_copy * copies


def run_panoramisk(chunks: list[bytes]) -> int:
    from panoramisk.ami_protocol import AMIProtocol

    class Transport:
        def write(self, data: bytes) -> None:
            pass

        def close(self) -> None:
            pass

    protocol = AMIProtocol()
    protocol.connection_made(Transport())
    received: list[object] = []
    protocol.handle_message = received.append  # type: ignore[method-assign]
    count = 0
    data_received = protocol.data_received
    for chunk in chunks:
        data_received(chunk)
        count += len(received)
        received.clear()
    return count


def run_codec(chunks: list[bytes]) -> int:
    connection = AMIConnection("client")
    receive_data = connection.receive_data
    next_event = connection.next_event
    count = 0
    for chunk in chunks:
        receive_data(chunk)
        while next_event() is not NEED_DATA:
            count += 1
    return count


def run_codec_all_headers(chunks: list[bytes]) -> int:
    connection = AMIConnection("client")
    receive_data = connection.receive_data
    next_event = connection.next_event
    count = 0
    for chunk in chunks:
        receive_data(chunk)
        while (message := next_event()) is not NEED_DATA:
            message.headers  # noqa: B018 - reading it is the point
            count += 1
    return count


def run_pipeline(chunks: list[bytes]) -> int:
    from callcenter.bridge.connectors.ami.pipeline import Pipeline
    from callcenter.bridge.connectors.ami.translate import TranslatorConfig

    pipeline = Pipeline(config=TranslatorConfig.for_profile("lab"))
    receive = pipeline.receive
    events = 0
    for chunk in chunks:
        events += len(receive(chunk))
    run_pipeline.events = events  # type: ignore[attr-defined]
    return pipeline.messages


def translator_available() -> str:
    """"" if the translator can be imported, else why not."""
    try:
        from callcenter.bridge.connectors.ami.pipeline import Pipeline  # noqa: F401
        from callcenter.bridge.connectors.ami.translate import TranslatorConfig  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return ""


def timed(run: Callable[[list[bytes]], int], chunks: list[bytes]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, messages) of one run."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    count = run(chunks)
    return time.process_time() - cpu, time.perf_counter() - wall, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000, help="at least this many messages (default 200000)")
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per socket read (default 4096)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each parser; the best counts (default 3)")
    parser.add_argument("--check-targets", action="store_true", help="exit 1 if a target is missed")
    options = parser.parse_args(argv)
    if options.messages < 1 or options.chunk < 1 or options.repeat < 1:
        parser.error("--messages, --chunk and --repeat must be positive")

    stream, messages = build_stream(options.messages)
    chunks = [stream[i : i + options.chunk] for i in range(0, len(stream), options.chunk)]
    progress(f"stream: {messages:,} messages, {len(stream) / 1e6:.1f} MB, {len(chunks):,} chunks of "
             f"{options.chunk} bytes")

    missing_translator = translator_available()
    runners: dict[str, Callable[[list[bytes]], int]] = {
        "panoramisk": run_panoramisk,
        "codec": run_codec,
        "codec, every header read": run_codec_all_headers,
    }
    if not missing_translator:
        runners["codec+translator"] = run_pipeline
    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    for attempt in range(1, options.repeat + 1):
        for name, run in runners.items():
            seconds, wall, count = timed(run, chunks)
            best[name] = min(best.get(name, seconds), seconds)
            counts[name] = count
            progress(f"run {attempt}/{options.repeat} {name}: {count:,} messages in {seconds:.2f}s CPU "
                     f"({wall:.2f}s wall) = {count / seconds:,.0f} msgs/s")

    # The same stream must give the same messages, or the comparison means nothing. panoramisk folds the banner
    # into the first message, so it sees one fewer.
    if counts["codec"] != messages or counts["panoramisk"] != messages - 1:
        print(f"ami_parse: FAILED - message counts differ: expected {messages:,}, codec {counts['codec']:,}, "
              f"panoramisk {counts['panoramisk']:,} (+1 for the banner)", flush=True)
        return 1

    rate = {name: counts[name] / best[name] for name in best}
    anchor = rate["panoramisk"]
    ok = True
    print(f"ami_parse panoramisk 1.4: {anchor:,.0f} msgs/s (anchor; {messages:,} messages in {options.chunk}-byte "
          f"chunks, best of {options.repeat}, CPU time)", flush=True)
    ratio = rate["codec"] / anchor
    met = ratio >= TARGET_RATIO
    ok &= met
    print(f"ami_parse codec: {rate['codec']:,.0f} msgs/s = {ratio:.2f}x panoramisk (target >= {TARGET_RATIO}x: "
          f"{'met' if met else 'NOT met'})", flush=True)
    eager = rate["codec, every header read"]
    print(f"ami_parse codec, every header read: {eager:,.0f} msgs/s = {eager / anchor:.2f}x panoramisk (for "
          f"comparison: the work panoramisk always does; no target)", flush=True)
    if missing_translator:
        print(f"ami_parse codec+translator: SKIPPED - the translator is not importable yet ({missing_translator})",
              flush=True)
    else:
        pipeline = rate["codec+translator"]
        met = pipeline >= TARGET_PIPELINE
        ok &= met
        events = getattr(run_pipeline, "events", 0)
        print(f"ami_parse codec+translator: {pipeline:,.0f} msgs/s = {pipeline / anchor:.2f}x panoramisk, "
              f"{events:,} call events (target >= {TARGET_PIPELINE:,} msgs/s: {'met' if met else 'NOT met'})",
              flush=True)
    return 1 if options.check_targets and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
