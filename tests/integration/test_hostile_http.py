"""Hostile HTTP servers against the health source and the registry client.

Real servers on 127.0.0.1, started here: one sends a 300 MiB body, one drips its answer a
byte at a time, one redirects to another loopback port that records every Authorization
header it is sent. The operator must stop reading at its cap, give up at its deadline, and
never hand a credential to a server the registry did not name.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from promotion_operator.domain.errors import PermanentError, Reason, RetryableError
from promotion_operator.domain.images import RegistryCredentials
from promotion_operator.domain.models import HealthStatus, HTTPHealth
from promotion_operator.health import MAX_HEALTH_BODY, observe_http
from promotion_operator.registry import MAX_MANIFEST_BYTES, MAX_TOKEN_BYTES, RegistryClient

pytestmark = pytest.mark.integration

HUGE = 300 << 20
DIGEST = "sha256:" + "cd" * 32
ROBOT = RegistryCredentials("ci-robot", "s3cret-Pa55word!")
BASIC = "Basic " + base64.b64encode(b"ci-robot:s3cret-Pa55word!").decode()
TOKEN = "registry-token-for-the-registry-only"
CHUNK = b"\0" * (1 << 16)


@dataclass
class Server:
    """One loopback HTTP server; `answer(handler)` writes each reply."""

    answer: Callable[[BaseHTTPRequestHandler, Server], None]
    stop: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, auth
    sent: int = 0  # body bytes written before the client went away
    httpd: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self.httpd is not None
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def authorizations(self) -> list[str | None]:
        return [auth for _, _, auth in self.requests]


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler, Server], None]], Server]]:
    """Start servers for one test; all are stopped (and their drips ended) after it."""
    started: list[Server] = []

    def start(answer: Callable[[BaseHTTPRequestHandler, Server], None]) -> Server:
        server = Server(answer)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                server.requests.append((self.command, self.path, self.headers["Authorization"]))
                try:
                    server.answer(self, server)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_HEAD = _any  # noqa: N815 - the names http.server dispatches to

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        server.httpd = Quiet(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop.set()
        assert server.httpd is not None
        server.httpd.shutdown()
        server.httpd.server_close()


# -- answers ---------------------------------------------------------------------------


def huge_body(handler: BaseHTTPRequestHandler, server: Server) -> None:
    """200 with a 300 MiB body, written until the client hangs up."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(HUGE))
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    if handler.command == "HEAD":
        return
    while server.sent < HUGE and not server.stop.is_set():
        handler.wfile.write(CHUNK)
        server.sent += len(CHUNK)


def drip_headers(handler: BaseHTTPRequestHandler, server: Server) -> None:
    """A status line, then one header byte every 50 ms for a minute: each read succeeds."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
    handler.wfile.flush()
    end = time.monotonic() + 60
    while time.monotonic() < end and not server.stop.is_set():
        handler.wfile.write(b"a")
        handler.wfile.flush()
        server.sent += 1
        time.sleep(0.05)


def drip_body(handler: BaseHTTPRequestHandler, server: Server) -> None:
    """Headers at once, then the body one byte every 50 ms for a minute."""
    handler.send_response(200)
    handler.send_header("Content-Length", "1200")
    handler.end_headers()
    handler.wfile.flush()
    end = time.monotonic() + 60
    while time.monotonic() < end and not server.stop.is_set():
        handler.wfile.write(b" ")
        handler.wfile.flush()
        server.sent += 1
        time.sleep(0.05)


def redirect_to(target: Server, path: str | None = None) -> Callable[..., None]:
    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        del server
        handler.send_response(307)
        handler.send_header("Location", f"{target.url}{path or handler.path}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def manifest(handler: BaseHTTPRequestHandler, server: Server) -> None:
    """Any request: the manifest exists (what a storage backend or a thief would say)."""
    del server
    handler.send_response(200)
    handler.send_header("Docker-Content-Digest", DIGEST)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def token_answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
    del server
    body = json.dumps({"token": TOKEN, "expires_in": 300}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def basic_registry(then: Callable[..., None]) -> Callable[..., None]:
    """Challenge for Basic auth; with the right credentials, answer with `then`."""

    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        if handler.headers["Authorization"] != BASIC:
            handler.send_response(401)
            handler.send_header("WWW-Authenticate", 'Basic realm="registry"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        then(handler, server)

    return answer


def bearer_registry(realm: Server, then: Callable[..., None]) -> Callable[..., None]:
    """Challenge for a Bearer token from `realm`; with the token, answer with `then`."""

    def answer(handler: BaseHTTPRequestHandler, server: Server) -> None:
        if handler.headers["Authorization"] != f"Bearer {TOKEN}":
            handler.send_response(401)
            handler.send_header(
                "WWW-Authenticate", f'Bearer realm="{realm.url}/token",service="registry"'
            )
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        then(handler, server)

    return answer


def client(registry: Server, timeout: float = 5.0) -> RegistryClient:
    return RegistryClient({registry.host: ROBOT}, insecure=True, timeout=timeout)


# -- the http health source --------------------------------------------------------------


def test_health_stops_reading_a_huge_body_at_its_cap(serve: Callable[..., Server]) -> None:
    server = serve(huge_body)
    spec = HTTPHealth(url=f"{server.url}/version", versionField="version")

    observation = observe_http(spec, ["app"], timeout=30)

    assert observation.health == HealthStatus.UNKNOWN
    assert f"larger than {MAX_HEALTH_BODY} bytes" in observation.message
    # the server could only push what fits in the socket buffers before the client left
    assert server.sent < 32 << 20


@pytest.mark.parametrize("answer", [drip_headers, drip_body], ids=["headers", "body"])
def test_health_gives_up_on_a_dripping_server_at_its_deadline(
    serve: Callable[..., Server], answer: Callable[..., None]
) -> None:
    # every read gets a byte well within a second: only a deadline for the call ends it
    server = serve(answer)

    observation = observe_http(HTTPHealth(url=f"{server.url}/healthz"), ["app"], timeout=1)

    assert observation.health == HealthStatus.UNKNOWN
    assert "timed out (no full answer within 1 s)" in observation.message


def test_health_does_not_follow_a_redirect(serve: Callable[..., Server]) -> None:
    internal = serve(token_answer)  # think of the cloud metadata service
    server = serve(redirect_to(internal, "/latest/meta-data/iam"))
    spec = HTTPHealth(url=f"{server.url}/healthz", versionField="token")

    observation = observe_http(spec, ["app"], timeout=5)

    assert observation.health == HealthStatus.UNKNOWN
    assert "a redirect" in observation.message
    assert "set health.http.url to the final address" in observation.message
    assert observation.images == {}
    assert internal.requests == []


def test_health_expecting_a_redirect_status_is_healthy_on_it(
    serve: Callable[..., Server],
) -> None:
    server = serve(redirect_to(serve(manifest)))

    observation = observe_http(HTTPHealth(url=server.url, expectedStatus=307), ["app"])

    assert observation.health == HealthStatus.HEALTHY


# -- the registry client -------------------------------------------------------------------


def test_registry_stops_reading_a_huge_manifest(serve: Callable[..., Server]) -> None:
    # HEAD without a digest makes the client GET the manifest: 300 MiB of it
    registry = serve(basic_registry(huge_body))

    with pytest.raises(PermanentError) as caught:
        client(registry, timeout=30).check_tag(f"{registry.host}/team/app", "v1")

    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert f"more than {MAX_MANIFEST_BYTES} bytes" in caught.value.message
    assert registry.sent < 32 << 20


def test_registry_stops_reading_a_huge_token(serve: Callable[..., Server]) -> None:
    realm = serve(huge_body)
    registry = serve(bearer_registry(realm, manifest))

    with pytest.raises(PermanentError) as caught:
        client(registry, timeout=30).check_tag(f"{registry.host}/team/app", "v1")

    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert f"token server {realm.host}" in caught.value.message
    assert f"longer than {MAX_TOKEN_BYTES} bytes" in caught.value.message
    assert realm.sent < 32 << 20


@pytest.mark.parametrize("answer", [drip_headers, drip_body], ids=["headers", "body"])
def test_registry_gives_up_on_a_dripping_registry_at_its_deadline(
    serve: Callable[..., Server], answer: Callable[..., None]
) -> None:
    registry = serve(answer)

    with pytest.raises(RetryableError) as caught:
        client(registry, timeout=1).check_tag(f"{registry.host}/team/app", "v1")

    assert caught.value.reason is Reason.REGISTRY_UNAVAILABLE
    assert f"registry {registry.host} timed out" in caught.value.message


def test_registry_gives_up_on_a_dripping_token_server(serve: Callable[..., Server]) -> None:
    realm = serve(drip_body)
    registry = serve(bearer_registry(realm, manifest))

    with pytest.raises(RetryableError) as caught:
        client(registry, timeout=1).check_tag(f"{registry.host}/team/app", "v1")

    assert f"token server {realm.host} timed out" in caught.value.message


def test_basic_credentials_do_not_follow_a_redirect_to_another_port(
    serve: Callable[..., Server],
) -> None:
    thief = serve(manifest)
    registry = serve(basic_registry(redirect_to(thief)))

    digest = client(registry).check_tag(f"{registry.host}/team/app", "v1")

    assert digest == DIGEST  # the redirect was followed ...
    assert thief.requests and thief.authorizations() == [None] * len(thief.requests)  # bare
    assert BASIC in registry.authorizations()


def test_bearer_token_does_not_follow_a_redirect_to_another_port(
    serve: Callable[..., Server],
) -> None:
    realm = serve(token_answer)
    thief = serve(manifest)
    registry = serve(bearer_registry(realm, redirect_to(thief)))

    assert client(registry).check_tag(f"{registry.host}/team/app", "v1") == DIGEST

    assert thief.requests and thief.authorizations() == [None] * len(thief.requests)
    assert f"Bearer {TOKEN}" in registry.authorizations()


def test_token_server_credentials_do_not_follow_its_redirect(
    serve: Callable[..., Server],
) -> None:
    thief = serve(token_answer)
    realm = serve(redirect_to(thief))
    registry = serve(bearer_registry(realm, manifest))

    assert client(registry).check_tag(f"{registry.host}/team/app", "v1") == DIGEST

    assert realm.authorizations() == [BASIC]  # the realm the registry named gets them
    assert thief.requests and thief.authorizations() == [None] * len(thief.requests)


def test_credentials_follow_a_redirect_within_the_registry(serve: Callable[..., Server]) -> None:
    def moved(handler: BaseHTTPRequestHandler, server: Server) -> None:
        if handler.path.startswith("/v2/team/app/"):
            redirect_to(server, handler.path.replace("/team/app/", "/team/moved/"))(handler, server)
        else:
            manifest(handler, server)

    registry = serve(basic_registry(moved))

    assert client(registry).check_tag(f"{registry.host}/team/app", "v1") == DIGEST

    moved_requests = [auth for _, path, auth in registry.requests if "/team/moved/" in path]
    assert moved_requests == [BASIC]


def test_endless_redirects_are_an_error(serve: Callable[..., Server]) -> None:
    def loop(handler: BaseHTTPRequestHandler, server: Server) -> None:
        redirect_to(server)(handler, server)

    registry = serve(loop)

    with pytest.raises(RetryableError) as caught:
        client(registry).check_tag(f"{registry.host}/team/app", "v1")

    assert "redirected more than 3 times" in caught.value.message


def test_health_url_credentials_go_to_that_url_only_and_are_never_shown(
    serve: Callable[..., Server],
) -> None:
    thief = serve(token_answer)
    guarded = serve(basic_registry(redirect_to(thief)))
    spec = HTTPHealth(url=f"http://ci-robot:s3cret-Pa55word!@{guarded.host}/healthz")

    observation = observe_http(spec, ["app"], timeout=5)

    assert guarded.authorizations() == [BASIC]
    assert thief.requests == []  # the redirect is reported, not followed
    assert observation.health == HealthStatus.UNKNOWN
    assert f"GET http://{guarded.host}/healthz: answered 307" in observation.message
    assert "s3cret" not in observation.message
