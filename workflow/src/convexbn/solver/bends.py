"""Projected search paths of the polish: each block slides along its cone's faces instead of stopping at a row.

From w along the Newton direction d of its face, a block meets its first blocking row j at step s₁. The
path then goes on along the projection of d onto the smaller face {G_A u = 0, g_jᵀu = 0} until the next
blocking row, and so on up to s = 1: a piecewise-linear, feasible path (the projected search of
gradient-projection methods, with the cone's faces in place of the bounds). One accepted step adds every
row the block passed, where stopping at the first row adds one per round; at small β a block that starts
tens of rows away from its optimal face otherwise needs tens of rounds, each with a Newton solve.

The face after m rows is range N minus the unit directions e₁ … e_m that the rows removed (e_t is the
projection of row t onto the face before it, normalised), so a projection costs N(Nᵀx) − E(Eᵀx) and every
block moves in the same array operations, one level (one row per block) at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg


@dataclass
class BlockPath:
    """Segments of one block's path: segment l runs over s ∈ [start_l, start_l + len_l] along dirs[:, l]."""

    starts: np.ndarray  # (m,)
    lens: np.ndarray  # (m,)
    dirs: np.ndarray  # (q, m)
    breaks: list[tuple[float, int]]  # (s, row): the row joins the working set once the step reaches s


@dataclass
class Paths:
    """The paths of k blocks, flat: segment l belongs to block seg_block[l], break t to block brk_block[t]."""

    seg_block: np.ndarray  # (segments,)
    starts: np.ndarray  # (segments,)
    lens: np.ndarray  # (segments,)
    dirs: np.ndarray  # (q, segments)
    brk_block: np.ndarray  # (breaks,), each block's breaks in the order of s
    brk_s: np.ndarray  # (breaks,): the row joins once the step reaches this s
    brk_row: np.ndarray  # (breaks,)
    brk_dep: np.ndarray  # (breaks,) bool: the row depended on the face's rows (the block stopped there)
    removed: np.ndarray  # (k, q, m): block j's directions e_t removed from its face at its breaks, in order

    def path(self, j: int) -> BlockPath:
        """Block j's path on its own."""
        sg, br = self.seg_block == j, self.brk_block == j
        return BlockPath(
            starts=self.starts[sg],
            lens=self.lens[sg],
            dirs=self.dirs[:, sg],
            breaks=[(float(a), int(r)) for a, r in zip(self.brk_s[br], self.brk_row[br])],
        )


def _project(N: np.ndarray, E: np.ndarray, x: np.ndarray) -> np.ndarray:
    """x (k, q) projected onto each block's face: N(Nᵀx) − E(Eᵀx) for stacks N (k, q, d), E (k, q, m)."""
    px = np.einsum("kqd,kd->kq", N, np.einsum("kqd,kq->kd", N, x))
    return px - np.einsum("kqm,km->kq", E, np.einsum("kqm,kq->km", E, x))


def block_paths(
    Ut: np.ndarray,
    S: np.ndarray,
    Ns: list[np.ndarray],
    W: np.ndarray,
    D: np.ndarray,
    acts: list[np.ndarray],
    rown: np.ndarray,
    max_bends: int,
) -> Paths:
    """The projected paths of k blocks up to s = 1, block j from W[:, j] along D[:, j] on the face of rows acts[j].

    Block j's cone is {u : S_j ⊙ U'u ≥ 0} (S: n × k signs), its face has the orthonormal basis Ns[j] and
    D[:, j] lies in it. The blocks are advanced together, one row each per level (one GEMM for all ratio
    tests); a block stops after `max_bends` rows, at its last one, or when its face is a single line.
    """
    (q, k), dims = W.shape, np.array([N.shape[1] for N in Ns], dtype=int)
    Np = np.zeros((k, q, int(dims.max(initial=0))))
    for j, N in enumerate(Ns):
        Np[j, :, : N.shape[1]] = N
    E = np.zeros((k, q, max_bends))
    St = np.ascontiguousarray(S.T)  # (k, n): every per-block row operation below runs along contiguous memory
    slack = (W.T @ Ut.T) * St
    blocked = np.zeros(slack.shape, dtype=bool)
    for j, A in enumerate(acts):
        blocked[j, A] = True
    s, nb, dirs = np.zeros(k), np.zeros(k, dtype=int), D.T.copy()
    segs: list[tuple[np.ndarray, ...]] = []
    brks: list[tuple[np.ndarray, ...]] = []
    live = np.flatnonzero(np.any(dirs != 0, axis=1))
    while live.size:
        Dm = dirs[live]
        Gd = (Dm @ Ut.T) * St[live]
        neg = (Gd < -1e-15 * np.linalg.norm(Dm, axis=1)[:, None] * rown[None, :]) & ~blocked[live]
        ratios = np.full(Gd.shape, np.inf)
        np.divide(np.maximum(slack[live], 0.0), -Gd, out=ratios, where=neg)
        rows = ratios.argmin(1)
        rho = ratios[np.arange(live.size), rows]
        end = s[live] + rho >= 1.0
        segs.append((live, s[live].copy(), np.where(end, 1.0 - s[live], rho), Dm.T))
        go, c = live[~end], np.flatnonzero(~end)
        rows, rho = rows[c], rho[c]
        s[go] += rho
        slack[go] += rho[:, None] * Gd[c]
        blocked[go, rows] = True
        nb[go] += 1
        g = St[go, rows][:, None] * Ut[rows]
        p = _project(Np[go], E[go], g)
        npn = np.linalg.norm(p, axis=1)
        dep = npn <= 1e-10 * np.maximum(np.linalg.norm(g, axis=1), 1e-300)
        brks.append((go, s[go].copy(), rows, dep))
        go, p, npn = go[~dep], p[~dep], npn[~dep]
        E[go, :, nb[go] - 1] = p / npn[:, None]  # also at a block's last row: the accepted face needs it
        go = go[(nb[go] < max_bends) & (dims[go] - nb[go] >= 1)]
        dirs[go] = _project(Np[go], E[go], dirs[go])
        live = go[np.any(dirs[go] != 0, axis=1)]
    return Paths(
        seg_block=_cat(segs, 0, int),
        starts=_cat(segs, 1, float),
        lens=_cat(segs, 2, float),
        dirs=np.hstack([x[3] for x in segs]) if segs else np.zeros((q, 0)),
        brk_block=_cat(brks, 0, int),
        brk_s=_cat(brks, 1, float),
        brk_row=_cat(brks, 2, int),
        brk_dep=_cat(brks, 3, bool),
        removed=E,
    )


def _cat(parts: list[tuple[np.ndarray, ...]], i: int, dtype: type) -> np.ndarray:
    """Field i of every level's record, concatenated (empty of `dtype` when there is none)."""
    return np.concatenate([x[i] for x in parts]) if parts else np.zeros(0, dtype=dtype)


def shrunk_face(N: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """T (d × (d − m)) with N T an orthonormal basis of {u ∈ range N : u ⊥ removed} (`removed`: q × m orthonormal)."""
    A = N.T @ removed
    if A.shape[1] == 0:
        return np.eye(N.shape[1])
    Q, _ = scipy.linalg.qr(A, mode="full", check_finite=False)
    return Q[:, A.shape[1] :]


def segment_lengths(starts: np.ndarray, lens: np.ndarray, s: float) -> np.ndarray:
    """How far along each segment the path has gone at step s (0 before it starts, its length after it ends)."""
    return np.clip(s - starts, 0.0, lens)
