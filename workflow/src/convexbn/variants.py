"""Convex programs for the other architectures of the paper: BN after the ReLU, a BN-CNN, deep BN nets.

Conventions are those of the whole package (paper.md §2.2): BN(h) = γ·Jh/‖Jh‖ + α·c·1 with c = 1/√N
for a batch of N rows, objective ½‖f − Y‖²_F + (β/2)·Σ(γ² + α² + ‖v‖²). Vector outputs use the
decoupled per-class convex form (ambiguity A5): every block, hence every reconstructed neuron, feeds
exactly one class.

* BN after ReLU (§2.7, §3.7): `solve_bn_after_relu`, arrangements of X itself (no bias in the ReLU).
* CNN with BN and sum pooling (§2.6, §3.6): `extract_patches_1d`, `BNConvNet`, `solve_cnn`; BN
  statistics over all n·K (sample, position) pairs, so the whitening is of the stacked patches M.
* Deep BN networks (§2.5, §3.5): `DeepBNNet`, `solve_deep_last_two` (last two layers convexified
  with program (C2) for fixed earlier layers). Penalty (our choice for ambiguity A2): (γ, α) of every
  BN layer in paper convention plus the output weights; hidden Linear weights are not penalised.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from convexbn.arrangements import Arrangements, arrangements_for
from convexbn.networks import BNParams, Loss, PaperBNNet, load_paper_params, set_running_stats
from convexbn.programs import (
    ConvexResult,
    as_targets,
    check_beta,
    check_loss_targets,
    loss_cvxpy,
    loss_value,
    reconstruct_before,
)
from convexbn.conic import SolveRecord, SolverError, resolve_solver, solve_problem
from convexbn.whitening import BiasColumn, Whitening, as_data_matrix, whiten

log = logging.getLogger("convexbn.variants")

ArrangementSpec = str | int

_FAST_HELP = (
    "solver 'fast' (convexbn's first-order solver) only implements program (C2) of the two-layer "
    "BN-before-ReLU network; for the BN-after-ReLU and CNN programs use a conic solver: "
    "'auto', 'CLARABEL' or 'MOSEK'"
)


# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------


def _targets(Y: np.ndarray, n: int, loss: str, where: str) -> np.ndarray:
    """Y as an (n, C) float64 matrix suited to `loss` (shared checks of `convexbn.programs`)."""
    Y = as_targets(Y, n, where)
    check_loss_targets(Y, loss, where)
    return Y


def _conic_solver(solver: str) -> tuple[str, str]:
    """Resolve (and log) a solver name, refusing 'fast' (not implemented for these programs)."""
    name, reason = resolve_solver(solver)
    if name == "fast":
        raise SolverError(_FAST_HELP)
    log.info("solver %s (%s)", name, reason)
    return name, reason


def _bias_value(bias: BiasColumn, N: int, where: str) -> float:
    """c of the BN shift α·c·1: 1/√N ('unit', paper convention) or 1 ('ones', ambiguity A1)."""
    if bias == "unit":
        return 1.0 / math.sqrt(N)
    if bias == "ones":
        return 1.0
    raise ValueError(f"{where}: bias must be 'unit' (c = 1/sqrt(N)) or 'ones' (c = 1), got {bias!r}")


def _run_conic(problem: cp.Problem, name: str, reason: str, extra: dict[str, Any]) -> SolveRecord:
    """Solve with a resolved conic solver; note reason, solver time, certification and a non-optimal warning."""
    record = solve_problem(problem, name)
    record.reason = "; ".join(x for x in (reason, record.reason) if x)
    record.extra["solver_seconds"] = record.seconds
    extra.update({"solver_seconds": record.seconds, "certified": record.status == "optimal"})
    if record.status != "optimal":
        extra["warning"] = f"solver {name} ended with status {record.status}: solution not certified optimal"
    return record


def _failed(record: SolveRecord, P: int, extra: dict[str, Any], t_start: float) -> ConvexResult | None:
    """A ConvexResult (objective NaN, no network) when the solver returned no point, else None."""
    if record.status in ("optimal", "optimal_inaccurate"):
        return None
    record.seconds = time.perf_counter() - t_start
    return ConvexResult(objective=float("nan"), record=record, params=None, neurons=0, arrangements=P, extra=extra)


def _keep(norms: np.ndarray, tol: float, top: float) -> np.ndarray:
    """Boolean mask of blocks whose norm exceeds tol × top (top = the largest norm of every block kind)."""
    return norms > tol * top if top > 0 else np.zeros(norms.shape, dtype=bool)


def _zero_params(d: int, C: int) -> BNParams:
    """A one-neuron network that outputs 0 with zero penalty (used when every block is zero)."""
    W = np.zeros((d, 1))
    W[0, 0] = 1.0
    return BNParams(W=W, gamma=np.zeros(1), alpha=np.zeros(1), V=np.zeros((1, C)))


# --------------------------------------------------------------------------------------------------
# BN after ReLU (§3.7)
# --------------------------------------------------------------------------------------------------


def _row_space(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(X V_r, V_r): X expressed in its row space (same sign patterns, full column rank)."""
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    tol = max(X.shape) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
    r = int(np.sum(s > tol))
    if r == 0:
        raise ValueError("solve_bn_after_relu: X is (numerically) zero, so every ReLU output is constant")
    Vr = Vt[:r].T
    return X @ Vr, Vr


def relu_arrangements(X: np.ndarray, spec: ArrangementSpec = "exact", seed: int = 0) -> Arrangements:
    """Sign patterns 1[X g ≥ 0] of X itself (no bias column): exact for small rank, else sampled."""
    X = np.asarray(X, dtype=np.float64)
    A, Vr = _row_space(X)
    arr = arrangements_for(A, spec, seed=seed)
    return Arrangements(masks=arr.masks, generators=Vr @ arr.generators, exact=arr.exact)


def _after_prediction(X: np.ndarray, masks: np.ndarray, c: float, W: np.ndarray, Wp: np.ndarray,
                      b: np.ndarray, bp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output F (n, C) and block norms (P, C) twice of the BN-after program at given variables.

    W, Wp: (C, d, P); b, bp: (C, P).
    """
    n = X.shape[0]
    C = W.shape[0]
    F = np.empty((n, C))
    norms = np.empty((W.shape[2], C))
    norms_p = np.empty_like(norms)
    for k in range(C):
        Z = masks * (X @ W[k])
        Zp = masks * (X @ Wp[k])
        Z -= Z.mean(axis=0)
        Zp -= Zp.mean(axis=0)
        F[:, k] = (Z - Zp).sum(axis=1) + c * (b[k] - bp[k]).sum()
        norms[:, k] = np.sqrt(np.sum(Z**2, axis=0) + b[k] ** 2)
        norms_p[:, k] = np.sqrt(np.sum(Zp**2, axis=0) + bp[k] ** 2)
    return F, norms, norms_p


def _after_problem(X: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, c: float, loss: str
                   ) -> tuple[cp.Problem, cp.Variable, cp.Variable, cp.Variable, cp.Variable]:
    """CVXPY form of the BN-after program with per-pattern whitening (sparse, fast to compile).

    Uses ‖J D_i X w‖ = ‖R_i w‖ with J D_i X = Q_i R_i, so each cone has d + 1 (not n + 1) entries.
    Variables w, w' (P·d, C) (rows i·d … i·d+d−1 of column k = block (i, k)), b, b' (P, C).
    """
    n, d = X.shape
    P, C = masks.shape[1], Y.shape[1]
    blocks = [masks[:, i:i + 1] * X for i in range(P)]
    JDX = [B - B.mean(axis=0) for B in blocks]
    A = np.hstack(JDX)  # (n, P·d): [J D_1 X, …, J D_P X]
    Rs = [np.linalg.qr(M, mode="r") for M in JDX]  # (min(n, d), d) each
    kr = Rs[0].shape[0]
    R = sp.block_diag(Rs, format="csr")  # (P·kr, P·d)
    S = sp.block_diag([(2.0 * masks[:, i:i + 1] - 1.0) * X for i in range(P)], format="csr")  # (P·n, P·d)
    w, wp = cp.Variable((P * d, C), name="w"), cp.Variable((P * d, C), name="w_prime")
    b, bp = cp.Variable((P, C), name="b"), cp.Variable((P, C), name="b_prime")
    shift = np.ones((n, 1)) @ cp.reshape(cp.sum(b - bp, axis=0), (1, C), order="F")
    F = A @ (w - wp) + c * shift
    pen = 0
    for var, bias in ((w, b), (wp, bp)):  # Fortran reshape: column i + k·P is block (i, k)
        stacked = cp.vstack([cp.reshape(R @ var, (kr, P * C), order="F"), cp.reshape(bias, (1, P * C), order="F")])
        pen = pen + cp.sum(cp.norm(stacked, 2, axis=0))
    problem = cp.Problem(cp.Minimize(loss_cvxpy(F, Y, loss) + beta * pen), [S @ w >= 0, S @ wp >= 0])
    return problem, w, wp, b, bp


def solve_bn_after_relu(
    X: np.ndarray,
    Y: np.ndarray,
    beta: float,
    *,
    arrangements: ArrangementSpec = "exact",
    seed: int = 0,
    solver: str = "auto",
    loss: Loss = "squared",
    bias: BiasColumn = "unit",
    arr: Arrangements | None = None,
    tol: float = 1e-8,
) -> ConvexResult:
    """Exact convex program of the two-layer network with BN after the ReLU (paper.md §3.7).

    Variables per arrangement D_i of X and class k: w_i, w'_i ∈ R^d, b_i, b'_i ∈ R; objective
    ℓ(Σ_i J D_i X (w_i − w'_i) + c Σ_i (b_i − b'_i) 1, y) + β Σ_i (‖[J D_i X w_i; b_i]‖ + ‖[J D_i X w'_i; b'_i]‖)
    s.t. (2D_i − I) X w_i ≥ 0, (2D_i − I) X w'_i ≥ 0. `params` is for
    `networks.bn_mlp_from_params(..., placement="after")`; blocks below tol × the largest are dropped.
    """
    t_start = time.perf_counter()
    where = "solve_bn_after_relu"
    X = as_data_matrix(X, where)
    n, d = X.shape
    Y = _targets(Y, n, loss, where)
    beta = check_beta(beta, positive=True, where=where)
    C = Y.shape[1]
    c = _bias_value(bias, n, where)
    name, reason = _conic_solver(solver)
    if arr is None:
        arr = relu_arrangements(X, arrangements, seed=seed)
    masks = arr.masks.astype(np.float64)
    P = arr.count
    if P == 0:
        raise ValueError(f"{where}: no non-empty activation pattern of X; check the data")
    problem, w, wp, bv, bpv = _after_problem(X, Y, beta, masks, c, loss)
    extra: dict[str, Any] = {"arrangements": arr, "bias_value": c}
    record = _run_conic(problem, name, reason, extra)
    if (failed := _failed(record, P, extra, t_start)) is not None:
        return failed

    W = w.value.reshape(P, d, C).transpose(2, 1, 0).copy()  # (C, d, P)
    Wp = wp.value.reshape(P, d, C).transpose(2, 1, 0).copy()
    b = bv.value.T.copy()  # (C, P)
    bp = bpv.value.T.copy()
    _, norms, norms_p = _after_prediction(X, masks, c, W, Wp, b, bp)
    top = max(norms.max(), norms_p.max())
    keep, keep_p = _keep(norms, tol, top), _keep(norms_p, tol, top)
    W[np.broadcast_to(~keep.T[:, None, :], W.shape)] = 0.0
    Wp[np.broadcast_to(~keep_p.T[:, None, :], Wp.shape)] = 0.0
    b[~keep.T] = 0.0
    bp[~keep_p.T] = 0.0
    F_val, norms, norms_p = _after_prediction(X, masks, c, W, Wp, b, bp)
    objective = loss_value(F_val, Y, loss) + beta * float(norms.sum() + norms_p.sum())

    params = _reconstruct_after(X, masks, arr.generators, W, Wp, b, bp, norms, norms_p, keep, keep_p)
    extra.update({"W": W, "Wp": Wp, "b": b, "bp": bp, "block_norms": norms, "block_norms_p": norms_p})
    record.seconds = time.perf_counter() - t_start
    return ConvexResult(objective=objective, record=record, params=params,
                        neurons=int(keep.sum() + keep_p.sum()), arrangements=P, extra=extra)


def _reconstruct_after(X: np.ndarray, masks: np.ndarray, G: np.ndarray, W: np.ndarray, Wp: np.ndarray,
                       b: np.ndarray, bp: np.ndarray, norms: np.ndarray, norms_p: np.ndarray,
                       keep: np.ndarray, keep_p: np.ndarray) -> BNParams:
    """One BN-after neuron per kept block: v = ±√t, γ = ‖J D X w‖/√t, α = b/√t, weight w (t = block norm)."""
    C, d, P = W.shape
    cols, gammas, alphas, vs = [], [], [], []
    for k in range(C):
        for sign, WW, bb, nn_, kk in ((1.0, W, b, norms, keep), (-1.0, Wp, bp, norms_p, keep_p)):
            for i in np.flatnonzero(kk[:, k]):
                t = float(nn_[i, k])
                w = WW[k, :, i]
                Z = masks[:, i] * (X @ w)
                a = float(np.linalg.norm(Z - Z.mean()))
                if a <= 1e-12 * t or not np.any(w):  # pure shift neuron: γ = 0, any weight works
                    a, w = 0.0, G[:, i].copy()
                cols.append(w)
                gammas.append(a / math.sqrt(t))
                alphas.append(float(bb[k, i]) / math.sqrt(t))
                v = np.zeros(C)
                v[k] = sign * math.sqrt(t)
                vs.append(v)
    if not cols:
        return _zero_params(d, C)
    return BNParams(W=np.stack(cols, axis=1), gamma=np.array(gammas), alpha=np.array(alphas), V=np.stack(vs))


# --------------------------------------------------------------------------------------------------
# CNN with BN, sum pooling (§3.6)
# --------------------------------------------------------------------------------------------------


def extract_patches_1d(X: np.ndarray, size: int, stride: int = 1) -> np.ndarray:
    """Sliding-window patches of 1-D signals: X (n, L) → (n, K, size); X (n, ch, L) → (n, K, ch·size).

    K = ⌊(L − size)/stride⌋ + 1; patch k covers positions k·stride … k·stride + size − 1.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim not in (2, 3):
        raise ValueError(f"extract_patches_1d: X must be (n, L) or (n, channels, L), got shape {X.shape}")
    L = X.shape[-1]
    for label, val in (("size", size), ("stride", stride)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"extract_patches_1d: patch {label} must be a positive integer, got {val!r}")
    if size > L:
        raise ValueError(f"extract_patches_1d: patch size {size} exceeds the signal length {L}; "
                         f"choose size <= {L}")
    K = (L - size) // stride + 1
    starts = np.arange(K) * stride
    idx = starts[:, None] + np.arange(size)[None, :]  # (K, size)
    if X.ndim == 2:
        return X[:, idx].copy()  # (n, K, size)
    patches = X[:, :, idx]  # (n, ch, K, size)
    return np.ascontiguousarray(patches.transpose(0, 2, 1, 3).reshape(X.shape[0], K, -1))


class BNConvNet(PaperBNNet):
    """Patches (n, K, h) → shared filters Linear(h, m) → BatchNorm1d over n·K rows → ReLU → Σ_k → Linear(m, C).

    Paper convention (N = n·K rows): γ = √N·γ_torch, α = β_torch / c with c = 1/√N by default.
    """

    def __init__(self, h: int, m: int, C: int = 1, eps: float = 1e-5, bias_value: float | None = None) -> None:
        super().__init__()
        if h < 1 or m < 1 or C < 1:
            raise ValueError(f"BNConvNet: h, m and C must be positive, got h={h}, m={m}, C={C}")
        self.filters = nn.Linear(h, m, bias=False)
        self.bn = nn.BatchNorm1d(m, eps=eps, momentum=None)
        self.head = nn.Linear(m, C, bias=False)
        self.bias_value = bias_value

    def forward(self, P: torch.Tensor) -> torch.Tensor:
        """Network output (n, C) for patches P (n, K, h)."""
        n, K, _ = P.shape
        z = self.filters(P).reshape(n * K, -1)
        a = torch.relu(self.bn(z)).reshape(n, K, -1).sum(dim=1)
        return self.head(a)

    def paper_bn(self, N: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ, α) in paper convention for N = n·K BN rows."""
        return self.paper_bn_of(self.bn, N)

    def bn_rows(self, X: torch.Tensor) -> int:
        """BN normalises over all n·K (sample, position) rows of the patches X (n, K, h)."""
        return int(X.shape[0] * X.shape[1])

    def penalty(self, N: int) -> torch.Tensor:
        """Σ_j (γ_j² + α_j² + ‖v_j‖²) in paper convention for N = n·K BN rows."""
        gamma, alpha = self.paper_bn(N)
        return torch.sum(gamma**2) + torch.sum(alpha**2) + torch.sum(self.head.weight**2)

    def decayed_weights(self) -> list[torch.Tensor]:
        """The shared filters."""
        return [self.filters.weight]


def _check_patches(patches: np.ndarray, where: str) -> np.ndarray:
    """Patches as a finite (n, K, h) float64 array."""
    patches = np.asarray(patches, dtype=np.float64)
    if patches.ndim != 3 or patches.shape[0] < 1 or min(patches.shape) < 1:
        raise ValueError(f"{where}: patches must be an (n, K, h) array (see extract_patches_1d), got {patches.shape}")
    if patches.shape[0] * patches.shape[1] < 2:
        raise ValueError(f"{where}: need at least 2 (sample, position) rows for BN statistics, got {patches.shape}")
    if not np.all(np.isfinite(patches)):
        raise ValueError(f"{where}: patches contain NaN or infinite values")
    return patches


def cnn_whitening(patches: np.ndarray, truncate: int | None = None, bias: BiasColumn = "unit") -> Whitening:
    """Whitening of the stacked patch matrix M (n·K × h), rows ordered (sample, position)."""
    patches = _check_patches(patches, "cnn_whitening")
    n, K, h = patches.shape
    return whiten(patches.reshape(n * K, h), k=truncate, bias=bias)


def bn_conv_from_params(params: BNParams, patches: np.ndarray, bias_value: float | None = None,
                        eps: float = 1e-5, dtype: torch.dtype = torch.float64,
                        device: torch.device | str | None = None) -> BNConvNet:
    """A real `BNConvNet` holding paper-convention `params`, filters scaled so BN eps is negligible."""
    patches = _check_patches(patches, "bn_conv_from_params")
    n, K, h = patches.shape
    N = n * K
    m, C = params.V.shape
    net = BNConvNet(h, m, C, eps=eps, bias_value=bias_value).to(dtype=dtype, device=device or "cpu")
    load_paper_params(net.filters, net.bn, net.head, params, patches.reshape(N, h), bias_value=bias_value)
    set_running_stats(net, torch.as_tensor(patches, dtype=dtype, device=net.filters.weight.device))
    return net


def _cnn_problem(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, pool: sp.spmatrix, loss: str
                 ) -> tuple[cp.Problem, cp.Variable, cp.Variable]:
    """CVXPY form of the pooled (C2)-type CNN program with sparse pattern matrices.

    Variables u, u' (P·q, C): rows i·q … i·q+q−1 of column k hold block (i, k).
    """
    N, q = Ut.shape
    P, C = masks.shape[1], Y.shape[1]
    A = pool @ sp.hstack([sp.csr_matrix(masks[:, i:i + 1] * Ut) for i in range(P)], format="csr")  # (n, P·q)
    S = sp.block_diag([(2.0 * masks[:, i:i + 1] - 1.0) * Ut for i in range(P)], format="csr")  # (P·N, P·q)
    u, up = cp.Variable((P * q, C), name="u"), cp.Variable((P * q, C), name="u_prime")
    pen = cp.sum(cp.norm(cp.reshape(u, (q, P * C), order="F"), 2, axis=0)) + \
        cp.sum(cp.norm(cp.reshape(up, (q, P * C), order="F"), 2, axis=0))
    problem = cp.Problem(cp.Minimize(loss_cvxpy(A @ (u - up), Y, loss) + beta * pen), [S @ u >= 0, S @ up >= 0])
    return problem, u, up


def solve_cnn(
    patches: np.ndarray,
    Y: np.ndarray,
    beta: float,
    *,
    arrangements: ArrangementSpec = "exact",
    seed: int = 0,
    solver: str = "auto",
    loss: Loss = "squared",
    bias: BiasColumn = "unit",
    truncate: int | None = None,
    eps: float = 1e-5,
    device: torch.device | str | None = None,
    tol: float = 1e-8,
) -> ConvexResult:
    """Exact convex program of the BN-CNN with sum pooling (paper.md §3.6) and its reconstruction.

    With U' = [U, c·1] from J_{nK} M = U Σ Vᵀ and arrangements D_i of the rows of U':
    min ℓ(Σ_i S D_i U'(u_i − u'_i), y) + β Σ_i (‖u_i‖ + ‖u'_i‖)
    s.t. (2D_i − I) U' u_i ≥ 0, (2D_i − I) U' u'_i ≥ 0, with S = sum over positions.
    extra["network"] is a `BNConvNet` whose train-mode objective is the optimum.
    """
    t_start = time.perf_counter()
    where = "solve_cnn"
    patches = _check_patches(patches, where)
    n, K, h = patches.shape
    N = n * K
    Y = _targets(Y, n, loss, where)
    beta = check_beta(beta, positive=True, where=where)
    C = Y.shape[1]
    name, reason = _conic_solver(solver)
    _bias_value(bias, N, where)
    wh = cnn_whitening(patches, truncate=truncate, bias=bias)
    Ut = wh.features(patches.reshape(N, h))  # (N, q)
    arr = arrangements_for(Ut, arrangements, seed=seed)
    P, q = arr.count, wh.q
    masks = arr.masks.astype(np.float64)
    pool = sp.kron(sp.eye(n), np.ones((1, K)), format="csr")  # (n, N): sum over positions

    problem, uv, upv = _cnn_problem(Ut, Y, beta, masks, pool, loss)
    extra: dict[str, Any] = {"whitening": wh, "arrangements": arr}
    record = _run_conic(problem, name, reason, extra)
    if (failed := _failed(record, P, extra, t_start)) is not None:
        return failed

    u = uv.value.reshape(P, q, C).copy()  # (P, q, C)
    up = upv.value.reshape(P, q, C).copy()
    norms, norms_p = np.linalg.norm(u, axis=1), np.linalg.norm(up, axis=1)  # (P, C)
    top = max(norms.max(), norms_p.max())
    keep, keep_p = _keep(norms, tol, top), _keep(norms_p, tol, top)
    u *= keep[:, None, :]
    up *= keep_p[:, None, :]
    F_val = np.stack([pool @ np.sum(masks * (Ut @ (u[:, :, k] - up[:, :, k]).T), axis=1) for k in range(C)],
                     axis=1)
    objective = loss_value(F_val, Y, loss) + beta * float(np.linalg.norm(u, axis=1).sum()
                                                          + np.linalg.norm(up, axis=1).sum())
    params = reconstruct_before(wh, u, up, tol=tol)  # pruned blocks are exactly zero already
    if params.width == 0:
        params = _zero_params(h, C)
    bias_value = None if bias == "unit" else 1.0
    net = bn_conv_from_params(params, patches, bias_value=bias_value, eps=eps, device=device)
    extra.update({"u": u, "up": up, "network": net})
    record.seconds = time.perf_counter() - t_start
    return ConvexResult(objective=objective, record=record, params=params,
                        neurons=int(keep.sum() + keep_p.sum()), arrangements=P, extra=extra)


# --------------------------------------------------------------------------------------------------
# Deep BN networks (§2.5, §3.5)
# --------------------------------------------------------------------------------------------------


class DeepBNNet(PaperBNNet):
    """[Linear(no bias) → BatchNorm1d → ReLU] per hidden width, then Linear(no bias) to C outputs.

    Objective (our choice for ambiguity A2): ℓ(f(X), Y) + (β/2)[Σ_l (‖γ_l‖² + ‖α_l‖²) + ‖W_L‖²_F],
    (γ_l, α_l) in paper convention (γ = √n·γ_torch, α = β_torch/c, c = 1/√n); hidden Linear weights
    are not penalised (BN makes the network invariant to their positive column scaling).
    """

    def __init__(self, d: int, widths: list[int], C: int = 1, eps: float = 1e-5,
                 bias_value: float | None = None) -> None:
        super().__init__()
        widths = list(widths)
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"DeepBNNet: widths must be a non-empty list of positive integers, got {widths}")
        if d < 1 or C < 1:
            raise ValueError(f"DeepBNNet: input dimension d and outputs C must be positive, got d={d}, C={C}")
        self.linears = nn.ModuleList()
        self.bns = nn.ModuleList()
        prev = d
        for w in widths:
            self.linears.append(nn.Linear(prev, int(w), bias=False))
            self.bns.append(nn.BatchNorm1d(int(w), eps=eps, momentum=None))
            prev = int(w)
        self.out = nn.Linear(prev, C, bias=False)
        self.bias_value = bias_value

    @property
    def widths(self) -> list[int]:
        """Hidden widths, first to last."""
        return [lin.out_features for lin in self.linears]

    def hidden(self, X: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """Activations A_l after the first `layers` hidden layers (all of them when None; A_0 = X)."""
        A = X
        for lin, bn in list(zip(self.linears, self.bns))[: layers if layers is not None else None]:
            A = torch.relu(bn(lin(A)))
        return A

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Network output (n, C)."""
        return self.out(self.hidden(X))

    def paper_bn(self, layer: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ_l, α_l) of hidden layer `layer` (0-based) in paper convention for a batch of n."""
        return self.paper_bn_of(self.bns[layer], n)

    def bn_penalty(self, n: int, layers: list[int] | None = None) -> torch.Tensor:
        """Σ_l (‖γ_l‖² + ‖α_l‖²) over the given hidden layers (all by default)."""
        idx = range(len(self.bns)) if layers is None else layers
        total = torch.zeros((), dtype=self.out.weight.dtype, device=self.out.weight.device)
        for layer in idx:
            gamma, alpha = self.paper_bn(layer, n)
            total = total + torch.sum(gamma**2) + torch.sum(alpha**2)
        return total

    def penalty(self, n: int) -> torch.Tensor:
        """Σ_l (‖γ_l‖² + ‖α_l‖²) + ‖W_L‖²_F in paper convention for a batch of n."""
        return self.bn_penalty(n) + torch.sum(self.out.weight**2)

    def decayed_weights(self) -> list[torch.Tensor]:
        """Every hidden Linear weight (the optional decay λ₁ applies to all of them)."""
        return [lin.weight for lin in self.linears]


@torch.no_grad()
def deep_features(net: DeepBNNet, X: np.ndarray) -> np.ndarray:
    """A_{L−2}: the (train-mode, full-batch BN) input of the last hidden layer, as float64 numpy."""
    p = net.out.weight
    probe = copy.deepcopy(net).train()  # a forward pass in train mode must not touch net's running stats
    A = probe.hidden(torch.as_tensor(np.asarray(X), dtype=p.dtype, device=p.device), len(net.linears) - 1)
    return A.double().cpu().numpy()


def solve_deep_last_two(
    net: DeepBNNet,
    X: np.ndarray,
    Y: np.ndarray,
    beta: float,
    *,
    arrangements: ArrangementSpec = "exact",
    seed: int = 0,
    solver: str = "auto",
    truncate: int | None = None,
    loss: Loss = "squared",
    tol: float = 1e-6,
    prune_tol: float = 1e-9,
) -> ConvexResult:
    """Convexify the last hidden layer and the output layer of `net` for fixed earlier layers (§3.5).

    Runs program (C2) (`programs.solve_two_layer`, any of its solvers incl. "fast" with gap target
    `tol`; blocks below prune_tol × the largest are dropped) on A_{L−2}. `objective` is the deep objective at
    the optimum: (β/2)·Σ_{earlier l}(‖γ_l‖² + ‖α_l‖²) + two-layer optimum; extra["network"] is a copy
    of `net` with its last hidden layer and output layer taken from the reconstruction.
    """
    from convexbn.programs import solve_two_layer  # imported late: programs may import this module

    t_start = time.perf_counter()
    where = "solve_deep_last_two"
    if not isinstance(net, DeepBNNet):
        raise TypeError(f"{where}: net must be a DeepBNNet, got {type(net).__name__}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != net.linears[0].in_features:
        raise ValueError(f"{where}: X must have shape (n, {net.linears[0].in_features}), got {X.shape}")
    n = X.shape[0]
    Yn = _targets(Y, n, loss, where)
    beta = check_beta(beta, positive=True, where=where)
    if Yn.shape[1] != net.out.out_features:
        raise ValueError(f"{where}: Y has {Yn.shape[1]} columns but the network has {net.out.out_features} outputs")
    if net.bias_value is None:
        bias: BiasColumn = "unit"
    elif net.bias_value == 1.0:
        bias = "ones"
    else:
        raise ValueError(f"{where}: net.bias_value must be None (c = 1/sqrt(n)) or 1.0, got {net.bias_value}")
    A = deep_features(net, X)
    L1 = len(net.linears)
    with torch.no_grad():
        fixed = 0.5 * beta * float(net.bn_penalty(n, list(range(L1 - 1))))
    two = solve_two_layer(A, Yn, beta, arrangements=arrangements, truncate=truncate, solver=solver,
                          seed=seed, loss=loss, bias=bias, tol=tol, prune_tol=prune_tol)
    extra: dict[str, Any] = dict(two.extra)
    extra.update({"two_layer": two, "fixed_penalty": fixed, "two_layer_objective": two.objective})
    record = copy.copy(two.record)
    if two.params is None:
        record.seconds = time.perf_counter() - t_start
        return ConvexResult(objective=float("nan"), record=record, params=None, neurons=0,
                            arrangements=two.arrangements, extra=extra)
    params = two.params if two.params.width > 0 else _zero_params(A.shape[1], Yn.shape[1])
    extra["network"] = _assemble_deep(net, params, A, X)
    record.seconds = time.perf_counter() - t_start
    return ConvexResult(objective=fixed + two.objective, record=record, params=params,
                        neurons=two.neurons, arrangements=two.arrangements, extra=extra)


def _assemble_deep(net: DeepBNNet, params: BNParams, A: np.ndarray, X: np.ndarray) -> DeepBNNet:
    """Copy of `net` whose last hidden layer and output layer hold `params` (paper convention)."""
    p = net.out.weight
    m, C = params.V.shape
    eps = net.bns[-1].eps
    new = copy.deepcopy(net)
    kw = {"dtype": p.dtype, "device": p.device}
    new.linears[-1] = nn.Linear(A.shape[1], m, bias=False, **kw)
    new.bns[-1] = nn.BatchNorm1d(m, eps=eps, momentum=None, **kw)
    new.out = nn.Linear(m, C, bias=False, **kw)
    load_paper_params(new.linears[-1], new.bns[-1], new.out, params, A, bias_value=net.bias_value)
    set_running_stats(new, torch.as_tensor(X, dtype=p.dtype, device=p.device))
    new.train(net.training)
    return new
