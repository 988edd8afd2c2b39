"""Hyperplane arrangements D_i = diag(1[A g ≥ 0]): exact enumeration (small rank) and Gaussian sampling."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Arrangements:
    """Distinct activation patterns of the rows of A, stored as a boolean (n, P) mask, plus generators."""

    masks: np.ndarray  # (n, P) bool, column i = diag of D_i
    generators: np.ndarray  # (q, P) a g_i with masks[:, i] == (A g_i >= 0)
    exact: bool  # True when every pattern of A was enumerated

    @property
    def count(self) -> int:
        """Number of patterns P."""
        return int(self.masks.shape[1])


def arrangement_upper_bound(n: int, q: int) -> int:
    """Upper bound 2 Σ_{j<q} C(n−1, j) on the number of patterns of n points in rank q."""
    return 2 * sum(math.comb(max(n - 1, 0), j) for j in range(max(q, 0)))


def dedupe_masks(masks: np.ndarray, generators: np.ndarray, drop_empty: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Remove duplicate columns (bit-packed, sort-based: O(P log P)); keep first occurrence order."""
    if masks.shape[1] == 0:
        return masks, generators
    packed = np.packbits(masks.T, axis=1)  # (P, ceil(n/8)) bytes
    view = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1])))[:, 0]
    _, first = np.unique(view, return_index=True)
    keep = np.sort(first)
    if drop_empty:
        keep = keep[masks[:, keep].any(axis=0)]
    return masks[:, keep], generators[:, keep]


def sample_arrangements(A: np.ndarray, count: int, seed: int = 0, dedupe: bool = True) -> Arrangements:
    """Draw `count` Gaussian generators g ~ N(0, I_q) and keep the distinct non-empty patterns 1[A g ≥ 0]."""
    if count < 1:
        raise ValueError(f"sample_arrangements: count must be >= 1, got {count}")
    A = np.asarray(A, dtype=np.float64)
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((A.shape[1], int(count)))
    masks = A @ G >= 0
    if dedupe:
        masks, G = dedupe_masks(masks, G)
    return Arrangements(masks=masks, generators=G, exact=False)


def exact_arrangements(A: np.ndarray, max_count: int = 200_000, tol: float = 1e-10) -> Arrangements:
    """Enumerate every pattern 1[A g ≥ 0], g ∈ R^q, via the rays of the central arrangement.

    Every full-dimensional cell of {a_iᵀ g = 0} has an edge on the intersection line of some
    q−1 independent hyperplanes; stepping off that line into each of the 2^{q−1} sign orthants
    of those hyperplanes (by a tiny step) reaches every cell adjacent to the line.
    """
    A = np.asarray(A, dtype=np.float64)
    n, q = A.shape
    bound = arrangement_upper_bound(n, q)
    if bound > max_count:
        raise ValueError(
            f"exact arrangements: up to {bound:,} patterns for n={n} points of rank {q} exceeds the limit "
            f"{max_count:,}; use sampled arrangements (--arrangements N) or truncate the whitening (--truncate K)"
        )
    scale = np.linalg.norm(A, axis=1)
    scale[scale == 0] = 1.0
    An = A / scale[:, None]
    gens: list[np.ndarray] = []
    if q == 1:
        gens = [np.array([1.0]), np.array([-1.0])]
    else:
        signs = np.array(list(itertools.product([-1.0, 1.0], repeat=q - 1)))  # (2^{q-1}, q-1)
        for S in itertools.combinations(range(n), q - 1):
            AS = An[list(S)]
            # line direction t spanning null(A_S); skip dependent subsets
            _, sv, Vt = np.linalg.svd(AS, full_matrices=True)
            if sv.size < q - 1 or sv[-1] < 1e-9:
                continue
            t = Vt[-1]
            B = np.linalg.pinv(AS)  # columns b_j with A_S b_j = e_j
            step = 1e-6 / max(1.0, np.abs(B).max())
            for direction in (t, -t):
                for sg in signs:
                    gens.append(direction + step * (B @ sg))
    G = np.array(gens).T  # (q, M)
    masks = A @ G >= 0
    # Rows exactly on a ray (degenerate data): the step already decides their side; nothing else to do.
    # Always include the all-active pattern (g = bias direction when the last column is constant).
    masks, G = dedupe_masks(masks, G)
    if masks.shape[1] > max_count:
        raise ValueError(f"exact arrangements: {masks.shape[1]:,} patterns exceed the limit {max_count:,}")
    return Arrangements(masks=masks, generators=G, exact=True)


def arrangements_for(A: np.ndarray, spec: str | int, seed: int = 0, max_exact: int = 200_000) -> Arrangements:
    """`spec` = "exact" (enumerate all) or an integer count of Gaussian samples (seeded)."""
    if isinstance(spec, str) and spec.strip().lower() == "exact":
        return exact_arrangements(A, max_count=max_exact)
    try:
        count = int(spec)
    except (TypeError, ValueError):
        raise ValueError(f"arrangements: {spec!r} is neither 'exact' nor a positive integer count") from None
    return sample_arrangements(A, count, seed=seed)
