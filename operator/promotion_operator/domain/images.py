"""One definition per image concept: tags, image names and references, registry credentials.

Pure: the registry adapter, the health sources, the models and the lifecycle all parse
images and tags through this module, so there is one tag grammar, one reference parser
and one meaning of "the version an overlay (or a live environment) pins".
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from promotion_operator.domain.errors import PermanentError, Reason

TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
"""An OCI tag (distribution's grammar); an Environment's versionPattern narrows it further."""

DOCKER_HUB = "registry-1.docker.io"
"""Where `nginx` or `team/app` (no registry host in the name) are pulled from."""

_DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)

# The reference grammar of distribution (docker/distribution/reference), lower case only.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_HOST_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_TAG_RE = re.compile(TAG_PATTERN)


@dataclass(frozen=True)
class RegistryCredentials:
    """A username and password for one registry host (the password is kept out of repr)."""

    username: str
    password: str = field(repr=False)


def normalise_registry_host(key: str) -> str:
    """Return `host[:port]`, lower case, for a dockerconfigjson key or an image's registry part.

    `https://index.docker.io/v1/`, `docker.io` and `registry-1.docker.io` all become
    `registry-1.docker.io`, the host images without a registry in their name come from.
    """
    text = key.strip()
    if "://" in text:
        text = urlsplit(text).netloc
    text = text.split("/", 1)[0].lower()
    return DOCKER_HUB if text in _DOCKER_HUB_ALIASES else text


def parse_dockerconfigjson(data: bytes | str) -> dict[str, RegistryCredentials]:
    """Parse a `.dockerconfigjson` value into credentials keyed by normalised `host[:port]`.

    Each `auths` entry needs either `auth` (base64 of `user:password`) or `username` and
    `password`. Raises `PermanentError(SECRET_INVALID)` saying what to fix; the message
    never repeats a value from the Secret.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _secret_invalid("its .dockerconfigjson is not UTF-8 text") from None
    try:
        document: Any = json.loads(data)
    except RecursionError:  # json recurses per nesting level; a Secret may be 1 MiB
        raise _secret_invalid("its .dockerconfigjson is nested too deeply") from None
    except json.JSONDecodeError as error:
        # error.msg and the position only: the exception's str could quote nothing
        # secret, but keep the habit of never echoing the document.
        raise _secret_invalid(
            f"its .dockerconfigjson is not valid JSON ({error.msg} at line {error.lineno}, "
            f"column {error.colno})"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("auths"), dict):
        raise _secret_invalid(
            'its .dockerconfigjson has no "auths" object; create the Secret with '
            "`kubectl create secret docker-registry NAME --docker-server=HOST "
            "--docker-username=USER --docker-password=PASSWORD`"
        )
    credentials: dict[str, RegistryCredentials] = {}
    for key, entry in document["auths"].items():
        try:
            host = normalise_registry_host(str(key))
        except ValueError:  # urlsplit refuses e.g. "http://[" (an unclosed IPv6 bracket)
            host = ""
        if not host:
            raise _secret_invalid(
                f'its .dockerconfigjson has an "auths" key {key!r} with no host '
                "(write it as host[:port])"
            )
        credentials.setdefault(host, _parse_auth_entry(host, entry))
    return credentials


def _parse_auth_entry(host: str, entry: object) -> RegistryCredentials:
    where = f'the "auths" entry for {host}'
    if not isinstance(entry, dict):
        raise _secret_invalid(f"{where} is not an object")
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username and password:
        return RegistryCredentials(username, password)
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):  # binascii.Error; non-ASCII text
            raise _secret_invalid(f'{where} has an "auth" value that is not base64') from None
        username, sep, password = decoded.partition(":")
        if not sep or not username or not password:
            raise _secret_invalid(
                f'{where} has an "auth" value that does not decode to "username:password"'
            )
        return RegistryCredentials(username, password)
    raise _secret_invalid(
        f'{where} has neither "auth" nor "username" and "password" '
        "(identity tokens are not supported)"
    )


def _secret_invalid(problem: str) -> PermanentError:
    return PermanentError(Reason.SECRET_INVALID, f"registry Secret is invalid: {problem}")


def split_image(image: str) -> tuple[str, str]:
    """Split an image name (no tag) into `(registry host[:port], repository)`.

    Follows Docker's rules: the first path part is a registry only if it contains `.` or
    `:` or is `localhost`; otherwise the image is on Docker Hub, and a single-part name
    gets the `library/` prefix. Raises `PermanentError(INVALID_SPEC)` for a malformed name.
    """
    name = image.strip()
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, rest
    else:
        host, repository = DOCKER_HUB, name
        if "/" not in repository:
            repository = f"library/{repository}"
    if not _HOST_RE.match(host):
        raise PermanentError(
            Reason.INVALID_SPEC, f"image {image!r}: {host!r} is not a valid registry host"
        )
    if "@" in repository or ":" in repository:
        raise PermanentError(
            Reason.INVALID_SPEC,
            f"image {image!r} must not carry a tag or digest: list the bare image name in "
            "spec.images and put the version in the Promotion",
        )
    if not _REPOSITORY_RE.match(repository):
        raise PermanentError(
            Reason.INVALID_SPEC,
            f"image {image!r}: {repository!r} is not a valid repository name "
            "(lower-case letters, digits, and . _ - separators between /-separated parts)",
        )
    return normalise_registry_host(host), repository


def is_valid_tag(tag: str) -> bool:
    """Whether `tag` is a tag a registry accepts (letters, digits, `_ . -`; at most 128)."""
    return _TAG_RE.match(tag) is not None


def split_reference(reference: str) -> tuple[str, str | None]:
    """Split `name:tag` (or `name@digest`, or `name:tag@digest`) into (name, tag or None)."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def pinned_version(tags: Mapping[str, str | None]) -> str | None:
    """The version a set of images pins: their one common tag, else None.

    None when there is no image, when an image has no tag, or when images differ: an
    environment half on one version and half on another runs no version as a whole.
    Used for what an overlay pins in git and for what an environment runs live.
    """
    values = set(tags.values())
    if len(values) == 1:
        return next(iter(values))
    return None


def tags_of(references: Iterable[str], images: Iterable[str]) -> dict[str, str | None]:
    """The one tag each image runs in `references`; None when unknown or two tags run."""
    seen: dict[str, set[str]] = {image: set() for image in images}
    for reference in references:
        name, tag = split_reference(reference)
        if name in seen and tag is not None:
            seen[name].add(tag)
    return {image: next(iter(tags)) if len(tags) == 1 else None for image, tags in seen.items()}
