"""``bench.scale`` runs end to end on a tiny workload and prints its last line (never timed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

LAST_LINE = re.compile(r"^scale: 1→2 speed-up \d+\.\d\d; failover \d+\.\d\d s$")


def test_bench_scale_runs_on_a_tiny_workload(kafka_bootstrap: str, postgres_admin_url: str) -> None:
    env = {
        **os.environ,
        "LIFECYCLE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LIFECYCLE_STORE": postgres_admin_url,
    }
    run = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--providers", "150", "--sizes", "1,2"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-3:]
    sizes = [line for line in lines if line.startswith("N=")]
    assert [line.split()[0] for line in sizes] == ["N=1", "N=2"]
    assert all("repeats " in line and "relay failover " in line for line in sizes)
