"""Fallback polish of one class: a restricted conic solve (Clarabel, no CVXPY) seeding a face Newton method.

Used when the active-set polish (`convexbn.solver.polish`) does not finish: Clarabel solves (C2)
restricted to the active blocks and their near-tight rows in reduced coordinates; its tight rows seed
`polish_class`, Newton on the faces of the active blocks with the working sets corrected until the
point is an exactly feasible KKT point of the restricted problem.
"""

from __future__ import annotations

import math
import time

import numpy as np

import convexbn.solver.state as limits
from convexbn.solver.faces import polish_bytes


def null_basis(G: np.ndarray, q: int) -> np.ndarray:
    """Orthonormal basis (q, k) of {u : G u = 0}."""
    if G.shape[0] == 0:
        return np.eye(q)
    _, s, Vt = np.linalg.svd(G, full_matrices=True)
    rank = int((s > 1e-10 * max(s[0], 1e-300)).sum())
    return Vt[rank:].T.copy()


def _group_value(M: np.ndarray, z: np.ndarray, y: np.ndarray, beta: float, offs: np.ndarray) -> float:
    """½‖M z − y‖² + β Σ_b ‖z_b‖ with blocks z_b = z[offs[b]:offs[b + 1]]."""
    r = M @ z - y
    return 0.5 * float(r @ r) + beta * sum(float(np.linalg.norm(z[a:b])) for a, b in zip(offs[:-1], offs[1:]))


def newton_blocks(
    Ms: list[np.ndarray], z0: list[np.ndarray], y: np.ndarray, beta: float, iters: int = 40
) -> tuple[list[np.ndarray], bool]:
    """Damped Newton for min ½‖Σ_b M_b z_b − y‖² + β Σ ‖z_b‖ from z0 (all blocks non-zero)."""
    sizes = [m.shape[1] for m in Ms]
    if not Ms:
        return [], True
    M = np.hstack(Ms)
    offs = np.cumsum([0] + sizes)
    z = np.concatenate(z0)
    H0 = M.T @ M
    Mty = M.T @ y

    fval = _group_value(M, z, y, beta, offs)
    for _ in range(iters):
        grad = H0 @ z - Mty
        H = H0.copy()
        for b in range(len(Ms)):
            sl = slice(offs[b], offs[b + 1])
            zb = z[sl]
            nb = float(np.linalg.norm(zb))
            if nb < 1e-14:
                return [z[offs[b] : offs[b + 1]] for b in range(len(Ms))], False
            zh = zb / nb
            grad[sl] += beta * zh
            H[sl, sl] += (beta / nb) * (np.eye(len(zb)) - np.outer(zh, zh))
        try:
            L = np.linalg.cholesky(H + 1e-14 * np.trace(H) / len(H) * np.eye(len(H)))
            d = -np.linalg.solve(L.T, np.linalg.solve(L, grad))
        except np.linalg.LinAlgError:
            d = -np.linalg.lstsq(H, grad, rcond=None)[0]
        dec = float(-grad @ d)
        if dec <= 1e-26 * max(1.0, abs(fval)):
            break
        step = 1.0
        while step > 1e-10:
            zn = z + step * d
            fn = _group_value(M, zn, y, beta, offs)
            if fn <= fval - 1e-4 * step * dec or fn <= fval:
                break
            step *= 0.5
        z, fval = zn, fn
        if dec <= 1e-24 * max(1.0, abs(fval)):
            break
    return [z[offs[b] : offs[b + 1]] for b in range(len(Ms))], True


Block = tuple[int, int]


def _initial_sets(
    Ut: np.ndarray,
    S: np.ndarray,
    W: np.ndarray,
    blocks: list[Block],
    tight: float,
    min_rows: int,
    init_sets: dict[Block, np.ndarray] | None,
) -> dict[Block, np.ndarray]:
    """Per block, the rows taken as equalities first: normalised slack ≤ `tight` (at most q − 1), or `init_sets`."""
    n, q = Ut.shape
    rown = np.linalg.norm(Ut, axis=1) + 1e-300
    act: dict[Block, np.ndarray] = {}
    for b in blocks:
        if init_sets is not None and b in init_sets:
            act[b] = init_sets[b].copy()
            continue
        w = W[:, b[0], b[1]]
        slack = (S[:, b[1]] * (Ut @ w)) / (rown * np.linalg.norm(w))
        k = int(min(q - 1, max((slack <= tight).sum(), min_rows)))
        a = np.zeros(n, dtype=bool)
        a[np.argsort(slack)[:k]] = True
        act[b] = a
    return act


def _face_coordinates(G: np.ndarray, act: np.ndarray, w: np.ndarray, top: float) -> tuple[np.ndarray, np.ndarray]:
    """(null basis N of the block's face, start z = Nᵀw), releasing one row when the face is {0}."""
    q = G.shape[1]
    N = null_basis(G[act], q)
    if N.shape[1] == 0:  # the face is {0}: release the row with the largest slack direction
        act[np.flatnonzero(act)[-1]] = False
        N = null_basis(G[act], q)
    z = N.T @ w
    if np.linalg.norm(z) < 1e-12 * top:
        z = N.T @ (G[act].sum(0) if act.any() else w) + 1e-3 * top * N[0]
    return N, z


def _correct_set(
    G: np.ndarray, F: np.ndarray, act: np.ndarray, w: np.ndarray, r: np.ndarray, beta: float, rown: np.ndarray
) -> tuple[np.ndarray, bool]:
    """Face multipliers of one block; adds its most violated dropped row and releases its most negative one.

    Returns (multipliers (n,) clipped at 0, whether the set changed); `act` is updated in place.
    """
    n = G.shape[0]
    nb = float(np.linalg.norm(w))
    A = np.flatnonzero(act)
    rhs = F.T @ r + beta * w / nb
    mu = np.linalg.lstsq(G[A].T, rhs, rcond=None)[0] if A.size else np.zeros(0)
    cand = np.where(act, np.inf, (G @ w) / rown)
    worst = int(np.argmin(cand))
    changed = False
    if cand[worst] < -1e-12 * nb:
        act[worst] = True
        changed = True
    if mu.size and mu.min() < -1e-9 * max(1.0, float(np.abs(mu).max())):
        act[A[int(np.argmin(mu))]] = False
        changed = True
    full = np.zeros(n)
    full[A] = np.maximum(mu, 0.0)
    return full, changed


def polish_class(
    Ut: np.ndarray,
    masks: np.ndarray,
    y: np.ndarray,
    beta: float,
    W: np.ndarray,
    act_rel: float = 1e-3,
    tight: float = 1e-2,
    rounds: int = 80,
    min_rows: int = 0,
    deadline: float = math.inf,
    init_sets: dict[Block, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Active-set polish of one class: Newton on the faces of the active blocks, sets corrected.

    W: (q, 2, P) blocks from the first-order method. Active blocks have norm > act_rel·max; each
    starts with the rows whose normalised slack is ≤ `tight` (at most q − 1) as equalities; Newton
    solves the smooth restricted problem in null-space coordinates; then, per block, the most
    violated dropped row is added and the most negative multiplier released, until no change.
    Returns (W_new (q, 2, P), multipliers (n, 2, P)) of an exactly feasible KKT point of the
    restricted problem, or None when the sets did not settle.
    """
    n, q = Ut.shape
    P = masks.shape[1]
    S = 2.0 * masks - 1.0
    norms = np.linalg.norm(W, axis=0)
    top = float(norms.max()) if norms.size else 0.0
    if top == 0.0:
        return None
    rown = np.linalg.norm(Ut, axis=1) + 1e-300
    blocks = [(s, i) for s in range(2) for i in range(P) if norms[s, i] > act_rel * top]
    G = {b: S[:, b[1] : b[1] + 1] * Ut for b in blocks}
    Fm = {b: (1.0 if b[0] == 0 else -1.0) * (masks[:, b[1] : b[1] + 1] * Ut) for b in blocks}
    act = _initial_sets(Ut, S, W, blocks, tight, min_rows, init_sets)
    wcur = {b: W[:, b[0], b[1]].copy() for b in blocks}
    for _ in range(rounds):
        if time.perf_counter() > deadline:
            return None
        faces = [_face_coordinates(G[b], act[b], wcur[b], top) for b in blocks]
        Ms = [Fm[b] @ N for b, (N, _) in zip(blocks, faces)]
        zs, fine = newton_blocks(Ms, [z for _, z in faces], y, beta)
        for b, (N, _), z in zip(blocks, faces, zs):
            wcur[b] = N @ z
        if not fine:  # a block shrank to zero: drop the smallest block and retry
            j = int(np.argmin([float(np.linalg.norm(z)) for z in zs]))
            blocks = [b for b in blocks if b != blocks[j]]
            if not blocks:
                return None
            continue
        r = sum(M @ z for M, z in zip(Ms, zs)) - y
        mult, changed = {}, False
        for b in blocks:
            mult[b], ch = _correct_set(G[b], Fm[b], act[b], wcur[b], r, beta, rown)
            changed = changed or ch
        if not changed:
            Wn = np.zeros((q, 2, P))
            pn = np.zeros((n, 2, P))
            for b in blocks:
                Wn[:, b[0], b[1]] = wcur[b]
                pn[:, b[0], b[1]] = mult[b]
            return Wn, pn
    return None


def restricted_conic(
    Ut: np.ndarray,
    masks: np.ndarray,
    y: np.ndarray,
    beta: float,
    blocks: list[tuple[int, int]],
    rows: dict[tuple[int, int], np.ndarray],
) -> tuple[dict[tuple[int, int], np.ndarray], dict[tuple[int, int], np.ndarray]] | None:
    """Solve (C2) restricted to `blocks` and, per block, the cone rows `rows[b]` with Clarabel directly.

    Built without CVXPY in reduced coordinates: variables x = (w_1..w_k, t_1..t_k), the fit enters as
    the dense quadratic ½ wᵀ(FᵀF)w − (Fᵀy)ᵀw (kq × kq, independent of n), rows as −G_b w_b ∈ R₊ and
    (t_b, w_b) ∈ SOC. The faer supernodal factorisation is used when available (dense KKT block).
    Returns (w_b, row multipliers μ_b ≥ 0 on rows[b]) per block, or None when the solver fails.
    """
    import clarabel
    import scipy.sparse as sp

    n, q = Ut.shape
    k = len(blocks)
    if k == 0 or polish_bytes(n, k, k * q) > limits.POLISH_MAX_BYTES:
        return None
    F = np.hstack([(1.0 if s == 0 else -1.0) * (masks[:, i : i + 1] * Ut) for s, i in blocks])  # (n, kq)
    H = F.T @ F
    N = k * q + k
    iu, ju = np.triu_indices(k * q)
    Pm = sp.csc_matrix((H[iu, ju], (iu, ju)), shape=(N, N))
    cvec = np.concatenate([-(F.T @ y), np.full(k, beta)])
    ri, ci, vals = [], [], []
    off = 0
    sizes = []
    for j, (s, i) in enumerate(blocks):
        r = rows[(s, i)]
        Gb = (2.0 * masks[r, i : i + 1] - 1.0) * Ut[r]  # (|r|, q)
        rr, cc = np.meshgrid(np.arange(len(r)), np.arange(q), indexing="ij")
        ri.append((off + rr).ravel())
        ci.append((j * q + cc).ravel())
        vals.append(-Gb.ravel())
        off += len(r)
        sizes.append(len(r))
    nn = off
    for j in range(k):  # SOC rows: −(t_j, w_j) + s = 0
        ri.append(off + np.arange(q + 1))
        ci.append(np.concatenate([[k * q + j], j * q + np.arange(q)]))
        vals.append(-np.ones(q + 1))
        off += q + 1
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(ri), np.concatenate(ci))), shape=(off, N))
    cones = [clarabel.NonnegativeConeT(nn)] + [clarabel.SecondOrderConeT(q + 1) for _ in range(k)]
    st = clarabel.DefaultSettings()
    st.verbose = False
    st.max_threads = 1
    try:
        st.direct_solve_method = "faer"
    except Exception:  # noqa: BLE001 - older builds: keep the default factorisation
        pass
    try:
        sol = clarabel.DefaultSolver(Pm, cvec, A, np.zeros(off), cones, st).solve()
    except Exception:  # noqa: BLE001 - a failed polish only means "no polish"
        return None
    if "Solved" not in str(sol.status):
        return None
    x = np.asarray(sol.x)
    z = np.asarray(sol.z)
    ws = {b: x[j * q : (j + 1) * q].copy() for j, b in enumerate(blocks)}
    mus: dict[tuple[int, int], np.ndarray] = {}
    o = 0
    for j, b in enumerate(blocks):
        mus[b] = np.maximum(z[o : o + sizes[j]], 0.0)
        o += sizes[j]
    return ws, mus


def polish_conic(
    Ut: np.ndarray,
    masks: np.ndarray,
    y: np.ndarray,
    beta: float,
    W: np.ndarray,
    act_rel: float = 1e-3,
    extra_rows: int = 2,
    rounds: int = 4,
    deadline: float = math.inf,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Polish one class: small conic solve on active blocks / near-tight rows, then exact face Newton.

    Candidate rows per active block: the extra_rows·q smallest normalised slacks. After the conic
    solve, any violated dropped row is added and the solve repeated; the tight rows (positive
    multipliers) then seed `polish_class`, whose Newton step on the faces makes the point exactly
    feasible (cone violation at round-off level) and returns KKT multipliers.
    """
    n, q = Ut.shape
    P = masks.shape[1]
    S = 2.0 * masks - 1.0
    norms = np.linalg.norm(W, axis=0)
    top = float(norms.max()) if norms.size else 0.0
    if top == 0.0:
        return None
    rown = np.linalg.norm(Ut, axis=1) + 1e-300
    blocks = [(s, i) for s in range(2) for i in range(P) if norms[s, i] > act_rel * top]
    rows: dict[tuple[int, int], np.ndarray] = {}
    for b in blocks:
        w = W[:, b[0], b[1]]
        slack = (S[:, b[1]] * (Ut @ w)) / (rown * np.linalg.norm(w))
        rows[b] = np.sort(np.argsort(slack)[: min(n, extra_rows * q)])
    for _ in range(rounds):
        if time.perf_counter() > deadline:
            return None
        res = restricted_conic(Ut, masks, y, beta, blocks, rows)
        if res is None:
            return None
        ws, mus = res
        added = False
        for b in blocks:
            slack = S[:, b[1]] * (Ut @ ws[b])
            nb = max(float(np.linalg.norm(ws[b])), 1e-300)
            viol = np.flatnonzero(slack / rown < -1e-7 * nb)
            new = np.setdiff1d(viol, rows[b])
            if new.size:
                rows[b] = np.union1d(rows[b], new)
                added = True
        if not added:
            break
    nb_all = {b: float(np.linalg.norm(ws[b])) for b in blocks}
    keep = [b for b in blocks if nb_all[b] > 1e-7 * top]
    Wc = np.zeros((q, 2, P))
    sets: dict[tuple[int, int], np.ndarray] = {}
    for b in keep:
        Wc[:, b[0], b[1]] = ws[b]
        mu = mus[b]
        a = np.zeros(n, dtype=bool)
        big = mu > 1e-6 * max(float(mu.max(initial=0.0)), 1e-300)
        order = np.argsort(-mu)
        cnt = int(min(q - 1, big.sum()))
        a[rows[b][order[:cnt]]] = True
        sets[b] = a
    return polish_class(Ut, masks, y, beta, Wc, act_rel=0.0, rounds=40, deadline=deadline, init_sets=sets)
