"""Shared helpers for the workflow tests: scratch copies of the workflow and timed snakemake calls.

Workflow tests never write into the repository's results/: each copies Snakefile, config/ and
workflow/ (without the package sources, which are installed) into a temporary folder and runs
snakemake there, always through `run_snakemake` (subprocess with a timeout).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
SNAKEMAKE = str(VENV_BIN / "snakemake")

if str(TESTS) not in sys.path:  # test helpers such as tests/cifar_server.py
    sys.path.insert(0, str(TESTS))


def workflow_env(**extra: str) -> dict[str, str]:
    """Environment for snakemake subprocesses: the venv first on PATH, single-threaded BLAS."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def copy_workflow(dest: Path) -> Path:
    """Copy Snakefile, config/ and workflow/ (minus package sources) into `dest`; return it."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    shutil.copytree(REPO / "config", dest / "config", dirs_exist_ok=True)
    shutil.copytree(REPO / "envs", dest / "envs", dirs_exist_ok=True)
    shutil.copytree(
        REPO / "workflow",
        dest / "workflow",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("src", "__pycache__", "*.egg-info"),
    )
    return dest


def write_overlay(path: Path, overlay: dict[str, Any]) -> Path:
    """Write a config overlay (merged over config/config.yaml by snakemake) as YAML."""
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    return path


def run_snakemake(
    workdir: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `snakemake ARGS` in `workdir` with a hard timeout; return the completed process."""
    cmd = [SNAKEMAKE, *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env or workflow_env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def merge_config(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay merged into base the way snakemake merges config files (nested mappings key by key)."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge_config(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load_config(*overlays: str | dict[str, Any]) -> dict[str, Any]:
    """config/config.yaml overlaid by config files (names under config/) or dicts, validated against the
    schema with its defaults filled in, exactly as the Snakefile does before planning."""
    from snakemake.utils import validate

    with open(REPO / "config" / "config.yaml", encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    for overlay in overlays:
        if isinstance(overlay, str):
            with open(REPO / "config" / overlay, encoding="utf-8") as fh:
                overlay = yaml.safe_load(fh)
        merge_config(config, overlay)
    validate(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def only_experiments(*names: str) -> dict[str, Any]:
    """Overlay fragment that enables exactly the named experiments."""
    with open(REPO / "config" / "config.yaml", encoding="utf-8") as fh:
        all_names = list(yaml.safe_load(fh)["experiments"])
    return {"experiments": {n: {"enabled": n in names} for n in all_names}}


@pytest.fixture
def workflow_copy(tmp_path: Path) -> Path:
    """A fresh scratch copy of the workflow to run snakemake in."""
    return copy_workflow(tmp_path / "wf")
