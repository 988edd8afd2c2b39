"""The (C2) operator on tensors (U', masks, signs, targets), the group shrink and the ADMM v-step."""

from __future__ import annotations

import math

import numpy as np
import torch

from convexbn.solver.state import TINY


class C2Operator:
    """Tensors of one (C2) instance: U', masks, signs and targets on a device in a dtype."""

    def __init__(self, Ut: np.ndarray, masks: np.ndarray, Y: np.ndarray, beta: float,
                 dtype: torch.dtype, device: torch.device):
        """Move U', masks (as D_i, S_i and 0/−∞ offsets), signs and targets to the device in `dtype`."""
        self.n, self.q = Ut.shape
        self.P = masks.shape[1]
        self.C = Y.shape[1]
        self.beta = float(beta)
        self.dtype, self.device = dtype, device
        self.U = torch.as_tensor(Ut, dtype=dtype, device=device)
        self.UT = self.U.T.contiguous()
        m = torch.as_tensor(masks, device=device).to(dtype)
        self.M = m.view(self.n, 1, self.P, 1)  # D_i diagonals
        self.S = (2 * m - 1).view(self.n, 1, self.P, 1)  # S_i diagonals
        self.off = torch.zeros_like(self.M).masked_fill_(self.M == 0, -math.inf)  # 0 in, −∞ outside masks
        self.sig = torch.tensor([1.0, -1.0], dtype=dtype, device=device).view(1, 2, 1, 1)
        self.Y = torch.as_tensor(Y, dtype=dtype, device=device)

    def Z(self, W: torch.Tensor) -> torch.Tensor:
        """U' W for every block: (n, 2, P, C)."""
        return (self.U @ W.reshape(self.q, -1)).view(self.n, 2, self.P, self.C)

    def fit(self, Z: torch.Tensor) -> torch.Tensor:
        """f = Σ_i D_i U'(u_i − u'_i): (n, C)."""
        return ((Z[:, 0] - Z[:, 1]) * self.M[:, 0]).sum(1)

    def adj(self, T: torch.Tensor) -> torch.Tensor:
        """U'ᵀ T per block: (q, 2, P, C)."""
        return (self.UT @ T.reshape(self.n, -1)).view(self.q, 2, self.P, self.C)

    def lipschitz(self, iters: int = 60, seed: int = 0) -> float:
        """‖A‖² of the fit operator (shared by classes) by power iteration, with a 2 % margin."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        v = torch.randn(self.q, 2, self.P, 1, generator=g, dtype=self.dtype).to(self.device)
        Ms = self.M[..., :1]
        lam = 0.0
        for _ in range(iters):
            v = v / v.norm()
            Z = (self.U @ v.reshape(self.q, -1)).view(self.n, 2, self.P, 1)
            f = ((Z[:, 0] - Z[:, 1]) * Ms[:, 0]).sum(1)  # (n,1)
            T = self.sig * Ms * f[:, None, None, :]
            w = (self.UT @ T.reshape(self.n, -1)).view(self.q, 2, self.P, 1)
            lam_new = float((w * v).sum())
            v = w
            if abs(lam_new - lam) <= 1e-4 * lam_new:
                lam = lam_new
                break
            lam = lam_new
        return 1.02 * lam + 1e-12


def group_shrink(W: torch.Tensor, thr: float) -> torch.Tensor:
    """Block soft-threshold: each column block W[:, s, i, c] shrunk towards 0 by `thr` in norm."""
    nrm = W.norm(dim=0, keepdim=True)
    return W * torch.clamp(1 - thr / torch.clamp(nrm, min=TINY), min=0)


def vstep(M: torch.Tensor, Y4: torch.Tensor, A: torch.Tensor, e: torch.Tensor, rho: float,
           max_passes: int = 60, off: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-separable v-step: project A onto the sign cones K_b coupled by the fit, exactly per row.

    A: (n, 2, P, C) = U'W + Λ; M: (n, 1, P, 1) masks; Y4: (n, 1, 1, C); e: (n, 1, 1, C) warm start
    of the row residual; off: (n, 1, P, 1) 0 inside the masks and −∞ outside (built from M when not
    given). Rows with m = 0 give v = min(0, a); rows with m = 1 give v = max(0, a − s e/ρ) where e solves
    h(e) = e − Σ₊(a − e/ρ)₊ + Σ₋(a + e/ρ)₊ + y = 0 (h increasing, piecewise linear), found by Newton
    steps safeguarded by a bracket (bisection when a step leaves it). Adding `off` (instead of
    multiplying by M) makes every entry outside the masks vanish from the sums after (·)₊.
    """
    if off is None:
        off = torch.zeros_like(M).masked_fill_(M == 0, -math.inf)
    a0, a1 = A[:, 0:1], A[:, 1:2]
    b0 = a0 + off
    b1 = a1 + off
    pos0 = b0.clamp(min=0).sum(2, keepdim=True)
    pos1 = b1.clamp(min=0).sum(2, keepdim=True)
    e0 = pos0 - pos1 - Y4  # h(0) = −e0, and the root lies between 0 and e0
    lo = torch.minimum(e0, torch.zeros_like(e0))
    hi = torch.maximum(e0, torch.zeros_like(e0))
    e = torch.minimum(torch.maximum(e, lo), hi)
    neg = (M * (a0.clamp(max=0) + a1.clamp(max=0))).sum(2, keepdim=True)
    scale = 1.0 + Y4.abs() + 2.0 * (pos0 + pos1) - neg  # 1 + |y| + Σ_mask (|a0| + |a1|) + pos0 + pos1
    eps = 64 * torch.finfo(A.dtype).eps
    for _ in range(max_passes):
        t = e / rho
        p0 = (b0 - t).clamp_(min=0)
        p1 = (b1 + t).clamp_(min=0)
        h = e - p0.sum(2, keepdim=True) + p1.sum(2, keepdim=True) + Y4
        if bool((h.abs() <= eps * scale).all()):
            break
        dh = 1.0 + (p0.sign_().sum(2, keepdim=True) + p1.sign_().sum(2, keepdim=True)) / rho
        lo = torch.where(h < 0, e, lo)
        hi = torch.where(h > 0, e, hi)
        en = e - h / dh
        e = torch.where((en < lo) | (en > hi), 0.5 * (lo + hi), en)
    t = e / rho
    out = A.clamp(max=0) * (1.0 - M)
    out[:, 0:1] += (b0 - t).clamp_(min=0)
    out[:, 1:2] += (b1 + t).clamp_(min=0)
    return out, e
