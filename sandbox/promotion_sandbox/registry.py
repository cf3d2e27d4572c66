"""A real container registry on loopback: distribution's `registry` (Debian `docker-registry`).

Three auth modes, each the real thing: none (anonymous), `htpasswd` (bcrypt file, Basic
auth) and `token` (the registry's own `auth: token` verifying JWTs issued by a small token
server here, signed by a key whose certificate is the registry's `rootcertbundle`). With
`tls=True` the registry (and the token server) serve HTTPS with a certificate from a
throw-away CA (`ca_cert`), so tests can prove verification happens.

`push_image` uploads a tiny real OCI image (config blob, one layer blob, manifest) through
the registry's HTTP API; no Docker daemon is needed.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import hmac
import io
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from promotion_sandbox.pki import CertificateAuthority
from promotion_sandbox.procs import Service, free_port, terminate

AuthMode = Literal["none", "htpasswd", "token"]

SERVICE = "promotion-sandbox-registry"
ISSUER = "promotion-sandbox-token-issuer"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

_NO_USERS: Mapping[str, str] = MappingProxyType({})
_READY_TIMEOUT = 20.0
_START_ATTEMPTS = 3  # a free port can be taken between choosing it and the bind


class SandboxError(RuntimeError):
    """The local registry could not be started or did not accept an upload."""


def find_registry_binary() -> str:
    """Path of distribution's registry binary; raise with the install hint if absent."""
    for name in ("docker-registry", "registry"):
        path = shutil.which(name)
        if path:
            return path
    raise SandboxError(
        "the container registry binary was not found (neither `docker-registry` nor "
        "`registry` is on PATH): run `apt-get install docker-registry`"
    )


class LocalRegistry(Service):
    """A distribution registry on a free 127.0.0.1 port, storing blobs under `workdir`.

    `users` maps usernames to passwords for the `htpasswd` and `token` modes. Use as a
    context manager, or call `start()` and `stop()`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        auth: AuthMode = "none",
        users: Mapping[str, str] = _NO_USERS,
        tls: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.auth: AuthMode = auth
        self.users = dict(users)
        self.tls = tls
        self.host = ""
        self.ca_cert: Path | None = None
        self.log_path = self.workdir / "registry.log"
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None
        self._token_server: _TokenServer | None = None
        self._ca: CertificateAuthority | None = None

    def __repr__(self) -> str:
        return f"LocalRegistry(host={self.host!r}, auth={self.auth!r}, tls={self.tls})"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>` or `https://...` in TLS mode."""
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def token_requests(self) -> int:
        """How many tokens the token server has issued or refused (token mode)."""
        return self._token_server.requests if self._token_server else 0

    @property
    def _verify(self) -> str | bool:
        return str(self.ca_cert) if self.ca_cert else True

    def start(self) -> None:
        """Write the configuration, start the registry and wait until `/v2/` answers."""
        if self._process is not None:
            return
        began = time.monotonic()
        binary = find_registry_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "storage").mkdir(exist_ok=True)
        if self.tls:
            self._ca = CertificateAuthority("promotion-sandbox-registry-ca")
            self.ca_cert = self.workdir / "ca.crt"
            self.ca_cert.write_bytes(self._ca.cert_pem)
            self._ca.issue("registry", hosts=("127.0.0.1", "localhost")).write(
                self.workdir / "registry.crt", self.workdir / "registry.key"
            )
        auth_config = self._prepare_auth()
        try:
            for attempt in range(_START_ATTEMPTS):
                self.host = f"127.0.0.1:{free_port()}"
                config = self.workdir / "config.yml"
                config.write_text(json.dumps(self._config(auth_config), indent=2))
                if self._launch(binary, config, last=attempt == _START_ATTEMPTS - 1):
                    break
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop the registry and the token server; storage is kept in `workdir`."""
        process, self._process = self._process, None
        terminate(process)
        token_server, self._token_server = self._token_server, None
        if token_server is not None:
            token_server.stop()

    def _prepare_auth(self) -> dict[str, Any]:
        if self.auth == "none":
            return {}
        if self.auth == "htpasswd":
            path = self.workdir / "htpasswd"
            path.write_text("".join(_htpasswd_line(u, p) for u, p in self.users.items()))
            return {"htpasswd": {"realm": "promotion-sandbox", "path": str(path)}}
        if self.auth == "token":
            signer = _TokenSigner.create()
            bundle = self.workdir / "token-signer.crt"
            bundle.write_bytes(signer.cert_pem)
            tls_files = None
            if self._ca is not None:
                cert, key = self.workdir / "token.crt", self.workdir / "token.key"
                self._ca.issue("token-server", hosts=("127.0.0.1", "localhost")).write(cert, key)
                tls_files = (cert, key)
            self._token_server = _TokenServer(self.users, signer, tls_files)
            self._token_server.start()
            return {
                "token": {
                    "realm": self._token_server.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(bundle),
                }
            }
        raise ValueError(f"unknown auth mode {self.auth!r}")

    def _config(self, auth_config: dict[str, Any]) -> dict[str, Any]:
        http: dict[str, Any] = {"addr": self.host, "secret": uuid.uuid4().hex}
        if self.tls:
            http["tls"] = {
                "certificate": str(self.workdir / "registry.crt"),
                "key": str(self.workdir / "registry.key"),
            }
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "storage")},
                "delete": {"enabled": True},
            },
            "http": http,
            "health": {"storagedriver": {"enabled": False}},
        }
        if auth_config:
            config["auth"] = auth_config
        return config

    def _launch(self, binary: str, config: Path, *, last: bool) -> bool:
        """Start the process; True once ready, False if it died early (e.g. port taken)."""
        # REGISTRY_* variables would override the file: keep the configuration ours alone.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                if last:
                    raise SandboxError(f"the registry exited during start-up\n{self._log_tail()}")
                return False
            with contextlib.suppress(requests.RequestException):
                with requests.get(f"{self.url}/v2/", timeout=1, verify=self._verify) as answer:
                    ours = "Docker-Distribution-Api-Version" in answer.headers
                if ours and self._process.poll() is None:
                    return True
            time.sleep(0.02)
        self.stop()
        raise SandboxError(
            f"the registry did not answer on {self.url}/v2/ within {_READY_TIMEOUT:.0f}s\n"
            f"{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    # -- pushing ------------------------------------------------------------------------

    def push_image(
        self,
        repository: str,
        tag: str,
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> str:
        """Push a tiny OCI image as `repository:tag`; return its manifest digest.

        The layer holds one file naming the repository and tag, so every tag has its own
        digest. Credentials are needed in the `htpasswd` and `token` modes.
        """
        if self._process is None:
            raise SandboxError("the registry is not started")
        with requests.Session() as session:
            # Passed on each call too: REQUESTS_CA_BUNDLE would override session.verify.
            session.verify = self._verify
            authorization = self._push_authorization(session, repository, username, password)
            if authorization:
                session.headers["Authorization"] = authorization
            layer_tar = _tar_with_file("hello.txt", f"{repository}:{tag}\n".encode())
            layer = gzip.compress(layer_tar, mtime=0)
            image_config = json.dumps(
                {
                    "architecture": "amd64",
                    "os": "linux",
                    "config": {"Labels": {"org.opencontainers.image.version": tag}},
                    "rootfs": {"type": "layers", "diff_ids": [_digest(layer_tar)]},
                },
                sort_keys=True,
            ).encode()
            for blob in (image_config, layer):
                self._upload_blob(session, repository, blob)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": _descriptor(OCI_CONFIG, image_config),
                    "layers": [_descriptor(OCI_LAYER, layer)],
                },
                sort_keys=True,
            ).encode()
            response = session.put(
                f"{self.url}/v2/{repository}/manifests/{tag}",
                data=manifest,
                headers={"Content-Type": OCI_MANIFEST},
                timeout=30,
                verify=self._verify,
            )
            _expect(response, HTTPStatus.CREATED, f"manifest {repository}:{tag}")
            digest = _digest(manifest)
            returned = response.headers.get("Docker-Content-Digest", digest)
            if returned != digest:
                raise SandboxError(f"the registry stored {returned}, expected {digest}")
            return digest

    def break_tag(self, repository: str, tag: str) -> None:
        """Corrupt `repository:tag` in storage so the registry answers it with HTTP 500.

        A real server error from the real registry, for tests of retryable failures.
        """
        link = (
            self.workdir
            / "storage/docker/registry/v2/repositories"
            / repository
            / "_manifests/tags"
            / tag
            / "current/link"
        )
        if not link.is_file():
            raise SandboxError(f"{repository}:{tag} is not stored in {self.workdir}")
        link.unlink()
        link.mkdir()

    def _push_authorization(
        self,
        session: requests.Session,
        repository: str,
        username: str | None,
        password: str | None,
    ) -> str | None:
        basic = (username, password) if username is not None and password is not None else None
        if self.auth == "htpasswd" and basic:
            return "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        if self.auth == "token" and self._token_server is not None:
            response = session.get(
                self._token_server.realm,
                params={"service": SERVICE, "scope": f"repository:{repository}:pull,push"},
                auth=basic,
                timeout=10,
                verify=self._verify,
            )
            _expect(response, HTTPStatus.OK, "token")
            return f"Bearer {response.json()['token']}"
        return None

    def _upload_blob(self, session: requests.Session, repository: str, blob: bytes) -> None:
        digest = _digest(blob)
        head = session.head(
            f"{self.url}/v2/{repository}/blobs/{digest}", timeout=10, verify=self._verify
        )
        if head.status_code == HTTPStatus.OK:
            return
        started = session.post(
            f"{self.url}/v2/{repository}/blobs/uploads/", timeout=10, verify=self._verify
        )
        _expect(started, HTTPStatus.ACCEPTED, f"upload start in {repository}")
        location = urljoin(f"{self.url}/", started.headers["Location"])
        separator = "&" if urlsplit(location).query else "?"
        finished = session.put(
            f"{location}{separator}digest={digest}",
            data=blob,
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
            verify=self._verify,
        )
        _expect(finished, HTTPStatus.CREATED, f"blob {digest} in {repository}")


def _expect(response: requests.Response, status: HTTPStatus, what: str) -> None:
    if response.status_code != status:
        raise SandboxError(
            f"registry push of {what}: expected HTTP {int(status)}, got "
            f"{response.status_code}: {response.text[:500]}"
        )


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": _digest(data), "size": len(data)}


def _tar_with_file(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _htpasswd_line(username: str, password: str) -> str:
    """One bcrypt htpasswd line from apache2-utils' `htpasswd` (password via stdin)."""
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        raise SandboxError("`htpasswd` was not found: run `apt-get install apache2-utils`")
    result = subprocess.run(
        [htpasswd, "-niB", username],
        input=password.encode(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise SandboxError(f"htpasswd failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode().strip() + "\n"


# -- the token server ---------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _TokenSigner:
    """An RSA key and its self-signed certificate: the registry's `rootcertbundle`."""

    def __init__(self, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self._cert = cert

    @classmethod
    def create(cls) -> _TokenSigner:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "promotion-sandbox tokens")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def jwt(self, claims: Mapping[str, Any]) -> str:
        """An RS256 JWT whose `x5c` header carries the certificate the registry trusts."""
        der = self._cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


class _TokenServer:
    """Docker token auth (`GET /token?service=&scope=`) in a thread on another loopback port.

    Users with the right Basic credentials get every action they ask for; anonymous
    callers and wrong credentials are treated as the real services do: anonymous gets a
    token granting nothing, wrong credentials get 401.
    """

    lifetime_seconds = 300

    def __init__(
        self,
        users: Mapping[str, str],
        signer: _TokenSigner,
        tls_files: tuple[Path, Path] | None,
    ) -> None:
        self.users = dict(users)
        self.signer = signer
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _token_handler(self))
        self._server.daemon_threads = True
        self._tls = tls_files is not None
        if tls_files is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="registry-token-server", daemon=True
        )

    @property
    def realm(self) -> str:
        port = self._server.server_address[1]
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{port}/token"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def authenticate(self, authorization: str | None) -> tuple[bool, str]:
        """(allowed, subject): anonymous is allowed with subject ""; bad credentials not."""
        if not authorization:
            return True, ""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False, ""
        try:
            username, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False, ""
        expected = self.users.get(username)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return False, ""
        return True, username

    def issue(self, subject: str, service: str, scopes: list[str]) -> dict[str, Any]:
        access = []
        if subject:
            for scope in scopes:
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind and name and actions:
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        token = self.signer.jwt(
            {
                "iss": ISSUER,
                "sub": subject,
                "aud": service,
                "exp": now + self.lifetime_seconds,
                "nbf": now - 10,
                "iat": now,
                "jti": uuid.uuid4().hex,
                "access": access,
            }
        )
        return {
            "token": token,
            "access_token": token,
            "expires_in": self.lifetime_seconds,
            "issued_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
        }

    def count(self) -> None:
        with self._lock:
            self.requests += 1


def _token_handler(server: _TokenServer) -> type[BaseHTTPRequestHandler]:
    class TokenHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self._reply(HTTPStatus.NOT_FOUND, {"errors": [{"code": "NOT_FOUND"}]})
                return
            server.count()
            allowed, subject = server.authenticate(self.headers.get("Authorization"))
            if not allowed:
                self._reply(HTTPStatus.UNAUTHORIZED, {"errors": [{"code": "UNAUTHORIZED"}]})
                return
            query = parse_qs(url.query)
            service = query.get("service", [SERVICE])[0]
            self._reply(HTTPStatus.OK, server.issue(subject, service, query.get("scope", [])))

        def _reply(self, status: HTTPStatus, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Basic realm="promotion-sandbox"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read results, not access logs."""

    return TokenHandler
