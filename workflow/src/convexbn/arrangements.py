"""Hyperplane arrangements D_i = diag(1[A g ≥ 0]): exact enumeration (small rank) and Gaussian sampling."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

#: Most activation patterns a program may use, sampled or enumerated: every pattern adds a block of
#: (d + 1)·C variables and an (n, d + 1) constraint matrix to the convex program, so beyond this the
#: program alone needs more memory than a workstation has.
MAX_ARRANGEMENTS = 200_000
_WHY = (
    "every pattern adds a block of variables and an n-row constraint to the convex program, so memory "
    "grows with the count"
)


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


def arrangement_upper_bound(n: int, q: int, cap: int | None = None) -> int:
    """Upper bound 2 Σ_{j<q} C(n−1, j) on the number of patterns of n points in rank q.

    With `cap`, summation stops as soon as the partial bound exceeds it (the returned value is then
    only known to be > cap): at CIFAR scale the full bound has thousands of digits and takes seconds.
    """
    total = 0
    for j in range(max(q, 0)):
        total += 2 * math.comb(max(n - 1, 0), j)
        if cap is not None and total > cap:
            break
    return total


def parse_arrangement_spec(spec: str | int) -> str | int:
    """Validate an arrangement spec: 'exact' (any case) or an integer count in [1, MAX_ARRANGEMENTS]."""
    if isinstance(spec, str) and spec.strip().lower() == "exact":
        return "exact"
    bad = f"arrangements {spec!r} is neither 'exact' nor a positive integer count; use 'exact' or e.g. 500"
    if isinstance(spec, bool) or (isinstance(spec, float) and not float(spec).is_integer()):
        raise ValueError(bad)
    try:
        count = int(spec)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(bad) from None
    if count < 1:
        raise ValueError(f"arrangements must be 'exact' or an integer >= 1, got {spec!r}")
    check_arrangement_count(count)
    return count


def check_arrangement_count(count: int, n: int | None = None, q: int | None = None, memory: int | None = None) -> None:
    """Refuse more than MAX_ARRANGEMENTS patterns, or (given n, q and a byte budget) patterns whose masks
    (n bytes each) and generators (8·q bytes each) alone would exceed `memory`; the message says why."""
    if count > MAX_ARRANGEMENTS:
        raise ValueError(
            f"arrangements {count:,} exceeds the limit of {MAX_ARRANGEMENTS:,} patterns ({_WHY}); "
            f"use at most {MAX_ARRANGEMENTS:,} (a few hundred suffice in the paper's experiments)"
        )
    if n is not None and q is not None and memory is not None:
        need = count * (int(n) + 8 * int(q))
        if need > memory:
            fit = max(1, memory // (int(n) + 8 * int(q)))
            raise ValueError(
                f"arrangements {count:,} for n={n} points of rank {q} need {need:,} bytes for the "
                f"patterns alone, more than the {memory:,} allowed ({_WHY}); use at most {fit:,}"
            )


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


def sample_arrangements(
    A: np.ndarray, count: int, seed: int = 0, dedupe: bool = True, memory: int | None = None
) -> Arrangements:
    """Draw `count` Gaussian generators g ~ N(0, I_q) and keep the distinct non-empty patterns 1[A g ≥ 0].

    `count` is bounded by MAX_ARRANGEMENTS and, with `memory` (bytes; default a quarter of the machine's
    memory), by what the masks and generators need; the products A g are formed in column chunks.
    """
    if count < 1:
        raise ValueError(f"sample_arrangements: count must be >= 1, got {count}")
    A = np.asarray(A, dtype=np.float64)
    if memory is None:
        from convexbn.io import physical_memory_bytes

        memory = physical_memory_bytes() // 4
    check_arrangement_count(int(count), A.shape[0], A.shape[1], memory)
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((A.shape[1], int(count)))
    masks = np.empty((A.shape[0], int(count)), dtype=bool)
    step = max(1, (64 << 20) // (8 * max(A.shape[0], 1)))  # ~64 MiB of float64 products at a time
    for start in range(0, int(count), step):
        masks[:, start : start + step] = A @ G[:, start : start + step] >= 0
    if dedupe:
        masks, G = dedupe_masks(masks, G)
    return Arrangements(masks=masks, generators=G, exact=False)


def exact_arrangements(A: np.ndarray, max_count: int = MAX_ARRANGEMENTS, tol: float = 1e-10) -> Arrangements:
    """Enumerate every pattern 1[A g ≥ 0], g ∈ R^q, via the rays of the central arrangement.

    Every full-dimensional cell of {a_iᵀ g = 0} has an edge on the intersection line of some
    q−1 independent hyperplanes; stepping off that line into each of the 2^{q−1} sign orthants
    of those hyperplanes (by a tiny step) reaches every cell adjacent to the line.
    """
    A = np.asarray(A, dtype=np.float64)
    n, q = A.shape
    bound = arrangement_upper_bound(n, q, cap=max_count)
    if bound > max_count:
        raise ValueError(
            f"exact arrangements: n={n} points of rank {q} can have more than the limit of {max_count:,} "
            "patterns; use sampled arrangements (--arrangements N) or truncate the whitening (--truncate K)"
        )
    scale = np.linalg.norm(A, axis=1)
    scale[scale == 0] = 1.0
    An = A / scale[:, None]
    masks = np.zeros((n, 0), dtype=bool)
    G = np.zeros((q, 0))
    gens: list[np.ndarray] = []

    def flush() -> None:
        """Fold the pending generators into (masks, G), de-duplicated (bounds memory to ~P + chunk)."""
        nonlocal masks, G
        if gens:
            Gc = np.array(gens).T  # (q, chunk)
            gens.clear()
            masks, G = dedupe_masks(np.hstack([masks, A @ Gc >= 0]), np.hstack([G, Gc]))

    if q == 1:
        gens.extend([np.array([1.0]), np.array([-1.0])])
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
            steps = step * (signs @ B.T)  # (2^{q-1}, q): B @ sg for every sign vector sg
            gens.extend(t + steps)
            gens.extend(-t + steps)
            if len(gens) >= 65_536:
                flush()
    # Rows exactly on a ray (degenerate data): the step already decides their side; nothing else to do.
    flush()
    if masks.shape[1] > max_count:
        raise ValueError(f"exact arrangements: {masks.shape[1]:,} patterns exceed the limit {max_count:,}")
    return Arrangements(masks=masks, generators=G, exact=True)


def arrangements_for(A: np.ndarray, spec: str | int, seed: int = 0, max_exact: int = MAX_ARRANGEMENTS) -> Arrangements:
    """`spec` = "exact" (enumerate all) or an integer count of Gaussian samples (seeded)."""
    parsed = parse_arrangement_spec(spec)
    if parsed == "exact":
        return exact_arrangements(A, max_count=max_exact)
    return sample_arrangements(A, int(parsed), seed=seed)
