"""The registry client through an HTTP proxy named by the environment, as `requests` did.

A real CONNECT proxy on loopback (started here) relays to the real registries; it records
what it was asked, so the test sees the tunnel (https) or the absolute URL (plain http).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from promotion_operator.registry import RegistryClient
from promotion_sandbox.registry import LocalRegistry

pytestmark = pytest.mark.integration


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(1 << 16):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _ProxyHandler(socketserver.BaseRequestHandler):
    requests: list[str]

    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.server.requests.append(request_line)  # type: ignore[attr-defined]
        method, target, _ = request_line.split(" ")
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream = socket.create_connection((host, int(port)), timeout=10)
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            upstream.sendall(head.split(b"\r\n\r\n", 1)[1])
        else:
            url = urlsplit(target)
            upstream = socket.create_connection((url.hostname, url.port or 80), timeout=10)
            origin_form = (url.path or "/") + (f"?{url.query}" if url.query else "")
            upstream.sendall(head.replace(target.encode(), origin_form.encode(), 1))
        back = threading.Thread(target=_pipe, args=(upstream, self.request), daemon=True)
        back.start()
        _pipe(self.request, upstream)
        back.join(timeout=10)
        upstream.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A CONNECT proxy set as HTTP(S)_PROXY for the test; yields the request lines it got."""

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", 0), _ProxyHandler)
    server.requests = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    for name in ("https_proxy", "http_proxy"):
        monkeypatch.setenv(name, address)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    yield server.requests  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_https_registry_through_a_connect_tunnel(
    tls_registry: LocalRegistry, proxy: list[str]
) -> None:
    digest = tls_registry.push_image("team/app", "v-proxy")
    proxy.clear()  # the sandbox's push went through the proxy too
    client = RegistryClient(ca_bundle=tls_registry.ca_cert, timeout=10)

    assert client.check_tag(f"{tls_registry.host}/team/app", "v-proxy") == digest

    assert proxy and all(line == f"CONNECT {tls_registry.host} HTTP/1.1" for line in proxy)


def test_plain_http_registry_through_the_proxy(
    anonymous_registry: LocalRegistry, proxy: list[str]
) -> None:
    digest = anonymous_registry.push_image("team/app", "v-proxy")
    proxy.clear()
    client = RegistryClient(insecure=True, timeout=10)

    assert client.check_tag(f"{anonymous_registry.host}/team/app", "v-proxy") == digest

    # insecure: TLS is tried first (through a tunnel), then plain HTTP with the absolute URL
    assert proxy[0] == f"CONNECT {anonymous_registry.host} HTTP/1.1"
    url = f"http://{anonymous_registry.host}/v2/team/app/manifests/v-proxy"
    assert f"HEAD {url} HTTP/1.1" in proxy


def test_no_proxy_is_honoured(
    anonymous_registry: LocalRegistry, proxy: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    digest = anonymous_registry.push_image("team/app", "v-direct")

    client = RegistryClient(insecure=True, timeout=10)

    assert client.check_tag(f"{anonymous_registry.host}/team/app", "v-direct") == digest
    assert proxy == []
