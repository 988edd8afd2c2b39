"""Projected search paths of the polish: each block slides along its cone's faces instead of stopping at a row.

From w along the Newton direction d of its face, a block meets its first blocking row j at step s₁. The
path then goes on along the projection of d onto the smaller face {G_A u = 0, g_jᵀu = 0} until the next
blocking row, and so on up to s = 1: a piecewise-linear, feasible path (the projected search of
gradient-projection methods, with the cone's faces in place of the bounds). One accepted step adds every
row the block passed, where stopping at the first row adds one per round; at small β a block that starts
tens of rows away from its optimal face otherwise needs tens of rounds, each with a Newton solve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class BlockPath:
    """Segments of one block's path: segment l runs over s ∈ [start_l, start_l + len_l] along dirs[:, l]."""

    starts: np.ndarray  # (m,)
    lens: np.ndarray  # (m,)
    dirs: np.ndarray  # (q, m)
    breaks: list[tuple[float, int]]  # (s, row): the row joins the working set once the step reaches s


def slide_direction(N: np.ndarray, d: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(basis of {u ∈ range N : gᵀu = 0}, projection of d onto it) by one Householder reflector."""
    v = N.T @ g
    nv = float(np.linalg.norm(v))
    if N.shape[1] <= 1 or nv <= 1e-10 * max(float(np.linalg.norm(g)), 1e-300):
        return N[:, :0], np.zeros_like(d)
    u = v.copy()
    u[0] += math.copysign(nv, v[0] if v[0] != 0 else 1.0)
    Nn = N - (2.0 / float(u @ u)) * np.outer(N @ u, u)
    Nn = Nn[:, 1:]
    return Nn, Nn @ (Nn.T @ d)


def block_paths(
    Ut: np.ndarray,
    S: np.ndarray,
    Ns: list[np.ndarray],
    W: np.ndarray,
    D: np.ndarray,
    acts: list[np.ndarray],
    rown: np.ndarray,
    max_bends: int,
) -> list[BlockPath]:
    """The projected paths of k blocks up to s = 1, block j from W[:, j] along D[:, j] on the face of rows acts[j].

    Block j's cone is {u : S_j ⊙ U'u ≥ 0} (S: n × k signs), its face has the orthonormal basis Ns[j] and
    D[:, j] lies in it. The blocks are advanced together, one row each per pass (one GEMM for all ratio
    tests); a block stops after `max_bends` rows, at its last one.
    """
    k = W.shape[1]
    slack = (Ut @ W) * S
    blocked = np.zeros(slack.shape, dtype=bool)
    for j, A in enumerate(acts):
        blocked[A, j] = True
    segs: list[list[tuple[float, float, np.ndarray]]] = [[] for _ in range(k)]
    breaks: list[list[tuple[float, int]]] = [[] for _ in range(k)]
    s = np.zeros(k)
    bases, dirs = list(Ns), [D[:, j] for j in range(k)]
    live = [j for j in range(k) if np.any(dirs[j])]
    while live:
        Dm = np.stack([dirs[j] for j in live], 1)
        Gd = (Ut @ Dm) * S[:, live]
        neg = (Gd < -1e-15 * rown[:, None] * np.linalg.norm(Dm, axis=0)) & ~blocked[:, live]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(neg, np.maximum(slack[:, live], 0.0) / -Gd, np.inf)
        rows = ratios.argmin(0)
        rhos = ratios[rows, np.arange(len(live))]
        nxt = []
        for c, j in enumerate(live):
            rho, row = float(rhos[c]), int(rows[c])
            if s[j] + rho >= 1.0:
                segs[j].append((s[j], 1.0 - s[j], dirs[j]))
                continue
            segs[j].append((s[j], rho, dirs[j]))
            s[j] += rho
            breaks[j].append((s[j], row))
            slack[:, j] += rho * Gd[:, c]
            blocked[row, j] = True
            if len(breaks[j]) >= max_bends:
                continue
            bases[j], dirs[j] = slide_direction(bases[j], dirs[j], S[row, j] * Ut[row])
            if np.any(dirs[j]):
                nxt.append(j)
        live = nxt
    q = W.shape[0]
    return [
        BlockPath(
            starts=np.array([a for a, _, _ in sg]),
            lens=np.array([b for _, b, _ in sg]),
            dirs=np.stack([d for _, _, d in sg], 1) if sg else np.zeros((q, 0)),
            breaks=br,
        )
        for sg, br in zip(segs, breaks)
    ]


def segment_lengths(starts: np.ndarray, lens: np.ndarray, s: float) -> np.ndarray:
    """How far along each segment the path has gone at step s (0 before it starts, its length after it ends)."""
    return np.clip(s - starts, 0.0, lens)
