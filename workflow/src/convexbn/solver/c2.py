"""`solve_c2_fast`: the certified fast solver of (C2), dense ADMM + polish or column generation over patterns."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

from convexbn.devices import resolve_device, resolve_dtype
from convexbn.solver.admm import solve_dense
from convexbn.solver.state import (
    DENSE_C2_BYTES,
    WORKING_SET_PATTERNS,
    FastSolution,
    as_targets,
    blas_threads,
    check_inputs,
    choose_threads,
    dense_c2_bytes,
    masks_from,
    torch_threads,
)
from convexbn.solver.working_set import check_workers, class_pool, solve_working_set


def solve_c2_fast(
    Ut: np.ndarray,
    Y: np.ndarray,
    beta: float,
    masks: np.ndarray | None = None,
    *,
    generators: np.ndarray | None = None,
    tol: float = 1e-6,
    loss: str = "squared",
    max_seconds: float | None = None,
    max_iter: int | None = None,
    dtype: str = "float64",
    device: str | torch.device | None = None,
    warm_start: Any = None,
    polish: bool = True,
    verbose: bool = False,
    threads: int | None = None,
    working_set: bool | None = None,
    workers: int = 1,
) -> FastSolution:
    """Solve (C2) (scalar or decoupled vector output) to relative duality gap `tol` with a certificate.

    Stops when certified (gap ≤ tol, cone violation ≤ 1e-9·scale), or at `max_iter` iterations /
    `max_seconds`; the returned gap and violation are always computed from explicit points
    (`convexbn.solver.certificate`), so a stopped-early run reports its true, larger gap. `working_set`
    (default: when the dense state would exceed DENSE_C2_BYTES or P > WORKING_SET_PATTERNS) solves
    class by class on growing pattern subsets instead (`solve_working_set`); warm starts and
    `polish=False` apply to the dense mode only. `workers` > 1 solves the classes of the working-set
    mode in that many processes (`class_pool`; CPU only).
    """
    t0 = time.perf_counter()
    Ut = check_inputs(Ut, beta, loss)
    n, q = Ut.shape
    masks = masks_from(Ut, masks, generators)
    Y = as_targets(Y, n)
    P, C = masks.shape[1], Y.shape[1]
    if P == 0:
        raise ValueError("no arrangement patterns given (masks has 0 columns)")
    if not (tol > 0):
        raise ValueError(f"tol must be positive, got {tol}")
    check_workers(workers)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    nthreads = threads or choose_threads(n, q, 2 * P * C, dev)
    if working_set is None:
        working_set = dense_c2_bytes(n, P, C) > DENSE_C2_BYTES or P > WORKING_SET_PATTERNS
    pool = class_pool(workers, C, dev) if working_set else None
    common: dict[str, Any] = dict(
        tol=tol, max_seconds=max_seconds, max_iter=max_iter, dtype=dt, device=dev, verbose=verbose, t0=t0
    )
    with torch_threads(nthreads), blas_threads(nthreads), pool if pool is not None else nullcontext():
        if working_set:
            sol = solve_working_set(Ut, Y, float(beta), masks, pool=pool, workers=workers, **common)
        else:
            sol = solve_dense(Ut, Y, float(beta), masks, warm_start=warm_start, polish=polish, **common)
    sol.threads = nthreads
    return sol
