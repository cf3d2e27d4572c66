"""Hostile registries against `list_tags` (the `kubectl promote versions` listing).

Real loopback servers: one answers a tags page of 300 MiB, one pages forever, one points
its `Link` at another server that records every Authorization header it gets. The client
must stop at its page cap, its tag cap and its deadline, and send no credential elsewhere.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from promotion_operator.domain.errors import PermanentError, Reason
from promotion_operator.domain.images import RegistryCredentials
from promotion_operator.registry import MAX_TAGS_PAGE_BYTES, RegistryClient

pytestmark = pytest.mark.integration

ROBOT = RegistryCredentials("ci-robot", "s3cret-Pa55word!")
BASIC = "Basic " + base64.b64encode(b"ci-robot:s3cret-Pa55word!").decode()
Answer = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A loopback HTTP server that records (path, Authorization) of every request."""

    def __init__(self, answer: Answer) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers["Authorization"]))
                try:
                    answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], Server]]:
    started: list[Server] = []

    def start(answer: Answer) -> Server:
        started.append(Server(answer))
        return started[-1]

    yield start
    for server in started:
        server.httpd.shutdown()
        server.httpd.server_close()


def _json(handler: BaseHTTPRequestHandler, body: dict[str, Any], link: str | None = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    if link:
        handler.send_header("Link", link)
    handler.end_headers()
    handler.wfile.write(data)


def _basic(then: Answer) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers["Authorization"] != BASIC:
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="registry"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        then(handler)

    return answer


def test_a_huge_tags_page_is_not_read_past_its_cap(serve: Callable[[Answer], Server]) -> None:
    def huge(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(300 << 20))
        handler.end_headers()
        chunk = b"\0" * (1 << 16)
        for _ in range((300 << 20) // len(chunk)):
            handler.wfile.write(chunk)

    registry = serve(_basic(huge))
    client = RegistryClient({registry.host: ROBOT}, insecure=True, timeout=30)
    with pytest.raises(PermanentError) as caught:
        client.list_tags(f"{registry.host}/team/app")
    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert f"more than {MAX_TAGS_PAGE_BYTES} bytes" in caught.value.message


def test_endless_pages_stop_at_the_tag_cap(serve: Callable[[Answer], Server]) -> None:
    def endless(handler: BaseHTTPRequestHandler) -> None:
        page = len(registry.requests)
        tags = [f"v{page}.{n}" for n in range(100)]
        _json(handler, {"tags": tags}, f'</v2/team/app/tags/list?last={page}>; rel="next"')

    registry = serve(_basic(endless))
    client = RegistryClient({registry.host: ROBOT}, insecure=True, timeout=5)
    tags, complete = client.list_tags(f"{registry.host}/team/app", max_tags=1_000, deadline=30)
    assert len(tags) == 1_000
    assert not complete
    assert len(registry.requests) <= 12  # ten pages of tags (and the first challenge)


def test_a_link_to_another_server_is_not_followed(serve: Callable[[Answer], Server]) -> None:
    elsewhere = serve(lambda handler: _json(handler, {"tags": ["stolen"]}))
    registry = serve(
        _basic(
            lambda handler: _json(
                handler,
                {"tags": ["v1", "not a tag!", 42]},
                f'<http://{elsewhere.host}/v2/team/app/tags/list?n=2>; rel="next"',
            )
        )
    )
    client = RegistryClient({registry.host: ROBOT}, insecure=True, timeout=5)
    tags, complete = client.list_tags(f"{registry.host}/team/app")
    assert tags == ["v1"]  # invalid tags dropped, the foreign page never read
    assert complete
    assert elsewhere.requests == []
