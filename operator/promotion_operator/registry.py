"""Registry adapter: does `image:tag` exist? (OCI distribution API over HTTP).

Speaks the three auth flows registries use (anonymous, Basic, Bearer token) with the
credentials `domain.images.parse_dockerconfigjson` read from a Secret, and sorts every
failure into a domain error: a missing tag or an unreachable registry may still change
(retryable), refused credentials or a certificate that does not verify will not.

Messages name hosts, repositories and tags only: never a password, `auth` value or token.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import InsecureRequestWarning

from promotion_operator.domain.errors import PermanentError, Reason, RetryableError
from promotion_operator.domain.images import (
    RegistryCredentials,
    is_valid_tag,
    normalise_registry_host,
    split_image,
)

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)

_CREDENTIALS_HOME = (
    "the Environment's registry Secret (spec.registry.secretRef, "
    "type kubernetes.io/dockerconfigjson, key .dockerconfigjson)"
)
_INSECURE_HINT = (
    "If this is a local registry with plain HTTP or a self-signed certificate, set "
    "spec.registry.insecure: true on the Environment (never for a shared registry); "
    "otherwise give the registry a certificate the operator trusts."
)

_CHALLENGE_PARAM_RE = re.compile(
    r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?'
)

_DEFAULT_TOKEN_LIFETIME = 60.0  # seconds, as the token spec says when expires_in is absent
_TOKEN_EXPIRY_MARGIN = 5.0


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # "basic" or "bearer", lower case
    params: dict[str, str]


def parse_www_authenticate(header: str) -> _Challenge | None:
    """Parse a `WWW-Authenticate` header (`Basic realm=...` or `Bearer realm=...,...`)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM_RE.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params[match.group(1).lower()] = value or ""
    return _Challenge(scheme.lower(), params)


@dataclass(frozen=True)
class _Token:
    value: str = field(repr=False)
    expires_at: float


@dataclass(frozen=True)
class _Target:
    """What one check is about, for messages."""

    host: str
    repository: str
    reference: str  # image:tag as the user wrote it

    @property
    def scope(self) -> str:
        return f"repository:{self.repository}:pull"


class RegistryClient:
    """Checks that tags exist in OCI/Docker registries.

    `credentials` are keyed by registry host (any dockerconfigjson key form works).
    With `insecure=False` (the default) every request is HTTPS with certificate
    verification, always. `insecure=True` is for local registries only: it tries HTTPS
    without verification first and falls back to plain HTTP when the host does not speak
    TLS (as Docker's insecure-registries setting does). Bearer tokens are cached per
    (host, scope) until they expire. Safe to share between threads.
    """

    def __init__(
        self,
        credentials: Mapping[str, RegistryCredentials] | None = None,
        *,
        insecure: bool = False,
        timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self._credentials = {
            normalise_registry_host(host): creds for host, creds in (credentials or {}).items()
        }
        self._insecure = insecure
        self._timeout = timeout
        self._session = session if session is not None else requests.Session()
        self._clock: Callable[[], float] = time.monotonic
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._basic_hosts: set[str] = set()  # hosts known to want Basic auth
        self._plain_http_hosts: set[str] = set()  # insecure mode: hosts that do not speak TLS

    def __repr__(self) -> str:
        return (
            f"RegistryClient(hosts_with_credentials={sorted(self._credentials)}, "
            f"insecure={self._insecure})"
        )

    def check_tag(self, image: str, tag: str) -> str:
        """Return the digest of `image:tag` if the registry has it.

        Raises `RetryableError(TAG_MISSING)` on 404 (CI may still be pushing),
        `PermanentError(REGISTRY_AUTH_FAILED)` when credentials are missing or refused,
        `RetryableError(REGISTRY_UNAVAILABLE)` for 5xx, 429, timeouts and connection
        errors, and `PermanentError(REGISTRY_UNAVAILABLE)` when TLS does not verify.
        """
        host, repository = split_image(image)
        if not is_valid_tag(tag):
            raise PermanentError(
                Reason.INVALID_SPEC,
                f"{tag!r} is not a valid image tag (letters, digits, _ . -; at most 128)",
            )
        target = _Target(host, repository, f"{image}:{tag}")
        path = f"/v2/{repository}/manifests/{tag}"
        response = self._authorized(target, "HEAD", path)
        if response.status_code == 200:
            digest = response.headers.get("Docker-Content-Digest")
            if digest:
                return digest
            # Some registries only send the digest on GET; the body is the manifest itself.
            response = self._authorized(target, "GET", path)
            if response.status_code == 200:
                return response.headers.get("Docker-Content-Digest") or (
                    "sha256:" + hashlib.sha256(response.content).hexdigest()
                )
        if response.status_code == 404:
            raise RetryableError(
                Reason.TAG_MISSING, f"tag {tag} of {image} not found in registry {host}"
            )
        raise _status_error(target, response.status_code, "checking the tag")

    # -- auth flows ---------------------------------------------------------------------

    def _authorized(self, target: _Target, method: str, path: str) -> requests.Response:
        """Send a request, answering a 401 challenge once; auth failures raise."""
        host = target.host
        response = self._send(host, method, path, self._known_authorization(target))
        if response.status_code == 401:
            challenge = parse_www_authenticate(response.headers.get("WWW-Authenticate", ""))
            authorization = self._answer_challenge(target, challenge)
            response = self._send(host, method, path, authorization)
            if response.status_code in (401, 403):
                with self._lock:
                    self._tokens.pop((host, target.scope), None)
                raise self._auth_error(target, response.status_code)
        elif response.status_code == 403:
            raise self._auth_error(target, 403)
        return response

    def _known_authorization(self, target: _Target) -> str | None:
        """An Authorization header from earlier challenges, to skip the anonymous try."""
        with self._lock:
            token = self._tokens.get((target.host, target.scope))
            if token is not None and token.expires_at > self._clock():
                return f"Bearer {token.value}"
            basic = target.host in self._basic_hosts
        creds = self._credentials.get(target.host)
        return _basic_header(creds) if basic and creds else None

    def _answer_challenge(self, target: _Target, challenge: _Challenge | None) -> str:
        creds = self._credentials.get(target.host)
        if challenge is not None and challenge.scheme == "basic":
            if creds is None:
                raise self._auth_error(target, 401)
            with self._lock:
                self._basic_hosts.add(target.host)
            return _basic_header(creds)
        if challenge is not None and challenge.scheme == "bearer" and challenge.params.get("realm"):
            return f"Bearer {self._fetch_token(target, challenge, creds)}"
        raise PermanentError(
            Reason.REGISTRY_AUTH_FAILED,
            f"registry {target.host} answered 401 to {target.reference} without a Basic or "
            "Bearer challenge the operator understands",
        )

    def _fetch_token(
        self, target: _Target, challenge: _Challenge, creds: RegistryCredentials | None
    ) -> str:
        realm = challenge.params["realm"]
        realm_parts = urlsplit(realm)
        if realm_parts.scheme not in ("http", "https") or not realm_parts.netloc:
            raise PermanentError(
                Reason.REGISTRY_AUTH_FAILED,
                f"registry {target.host} sent a token realm that is not an http(s) URL",
            )
        if realm_parts.scheme == "http" and not self._insecure:
            raise PermanentError(
                Reason.REGISTRY_AUTH_FAILED,
                f"registry {target.host} asks for a token from a plain-HTTP realm "
                f"({realm_parts.netloc}); credentials are not sent unencrypted. " + _INSECURE_HINT,
            )
        params = {"scope": target.scope}
        if challenge.params.get("service"):
            params["service"] = challenge.params["service"]
        if creds is not None:
            params["account"] = creds.username
        try:
            with self._tls_mode(realm_parts.scheme == "https") as verify:
                response = self._session.get(
                    realm,
                    params=params,
                    auth=(creds.username, creds.password) if creds else None,
                    timeout=self._timeout,
                    verify=verify,
                )
        except requests.RequestException as error:
            raise _transport_error(f"token server {realm_parts.netloc}", error) from None
        if response.status_code in (401, 403):
            raise self._auth_error(target, response.status_code, token_server=True)
        if response.status_code != 200:
            raise _status_error(target, response.status_code, "getting a token")
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token, lifetime = None, 0.0
        if not isinstance(token, str) or not token:
            raise RetryableError(
                Reason.REGISTRY_UNAVAILABLE,
                f"token server {realm_parts.netloc} for registry {target.host} answered "
                "without a token",
            )
        expires_at = self._clock() + max(lifetime - _TOKEN_EXPIRY_MARGIN, 0.0)
        with self._lock:
            self._tokens[(target.host, target.scope)] = _Token(token, expires_at)
        return token

    def _auth_error(
        self, target: _Target, status: int, *, token_server: bool = False
    ) -> PermanentError:
        who = (
            f"the token server of registry {target.host}"
            if token_server
            else (f"registry {target.host}")
        )
        if target.host not in self._credentials:
            return PermanentError(
                Reason.REGISTRY_AUTH_FAILED,
                f"{who} denied anonymous access to {target.reference} (HTTP {status}) and no "
                f'credentials were given for {target.host}: add an "auths" entry for '
                f'"{target.host}" to {_CREDENTIALS_HOME}',
            )
        return PermanentError(
            Reason.REGISTRY_AUTH_FAILED,
            f"{who} refused the credentials for {target.host} (HTTP {status}) when reading "
            f'{target.reference}: fix the "auths" entry for "{target.host}" in '
            f"{_CREDENTIALS_HOME}"
            + (
                "" if token_server else f", or give that account pull access to {target.repository}"
            ),
        )

    # -- transport ----------------------------------------------------------------------

    def _send(
        self, host: str, method: str, path: str, authorization: str | None
    ) -> requests.Response:
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        if authorization:
            headers["Authorization"] = authorization
        use_tls = not (self._insecure and host in self._plain_http_hosts)
        try:
            return self._send_once(host, method, path, headers, use_tls=use_tls)
        except requests.exceptions.SSLError as error:
            if not (self._insecure and use_tls):
                raise _tls_error(f"registry {host}", error) from None
        except requests.RequestException as error:
            raise _transport_error(f"registry {host}", error) from None
        # insecure: the host did not complete a TLS handshake; it may speak plain HTTP.
        try:
            response = self._send_once(host, method, path, headers, use_tls=False)
        except requests.RequestException as error:
            raise _transport_error(f"registry {host}", error) from None
        with self._lock:
            self._plain_http_hosts.add(host)
        return response

    def _send_once(
        self, host: str, method: str, path: str, headers: dict[str, str], *, use_tls: bool
    ) -> requests.Response:
        url = f"{'https' if use_tls else 'http'}://{host}{path}"
        with self._tls_mode(use_tls) as verify:
            return self._session.request(
                method,
                url,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=method != "HEAD",
                verify=verify,
            )

    @contextmanager
    def _tls_mode(self, use_tls: bool) -> Iterator[bool | str]:
        """Yield the `verify` argument; silence urllib3's warning only when insecure."""
        if self._insecure:
            if not use_tls:
                yield False
                return
            with warnings.catch_warnings():
                # The user opted out of verification for this (local) registry explicitly.
                warnings.simplefilter("ignore", InsecureRequestWarning)
                yield False
            return
        # A session may carry a CA bundle path; a session with verify=False is overridden.
        session_verify = self._session.verify
        yield session_verify if isinstance(session_verify, str) else True


def _basic_header(creds: RegistryCredentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _status_error(target: _Target, status: int, doing: str) -> PermanentError | RetryableError:
    if status == 429 or status >= 500:
        return RetryableError(
            Reason.REGISTRY_UNAVAILABLE,
            f"registry {target.host} answered HTTP {status} while {doing} for "
            f"{target.reference}; will retry",
        )
    return PermanentError(
        Reason.REGISTRY_UNAVAILABLE,
        f"registry {target.host} answered an unexpected HTTP {status} while {doing} for "
        f"{target.reference}",
    )


def _transport_error(
    what: str, error: requests.RequestException
) -> PermanentError | RetryableError:
    if isinstance(error, requests.exceptions.SSLError):
        return _tls_error(what, error)
    if isinstance(error, requests.Timeout):
        problem = "timed out"
    elif isinstance(error, requests.ConnectionError):
        problem = f"could not be reached ({_connection_problem(error)})"
    else:
        problem = f"failed ({type(error).__name__})"
    return RetryableError(Reason.REGISTRY_UNAVAILABLE, f"{what} {problem}; will retry")


def _connection_problem(error: requests.ConnectionError) -> str:
    text = str(error)
    for needle, label in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host"),
        ("No address associated", "unknown host"),
        ("Temporary failure in name resolution", "DNS lookup failed"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "connection closed by the server"),
    ):
        if needle in text:
            return label
    return "connection failed"


def _tls_error(what: str, error: requests.exceptions.SSLError) -> PermanentError:
    text = str(error)
    if "certificate verify failed" in text:
        detail = re.search(r"certificate verify failed: ([^(']+)", text)
        problem = "its certificate does not verify" + (
            f" ({detail.group(1).strip()})" if detail else ""
        )
    elif (
        "WRONG_VERSION_NUMBER" in text
        or "wrong version number" in text
        or ("record layer failure" in text)
    ):
        problem = "it does not speak TLS (plain HTTP?)"
    else:
        problem = "the TLS handshake failed"
    return PermanentError(Reason.REGISTRY_UNAVAILABLE, f"{what}: {problem}. {_INSECURE_HINT}")
