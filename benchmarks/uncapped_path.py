"""Re-solve one main-comparison convex path of a finished pipeline run with another time cap per point.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/uncapped_path.py --results results --dataset digits \
        --seed 0 --k 16 --cap 600 --out benchmarks/results_uncapped_digits_k16.csv

It reads the run's prepared data and whitening of that seed (`results/data/<dataset>/seed<s>.npz`,
`results/whiten/<dataset>/seed<s>.npz`) and calls the experiment's own `convex_path`, so the points are
the job's points with only the cap changed: how much time a capped point needs to be certified, and
what its validation and test accuracy are then.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from convexbn.experiments.protocol import convex_path
from convexbn.io import git_revision
from convexbn.whitening import load_whitening

COLUMNS = [
    "commit",
    "dataset",
    "seed",
    "k",
    "P",
    "cap",
    "beta_ratio",
    "status",
    "seconds",
    "gap",
    "val_acc",
    "test_acc",
]


def main() -> None:
    """Solve the path and write one CSV row per point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results", help="the pipeline's results folder")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, required=True, help="truncation k")
    ap.add_argument("--arrangements", type=int, default=64)
    ap.add_argument("--ratios", default="0.1,0.03,0.01,0.003", help="β/β_max, comma-separated")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--cap", type=float, required=True, help="seconds per path point")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    root = Path(a.results)
    with np.load(root / "data" / a.dataset / f"seed{a.seed}.npz", allow_pickle=False) as z:
        data = {key: z[key] for key in z.files}
    wh = load_whitening(str(root / "whiten" / a.dataset / f"seed{a.seed}.npz"))
    p = {
        "seed": a.seed,
        "beta_ratios": [float(r) for r in a.ratios.split(",")],
        "convex": {"tol": a.tol, "max_seconds": a.cap},
        "threads": 1,
        "predictor": "network",
    }
    commit = (git_revision() or "unknown")[:7]
    t0 = time.perf_counter()
    path = convex_path(data, wh, a.k, p, a.arrangements, "cpu")
    with open(a.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for pt in path["points"]:
            gap = "" if pt["solver_gap"] is None else f"{pt['solver_gap']:.2e}"
            w.writerow(
                [commit, a.dataset, a.seed, a.k, pt["P"], a.cap, pt["beta_ratio"], pt["solver_status"]]
                + [f"{pt['seconds']:.1f}", gap, f"{pt['val_acc']:.4f}", f"{pt['test_acc']:.4f}"]
            )
    print(f"{a.out}: path in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
