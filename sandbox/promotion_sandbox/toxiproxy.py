"""toxiproxy (Shopify's TCP proxy for network faults) on loopback, and a small client.

One server per `Toxiproxy`, its HTTP API on a free loopback port; `proxy()` puts a proxy
in front of a loopback upstream and returns a `Proxy` whose toxics (latency, bandwidth,
a cut connection, ...) can be added and removed while traffic flows. Used by the WAN
benchmark (`bench/wan.py`) and the fault campaign. The binary is built from the Go module
proxy by `hack/build-binaries.sh` (`github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promotion_sandbox import procs

VERSION = "v2.5.0"
BINARY_ENV = "PROMOTION_OPERATOR_TOXIPROXY"


def find_binary() -> Path:
    """`$PROMOTION_OPERATOR_TOXIPROXY`, else the cached build of `VERSION`."""
    override = os.environ.get(BINARY_ENV)
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    binary = cache / "promotion-operator" / "tools" / f"toxiproxy-{VERSION}" / "toxiproxy-server"
    if not binary.is_file():
        raise FileNotFoundError(
            f"{binary} not found: run hack/build-binaries.sh (or set {BINARY_ENV})"
        )
    return binary


@dataclass(frozen=True)
class Proxy:
    """One proxy of a running toxiproxy: connect to `port` instead of the upstream."""

    server: Toxiproxy
    name: str
    port: int

    @property
    def address(self) -> str:
        """host:port to connect to."""
        return f"127.0.0.1:{self.port}"

    def add_toxic(self, kind: str, *, stream: str = "downstream", **attributes: Any) -> str:
        """Add a toxic (`latency` with latency/jitter ms, `bandwidth` with rate KB/s,
        `timeout`, `reset_peer`, `slicer`, `limit_data`); returns its name."""
        name = f"{kind}-{stream}"
        self.server.api(
            "POST",
            f"/proxies/{self.name}/toxics",
            {"name": name, "type": kind, "stream": stream, "attributes": attributes},
        )
        return name

    def remove_toxic(self, name: str) -> None:
        """Remove one toxic by name."""
        self.server.api("DELETE", f"/proxies/{self.name}/toxics/{name}")

    def set_enabled(self, *, enabled: bool) -> None:
        """Disabled, the proxy refuses connections and drops open ones (a network cut)."""
        self.server.api("POST", f"/proxies/{self.name}", {"enabled": enabled})

    def wan(self, *, latency_ms: int = 25, rate_kbps: int = 6250) -> None:
        """A WAN link: `latency_ms` each way and `rate_kbps` KB/s (6250 = 50 Mbit/s)."""
        for stream in ("upstream", "downstream"):
            self.add_toxic("latency", stream=stream, latency=latency_ms, jitter=0)
            self.add_toxic("bandwidth", stream=stream, rate=rate_kbps)


class Toxiproxy(procs.Service):
    """A toxiproxy server in `workdir` (its log there), API on a free loopback port."""

    def __init__(self, workdir: Path, *, binary: Path | None = None) -> None:
        self.workdir = workdir
        self.binary = binary
        self.api_port = procs.free_port()
        self.pid: int | None = None

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.workdir / "toxiproxy.log"

    def start(self) -> Toxiproxy:
        """Start the server and wait until its API answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = self.binary or find_binary()
        argv = [str(binary), "-host", "127.0.0.1", "-port", str(self.api_port)]
        self.pid = procs.spawn(argv, self.log)
        try:
            procs.wait_until(self._answers, timeout=30, what="toxiproxy", log=self.log)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server; safe to call twice."""
        if self.pid is not None:
            procs.stop(self.pid)
            self.pid = None

    def proxy(self, name: str, upstream: str) -> Proxy:
        """A new proxy in front of `upstream` (host:port on loopback), on a free port."""
        port = procs.free_port()
        self.api(
            "POST",
            "/proxies",
            {"name": name, "listen": f"127.0.0.1:{port}", "upstream": upstream, "enabled": True},
        )
        return Proxy(self, name, port)

    def reset(self) -> None:
        """Every proxy enabled again and every toxic removed."""
        self.api("POST", "/reset")

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call of toxiproxy's HTTP API; the decoded answer (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                raw = answer.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise RuntimeError(f"toxiproxy {method} {path}: {error.code} {detail}") from None
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:  # /version answers plain text
            return raw.decode(errors="replace").strip()

    def _answers(self) -> bool:
        try:
            self.api("GET", "/version")
        except (OSError, RuntimeError):
            return False
        return True
