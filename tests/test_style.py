"""Style: ruff (lint and format) and snakefmt, configured in pyproject.toml, are clean over the repository.

`make format` applies both formatters; `make lint` runs the same checks as these tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a console tool of this virtual environment in the repository root (missing tool: a clear failure)."""
    exe = BIN / name
    if not exe.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable}; install requirements-test.txt")
    return subprocess.run([str(exe), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def report(proc: subprocess.CompletedProcess[str]) -> str:
    """The tool's output, shortened for an assertion message."""
    text = (proc.stdout + proc.stderr).strip()
    return text if len(text) < 4000 else text[:4000] + "\n..."


def test_ruff_lint_is_clean() -> None:
    proc = run_tool("ruff", "check", "--output-format", "concise", ".")
    assert proc.returncode == 0, report(proc)


def test_ruff_format_is_clean() -> None:
    proc = run_tool("ruff", "format", "--check", ".")
    assert proc.returncode == 0, report(proc)


def test_snakefmt_is_clean() -> None:
    proc = run_tool("snakefmt", "--check", ".")
    assert proc.returncode == 0, report(proc)


def test_style_configuration_is_in_pyproject() -> None:
    """One line length for both formatters, so they never fight over a file."""
    import tomllib

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]
    assert cfg["ruff"]["line-length"] == cfg["snakefmt"]["line_length"]
    assert {"E", "F", "I"} <= set(cfg["ruff"]["lint"]["select"])


def test_the_checks_reject_a_badly_styled_file(tmp_path: Path) -> None:
    """The configured checks do fail: unsorted imports, an unused import and odd spacing are reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\nx = {'a':1}\n")
    config = ("--config", str(REPO / "pyproject.toml"))
    lint = run_tool("ruff", "check", *config, "--output-format", "concise", str(bad))
    assert lint.returncode != 0 and "I001" in lint.stdout and "F401" in lint.stdout
    fmt = run_tool("ruff", "format", *config, "--check", str(bad))
    assert fmt.returncode != 0
    smk = tmp_path / "Snakefile"
    smk.write_text('rule a:\n    output: "x"\n    shell: "touch {output}"\n')
    assert run_tool("snakefmt", "--check", str(smk)).returncode != 0
