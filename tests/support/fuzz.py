"""One fuzz budget for every hypothesis fuzz test: small in `make test`, big on demand.

`PROMOTION_FUZZ=deep` selects the deep profile (20,000 examples per test; run it with
`--timeout=0`: a deep test outlasts pytest-timeout's 300 s); `FUZZ_EXAMPLES=N` sets any
other budget. The default keeps the unit tier to seconds.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_PROFILES = {"small": 300, "deep": 20_000}

FUZZ_EXAMPLES = int(
    os.environ.get("FUZZ_EXAMPLES")
    or os.environ.get("OVERLAY_FUZZ_EXAMPLES")
    or _PROFILES[os.environ.get("PROMOTION_FUZZ", "small")]
)

fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""The decorator of a fuzz test (with `@pytest.mark.fuzz` and `@given`)."""
