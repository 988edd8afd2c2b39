"""Time the exact β_max of one class on prepared pipeline data (the cost behind full-whitening jobs).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_beta_max.py \
        --data results/data/fashion_mnist/seed2.npz --whitening results/whiten/fashion_mnist/seed2.npz

Prints the feature shape, the time of the cheap block bounds, the time of the exact β_max (branch and
bound with exact cone projections) and how many blocks needed a projection (bound above the result).
`--csv PATH --label NAME` appends that as a row (label, data, k, q, P, class, seconds, beta_max, projected),
so runs of two versions of the solver (`PYTHONPATH=<other checkout>/workflow/src`) land in one table.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from convexbn.arrangements import sample_arrangements
from convexbn.experiments.datasets import load_prepared
from convexbn.networks import one_hot
from convexbn.solver import beta_max
from convexbn.solver.path import block_bounds
from convexbn.whitening import load_whitening, truncate


def main() -> None:
    """Parse arguments, build the job's features and arrangements, time the bounds and the exact β_max."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="prepared dataset .npz (results/data/...)")
    ap.add_argument("--whitening", required=True, help="its whitening .npz (results/whiten/...)")
    ap.add_argument("--k", type=int, default=None, help="truncation (default: full whitening)")
    ap.add_argument("--arrangements", type=int, default=64)
    ap.add_argument("--seed", type=int, default=2, help="arrangement seed (the job's seed)")
    ap.add_argument("--cls", type=int, default=0, help="class")
    ap.add_argument("--csv", default=None, help="append the measurement to this CSV")
    ap.add_argument("--label", default="", help="name of the solver version in the CSV")
    a = ap.parse_args()
    d = load_prepared(a.data)
    U = truncate(load_whitening(a.whitening), a.k).features(np.asarray(d["X_train"], dtype=np.float64))
    y = one_hot(d["y_train"], int(d["num_classes"]))[:, a.cls]
    masks = sample_arrangements(U, a.arrangements, seed=a.seed).masks
    print(f"features {U.shape}, P = {masks.shape[1]}, class {a.cls}", flush=True)
    t = time.perf_counter()
    ub = block_bounds(U, masks, y)
    print(f"block bounds: {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    b = beta_max(U, y[:, None], masks)
    secs = time.perf_counter() - t
    projected = int((ub > b).sum())
    print(f"exact beta_max {b:.6g}: {secs:.1f} s; blocks projected: {projected}")
    if a.csv:
        new = not Path(a.csv).exists()
        with open(a.csv, "a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(["label", "data", "k", "q", "P", "class", "seconds", "beta_max", "projected"])
            w.writerow(
                [
                    a.label,
                    a.data,
                    a.k or "full",
                    U.shape[1],
                    masks.shape[1],
                    a.cls,
                    f"{secs:.2f}",
                    f"{b:.10g}",
                    projected,
                ]
            )


if __name__ == "__main__":
    main()
