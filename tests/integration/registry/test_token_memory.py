"""A hostile token server cannot make a long-lived registry client hold tokens forever.

Registry clients now live across verification rounds (`ports.RegistryClients`), and the
scopes they hold tokens for come from the tenant's image names. A registry on loopback
(started here, the attacker's) challenges for a Bearer token per repository and hands out
tokens that claim never to expire (`"expires_in": "inf"`). The server counts token
requests: a token fetched again is one the client no longer held.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from promotion_operator.registry import RegistryClient

pytestmark = pytest.mark.integration


class _Hostile(BaseHTTPRequestHandler):
    tokens_issued: list[str]

    def log_message(self, *_: object) -> None:
        pass

    def do_HEAD(self) -> None:
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            host = self.headers["Host"]
            self.send_response(401)
            self.send_header(
                "WWW-Authenticate", f'Bearer realm="http://{host}/token",service="hostile"'
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Docker-Content-Digest", "sha256:" + "0" * 64)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.server.tokens_issued.append(self.path)  # type: ignore[attr-defined]
        body = json.dumps({"token": "t" * 1024, "expires_in": "inf"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def hostile() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.tokens_issued = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _issued(server: ThreadingHTTPServer) -> int:
    return len(server.tokens_issued)  # type: ignore[attr-defined]


def test_a_token_that_claims_never_to_expire_is_fetched_again_within_the_hour(
    hostile: ThreadingHTTPServer,
) -> None:
    host = f"127.0.0.1:{hostile.server_port}"
    client = RegistryClient(insecure=True)
    now = [1000.0]
    client._clock = lambda: now[0]  # the hour passes without waiting for it
    client.check_tag(f"{host}/team/app", "v1")
    client.check_tag(f"{host}/team/app", "v1")
    assert _issued(hostile) == 1  # the token is kept and used ...
    now[0] += 3600
    client.check_tag(f"{host}/team/app", "v1")
    assert _issued(hostile) == 2  # ... but not beyond an hour, whatever the server said


def test_tokens_for_ever_new_repositories_do_not_pile_up(hostile: ThreadingHTTPServer) -> None:
    host = f"127.0.0.1:{hostile.server_port}"
    client = RegistryClient(insecure=True)
    for index in range(300):
        client.check_tag(f"{host}/churn/repo-{index}", "v1")
    assert _issued(hostile) == 300
    client.check_tag(f"{host}/churn/repo-299", "v1")  # the newest is still held
    assert _issued(hostile) == 300
    client.check_tag(f"{host}/churn/repo-0", "v1")  # the oldest was let go
    assert _issued(hostile) == 301
