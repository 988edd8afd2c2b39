"""Benchmark certified (C2) paths and single solves of the fast solver, with the pass-cost bound and CLARABEL.

One command per case list, e.g.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/path_bench.py --cases digits16 digitsfull \
        --out benchmarks/results_path.csv

Cases: digits16/digitsfull (scikit-learn digits, 1 000 standardised images, one-hot, C = 10, P = 256,
k = 16 or full whitening), fashion16/64/256/full (Fashion-MNIST, n = 10 000, same set-up, gap 1e-4),
E1000/E2000 (Gaussian data n × 50, 100 sampled patterns, regression / ±1 / one-hot targets, two β,
`solve_c2_fast` against CVXPY + CLARABEL in the same run). `--workers 1 2` runs each path case twice, its
classes in one and then in two processes (column `workers`). Each path row reports the point's time, its
certificate, and "time / one pass": the point's seconds over the measured time of one forward + adjoint
pass of the (C2) operator on the same instance (float64, one thread). The 1-minute load average at the
start of each case is recorded, since the machine is shared.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from instances import digits_instance, fashion_instance, random_instance  # noqa: E402

from convexbn.io import atomic_write_bytes  # noqa: E402
from convexbn.solver import C2Operator, beta_max, solve_c2_fast, solve_path  # noqa: E402

RATIOS = [0.3, 0.1, 0.03, 0.01, 0.003]
COLUMNS = [
    "case",
    "n",
    "q",
    "P",
    "C",
    "labels",
    "ratio",
    "beta",
    "beta_max",
    "solver",
    "seconds",
    "status",
    "gap",
    "cone_violation",
    "objective",
    "neurons",
    "pass_seconds",
    "time_per_pass",
    "baseline_seconds",
    "ratio_vs_baseline",
    "rel_obj_diff",
    "load1",
    "workers",
]


def pass_seconds(Ut: np.ndarray, Y: np.ndarray, masks: np.ndarray, repeats: int = 3) -> float:
    """Best time of one forward (U'W per block, fit) + adjoint (U'ᵀ per block) pass of (C2), float64, one thread."""
    op = C2Operator(Ut, masks, Y, 1.0, torch.float64, torch.device("cpu"))
    W = torch.randn(op.q, 2, op.P, op.C, dtype=torch.float64)
    best = float("inf")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            f = op.fit(op.Z(W)) - op.Y
            op.adj(op.sig * op.M * f[:, None, None, :])
            best = min(best, time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)
    return best


def path_rows(
    case: str, Ut: np.ndarray, Y: np.ndarray, masks: np.ndarray, tol: float, max_seconds: float, workers: int = 1
) -> list[dict[str, Any]]:
    """One row per point of the RATIOS path (β = ratio · β_max), solved by `solve_path` with `workers` processes."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    bmax = beta_max(Ut, Y, masks)
    t_bmax = time.perf_counter() - t0
    ps = pass_seconds(Ut, Y, masks)
    rows = []
    for r, sol in zip(
        RATIOS,
        solve_path(
            Ut,
            Y,
            [r * bmax for r in RATIOS],
            masks,
            tol=tol,
            max_seconds=max_seconds,
            bmax=bmax,
            verbose=True,
            workers=workers,
        ),
    ):
        rows.append(
            {
                "case": case,
                "n": Ut.shape[0],
                "q": Ut.shape[1],
                "P": masks.shape[1],
                "C": Y.shape[1],
                "labels": "onehot",
                "ratio": r,
                "beta": r * bmax,
                "beta_max": bmax,
                "solver": "fast path",
                "seconds": sol.seconds,
                "status": sol.status,
                "gap": sol.gap,
                "cone_violation": sol.cone_violation,
                "objective": sol.objective,
                "neurons": sol.neurons,
                "pass_seconds": ps,
                "time_per_pass": sol.seconds / ps,
                "load1": load,
                "workers": workers,
            }
        )
    rows.append(
        {
            "case": case,
            "n": Ut.shape[0],
            "q": Ut.shape[1],
            "P": masks.shape[1],
            "C": Y.shape[1],
            "labels": "onehot",
            "ratio": "total",
            "beta_max": bmax,
            "solver": "fast path",
            "seconds": t_bmax + sum(r["seconds"] for r in rows),
            "status": "optimal" if all(r["status"] == "optimal" for r in rows) else "not all certified",
            "gap": max(r["gap"] for r in rows),
            "pass_seconds": ps,
            "time_per_pass": (t_bmax + sum(r["seconds"] for r in rows)) / ps,
            "load1": load,
            "workers": workers,
        }
    )
    return rows


def clarabel_seconds(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray) -> tuple[float, float | None, str]:
    """(seconds, objective, status) of CVXPY + CLARABEL on (C2), construction and compilation included."""
    from convexbn.programs import solve_c2

    t = time.perf_counter()
    u, up, rec = solve_c2(Ut, Y, beta, masks, solver="CLARABEL")
    return time.perf_counter() - t, rec.objective, rec.status


LABEL_SEEDS = {"regression": 101, "pm1": 102, "onehot": 103}


def unseen_rows(n: int, baseline: bool, kinds: list[str]) -> list[dict[str, Any]]:
    """Fast solve vs CLARABEL on Gaussian n × 50 instances, the given label kinds, β = 1 and 0.1·β_max."""
    rows = []
    for labels in kinds:
        seed = LABEL_SEEDS[labels]
        Ut, Y, masks = random_instance(n, 50, 100, labels, seed)
        Y2 = Y if Y.ndim == 2 else Y[:, None]
        bmax = beta_max(Ut, Y2, masks)
        for beta in (1.0, 0.1 * bmax):
            load = os.getloadavg()[0]
            t = time.perf_counter()
            sol = solve_c2_fast(Ut, Y2, beta, masks, tol=1e-6)
            sec = time.perf_counter() - t
            row = {
                "case": f"E{n}",
                "n": n,
                "q": Ut.shape[1],
                "P": masks.shape[1],
                "C": Y2.shape[1],
                "labels": labels,
                "ratio": beta / bmax,
                "beta": beta,
                "beta_max": bmax,
                "solver": "fast",
                "seconds": sec,
                "status": sol.status,
                "gap": sol.gap,
                "cone_violation": sol.cone_violation,
                "objective": sol.objective,
                "neurons": sol.neurons,
                "load1": load,
            }
            if baseline:
                bs, bobj, bstat = clarabel_seconds(Ut, Y2, beta, masks)
                row.update(
                    baseline_seconds=bs,
                    ratio_vs_baseline=bs / sec,
                    rel_obj_diff=None if bobj is None else abs(bobj - sol.objective) / abs(bobj),
                )
                row["status"] = f"{sol.status} (CLARABEL {bstat})"
            print(
                {k: row.get(k) for k in ("case", "labels", "beta", "seconds", "baseline_seconds", "status")}, flush=True
            )
            rows.append(row)
    return rows


def run_case(case: str, max_seconds: float, baseline: bool, kinds: list[str], workers: int = 1) -> list[dict[str, Any]]:
    """Rows of one named case (path cases with `workers` processes for the classes)."""
    if case.startswith("digits"):
        k = None if case == "digitsfull" else int(case[len("digits") :])
        return path_rows(case, *digits_instance(k), tol=1e-6, max_seconds=max_seconds, workers=workers)
    if case.startswith("fashion"):
        k = None if case == "fashionfull" else int(case[len("fashion") :])
        return path_rows(case, *fashion_instance(k), tol=1e-4, max_seconds=max_seconds, workers=workers)
    if case in ("E1000", "E2000"):
        return unseen_rows(int(case[1:]), baseline, kinds)
    raise SystemExit(
        f"unknown case {case!r}; choose digits16, digitsfull, fashion16, fashion64, fashion256, "
        "fashionfull, E1000 or E2000"
    )


def write_csv(rows: list[dict[str, Any]], out: Path) -> None:
    """Append-free atomic write of all rows."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in COLUMNS})
    atomic_write_bytes(out, buf.getvalue().encode())


def main(argv: list[str] | None = None) -> int:
    """Run the cases, print each row, write the CSV after every case (a killed run keeps what it measured)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["digits16", "digitsfull", "E1000"])
    ap.add_argument("--max-seconds", type=float, default=300.0, help="budget per path point")
    ap.add_argument("--no-baseline", action="store_true", help="skip CLARABEL in the E cases")
    ap.add_argument(
        "--labels", nargs="+", default=list(LABEL_SEEDS), choices=list(LABEL_SEEDS), help="label kinds of the E cases"
    )
    ap.add_argument(
        "--workers",
        nargs="+",
        type=int,
        default=[1],
        help="processes for the classes of the path cases; each value is one run of the case, in the given order",
    )
    ap.add_argument("--out", default="benchmarks/results_path.csv")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for case in args.cases:
        for w in args.workers if not case.startswith("E") else [1]:
            rows += run_case(case, args.max_seconds, not args.no_baseline, args.labels, w)
            write_csv(rows, Path(args.out))
        for r in rows[-8:]:
            print(
                {k: r.get(k) for k in ("case", "ratio", "seconds", "status", "gap", "neurons", "time_per_pass")},
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
