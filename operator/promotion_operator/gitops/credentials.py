"""Git credentials as the operator holds them: never shown in a repr, a log or a message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SSHAuth:
    """An SSH private key and the known_hosts lines the server's host key must match."""

    private_key: str
    known_hosts: str

    def __repr__(self) -> str:
        return f"SSHAuth(private_key='***', known_hosts={self.known_hosts!r})"


@dataclass(frozen=True)
class HTTPSAuth:
    """A username and password (or token) for HTTP Basic authentication."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"HTTPSAuth(username={self.username!r}, password='***')"


GitAuth = SSHAuth | HTTPSAuth | None


def secrets_of(auth: GitAuth) -> tuple[str, ...]:
    """The values that must never appear in a message, a log or a commit."""
    if isinstance(auth, SSHAuth):
        return (auth.private_key,)
    if isinstance(auth, HTTPSAuth):
        return (auth.password,)
    return ()
