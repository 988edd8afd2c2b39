"""Benchmark convexbn's fast (C2) solver against CVXPY + Clarabel (and MOSEK when licensed).

One command (`make bench`, or `python benchmarks/bench_solver.py [--quick]`) prints a table of times,
speed-up ratios, certified gaps, cone violations and peak memory, and writes it as CSV
(default benchmarks/results.csv, or benchmarks/results_quick.csv with --quick).

Targets (issue): E1/E2 exact (C2) n = 500 … 5 000, q = 51, P = 100 (≥ 100× CVXPY+Clarabel to gap
≤ 1e-6, violation ≤ 1e-9); G1 gated relaxation n = 5 000, q = 51, P = 200 (≤ 3× a one-thread
GEMM-bound pass count); C1 n = 50 000, k = 100, P = 4 096, 10 classes (gradient ≤ 2× GEMM time,
memory ≤ 8 GB); C2 one β of that model to gap 1e-4 (≤ 25 min on 2 cores). Each ratio is measured
in the same run as its baseline.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from convexbn.arrangements import sample_arrangements
from convexbn.io import atomic_write_bytes
from convexbn.devices import resolve_device
from convexbn.solver import (
    c2_primal,
    choose_threads,
    gated_gradient_time,
    solve_c2_fast,
    solve_gated_fast,
)
from convexbn.conic import mosek_available
from convexbn.whitening import whiten

CASES = ["E", "G1", "C1", "C2", "threads"]
COLUMNS = ["case", "n", "q", "P", "C", "solver", "threads", "seconds", "baseline_seconds", "ratio",
           "objective", "rel_obj_diff", "gap", "cone_violation", "status", "iterations", "peak_rss_gb", "note"]


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (GB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def synthetic(n: int, d: int, P: int, C: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian data whitened to U' (n, d+1), a planted ReLU-network target and sampled patterns."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Wt = rng.standard_normal((d, 8))
    Y = np.maximum(X @ Wt, 0) @ rng.standard_normal((8, C)) + 0.5 * rng.standard_normal((n, C))
    U = whiten(X).features(X)
    arr = sample_arrangements(U, P, seed=seed)
    return U, Y, arr.masks, arr.generators


def default_beta(U: np.ndarray, Y: np.ndarray, masks: np.ndarray, frac: float = 0.1) -> float:
    """β as a fraction of the smallest β for which every block is zero (max_i ‖U'ᵀ D_i y‖)."""
    top = max(float(np.linalg.norm(U.T @ (masks[:, i:i + 1] * Y), axis=0).max()) for i in range(masks.shape[1]))
    return frac * top


def cvxpy_c2(U: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, solver: str) -> tuple[float, float, str]:
    """(seconds incl. construction and compile, objective, status) of (C2) through the project's CVXPY oracle."""
    from convexbn.programs import solve_c2

    t0 = time.perf_counter()
    _, _, rec = solve_c2(U, Y, beta, masks, solver=solver)
    return time.perf_counter() - t0, rec.objective if rec.objective is not None else math.nan, rec.status


def _best_time(step: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall time of `step()` over `repeats` runs (CUDA synchronised)."""
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_seconds(n: int, q: int, width: int, dtype: torch.dtype, threads: int, device: torch.device,
                 repeats: int = 3) -> float:
    """Best time of the two GEMMs of one gradient: (n×q)(q×width) and (q×n)(n×width)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        U = torch.randn(n, q, dtype=dtype, device=device)
        W = torch.randn(q, width, dtype=dtype, device=device)
        return _best_time(lambda: U.T @ (U @ W), repeats, device)
    finally:
        torch.set_num_threads(old)


def gemm_chunked_seconds(n: int, q: int, width: int, dtype: torch.dtype, threads: int, device: torch.device,
                         chunk: int) -> float:
    """The same two GEMMs done chunk by chunk over rows (bounded memory), best of 2."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        U = torch.randn(chunk, q, dtype=dtype, device=device)
        W = torch.randn(q, width, dtype=dtype, device=device)
        acc = torch.zeros(q, width, dtype=dtype, device=device)

        def passes() -> None:
            for _a in range(0, n, chunk):
                acc.addmm_(U.T, U @ W)

        return _best_time(passes, 2, device)
    finally:
        torch.set_num_threads(old)


def row(**kw: object) -> dict:
    """One table row with every column present."""
    out = {c: "" for c in COLUMNS}
    out.update(kw)
    return out


def recorded_baselines(path: str | None) -> dict[int, tuple[float, float]]:
    """n -> (seconds, objective) of the cvxpy+CLARABEL/MOSEK rows of case E in an earlier results CSV."""
    if not path:
        return {}
    out: dict[int, tuple[float, float]] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["case"] == "E" and r["solver"] in ("cvxpy+CLARABEL", "cvxpy+MOSEK") and r["seconds"]:
                out.setdefault(int(r["n"]), (float(r["seconds"]), float(r["objective"])))
    if not out:
        raise ValueError(f"no case-E baseline rows (solver cvxpy+CLARABEL) found in {path}")
    return out


def bench_exact(n: int, P: int, d: int, with_baseline: bool, baselines: list[str], tol: float,
                recorded: dict[int, tuple[float, float]] | None = None) -> list[dict]:
    """E1/E2: fast solver to `tol` against CVXPY baselines on the same instance (or recorded ones)."""
    U, Y, M, _ = synthetic(n, d, P, seed=n)
    beta = default_beta(U, Y, M)
    sol = solve_c2_fast(U, Y, beta, M, tol=tol, max_seconds=600)
    obj, viol = c2_primal(U, Y, beta, M, sol.u, sol.up)
    rows = []
    base_t, base_obj = math.nan, math.nan
    note = f"beta={beta:.4g}"
    if not with_baseline and recorded and n in recorded:
        base_t, base_obj = recorded[n]
        note += "; baseline recorded earlier on the same instance (same seed), not in this run"
    for b in baselines if with_baseline else []:
        bt, bobj, bst = cvxpy_c2(U, Y, beta, M, b)
        rows.append(row(case="E", n=n, q=U.shape[1], P=M.shape[1], C=1, solver=f"cvxpy+{b}", seconds=bt,
                        objective=bobj, status=bst, peak_rss_gb=peak_rss_gb()))
        if b in ("CLARABEL", "MOSEK") and math.isnan(base_t):
            base_t, base_obj = bt, bobj
    rows.append(row(case="E", n=n, q=U.shape[1], P=M.shape[1], C=1, solver="fast", threads=sol.threads,
                    seconds=sol.seconds, baseline_seconds=base_t, ratio=base_t / sol.seconds,
                    objective=obj, rel_obj_diff=(obj - base_obj) / abs(base_obj), gap=sol.gap, cone_violation=viol,
                    status=sol.status, iterations=sol.iterations, peak_rss_gb=peak_rss_gb(),
                    note=note))
    return rows


def scnn_rfista(U: np.ndarray, Y: np.ndarray, G: np.ndarray, beta: float, ref: float, tol: float) -> list[dict]:
    """G1 comparison: pilancilab/scnn's R-FISTA on the same gated instance (only when `import scnn` works).

    scnn minimises ‖r‖²/(2n) + λ Σ‖w_i‖, so λ = β/n gives our objective divided by n; gates are our
    generators on X = U' (no bias, no column unitisation). Its point is scored with our objective.
    """
    try:
        from scnn.metrics import Metrics
        from scnn.models import ConvexGatedReLU
        from scnn.optimize import optimize_model
        from scnn.regularizers import NeuronGL1
        from scnn.solvers import RFISTA
    except ImportError:
        return []
    n = U.shape[0]
    model = ConvexGatedReLU(G, c=1)
    t = time.perf_counter()
    model, _ = optimize_model(model, RFISTA(model, max_iters=10000, tol=tol), Metrics(), U, Y,
                              regularizer=NeuronGL1(beta / n), unitize_data=False, dtype="float64",
                              return_convex=True)
    sec = time.perf_counter() - t
    W = np.asarray(model.parameters[0]).reshape(-1, U.shape[1])
    f = ((U @ W.T) * (U @ np.asarray(model.G) > 0)).sum(1)
    obj = 0.5 * float(np.sum((f - Y[:, 0]) ** 2)) + beta * float(np.linalg.norm(W, axis=1).sum())
    rel = (obj - ref) / ref
    # ours stopped at the accuracy scnn reached (certified gap ≤ its relative objective error)
    same = solve_gated_fast(U, Y, beta, generators=G, tol=max(rel, tol), max_seconds=600, chunk=n)
    return [row(case="G1", n=n, q=U.shape[1], P=G.shape[1], C=1, solver="scnn R-FISTA", threads=torch.get_num_threads(),
                seconds=sec, objective=obj, rel_obj_diff=rel, peak_rss_gb=peak_rss_gb(),
                note=f"pyscnn 0.0.10, tol {tol:g} on its min-norm subgradient; no certificate"),
            row(case="G1", n=n, q=U.shape[1], P=G.shape[1], C=1, solver="fast-gated (scnn's accuracy)",
                threads=same.threads, seconds=same.seconds, baseline_seconds=sec, ratio=same.seconds / sec,
                objective=same.objective, rel_obj_diff=(same.objective - ref) / ref, gap=same.gap, status=same.status,
                iterations=same.iterations, peak_rss_gb=peak_rss_gb(),
                note=f"certified gap <= scnn's relative error {rel:.1e}; ratio = our time / scnn time")]


def bench_gated(n: int, P: int, d: int, tol: float) -> list[dict]:
    """G1: gated relaxation time against iterations × one-thread GEMM time of one gradient (and scnn)."""
    U, Y, M, G = synthetic(n, d, P, seed=7)
    beta = default_beta(U, Y, M)
    dev = resolve_device(None)
    sol = solve_gated_fast(U, Y, beta, M, tol=tol, max_seconds=600, chunk=n)
    g1 = gemm_seconds(n, U.shape[1], M.shape[1], torch.float64, 1, dev, repeats=20)
    passes = sol.iterations + sol.iterations // 10 + 60  # gradients + certificate checks + power iteration
    bound = passes * g1
    return [row(case="G1", n=n, q=U.shape[1], P=M.shape[1], C=1, solver="fast-gated", threads=sol.threads,
                seconds=sol.seconds, baseline_seconds=bound, ratio=sol.seconds / bound, objective=sol.objective,
                gap=sol.gap, status=sol.status, iterations=sol.iterations, peak_rss_gb=peak_rss_gb(),
                note=f"ratio = time / ({passes} passes x 1-thread GEMM {g1 * 1e3:.2f} ms); target <= 3")
            ] + scnn_rfista(U, Y, G, beta, sol.objective, tol)


def cifar_instance(n: int, k: int, P: int, C: int, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CIFAR-shaped synthetic instance: U' (n, k+1), one-hot labels of a planted ReLU teacher, generators, masks.

    X has k latent features with a decaying spectrum (whitening removes it); U' = QR([X − mean, 1]) has
    orthonormal columns without an SVD of a 50 000-row matrix; masks = (U' g_i ≥ 0) computed in chunks.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, k)) * (np.arange(1, k + 1) ** -0.5)
    teacher = np.maximum(X @ rng.standard_normal((k, 32)) + 0.5, 0) @ rng.standard_normal((32, C))
    Y = np.eye(C)[np.argmax(teacher + 0.5 * rng.standard_normal((n, C)), axis=1)]
    U, _ = np.linalg.qr(np.hstack([X - X.mean(0), np.ones((n, 1))]))
    G = rng.standard_normal((k + 1, P))
    masks = np.empty((n, P), dtype=bool)
    for a in range(0, n, 4096):
        masks[a:a + 4096] = U[a:a + 4096] @ G >= 0
    return U, Y, G, masks


def bench_cifar_gradient(n: int, k: int, P: int, C: int, chunk: int) -> list[dict]:
    """C1: one full gradient at CIFAR shape (fp32, masks recomputed from generators per chunk)."""
    U, Y, G, _ = cifar_instance(n, k, P, C)
    q = k + 1
    W = np.random.default_rng(1).standard_normal((P, q, C)) * 1e-2
    dev = resolve_device(None)
    nth = choose_threads(n, q, P * C, dev)
    t_grad = gated_gradient_time(U, W, Y, generators=G, dtype="float32", chunk=chunk, threads=nth)
    t_gemm = gemm_chunked_seconds(n, q, P * C, torch.float32, nth, dev, chunk)
    return [row(case="C1", n=n, q=q, P=P, C=C, solver="fast-gradient", threads=nth, seconds=t_grad,
                baseline_seconds=t_gemm, ratio=t_grad / t_gemm, peak_rss_gb=peak_rss_gb(),
                note="one forward+adjoint pass, fp32, masks from generators; ratio target <= 2, memory <= 8 GB")]


def bench_cifar_solve(n: int, k: int, P: int, C: int, tol: float, budget: float, classes: int | None,
                      dense: bool = False) -> list[dict]:
    """C2: one β of the exact (C2) at CIFAR shape, working-set (or dense) mode, stopped at `budget` seconds."""
    U, Y, _, masks = cifar_instance(n, k, P, C)
    if classes is not None:
        Y = Y[:, :classes]
    beta = 0.1 * max(float(np.linalg.norm(U.T @ (masks[:, a:a + 512] * Y[:, c:c + 1]), axis=0).max())
                     for c in range(Y.shape[1]) for a in range(0, P, 512))
    dev = resolve_device(None)
    t = time.perf_counter()
    sol = solve_c2_fast(U, Y, beta, masks, tol=tol, max_seconds=budget, device=dev, verbose=True, working_set=not dense)
    sec = time.perf_counter() - t
    done = sorted({h["class"] for h in sol.history if h["entering"] == 0 and h["status"] == "optimal"})
    return [row(case="C2", n=n, q=k + 1, P=P, C=Y.shape[1], solver="fast (dense)" if dense else "fast (working set)", threads=sol.threads,
                seconds=sec, objective=sol.objective, gap=sol.gap, cone_violation=sol.cone_violation,
                status=sol.status, iterations=sol.iterations, peak_rss_gb=peak_rss_gb(),
                note=f"beta = 0.1 max bound; budget {budget:.0f} s; classes certified {len(done)}/{Y.shape[1]}; "
                     f"neurons {sol.neurons}; target gap <= {tol:g} in <= 1500 s")]


def thread_rows(n: int, q: int, width: int) -> list[dict]:
    """Measured GEMM time with 1 and 2 threads for a skinny shape (justifies choose_threads)."""
    dev = torch.device("cpu")
    out = []
    t1 = gemm_seconds(n, q, width, torch.float64, 1, dev, repeats=10)
    t2 = gemm_seconds(n, q, width, torch.float64, 2, dev, repeats=10)
    out.append(row(case="threads", n=n, q=q, P=width, C=1, solver="gemm", threads="1 vs 2", seconds=t1,
                   baseline_seconds=t2, ratio=t2 / t1, note="ratio = 2-thread / 1-thread time (>1: one thread faster)"))
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark table and write it as CSV."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes only (about 3 minutes)")
    ap.add_argument("--out", default=None, help="CSV path (default benchmarks/results[_quick].csv)")
    ap.add_argument("--tol", type=float, default=1e-6, help="relative gap the fast solver must certify")
    ap.add_argument("--skip", nargs="*", default=[], choices=CASES, help="cases to skip")
    ap.add_argument("--cases", nargs="*", default=None, choices=CASES,
                    help="run only these cases (e.g. --cases E)")
    ap.add_argument("--sizes", nargs="*", type=int, default=None,
                    help="n values for case E (default: 200 500 with --quick, else 500 1000 2000 5000)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the CVXPY baselines of case E")
    ap.add_argument("--baseline-csv", default=None,
                    help="with --no-baseline: take case-E baseline times from this earlier results CSV "
                         "(same instances: the instance seed is n)")
    ap.add_argument("--c2-budget", type=float, default=1500.0, help="seconds for case C2 (target: 25 min)")
    ap.add_argument("--c2-classes", type=int, default=None, help="case C2 on the first K classes only")
    ap.add_argument("--c2-dense", action="store_true", help="case C2 with the dense mode (for comparison)")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    baselines = ["CLARABEL"] + (["MOSEK"] if mosek_available()[0] else [])
    rows: list[dict] = []
    recorded = recorded_baselines(args.baseline_csv)
    if args.quick:
        exact = [(200, True), (500, True)]
        gated, cifar = (1000, 100), (5000, 50, 512, 10, 1024)
    else:
        exact = [(500, True), (1000, True), (2000, True), (5000, False)]
        gated, cifar = (5000, 200), (50_000, 100, 4096, 10, 512)
    if args.sizes:
        exact = [(n, not args.no_baseline) for n in args.sizes]
    elif args.no_baseline:
        exact = [(n, False) for n, _ in exact]
    if args.cases is not None:
        args.skip = [c for c in CASES if c not in args.cases]
    if "threads" not in args.skip:
        rows += thread_rows(5000, 51, 200)
    if "E" not in args.skip:
        for n, base in exact:
            print(f"... exact (C2) n={n}", file=sys.stderr, flush=True)
            rows += bench_exact(n, 100, 50, base, baselines, args.tol, recorded)
    if "G1" not in args.skip:
        print(f"... gated n={gated[0]}", file=sys.stderr, flush=True)
        rows += bench_gated(gated[0], gated[1], 50, args.tol)
    if "C1" not in args.skip:
        print(f"... CIFAR-shape gradient n={cifar[0]}", file=sys.stderr, flush=True)
        rows += bench_cifar_gradient(*cifar)
    if "C2" not in args.skip:
        print(f"... CIFAR-shape exact solve n={cifar[0]}", file=sys.stderr, flush=True)
        rows += bench_cifar_solve(*cifar[:4], tol=1e-4, budget=args.c2_budget, classes=args.c2_classes,
                                  dense=args.c2_dense)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
    out = Path(args.out) if args.out else Path(__file__).parent / ("results_quick.csv" if args.quick else "results.csv")
    atomic_write_bytes(out, buf.getvalue().encode())
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    show = ["case", "n", "q", "P", "C", "solver", "threads", "seconds", "baseline_seconds", "ratio", "gap",
            "cone_violation", "rel_obj_diff", "status", "iterations", "peak_rss_gb"]
    print(" | ".join(show))
    for r in rows:
        print(" | ".join(fmt(r[c]) for c in show))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
