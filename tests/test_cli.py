"""`convexbn solve | train`: results certified by a forward pass; every bad input → one line, exit 2, no file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convexbn import cli

REQUIRED = (
    "objective",
    "network_objective",
    "relative_gap",
    "solver",
    "status",
    "seconds",
    "arrangements",
    "neurons",
    "iterations",
    "variant",
    "beta",
    "n",
    "d",
    "rank",
    "truncate",
    "provenance",
)


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    """Small npz data sets: scalar, one-hot, high-dimensional, 1-D signals."""
    rng = np.random.default_rng(0)
    files = {
        "scalar": dict(X=rng.standard_normal((12, 3)), y=rng.standard_normal(12)),
        "onehot": dict(X=rng.standard_normal((12, 2)), y=np.eye(3)[rng.integers(0, 3, 12)]),
        "highdim": dict(X=rng.standard_normal((8, 16)), y=rng.standard_normal(8)),
        "signal": dict(X=rng.standard_normal((8, 6)), y=rng.standard_normal(8)),
        "signs": dict(X=rng.standard_normal((8, 6)), y=np.sign(rng.standard_normal(8))),
    }
    out = {}
    for name, arrays in files.items():
        out[name] = tmp_path / f"{name}.npz"
        np.savez(out[name], **arrays)
    return out


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """cli.main in-process → (exit code, stderr)."""
    rc = cli.main(args)
    return rc, capsys.readouterr().err


def assert_one_line_error(rc: int, err: str, out: Path, *needles: str) -> None:
    """Exit 2, exactly one 'convexbn: error:' line (the last), no traceback, no output file."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("convexbn: error:")]
    assert rc == 2, err
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err
    for needle in needles:
        assert needle.lower() in errors[0].lower(), errors[0]
    assert not out.exists()


def test_solve_subprocess(data: dict[str, Path], tmp_path: Path) -> None:
    """`python -m convexbn solve`: objective ≈ network objective, all keys present, solver line logged."""
    out = tmp_path / "res" / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "convexbn",
            "solve",
            "--data",
            str(data["scalar"]),
            "--beta",
            "0.1",
            "--arrangements",
            "40",
            "--seed",
            "3",
            "--solver",
            "CLARABEL",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "solver CLARABEL (CLARABEL requested)" in proc.stderr
    res = json.loads(out.read_text())
    for key in REQUIRED:
        assert key in res, key
    assert res["status"] == "optimal" and res["variant"] == "bn-before-relu"
    assert res["network_objective"] == pytest.approx(res["objective"], rel=1e-6)
    assert res["relative_gap"] < 1e-6 and res["n"] == 12 and res["d"] == 3 and res["rank"] == 3
    assert res["provenance"]["config"]["arrangements"] == 40 and res["provenance"]["seed"] == 3
    assert res["neurons"] >= 1 and res["arrangements"] >= 1 and res["seconds"] > 0


def test_bad_input_subprocess(tmp_path: Path) -> None:
    """A missing data file through the real entry point: exit 2, one line, no output."""
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "convexbn",
            "solve",
            "--data",
            str(tmp_path / "nope.npz"),
            "--beta",
            "0.1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert_one_line_error(proc.returncode, proc.stderr, out, "does not exist", "nope.npz")


@pytest.mark.parametrize(
    "extra,name",
    [
        (["--variant", "closed-form"], "highdim"),
        (["--arrangements", "exact", "--truncate", "2"], "scalar"),
        (["--arrangements", "30", "--loss", "cross_entropy"], "onehot"),
        (["--variant", "bn-after-relu", "--arrangements", "30"], "scalar"),
        (["--variant", "cnn", "--patch-size", "3", "--patch-stride", "2", "--arrangements", "40"], "signal"),
        (["--variant", "bn-after-relu", "--arrangements", "20", "--loss", "hinge"], "signs"),
        (["--variant", "cnn", "--patch-size", "3", "--arrangements", "20", "--loss", "hinge"], "signs"),
    ],
)
def test_solve_variants_in_process(
    extra: list[str], name: str, data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every variant's result is certified by the network's own forward pass."""
    out = tmp_path / "r.json"
    rc, err = run_main(
        ["solve", "--data", str(data[name]), "--beta", "0.1", "--solver", "CLARABEL", "--out", str(out), *extra], capsys
    )
    assert rc == 0, err
    res = json.loads(out.read_text())
    assert res["status"] in ("optimal", "optimal_inaccurate")
    assert res["network_objective"] == pytest.approx(res["objective"], rel=1e-6)
    if "--truncate" in extra:
        assert res["truncate"] == 2 and res["rank"] == 3


def test_train_in_process(data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`convexbn train` writes the final objective, a per-epoch history and provenance."""
    out = tmp_path / "t.json"
    rc, err = run_main(
        [
            "train",
            "--data",
            str(data["scalar"]),
            "--beta",
            "0.1",
            "--width",
            "4",
            "--optimizer",
            "adam",
            "--lr",
            "0.01",
            "--epochs",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, err
    res = json.loads(out.read_text())
    assert np.isfinite(res["final_objective"]) and len(res["history"]) >= 3
    assert res["history"][-1]["objective"] == pytest.approx(res["final_objective"], rel=1e-9)
    assert res["provenance"]["config"]["width"] == 4 and res["device"] == "cpu"


def _write_bad(tmp_path: Path, kind: str) -> Path:
    """Files for the bad-input cases."""
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((10, 2)), rng.standard_normal(10)
    p = tmp_path / f"{kind}.npz"
    if kind == "text":
        p.write_text("this is not numpy\n")
    elif kind == "npy":
        with open(p, "wb") as fh:
            np.save(fh, X)
    elif kind == "no_X":
        np.savez(p, A=X, y=y)
    elif kind == "no_y":
        np.savez(p, X=X)
    elif kind == "rows":
        np.savez(p, X=X, y=y[:7])
    elif kind == "x1d":
        np.savez(p, X=X[:, 0], y=y)
    elif kind == "nan":
        X[3, 1] = np.nan
        np.savez(p, X=X, y=y)
    elif kind == "inf":
        y[2] = np.inf
        np.savez(p, X=X, y=y)
    elif kind == "strings":
        np.savez(p, X=X, y=np.array(["a"] * 10))
    elif kind == "big":
        np.savez(p, X=rng.standard_normal((60, 8)), y=rng.standard_normal(60))
    else:
        np.savez(p, X=X, y=y)
    return p


@pytest.mark.parametrize(
    "kind,args,needles",
    [
        ("missing", None, ["does not exist"]),
        ("text", None, ["not a NumPy .npz"]),
        ("npy", None, ["single array"]),
        ("no_X", None, ["no array 'X'", "numpy.savez"]),
        ("no_y", None, ["no array 'y'"]),
        ("rows", None, ["mismatch", "10 rows", "7"]),
        ("x1d", None, ["(n, d)"]),
        ("nan", None, ["NaN", "X"]),
        ("inf", None, ["infinite", "y"]),
        ("strings", None, ["non-numeric"]),
        ("good", ["--beta", "-0.5"], ["--beta", ">= 0"]),
        ("good", ["--beta", "abc"], ["--beta", "not a number"]),
        ("good", ["--beta", "nan"], ["--beta"]),
        ("good", ["--solver", "GUROBIX"], ["unknown solver", "CLARABEL"]),
        ("good", ["--solver", "MOSEK"], ["licence", "CLARABEL"]),
        ("good", ["--arrangements", "lots"], ["--arrangements", "exact"]),
        ("good", ["--arrangements", "0"], ["--arrangements", ">= 1"]),
        ("big", ["--arrangements", "exact"], ["exact", "--arrangements N"]),
        ("good", ["--variant", "cnn"], ["--patch-size"]),
        ("good", ["--variant", "resnet"], ["--variant", "invalid choice"]),
        ("good", ["--variant", "closed-form"], ["rank"]),
        ("good", ["--loss", "cross_entropy"], ["one-hot"]),
        ("good", ["--truncate", "0"], ["--truncate"]),
        ("good", ["--seed", "-1"], ["--seed", ">= 0"]),
    ],
)
def test_solve_bad_inputs(
    kind: str,
    args: list[str] | None,
    needles: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each bad input: exit code 2, one 'convexbn: error:' line naming the problem, no output file."""
    monkeypatch.delenv("MOSEKLM_LICENSE_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = tmp_path / "missing.npz" if kind == "missing" else _write_bad(tmp_path, kind)
    out = tmp_path / "out" / "r.json"
    argv = ["solve", "--data", str(path), "--out", str(out)]
    argv += args if args else []
    if "--beta" not in argv:
        argv += ["--beta", "0.1"]
    rc, err = run_main(argv, capsys)
    assert_one_line_error(rc, err, out, *needles)


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--width", "0"], ["--width", ">= 1"]),
        (["--width", "3", "--lr", "-1"], ["--lr"]),
        (["--width", "3", "--epochs", "0"], ["--epochs"]),
        (["--width", "3", "--optimizer", "rmsprop"], ["--optimizer"]),
        (["--width", "3", "--beta", "-1"], ["--beta"]),
    ],
)
def test_train_bad_inputs(
    args: list[str], needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`convexbn train` rejects bad options with one line and exit 2."""
    path = _write_bad(tmp_path, "good")
    out = tmp_path / "t.json"
    argv = ["train", "--data", str(path), "--out", str(out), *args]
    if "--beta" not in argv:
        argv += ["--beta", "0.1"]
    rc, err = run_main(argv, capsys)
    assert_one_line_error(rc, err, out, *needles)


def test_train_cuda_unavailable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--device cuda without CUDA is an input error naming the alternative."""
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    out = tmp_path / "t.json"
    rc, err = run_main(
        [
            "train",
            "--data",
            str(_write_bad(tmp_path, "good")),
            "--beta",
            "0.1",
            "--width",
            "2",
            "--device",
            "cuda",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert_one_line_error(rc, err, out, "CUDA", "--device")


def test_missing_subcommand_and_out_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No sub-command, or --out naming a directory, are one-line errors too."""
    rc, err = run_main([], capsys)
    assert rc == 2 and err.strip().startswith("convexbn: error:") and len(err.strip().splitlines()) == 1
    rc, err = run_main(
        ["solve", "--data", str(_write_bad(tmp_path, "good")), "--beta", "0.1", "--out", str(tmp_path)], capsys
    )
    assert rc == 2 and "is a directory" in err


def test_cli_choices_match_the_library() -> None:
    """The CLI lists its choices without importing torch; they must stay those of the library."""
    from convexbn.networks import LOSSES
    from convexbn.training import OPTIMIZERS

    assert cli.LOSS_CHOICES == LOSSES and cli.OPTIMIZERS == OPTIMIZERS
