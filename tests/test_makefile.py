"""The Makefile installs honestly: the torch build is selectable and system packages are never installed unasked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run make in the repository root with no terminal on stdin."""
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_torch_comes_from_the_chosen_index_with_the_pinned_version() -> None:
    """TORCH_INDEX becomes pip's index for the torch install; without it pip's own configuration decides."""
    pin = next(ln for ln in (REPO / "requirements.txt").read_text().splitlines() if ln.startswith("torch=="))
    chosen = make("-n", "-B", "venv", "TORCH_INDEX=https://example.invalid/whl/cpu").stdout
    torch_line = next(ln for ln in chosen.splitlines() if pin in ln)
    assert "--index-url https://example.invalid/whl/cpu" in torch_line
    default = make("-n", "-B", "venv").stdout
    assert "--index-url" not in default and pin in default
    assert "requirements-test.txt" not in default  # the runtime install leaves the test tools out
    assert "requirements-test.txt" in make("-n", "-B", "venv-test").stdout


def test_missing_fashion_mnist_without_a_terminal_prints_the_command_and_installs_nothing(tmp_path: Path) -> None:
    """No TTY: the recipe names the apt-get command, exits 0 and never calls apt-get or sudo."""
    calls = tmp_path / "calls"
    for tool in ("apt-get", "sudo"):
        fake = tmp_path / tool
        fake.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    proc = make("fashion-mnist", f"FMNIST={tmp_path / 'absent'}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "apt-get install dataset-fashion-mnist" in proc.stdout and "continuing without it" in proc.stdout
    assert not calls.exists(), calls.read_text()


def test_reproduce_passes_the_report_targets_with_a_configfile_in_smk_args(tmp_path: Path) -> None:
    """SMK_ARGS="--configfile X" and the report's figure targets reach snakemake as files and targets.

    A stand-in snakemake records its arguments and, like the real one, fails when a --configfile
    value is not a file (it takes every word after the option).
    """
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()
    log = tmp_path / "calls"
    fake = venv / "bin" / "snakemake"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$*" in *--list-rules*) echo figures_zz_makefile_test; exit 0;; esac\n'
        'seen=0; for a in "$@"; do\n'
        '  if [ "$seen" = 1 ]; then case "$a" in -*) seen=0;;\n'
        '    *) [ -f "$a" ] || { echo "no $a" >&2; exit 7; };; esac; fi\n'
        '  [ "$a" = --configfile ] && seen=1\n'
        "done\nexit 0\n"
    )
    fake.chmod(0o755)
    table = REPO / "results" / "tables" / "zz_makefile_test.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text("x\n")
    try:
        proc = make(
            "reproduce", f"VENV={venv}", f"FMNIST={tmp_path / 'absent'}", "SMK_ARGS=--configfile config/ci.yaml"
        )
    finally:
        table.unlink()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = next(line for line in log.read_text().splitlines() if "--report" in line)
    assert report.startswith("figures_zz_makefile_test --report report.html --configfile config/ci.yaml"), report
