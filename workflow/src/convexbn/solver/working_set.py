"""(C2) class by class by column generation: dense solves on a growing pattern subset, priced on all patterns.

For class c the working set starts with given patterns (by default the `initial` patterns of largest
‖U'ᵀ D_i y_c‖); each round solves (C2) restricted to it with the dense solver (warm-started, to gap
tol/4), prices every other pattern at the new residual (`price_patterns`) and adds the `add` most
violating ones. When no pattern violates its dual constraint the class is done; its certificate
combines the restricted solve's multipliers (patterns inside) with the pricing bounds (patterns
outside) in one dual-feasible point, scaled as in `certificate`. Memory: masks (n·P bytes) plus one
dense solve on n × 2|A|.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import torch

from convexbn.solver.admm import solve_dense
from convexbn.solver.certificate import price_patterns
from convexbn.solver.state import CONE_TOL, TINY, FastSolution, blas_threads, torch_threads


@dataclass
class ClassRun:
    """Column generation of one class: pattern set, blocks on it, multipliers, bounds outside and status."""

    A: np.ndarray
    u: np.ndarray  # (|A|, q, 1)
    up: np.ndarray
    mu: np.ndarray  # (n, 2, |A|)
    objective: float
    violation: float
    status: str
    bound: np.ndarray = field(default_factory=lambda: np.zeros((2, 0)))  # (2, P) pricing bounds, NaN inside A
    iterations: int = 0
    rounds: int = 0
    added: int = 0


@dataclass
class WorkingSetOptions:
    """Budgets, precision and growth of the column generation."""

    tol: float
    max_seconds: float | None
    max_iter: int | None
    dtype: torch.dtype
    dev: torch.device
    verbose: bool
    t0: float
    add: int = 32


def initial_patterns(Ut: np.ndarray, masks: np.ndarray, y: np.ndarray, initial: int) -> np.ndarray:
    """The `initial` patterns with the largest ‖U'ᵀ D_i y‖ (sorted indices)."""
    b_zero = np.linalg.norm(Ut.T @ (masks * y[:, None]), axis=0)
    return np.sort(np.argsort(-b_zero, kind="stable")[: min(initial, masks.shape[1])])


def _zero_run(A: np.ndarray, q: int, n: int, y: np.ndarray) -> ClassRun:
    """The zero point on A (used when the budget ends before any solve of the class)."""
    z = np.zeros((len(A), q, 1))
    return ClassRun(
        A=A,
        u=z,
        up=z.copy(),
        mu=np.zeros((n, 2, len(A))),
        objective=0.5 * float(y @ y),
        violation=0.0,
        status="time_limit",
    )


def _sub_solve(
    Ut: np.ndarray,
    y: np.ndarray,
    beta: float,
    masks: np.ndarray,
    A: np.ndarray,
    warm: Any,
    opt: WorkingSetOptions,
    iters: int,
) -> Any:
    """Dense solve restricted to the patterns A (None when the time budget is already spent)."""
    budget_left = None if opt.max_seconds is None else opt.max_seconds - (time.perf_counter() - opt.t0)
    if budget_left is not None and budget_left <= 0:
        return None
    left_iter = None if opt.max_iter is None else max(1, opt.max_iter - iters)
    return solve_dense(
        Ut,
        y[:, None],
        beta,
        masks[:, A],
        tol=0.25 * opt.tol,
        max_seconds=budget_left,
        max_iter=left_iter,
        dtype=opt.dtype,
        device=opt.dev,
        warm_start=warm,
    )


def _grow(A: np.ndarray, new: np.ndarray, run: ClassRun, q: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The enlarged pattern set and the current blocks embedded in it as a warm start."""
    A_new = np.union1d(A, new)
    pos = np.searchsorted(A_new, A)
    wu, wup = np.zeros((len(A_new), q, 1)), np.zeros((len(A_new), q, 1))
    wu[pos], wup[pos] = run.u, run.up
    return A_new, (wu, wup)


def solve_class(
    Ut: np.ndarray,
    y: np.ndarray,
    beta: float,
    masks: np.ndarray,
    A: np.ndarray,
    warm: Any,
    opt: WorkingSetOptions,
    iters: int = 0,
    history: list[dict] | None = None,
    c: int = 0,
) -> ClassRun:
    """Column generation for one class c from the pattern set A (optional warm blocks on A); rounds go to `history`."""
    n, q = Ut.shape
    last_ok: ClassRun | None = None  # the last certified round
    rounds = added = 0
    while True:
        sub = _sub_solve(Ut, y, beta, masks, A, warm, opt, iters)
        rounds += 1
        if sub is not None:
            iters += sub.iterations
            run = ClassRun(
                A=A,
                u=sub.u,
                up=sub.up,
                mu=sub.extra["multipliers"][..., 0],
                objective=sub.objective,
                violation=sub.cone_violation,
                status=sub.status,
            )
        if sub is not None and sub.status == "optimal":
            last_ok = run
        elif last_ok is not None:  # stopped early: certify the last round's feasible optimum instead
            run = ClassRun(**{**last_ok.__dict__, "status": "time_limit" if sub is None else sub.status})
        elif sub is None:
            run = _zero_run(A, q, n, y)
        A = run.A
        lam = y - class_fit(Ut, masks, run)
        out_of_time = run.status != "optimal" or (opt.max_iter is not None and iters >= opt.max_iter)
        t_price = time.perf_counter()
        pg = 0 if sub is None and last_ok is None else 20
        run.bound = price_patterns(
            Ut,
            masks,
            lam,
            beta,
            skip=A,
            tol=opt.tol,
            exact=not out_of_time,
            stop_after=None if out_of_time else opt.add,
            pg_iters=pg,
        )
        viol_out = np.nan_to_num(run.bound, nan=0.0).max(0)  # (P,)
        entering = np.flatnonzero(viol_out > beta * (1 + 0.25 * opt.tol))
        rec = {
            "stage": "working-set",
            "class": c,
            "patterns": int(len(A)),
            "entering": int(len(entering)),
            "objective": run.objective,
            "status": run.status,
            "solve_seconds": 0.0 if sub is None else sub.seconds,
            "pricing_seconds": time.perf_counter() - t_price,
            "seconds": time.perf_counter() - opt.t0,
        }
        if history is not None:
            history.append(rec)
        if opt.verbose:
            print(f"[fast c2 ws] {rec}")
        run.iterations, run.rounds, run.added = iters, rounds, added
        if len(entering) and not out_of_time:
            new = entering[np.argsort(-viol_out[entering], kind="stable")[: opt.add]]
            added += len(new)
            A, warm = _grow(A, new, run, q)
            continue
        if len(entering) and run.status == "optimal":  # stopped by the budget: the PG bounds still certify a gap
            run.status = "time_limit"
        return run


def class_fit(Ut: np.ndarray, masks: np.ndarray, run: ClassRun) -> np.ndarray:
    """f = Σ_{i ∈ A} D_i U'(u_i − u'_i) of one class: (n,)."""
    mA = masks[:, run.A].astype(np.float64)
    return (mA * (Ut @ (run.u[:, :, 0] - run.up[:, :, 0]).T)).sum(1)


def class_certificate(
    Ut: np.ndarray, masks: np.ndarray, y: np.ndarray, beta: float, run: ClassRun
) -> tuple[float, float, float]:
    """(primal, dual lower bound, largest feasible dual scale) of one class from its multipliers and bounds."""
    n = Ut.shape[0]
    mA = masks[:, run.A].astype(np.float64)
    lam = y - class_fit(Ut, masks, run)
    sg = np.array([1.0, -1.0])
    base = sg[None, :, None] * mA[:, None, :] * lam[:, None, None] + (2.0 * mA - 1.0)[:, None, :] * run.mu
    w_in = float(np.linalg.norm(Ut.T @ base.reshape(n, -1), axis=0).max()) if len(run.A) else 0.0
    wmax = max(w_in, float(np.nan_to_num(run.bound, nan=0.0).max(initial=0.0)))
    ly, ll = float(lam @ y), float(lam @ lam)
    smax = min(1.0, beta / max(wmax, TINY))
    s_c = min(max(ly / max(ll, TINY), 0.0), smax)
    nrm = np.linalg.norm(run.u[:, :, 0], axis=1).sum() + np.linalg.norm(run.up[:, :, 0], axis=1).sum()
    primal = 0.5 * ll + beta * float(nrm)
    return primal, s_c * ly - 0.5 * s_c * s_c * ll, smax


def assemble(
    Ut: np.ndarray, masks: np.ndarray, Y: np.ndarray, beta: float, runs: Sequence[ClassRun], tol: float
) -> dict[str, Any]:
    """Blocks (P, q, C), objective, dual, gap, violation and status of the per-class runs."""
    n, q = Ut.shape
    P, C = masks.shape[1], Y.shape[1]
    U_all, Up_all = np.zeros((P, q, C)), np.zeros((P, q, C))
    primal = dual = viol = 0.0
    scale, status = 1.0, "optimal"
    for c, run in enumerate(runs):
        p_c, d_c, smax = class_certificate(Ut, masks, Y[:, c], beta, run)
        primal, dual, scale = primal + p_c, dual + d_c, min(scale, smax)
        viol = max(viol, run.violation)
        U_all[run.A, :, c], Up_all[run.A, :, c] = run.u[:, :, 0], run.up[:, :, 0]
        if run.status != "optimal" and status == "optimal":
            status = run.status
    gap = max(0.0, (primal - dual) / max(abs(primal), 1e-12))
    norms = max(float(np.linalg.norm(U_all, axis=1).max()), float(np.linalg.norm(Up_all, axis=1).max()), 1.0)
    if status == "optimal" and not (gap <= tol and viol <= CONE_TOL * norms):
        status = "max_iter"
    if viol > CONE_TOL * norms:  # an infeasible point's value is no upper bound: no gap is claimed
        gap = math.nan
    return {
        "u": U_all,
        "up": Up_all,
        "objective": primal,
        "dual": dual,
        "gap": gap,
        "cone_violation": viol,
        "status": status,
        "dual_scale": scale,
    }


def check_workers(workers: int) -> int:
    """`workers` as a positive int, or a ValueError naming the fix."""
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer (processes for the classes), got {workers!r}")
    return int(workers)


def class_pool(workers: int, classes: int, device: torch.device) -> Executor | None:
    """A pool of `workers` processes for the classes (they are independent programs), or None for one.

    Each worker runs one torch and one BLAS thread: the per-class solver is single-threaded for
    q ≤ 128 (`choose_threads`), so on k cores k classes run side by side. Workers are forked where the
    platform allows it, because spawned workers re-import the caller's main script (a script without
    an `if __name__ == "__main__"` guard would run again); held to one thread, a forked worker never
    uses the thread pools it inherits from the parent. Only on CPU: GPU solves keep one process. A
    time budget bounds the whole point either way (one deadline), shared out by `class_slots`.
    """
    k = min(int(workers), int(classes))
    if k <= 1 or device.type != "cpu":
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=k, mp_context=multiprocessing.get_context(method))


def _class_job(
    Ut: np.ndarray,
    y: np.ndarray,
    beta: float,
    masks: np.ndarray,
    A: np.ndarray,
    warm: Any,
    opt: WorkingSetOptions,
    c: int,
    wall_t0: float,
) -> tuple[ClassRun, list[dict]]:
    """One class in a worker process whose budget runs from the point's start `wall_t0` (time.time()): (run, history).

    The start travels as wall-clock time because a worker's perf_counter need not share the parent's
    origin, and a class that waited for a free worker must not get its waiting time back.
    """
    history: list[dict] = []
    opt = replace(opt, t0=time.perf_counter() - (time.time() - wall_t0))
    with torch_threads(1), blas_threads(1):
        run = solve_class(Ut, y, beta, masks, A, warm, opt, 0, history, c)
    return run, history


def class_slots(max_seconds: float | None, classes: int, workers: int) -> list[float | None]:
    """First-pass budget of the k-th class to start (seconds from the point's start): equal slices per round of workers.

    A capped point solves every class within its slice first, so no class is starved by the ones before
    it; what a class leaves unused moves the next ones' start earlier, and the second pass resumes the
    classes that ran out of time with whatever remains of the whole budget.
    """
    if max_seconds is None:
        return [None] * classes
    rounds = math.ceil(classes / workers)
    return [max_seconds * (c // workers + 1) / rounds for c in range(classes)]


def _pass(
    Ut: np.ndarray,
    Y: np.ndarray,
    beta: float,
    masks: np.ndarray,
    jobs: list[tuple[int, np.ndarray, Any, WorkingSetOptions]],
    pool: Executor | None,
    iters: int,
) -> tuple[list[tuple[ClassRun, list[dict]]], int]:
    """solve_class for each (class, patterns, warm, options), in turn or on the pool → ((run, history)s, iterations).

    One after another, the iteration count (and `max_iter`) runs on across classes from `iters`; on the
    pool each class counts its own and the total is their sum.
    """
    out: list[tuple[ClassRun, list[dict]]] = []
    if pool is None:
        for c, A, w, o in jobs:
            hist: list[dict] = []
            run = solve_class(Ut, Y[:, c], beta, masks, A, w, o, iters, hist, c)
            iters = run.iterations
            out.append((run, hist))
        return out, iters
    wall_t0 = time.time() - (time.perf_counter() - jobs[0][3].t0) if jobs else time.time()
    futures = [pool.submit(_class_job, Ut, Y[:, c], beta, masks, A, w, o, c, wall_t0) for c, A, w, o in jobs]
    out = [f.result() for f in futures]
    return out, iters + sum(r.iterations for r, _ in out)


def _solve_classes(
    Ut: np.ndarray,
    Y: np.ndarray,
    beta: float,
    masks: np.ndarray,
    sets: list[np.ndarray],
    warm: Sequence[Any] | None,
    opt: WorkingSetOptions,
    pool: Executor | None,
    workers: int = 1,
) -> tuple[list[ClassRun], list[dict], int]:
    """Every class in its budget slice (`class_slots`), then those out of time resumed: (runs, history, iterations)."""
    C = Y.shape[1]
    slots = class_slots(opt.max_seconds, C, workers if pool is not None else 1)
    # on the pool, largest working sets first (longest-processing-time order: the last class to start is a
    # short one); the budget slices follow the order in which the classes start
    order = sorted(range(C), key=lambda c: -len(sets[c])) if pool is not None else list(range(C))
    first = [
        (c, sets[c], None if warm is None else warm[c], replace(opt, max_seconds=slots[k])) for k, c in enumerate(order)
    ]
    done, iters = _pass(Ut, Y, beta, masks, first, pool, 0)
    by_class = dict(zip(order, done))
    runs = [by_class[c][0] for c in range(C)]
    history = [h for c in range(C) for h in by_class[c][1]]
    budget_left = opt.max_seconds is not None and time.perf_counter() - opt.t0 < opt.max_seconds
    again = [c for c in range(C) if runs[c].status == "time_limit"] if budget_left and C > 1 else []
    if again and (opt.max_iter is None or iters < opt.max_iter):
        jobs = [(c, runs[c].A, (runs[c].u, runs[c].up), opt) for c in again]
        resumed, iters = _pass(Ut, Y, beta, masks, jobs, pool, iters)
        for c, (run, hist) in zip(again, resumed):
            run.rounds, run.added = run.rounds + runs[c].rounds, run.added + runs[c].added
            runs[c] = run
            history.extend(hist)
    return runs, history, iters


def solve_working_set(
    Ut: np.ndarray,
    Y: np.ndarray,
    beta: float,
    masks: np.ndarray,
    *,
    tol: float,
    max_seconds: float | None = None,
    max_iter: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device = torch.device("cpu"),
    verbose: bool = False,
    t0: float | None = None,
    initial: int = 64,
    add: int = 32,
    start_sets: Sequence[np.ndarray] | None = None,
    warm: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None,
    pool: Executor | None = None,
    workers: int = 1,
) -> FastSolution:
    """(C2) by column generation class by class (module docstring), on validated inputs.

    `start_sets[c]` (sorted pattern indices) replaces the default initial set of class c and
    `warm[c]` = (u, up) of shape (|start_sets[c]|, q, 1) warm-starts its first dense solve. With a
    `pool` (`class_pool`, `workers` processes) the classes run in its processes, largest working set first;
    each class's result does not depend on it unless `max_seconds` stops it. Under `max_seconds` every class
    first gets its slice of the budget (`class_slots`), then the classes that ran out resume with what is left.
    """
    opt = WorkingSetOptions(
        tol=tol,
        max_seconds=max_seconds,
        max_iter=max_iter,
        dtype=dtype,
        dev=device,
        verbose=verbose,
        t0=time.perf_counter() if t0 is None else t0,
        add=add,
    )
    sets = [
        initial_patterns(Ut, masks, Y[:, c], initial) if start_sets is None else np.asarray(start_sets[c])
        for c in range(Y.shape[1])
    ]
    runs, history, iters = _solve_classes(Ut, Y, beta, masks, sets, warm, opt, pool, workers)
    out = assemble(Ut, masks, Y, beta, runs, tol)
    return FastSolution(
        u=out["u"],
        up=out["up"],
        objective=out["objective"],
        gap=out["gap"],
        cone_violation=out["cone_violation"],
        status=out["status"],
        iterations=iters,
        seconds=time.perf_counter() - opt.t0,
        history=history,
        dual=out["dual"],
        device=str(device),
        dtype=str(dtype).replace("torch.", ""),
        extra={"mode": "working_set", "dual_scale": out["dual_scale"], "patterns": [r.A for r in runs]},
    )
