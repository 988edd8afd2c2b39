"""End-to-end workflow runs (slow): the CI config through every stage and the report, figure-only
regeneration, kill/resume of a baseline training with identical numbers, the lock refusing a
concurrent run, and a solver failure that --keep-going survives.

Each test runs snakemake in its own scratch copy of the workflow (never the repository's results/),
every call with a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import SNAKEMAKE, copy_workflow, only_experiments, run_snakemake, workflow_env, write_overlay

pytestmark = pytest.mark.slow

CI = ("--configfile", "config/ci.yaml")


def planned_rules(stdout: str) -> dict[str, int]:
    """{rule: count} from the 'Job stats' table of a dry run."""
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", stdout, re.S)
    if not match:
        return {}
    return {name: int(count) for name, count in (line.split() for line in match.group(1).splitlines())}


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The CI config run once end to end (all experiments) with --keep-going."""
    wf = copy_workflow(tmp_path_factory.mktemp("ci") / "wf")
    proc = run_snakemake(wf, "--cores", "2", "--keep-going", *CI, timeout=1800)
    return wf, proc


def test_ci_config_runs_every_stage(ci_run: tuple[Path, Any]) -> None:
    """All experiments finish: tables, figures, job JSONs with provenance; nothing left to do."""
    wf, proc = ci_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    again = run_snakemake(wf, "-n", "--cores", "2", *CI, timeout=300, check=True)
    assert "Nothing to be done" in again.stdout + again.stderr
    tables = sorted(p.stem for p in (wf / "results" / "tables").glob("*.csv"))
    # real-data experiments get one table per dataset (config/ci.yaml: digits; main comparison also cifar10)
    assert tables == sorted(
        [
            "equivalence",
            "closed_form",
            "whitening_invariance",
            "implicit_bias_digits",
            "truncation_digits",
            "main_comparison_digits",
            "main_comparison_cifar10",
            "variants",
        ]
    )
    for ext in ("pdf", "png", "md", "tex"):
        assert list((wf / "figures").glob(f"*.{ext}")), f"no .{ext} under figures/"
    for path in (wf / "results").glob("*/jobs/*.json"):
        doc = json.loads(path.read_text())
        assert {"status", "provenance"} <= set(doc), path
        assert doc["provenance"]["versions"]["convexbn"]
    for stage in ("fetch", "prepare", "whiten", "aggregate", "figures"):
        assert list((wf / "results" / "benchmarks" / stage).glob("*.tsv")), f"no benchmark for {stage}"


def test_generated_cifar_is_marked_synthetic(ci_run: tuple[Path, Any]) -> None:
    """Rows made from the generated CIFAR-10 archive say synthetic; digits rows do not."""
    wf, _ = ci_run
    df = pd.concat(
        [pd.read_csv(wf / "results" / "tables" / f"main_comparison_{ds}.csv") for ds in ("digits", "cifar10")]
    )
    summary = df[df["record"] == "summary"]
    assert summary[summary["dataset"] == "cifar10"]["synthetic"].astype(bool).all()
    assert not summary[summary["dataset"] == "digits"]["synthetic"].astype(bool).any()
    assert (wf / "results" / "raw" / "synthetic" / "cifar10.tar.gz").is_file()


def test_report_after_the_run(ci_run: tuple[Path, Any]) -> None:
    """`snakemake --report` writes one self-contained HTML file with every figure."""
    wf, _ = ci_run
    proc = run_snakemake(wf, "--report", "report.html", *CI, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (wf / "report.html").read_text(errors="replace")
    assert len(html) > 100_000
    for pdf in (wf / "figures").glob("*.pdf"):
        assert pdf.stem in html, f"{pdf.name} missing from the report"


def test_adding_one_k_plans_only_the_new_job(ci_run: tuple[Path, Any], tmp_path: Path) -> None:
    """Jobs receive only their own settings: one more k in truncation.ks plans that one job, its table and
    its figures, and the scoreboard and RESULTS.md that read the table; nothing else (no other job's parameters
    changed)."""
    wf, _ = ci_run
    overlay = write_overlay(tmp_path / "k.yaml", {"experiments": {"truncation": {"ks": [4, "full", 16]}}})
    plan = run_snakemake(wf, "-n", "--cores", "2", *CI, str(overlay), timeout=300, check=True)
    assert planned_rules(plan.stdout) == {
        "run_job": 1,
        "aggregate": 1,
        "figures_truncation_digits": 1,
        "claims_scoreboard": 1,
        "results_md": 1,
        "all": 1,
    }, plan.stdout[-3000:]
    assert "results/truncation/jobs/k16_digits.json" in plan.stdout


def test_adding_one_k_to_the_main_comparison_plans_only_its_jobs(ci_run: tuple[Path, Any], tmp_path: Path) -> None:
    """The truncated convex model runs one job per (dataset, seed, k) and per P: one more k plans those jobs and
    the tables, figures, scoreboard and RESULTS.md that read them; no existing job reruns."""
    wf, _ = ci_run
    overlay = write_overlay(tmp_path / "k.yaml", {"experiments": {"main_comparison": {"ks": [8, 4]}}})
    plan = run_snakemake(wf, "-n", "--cores", "2", *CI, str(overlay), timeout=300, check=True)
    rules = planned_rules(plan.stdout)
    assert rules.pop("run_job") == 4 and rules.pop("aggregate") == 2, plan.stdout[-3000:]  # {digits, cifar10} × {P}
    assert rules == {
        "figures_main_comparison_digits": 1,
        "figures_main_comparison_cifar10": 1,
        "claims_scoreboard": 1,
        "results_md": 1,
        "all": 1,
    }, plan.stdout[-3000:]
    for stem in ("convex_truncated_k4", "convex_P16_k4"):
        assert f"results/main_comparison/jobs/{stem}_digits_s0.json" in plan.stdout


def test_figure_only_regeneration(ci_run: tuple[Path, Any], tmp_path: Path) -> None:
    """Restyling an experiment through its plot settings reruns only its figure rule, nothing upstream,
    and the figure changes."""
    wf, _ = ci_run
    overlay = write_overlay(
        tmp_path / "plot.yaml", {"experiments": {"closed_form": {"plot": {"rc": {"lines.linewidth": 4.0}}}}}
    )
    args = ("--cores", "2", *CI, str(overlay))
    plan = run_snakemake(wf, "-n", *args, timeout=300, check=True)
    assert set(planned_rules(plan.stdout)) == {"figures_closed_form", "all"}, plan.stdout[-3000:]
    table = wf / "results" / "tables" / "closed_form.csv"
    png = wf / "figures" / "closed_form_objective_vs_beta.png"
    table_mtime, png_before = table.stat().st_mtime_ns, png.read_bytes()
    run_snakemake(wf, *args, timeout=600, check=True)
    assert table.stat().st_mtime_ns == table_mtime
    assert png.read_bytes() != png_before  # thicker lines: the restyle reached the figure
    assert "Nothing to be done" in run_snakemake(wf, "-n", *args, timeout=300, check=True).stdout


# ---------------------------------------------------------------------------------------- kill / resume

JOB = "results/truncation/jobs/sgd_digits.json"
CKPT_DIR = "results/truncation/checkpoints"


def checkpoints(wf: Path) -> list[Path]:
    """Epoch checkpoints written so far by the truncation experiment's baseline."""
    return sorted((wf / CKPT_DIR).glob("*.pt"))


def resume_overlay(path: Path) -> Path:
    """Only the truncation experiment on digits, with an SGD baseline long enough to be killed."""
    overlay = only_experiments("truncation")
    overlay["experiments"]["truncation"].update(
        {
            "datasets": ["digits"],
            "ks": [4],
            "sgd": {
                "width": 32,
                "epochs": [1500],
                "batch_size": 10,
                "beta_per_sample": [0.001],
                "lr_factors": [5.0],
                "momentum": 0.9,
                "dtype": "float32",
            },
        }
    )
    return write_overlay(path, overlay)


def metrics_of(wf: Path) -> dict[str, Any]:
    """Metrics, grid and trace of the SGD job without wall-clock times (the numbers that must not depend on an
    interruption)."""
    doc = json.loads((wf / JOB).read_text())
    untimed = lambda row: {k: v for k, v in row.items() if not k.endswith("seconds")}  # noqa: E731
    return {
        "metrics": untimed(doc["metrics"]),
        "grid": [untimed(r) for r in doc["grid"]],
        "trace": [untimed(r) for r in doc["trace"]],
    }


def test_kill_during_baseline_then_resume_gives_same_numbers(tmp_path: Path) -> None:
    """SIGKILL mid-training; the lock refuses a concurrent run; --unlock + --rerun-incomplete resumes
    from the epoch checkpoint and reproduces the uninterrupted run's numbers exactly."""
    overlay = resume_overlay(tmp_path / "resume.yaml")
    args = (JOB, "--cores", "1", *CI, str(overlay))

    reference = copy_workflow(tmp_path / "reference")
    run_snakemake(reference, *args, timeout=900, check=True)
    expected = metrics_of(reference)

    wf = copy_workflow(tmp_path / "killed")
    run_snakemake(wf, "results/whiten/digits/seed0.npz", "--cores", "1", *CI, str(overlay), timeout=600, check=True)
    proc = subprocess.Popen(
        [SNAKEMAKE, *args],
        cwd=wf,
        env=workflow_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while not checkpoints(wf):  # wait for the first epoch checkpoint (no time bound: poll the run itself)
            assert proc.poll() is None, "the run ended before writing a checkpoint"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGSTOP)  # frozen: the training cannot finish while we test the lock
        assert not (wf / JOB).exists(), "training finished before it could be stopped; make it longer"
        concurrent = run_snakemake(wf, *args, timeout=300)  # a second run while the first holds the lock
        assert concurrent.returncode != 0
        assert "cannot be locked" in concurrent.stdout + concurrent.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert not (wf / JOB).exists() and checkpoints(wf)

    stale = run_snakemake(wf, *args, timeout=300)  # the killed run's lock is still there
    assert stale.returncode != 0 and "--unlock" in stale.stdout + stale.stderr
    run_snakemake(wf, "--unlock", *CI, str(overlay), timeout=300, check=True)
    run_snakemake(wf, *args, "--rerun-incomplete", timeout=900, check=True)
    log = (wf / "results" / "logs" / "truncation" / "sgd_digits.log").read_text()
    doc = json.loads((wf / JOB).read_text())
    assert (
        "resum" in log.lower()
        or doc["metrics"].get("resumed_from") is not None
        or any("resum" in json.dumps(v) for v in doc.values())
    ), "the rerun did not resume from the checkpoint"
    assert metrics_of(wf) == expected


# ---------------------------------------------------------------------------------------- solver failure


def test_solver_failure_is_recorded_and_keep_going_finishes_the_rest(tmp_path: Path) -> None:
    """An unlicensed MOSEK fails the equivalence jobs with the fix in their logs; an iteration cap is
    recorded as a non-optimal solver status; every independent job and table still finishes."""
    wf = copy_workflow(tmp_path / "wf")
    overlay = only_experiments("equivalence", "closed_form", "truncation")
    overlay["experiments"]["equivalence"]["solver"] = "MOSEK"
    overlay["experiments"]["truncation"].update(
        {
            "datasets": ["digits"],
            "ks": [4],
            "convex": {"max_seconds": 0.001, "tol": 1.0e-12},
            "sgd": {
                "width": 8,
                "epochs": [1],
                "batch_size": 100,
                "lr_factors": [1.0],
                "momentum": 0.9,
                "dtype": "float32",
            },
        }
    )
    cfg = write_overlay(tmp_path / "fail.yaml", overlay)
    env = workflow_env(HOME=str(tmp_path), MOSEKLM_LICENSE_FILE=str(tmp_path / "no-such-licence.lic"))
    proc = run_snakemake(wf, "--cores", "2", "--keep-going", *CI, str(cfg), env=env, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Error in rule run_job" in out
    log = (wf / "results" / "logs" / "equivalence" / "convex.log").read_text()
    assert "MOSEK" in log and "licen" in log.lower(), log[-3000:]
    assert not (wf / "results" / "tables" / "equivalence.csv").exists()
    for name in ("closed_form", "truncation_digits"):
        assert (wf / "results" / "tables" / f"{name}.csv").is_file(), f"{name} did not finish:\n{out[-4000:]}"
    df = pd.read_csv(wf / "results" / "tables" / "truncation_digits.csv")
    capped = df[(df["record"] == "summary") & (df["job"] == "k4_digits")]
    assert len(capped) == 1 and capped["status"].iloc[0] != "optimal"
    assert capped["solver_status"].iloc[0] == capped["status"].iloc[0]


# ---------------------------------------------------------------------------------------- offline demo


def test_demo_config_runs_offline_and_marks_everything_synthetic(tmp_path: Path) -> None:
    """config/demo.yaml over config/ci.yaml: the whole DAG on generated CIFAR-10/100 archives, every row synthetic."""
    wf = copy_workflow(tmp_path / "demo")
    demo = ("--configfile", "config/ci.yaml", "config/demo.yaml")
    proc = run_snakemake(wf, "--cores", "2", "--keep-going", *demo, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    for name in ("cifar10", "cifar100"):
        assert (wf / "results" / "raw" / "synthetic" / f"{name}.tar.gz").is_file()
    tables = list((wf / "results" / "tables").glob("*.csv"))
    # 4 synthetic experiments + implicit bias and truncation on cifar10 + main comparison on cifar10 and cifar100
    assert len(tables) == 8
    for table in tables:
        df = pd.read_csv(table)
        assert df["synthetic"].astype(bool).all(), f"{table.name} has rows not marked synthetic"
    assert list((wf / "figures").glob("main_*cifar100*.pdf")), "no CIFAR-100 (synthetic) figure"


# ------------------------------------------------------------------------------- offline CIFAR failure


def test_offline_cifar_failure_leaves_other_datasets_complete(tmp_path: Path) -> None:
    """Without a reachable CIFAR server the fetch fails with the fix in its log, and --keep-going still
    produces the digits table and figures of the same experiment (tables are split per dataset)."""
    from cifar_server import closed_port_url

    wf = copy_workflow(tmp_path / "wf")
    overlay = only_experiments("truncation")
    overlay["data"] = {"cifar10": {"synthetic": None, "archive": None, "url": closed_port_url()}}
    overlay["fetch"] = {"retries": 0, "backoff": 0.1, "timeout": 5, "job_retries": 0}
    overlay["experiments"]["truncation"].update(
        {
            "datasets": ["digits", "cifar10"],
            "ks": [4],
            "convex": {"max_seconds": 5, "tol": 1.0e-4},
            "sgd": {
                "width": 8,
                "epochs": [1],
                "batch_size": 100,
                "lr_factors": [1.0],
                "momentum": 0.9,
                "dtype": "float32",
            },
        }
    )
    cfg = write_overlay(tmp_path / "offline.yaml", overlay)
    proc = run_snakemake(wf, "--cores", "2", "--keep-going", *CI, str(cfg), timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "Error in rule fetch_cifar" in out, out[-3000:]
    logs = "".join(p.read_text() for p in (wf / "results" / "logs").rglob("*.log") if "fetch" in str(p))
    assert "data.cifar10.archive" in logs, logs[-3000:]
    assert not (wf / "results" / "raw" / "cifar10.tar.gz").exists()
    assert (wf / "results" / "tables" / "truncation_digits.csv").is_file(), out[-4000:]
    assert (wf / "figures" / "truncation_accuracy_vs_k_digits.pdf").is_file()
    assert (wf / "figures" / "truncation_table_digits.md").is_file()
    assert not (wf / "results" / "tables" / "truncation_cifar10.csv").exists()
