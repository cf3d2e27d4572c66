"""toxiproxy (Shopify's TCP fault proxy) on loopback, and the few API calls the benches use.

`Toxiproxy(workdir).start()` runs the server with its API on a free loopback port;
`proxy(name, upstream)` puts a proxy in front of a loopback `host:port` and returns a
`Proxy` whose toxics (latency, timeout, reset_peer, slow_close, bandwidth, limit_data)
are added and removed while traffic flows. The binary is built from the Go module proxy
by `hack/build-binaries.sh`. (The WAN benchmark's branch has the same interface.)
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
        raise FileNotFoundError(f"{binary} not found: run hack/build-binaries.sh")
    return binary


@dataclass(frozen=True)
class Proxy:
    """One proxy: clients connect to `address` instead of the upstream."""

    server: Toxiproxy
    name: str
    port: int

    @property
    def address(self) -> str:
        """host:port to connect to."""
        return f"127.0.0.1:{self.port}"

    def add_toxic(self, kind: str, *, stream: str = "downstream", **attributes: Any) -> str:
        """Add a toxic of type `kind` with its attributes; return its name."""
        name = f"{kind}-{stream}"
        body = {"name": name, "type": kind, "stream": stream, "attributes": attributes}
        self.server.api("POST", f"/proxies/{self.name}/toxics", body)
        return name

    def remove_toxic(self, name: str) -> None:
        """Remove one toxic."""
        self.server.api("DELETE", f"/proxies/{self.name}/toxics/{name}")

    def set_enabled(self, *, enabled: bool) -> None:
        """Disabled, the proxy refuses connections and drops open ones (a network cut)."""
        self.server.api("POST", f"/proxies/{self.name}", {"enabled": enabled})


class Toxiproxy(procs.Service):
    """A toxiproxy server in `workdir` (its log there), API on a free loopback port."""

    def __init__(self, workdir: Path, *, binary: Path | None = None) -> None:
        self.workdir = workdir
        self.binary = binary
        self.api_port = procs.free_port()
        self.pid: int | None = None

    @property
    def log(self) -> Path:
        """The server's log."""
        return self.workdir / "toxiproxy.log"

    def start(self) -> Toxiproxy:
        """Start the server and wait until its API answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary or find_binary()),
            "-host",
            "127.0.0.1",
            "-port",
            str(self.api_port),
        ]
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
        """A new proxy in front of `upstream` (loopback host:port), on a free port."""
        port = procs.free_port()
        body = {"name": name, "listen": f"127.0.0.1:{port}", "upstream": upstream, "enabled": True}
        self.api("POST", "/proxies", body)
        return Proxy(self, name, port)

    def reset(self) -> None:
        """Every proxy enabled and every toxic removed."""
        self.api("POST", "/reset")

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call of the HTTP API; the decoded answer (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", data=data, method=method
        )
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
                raw = answer.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise RuntimeError(f"toxiproxy {method} {path}: {error.code} {detail}") from None
        return json.loads(raw) if raw.strip() else None

    def _answers(self) -> bool:
        try:
            self.api("GET", "/proxies")
        except (OSError, RuntimeError, ValueError):
            return False
        return True
