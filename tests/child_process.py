"""A command run as a person types it, for tests of real processes: a child Python process whose output lines are
collected as they come, and the environment of someone typing the command."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of someone typing the command: none of the test run's Django or Callcenter settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLCENTER_", "DJANGO_"))}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


class ChildProcess:
    """``python ARGS`` in ``cwd``; its stdout and stderr lines are collected as they come (stdout's also queued for
    wait_for)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *args], cwd=cwd, env=env, text=True, encoding="utf-8",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr, None), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str], lines: queue.Queue[str] | None) -> None:
        assert stream is not None
        for line in stream:
            into.append(line)
            if lines is not None:
                lines.put(line)

    @property
    def output(self) -> str:
        return "".join(self.stdout)

    @property
    def stderr_text(self) -> str:
        return "".join(self.stderr)

    def wait_for(self, pattern: re.Pattern[str], seconds: float) -> re.Match[str]:
        """The match of ``pattern`` in the next stdout line it is found in. When the process ends or ``seconds``
        pass first: it is stopped, and AssertionError names what it printed."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            match = pattern.search(line)
            if match:
                return match
        self.stop()
        raise AssertionError(f"no line matching {pattern.pattern!r}; stdout:\n{self.output}\n"
                             f"stderr:\n{self.stderr_text}")

    def interrupt(self, seconds: float = 30) -> int:
        """Ctrl-C (SIGINT), then finish."""
        self.process.send_signal(signal.SIGINT)
        return self.finish(seconds)

    def finish(self, seconds: float = 30) -> int:
        """The exit status once the process has ended and its output is read; stopped, and AssertionError, when it
        still runs ``seconds`` later."""
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"still running {seconds} s later") from None
        for reader in self._readers:
            reader.join(5)
        return self.process.returncode

    def stop(self) -> None:
        """Kill it if it still runs, and read what it printed."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for reader in self._readers:
            reader.join(5)
