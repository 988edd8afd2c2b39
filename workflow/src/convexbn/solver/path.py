"""Regularisation paths of (C2): β_max, screening of pattern blocks, warm-started certified solves.

β_max is the smallest β at which the zero network is optimal: with λ = Y at the zero point,
    β_max = max_{σ, i, c} min_{μ ≥ 0} ‖U'ᵀ(σ D_i y_c + S_i μ)‖
(the norm of the projection of U'ᵀ σ D_i y_c onto the cone {u : S_i U' u ≥ 0}); the unconstrained
value max_{i,c} ‖U'ᵀ D_i y_c‖ (μ = 0) is an upper bound of it.

Along a decreasing path each point starts from the previous one (primal blocks, dual residual λ):
- safe rule (gap safe sphere): the dual of a class is 1-strongly concave in λ_c, so the optimal λ*_c
  lies within r_c = √(2·gap_c) of any dual-feasible θ_c; a block whose bound b(θ_c) (any μ ≥ 0) satisfies
  b(θ_c) + r_c < β has min_μ ‖U'ᵀ(σ D_i λ*_c + S_i μ)‖ < β (‖U'ᵀ D_i‖ ≤ 1), so it is zero at every optimum;
- strong rule (sequential): a block whose bound at the previous residual is below 2β − β_prev is
  left out of the first working set (heuristic); for steps β < β_prev / 2, where that rule keeps
  everything, the threshold is β (blocks violating their dual constraint at the previous point);
every block left out is priced at the final residual (`price_patterns`, exact cone projections where
the cheap bounds exceed β) and enters when it violates its dual constraint, so every point's
certificate covers all blocks.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Executor
from contextlib import nullcontext
from typing import Any, Sequence

import numpy as np
import torch

from convexbn.devices import NEURON_RTOL, resolve_device, resolve_dtype
from convexbn.solver.c2 import solve_c2_fast
from convexbn.solver.certificate import dual_pg, project_cone
from convexbn.solver.state import (
    FastSolution,
    as_targets,
    blas_threads,
    check_features,
    choose_threads,
    masks_from,
    torch_threads,
)
from convexbn.solver.working_set import check_workers, class_pool, solve_working_set


def block_bounds(Ut: np.ndarray, masks: np.ndarray, lam: np.ndarray, pg_iters: int = 20) -> np.ndarray:
    """Upper bounds (2, P) on min_{μ ≥ 0} ‖U'ᵀ(σ D_i λ + S_i μ)‖ for one class residual λ (n,)."""
    n, P = masks.shape
    _, bound = dual_pg(Ut, masks, lam, np.zeros((n, 2, P)), pg_iters)
    return bound


def beta_max(Ut: np.ndarray, Y: np.ndarray, masks: np.ndarray, *, exact: bool = True) -> float:
    """Smallest β whose (C2) optimum is the zero network (module docstring); `exact=False`: the μ = 0 bound.

    Blocks are visited in decreasing order of a cheap upper bound and projected exactly until no
    remaining bound can exceed the best exact value found.
    """
    Ut = check_features(Ut)
    Y = as_targets(Y, Ut.shape[0])
    masks = masks_from(Ut, masks, None)
    if not exact:
        return float(
            max(np.linalg.norm(Ut.T @ (masks * Y[:, c : c + 1]), axis=0).max(initial=0.0) for c in range(Y.shape[1]))
        )
    rown = np.linalg.norm(Ut, axis=1) + 1e-300
    cands = []
    for c in range(Y.shape[1]):
        ub = block_bounds(Ut, masks, Y[:, c])
        cands += [(float(ub[s, i]), s, i, c) for s in range(2) for i in range(masks.shape[1])]
    cands.sort(reverse=True)
    best = 0.0
    for ub, s, i, c in cands:
        if ub <= best:
            break
        G = (2.0 * masks[:, i : i + 1] - 1.0) * Ut
        g = (1.0 if s == 0 else -1.0) * (Ut.T @ (masks[:, i] * Y[:, c]))
        d, _ = project_cone(G, g, rown, accept_below=best)
        best = max(best, float(np.linalg.norm(d)))
    return best


def safe_screen(
    Ut: np.ndarray,
    masks: np.ndarray,
    lam: np.ndarray,
    y: np.ndarray,
    beta: float,
    primal: float,
    pg_iters: int = 20,
    bound: np.ndarray | None = None,
) -> np.ndarray:
    """Blocks (2, P) of one class proven zero at every optimum for β by the gap-safe sphere (module docstring).

    `lam` is the residual y − f of a point whose objective at β is `primal`; it is scaled into the
    dual-feasible set, the gap gives the radius, and bounds come from batched projected gradient
    (or `bound`, the caller's `block_bounds` of the same `lam`).
    """
    bound = block_bounds(Ut, masks, lam, pg_iters) if bound is None else bound
    ly, ll = float(lam @ y), float(lam @ lam)
    s = min(max(ly / max(ll, 1e-300), 0.0), beta / max(float(bound.max(initial=0.0)), 1e-300), 1.0)
    dual = s * ly - 0.5 * s * s * ll
    radius = math.sqrt(2.0 * max(primal - dual, 0.0))
    return s * bound + radius < beta


def strong_threshold(beta: float, beta_prev: float) -> float:
    """Bound below which the first working set leaves a block out: the strong rule 2β − β_prev, or β itself
    (keep the blocks violating their dual constraint at the previous point) when β < β_prev / 2 makes that vacuous."""
    return 2.0 * beta - beta_prev if 2.0 * beta > beta_prev else beta


def screen_class(
    Ut: np.ndarray,
    masks: np.ndarray,
    y: np.ndarray,
    f: np.ndarray,
    active: np.ndarray,
    beta: float,
    beta_prev: float,
    penalty: float,
) -> tuple[np.ndarray, dict[str, int]]:
    """First working set of one class at β from the previous point (fit f, active patterns, Σ‖u‖ = penalty).

    Keeps the previously active patterns and those the strong rule keeps, minus blocks the safe rule
    proves zero. Returns (sorted pattern indices, counts of the rules).
    """
    lam = y - f
    bound = block_bounds(Ut, masks, lam)
    strong = (bound >= strong_threshold(beta, beta_prev)).any(0) | active
    safe = safe_screen(Ut, masks, lam, y, beta, 0.5 * float(lam @ lam) + beta * penalty, bound=bound).all(0)
    keep = strong & ~safe
    if not keep.any():  # the restricted solve needs a pattern: the most violating one
        keep[int(np.argmax(bound.max(0)))] = True
    return np.flatnonzero(keep), {"safe": int(safe.sum()), "strong": int((~strong).sum()), "kept": int(keep.sum())}


def zero_solution(Ut: np.ndarray, Y: np.ndarray, P: int, t0: float, dev: torch.device, dt: torch.dtype) -> FastSolution:
    """The zero network as the certified optimum for β ≥ β_max (λ = Y is dual feasible with scale 1)."""
    q = Ut.shape[1]
    C = Y.shape[1]
    val = 0.5 * float((Y * Y).sum())
    z = np.zeros((P, q, C))
    return FastSolution(
        u=z,
        up=z.copy(),
        objective=val,
        gap=0.0,
        cone_violation=0.0,
        status="optimal",
        iterations=0,
        seconds=time.perf_counter() - t0,
        dual=val,
        device=str(dev),
        dtype=str(dt).replace("torch.", ""),
        extra={"mode": "zero"},
    )


def _check_betas(betas: Sequence[float]) -> np.ndarray:
    """β values as a strictly decreasing array of positive numbers, or a ValueError naming the fix."""
    b = np.asarray(list(betas), dtype=np.float64)
    if b.ndim != 1 or b.size == 0:
        raise ValueError("betas must be a non-empty sequence of numbers")
    if not np.all(np.isfinite(b)) or np.any(b <= 0):
        raise ValueError(f"betas must be positive finite numbers, got {b.tolist()}")
    if np.any(np.diff(b) >= 0):
        raise ValueError(f"betas must be strictly decreasing (a path from large to small β), got {b.tolist()}")
    return b


def solve_path(
    Ut: np.ndarray,
    Y: np.ndarray,
    betas: Sequence[float],
    masks: np.ndarray | None = None,
    *,
    generators: np.ndarray | None = None,
    tol: float = 1e-6,
    max_seconds: float | None = None,
    dtype: str = "float64",
    device: str | torch.device | None = None,
    threads: int | None = None,
    verbose: bool = False,
    bmax: float | None = None,
    workers: int = 1,
) -> list[FastSolution]:
    """Certified (C2) solves along strictly decreasing `betas`, warm-started and screened (module docstring).

    Each point is a FastSolution with its own certificate (gap, cone violation, status); β ≥ β_max
    gives the zero network at once. `max_seconds` bounds each point. extra holds "beta", "beta_max",
    "screening" (per class counts) and "patterns" (each class's final working set). `bmax` skips the
    computation of β_max when the caller already has it. `workers` > 1 solves the classes of every
    point in that many processes (`class_pool`, CPU only); the points do not depend on it unless
    `max_seconds` stops a class.
    """
    Ut = check_features(Ut)
    n, q = Ut.shape
    masks = masks_from(Ut, masks, generators)
    Y = as_targets(Y, n)
    b = _check_betas(betas)
    if not (tol > 0):
        raise ValueError(f"tol must be positive, got {tol}")
    check_workers(workers)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    P, C = masks.shape[1], Y.shape[1]
    nthreads = threads or choose_threads(n, q, 2 * P * C, dev)
    out: list[FastSolution] = []
    pool = class_pool(workers, C, dev)
    with torch_threads(nthreads), blas_threads(nthreads), pool if pool is not None else nullcontext():
        bmax = beta_max(Ut, Y, masks) if bmax is None else float(bmax)
        prev_u, prev_up, prev_beta = np.zeros((P, q, C)), np.zeros((P, q, C)), bmax
        for beta in b:
            t0 = time.perf_counter()
            if beta >= bmax:
                sol = zero_solution(Ut, Y, P, t0, dev, dt)
            else:
                sol = _path_point(
                    Ut,
                    Y,
                    float(beta),
                    masks,
                    prev_u,
                    prev_up,
                    prev_beta,
                    tol,
                    max_seconds,
                    dt,
                    dev,
                    verbose,
                    t0,
                    pool,
                    workers,
                )
                prev_u, prev_up, prev_beta = sol.u, sol.up, float(beta)
            sol.threads = nthreads
            sol.extra.update({"beta": float(beta), "beta_max": bmax})
            if verbose:
                print(
                    f"[path] beta={beta:.6g} ({beta / bmax:.4g} beta_max) obj={sol.objective:.10g} "
                    f"gap={sol.gap:.2e} status={sol.status} neurons={sol.neurons} t={sol.seconds:.2f}s"
                )
            out.append(sol)
    return out


def _path_point(
    Ut: np.ndarray,
    Y: np.ndarray,
    beta: float,
    masks: np.ndarray,
    prev_u: np.ndarray,
    prev_up: np.ndarray,
    prev_beta: float,
    tol: float,
    max_seconds: float | None,
    dt: torch.dtype,
    dev: torch.device,
    verbose: bool,
    t0: float,
    pool: Executor | None = None,
    workers: int = 1,
) -> FastSolution:
    """One path point: screen each class from the previous point, then column generation warm-started on it."""
    sets: list[np.ndarray] = []
    warm: list[Any] = []
    counts: list[dict[str, int]] = []
    for c in range(Y.shape[1]):
        u, up = prev_u[:, :, c], prev_up[:, :, c]
        f = (masks * (Ut @ (u - up).T)).sum(1)
        nu, nup = np.linalg.norm(u, axis=1), np.linalg.norm(up, axis=1)
        top = max(float(nu.max(initial=0.0)), float(nup.max(initial=0.0)))
        active = (nu > NEURON_RTOL * top) | (nup > NEURON_RTOL * top) if top > 0 else np.zeros(len(nu), bool)
        penalty = float(np.linalg.norm(u, axis=1).sum() + np.linalg.norm(up, axis=1).sum())
        A, cnt = screen_class(Ut, masks, Y[:, c], f, active, beta, prev_beta, penalty)
        sets.append(A)
        warm.append((u[A][:, :, None], up[A][:, :, None]))
        counts.append(cnt)
    sol = solve_working_set(
        Ut,
        Y,
        beta,
        masks,
        tol=tol,
        max_seconds=max_seconds,
        dtype=dt,
        device=dev,
        verbose=verbose,
        t0=t0,
        start_sets=sets,
        warm=warm,
        pool=pool,
        workers=workers,
    )
    added = [sum(h["entering"] > 0 for h in sol.history if h["class"] == c) for c in range(Y.shape[1])]
    for cnt, a in zip(counts, added):
        cnt["pricing_rounds_with_entries"] = int(a)
    sol.extra["screening"] = counts
    return sol


def solve_c2_path(
    Ut: np.ndarray, Y: np.ndarray, betas: Sequence[float], masks: np.ndarray | None = None, **kwargs: Any
) -> list[FastSolution]:
    """Solve (C2) for each β in the given order, each `solve_c2_fast` warm-started from the previous solution."""
    if len(betas) == 0:
        raise ValueError("betas must contain at least one value")
    out: list[FastSolution] = []
    warm = kwargs.pop("warm_start", None)
    for b in betas:
        sol = solve_c2_fast(Ut, Y, float(b), masks, warm_start=warm, **kwargs)
        out.append(sol)
        warm = sol
    return out
