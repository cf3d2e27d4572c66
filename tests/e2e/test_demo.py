"""README's demo command works: its own control plane, registry, git remote, real Argo CD
(syncing onto kwok nodes) and operator, and shows the whole loop from CI to prod."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_the_loop_on_argocd_then_refuses_an_untested_version(
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
        timeout=420,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    released = "v20250902-c0ffee1"
    # CI's release reaches dev through Argo CD: Synced, Healthy, the Environment LIVE on it
    dev_synced = out.split("CI pushes", 1)[1].split("promote v20250902", 1)[0]
    assert re.search(r"tvhub-dev\s+Synced\s+Healthy", dev_synced), dev_synced
    assert re.search(rf"tvhub-dev\s+{released}\s+{released}\s+Healthy", dev_synced), dev_synced
    lines = [
        line.split(":", 1)[1].split()[0]
        for line in out.splitlines()
        if line.startswith(f"   tvhub-prod-{released}:")
    ]
    # every step shows, in order (Verifying repeats while the soak runs), then Deployed
    phases = [p for i, p in enumerate(lines) if i == 0 or lines[i - 1] != p]
    assert phases == ["Pending", "Verifying", "Promoting", "Succeeded", "Deployed=True"], lines
    assert f"newTag: {released}" in out
    assert "Promotion-UID:" in out
    # Argo CD synced prod from the operator's commit: prod LIVE = the new version, Healthy
    prod_synced = out.split("Argo CD syncs it", 1)[1].split("a version never run", 1)[0]
    assert re.search(r"tvhub-prod\s+Synced\s+Healthy", prod_synced), prod_synced
    assert re.search(rf"tvhub-prod\s+{released}\s+{released}\s+Healthy", prod_synced), prod_synced
    untested = [
        line for line in out.splitlines() if line.startswith("   tvhub-prod-v20250903-0badc0d:")
    ]
    assert "Verifying" in untested[1] and "does not run v20250903-0badc0d" in untested[1]
    assert "Failed" in untested[-1] and "timed out after 20s" in untested[-1]
