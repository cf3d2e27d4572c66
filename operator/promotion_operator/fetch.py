"""One bounded HTTP request: a wall-clock deadline, a byte cap, and never a redirect.

The servers the operator talks to over HTTP (registries, token servers, health URLs,
notification webhooks) are named by tenants, so they may be hostile or broken.
`requests`' `timeout=` bounds each socket read, not the call: a server sending one byte a
second holds it for ever, and `.content` reads any body into memory. Here every socket
operation (connect, TLS handshake, send, each read of the status line, headers and body)
waits at most for what is left of one deadline for the whole call, a body longer than the
cap is cut off with an error, and a redirect is returned to the caller as the 3xx it is,
so no credential follows it anywhere the caller did not decide.

Proxies come from the environment as for `requests` (`HTTPS_PROXY`, `HTTP_PROXY`,
`NO_PROXY`); only `http://` proxies, with a CONNECT tunnel for https. The DNS lookup is
the resolver's own (bounded by its timeouts, not by the deadline).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

__all__ = [
    "BodyTooLargeError",
    "ConnectError",
    "DeadlineError",
    "FetchError",
    "Reply",
    "TLSError",
    "fetch",
]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Reply:
    """A response read within the limits: status, headers (case-insensitive) and body."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def is_redirect(self) -> bool:
        """True for a 3xx with a Location (which `fetch` never follows)."""
        return self.status in _REDIRECTS and bool(self.headers.get("Location"))


class FetchError(Exception):
    """The request failed; `problem` says how, in words fit for a status message."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class DeadlineError(FetchError):
    """The whole call took longer than its deadline."""


class BodyTooLargeError(FetchError):
    """The body is longer than the cap; it was not read further."""


class ConnectError(FetchError):
    """No usable connection: refused, reset, closed, unknown host, malformed answer."""


class TLSError(FetchError):
    """The TLS handshake failed; `not_tls` when the server seems to speak plain HTTP."""

    def __init__(self, problem: str, *, not_tls: bool = False) -> None:
        super().__init__(problem)
        self.not_tls = not_tls


def fetch(
    method: str,
    url: str,
    *,
    deadline: float,
    max_body: int,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    verify: bool | str = True,
    body: bytes | None = None,
) -> Reply:
    """Send one request to an http(s) `url` and read the reply within the limits.

    `deadline` is in seconds for the whole call; `max_body` is the most body bytes read.
    `verify` is True (system CA store), a CA bundle path, or False (no verification: only
    for a registry the user marked insecure). `params` are added to the query string;
    `body` is sent as the request body (with its Content-Length).
    Redirects are returned, not followed. Raises `DeadlineError`, `BodyTooLargeError`,
    `TLSError` or `ConnectError` (all `FetchError`); never anything else for I/O.
    """
    end = time.monotonic() + deadline
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"{url!r} is not an http(s) URL")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    target = parts.path or "/"
    query = "&".join(q for q in (parts.query, urlencode(params or {})) if q)
    if query:
        target += "?" + query
    # The Host header as the URL writes it (http.client would add `:443` to https hosts).
    sent_headers = {"Host": parts.netloc.rpartition("@")[2], **(headers or {})}
    proxy = _proxy_for(parts.scheme, parts.hostname)
    connection = http.client.HTTPConnection(parts.hostname, port)
    try:
        if proxy is None:
            connection.sock = _connect(parts.hostname, port, end, tls=tls, verify=verify)
        elif tls:
            tunnel = _tunnel(proxy, parts.hostname, port, end)
            connection.sock = _wrap_tls(tunnel, parts.hostname, end, verify=verify)
        else:
            # A plain-HTTP request goes to the proxy whole, with its absolute URL.
            connection.sock = _connect(proxy.host, proxy.port, end, tls=False, verify=False)
            target = f"http://{sent_headers['Host']}{target}"
            if proxy.authorization:
                sent_headers["Proxy-Authorization"] = proxy.authorization
        connection.request(method, target, body=body, headers=sent_headers)
        response = connection.getresponse()
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(min(1 << 16, max_body + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_body:
                raise BodyTooLargeError(f"sent a body longer than {max_body} bytes")
        return Reply(response.status, response.headers, b"".join(chunks))
    except FetchError:
        raise
    except (TimeoutError, _ExpiredError):
        raise DeadlineError(f"timed out (no full answer within {deadline:g} s)") from None
    except ssl.SSLCertVerificationError as error:
        detail = f" ({error.verify_message})" if error.verify_message else ""
        raise TLSError(f"its certificate does not verify{detail}") from None
    except ssl.SSLError as error:
        text = f"{error.reason} {error}"
        if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
            raise TLSError("it does not speak TLS (plain HTTP?)", not_tls=True) from None
        raise TLSError("the TLS handshake failed") from None
    except (http.client.HTTPException, OSError) as error:
        raise ConnectError(_connection_problem(error)) from None
    finally:
        connection.close()


class _ExpiredError(Exception):
    """The deadline passed between two socket operations."""


def _remaining(end: float) -> float:
    left = end - time.monotonic()
    if left <= 0:
        raise _ExpiredError
    return left


class _DeadlineSocket(socket.socket):
    """A socket whose every blocking operation waits at most until `deadline_at`."""

    deadline_at: float = 0.0

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self.settimeout(_remaining(self.deadline_at))
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.settimeout(_remaining(self.deadline_at))
        return super().recv(bufsize, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.settimeout(_remaining(self.deadline_at))
        super().sendall(data, flags)


class _DeadlineSSLSocket(ssl.SSLSocket):
    """The same for TLS: `SSLContext.sslsocket_class` makes `wrap_socket` build these."""

    deadline_at: float = 0.0

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self.settimeout(_remaining(self.deadline_at))
        return super().recv_into(buffer, nbytes, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.settimeout(_remaining(self.deadline_at))
        super().sendall(data, flags)


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    authorization: str | None = None


def _proxy_for(scheme: str, host: str) -> _Proxy | None:
    """The environment's proxy for this URL, as `requests` would pick it (or None)."""
    address = urllib.request.getproxies().get(scheme)
    if not address or urllib.request.proxy_bypass(host):
        return None
    parts = urlsplit(address if "://" in address else f"http://{address}")
    if parts.scheme != "http" or not parts.hostname:
        raise ConnectError(f"the {scheme} proxy must be an http:// URL")
    authorization = None
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + b64encode(user_pass.encode()).decode("ascii")
    return _Proxy(parts.hostname, parts.port or 80, authorization)


def _tunnel(proxy: _Proxy, host: str, port: int, end: float) -> socket.socket:
    """A CONNECT tunnel through `proxy` to host:port, within the same deadline."""
    sock = _connect(proxy.host, proxy.port, end, tls=False, verify=False)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        # Read byte by byte: nothing of the tunnel may be left in a buffer.
        answer = b""
        while not answer.endswith(b"\r\n\r\n"):
            byte = sock.recv(1)
            if not byte or len(answer) > 16 << 10:
                raise ConnectError("the proxy closed or flooded the CONNECT answer")
            answer += byte
        status = answer.split(b" ", 2)[1:2]
        if status != [b"200"]:
            code = status[0].decode("latin-1", "replace") if status else "?"
            raise ConnectError(f"the proxy refused the tunnel (HTTP {code})")
    except BaseException:
        sock.close()
        raise
    return sock


def _connect(host: str, port: int, end: float, *, tls: bool, verify: bool | str) -> socket.socket:
    raw = socket.create_connection((host, port), timeout=_remaining(end))
    plain = _DeadlineSocket(fileno=raw.detach())
    plain.deadline_at = end
    if not tls:
        return plain
    return _wrap_tls(plain, host, end, verify=verify)


def _wrap_tls(raw: socket.socket, host: str, end: float, *, verify: bool | str) -> socket.socket:
    context = _tls_context(verify=verify)
    try:
        raw.settimeout(_remaining(end))
        # The handshake runs under the socket's timeout as one deadline (CPython's _ssl).
        wrapped = context.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise
    if not isinstance(wrapped, _DeadlineSSLSocket):  # sslsocket_class below makes it one
        raise TypeError("the TLS context did not build a deadline socket")
    wrapped.deadline_at = end
    return wrapped


def _tls_context(*, verify: bool | str) -> ssl.SSLContext:
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    context.sslsocket_class = _DeadlineSSLSocket
    return context


def _connection_problem(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        if error.errno == socket.EAI_AGAIN:
            return "DNS lookup failed"
        return "unknown host"
    if isinstance(error, http.client.RemoteDisconnected):
        return "connection closed by the server"
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return "connection reset"
    if isinstance(error, http.client.HTTPException):
        return f"malformed HTTP answer ({type(error).__name__})"
    return "connection failed"
