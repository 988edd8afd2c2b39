"""The paper's n = 15 toy (its §9 check [1]; draw of tests/test_nonconvex_vs_convex.py) with `fast` and CLARABEL.

    .venv/bin/python benchmarks/toy_solvers.py

All 939 exact arrangement patterns, β = 0.1: prints seconds and optimum per solver (the `fast` solver runs
its working-set mode here because P > 256).
"""

from __future__ import annotations

import time

import numpy as np

from convexbn import programs


def main() -> int:
    """Solve the toy with both solvers and print time and objective."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((15, 3))
    y = rng.standard_normal(15)
    for solver in ("fast", "CLARABEL"):
        t = time.perf_counter()
        res = programs.solve_two_layer(X, y, 0.1, arrangements="exact", solver=solver)
        print(f"{solver:9s} {time.perf_counter() - t:7.2f} s  objective {res.objective:.10f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
