"""The paper's exact convex programs in CVXPY (C2 scalar/vector), closed forms and reconstruction.

Program (C2) of paper.md §3.2 on the whitened data U' = [U_k, c·1] (§3.1, truncation §4.2):

    min  ℓ( Σ_i D_i U' (u_i − u'_i), Y ) + β Σ_i (‖u_i‖₂ + ‖u'_i‖₂)
    s.t. (2D_i − I) U' u_i ≥ 0,  (2D_i − I) U' u'_i ≥ 0.

Vector output (C > 1) uses the *decoupled per-class* form: one block pair (u_{i,c}, u'_{i,c}) per
(pattern i, class c), i.e. every hidden neuron feeds a single class. This is OUR choice for paper
ambiguity A5 (the exact form is a cone-constrained nuclear norm, §3.4); it is an exact convex
program for networks whose output weights are multiples of unit vectors e_c, and its reconstructed
BN network attains the program's optimum.

Block arrays everywhere have shape (P, q, C): u[i, :, c] is the block of pattern i and class c.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from convexbn.arrangements import Arrangements, arrangements_for
from convexbn.networks import LOSSES, BNParams, evaluate_objective
from convexbn.conic import SolveRecord, resolve_solver, solve_problem
from convexbn.whitening import Whitening, as_data_matrix, whiten

log = logging.getLogger("convexbn.programs")

# LOSSES (from convexbn.networks) are the losses the convex programs accept; "hinge" is
# Σ max(0, 1 − Y∘F) with targets in {−1, +1}, "cross_entropy" needs one-hot targets.
#: Per-solver defaults for (C2), merged under the caller's options. CLARABEL cannot certify a 1e-10
#: gap on (C2) for about half of small random problems (it then reports "optimal_inaccurate" although
#: the point agrees with closed forms to 1e-12); 1e-8 is certified reliably and is ample for the
#: 1e-6 relative agreement the tests and reports ask for.
C2_SOLVER_OPTIONS: dict[str, dict[str, Any]] = {
    "CLARABEL": {"tol_gap_abs": 1e-8, "tol_gap_rel": 1e-8, "tol_feas": 1e-8, "max_iter": 500},
}


@dataclass
class ConvexResult:
    """A solved convex program: optimum (paper convention), solver record and reconstructed weights."""

    objective: float  # convex optimum, recomputed from the returned variables in the paper convention
    record: SolveRecord  # solver, status, seconds (whole solve incl. construction), iterations
    params: BNParams | None  # reconstructed non-convex network (None when the solve failed)
    neurons: int  # number of non-zero blocks = neurons of the reconstructed network
    arrangements: int  # number of arrangement patterns P used
    extra: dict[str, Any] = field(default_factory=dict)  # variant-specific data (blocks, certificates, ...)


@dataclass
class C2Program:
    """A compiled-ready CVXPY instance of (C2) with its block variables (layout (P·q, C))."""

    problem: cp.Problem
    u: cp.Variable  # (P·q, C): rows i·q … i·q+q−1 of column c hold block u_{i,c}
    up: cp.Variable  # same layout for u'_{i,c}
    P: int
    q: int
    C: int

    def blocks(self) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        """The solved blocks as (P, q, C) arrays, or (None, None) when the solver returned no point."""
        if self.u.value is None or self.up.value is None:
            return None, None
        shape = (self.P, self.q, self.C)
        return (np.asarray(self.u.value, dtype=np.float64).reshape(shape),
                np.asarray(self.up.value, dtype=np.float64).reshape(shape))


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------

def _prefix(where: str) -> str:
    """'where: ' for error messages, or nothing."""
    return f"{where}: " if where else ""


def as_targets(Y: np.ndarray, n: int | None = None, where: str = "") -> np.ndarray:
    """Targets as an (n, C) float64 matrix (a 1-D y becomes one column); checks shape and finiteness."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[1] < 1 or (n is not None and Y.shape[0] != n):
        rows = "n" if n is None else str(n)
        raise ValueError(f"{_prefix(where)}Y must have shape ({rows},) or ({rows}, C) to match the data, got "
                         f"{np.shape(Y)}; give one target row per sample")
    if not np.all(np.isfinite(Y)):
        raise ValueError(f"{_prefix(where)}targets contain NaN or infinite values; clean the labels first")
    return Y


def check_beta(beta: float, positive: bool = False, where: str = "") -> float:
    """β as a finite float ≥ 0 (> 0 with `positive`), or a ValueError naming the bad value."""
    kind = "a positive finite number" if positive else "a finite number >= 0"
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ValueError(f"{_prefix(where)}weight decay beta must be {kind}, got {beta!r}") from None
    if not math.isfinite(b) or b < 0 or (positive and b == 0):
        raise ValueError(f"{_prefix(where)}weight decay beta must be {kind}, got {beta!r}")
    return b


def is_one_hot(Y: np.ndarray) -> bool:
    """True when every row of Y has exactly one entry 1 and the rest 0."""
    Y = np.asarray(Y)
    return Y.ndim == 2 and bool(np.all((Y == 0) | (Y == 1))) and bool(np.all(Y.sum(axis=1) == 1))


def check_loss_targets(Y: np.ndarray, loss: str, where: str = "") -> None:
    """Raise a ValueError when the (n, C) targets do not suit `loss`."""
    if loss not in LOSSES:
        raise ValueError(f"{_prefix(where)}unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if loss == "cross_entropy" and (Y.shape[1] < 2 or not is_one_hot(Y)):
        raise ValueError(
            f"{_prefix(where)}cross_entropy needs one-hot targets with C >= 2 classes, got shape {Y.shape}; "
            "encode class labels one-hot (n, C) or use --loss squared")
    if loss == "hinge" and not np.all(np.abs(Y) == 1):
        raise ValueError(f"{_prefix(where)}hinge loss needs targets in {{-1, +1}}; recode the labels "
                         "(e.g. 2*onehot - 1)")


# ----------------------------------------------------------------------------------------------
# losses and objectives in numpy
# ----------------------------------------------------------------------------------------------

def loss_value(F: np.ndarray, Y: np.ndarray, loss: str = "squared") -> float:
    """Data term ℓ(F, Y) in the paper convention (½‖F−Y‖², summed softmax CE, or summed hinge)."""
    F = np.asarray(F, dtype=np.float64).reshape(Y.shape)
    if loss == "squared":
        return float(0.5 * np.sum((F - Y) ** 2))
    if loss == "cross_entropy":
        mx = F.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.sum(np.exp(F - mx), axis=1))
        return float(np.sum(Y.sum(axis=1) * lse) - np.sum(Y * F))
    if loss == "hinge":
        return float(np.sum(np.maximum(0.0, 1.0 - Y * F)))
    raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


def loss_cvxpy(F: cp.Expression, Y: np.ndarray, loss: str = "squared") -> cp.Expression:
    """Data term ℓ(F, Y) as a CVXPY expression, the same function as `loss_value` (one-hot Y for CE)."""
    if loss == "squared":
        return 0.5 * cp.sum_squares(F - Y)
    if loss == "cross_entropy":
        return cp.sum(cp.log_sum_exp(F, axis=1)) - cp.sum(cp.multiply(Y, F))
    if loss == "hinge":
        return cp.sum(cp.pos(1.0 - cp.multiply(Y, F)))
    raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")


#: Objective of a real torch BN network by a train-mode forward pass (kept name; see networks).
network_objective = evaluate_objective


def c2_predictions(Ut: np.ndarray, masks: np.ndarray, u: np.ndarray, up: np.ndarray) -> np.ndarray:
    """F = Σ_i D_i U' (u_i − u'_i) as an (n, C) array."""
    return np.einsum("np,nq,pqc->nc", np.asarray(masks, dtype=np.float64), Ut, u - up, optimize=True)


def c2_objective(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, u: np.ndarray,
                 up: np.ndarray, loss: str = "squared") -> float:
    """Objective of (C2) recomputed in numpy from the blocks u, u' of shape (P, q, C)."""
    Y = as_targets(Y, Ut.shape[0])
    F = c2_predictions(Ut, masks, u, up)
    reg = np.sum(np.linalg.norm(u, axis=1)) + np.sum(np.linalg.norm(up, axis=1))
    return loss_value(F, Y, loss) + float(beta) * float(reg)


def cone_violation(Ut: np.ndarray, masks: np.ndarray, u: np.ndarray, up: np.ndarray) -> float:
    """max over blocks of the violation max(0, −(2D_i − I) U' u_i) (absolute)."""
    sign = 2.0 * np.asarray(masks, dtype=np.float64) - 1.0  # (n, P)
    worst = 0.0
    for blocks in (u, up):
        H = np.einsum("nq,pqc->npc", Ut, blocks, optimize=True) * sign[:, :, None]
        worst = max(worst, float(np.max(-H, initial=0.0)))
    return worst


# ----------------------------------------------------------------------------------------------
# program (C2)
# ----------------------------------------------------------------------------------------------

def _pattern_matrices(Ut: np.ndarray, masks: np.ndarray) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Sparse A = [D_1 U', …, D_P U'] (n × P·q) and block-diagonal B = diag((2D_i − I) U') (n·P × P·q)."""
    n, q = Ut.shape
    P = masks.shape[1]
    cols_q = np.arange(q)
    rows, pats = np.nonzero(masks)  # active (sample, pattern) pairs
    A = sp.csr_matrix(
        (Ut[rows].ravel(), (np.repeat(rows, q), (pats[:, None] * q + cols_q).ravel())), shape=(n, P * q))
    sign = np.where(masks, 1.0, -1.0)  # (n, P)
    r_all, p_all = np.meshgrid(np.arange(n), np.arange(P), indexing="ij")
    r_all, p_all = r_all.ravel(), p_all.ravel()
    data = (sign[r_all, p_all][:, None] * Ut[r_all]).ravel()
    B = sp.csr_matrix(
        (data, (np.repeat(p_all * n + r_all, q), (p_all[:, None] * q + cols_q).ravel())), shape=(n * P, P * q))
    return A, B


def c2_problem(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, loss: str = "squared") -> C2Program:
    """Build (C2) in CVXPY with sparse pattern matrices (one matrix product per variable, fast compile).

    Vector output: decoupled per-class blocks (our choice for ambiguity A5, see module docstring).
    """
    Ut = np.asarray(Ut, dtype=np.float64)
    n, q = Ut.shape
    Y = as_targets(Y, n)
    check_loss_targets(Y, loss)
    beta = check_beta(beta)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2 or masks.shape[0] != n or masks.shape[1] < 1:
        raise ValueError(f"masks must be an (n={n}, P>=1) boolean matrix, got shape {masks.shape}")
    P, C = masks.shape[1], Y.shape[1]
    A, B = _pattern_matrices(Ut, masks)
    u = cp.Variable((P * q, C), name="u")
    up = cp.Variable((P * q, C), name="u_prime")
    data = loss_cvxpy(A @ (u - up), Y, loss)
    # column (i + c·P) of the Fortran reshape is block (i, c)
    norms = cp.norm(cp.reshape(u, (q, P * C), order="F"), 2, axis=0) + \
        cp.norm(cp.reshape(up, (q, P * C), order="F"), 2, axis=0)
    problem = cp.Problem(cp.Minimize(data + beta * cp.sum(norms)), [B @ u >= 0, B @ up >= 0])
    return C2Program(problem=problem, u=u, up=up, P=P, q=q, C=C)


def solve_c2(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, solver: str = "auto",
             loss: str = "squared", tol: float = 1e-6, **options: Any
             ) -> tuple[np.ndarray | None, np.ndarray | None, SolveRecord]:
    """Solve (C2) → (u, u', record); blocks (P, q, C) are None when the solver returned no point.

    `solver` is any name `resolve_solver` accepts; "fast" uses `convexbn.solver.solve_c2_fast` with
    relative-gap target `tol`. Conic solvers use the accurate settings of `convexbn.solvers` (`tol`
    is not used for them); extra keyword options go to the solver. Never raises on solver failure:
    the status is recorded (record.extra holds "cone_violation" and, for "fast", "gap").
    """
    t0 = time.perf_counter()
    name, reason = resolve_solver(solver)
    log.info("solver %s (%s)", name, reason)
    Ut = np.asarray(Ut, dtype=np.float64)
    Y = as_targets(Y, Ut.shape[0])
    masks = np.asarray(masks, dtype=bool)
    if name == "fast":
        from convexbn.solver import solve_c2_fast  # lazy: optional heavy module

        check_loss_targets(Y, loss)
        sol = solve_c2_fast(Ut, Y, check_beta(beta), masks, tol=tol, loss=loss, **options)
        u, up = np.asarray(sol.u, dtype=np.float64), np.asarray(sol.up, dtype=np.float64)
        record = SolveRecord(
            solver="fast", status=str(sol.status), seconds=time.perf_counter() - t0,
            iterations=int(sol.iterations), objective=float(sol.objective), reason=reason,
            extra={"gap": float(sol.gap), "cone_violation": float(sol.cone_violation),
                   "solver_seconds": float(sol.seconds), "history": list(sol.history)})
    else:
        prog = c2_problem(Ut, Y, beta, masks, loss)
        record = solve_problem(prog.problem, name, **{**C2_SOLVER_OPTIONS.get(name, {}), **options})
        record.reason = reason
        record.extra["solver_seconds"] = record.seconds
        u, up = prog.blocks()
        if u is not None:
            record.extra["cone_violation"] = cone_violation(Ut, masks, u, up)
        record.seconds = time.perf_counter() - t0  # construction + compilation + solve
    if record.status != "optimal":
        log.warning("(C2) solve with %s ended with status %r (not certified optimal)", record.solver, record.status)
    return u, up, record


# ----------------------------------------------------------------------------------------------
# reconstruction and prediction
# ----------------------------------------------------------------------------------------------

def reconstruct_before(wh: Whitening, u: np.ndarray, up: np.ndarray, tol: float = 1e-9) -> BNParams:
    """BN-before-ReLU network from (C2) blocks: one neuron per block with norm > tol·(largest norm).

    Block b of class c gives s = b/√‖b‖ and v = ±√‖b‖ e_c (+ for u, − for u'); then γ = ‖s_{1:k}‖,
    α = s_{k+1} (the bias coordinate) and w = V Σ⁻¹ s_{1:k} (works for truncated whitening k < r).
    """
    u = np.asarray(u, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    if u.ndim != 3 or u.shape != up.shape:
        raise ValueError(f"blocks u, u' must both have shape (P, q, C), got {u.shape} and {up.shape}")
    P, q, C = u.shape
    if q != wh.q:
        raise ValueError(f"blocks have q={q} coordinates but the whitening has q=k+1={wh.q}; use the same whitening")
    cols: list[np.ndarray] = []
    outs: list[np.ndarray] = []
    nu, nup = np.linalg.norm(u, axis=1), np.linalg.norm(up, axis=1)  # (P, C)
    top = max(float(nu.max(initial=0.0)), float(nup.max(initial=0.0)))
    cut = tol * top
    for blocks, norms, sign in ((u, nu, 1.0), (up, nup, -1.0)):
        for i, c in zip(*np.nonzero((norms > cut) & (norms > 0))):
            r = math.sqrt(norms[i, c])
            cols.append(blocks[i, :, c] / r)
            v = np.zeros(C)
            v[c] = sign * r
            outs.append(v)
    m = len(cols)
    S = np.array(cols).T if m else np.zeros((q, 0))
    W = wh.first_layer(S)
    # a pure-shift neuron (s_{1:k} = 0, so γ = 0) still gets a non-zero filter: BN of a constant is 0/0
    zero_cols = np.linalg.norm(W, axis=0) == 0
    if np.any(zero_cols):
        W[:, zero_cols] = wh.V[:, :1] if wh.k else 1.0
    return BNParams(
        W=W,
        gamma=np.linalg.norm(S[: wh.k], axis=0),
        alpha=S[wh.k].copy(),
        V=np.array(outs) if m else np.zeros((0, C)),
    )


def predict_convex_gates(wh: Whitening, arr: Arrangements, u: np.ndarray, up: np.ndarray,
                         Xnew: np.ndarray) -> np.ndarray:
    """The "convex-model" predictor Σ_i 1[φ(x)ᵀg_i ≥ 0] φ(x)ᵀ(u_i − u'_i) with generator gates (A4).

    On training rows it equals the reconstructed network's outputs; out of sample it can differ.
    """
    Phi = wh.features(Xnew)
    gates = Phi @ arr.generators >= 0
    return c2_predictions(Phi, gates, np.asarray(u, dtype=np.float64), np.asarray(up, dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# the two-layer BN-before-ReLU solve
# ----------------------------------------------------------------------------------------------

def beta_max(Ut: np.ndarray, Y: np.ndarray, masks: np.ndarray) -> float:
    """max_{i,c} ‖U'ᵀ D_i y_c‖: for β at or above it the zero network is optimal for the squared loss
    (u = u' = 0 satisfies the optimality conditions: the dual point λ = y is feasible)."""
    Y = as_targets(Y, Ut.shape[0])
    G = np.einsum("np,nq,nc->pqc", np.asarray(masks, dtype=np.float64), Ut, Y, optimize=True)
    return float(np.max(np.linalg.norm(G, axis=1), initial=0.0))


def zero_is_optimal(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, loss: str = "squared") -> bool:
    """Whether the zero network is a certified optimum of (C2) (squared loss and β ≥ β_max)."""
    return loss == "squared" and float(beta) >= beta_max(Ut, Y, masks)


def _zero_solution(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, solver: str,
                   t0: float) -> tuple[np.ndarray, np.ndarray, SolveRecord]:
    """The zero blocks and a record certifying them, without calling a conic solver."""
    shape = (masks.shape[1], Ut.shape[1], Y.shape[1])
    bmax = beta_max(Ut, Y, masks)
    reason = (f"beta {beta:g} >= beta_max {bmax:.6g}: the zero network is the certified optimum "
              f"(no solver needed; {solver} was not called)")
    log.info("%s", reason)
    record = SolveRecord(solver="zero (beta >= beta_max)", status="optimal", seconds=time.perf_counter() - t0,
                         iterations=0, objective=loss_value(np.zeros_like(Y), Y, "squared"), reason=reason,
                         extra={"beta_max": bmax, "cone_violation": 0.0, "gap": 0.0})
    return np.zeros(shape), np.zeros(shape), record


def solve_two_layer(X: np.ndarray, Y: np.ndarray, beta: float, *, arrangements: str | int = "exact",
                    truncate: int | None = None, solver: str = "auto", seed: int = 0, loss: str = "squared",
                    bias: str = "unit", whitening: Whitening | None = None, arr: Arrangements | None = None,
                    tol: float = 1e-6, prune_tol: float = 1e-9, **options: Any) -> ConvexResult:
    """Whiten (top-k), build arrangements (exact or N seeded samples), solve (C2), reconstruct the BN net.

    `record.seconds` is the wall time of the whole call (whitening, arrangements, construction,
    compilation, solve, reconstruction). A status other than "optimal" is kept in `record.status`
    and `extra["certified"]` is False; parameters are still reconstructed whenever the solver returned
    a point (e.g. "optimal_inaccurate"), and are None otherwise (objective NaN then).
    """
    t0 = time.perf_counter()
    X = as_data_matrix(X, "solve_two_layer")
    Y = as_targets(Y, X.shape[0])
    beta = check_beta(beta)
    check_loss_targets(Y, loss)
    resolve_solver(solver)  # fail fast on solver name/licence problems, before any heavy work
    wh = whitening if whitening is not None else whiten(X, k=truncate, bias=bias)  # type: ignore[arg-type]
    if wh.n != X.shape[0]:
        raise ValueError(f"the given whitening was fitted on n={wh.n} samples but X has {X.shape[0]} rows")
    Ut = wh.features(X)
    t_wh = time.perf_counter()
    if arr is None:
        arr = arrangements_for(Ut, arrangements, seed=seed)
    elif arr.masks.shape[0] != X.shape[0]:
        raise ValueError(f"the given arrangements have {arr.masks.shape[0]} rows but X has {X.shape[0]}")
    t_arr = time.perf_counter()
    if zero_is_optimal(Ut, Y, beta, arr.masks, loss):
        u, up, record = _zero_solution(Ut, Y, beta, arr.masks, solver, t0)
    else:
        u, up, record = solve_c2(Ut, Y, beta, arr.masks, solver=solver, loss=loss, tol=tol, **options)
    t_solve = time.perf_counter()
    extra: dict[str, Any] = {"whitening": wh, "arrangements": arr, "u": u, "up": up,
                             "certified": record.status == "optimal", "loss": loss}
    if u is None or up is None or not (np.all(np.isfinite(u)) and np.all(np.isfinite(up))):
        params, objective, neurons = None, float("nan"), 0
        extra["warning"] = f"solver {record.solver} returned no usable point (status {record.status})"
    else:
        objective = c2_objective(Ut, Y, beta, arr.masks, u, up, loss)
        params = reconstruct_before(wh, u, up, tol=prune_tol)
        neurons = params.width
        if record.status != "optimal":
            extra["warning"] = (f"status {record.status}: solution not certified optimal; "
                                "parameters reconstructed from the returned point")
    record.seconds = time.perf_counter() - t0
    extra["timings"] = {"whitening": t_wh - t0, "arrangements": t_arr - t_wh, "solve": t_solve - t_arr,
                        "reconstruct": time.perf_counter() - t_solve}
    return ConvexResult(objective=objective, record=record, params=params, neurons=neurons,
                        arrangements=arr.count, extra=extra)


# ----------------------------------------------------------------------------------------------
# closed forms (n ≤ d, rank(JX) = n − 1)
# ----------------------------------------------------------------------------------------------

def _shrink_term(norm: float, beta: float) -> float:
    """Optimal value of one sign part: β‖y‖ − β²/2 if ‖y‖ > β else ‖y‖²/2."""
    return beta * norm - 0.5 * beta**2 if norm > beta else 0.5 * norm**2


def closed_form(X: np.ndarray, Y: np.ndarray, beta: float, bias: str = "unit") -> ConvexResult:
    """Closed-form optimum and weights when rank(JX) = n − 1 (e.g. n ≤ d): §3.3 scalar, §3.4 one-hot.

    Scalar y: one neuron for y_+ (v > 0) and one for y_− (v < 0) when their norms exceed β.
    One-hot Y (n, C): one neuron per class k with ‖y_k‖ > β, v = √(‖y_k‖ − β) e_k.
    Raises ValueError when JX is rank deficient, Y has C > 1 columns but is not one-hot, or bias != "unit".
    """
    t0 = time.perf_counter()
    X = as_data_matrix(X, "closed_form")
    n = X.shape[0]
    Y = as_targets(Y, n)
    beta = check_beta(beta)
    if bias != "unit":
        raise ValueError(f"the closed form holds for bias='unit' (orthonormal U') only, got {bias!r}; "
                         "use solve_two_layer for other bias scalings")
    wh = whiten(X, bias="unit")
    if wh.rank != n - 1:
        raise ValueError(
            f"closed form needs rank(JX) = n-1 = {n - 1} (high-dimensional regime n <= d), but rank(JX) = "
            f"{wh.rank} for X of shape {X.shape}; use solve_two_layer (the convex program) instead")
    C = Y.shape[1]
    if C == 1:
        y = Y[:, 0]
        parts = [(np.maximum(y, 0.0), 0, 1.0), (np.maximum(-y, 0.0), 0, -1.0)]
    else:
        if not is_one_hot(Y):
            raise ValueError(f"the vector-output closed form needs one-hot targets (each row a single 1), "
                             f"got a {Y.shape} matrix that is not one-hot; use solve_two_layer instead")
        parts = [(Y[:, k].copy(), k, 1.0) for k in range(C)]
    U = wh.features(X)[:, : wh.k]
    cols, outs, F = [], [], np.zeros_like(Y)
    objective = 0.0
    for ys, k, sign in parts:
        norm = float(np.linalg.norm(ys))
        objective += _shrink_term(norm, beta)
        if norm <= beta:
            continue
        scale = math.sqrt(norm - beta)
        # s: BN output U' s = scale · y_s/‖y_s‖ ; s = U'ᵀ (scale · y_s/‖y_s‖) since U' is orthogonal
        s = np.concatenate([U.T @ ys, [ys.sum() * wh.bias_value]]) * (scale / norm)
        cols.append(s)
        v = np.zeros(C)
        v[k] = sign * scale
        outs.append(v)
        F[:, k] += sign * (1.0 - beta / norm) * ys
    m = len(cols)
    S = np.array(cols).T if m else np.zeros((wh.q, 0))
    params = BNParams(W=wh.first_layer(S), gamma=np.linalg.norm(S[: wh.k], axis=0), alpha=S[wh.k].copy(),
                      V=np.array(outs) if m else np.zeros((0, C)))
    seconds = time.perf_counter() - t0
    record = SolveRecord(solver="closed-form", status="optimal", seconds=seconds, iterations=0,
                         objective=objective, reason="closed form (rank(JX) = n-1)")
    return ConvexResult(objective=objective, record=record, params=params, neurons=m, arrangements=0,
                        extra={"whitening": wh, "prediction": F, "certified": True, "loss": "squared"})


def convex_outputs(Phi: np.ndarray, u: np.ndarray, up: np.ndarray, generators: np.ndarray | None = None,
                   predictor: str = "network", chunk_elems: int = 20_000_000) -> np.ndarray:
    """Outputs Σ_i (Φu_i)_+ − (Φu'_i)_+ (= the reconstructed BN net, A4 'network') or generator-gated ones."""
    Phi = np.asarray(Phi, dtype=np.float64)
    P, q, C = u.shape
    if predictor not in ("network", "generator"):
        raise ValueError(f"predictor={predictor!r}; choose 'network' (reconstructed BN net) or 'generator'")
    rows = max(1, chunk_elems // max(1, P * C))
    out = np.empty((Phi.shape[0], C))
    flat = lambda B: np.ascontiguousarray(B.transpose(1, 0, 2)).reshape(q, P * C)  # noqa: E731  (q, P·C) for BLAS
    Uf, Upf, Df = flat(u), flat(up), flat(u - up)
    for s in range(0, Phi.shape[0], rows):
        F = Phi[s:s + rows]
        if predictor == "network":
            a = (F @ Uf).reshape(-1, P, C)
            b = (F @ Upf).reshape(-1, P, C)
            out[s:s + rows] = np.maximum(a, 0).sum(1) - np.maximum(b, 0).sum(1)
        else:
            gates = (F @ generators >= 0).astype(np.float64)  # (n, P)
            out[s:s + rows] = np.einsum("np,npc->nc", gates, (F @ Df).reshape(-1, P, C))
    return out


def block_norms(u: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(2P, C) norms of the blocks u_i and u'_i of a (C2) solution, per class."""
    return np.concatenate([np.linalg.norm(u, axis=1), np.linalg.norm(up, axis=1)], axis=0)


def sparsify_blocks(Ut: np.ndarray, masks: np.ndarray, u: np.ndarray, up: np.ndarray,
                    rel_tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray, str]:
    """A sparsest-vertex optimal solution with the same fit and norm sum (LP over block magnitudes).

    Interior-point solvers return non-sparse optima; keeping each active block's direction fixed, any
    magnitudes t ≥ 0 reproducing the optimal fit with Σt equal to the optimum is optimal too, and a
    vertex of that LP has at most n·C non-zero blocks.
    """
    from scipy.optimize import linprog

    P, q, C = u.shape
    n = Ut.shape[0]
    norms = block_norms(u, up)
    idx = np.argwhere(norms > rel_tol * max(float(norms.max()), 1e-300))  # (b, 2) rows: (block, class)
    if idx.shape[0] == 0:
        return u, up, "empty"
    cols, mags = [], []
    for blk, c in idx:
        i, sgn = (blk, 1.0) if blk < P else (blk - P, -1.0)
        vec = (u if sgn > 0 else up)[i, :, c]
        t = float(np.linalg.norm(vec))
        col = np.zeros((n, C))
        col[:, c] = sgn * masks[:, i] * (Ut @ (vec / t))
        cols.append(col.ravel())
        mags.append(t)
    A = np.stack(cols, axis=1)
    t0 = np.array(mags)
    res = linprog(np.ones(len(t0)), A_eq=A, b_eq=A @ t0, bounds=(0, None), method="highs-ds")
    if res.status != 0 or res.x is None or res.fun > t0.sum() * (1 + 1e-9) + 1e-12:
        return u, up, f"lp_failed:{res.message}"
    t = np.where(res.x > 1e-12 * t0.max(), res.x, 0.0)
    u2, up2 = np.zeros_like(u), np.zeros_like(up)
    for (blk, c), tk, t_old in zip(idx, t, t0):
        if blk < P:
            u2[blk, :, c] = u[blk, :, c] / t_old * tk
        else:
            up2[blk - P, :, c] = up[blk - P, :, c] / t_old * tk
    return u2, up2, "ok"
