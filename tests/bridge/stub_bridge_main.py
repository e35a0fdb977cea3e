"""`callcenter bridge ...` with the test connector in place of the PBX link, for tests that run the command as a
real process (signals, exit status, output): python -m tests.bridge.stub_bridge_main run --config FILE"""

from __future__ import annotations

import sys

from callcenter.bridge import daemon
from callcenter.bridge.cli import main
from tests.bridge.stub_connector import StubConnector


def _stub(settings: object) -> StubConnector:
    return StubConnector()


if __name__ == "__main__":
    daemon.make_connector = _stub  # type: ignore[assignment]
    sys.exit(main(sys.argv[1:]))
