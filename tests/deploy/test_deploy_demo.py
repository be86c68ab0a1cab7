"""``donjon demo --deploy``: the confidential deploy on this machine, every step timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support import registry as registries

pytestmark = pytest.mark.slow


def test_demo_deploy_runs_every_step_and_verifies_the_package() -> None:
    why = registries.missing()
    if why is not None:
        pytest.skip(f"{why}; scripts/install-system-deps installs it")
    proc = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "demo", "--deploy", "--json"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["ok"] and len(doc["steps"]) == 9
    assert all(step["ok"] for step in doc["steps"])
    assert doc["claims"]["platform"] == "sim"
    assert doc["claims"]["package_sha256"].startswith("sha256:")
    assert doc["page"].startswith("database password from /run/secrets/db: demo-password-")
    assert {"attest_to_secrets_released_s", "keep_start_to_workload_s"} <= set(doc["timings"])
