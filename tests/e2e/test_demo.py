"""README's demo command works: its own control plane, registry, git remote and operator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_promotes_then_refuses_an_untested_version(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    checkout = str(pytestconfig.rootpath)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "promotion_sandbox.cli",
            f"--home={tmp_path}",
            f"--repo={checkout}",
            "demo",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [
        line.split(":", 1)[1].split()[0]
        for line in result.stdout.splitlines()
        if line.startswith("   tvhub-prod-v20250819-f3b8541:")
    ]
    # every step shows, in order (Verifying repeats while the soak runs)
    assert [p for i, p in enumerate(lines) if i == 0 or lines[i - 1] != p] == [
        "Pending",
        "Verifying",
        "Promoting",
        "Succeeded",
    ]
    assert "newTag: v20250819-f3b8541" in result.stdout
    assert "Promotion-UID:" in result.stdout
    untested = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("   tvhub-prod-v20250826-0badc0d:")
    ]
    assert "Verifying" in untested[1] and "does not run v20250826-0badc0d" in untested[1]
    assert "Failed" in untested[-1] and "timed out after 20s" in untested[-1]
