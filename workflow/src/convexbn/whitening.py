"""Centred SVD whitening: U' = [U, c·1] from J X = U Σ Vᵀ, optional top-k truncation, and the map φ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

BiasColumn = Literal["unit", "ones"]


@dataclass(frozen=True)
class Whitening:
    """Centred compact SVD of training data; `features` gives U' coordinates of any sample."""

    mean: np.ndarray  # (d,) training mean μ
    V: np.ndarray  # (d, k) right singular vectors kept
    sigma: np.ndarray  # (k,) singular values kept, descending
    n: int  # number of training samples
    rank: int  # numerical rank r of J X before truncation
    bias_value: float  # value c of the bias column (1/√n for "unit", 1 for "ones")
    full_sigma: np.ndarray  # (r,) all singular values, for spectra and truncation choices

    @property
    def k(self) -> int:
        """Number of retained singular directions."""
        return int(self.sigma.shape[0])

    @property
    def q(self) -> int:
        """Number of columns of U' (k retained directions plus the bias column)."""
        return self.k + 1

    def features(self, X: np.ndarray) -> np.ndarray:
        """φ(X) = [ (X − μ) V Σ⁻¹ , c·1 ] — equals U' on the training rows."""
        X = np.asarray(X, dtype=np.float64)
        Z = (X - self.mean) @ self.V / self.sigma
        return np.hstack([Z, np.full((X.shape[0], 1), self.bias_value)])

    def first_layer(self, S: np.ndarray) -> np.ndarray:
        """First-layer weights w = V Σ⁻¹ s_{1:k} for whitened directions S (k, m) → (d, m)."""
        return self.V @ (np.asarray(S)[: self.k] / self.sigma[:, None])


def as_data_matrix(X: np.ndarray, where: str = "whiten") -> np.ndarray:
    """X as a finite (n, d) float64 matrix with n >= 2 (BN needs two samples), or a ValueError naming the problem."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"{where}: X must be an (n, d) matrix with n >= 2, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{where}: X contains NaN or infinite values; clean or impute the data first")
    return X


def default_rank_tol(X: np.ndarray, sigma_max: float) -> float:
    """The usual numerical-rank tolerance max(n, d)·ε·σ_max (as numpy.linalg.matrix_rank)."""
    return max(X.shape) * np.finfo(np.float64).eps * sigma_max


def whiten(
    X: np.ndarray,
    k: int | None = None,
    rank_tol: float | None = None,
    bias: BiasColumn = "unit",
) -> Whitening:
    """Centre X, take its compact SVD with an explicit rank tolerance, keep the top-k directions."""
    X = as_data_matrix(X, "whiten")
    n = X.shape[0]
    if bias not in ("unit", "ones"):
        raise ValueError(f"whiten: bias must be 'unit' (1/sqrt(n)) or 'ones', got {bias!r}")
    if k is not None and k < 0:
        raise ValueError(f"whiten: truncation k must be >= 0, got {k}")
    mean = X.mean(axis=0)
    _, s, Vt = np.linalg.svd(X - mean, full_matrices=False)
    tol = default_rank_tol(X, s[0] if s.size else 0.0) if rank_tol is None else float(rank_tol)
    r = int(np.sum(s > tol))
    kk = r if k is None else min(int(k), r)
    c = 1.0 / np.sqrt(n) if bias == "unit" else 1.0
    return Whitening(
        mean=mean,
        V=Vt[:kk].T.copy(),
        sigma=s[:kk].copy(),
        n=n,
        rank=r,
        bias_value=float(c),
        full_sigma=s[:r].copy(),
    )


def truncate(wh: Whitening, k: int | None) -> Whitening:
    """The same whitening restricted to its top-k directions (k=None or k ≥ current k: unchanged)."""
    if k is None or k >= wh.k:
        return wh
    if k < 0:
        raise ValueError(f"truncate: k must be >= 0, got {k}")
    return Whitening(
        mean=wh.mean,
        V=wh.V[:, :k].copy(),
        sigma=wh.sigma[:k].copy(),
        n=wh.n,
        rank=wh.rank,
        bias_value=wh.bias_value,
        full_sigma=wh.full_sigma,
    )


def save_whitening(path: str, wh: Whitening) -> None:
    """Write a whitening to an .npz file atomically (cache shared by every convex job of a dataset)."""
    import io as _io

    from convexbn.io import atomic_write_bytes

    buf = _io.BytesIO()
    np.savez(
        buf,
        mean=wh.mean,
        V=wh.V,
        sigma=wh.sigma,
        n=wh.n,
        rank=wh.rank,
        bias_value=wh.bias_value,
        full_sigma=wh.full_sigma,
    )
    atomic_write_bytes(path, buf.getvalue())


def load_whitening(path: str) -> Whitening:
    """Read a whitening written by `save_whitening`."""
    with np.load(path) as z:
        return Whitening(
            mean=z["mean"],
            V=z["V"],
            sigma=z["sigma"],
            n=int(z["n"]),
            rank=int(z["rank"]),
            bias_value=float(z["bias_value"]),
            full_sigma=z["full_sigma"],
        )


def path_energy_convex(u: np.ndarray, up: np.ndarray, r: int) -> np.ndarray:
    """Per-singular-direction energy Σ_blocks u_k²/‖u_{1:r}‖ of a convex solution (normalised to 1)."""
    B = np.concatenate([u, up], axis=0)[:, :r, :]  # (2P, r, C)
    B = np.moveaxis(B, 2, 1).reshape(-1, r)  # blocks × r
    nrm = np.linalg.norm(B, axis=1)
    keep = nrm > 0
    E = (B[keep] ** 2 / nrm[keep, None]).sum(0)
    return E / max(E.sum(), 1e-300)


def path_energy_network(
    W: np.ndarray, gamma: np.ndarray, Vout: np.ndarray, V: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """Per-singular-direction energy Σ_j |γ_j|‖v_j‖ ẑ_jk² of a BN net, ẑ_j ∝ Σ Vᵀ w_j (normalised to 1)."""
    Z = sigma[:, None] * (V.T @ W)  # (r, m)
    Zn = Z / np.maximum(np.linalg.norm(Z, axis=0, keepdims=True), 1e-300)
    weight = np.abs(gamma) * np.linalg.norm(Vout, axis=1)
    E = (Zn**2 * weight[None, :]).sum(1)
    return E / max(E.sum(), 1e-300)


def top_fraction_energy(E: np.ndarray, fraction: float) -> float:
    """Share of the energy carried by the top `fraction` of singular directions."""
    k = max(1, int(np.ceil(fraction * len(E))))
    return float(np.sum(E[:k]) / max(np.sum(E), 1e-300))
