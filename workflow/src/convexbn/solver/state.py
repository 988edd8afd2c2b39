"""Shared pieces of the fast (C2) solver: limits, the result record, input checks, threads, warm starts."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

from convexbn.devices import count_neurons

#: Cone violation accepted as "feasible", relative to max(1, max block norm).
CONE_TOL = 1e-9
#: Run the ADMM phase of a float64 solve in float32 (the polish and certificate stay float64).
ADMM_FP32 = True
TINY = 1e-300
#: Above this many bytes of dense (C2) state, solve_c2_fast switches to the working-set mode (8 GB target).
DENSE_C2_BYTES = 6e9
#: Memory the polish may use (per-block n × q matrices and the dense face Hessian); above it the polish
#: is skipped and ADMM goes on (a q = 785 class with ~300 active blocks was killed for memory otherwise).
POLISH_MAX_BYTES = 4e9
#: Above this many patterns solve_c2_fast also switches to the working-set mode: the dense ADMM state grows
#: with every pattern, most of which end inactive (n = 5 000, P = 512, C = 10: dense 90 iterations in 390 s).
WORKING_SET_PATTERNS = 256


@dataclass
class FastSolution:
    """Result of a fast solve: blocks, primal objective, certificate and trace."""

    u: np.ndarray  # (P, q, C) positive blocks u_ic
    up: np.ndarray  # (P, q, C) negative blocks u'_ic (zeros for the gated relaxation)
    objective: float  # primal objective at (u, up), paper convention
    gap: float  # relative duality gap (primal − dual) / primal, from an explicit dual-feasible point; NaN when
    #             the point violates the cones by more than CONE_TOL (its value is then no upper bound)
    cone_violation: float  # max_{i,c,j} (−(S_i U' u)_j)_+ over u and up
    status: str  # "optimal" (certified) | "max_iter" | "time_limit"
    iterations: int  # first-order iterations in total
    seconds: float
    history: list[dict] = field(default_factory=list)
    dual: float = float("nan")  # the certified lower bound
    device: str = "cpu"
    dtype: str = "float64"
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def neurons(self) -> int:
        """Number of non-zero blocks (neurons of the reconstructed network), with the project's threshold."""
        return count_neurons(np.linalg.norm(self.u, axis=1), np.linalg.norm(self.up, axis=1))


def dense_c2_bytes(n: int, P: int, C: int) -> float:
    """Approximate peak bytes of the dense (C2) solver: about 8 float64 arrays of n·2P·C numbers."""
    return 64.0 * n * 2 * P * C


def choose_threads(n: int, q: int, width: int, device: torch.device) -> int:
    """BLAS threads for GEMMs (n×q)·(q×width): one for skinny shapes (measured faster on 2 cores).

    On a 2-core machine the two-thread GEMM with inner dimension q ≤ ~128 pays more in
    synchronisation than it gains (benchmarks/README.md gives the measurements); wide, deep products
    use every core.
    """
    if device.type != "cpu":
        return torch.get_num_threads()
    cores = max(1, torch.get_num_threads())
    if q <= 128 or n * width < 4_000_000:
        return 1
    return cores


@contextmanager
def torch_threads(k: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(k)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def blas_threads(k: int) -> Iterator[None]:
    """Temporarily limit NumPy/SciPy BLAS threads (threadpoolctl when installed, else a no-op).

    The polish does many small dense products; on a shared 2-core machine a second BLAS thread
    made identical runs vary by 4× (measured), so it follows the same thread choice as torch.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it NumPy keeps its default thread count
        yield
        return
    with threadpool_limits(limits=max(1, int(k)), user_api="blas"):
        yield


def as_targets(Y: np.ndarray, n: int) -> np.ndarray:
    """Y as an (n, C) float64 matrix with a clear error on a shape mismatch."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ValueError(f"Y must have shape (n,) or (n, C) with n = {n} rows, got {Y.shape}")
    return Y


def check_features(Ut: np.ndarray) -> np.ndarray:
    """U' as a float64 (n, q) matrix with orthonormal columns, or a ValueError naming the fix."""
    Ut = np.asarray(Ut, dtype=np.float64)
    if Ut.ndim != 2:
        raise ValueError(f"Ut must be an (n, q) matrix, got shape {Ut.shape}")
    q = Ut.shape[1]
    err = float(np.abs(Ut.T @ Ut - np.eye(q)).max())
    if err > 1e-6:
        raise ValueError(
            f"Ut must have orthonormal columns (U' of convexbn.whitening), but max|U'ᵀU' − I| = {err:.2e}; "
            "pass Whitening.features(X) of the training data"
        )
    return Ut


def check_inputs(Ut: np.ndarray, beta: float, loss: str) -> np.ndarray:
    """Validate U' and β and the loss (only squared loss is implemented by the fast solver)."""
    if loss != "squared":
        raise ValueError(
            f"the fast solver implements loss='squared' only, got loss={loss!r}; "
            "use a CVXPY solver (solver='auto' or 'CLARABEL') for other losses"
        )
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    return check_features(Ut)


def masks_from(Ut: np.ndarray, masks: np.ndarray | None, generators: np.ndarray | None) -> np.ndarray:
    """Boolean (n, P) masks, from `masks` or recomputed as U' g ≥ 0 from `generators` (q, P)."""
    if masks is None and generators is None:
        raise ValueError("pass either masks (n, P) bool or generators (q, P)")
    if masks is None:
        G = np.asarray(generators, dtype=np.float64)
        if G.ndim != 2 or G.shape[0] != Ut.shape[1]:
            raise ValueError(f"generators must have shape (q={Ut.shape[1]}, P), got {G.shape}")
        return Ut @ G >= 0
    masks = np.asarray(masks)
    if masks.dtype != bool:
        masks = masks.astype(bool)
    if masks.ndim != 2 or masks.shape[0] != Ut.shape[0]:
        raise ValueError(f"masks must have shape (n={Ut.shape[0]}, P), got {masks.shape}")
    return masks


def adapt_blocks(u: np.ndarray, q: int, P: int, C: int) -> np.ndarray:
    """Fit warm-start blocks (P', q', C) to (P, q, C): truncation levels k share the bias row last."""
    u = np.asarray(u, dtype=np.float64)
    if u.ndim == 2:
        u = u[:, :, None]
    if u.shape[0] != P or u.shape[2] != C:
        raise ValueError(f"warm start has shape {u.shape}; expected (P={P}, q, C={C}) with the same patterns")
    out = np.zeros((P, q, C))
    k_old, k_new = u.shape[1] - 1, q - 1
    kk = min(k_old, k_new)
    out[:, :kk] = u[:, :kk]
    out[:, -1] = u[:, -1]
    return out


def warm_blocks(warm_start: Any, q: int, P: int, C: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(W (q,2,P,C), multipliers or None) from a FastSolution, a (u, up) pair, or None."""
    if warm_start is None:
        return None, None
    if isinstance(warm_start, FastSolution):
        u, up = warm_start.u, warm_start.up
        mult = warm_start.extra.get("multipliers")
    elif isinstance(warm_start, (tuple, list)) and len(warm_start) == 2:
        u, up = warm_start
        mult = None
    else:
        raise ValueError("warm_start must be a FastSolution, a (u, up) pair of (P, q, C) arrays, or None")
    u = adapt_blocks(u, q, P, C)
    up = adapt_blocks(up, q, P, C)
    W = np.stack([u, up], axis=0).transpose(2, 0, 1, 3)  # (q, 2, P, C)
    if mult is not None and (mult.shape[1:] != (2, P, C)):
        mult = None
    return np.ascontiguousarray(W), mult
