"""The SLURM profile against a real single-node SLURM cluster on localhost.

`tests/slurm/cluster.sh start` installs Debian's slurmctld/slurmd/munge (+ slurmdbd/MariaDB for
sacct) when missing and starts them; the test runs a small config through
`--workflow-profile workflow/profiles/slurm`, checks the outputs and SLURM's accounting, and stops
the cluster again if it started it. Needs root and apt (Debian/Ubuntu), as in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import TESTS, copy_workflow, only_experiments, run_snakemake, workflow_env, write_overlay

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = TESTS / "slurm" / "cluster.sh"


def cluster(cmd: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run tests/slurm/cluster.sh CMD with a timeout."""
    return subprocess.run(["bash", str(CLUSTER), cmd], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    """A running single-node cluster; stopped afterwards unless it was already running."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("the SLURM test starts system daemons: it needs root and apt-get (Debian), as in CI")
    was_running = shutil.which("sinfo") is not None and cluster("status", 30).returncode == 0
    started = cluster("start", 900)
    assert started.returncode == 0, f"cluster.sh start failed:\n{started.stdout}\n{started.stderr}"
    yield
    if not was_running:
        stopped = cluster("stop", 120)
        assert stopped.returncode == 0, stopped.stderr


def test_cluster_script_is_idempotent(slurm_cluster: None) -> None:
    """A second start is a no-op that reports an idle node: it installs and starts nothing."""
    again = cluster("start", 120)
    assert again.returncode == 0 and "idle" in again.stdout, again.stderr
    assert "already running" in again.stderr, again.stderr
    assert "installing" not in again.stderr and "gave up" not in again.stderr, again.stderr


def test_pipeline_runs_through_the_slurm_profile(slurm_cluster: None, tmp_path: Path) -> None:
    """closed_form at CI size: jobs go through sbatch, outputs appear, sacct shows them COMPLETED."""
    wf = copy_workflow(tmp_path / "wf")
    overlay = write_overlay(tmp_path / "slurm.yaml", only_experiments("closed_form"))
    env = workflow_env(SLURM_PARTITION="debug")
    env.pop("SLURM_ACCOUNT", None)
    t0 = time.time()
    proc = run_snakemake(
        wf,
        "figures",
        "--workflow-profile",
        "workflow/profiles/slurm",
        "--jobs",
        "2",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--configfile",
        "config/ci.yaml",
        str(overlay),
        env=env,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert (wf / "results" / "tables" / "closed_form.csv").is_file()
    assert any((wf / "figures").glob("*.pdf"))
    assert "SLURM run ID" in out or "slurm" in out.lower()
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0 - 5))
    acct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-S", since, "-o", "JobName,State,Partition"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    rows = [r.split("|") for r in acct.stdout.split() if r]
    completed = [r for r in rows if r[1] == "COMPLETED" and r[2] == "debug"]
    assert len(completed) >= 3, acct.stdout
