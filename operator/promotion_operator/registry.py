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
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from promotion_operator.domain.errors import PermanentError, PromotionError, Reason, RetryableError
from promotion_operator.domain.images import (
    RegistryCredentials,
    is_valid_tag,
    normalise_registry_host,
    split_image,
)
from promotion_operator.fetch import (
    BodyTooLargeError,
    ConnectError,
    DeadlineError,
    FetchError,
    Reply,
    TLSError,
    fetch,
)
from promotion_operator.metrics import CALL_ERRORS, CALL_SECONDS

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
_MAX_TOKEN_LIFETIME = 3600.0  # a token server's "expires_in" is believed up to an hour
_MAX_REMEMBERED = 256  # tokens, and hosts per kind of answer, one client keeps
# A registry is a server a tenant names. Manifests are small (distribution refuses more
# than 4 MiB), and so are tokens (a few KiB of JWT); more is an attack or a broken server.
MAX_MANIFEST_BYTES = 4 << 20
MAX_TOKEN_BYTES = 256 << 10
# A tags/list page: 1,000 tags of at most 128 characters is about 150 KiB.
MAX_TAGS_PAGE_BYTES = 1 << 20
TAGS_PAGE_SIZE = 1000
_MAX_REDIRECTS = 3


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
    verification against the system CA store (or `ca_bundle`), always. `insecure=True` is
    for local registries only: it tries HTTPS without verification first and falls back to
    plain HTTP when the host does not speak TLS (as Docker's insecure-registries setting
    does). Bearer tokens are cached per (host, scope) until they expire.

    Every request is bounded: `timeout` seconds for the whole request (connect, headers
    and body), manifests of at most MAX_MANIFEST_BYTES and token answers of at most
    MAX_TOKEN_BYTES. Redirects are followed (at most 3) but credentials only go to the
    origin (scheme, host and port) they were meant for: the registry itself, or the
    token realm it named. Safe to share between threads.
    """

    def __init__(
        self,
        credentials: Mapping[str, RegistryCredentials] | None = None,
        *,
        insecure: bool = False,
        timeout: float = 10.0,
        ca_bundle: str | Path | None = None,
    ) -> None:
        self._credentials = {
            normalise_registry_host(host): creds for host, creds in (credentials or {}).items()
        }
        self._insecure = insecure
        self._timeout = timeout
        self._ca_bundle = str(ca_bundle) if ca_bundle is not None else None
        self._clock: Callable[[], float] = time.monotonic
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._basic_hosts: set[str] = set()  # hosts known to want Basic auth
        self._plain_http_hosts: set[str] = set()  # insecure mode: hosts that do not speak TLS
        self._settled_hosts: set[str] = set()  # hosts that took our auth (or wanted none)

    def __repr__(self) -> str:
        return (
            f"RegistryClient(hosts_with_credentials={sorted(self._credentials)}, "
            f"insecure={self._insecure})"
        )

    def check_tag(self, image: str, tag: str) -> str:
        """Return the digest of `image:tag` if the registry has it (timed; a failure that
        is not a missing tag counts as a registry error).

        Raises `RetryableError(TAG_MISSING)` on 404 (CI may still be pushing),
        `PermanentError(REGISTRY_AUTH_FAILED)` when credentials are missing or refused,
        `RetryableError(REGISTRY_UNAVAILABLE)` for 5xx, 429, timeouts and connection
        errors, and `PermanentError(REGISTRY_UNAVAILABLE)` when TLS does not verify.
        """
        began = time.monotonic()
        try:
            return self._check_tag(image, tag)
        except PromotionError as error:
            if error.reason != Reason.TAG_MISSING:
                CALL_ERRORS.labels("registry", "check_tag").inc()
            raise
        finally:
            CALL_SECONDS.labels("registry", "check_tag").observe(time.monotonic() - began)

    def _check_tag(self, image: str, tag: str) -> str:
        host, repository = split_image(image)
        if not is_valid_tag(tag):
            raise PermanentError(
                Reason.INVALID_SPEC,
                f"{tag!r} is not a valid image tag (letters, digits, _ . -; at most 128)",
            )
        target = _Target(host, repository, f"{image}:{tag}")
        path = f"/v2/{repository}/manifests/{tag}"
        response = self._authorized(target, "HEAD", path)
        if response.status == 200:
            digest = response.headers.get("Docker-Content-Digest")
            if digest:
                return digest
            # Some registries only send the digest on GET; the body is the manifest itself.
            response = self._authorized(target, "GET", path)
            if response.status == 200:
                return response.headers.get("Docker-Content-Digest") or (
                    "sha256:" + hashlib.sha256(response.body).hexdigest()
                )
        if response.status == 404:
            raise RetryableError(
                Reason.TAG_MISSING, f"tag {tag} of {image} not found in registry {host}"
            )
        raise _status_error(target, response.status, "checking the tag")

    def list_tags(
        self,
        image: str,
        *,
        max_tags: int = 10_000,
        deadline: float = 30.0,
        page_size: int = TAGS_PAGE_SIZE,
    ) -> tuple[list[str], bool]:
        """Return the tags of `image` (OCI `tags/list`, following `Link` pages) and whether
        the list is complete.

        Bounded three ways: each page is at most MAX_TAGS_PAGE_BYTES, at most `max_tags`
        tags are read, and the whole listing stops at `deadline` seconds (a partial list
        is returned with `complete=False` once at least one page was read). Raises like
        `check_tag` when the first page cannot be read; a missing repository is a
        `PermanentError(TAG_MISSING)`.
        """
        host, repository = split_image(image)
        target = _Target(host, repository, image)
        end = time.monotonic() + deadline
        path = f"/v2/{repository}/tags/list?n={page_size}"
        tags: list[str] = []
        while True:
            response = self._authorized(target, "GET", path, max_body=MAX_TAGS_PAGE_BYTES)
            if response.status == 404:
                raise PermanentError(
                    Reason.TAG_MISSING, f"repository {repository} not found in registry {host}"
                )
            if response.status != 200:
                raise _status_error(target, response.status, "listing tags")
            tags.extend(_page_tags(response.body, target))
            following = _next_page(response.headers.get("Link", ""), repository)
            if following is None:
                return tags[:max_tags], len(tags) <= max_tags
            if len(tags) >= max_tags or time.monotonic() >= end:
                return tags[:max_tags], False
            path = following

    # -- auth flows ---------------------------------------------------------------------

    def _authorized(
        self, target: _Target, method: str, path: str, *, max_body: int = MAX_MANIFEST_BYTES
    ) -> Reply:
        """Send a request, answering a 401 challenge once; auth failures raise."""
        host = target.host
        authorization = self._known_authorization(target)
        response = self._send(target, method, path, authorization, max_body=max_body)
        if response.status == 401:
            challenge = parse_www_authenticate(response.headers.get("WWW-Authenticate", ""))
            authorization = self._answer_challenge(target, challenge)
            response = self._send(target, method, path, authorization, max_body=max_body)
            if response.status in (401, 403):
                with self._lock:
                    self._tokens.pop((host, target.scope), None)
                    self._settled_hosts.discard(host)
                raise self._auth_error(target, response.status)
        elif response.status == 403:
            with self._lock:
                self._settled_hosts.discard(host)
            raise self._auth_error(target, 403)
        if authorization and 200 <= response.status < 300:
            with self._lock:  # the credentials (or a token they earned) were taken
                _remember(self._settled_hosts, host)
        return response

    def settled(self, image: str) -> bool:
        """Whether asking the image's registry several things at once cannot send refused
        credentials more often than one at a time would: it has no credentials here, or
        it answered a request that carried them with success (and refused none since)."""
        try:
            host, _ = split_image(image)
        except PromotionError:
            return False  # a bad name: asked alone, it fails with its own message
        if host not in self._credentials:
            return True
        with self._lock:
            return host in self._settled_hosts

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
                _remember(self._basic_hosts, target.host)
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
        what = f"token server {realm_parts.netloc}"
        try:
            response = self._fetch_following(
                realm,
                params,
                _basic_header(creds) if creds else None,
                max_body=MAX_TOKEN_BYTES,
            )
        except FetchError as error:
            raise _transport_error(what, error) from None
        if response.status in (401, 403):
            raise self._auth_error(target, response.status, token_server=True)
        if response.status != 200:
            raise _status_error(target, response.status, "getting a token")
        try:
            body = json.loads(response.body)
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token, lifetime = None, 0.0
        if not math.isfinite(lifetime):  # "inf" or "nan" parse as floats
            lifetime = _DEFAULT_TOKEN_LIFETIME
        if not isinstance(token, str) or not token:
            raise RetryableError(
                Reason.REGISTRY_UNAVAILABLE,
                f"token server {realm_parts.netloc} for registry {target.host} answered "
                "without a token",
            )
        now = self._clock()
        expires_at = now + min(max(lifetime - _TOKEN_EXPIRY_MARGIN, 0.0), _MAX_TOKEN_LIFETIME)
        with self._lock:
            # image names (hence scopes) are the tenant's: keep what is held bounded
            for key in [key for key, held in self._tokens.items() if held.expires_at <= now]:
                del self._tokens[key]
            while len(self._tokens) >= _MAX_REMEMBERED:
                del self._tokens[next(iter(self._tokens))]  # the oldest
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
        self,
        target: _Target,
        method: str,
        path: str,
        authorization: str | None,
        *,
        max_body: int = MAX_MANIFEST_BYTES,
    ) -> Reply:
        host = target.host
        use_tls = not (self._insecure and host in self._plain_http_hosts)
        what = f"registry {host}"
        try:
            return self._send_once(
                host, method, path, authorization, use_tls=use_tls, max_body=max_body
            )
        except TLSError as error:
            if not (self._insecure and use_tls):
                raise _tls_error(what, error) from None
        except BodyTooLargeError:
            raise _too_large(target, max_body) from None
        except FetchError as error:
            raise _transport_error(what, error) from None
        # insecure: the host did not complete a TLS handshake; it may speak plain HTTP.
        try:
            response = self._send_once(
                host, method, path, authorization, use_tls=False, max_body=max_body
            )
        except BodyTooLargeError:
            raise _too_large(target, max_body) from None
        except FetchError as error:
            raise _transport_error(what, error) from None
        with self._lock:
            _remember(self._plain_http_hosts, host)
        return response

    def _send_once(
        self,
        host: str,
        method: str,
        path: str,
        authorization: str | None,
        *,
        use_tls: bool,
        max_body: int,
    ) -> Reply:
        url = f"{'https' if use_tls else 'http'}://{host}{path}"
        return self._fetch_following(url, None, authorization, method=method, max_body=max_body)

    def _fetch_following(
        self,
        url: str,
        params: Mapping[str, str] | None,
        authorization: str | None,
        *,
        max_body: int,
        method: str = "GET",
    ) -> Reply:
        """One request, following up to _MAX_REDIRECTS redirects within one deadline.

        `authorization` goes only to the origin of `url`: a redirect elsewhere (another
        host, port or scheme) is followed without it, so no registry or token server can
        send the operator's credentials to a server of its choosing.
        """
        end = time.monotonic() + self._timeout
        origin = _origin(url)
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        for _ in range(_MAX_REDIRECTS + 1):
            left = end - time.monotonic()
            if left <= 0:
                raise DeadlineError(f"timed out (no full answer within {self._timeout:g} s)")
            if authorization and _origin(url) == origin:
                headers["Authorization"] = authorization
            else:
                headers.pop("Authorization", None)
            reply = fetch(
                method,
                url,
                headers=headers,
                params=params,
                deadline=left,
                max_body=max_body,
                verify=self._verify(),
            )
            if not reply.is_redirect:
                return reply
            url = urljoin(url, reply.headers["Location"])
            params = None  # the Location is the whole next URL
            if urlsplit(url).scheme not in ("http", "https"):
                raise ConnectError("redirected to a URL that is not http(s)")
        raise ConnectError(f"redirected more than {_MAX_REDIRECTS} times")

    def _verify(self) -> bool | str:
        """`fetch`'s verify: off only when the user marked this registry insecure."""
        if self._insecure:
            return False
        return self._ca_bundle if self._ca_bundle is not None else True


def _remember(hosts: set[str], host: str) -> None:
    """Add `host`, forgetting all when full (the next request relearns; memory stays bounded)."""
    if len(hosts) >= _MAX_REMEMBERED:
        hosts.clear()
    hosts.add(host)


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


def _page_tags(body: bytes, target: _Target) -> list[str]:
    """The valid tags of one tags/list page; anything else in it is ignored."""
    try:
        tags = json.loads(body).get("tags") or []
    except (ValueError, AttributeError):
        raise RetryableError(
            Reason.REGISTRY_UNAVAILABLE,
            f"registry {target.host} answered tags/list of {target.repository} with no JSON",
        ) from None
    if not isinstance(tags, list):
        return []
    return [tag for tag in tags if isinstance(tag, str) and is_valid_tag(tag)]


_LINK_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _next_page(link: str, repository: str) -> str | None:
    """The path of the next tags/list page from a `Link` header, on the same registry.

    Only a path of the same repository's tags/list is followed: a registry cannot point
    the listing (and the credentials that go with it) elsewhere.
    """
    match = _LINK_NEXT_RE.search(link)
    if match is None:
        return None
    parts = urlsplit(match[1])
    if parts.netloc or parts.path != f"/v2/{repository}/tags/list":
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _too_large(target: _Target, max_body: int) -> PermanentError:
    return PermanentError(
        Reason.REGISTRY_UNAVAILABLE,
        f"registry {target.host} answered with more than {max_body} bytes for "
        f"{target.reference}; a manifest or a tags page is far smaller, so the operator "
        "stopped reading",
    )


def _transport_error(what: str, error: FetchError) -> PermanentError | RetryableError:
    if isinstance(error, TLSError):
        return _tls_error(what, error)
    if isinstance(error, BodyTooLargeError):
        return PermanentError(
            Reason.REGISTRY_UNAVAILABLE, f"{what} {error.problem}; the operator stopped reading"
        )
    if isinstance(error, DeadlineError):
        problem = error.problem
    else:
        problem = f"could not be reached ({error.problem})"
    return RetryableError(Reason.REGISTRY_UNAVAILABLE, f"{what} {problem}; will retry")


def _tls_error(what: str, error: TLSError) -> PermanentError:
    return PermanentError(Reason.REGISTRY_UNAVAILABLE, f"{what}: {error.problem}. {_INSECURE_HINT}")
