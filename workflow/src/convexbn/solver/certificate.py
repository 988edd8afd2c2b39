"""The certificate of (C2): dual-feasible points, duality gap, cone violation and pricing bounds.

Lagrangian duality with λ ∈ R^{n×C} for the fit and μ ≥ 0 for the cones gives
    max  Σ_c [ λ_cᵀ y_c − ½‖λ_c‖² ]
    s.t. ‖U'ᵀ( D_i λ_c + S_i μ_ic)‖ ≤ β,  ‖U'ᵀ(−D_i λ_c + S_i μ'_ic)‖ ≤ β  for all i, c, μ ≥ 0.
λ_c = y_c − f_c (the residual of the point) and any μ ≥ 0 scaled by s_c ≤ min(1, β / max_i norm) is
feasible, so its value is a true lower bound whatever the state of the solver. For one block,
min_{μ ≥ 0} ‖U'ᵀ(σ D_i λ + S_i μ)‖ is the norm of the projection of U'ᵀ σ D_i λ onto the cone
{u : S_i U' u ≥ 0} (Moreau), computed exactly by restricted non-negative least squares.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from convexbn.solver.operator import C2Operator
from convexbn.solver.state import CONE_TOL, TINY, as_targets

NNLS_KKT_TOL = 1e-8  # relative KKT violation above which an NNLS result is re-solved (round-off stays far below)


def c2_primal(
    Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, u: np.ndarray, up: np.ndarray
) -> tuple[float, float]:
    """(objective, cone violation) of blocks u, up (P, q, C) in program (C2), in float64 NumPy."""
    Y = as_targets(Y, Ut.shape[0])
    f = np.einsum("np,nq,pqc->nc", masks.astype(float), Ut, u - up)
    obj = 0.5 * float(((f - Y) ** 2).sum()) + beta * float(
        np.linalg.norm(u, axis=1).sum() + np.linalg.norm(up, axis=1).sum()
    )
    S = 2.0 * masks - 1.0
    g1 = np.einsum("np,nq,pqc->npc", S, Ut, u)
    g2 = np.einsum("np,nq,pqc->npc", S, Ut, up)
    viol = float(max(np.clip(-g1, 0, None).max(initial=0.0), np.clip(-g2, 0, None).max(initial=0.0)))
    return obj, viol


def improve_multipliers(op: C2Operator, lam: torch.Tensor, p: torch.Tensor, iters: int) -> torch.Tensor:
    """FISTA steps on min_{p≥0} ½‖U'ᵀ(σ D λ + S p)‖² per block (the dual NNLS); returns p ≥ 0."""
    base = op.sig * op.M * lam[:, None, None, :]
    x = p.clone()
    yk = p.clone()
    t = 1.0
    for _ in range(iters):
        A = op.adj(base + op.S * yk)
        grad = op.S * op.Z(A)
        x_new = torch.clamp(yk - grad, min=0)  # step 1: the Hessian S U'U'ᵀ S has norm 1
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        yk = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return x


def worst_block_norms(op: C2Operator, base: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """max over blocks of ‖U'ᵀ(base + S p)‖ per class: (C,)."""
    return op.adj(base + op.S * p).norm(dim=0).amax(dim=(0, 1))


def certificate(
    op64: C2Operator, W: torch.Tensor, p: torch.Tensor | None, tol: float, nnls_iters: int = 100
) -> dict[str, Any]:
    """Primal value, dual lower bound, relative gap and cone violation at W (float64 operator)."""
    beta = op64.beta
    Z = op64.Z(W)
    g = op64.S * Z
    viol = float(torch.clamp(-g, min=0).max()) if g.numel() else 0.0
    f = op64.fit(Z)
    r = f - op64.Y
    norms = W.norm(dim=0)  # (2, P, C)
    primal_c = 0.5 * (r * r).sum(0) + beta * norms.sum(dim=(0, 1))
    lam = -r
    if p is None:
        p = torch.zeros_like(Z)
    base = op64.sig * op64.M * lam[:, None, None, :]
    wmax = worst_block_norms(op64, base, p)
    if nnls_iters > 0 and bool((wmax > beta * (1 + 0.1 * tol)).any()):
        p2 = improve_multipliers(op64, lam, p, nnls_iters)
        w2 = worst_block_norms(op64, base, p2)
        better = w2 < wmax
        if bool(better.any()):
            p = torch.where(better.view(1, 1, 1, -1), p2, p)
            wmax = torch.minimum(w2, wmax)
    ly = (lam * op64.Y).sum(0)
    ll = (lam * lam).sum(0)
    smax = torch.clamp(beta / torch.clamp(wmax, min=TINY), max=1.0)
    s = torch.minimum(torch.clamp(ly / torch.clamp(ll, min=TINY), min=0.0), smax)
    dual_c = s * ly - 0.5 * s * s * ll
    primal = float(primal_c.sum())
    dual = float(dual_c.sum())
    gap = (primal - dual) / max(abs(primal), 1e-12)
    scale = max(1.0, float(norms.max()) if norms.numel() else 1.0)
    return {
        "primal": primal,
        "dual": dual,
        "gap": max(gap, 0.0),
        "violation": viol,
        "viol_ok": viol <= CONE_TOL * scale,
        "p": p,
        "dual_scale": float(smax.min()),
    }


def checked_nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin_{x ≥ 0} ‖Ax − b‖ by Lawson–Hanson, re-solved by BVLS when the result fails its KKT conditions.

    On degenerate cones (a point with many tight, nearly dependent rows, e.g. an exact optimum of an
    earlier β) scipy's Lawson–Hanson can return a point that is not optimal, without a warning: then
    g = Aᵀ(Ax − b) has a clearly negative entry (a column that still lowers the residual) or a positive
    entry where x > 0. Both are checked relative to ‖A_j‖·‖Ax − b‖ (a residual below 1e-10‖b‖ is taken
    as optimal), and such a result is replaced by the bounded-variable least squares of
    `scipy.optimize.lsq_linear`, an independent active-set method.
    """
    from scipy.optimize import lsq_linear, nnls

    x, _ = nnls(A, b, maxiter=50 * max(A.shape[1], 1))
    r = A @ x - b
    rn = float(np.linalg.norm(r))
    if rn <= 1e-10 * float(np.linalg.norm(b)):
        return x  # b is (to round-off) in the cone of the columns: optimal as it stands
    g = (A.T @ r) / (np.maximum(np.linalg.norm(A, axis=0), TINY) * rn)
    if (g < -NNLS_KKT_TOL).any() or (np.abs(g[x > 0]) > NNLS_KKT_TOL).any():
        x = np.maximum(lsq_linear(A, b, bounds=(0.0, np.inf), method="bvls").x, 0.0)
    return x


def project_cone(
    G: np.ndarray,
    w: np.ndarray,
    rown: np.ndarray | None = None,
    first: int | None = None,
    accept_below: float = -1.0,
    seed: np.ndarray | None = None,
    signs: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean projection of w onto {u : G u ≥ 0} via the NNLS dual; returns (projection, μ ≥ 0).

    Row generation: NNLS on the `first` rows of smallest normalised G w (default 1.5 q); then each round
    keeps the rows with μ > 0 and adds the most violated rows (at most max(q/4, 16)), until the projection
    is feasible for every row, which makes it exact (KKT of the full cone). Dropping rows whose μ is zero
    keeps each restricted NNLS near the size of the active set; every round adds a violated row, which
    strictly lowers the restricted optimum, so no set of rows repeats. Any μ ≥ 0 bounds min_μ ‖w + Gᵀμ‖
    from above, so when only that bound matters a round returns as soon as ‖w + Gᵀμ‖ ≤ accept_below.
    `seed` (row indices, e.g. the support of the μ of a nearby w) joins the first rows. With `signs` (n,) of
    ±1 the cone's matrix is signs[:, None] * G, used without being formed (G = U', shared by the patterns).
    """
    n, q = G.shape
    sg = np.ones(n) if signs is None else signs

    def rows_of(idx: np.ndarray) -> np.ndarray:
        """The cone's rows idx."""
        return G[idx] if signs is None else sg[idx, None] * G[idx]

    rown = np.linalg.norm(G, axis=1) + 1e-300 if rown is None else rown
    rows = np.argsort(sg * (G @ w) / rown)[: min(n, first or (3 * q + 1) // 2)]
    if seed is not None and seed.size:
        rows = np.union1d(rows, seed)
    batch = max(q // 4, 16)
    for _ in range(200):
        Gr = rows_of(rows)
        mu_r = checked_nnls(Gr.T, -w)
        d = w + Gr.T @ mu_r
        mu = np.zeros(n)
        mu[rows] = mu_r
        nd = float(np.linalg.norm(d))
        if nd <= accept_below or len(rows) == n:
            return d, mu
        slack = sg * (G @ d) / rown
        slack[rows] = np.inf
        bad = np.flatnonzero(slack < -1e-12 * max(nd, 1e-300))
        if bad.size == 0:
            return d, mu
        rows = np.union1d(rows[mu_r > 0], bad[np.argsort(slack[bad])[:batch]])
    Gall = rows_of(np.arange(n))
    mu = checked_nnls(Gall.T, -w)
    return w + Gall.T @ mu, mu


def _block_values(Ut: np.ndarray, base: np.ndarray, Sm: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U'ᵀ(base + S μ) as (q, 2P), its column norms (2, P)) for multipliers μ (n, 2, P)."""
    n = Ut.shape[0]
    A = Ut.T @ (base + Sm * mu).reshape(n, -1)
    return A, np.linalg.norm(A, axis=0).reshape(2, -1)


def dual_pg(
    Ut: np.ndarray, masks: np.ndarray, lam: np.ndarray, mu: np.ndarray, iters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Improve cone multipliers μ ≥ 0 (n, 2, P) of every block at once for the pricing bounds.

    FISTA with step 1 (‖S_i U'‖ = 1) on min_{μ ≥ 0} ½‖U'ᵀ(σ D_i λ + S_i μ)‖², all 2P blocks in two
    GEMMs per step. Any μ ≥ 0 gives a valid bound, so the steps run in float32 (half the memory traffic
    of these n × 2P arrays, twice the GEMM rate) and both bounds, of the start and of the end, are
    evaluated in float64; per block the better is kept. Returns (μ, bounds (2, P) = ‖U'ᵀ(σ D_i λ + S_i μ)‖).
    """
    n, q = Ut.shape
    P = masks.shape[1]
    Sm = (2.0 * masks - 1.0)[:, None, :]
    Dl = masks * lam[:, None]
    base = np.stack([Dl, -Dl], 1)  # (n, 2, P)

    _, b0 = _block_values(Ut, base, Sm, mu)
    U32, base32, S32 = Ut.astype(np.float32), base.astype(np.float32), Sm.astype(np.float32)
    x = y = mu.astype(np.float32)
    t = 1.0
    for _ in range(iters):
        A, _ = _block_values(U32, base32, S32, y)
        xn = np.maximum(y - S32 * (U32 @ A).reshape(n, 2, P), 0.0)
        tn = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        y = xn + np.float32((t - 1) / tn) * (xn - x)
        x, t = xn, tn
    x64 = x.astype(np.float64)
    _, b1 = _block_values(Ut, base, Sm, x64)
    better = b1 < b0
    return np.where(better[None], x64, mu), np.where(better, b1, b0)


def exact_multipliers(
    Ut: np.ndarray, masks: np.ndarray, W: np.ndarray, Y: np.ndarray, beta: float, p: np.ndarray, tol: float
) -> np.ndarray:
    """Re-solve the per-block dual NNLS exactly where the current multipliers give a norm > β.

    For block (s, i, c) with g = U'ᵀ(s D_i λ_c) and G = S_i U', min_{μ ≥ 0} ‖g + Gᵀμ‖ equals the
    norm of the projection of g onto the cone {u : G u ≥ 0} (Moreau); `checked_nnls` solves it exactly.
    Only blocks whose current bound exceeds β(1 + tol/4) are re-solved. Returns the improved multipliers
    p (n, 2, P, C).
    """
    S = 2.0 * masks - 1.0
    f = np.einsum("np,nq,qspc->nc", masks.astype(float), Ut, W[:, 0:1] - W[:, 1:2])
    lam = Y - f
    sg = np.array([1.0, -1.0]).reshape(1, 2, 1, 1)
    base = sg * masks[:, None, :, None] * lam[:, None, None, :] + S[:, None, :, None] * p
    norms = np.linalg.norm(np.einsum("nq,nspc->qspc", Ut, base), axis=0)
    out = p.copy()
    for s, i, c in zip(*np.nonzero(norms > beta * (1 + 0.25 * tol))):
        G = S[:, i : i + 1] * Ut
        g = (1.0 if s == 0 else -1.0) * (Ut.T @ (masks[:, i] * lam[:, c]))
        mu = checked_nnls(G.T, -g)
        if np.linalg.norm(g + G.T @ mu) < norms[s, i, c]:
            out[:, s, i, c] = mu
    return out


def price_patterns(
    Ut: np.ndarray,
    masks: np.ndarray,
    lam: np.ndarray,
    beta: float,
    *,
    skip: np.ndarray | None = None,
    tol: float = 1e-6,
    pg_iters: int = 20,
    chunk: int = 256,
    stop_after: int | None = None,
    exact: bool = True,
) -> np.ndarray:
    """Certified upper bounds (2, P) on min_{μ ≥ 0} ‖U'ᵀ(±D_i λ + S_i μ)‖ for every pattern not in `skip`.

    A block is dual feasible for the residual λ when its bound is ≤ β. Per chunk of patterns: μ = 0,
    then batched projected gradient (`dual_pg`), then for blocks still above β(1 + tol/4) the exact
    cone projection (`project_cone`, Moreau: the bound becomes the projection norm). Exact
    projections run in order of decreasing bound; with `stop_after`, they stop once that many blocks
    are proven above β (column generation only needs the worst few; the rest keep their PG bound);
    `exact=False` skips them (valid, looser bounds). Skipped patterns get NaN. Memory O(n · chunk).
    """
    n, q = Ut.shape
    P = masks.shape[1]
    bound = np.full((2, P), np.nan)
    thr = beta * (1 + 0.25 * tol)
    rown = np.linalg.norm(Ut, axis=1) + 1e-300
    out = np.setdiff1d(np.arange(P), np.asarray(skip if skip is not None else [], dtype=int))
    grads: dict[int, np.ndarray] = {}
    for a in range(0, len(out), chunk):
        idx = out[a : a + chunk]
        m = masks[:, idx].astype(np.float64)
        g = Ut.T @ (m * lam[:, None])  # (q, k): U'ᵀ D_i λ, the μ = 0 value of both signs
        b0 = np.linalg.norm(g, axis=0)
        bound[:, idx] = b0
        need = b0 > thr
        if need.any() and pg_iters > 0:
            sub = idx[need]
            _, b = dual_pg(Ut, masks[:, sub], lam, np.zeros((n, 2, len(sub))), pg_iters)
            bound[:, sub] = b
            for j in np.flatnonzero((b > thr).any(0)):
                grads[int(sub[j])] = g[:, np.flatnonzero(need)[j]]
    todo = [(s, i) for i in grads for s in range(2) if bound[s, i] > thr] if exact else []
    todo.sort(key=lambda b: -bound[b])
    found = 0
    for s, i in todo:
        G = (2.0 * masks[:, i : i + 1] - 1.0) * Ut
        d, _ = project_cone(G, (1.0 if s == 0 else -1.0) * grads[i], rown, accept_below=thr)
        bound[s, i] = min(bound[s, i], float(np.linalg.norm(d)))
        if bound[s, i] > thr:
            found += 1
            if stop_after is not None and found >= stop_after:
                break
    return bound
