"""Pure rules for git remotes and paths inside a clone: URL allow-list, path confinement, redaction.

No I/O here: `gitops` applies these rules and adds the parts that need the file system
(resolving symlinks) or a process (running git).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from promotion_operator.domain.errors import PermanentError, Reason

ALLOWED_FORMS = (
    "https://host/path, ssh://[user@]host[:port]/path or scp-like user@host:path"
    " (file:// and plain http:// only when the operator runs with the local-use flag)"
)

# `<transport>::<address>` makes git run a remote helper (`ext::sh -c ...` runs any command).
_REMOTE_HELPER = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*::")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
# scp-like: user@host:path. The user is required (the design's documented form), which also
# keeps a Windows-ish or relative local path like `c:/repo` from being read as a remote.
_SCP_LIKE = re.compile(
    r"^(?P<user>[A-Za-z0-9._~+][A-Za-z0-9._~+-]*)"
    r"@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])"
    r":(?P<path>.+)$"
)
# user:password@ inside a URL, for redaction.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*:[^/@\s]*@")
# Lines shorter than this inside a multi-line secret (a PEM key) are not redacted on their
# own: they would match ordinary text. The secret as a whole is always redacted.
_MIN_SECRET_LINE = 16


def validate_git_url(url: str, *, allow_file: bool) -> None:
    """Accept only the git remote forms the design allows; raise PermanentError otherwise.

    Allowed: `https://`, `ssh://`, scp-like `user@host:path`; `file://` and `http://` only
    when `allow_file` (the operator's local-use flag, for loopback servers and local repos).
    Rejected: remote helpers such as `ext::`, values starting with `-` (git would read them
    as options, e.g. `--upload-pack=...`), whitespace or control characters, other schemes.
    """
    shown = redact(url, ())[:200]
    problem = _url_problem(url, allow_file=allow_file)
    if problem is not None:
        raise PermanentError(
            Reason.INVALID_GIT_URL,
            f"git URL {shown!r} is not allowed: {problem}; allowed forms are {ALLOWED_FORMS}",
        )


def is_ssh_url(url: str) -> bool:
    """Whether git reaches `url` over SSH: `ssh://` or the scp-like `user@host:path`."""
    scheme = _SCHEME.match(url)
    if scheme is not None:
        return scheme["scheme"].lower() == "ssh"
    return _SCP_LIKE.match(url) is not None


def _url_problem(url: str, *, allow_file: bool) -> str | None:
    """Say what is wrong with `url`, or None when it is acceptable."""
    if not url:
        return "it is empty"
    if url.startswith("-"):
        return "it starts with '-' (git would read it as an option)"
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return "it contains whitespace or control characters"
    if _REMOTE_HELPER.match(url):
        return "remote helpers such as ext:: are never allowed"

    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        scp = _SCP_LIKE.match(url)
        if scp is None:
            return "it is neither a URL with a scheme nor scp-like user@host:path"
        if scp["path"].startswith("-"):
            return "its path starts with '-'"
        return None

    scheme = scheme_match["scheme"].lower()
    local_only = {"file", "http"}
    if scheme in local_only and not allow_file:
        return f"{scheme}:// needs the operator's local-use flag"
    if scheme not in {"https", "ssh", *local_only}:
        return f"the scheme {scheme}:// is not supported"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        return f"it is not a valid URL ({exc})"
    del port
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            return "file:// URLs must be file:///absolute/path"
        return None
    host = parts.hostname or ""
    if not host or host.startswith("-"):
        return "it has no valid host"
    if parts.password is not None:
        return "it embeds a password; put credentials in the Secret instead"
    if parts.username is not None and parts.username.startswith("-"):
        return "its user name starts with '-'"
    if parts.path in ("", "/"):
        return "it has no repository path"
    return None


def confine_path(root: Path, relative: str) -> Path:
    """Join a repository-relative path onto `root`, refusing anything that could leave it.

    Rejects empty paths, absolute paths, `..` components, NUL bytes and anything inside
    `.git` (writing there could install hooks). Returns `root / relative` normalised, without
    touching the file system: `gitops` resolves symlinks and checks the result again.
    """
    problem = _path_problem(relative)
    if problem is not None:
        raise PermanentError(
            Reason.INVALID_OVERLAY,
            f"path {relative[:200]!r} is not allowed: {problem}; use a path relative to the "
            "repository root such as k8s/overlays/prod",
        )
    parts = [part for part in PurePosixPath(relative).parts if part != "."]
    return root.joinpath(*parts)


def _path_problem(relative: str) -> str | None:
    """Say what is wrong with a repository-relative path, or None when it is acceptable."""
    if not relative.strip():
        return "it is empty"
    if "\x00" in relative:
        return "it contains a NUL byte"
    if "\\" in relative:
        return "it contains a backslash"
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        return "it is absolute"
    parts = [part for part in pure.parts if part != "."]
    if not parts:
        return "it names the repository root, not a file or folder in it"
    if ".." in parts:
        return "it contains a '..' component"
    if parts[0].lower() == ".git":
        return "it points inside .git"
    return None


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value, and any `user:password@` in URLs, with `***`.

    Longer secrets are replaced first so a secret containing another one is hidden whole.
    Multi-line secrets (private keys) also have each long line hidden on its own, in case a
    tool echoes part of one.
    """
    needles: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        needles.add(secret)
        stripped = secret.strip()
        if stripped:
            needles.add(stripped)
        for line in secret.splitlines():
            if len(line.strip()) >= _MIN_SECRET_LINE:
                needles.add(line.strip())
    for needle in sorted(needles, key=len, reverse=True):
        text = text.replace(needle, "***")
    return _URL_USERINFO.sub(r"\g<scheme>***@", text)


# Characters and sequences `git check-ref-format` refuses, plus a leading '-' (option injection).
_BAD_BRANCH = re.compile(
    r"^-|^/|/$|\.\.|@\{|//|\.lock$|\.$|/\.|^\.|[~^:?*\[\\]",
)


def validate_branch(branch: str) -> None:
    """Accept a plain branch name (`main`, `release/2025`); raise PermanentError otherwise."""
    if (
        not branch
        or branch == "@"
        or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in branch)
        or _BAD_BRANCH.search(branch)
    ):
        raise PermanentError(
            Reason.INVALID_SPEC,
            f"git branch {branch[:200]!r} is not a valid branch name (e.g. main, release/2025)",
        )


def trailer_block(message: str) -> list[tuple[str, str]]:
    """Return the `Key: value` trailers of a commit message, as `git interpret-trailers` sees them.

    Trailers are the lines of the message's last paragraph, and only when every line of it
    has the `Key: value` form. Text earlier in the message (a user-supplied reason that
    quotes "Promotion-UID: x") is never read as a trailer.
    """
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:  # a subject line alone has no trailers
        return []
    trailers: list[tuple[str, str]] = []
    for line in paragraphs[-1].splitlines():
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*?)[ \t]*", line)
        if match is None:
            return []
        trailers.append((match[1], match[2]))
    return trailers


def has_trailers(message: str, wanted: Mapping[str, str]) -> bool:
    """True when the message's trailer block holds every `key: value` pair of `wanted`.

    Keys compare case-insensitively (as git does), values exactly.
    """
    present = {(key.lower(), value) for key, value in trailer_block(message)}
    return all((key.lower(), value.strip()) in present for key, value in wanted.items())
