"""Where the time of a small-β (C2) solve goes: ADMM, then the active-set polish of one class, counted.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_small_beta.py --k 16 --ratio 0.01 --admm 100 --cls 0
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_small_beta.py --k 16 --ratio 0.03 --whole
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_small_beta.py --k full --ratio 0.01 --cls 0 --path

The first form runs `--admm` ADMM iterations on one class of the digits instance (1 000 standardised
images, one-hot, P = 256), then the active-set polish from that point with a trace, and prints the
rounds, rows added and released, the final number of blocks and the dimension of their faces (and the
largest total face dimension met), how many rounds reached blocking rows along the bent path (and how many
rows), how many of the other rounds took the full Newton step or backtracked, and how many Newton steps
went through the Woodbury form (`newton_low_rank`). The
second profiles a whole `solve_c2_fast` (all classes) with cProfile and prints the top functions. The
third solves class `--cls` alone along the benchmark's path (0.3 down to `--ratio`, warm-started as in
`solve_path`) and prints, for every polish on the way, its rounds, rows added and released, the blocks
entering at each pricing, and the largest total face dimension.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from instances import digits_instance  # noqa: E402

import convexbn.solver.polish as polish_mod  # noqa: E402
from convexbn.solver import active_set_polish, beta_max, solve_c2_fast, solve_path  # noqa: E402


def count_line_searches() -> dict[str, int]:
    """Wrap the polish's two searches to count rounds by outcome: bent path reached rows, full step, backtracked."""
    counts = {"bent_rows_rounds": 0, "bent_rows": 0, "full_step": 0, "backtracked": 0, "low_rank_steps": 0}
    bent, inner = polish_mod.bent_search, polish_mod._line_search
    low = getattr(polish_mod, "newton_low_rank", None)  # absent from polishes older than the Woodbury step

    if low is not None:

        def counted_low(*args):  # type: ignore[no-untyped-def]
            """The Woodbury Newton solve, counted."""
            counts["low_rank_steps"] += 1
            return low(*args)

        polish_mod.newton_low_rank = counted_low

    def counted_bent(prob, st, ns, alpha, hit, *rest):  # type: ignore[no-untyped-def]
        """The bent-path search, counted: rounds in which it reached rows, and the rows that joined."""
        before = sum(len(st.act[b]) for b in st.blocks)
        out = bent(prob, st, ns, alpha, hit, *rest)
        counts["bent_rows_rounds"] += bool(out)
        counts["bent_rows"] += sum(len(st.act[b]) for b in st.blocks) - before
        return out

    def counted(prob, st, ns, alpha):  # type: ignore[no-untyped-def]
        """The truncated line search, counted."""
        out = inner(prob, st, ns, alpha)
        counts["full_step" if out[0] == 1.0 else "backtracked"] += 1
        return out

    polish_mod.bent_search = counted_bent
    polish_mod._line_search = counted
    return counts


def polish_counts(k: int | None, ratio: float, admm: int, cls: int) -> dict[str, float]:
    """ADMM for `admm` iterations on class `cls`, then the traced polish: times and counts."""
    U, Y, M = digits_instance(k)
    beta = ratio * beta_max(U, Y, M)
    t = time.perf_counter()
    rough = solve_c2_fast(U, Y[:, cls : cls + 1], beta, M, max_iter=admm, polish=False)
    t_admm = time.perf_counter() - t
    W = np.stack([rough.u[..., 0], rough.up[..., 0]], 0).transpose(2, 0, 1)
    trace: list = []
    steps = count_line_searches()
    t = time.perf_counter()
    res = active_set_polish(U, M, Y[:, cls], beta, W, mu0=rough.extra["multipliers"][..., 0], trace=trace)
    t_polish = time.perf_counter() - t
    rounds = [x for x in trace if isinstance(x[0], float)]
    return {
        "q": U.shape[1],
        "admm_iterations": admm,
        "admm_seconds": t_admm,
        "polish_seconds": t_polish,
        "certified": res is not None,
        "rounds": len(rounds),
        "rows_added": sum(1 for x in trace if x[0] == "add"),
        "rows_released": sum(1 for x in trace if x[0] == "release"),
        "final_blocks": rounds[-1][2] if rounds else 0,
        "final_face_dimension": rounds[-1][3] if rounds else 0,
        "largest_face_dimension": max((r[3] for r in rounds), default=0),
        **steps,
    }


def path_counts(k: int | None, ratio: float, cls: int) -> list[dict[str, float]]:
    """Class `cls` alone along the path 0.3 → `ratio` (the benchmark's ratios): per polish, rounds and rows."""
    import convexbn.solver.admm as admm_mod

    U, Y, M = digits_instance(k)
    bm = beta_max(U, Y, M)
    ratios = [r for r in (0.3, 0.1, 0.03, 0.01, 0.003) if r >= ratio]
    out: list[dict[str, float]] = []
    inner = admm_mod.active_set_polish

    def traced(*args, **kw):  # type: ignore[no-untyped-def]
        """The polish with a trace, counted."""
        trace: list = []
        t = time.perf_counter()
        res = inner(*args, **kw, trace=trace)
        rounds = [x for x in trace if isinstance(x[0], float)]
        out.append(
            {
                "ratio": round(args[3] / bm, 6),
                "certified": res is not None,
                "polish_seconds": time.perf_counter() - t,
                "rounds": len(rounds),
                "rows_added": sum(1 for x in trace if x[0] == "add"),
                "rows_released": sum(1 for x in trace if x[0] == "release"),
                "entering": [x[2] for x in trace if x[0] == "price"],
                "final_blocks": rounds[-1][2] if rounds else 0,
                "largest_face_dimension": max((r[3] for r in rounds), default=0),
            }
        )
        return res

    admm_mod.active_set_polish = traced
    solve_path(U, Y[:, cls : cls + 1], [r * bm for r in ratios], M, tol=1e-6, bmax=bm)
    return out


def main() -> int:
    """Parse the options and print the counts or the profile."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", default="16", help="truncation k, or 'full'")
    ap.add_argument("--ratio", type=float, default=0.01, help="β / β_max")
    ap.add_argument("--admm", type=int, default=100, help="ADMM iterations before the polish")
    ap.add_argument("--cls", type=int, default=0, help="class to polish")
    ap.add_argument("--whole", action="store_true", help="cProfile a whole solve instead")
    ap.add_argument("--path", action="store_true", help="count every polish of class --cls along the path to --ratio")
    ap.add_argument("--max-seconds", type=float, default=300.0)
    args = ap.parse_args()
    k = None if args.k == "full" else int(args.k)
    if args.path:
        for row in path_counts(k, args.ratio, args.cls):
            print(row)
        return 0
    if not args.whole:
        print(polish_counts(k, args.ratio, args.admm, args.cls))
        return 0
    U, Y, M = digits_instance(k)
    beta = args.ratio * beta_max(U, Y, M)
    prof = cProfile.Profile()
    prof.enable()
    sol = solve_c2_fast(U, Y, beta, M, tol=1e-6, max_seconds=args.max_seconds)
    prof.disable()
    print(
        f"status {sol.status} gap {sol.gap:.2e} seconds {sol.seconds:.1f} polish {sol.extra['polish_seconds']:.1f} "
        f"ADMM iterations {sol.iterations} neurons {sol.neurons}"
    )
    pstats.Stats(prof).sort_stats("cumulative").print_stats(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
