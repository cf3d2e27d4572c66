"""The operator's seal on what it writes to an Environment's status: an HMAC only it can make.

A tenant with `edit` rights may patch an Environment's status. `healthySince` is the start
of the soak clock, so a forged value would shorten a soak. The operator seals the facts the
soak relies on (which Environment, which version, since when) with a key only it can read;
the soak trusts `healthySince` only under a valid seal, else the clock restarts.
"""

from __future__ import annotations

import hashlib
import hmac

_SCHEME = "v1"


def healthy_since_seal(key: bytes, *, uid: str, live_version: str, healthy_since: str) -> str:
    """The seal of one healthy run: `v1:<hex HMAC-SHA256>` over the Environment's UID (so a
    seal cannot move to another Environment), the version and the start of the run."""
    message = "\n".join(("healthySince", _SCHEME, uid, live_version, healthy_since)).encode()
    return f"{_SCHEME}:{hmac.new(key, message, hashlib.sha256).hexdigest()}"


def is_sealed(
    key: bytes, seal: str | None, *, uid: str, live_version: str | None, healthy_since: str | None
) -> bool:
    """Whether `seal` is the operator's seal of this run (constant-time comparison)."""
    if not seal or not live_version or not healthy_since:
        return False
    expected = healthy_since_seal(
        key, uid=uid, live_version=live_version, healthy_since=healthy_since
    )
    return hmac.compare_digest(seal.encode(), expected.encode())
