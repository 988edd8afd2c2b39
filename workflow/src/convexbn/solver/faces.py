"""Linear algebra of the faces {u : G_A u = 0} used by the polish: null bases, Hessian updates, block matrices."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg

WORK_ARRAYS = 8  # n × k float arrays alive at once in a round (ratio test, paths, search), counted by polish_bytes


def polish_bytes(n: int, blocks: int, dim: int = 0) -> float:
    """Bytes the polish holds: its n × k work arrays (ratio tests, paths), the face matrix FN (n × dim) and H (dim²)."""
    return 8.0 * (WORK_ARRAYS * n * blocks + (n + dim) * dim)


def null_basis_qr(GA: np.ndarray) -> np.ndarray:
    """Orthonormal basis (q, k) of {u : G_A u = 0} from a column-pivoted QR of G_Aᵀ (rank-revealing)."""
    q = GA.shape[1]
    Q, R, _ = scipy.linalg.qr(GA.T, pivoting=True, check_finite=False)
    d = np.abs(np.diag(R))
    rank = int((d > 1e-10 * max(float(d[0]) if d.size else 0.0, 1e-300)).sum())
    return np.ascontiguousarray(Q[:, rank:]) if rank < q else np.zeros((q, 0))


def lstsq(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares solution of A x ≈ b by complete orthogonal factorisation (LAPACK gelsy)."""
    return scipy.linalg.lstsq(A, b, lapack_driver="gelsy", check_finite=False)[0]


def fit_hessian(
    Ut: np.ndarray,
    Ns: list[np.ndarray],
    Fs: np.ndarray,
    dims: list[int],
    blocks: list[tuple[int, int]],
    cache: dict[str, Any],
    trans: dict[Any, np.ndarray],
    fresh: set[Any],
) -> np.ndarray:
    """(FN)ᵀ(FN) of the face coordinates, FN = [σ_b D_b U' N_b], updated from the previous round when possible.

    `trans[b]` (d_old × d_new) maps the previous basis of block b to the current one (the face shrank
    by rows that joined); `fresh` holds blocks whose basis was rebuilt. Both are consumed (cleared). The cached
    matrix is reused as Tᵀ H T only when the block list is unchanged and no basis is fresh.
    """
    D = int(sum(dims))
    same = (
        cache.get("blocks") == blocks
        and not (fresh & set(blocks))
        and all(
            (trans[b].shape[1] if b in trans else old) == d for b, old, d in zip(blocks, cache.get("dims", []), dims)
        )
    )
    if same:
        H = _carried_hessian(cache["H"], list(cache["dims"]), dims, [trans.get(b) for b in blocks])
    elif D:
        FN = (Ut @ np.hstack(Ns)) * np.repeat(Fs, dims, axis=1)
        H = FN.T @ FN
    else:
        H = np.zeros((0, 0))
    trans.clear()
    fresh.clear()
    cache["blocks"], cache["dims"], cache["H"] = list(blocks), list(dims), H
    return H


def _carried_hessian(H0: np.ndarray, odims: list[int], dims: list[int], maps: list[np.ndarray | None]) -> np.ndarray:
    """Mᵀ H0 M for M = blockdiag(maps[j] or I): blocks without a change of coordinates are copied, not multiplied.

    H0 is the previous round's matrix; the result keeps its round-off asymmetry (the Cholesky factorisation
    reads one triangle), and two D × D arrays are written where stacking and symmetrising wrote four.
    """
    if all(m is None for m in maps):
        return H0  # no face changed
    oo, no = np.cumsum([0] + odims), np.cumsum([0] + dims)
    same = [j for j, m in enumerate(maps) if m is None]
    old_idx = np.concatenate([np.arange(oo[j], oo[j + 1]) for j in same]) if same else np.zeros(0, dtype=int)
    new_idx = np.concatenate([np.arange(no[j], no[j + 1]) for j in same]) if same else np.zeros(0, dtype=int)
    HT = np.empty((H0.shape[0], int(no[-1])))
    HT[:, new_idx] = H0[:, old_idx]
    for j, m in enumerate(maps):
        if m is not None:
            HT[:, no[j] : no[j + 1]] = H0[:, oo[j] : oo[j + 1]] @ m
    H = np.empty((int(no[-1]), int(no[-1])))
    H[new_idx] = HT[old_idx]
    for j, m in enumerate(maps):
        if m is not None:
            H[no[j] : no[j + 1]] = m.T @ HT[oo[j] : oo[j + 1]]
    return H


def low_rank_cheaper(n: int, dim: int) -> bool:
    """Whether `newton_low_rank` (≈ n²·dim + n³/3 flops) beats forming and factoring the dim × dim face Hessian."""
    return n * n * dim + n**3 / 3 < dim**3 / 3


def newton_low_rank(
    V: np.ndarray, c: np.ndarray, v: list[np.ndarray], dims: list[int], g: np.ndarray, shift: float = 0.0
) -> np.ndarray:
    """x = (H + shift·I)⁻¹g for H = VᵀV + blockdiag(c_j (I − v_j v_jᵀ)) by Woodbury, without forming H (dim × dim).

    V (n × dim) is the fit part of the face Hessian (rank ≤ n) and block j of the penalty part is
    c_j(I − v_j v_jᵀ) with v_j the block's unit radial direction, singular along v_j. Writing that part
    as c_j I minus the rank-one c_j v_j v_jᵀ makes H a diagonal plus the rank-(n + k) update WᵀSW with
    W = [V; E] (E: the v_j) and S = diag(I, −C); the capacitance matrix [[K, Bᵀ], [B, Z]] with
    K = I + VΛVᵀ (Λ = (C + shift)⁻¹ per coordinate), B = EΛVᵀ and Z = diag(‖v_j‖²/(c_j + shift) − 1/c_j) ≤ 0 is solved
    through K's Cholesky factor and the Schur complement BK⁻¹Bᵀ − Z (k × k). When dim ≫ n this costs
    n²·dim instead of dim³: at small β the first rounds of the polish carry hundreds of blocks whose
    faces still have most of their q dimensions. With more blocks than samples H is singular (the
    blocks' fits F_j w_j are dependent); the small `shift` then gives the same long step along the
    singular directions as a shifted dense factorisation would.
    """
    n = V.shape[0]
    a_blk = c + shift
    lam = np.repeat(1.0 / a_blk, dims)
    offs = np.cumsum([0] + list(dims))
    h = lam * g
    Vs = V * np.sqrt(lam)[None, :]
    K = scipy.linalg.blas.dsyrk(1.0, Vs.T, trans=1, lower=0)  # upper triangle of V Λ Vᵀ
    K[np.diag_indices(n)] += 1.0
    Kf = scipy.linalg.cho_factor(K, lower=False, check_finite=False)
    Vv = np.stack([V[:, offs[j] : offs[j + 1]] @ v[j] for j in range(len(dims))], 1)  # (n, k): V_j v_j
    Bt = Vv / a_blk[None, :]  # Bᵀ
    Z = np.array([float(vj @ vj) for vj in v]) / a_blk - 1.0 / c
    r1 = V @ h
    r2 = np.array([float(v[j] @ h[offs[j] : offs[j + 1]]) for j in range(len(dims))])
    KiBt = scipy.linalg.cho_solve(Kf, Bt, check_finite=False)
    Kir1 = scipy.linalg.cho_solve(Kf, r1, check_finite=False)
    T = Bt.T @ KiBt - np.diag(Z)
    rhs = Bt.T @ Kir1 - r2
    try:
        b = scipy.linalg.cho_solve(scipy.linalg.cho_factor(T, check_finite=False), rhs, check_finite=False)
    except np.linalg.LinAlgError:
        b = lstsq(T, rhs)
    a = Kir1 - KiBt @ b
    Eb = np.concatenate([b[j] * v[j] for j in range(len(dims))]) if dims else np.zeros(0)
    return h - lam * (V.T @ a + Eb)


def shrink_basis(
    cache: dict[Any, np.ndarray], key: Any, g: np.ndarray, trans: dict[Any, np.ndarray] | None = None
) -> None:
    """Update a cached orthonormal null-space basis N after adding the row g: N ← N·Householder.

    The columns 2.. of the Householder reflector that maps v = Nᵀg to a multiple of e₁ span the
    null space of vᵀ, so N·H[:, 1:] is an orthonormal basis of {u ∈ range N : gᵀu = 0}; O(q·k²)
    instead of a fresh SVD. Drops the cache entry (recomputed later) when g is nearly dependent.
    """
    N = cache.get(key)
    if N is None or N.shape[1] == 0:
        cache.pop(key, None)
        return
    v = N.T @ g
    nv = float(np.linalg.norm(v))
    if nv <= 1e-10 * max(float(np.linalg.norm(g)), 1e-300):
        cache.pop(key, None)
        return
    u = v.copy()
    u[0] += math.copysign(nv, v[0] if v[0] != 0 else 1.0)
    Hh = np.eye(len(v)) - (2.0 / float(u @ u)) * np.outer(u, u)
    cache[key] = N @ Hh[:, 1:]
    if trans is not None:  # record the change of coordinates N_old → N_new for the Hessian update
        trans[key] = trans[key] @ Hh[:, 1:] if key in trans else Hh[:, 1:]


class BlockMats:
    """The per-block matrices G_b = S_i U' (cone=True) or F_b = ±D_i U' (cone=False), as signs on the shared U'.

    Only rows and products are formed: a stored n × q matrix per block would take 8·n·q bytes (63 MB at
    n = 10 000, q = 785), for every block the pricing projects, and writing it costs more than the products
    the polish takes of it.
    """

    def __init__(self, Ut: np.ndarray, masks: np.ndarray, cone: bool):
        """Over U' and the masks; `cone` picks G_b (True) or F_b (False)."""
        self.Ut, self.masks, self.cone = Ut, masks, cone

    def signs(self, b: tuple[int, int]) -> np.ndarray:
        """(n,) row factors of block b = (sign, pattern): S_i = 2D_i − I, or ±D_i."""
        m = self.masks[:, b[1]].astype(float)
        return 2.0 * m - 1.0 if self.cone else (1.0 if b[0] == 0 else -1.0) * m

    def rows(self, b: tuple[int, int], idx: Any) -> np.ndarray:
        """Rows `idx` of block b's matrix."""
        return np.asarray(self.signs(b)[idx])[..., None] * self.Ut[idx]

    def mul(self, b: tuple[int, int], x: np.ndarray) -> np.ndarray:
        """Block b's matrix times x (q,)."""
        return self.signs(b) * (self.Ut @ x)

    def __getitem__(self, b: tuple[int, int]) -> np.ndarray:
        """Block b's whole matrix (n × q), formed on request and not kept."""
        return self.signs(b)[:, None] * self.Ut
