"""The anchor for bench/outbox_drain.py: an HTTP endpoint that only checks the signature, decodes the batch and
acknowledges it (uvicorn, like the CRM, but no database). What the CRM cannot beat: the transport ceiling.

    python bench/_drain_receiver.py PORT SECRET_FILE
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import uvicorn

from callcenter import wire


def make_app(secret: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        try:
            wire.verify(secret, headers.get(wire.SIGNATURE_HEADER.lower()), body, now=time.time())
            batch = wire.decode_batch(body)
        except (wire.AuthError, wire.WireError) as exc:
            status, answer = 400, str(exc).encode()
        else:
            status, answer = 200, wire.encode(wire.BatchReceipt(accepted=len(batch.events), duplicates=0))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})

    return app


def main() -> None:
    port, secret_file = int(sys.argv[1]), Path(sys.argv[2])
    app = make_app(secret_file.read_text(encoding="utf-8").strip())
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
