"""Primal active-set Newton polish of one (C2) class, with column generation over the zero blocks.

Each active block is projected exactly onto its cone (restricted-row NNLS, `project_cone`); the working set of each
block is its set of tight rows; every round is one Newton step of the smooth problem on the faces {G_A w_b = 0}
(null-space coordinates; a dense solve of size Σ dim(face), or by Woodbury through an n × n matrix when that sum is
well above n, `newton_low_rank`), searched along a path on which each block slides along the rows it meets
(`bent_search`, `block_paths`; every row passed joins the working set); after a whole Newton step, or at a face
optimum, each block with a negative face multiplier releases the rows its projected steepest-descent direction
leaves (`leaving_rows`); blocks that reach zero leave; when nothing changes, every zero block is priced (cheap bound
from batched projected gradient on the multipliers, then restricted NNLS only where that bound exceeds β) and blocks
whose projected steepest-descent direction beats β enter. The first face optimum, and the first after an entry of
many blocks, is priced too, before its rows are released (a partial pricing that stops after PATIENCE blocks in a row
stay out). Iterates stay exactly feasible. The fit Hessian of the
face coordinates is carried from round to round as Tᵀ H T when blocks only gained rows (`fit_hessian`). The returned
multipliers (face multipliers for active blocks, NNLS multipliers for priced zero blocks) certify the class
directly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg

import convexbn.solver.state as limits
from convexbn.solver.bends import Paths, block_paths, segment_lengths, shrunk_face
from convexbn.solver.certificate import checked_nnls, dual_pg, project_cone
from convexbn.solver.faces import (
    BlockMats,
    fit_hessian,
    low_rank_cheaper,
    lstsq,
    newton_low_rank,
    null_basis_qr,
    polish_bytes,
    shrink_basis,
)

Block = tuple[int, int]
BENDS = 64  # rows a block may pass in one step of the bent search (`block_paths`)
DUE_ENTERING = 0.1  # a pricing adding more than this fraction of the blocks is repeated at the next face optimum
PATIENCE = 8  # an early pricing stops after this many blocks in a row that do not enter
STALL_ROUNDS = 500  # rounds without a decrease of the objective after which the polish gives up
Trace = list[tuple[Any, ...]] | None


@dataclass
class FaceProblem:
    """Fixed data of one class: U', masks, targets y, β, the block matrices and the scale of the blocks."""

    Ut: np.ndarray
    masks: np.ndarray
    y: np.ndarray
    beta: float
    top: float  # largest block norm of the starting point (sets "zero" thresholds)
    G: BlockMats = field(init=False)  # G_b = S_i U'
    F: BlockMats = field(init=False)  # F_b = ±D_i U'
    rown: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        """Build the lazy block matrices and the row norms of U'."""
        self.G = BlockMats(self.Ut, self.masks, cone=True)
        self.F = BlockMats(self.Ut, self.masks, cone=False)
        self.rown = np.linalg.norm(self.Ut, axis=1) + 1e-300


@dataclass
class FaceState:
    """Iterate of the active-set method: active blocks, their points, working sets and cached bases."""

    blocks: list[Block]
    w: dict[Block, np.ndarray]
    act: dict[Block, np.ndarray]
    fval: float = math.inf
    r: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nullb: dict[Block, np.ndarray] = field(default_factory=dict)
    hcache: dict[str, Any] = field(default_factory=dict)
    trans: dict[Block, np.ndarray] = field(default_factory=dict)
    fresh: set[Block] = field(default_factory=set)
    mu_last: dict[Block, np.ndarray] = field(default_factory=dict)
    cols: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # `state_columns`, `state_rows`
    released: set[tuple[Block, int]] = field(default_factory=set)  # rows released since f last decreased


@dataclass
class NewtonStep:
    """A Newton direction on the faces: coordinates dz, gradient, decrement and the block directions D."""

    dz: np.ndarray
    grad: np.ndarray
    dec: float
    offs: np.ndarray
    D: dict[Block, np.ndarray]


def block_columns(masks: np.ndarray, blocks: list[Block]) -> tuple[np.ndarray, np.ndarray]:
    """(σ_b m_i, S_i) columns (n, k) of the blocks in `blocks`."""
    idx = [b[1] for b in blocks]
    sg = np.array([1.0 if b[0] == 0 else -1.0 for b in blocks])
    m = masks[:, idx].astype(float)
    return m * sg, 2.0 * m - 1.0


def state_columns(prob: FaceProblem, st: FaceState) -> tuple[np.ndarray, np.ndarray]:
    """`block_columns` of the current blocks, rebuilt only when the block list changed."""
    key = tuple(st.blocks)
    if key not in st.cols:
        st.cols.clear()
        st.cols[key] = block_columns(prob.masks, st.blocks)
    return st.cols[key]


def state_rows(prob: FaceProblem, st: FaceState) -> tuple[np.ndarray, np.ndarray]:
    """`state_columns` as contiguous rows (k, n) each, for the n-long arrays laid out block by block."""
    key = ("rows", *st.blocks)
    if key not in st.cols:
        st.cols[key] = tuple(np.ascontiguousarray(x.T) for x in state_columns(prob, st))
    return st.cols[key]


def face_value(prob: FaceProblem, blocks: list[Block], w: dict[Block, np.ndarray]) -> tuple[float, np.ndarray]:
    """(objective, residual f − y) of the class at blocks w."""
    Wm = np.stack([w[b] for b in blocks], 1)
    r = ((prob.Ut @ Wm) * block_columns(prob.masks, blocks)[0]).sum(1) - prob.y
    return 0.5 * float(r @ r) + prob.beta * float(np.linalg.norm(Wm, axis=0).sum()), r


def face_basis(prob: FaceProblem, st: FaceState, b: Block) -> np.ndarray:
    """Orthonormal basis of block b's face (cached; a rebuilt basis is marked fresh for the Hessian)."""
    if b not in st.nullb:
        A = st.act[b]
        st.nullb[b] = np.eye(prob.Ut.shape[1]) if A.size == 0 else null_basis_qr(prob.G.rows(b, A))
        st.fresh.add(b)
    return st.nullb[b]


def start_faces(prob: FaceProblem, W: np.ndarray, act_rel: float) -> FaceState | None:
    """Project the blocks with norm > act_rel·max onto their cones; working sets = rows with μ > 0."""
    n = prob.Ut.shape[0]
    norms = np.linalg.norm(W, axis=0)
    blocks = [(s, i) for s in range(2) for i in range(W.shape[2]) if norms[s, i] > act_rel * prob.top]
    if polish_bytes(n, len(blocks)) > limits.POLISH_MAX_BYTES:
        return None  # too large to polish densely: the caller keeps iterating ADMM
    w: dict[Block, np.ndarray] = {}
    act: dict[Block, np.ndarray] = {}
    for b in blocks:
        w[b], mu = project_cone(prob.Ut, W[:, b[0], b[1]], prob.rown, signs=prob.G.signs(b))
        act[b] = np.flatnonzero(mu > 0)
    blocks = [b for b in blocks if np.linalg.norm(w[b]) > 1e-9 * prob.top]
    if not blocks:
        return None
    st = FaceState(blocks=blocks, w=w, act=act)
    st.fval, st.r = face_value(prob, blocks, w)
    return st


def newton_direction(prob: FaceProblem, st: FaceState) -> NewtonStep | None:
    """Newton step of the smooth problem on the current faces (None when its linear algebra would not fit).

    The face Hessian is dense of size D = Σ dim(face); when D is well above n it is never formed
    (`newton_low_rank`), otherwise it is carried from round to round (`fit_hessian`) and factored.
    """
    n = prob.Ut.shape[0]
    Ns = [face_basis(prob, st, b) for b in st.blocks]
    dims = [N.shape[1] for N in Ns]
    D = int(sum(dims))
    low = low_rank_cheaper(n, D)
    need = polish_bytes(n, len(st.blocks)) + 8.0 * n * (D + n) if low else polish_bytes(n, len(st.blocks), D)
    if need > limits.POLISH_MAX_BYTES:
        return None
    offs = np.cumsum([0] + dims)
    Fs, _ = state_columns(prob, st)
    FtR = prob.Ut.T @ (Fs * st.r[:, None])  # (q, k): F_bᵀ r of every block
    nbs = np.array([float(np.linalg.norm(st.w[b])) for b in st.blocks])
    radial = [Ns[j].T @ (st.w[b] / nbs[j]) for j, b in enumerate(st.blocks)]
    grad = np.zeros(0)
    if st.blocks:
        grad = np.concatenate([Ns[j].T @ FtR[:, j] + prob.beta * radial[j] for j in range(len(st.blocks))])
    dz = None
    if low and D:
        V = (prob.Ut @ np.hstack(Ns)) * np.repeat(Fs, dims, axis=1)
        c = prob.beta / nbs
        shift = 1e-13 * (float(np.einsum("ij,ij->", V, V)) + float(c @ (np.array(dims) - 1.0))) / D  # as dense
        dz = -newton_low_rank(V, c, radial, dims, grad, shift)
        st.hcache.clear()  # the next dense round builds its Hessian afresh
        st.trans.clear()
        st.fresh.clear()
        if not (np.isfinite(dz).all() and -grad @ dz > 0):  # Woodbury lost to round-off: factor H instead
            if polish_bytes(n, len(st.blocks), D) > limits.POLISH_MAX_BYTES:
                return None
            dz = None
    if dz is None:
        dz = _dense_newton(prob, st, Ns, dims, radial, nbs, grad)
    D_ = {b: Ns[j] @ dz[offs[j] : offs[j + 1]] for j, b in enumerate(st.blocks)}
    return NewtonStep(dz=dz, grad=grad, dec=float(-grad @ dz), offs=offs, D=D_)


def _dense_newton(
    prob: FaceProblem,
    st: FaceState,
    Ns: list[np.ndarray],
    dims: list[int],
    radial: list[np.ndarray],
    nbs: np.ndarray,
    grad: np.ndarray,
) -> np.ndarray:
    """−H⁻¹ grad with the face Hessian formed (`fit_hessian` plus the penalty blocks) and Cholesky-factored."""
    H = fit_hessian(prob.Ut, Ns, state_columns(prob, st)[0], dims, st.blocks, st.hcache, st.trans, st.fresh)
    if not H.size:
        return np.zeros(0)
    H = _with_penalty(H.copy(), dims, prob.beta / nbs, radial)
    H[np.diag_indices_from(H)] += 1e-13 * np.trace(H) / len(H)  # in place: H is D × D, formed every round
    try:
        factor = scipy.linalg.cho_factor(H, overwrite_a=True, check_finite=False)
        return -scipy.linalg.cho_solve(factor, grad, check_finite=False)
    except np.linalg.LinAlgError:  # the factorisation overwrote H part-way: rebuilt for the least squares
        H = _with_penalty(st.hcache["H"].copy(), dims, prob.beta / nbs, radial)
        return -np.linalg.lstsq(H, grad, rcond=None)[0]


def _with_penalty(H: np.ndarray, dims: list[int], c: np.ndarray, radial: list[np.ndarray]) -> np.ndarray:
    """H with each penalty block c_b (I − v_b v_bᵀ) added to its diagonal block, in place."""
    offs = np.cumsum([0] + dims)
    for j in range(len(dims)):
        sl = slice(offs[j], offs[j + 1])
        H[sl, sl] += c[j] * (np.eye(dims[j]) - np.outer(radial[j], radial[j]))
    return H


def ratio_test(
    prob: FaceProblem, st: FaceState, D: dict[Block, np.ndarray]
) -> tuple[dict[Block, float], dict[Block, int]]:
    """Per block, the largest step ≤ 1 along D keeping rows outside its working set feasible, and the blocking row."""
    k = len(st.blocks)
    St = state_rows(prob, st)[1]
    Dm = np.stack([D[b] for b in st.blocks])  # (k, q): per-block rows, so the n-long arrays are contiguous
    GDW = np.vstack([Dm, np.stack([st.w[b] for b in st.blocks])]) @ prob.Ut.T
    GD, GW = GDW[:k], GDW[k:]
    GD *= St
    GW *= St
    neg = GD < -1e-15 * np.maximum(np.linalg.norm(Dm, axis=1), 1e-300)[:, None] * prob.rown[None, :]
    for jb, b in enumerate(st.blocks):
        neg[jb, st.act[b]] = False
    ratios = np.full(GD.shape, np.inf)
    np.divide(np.maximum(GW, 0.0), -GD, out=ratios, where=neg)
    jmin = ratios.argmin(1)
    rmin = ratios[np.arange(k), jmin]
    alpha = {b: 1.0 for b in st.blocks}
    hit: dict[Block, int] = {}
    for jb, b in enumerate(st.blocks):
        if rmin[jb] < 1.0:
            alpha[b], hit[b] = float(rmin[jb]), int(jmin[jb])
    return alpha, hit


def block_slopes(st: FaceState, ns: NewtonStep) -> dict[Block, float]:
    """p_b = g_bᵀ D_b: each block's share of the directional derivative (they sum to −decrement)."""
    return {
        b: float(ns.grad[ns.offs[j] : ns.offs[j + 1]] @ ns.dz[ns.offs[j] : ns.offs[j + 1]])
        for j, b in enumerate(st.blocks)
    }


def search_paths(prob: FaceProblem, st: FaceState, ns: NewtonStep, hit: dict[Block, int], bends: int) -> Paths:
    """Every block's path for `bent_search`: `block_paths` for the blocks in `hit`, the others straight to s = 1."""
    moving = [j for j, b in enumerate(st.blocks) if b in hit]
    sub = block_paths(
        prob.Ut,
        state_columns(prob, st)[1][:, moving],
        [face_basis(prob, st, st.blocks[j]) for j in moving],
        np.stack([st.w[st.blocks[j]] for j in moving], 1),
        np.stack([ns.D[st.blocks[j]] for j in moving], 1),
        [st.act[st.blocks[j]] for j in moving],
        prob.rown,
        bends,
    )
    idx = np.array(moving, dtype=int)
    still = np.array([j for j, b in enumerate(st.blocks) if b not in hit], dtype=int)
    q = prob.Ut.shape[1]
    sub.seg_block = np.concatenate([idx[sub.seg_block], still])
    sub.starts = np.concatenate([sub.starts, np.zeros(still.size)])
    sub.lens = np.concatenate([sub.lens, np.ones(still.size)])
    still_dirs = np.stack([ns.D[st.blocks[j]] for j in still], 1) if still.size else np.zeros((q, 0))
    sub.dirs = np.hstack([sub.dirs, still_dirs])
    sub.brk_block = idx[sub.brk_block]
    removed = np.zeros((len(st.blocks),) + sub.removed.shape[1:])
    removed[idx] = sub.removed
    sub.removed = removed
    return sub


def join_passed(prob: FaceProblem, st: FaceState, paths: Paths, passed: np.ndarray) -> list[Block]:
    """The rows of the breaks in `passed` (a prefix of each block's breaks) join; faces shrink by `shrunk_face`."""
    reached = []
    for j in np.unique(paths.brk_block[passed]):
        b = st.blocks[j]
        mine = passed & (paths.brk_block == j)
        rows = paths.brk_row[mine]
        N = st.nullb.get(b)
        if N is None or paths.brk_dep[mine].any():
            st.nullb.pop(b, None)  # a dependent row: the face is rebuilt from its rows
        else:
            T = shrunk_face(N, paths.removed[j][:, : rows.size])
            st.nullb[b] = N @ T
            st.trans[b] = st.trans[b] @ T if b in st.trans else T
        st.act[b] = np.append(st.act[b], rows)
        reached.append(b)
    return reached


def bent_search(
    prob: FaceProblem,
    st: FaceState,
    ns: NewtonStep,
    alpha: dict[Block, float],
    hit: dict[Block, int],
    max_bends: int | None = None,
) -> list[Block]:
    """Backtrack along the blocks' projected paths (`block_paths`); at the accepted s, the rows passed join.

    At small β the iterate sits next to many rows that the Newton direction crosses (blocking steps α_b
    of 1e-3 and less are typical). The joint truncated step (every block at its own α_b) then mostly
    raises f and backtracks without reaching any row, one row per round at best. Along the bent path a
    block that meets a row slides on along the projection of its direction onto the smaller face (up
    to `max_bends` rows, default BENDS; with 1 it stops at its first row) while the others go on, so f
    is continuous in s, the path starts along the Newton direction, and the accepted step adds every
    row each block passed. Returns the blocks that gained rows ([] when no step s ≥ min α_b decreases
    f enough). Rows at distance 0 may join without a decrease of f, except a row released since f last
    decreased: re-adding it at the same f would cycle between two faces of a degenerate cone.
    """
    if not hit:
        return []
    blocks = st.blocks
    paths = search_paths(prob, st, ns, hit, BENDS if max_bends is None else max_bends)
    if not paths.brk_s.size:
        return []
    idx = {b: j for j, b in enumerate(blocks)}
    again_brk = np.array([(blocks[j], int(r)) in st.released for j, r in zip(paths.brk_block, paths.brk_row)])
    Fr = state_rows(prob, st)[0]
    Wm = np.stack([st.w[b] for b in blocks], 1)
    grad = (Fr * st.r) @ prob.Ut + prob.beta * (Wm / np.linalg.norm(Wm, axis=0)).T  # (k, q)
    slopes = np.einsum("jq,qj->j", grad[paths.seg_block], paths.dirs)
    E = np.zeros((len(paths.seg_block), len(blocks)))
    E[np.arange(len(paths.seg_block)), paths.seg_block] = 1.0
    s = 1.0
    while s >= max(float(paths.brk_s.min()), 1e-12):
        c = segment_lengths(paths.starts, paths.lens, s)
        dW = (paths.dirs * c) @ E  # (q, k): each block's displacement at s
        rn = st.r + np.einsum("kn,kn->n", Fr, dW.T @ prob.Ut.T)
        Wn = Wm + dW
        fn = 0.5 * float(rn @ rn) + prob.beta * float(np.linalg.norm(Wn, axis=0).sum())
        passed = paths.brk_s <= s
        # f decreases enough, or stays put while rows at distance 0 join: a finite number of times, since
        # a row released at this value of f may rejoin only with a decrease (else the faces would cycle)
        ok = fn <= st.fval and passed.any() and not again_brk[passed].any()
        if fn < st.fval + 1e-4 * min(float(slopes @ c), 0.0) or ok:
            reached = join_passed(prob, st, paths, passed)
            st.w = {**st.w, **{b: Wn[:, idx[b]] for b in blocks}}
            if fn < st.fval:
                st.released.clear()
            st.fval, st.r = fn, rn
            return reached
        s *= 0.5
    return []


def _line_search(
    prob: FaceProblem, st: FaceState, ns: NewtonStep, alpha: dict[Block, float]
) -> tuple[float, float, dict[Block, np.ndarray], np.ndarray, float]:
    """Armijo backtracking along the per-block truncated direction → (step, slope, w, r, value).

    With p_b = g_bᵀD_b (Σ_b p_b = −decrement < 0), the per-block truncation Σ α_b p_b can be ≥ 0. Then
    blocks with p_b ≥ 0 step only min_b α_b while the others keep their own α_b: that slope is at most
    min α · Σ p_b < 0, so the direction descends while every block with p_b < 0 still reaches its
    blocking row (one common step would add a single row per round).
    """
    p = block_slopes(st, ns)
    slope = sum(alpha[b] * p[b] for b in st.blocks)
    if slope >= 0:
        amin = min(alpha.values())
        for b in alpha:
            if p[b] >= 0:
                alpha[b] = amin
        slope = sum(alpha[b] * p[b] for b in st.blocks)
    if slope >= 0:  # round-off: one common step length
        amin = min(alpha.values())
        for b in alpha:
            alpha[b] = amin
        slope = -amin * ns.dec
    Wm = np.stack([st.w[b] for b in st.blocks], 1)
    Dm = np.stack([alpha[b] * ns.D[b] for b in st.blocks], 1)
    dfit = ((prob.Ut @ Dm) * state_columns(prob, st)[0]).sum(1)  # the fit moves linearly along the direction
    step = 1.0
    while True:
        Wn = Wm + step * Dm
        rn = st.r + step * dfit
        fn = 0.5 * float(rn @ rn) + prob.beta * float(np.linalg.norm(Wn, axis=0).sum())
        if fn <= st.fval + 1e-4 * step * slope or step < 1e-12:
            return step, slope, {**st.w, **{b: Wn[:, j] for j, b in enumerate(st.blocks)}}, rn, fn
        step *= 0.5


def face_step(prob: FaceProblem, st: FaceState, ns: NewtonStep, trace: Trace) -> str:
    """Take the Newton step along the bent path, else the truncated one.

    Returns 'done' when the face problem is solved, 'full' after the whole Newton step with no row in
    the way (next to the face optimum), 'abort' when every block vanished, 'stuck' when f did not
    decrease and no row joined (a row released at this f blocks the step at distance 0), else 'continue'.
    """
    alpha, hit = ratio_test(prob, st, ns.D)
    before = {b: len(st.act[b]) for b in st.blocks}
    reached = bent_search(prob, st, ns, alpha, hit)
    added = decreased = bool(reached)
    if trace is not None:
        trace.extend(("add", b, int(j), alpha[b]) for b in reached for j in st.act[b][before[b] :])
    if not reached:
        step, slope, wn, rn, fn = _line_search(prob, st, ns, alpha)
        if fn > st.fval or (fn == st.fval and not hit):
            if trace is not None:
                trace.append(("ls-fail", step, slope))
            return "done"  # no progress possible along the face: treat it as solved
        decreased = fn < st.fval
        st.w, st.fval, st.r = wn, fn, rn
        if step == 1.0:
            for b, j in hit.items():
                if (b, j) in st.released and alpha[b] <= 0.0:
                    continue  # released at this f: joining again at distance 0 would cycle
                gj = prob.G.rows(b, j)
                if alpha[b] < 1.0 and gj @ st.w[b] <= 1e-12 * prob.rown[j] * np.linalg.norm(st.w[b]):
                    shrink_basis(st.nullb, b, gj, st.trans)
                    st.act[b] = np.append(st.act[b], j)
                    added = True
                    if trace is not None:
                        trace.append(("add", b, j, alpha[b]))
        if decreased:
            st.released.clear()
    small = [b for b in st.blocks if np.linalg.norm(st.w[b]) <= 1e-9 * prob.top]
    if small:  # a block shrank to zero: remove it from the problem
        for b in small:
            st.w[b] = np.zeros(prob.Ut.shape[1])
        st.blocks = [b for b in st.blocks if b not in small]
        if not st.blocks:
            return "abort"
        st.fval, st.r = face_value(prob, st.blocks, st.w)
        return "continue"
    if not added and not hit:
        return "full"  # the whole Newton step, no row met: close to the face optimum
    if not (added or decreased):
        return "stuck"
    return "continue" if added or ns.dec > 1e-18 * max(1.0, abs(st.fval)) else "done"


def steepest_step(prob: FaceProblem, st: FaceState, ns: NewtonStep) -> NewtonStep:
    """The face steepest-descent direction −grad in place of the Newton step `ns` (same faces and gradient).

    Where the Newton step is blocked at distance 0 by a row released at the current f (it may not rejoin
    before f decreases), this direction leaves that row: at the release the block's projected
    steepest-descent direction was the projection of −g onto the remaining face, with positive slack on
    every released row.
    """
    dz = -ns.grad
    D = {b: face_basis(prob, st, b) @ dz[ns.offs[j] : ns.offs[j + 1]] for j, b in enumerate(st.blocks)}
    return NewtonStep(dz=dz, grad=ns.grad, dec=float(ns.grad @ ns.grad), offs=ns.offs, D=D)


def leaving_rows(GA: np.ndarray, rhs: np.ndarray, mu_ls: np.ndarray) -> np.ndarray:
    """Rows of the working set that the block's projected steepest-descent direction leaves (indices into GA).

    With g = `rhs` the block's gradient and μ ≥ 0 the NNLS fit of g by G_Aᵀμ, d = G_Aᵀμ − g is the
    projection of −g onto the tangent cone {G_A d ≥ 0}: a descent direction (gᵀd = −‖d‖²) that stays on
    the rows with μ_j > 0 and leaves every row with G_j d > 0. Releasing all of those at once keeps a
    descent direction inside the new face, where releasing only the most negative least-squares
    multiplier (`mu_ls`, the fallback when round-off leaves no such row) costs one face optimum per row.
    """
    mu = checked_nnls(GA.T, rhs)
    d = GA.T @ mu - rhs
    nd = float(np.linalg.norm(d))
    slack = GA @ d
    out = np.flatnonzero(slack > 1e-9 * nd * np.linalg.norm(GA, axis=1))
    return out if out.size else np.array([int(np.argmin(mu_ls))])


def face_multipliers(prob: FaceProblem, st: FaceState, trace: Trace) -> tuple[dict[Block, np.ndarray], bool]:
    """Face multipliers of every active block (clipped at 0); where some is negative, releases `leaving_rows`."""
    n = prob.Ut.shape[0]
    released = False
    mult: dict[Block, np.ndarray] = {}
    FtR = prob.Ut.T @ (state_columns(prob, st)[0] * st.r[:, None])  # (q, k) in one GEMM
    for jb, b in enumerate(st.blocks):
        rhs = FtR[:, jb] + prob.beta * st.w[b] / float(np.linalg.norm(st.w[b]))
        A = st.act[b]
        GA = prob.G.rows(b, A)
        mu = lstsq(GA.T, rhs) if A.size else np.zeros(0)
        if mu.size and mu.min() < -1e-10 * max(1.0, float(np.abs(mu).max())):
            drop = leaving_rows(GA, rhs, mu)
            st.act[b] = np.delete(A, drop)
            st.nullb.pop(b, None)
            for j in drop:
                st.released.add((b, int(A[j])))
                if trace is not None:
                    trace.append(("release", b, int(A[j]), float(mu[j])))
            released = True
        full = np.zeros(n)
        full[A] = np.maximum(mu, 0.0)
        mult[b] = full
    return mult, released


def pricing_seed(mu_last: np.ndarray | None, mu0: np.ndarray | None, sg: int, i: int, q: int) -> np.ndarray:
    """First rows of a pricing projection: the support of the block's last exact μ and its q largest PG multipliers.

    Both come from nearby residuals (the previous pricing, the batched projected gradient of this one), so
    their rows are mostly the projection's active rows, and the row generation of `project_cone` takes
    fewer rounds than from the rows of smallest slack alone.
    """
    seed = np.zeros(0, dtype=int) if mu_last is None else np.flatnonzero(mu_last > 0)
    if mu0 is None:
        return seed
    m0 = mu0[:, sg, i]
    top = np.argsort(-m0)[:q]
    return np.union1d(seed, top[m0[top] > 0])


def price_zero_blocks(
    prob: FaceProblem,
    st: FaceState,
    mu0: np.ndarray | None,
    pg_iters: int,
    enter_tol: float,
    trace: Trace,
    patience: int | None = None,
) -> tuple[list[tuple[Block, np.ndarray, np.ndarray]], np.ndarray, np.ndarray | None]:
    """Price every zero block at the current residual → (entering (block, direction, μ), multipliers (n, 2, P), μ0).

    A zero block is dual feasible when min_{μ ≥ 0} ‖U'ᵀ(σ D_i λ + S_i μ)‖ ≤ β; the bound from `mu0`
    (improved by `pg_iters` batched projected-gradient steps) is tried first, then the previous
    round's μ, then the exact projection, in decreasing order of the bound. Blocks whose projection
    norm exceeds β(1 + enter_tol) enter; the improved μ0 is returned for the next round. With
    `patience`, the projections stop after that many blocks in a row do not enter (a partial pricing
    that only looks for entering blocks: its multipliers do not certify).
    """
    n, P = prob.masks.shape
    lam = -st.r
    Aall = prob.Ut.T @ (prob.masks * lam[:, None])  # (q, P): U'ᵀ D_i λ
    an = np.linalg.norm(Aall, axis=0)
    inside = set(st.blocks)
    pn = np.zeros((n, 2, P))
    bound = np.stack([an, an])
    if mu0 is not None:
        mu0, bound = dual_pg(prob.Ut, prob.masks, lam, mu0, pg_iters)
    thr = prob.beta * (1 + 1e-12)
    todo: list[tuple[Block, np.ndarray]] = []
    for i in np.flatnonzero(an > thr):
        for sg in range(2):
            b = (sg, int(i))
            if b in inside:
                continue
            if mu0 is not None and bound[sg, i] <= thr:
                pn[:, sg, i] = mu0[:, sg, i]
                continue
            a = (1.0 if sg == 0 else -1.0) * Aall[:, i]
            mu = st.mu_last.get(b)
            if mu is not None and float(np.linalg.norm(a + prob.Ut.T @ (prob.G.signs(b) * mu))) <= thr:
                pn[:, sg, i] = mu
                continue
            todo.append((b, a))
    todo.sort(key=lambda t: -bound[t[0]])
    entering: list[tuple[Block, np.ndarray, np.ndarray]] = []
    misses = 0
    for b, a in todo:
        seed = pricing_seed(st.mu_last.get(b), mu0, b[0], b[1], prob.Ut.shape[1])
        d, mu = project_cone(prob.Ut, a, prob.rown, accept_below=thr, seed=seed, signs=prob.G.signs(b))
        if float(np.linalg.norm(d)) > prob.beta * (1 + enter_tol):
            entering.append((b, d, mu))
            misses = 0
        else:
            pn[:, b[0], b[1]] = mu
            st.mu_last[b] = mu
            misses += 1
            if patience is not None and misses >= patience:
                break
    if trace is not None:
        trace.append(("price", int((an > thr).sum()), len(entering)))
    return entering, pn, mu0


def enter_blocks(prob: FaceProblem, st: FaceState, entering: list[tuple[Block, np.ndarray, np.ndarray]]) -> None:
    """Add the priced blocks along their projected steepest-descent directions (exact line minimiser, shared)."""
    for b, d, mu in entering:
        nd = float(np.linalg.norm(d))
        fd = prob.F.mul(b, d)
        t = (nd * nd - prob.beta * nd) / max(float(fd @ fd), 1e-300) / len(entering)
        st.w[b] = t * d
        st.act[b] = np.flatnonzero(mu > 0)
        st.nullb.pop(b, None)
        st.blocks.append(b)
    st.fval, st.r = face_value(prob, st.blocks, st.w)


def active_set_polish(
    Ut: np.ndarray,
    masks: np.ndarray,
    y: np.ndarray,
    beta: float,
    W: np.ndarray,
    act_rel: float = 0.05,
    rounds: int = 20000,
    deadline: float = math.inf,
    enter_tol: float = 1e-9,
    mu0: np.ndarray | None = None,
    pricing_pg_iters: int = 10,
    trace: Trace = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Primal active-set Newton method for one class on the blocks with norm > act_rel·max in W (q, 2, P).

    Returns (W_new (q, 2, P), multipliers (n, 2, P)) of a point optimal for the whole class (every
    zero block priced, module docstring), whose multipliers certify it, or None when the method
    stops (deadline, memory limit POLISH_MAX_BYTES, every block vanished, `rounds` spent, or no
    decrease of the objective over STALL_ROUNDS rounds). At small β a start far from the optimum
    needs hundreds of rounds while still descending (thousands of rows join and leave); the stall
    test, not the round count, is what stops a polish that cycles. `mu0` (n, 2, P) seeds
    the pricing multipliers; `trace` (optional list) records the rounds.
    """
    n, q = Ut.shape
    P = masks.shape[1]
    norms = np.linalg.norm(W, axis=0)
    top = float(norms.max()) if norms.size else 0.0
    if top == 0.0:
        return None
    prob = FaceProblem(Ut=Ut, masks=masks, y=y, beta=beta, top=top)
    st = start_faces(prob, W, act_rel)
    if st is None:
        return None
    checkpoint = st.fval
    # Pricing is due at the first face optimum of the start and after a large entry, even where rows are to be
    # released: converging the release cycles of a block set that many blocks are about to join is wasted.
    due = True
    for k in range(1, rounds + 1):
        if time.perf_counter() > deadline or polish_bytes(n, len(st.blocks)) > limits.POLISH_MAX_BYTES:
            return None
        if k % STALL_ROUNDS == 0:
            if st.fval > checkpoint - 1e-12 * max(1.0, abs(checkpoint)):
                return None
            checkpoint = st.fval
        ns = newton_direction(prob, st)
        if ns is None:
            return None
        if trace is not None:
            trace.append((st.fval, ns.dec, len(st.blocks), int(ns.offs[-1])))
        outcome = face_step(prob, st, ns, trace) if ns.dec > 1e-18 * max(1.0, abs(st.fval)) else "done"
        if outcome == "stuck":  # a steepest-descent round instead; if that is blocked too, the face is solved
            outcome = face_step(prob, st, steepest_step(prob, st, ns), trace)
            outcome = "done" if outcome == "stuck" else outcome
        if outcome == "abort":
            return None
        if outcome == "continue":
            continue
        near = outcome == "full"  # rows are released right after a whole Newton step: spares the confirming round
        st.fval, st.r = face_value(prob, st.blocks, st.w)  # exact again after the line searches' updates
        mult, released = face_multipliers(prob, st, trace)
        if (released or near) and not due:
            continue
        partial = PATIENCE if released or near else None  # the final pricing checks every block
        entering, pn, mu0 = price_zero_blocks(prob, st, mu0, pricing_pg_iters, enter_tol, trace, partial)
        due = len(entering) > DUE_ENTERING * len(st.blocks)
        if entering:
            enter_blocks(prob, st, entering)
            continue
        if released or near:
            continue
        Wn = np.zeros((q, 2, P))
        for b in st.blocks:
            Wn[:, b[0], b[1]] = st.w[b]
            pn[:, b[0], b[1]] = mult[b]
        return Wn, pn
    return None
