"""The gated relaxation of (C2) (fixed gates, no cone constraints) by FISTA, chunked over rows.

min ½‖Σ_i D_i U' w_i − Y‖² + β Σ ‖w_i‖. Rows are processed in chunks and masks may be recomputed
from arrangement generators, so memory is O(chunk·P·C + n·q + P·q·C).
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterator

import numpy as np
import torch

from convexbn.devices import resolve_device, resolve_dtype
from convexbn.solver.operator import group_shrink
from convexbn.solver.state import (
    TINY,
    FastSolution,
    adapt_blocks,
    as_targets,
    check_inputs,
    choose_threads,
    masks_from,
    torch_threads,
)


class GatedOperator:
    """Chunked operator f = Σ_i D_i U' w_i with masks stored or recomputed from generators."""

    def __init__(self, Ut: np.ndarray, masks: np.ndarray | None, generators: np.ndarray | None,
                 Y: np.ndarray, dtype: torch.dtype, device: torch.device, chunk: int):
        """Store U', targets and either the masks or the generators on the device."""
        self.n, self.q = Ut.shape
        self.U = torch.as_tensor(Ut, dtype=dtype, device=device)
        self.Y = torch.as_tensor(Y, dtype=dtype, device=device)
        self.C = Y.shape[1]
        self.dtype, self.device = dtype, device
        if masks is not None:
            self.masks = torch.as_tensor(np.asarray(masks, dtype=bool), device=device)
            self.G = None
            self.P = self.masks.shape[1]
        else:
            self.masks = None
            self.G = torch.as_tensor(np.asarray(generators, dtype=np.float64), dtype=dtype, device=device)
            self.P = self.G.shape[1]
        self.chunk = max(1, int(chunk))

    def rows(self) -> Iterator[tuple[int, int]]:
        """Row ranges of the chunks."""
        for a in range(0, self.n, self.chunk):
            yield a, min(self.n, a + self.chunk)

    def mask(self, a: int, b: int) -> torch.Tensor:
        """(rows, P) 0/1 masks of a chunk (recomputed as U'g ≥ 0 when only generators are stored)."""
        if self.masks is not None:
            return self.masks[a:b].to(self.dtype)
        return (self.U[a:b] @ self.G >= 0).to(self.dtype)

    def forward(self, W: torch.Tensor) -> torch.Tensor:
        """f (n, C) for blocks W (q, P, C)."""
        out = torch.empty(self.n, self.C, dtype=self.dtype, device=self.device)
        Wf = W.reshape(self.q, -1)
        for a, b in self.rows():
            Z = (self.U[a:b] @ Wf).view(b - a, self.P, self.C)
            out[a:b] = torch.einsum("rpc,rp->rc", Z, self.mask(a, b))
        return out

    def adjoint(self, R: torch.Tensor) -> torch.Tensor:
        """U'ᵀ D_i r_c for every block: (q, P, C)."""
        out = torch.zeros(self.q, self.P * self.C, dtype=self.dtype, device=self.device)
        for a, b in self.rows():
            T = self.mask(a, b)[:, :, None] * R[a:b, None, :]
            out.addmm_(self.U[a:b].T, T.reshape(b - a, -1))
        return out.view(self.q, self.P, self.C)

    def lipschitz(self, iters: int = 60) -> float:
        """‖A‖² of the gated operator by power iteration (2 % margin)."""
        g = torch.Generator(device="cpu").manual_seed(0)
        v = torch.randn(self.q, self.P, 1, generator=g, dtype=self.dtype).to(self.device)
        C, self.C = self.C, 1
        lam = 0.0
        try:
            for _ in range(iters):
                v = v / v.norm()
                w = self.adjoint(self.forward(v))
                lam_new = float((w * v).sum())
                v = w
                if abs(lam_new - lam) <= 1e-4 * lam_new:
                    lam = lam_new
                    break
                lam = lam_new
        finally:
            self.C = C
        return 1.02 * lam + 1e-12


def gated_gradient_time(Ut: np.ndarray, W: np.ndarray, Y: np.ndarray, *, masks: np.ndarray | None = None,
                        generators: np.ndarray | None = None, dtype: str = "float32",
                        device: str | None = None, chunk: int = 1024, threads: int | None = None,
                        repeats: int = 1) -> float:
    """Seconds for one full gradient (forward + adjoint) of the gated fit term; for benchmarks."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    Y = as_targets(Y, Ut.shape[0])
    op = GatedOperator(Ut, masks, generators, Y, dt, dev, chunk)
    Wt = torch.as_tensor(W, dtype=dt, device=dev)
    nth = threads or choose_threads(Ut.shape[0], Ut.shape[1], op.P * op.C, dev)
    best = math.inf
    with torch_threads(nth):
        for _ in range(repeats):
            t = time.perf_counter()
            r = op.forward(Wt) - op.Y
            op.adjoint(r)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    return best


def solve_gated_fast(
    Ut: np.ndarray,
    Y: np.ndarray,
    beta: float,
    masks: np.ndarray | None = None,
    *,
    generators: np.ndarray | None = None,
    tol: float = 1e-6,
    loss: str = "squared",
    max_seconds: float | None = None,
    max_iter: int | None = None,
    dtype: str = "float64",
    device: str | torch.device | None = None,
    warm_start: np.ndarray | FastSolution | None = None,
    chunk: int = 2048,
    verbose: bool = False,
    threads: int | None = None,
    check_every: int = 10,
) -> FastSolution:
    """Gated relaxation min ½‖Σ_i D_i U' w_i − Y‖² + β Σ ‖w_i‖ (fixed gates, no cones) by FISTA.

    Certificate: λ_c = y_c − f_c scaled by s_c ≤ min(1, β / max_i ‖U'ᵀ D_i λ_c‖) is dual feasible;
    gap = (primal − Σ_c [s λᵀy − s²‖λ‖²/2]) / primal. Blocks are returned in `u`; `up` is zero.
    """
    t0 = time.perf_counter()
    Ut = check_inputs(Ut, beta, loss)
    n, q = Ut.shape
    if masks is None and generators is None:
        raise ValueError("pass either masks (n, P) bool or generators (q, P)")
    if masks is not None:
        masks = masks_from(Ut, masks, None)
    Y = as_targets(Y, n)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    op = GatedOperator(Ut, masks, generators, Y, dt, dev, chunk)
    P, C = op.P, op.C
    nthreads = threads or choose_threads(n, q, P * C, dev)
    with torch_threads(nthreads):
        L = op.lipschitz()
        if warm_start is None:
            W = torch.zeros(q, P, C, dtype=dt, device=dev)
        else:
            u0 = warm_start.u if isinstance(warm_start, FastSolution) else warm_start
            W = torch.as_tensor(adapt_blocks(u0, q, P, C).transpose(1, 0, 2).copy(), dtype=dt, device=dev)
        best, status, it, history = fista(op, W, L, beta, tol, max_iter, max_seconds, t0, check_every, verbose)
    Wb = best["W"].to(torch.float64).cpu().numpy().transpose(1, 0, 2)
    return FastSolution(u=np.ascontiguousarray(Wb), up=np.zeros_like(Wb), objective=best["primal"],
                        gap=best["gap"], cone_violation=0.0, status=status, iterations=it,
                        seconds=time.perf_counter() - t0, history=history, dual=best["dual"], device=str(dev),
                        dtype=str(dt).replace("torch.", ""), threads=nthreads, extra={"lipschitz": L})


def fista_step(op: GatedOperator, x: torch.Tensor, yk: torch.Tensor, t: float, L: float, beta: float
               ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """One proximal-gradient step from yk with momentum and gradient-based restart → (x, y, t)."""
    grad = op.adjoint(op.forward(yk) - op.Y)
    x_new = group_shrink((yk - grad / L).unsqueeze(1), beta / L).squeeze(1)
    diff = x_new - x
    if float(((yk - x_new) * diff).sum()) > 0:
        return x_new, x_new, 1.0
    t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
    return x_new, x_new + ((t - 1) / t_new) * diff, t_new


def fista(op: GatedOperator, W: torch.Tensor, L: float, beta: float, tol: float, max_iter: int | None,
          max_seconds: float | None, t0: float, check_every: int, verbose: bool
          ) -> tuple[dict[str, Any], str, int, list[dict]]:
    """FISTA from W until the certified gap ≤ tol or a budget ends → (best certificate, status, iterations, history)."""
    x, yk, t = W, W, 1.0
    it = 0
    history: list[dict] = []
    best: dict[str, Any] | None = None
    while True:
        x, yk, t = fista_step(op, x, yk, t, L, beta)
        it += 1
        stop = None
        if max_iter is not None and it >= max_iter:
            stop = "max_iter"
        elif max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
            stop = "time_limit"
        if it % check_every == 0 or stop:
            cert = gated_certificate(op, x, beta)
            cert["W"] = x
            history.append({"iteration": it, "seconds": time.perf_counter() - t0, "objective": cert["primal"],
                            "dual": cert["dual"], "gap": cert["gap"]})
            if verbose:
                print(f"[fast gated] it={it} obj={cert['primal']:.10g} gap={cert['gap']:.2e}")
            if best is None or cert["gap"] < best["gap"]:
                best = cert
            if cert["gap"] <= tol:
                return best, "optimal", it, history
        if stop:
            assert best is not None
            return best, stop, it, history


def gated_certificate(op: GatedOperator, W: torch.Tensor, beta: float) -> dict[str, Any]:
    """Primal, dual and relative gap of the gated relaxation at W (accumulated in float64)."""
    r = (op.forward(W) - op.Y)
    lam = -r
    A = op.adjoint(lam)
    wmax = A.norm(dim=0).amax(dim=0).to(torch.float64)  # (C,)
    lam64, Y64 = lam.to(torch.float64), op.Y.to(torch.float64)
    ly = (lam64 * Y64).sum(0)
    ll = (lam64 * lam64).sum(0)
    smax = torch.clamp(beta / torch.clamp(wmax, min=TINY), max=1.0)
    s = torch.minimum(torch.clamp(ly / torch.clamp(ll, min=TINY), min=0.0), smax)
    dual = float((s * ly - 0.5 * s * s * ll).sum())
    primal = 0.5 * float(ll.sum()) + beta * float(W.to(torch.float64).norm(dim=0).sum())
    gap = max((primal - dual) / max(abs(primal), 1e-12), 0.0)
    return {"primal": primal, "dual": dual, "gap": gap}
