"""A webhook receiver on loopback: records every POST, answers as told (ok, 500, hang).

The real thing a notification goes to in tests: a `ThreadingHTTPServer` in this process
on 127.0.0.1, one path per behaviour, so one receiver serves every case of a session:
`/ok/<id>` answers 204, `/fail/<id>` answers 500, `/hang/<id>` answers nothing until the
receiver stops, and `/flaky/<n>/<id>` answers 500 n times, then 204.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


class WebhookReceiver:
    """Records POSTs per path; `url(kind, id)` names an endpoint of each behaviour."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: dict[str, list[Delivery]] = defaultdict(list)
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                attempt = receiver._record(self.path, dict(self.headers.items()), data)
                parts = self.path.strip("/").split("/")
                if parts[0] == "hang":
                    receiver._stop.wait(120)
                    return
                failing = parts[0] == "fail" or (parts[0] == "flaky" and attempt <= int(parts[1]))
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The loopback port it listens on."""
        return int(self._server.server_address[1])

    def url(self, kind: str, ident: str) -> str:
        """The URL of an endpoint: kind ok, fail, hang, or flaky/<n>."""
        return f"http://127.0.0.1:{self.port}/{kind}/{ident}"

    def deliveries(self, ident: str) -> list[Delivery]:
        """Every POST to an endpoint with this id, oldest first."""
        with self._lock:
            return [
                d
                for path, got in self._deliveries.items()
                if path.endswith(f"/{ident}")
                for d in got
            ]

    def wait(self, ident: str, count: int = 1, *, timeout: float = 30) -> list[Delivery]:
        """Wait for `count` POSTs to the endpoint with this id; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.deliveries(ident)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"{count} POSTs to {ident} expected, got {len(self.deliveries(ident))}"
        )

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self._deliveries[path].append(Delivery(path, headers, body))
            return len(self._deliveries[path])

    def start(self) -> Self:
        """Serve in a daemon thread; return self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release hanging requests and stop serving."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
