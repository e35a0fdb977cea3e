"""A bridge process reduced to its outbox: put synthetic call events as fast as it can, deliver them to ``crm_url``
(down or up, as the test arranges), and print ``accepted N`` after every flush, so a test can kill -9 it at a known
point and check that every reported event survives.

    python tests/bridge/outbox_child.py OUTBOX CRM_URL SECRET_FILE PREFIX CALLS [--no-delivery]

It prints ``done N`` once every call is put and accepted, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from callcenter.bridge import synthetic
from callcenter.bridge.delivery import Deliverer
from callcenter.bridge.outbox import Outbox


async def main(argv: list[str]) -> None:
    path, crm_url, secret_file, prefix, calls = argv[:5]
    outbox = Outbox(Path(path))
    await outbox.start()
    if "--no-delivery" not in argv:
        secret = Path(secret_file).read_text(encoding="utf-8").strip()
        Deliverer(outbox, crm_url, "office", secret, backoff_first=0.05, backoff_cap=0.2, timeout=5).start()
    for put, event in enumerate(synthetic.traffic(int(calls), prefix=prefix), start=1):
        outbox.put(event)
        if put % 100 == 0:
            await outbox.flush()
            print(f"accepted {outbox.accepted_total}", flush=True)
    await outbox.flush()
    print(f"done {outbox.accepted_total}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
