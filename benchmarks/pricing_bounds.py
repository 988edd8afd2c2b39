"""How loose is the plain pricing bound of (C2)? Solve one class exactly, then compare ‖U'ᵀD_iλ‖ with β.

    .venv/bin/python benchmarks/pricing_bounds.py [n k P frac]     # default 10000 100 512 0.1

Prints the solve time, the number of active patterns and, for every inactive pattern, the ratio of the
μ = 0 bound ‖U'ᵀ D_i λ‖ to β at the certified optimum (a ratio ≤ 1 would certify the pattern without cone
multipliers). Instance: `bench_solver.cifar_instance` (planted-teacher labels, class 0), β = frac · max bound.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from bench_solver import cifar_instance

from convexbn.solver import solve_c2_fast


def main(argv: list[str]) -> int:
    """Run the study and print its numbers."""
    n, k, P, frac = (int(argv[0]), int(argv[1]), int(argv[2]), float(argv[3])) if argv else (10000, 100, 512, 0.1)
    U, Y, _, M = cifar_instance(n, k, P, 10)
    y = Y[:, 0]
    beta = frac * float(np.linalg.norm(U.T @ (M * y[:, None]), axis=0).max())
    t = time.perf_counter()
    sol = solve_c2_fast(U, y, beta, M, tol=1e-6, threads=1, working_set=False)
    print(f"dense solve {time.perf_counter() - t:.1f} s, status {sol.status}, gap {sol.gap:.1e}")
    f = (M * (U @ (sol.u[:, :, 0] - sol.up[:, :, 0]).T)).sum(1)
    ratio = np.linalg.norm(U.T @ (M * (y - f)[:, None]), axis=0) / beta
    act = (np.linalg.norm(sol.u[:, :, 0], axis=1) > 0) | (np.linalg.norm(sol.up[:, :, 0], axis=1) > 0)
    r = ratio[~act]
    print(
        f"active patterns {int(act.sum())} of {P}; inactive: {int((r > 1).sum())} of {r.size} have bound > beta, "
        f"ratio min {r.min():.2f} median {np.median(r):.2f} max {r.max():.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
