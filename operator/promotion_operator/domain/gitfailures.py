"""Git failures, sorted once: typed errors and the pure rules that classify git's output.

`gitops` runs git; this module decides what a failed run means for the user (fix the
Secret or the spec: permanent; the server is down or the branch moved: retryable).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from promotion_operator.domain.errors import PermanentError, PromotionError, Reason, RetryableError
from promotion_operator.domain.gitrules import redact

_MAX_DETAIL = 600


class GitAuthError(PermanentError):
    """The server refused our credentials, or we refused its identity (host key, TLS)."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_AUTH_FAILED, message)


class GitNotFoundError(PermanentError):
    """The repository or the branch does not exist (or is invisible to these credentials)."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_NOT_FOUND, message)


class GitUnreachableError(RetryableError):
    """The server could not be reached or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_UNREACHABLE, message)


class GitPushRejectedError(RetryableError):
    """The branch kept moving under us: every push attempt was a non-fast-forward."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_PUSH_REJECTED, message)


class GitOperationError(RetryableError):
    """Any other git failure; retried because we cannot tell it is permanent."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.GIT_ERROR, message)


def classify_git_failure(output: str) -> tuple[Callable[[str], PromotionError], str]:
    """Map git/ssh/curl output to (error type, what it means for the user)."""
    text = output.lower()
    auth_rules: list[tuple[str, str]] = [
        (
            r"host key verification failed|no \S+ host key is known|"
            r"remote host identification has changed",
            "the SSH server's host key is not in known_hosts (or does not match it): "
            "add the server's known_hosts line to the Secret",
        ),
        (
            r"load key|invalid format|error in libcrypto",
            "the SSH private key in the Secret could not be loaded",
        ),
        (
            r"permission denied \(publickey|permission denied",
            "the SSH server refused the private key: add its public key to the repository",
        ),
        (
            r"authentication failed|returned error: 40[13]|invalid username or password",
            "the server rejected the username/password (token) from the Secret",
        ),
        (
            r"could not read (username|password)",
            "the server asks for a username/password (token) and none was given",
        ),
        (
            r"ssl certificate problem|certificate verify failed|"
            r"server certificate verification failed|unable to get local issuer",
            "the server's TLS certificate is not trusted",
        ),
    ]
    for pattern, explanation in auth_rules:
        if re.search(pattern, text):
            return GitAuthError, explanation
    if re.search(r"remote branch .* not found|couldn't find remote ref", text):
        return GitNotFoundError, "the branch does not exist in the repository"
    if re.search(
        r"does not appear to be a git repository|repository .*not found|"
        r"returned error: 404|no such repository",
        text,
    ):
        return (
            GitNotFoundError,
            "the repository does not exist (or these credentials cannot see it)",
        )
    if re.search(
        r"could not resolve|connection refused|timed out|no route to host|"
        r"network is unreachable|failed to connect|connection reset|connection closed|"
        r"did not complete in|operation too slow|kex_exchange_identification|"
        r"returned error: 5\d\d|broken pipe",
        text,
    ):
        return GitUnreachableError, "the git server could not be reached"
    return GitOperationError, "git failed"


# ssh's host-key banner and hints name temporary files; the classified message says it all
_BOILERPLATE = (
    "Please make sure",
    "and the repository exists",
    "@",
    "IT IS POSSIBLE",
    "Someone could be",
    "It is also possible",
    "The fingerprint for",
    "Please contact",
    "Add correct host key",
    "Offending",
    "Host key for",
)


def failure_detail(text: str, secrets: tuple[str, ...]) -> str:
    """The informative part of git's output: no boilerplate, one line, bounded length.

    Redacts before truncating, so a cut can never leave half a secret behind.
    """
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith(_BOILERPLATE)
    ]
    joined = redact(" | ".join(lines), secrets)
    return joined if len(joined) <= _MAX_DETAIL else joined[: _MAX_DETAIL - 3] + "..."


def git_failure(
    operation: str, shown_url: str, branch: str, output: str, secrets: tuple[str, ...]
) -> PromotionError:
    """The typed, redacted error for a failed git run (`operation` says what we were doing)."""
    kind, explanation = classify_git_failure(output)
    message = f"{explanation} ({operation} {shown_url}, branch {branch})"
    detail = failure_detail(output, secrets)
    if detail:
        message += f": {detail}"
    return kind(redact(message, secrets))
