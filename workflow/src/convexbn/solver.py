"""convexbn's fast first-order solver for program (C2) with an optimality certificate.

Problem (decoupled per class c = 1..C, masks D_i = diag(m_i), U' with orthonormal columns):

    min_{u_ic, u'_ic}  ½ Σ_c ‖Σ_i D_i U'(u_ic − u'_ic) − y_c‖² + β Σ_{i,c} (‖u_ic‖ + ‖u'_ic‖)
    s.t.  S_i U' u_ic ≥ 0,  S_i U' u'_ic ≥ 0,   S_i = 2 D_i − I.

Method.
1. ADMM with the splitting v_b = U' w_b, v_b ∈ K_b = {v : v_j ≥ 0 where m_bj = 1, v_j ≤ 0 where
   m_bj = 0} (b runs over the 2P blocks u_i, u'_i with signs ±1). Because U' has orthonormal
   columns the w-step is a group soft-threshold of U'ᵀ(v − λ) (one GEMM for all blocks and
   classes); the v-step is row-separable: rows outside a mask give v = min(0, a), rows inside solve
   a scalar monotone piecewise-linear equation for the row residual e (safeguarded Newton,
   `_vstep`; entries outside the masks are removed by adding a cached 0/−∞ offset, v4). Over-relaxation
   1.6 and residual balancing of ρ. For a float64 solve with polish the ADMM phase runs in float32
   (v4: it only has to reach residual ~1e-2; the polish and the certificate are float64) and switches
   to float64 if a polish attempt fails.
2. Polish (v3), started as soon as the number of active blocks settles (count changes ≤ 15 %
   between checks and primal residual < 1e-2): per class, a primal active-set Newton method
   (`_active_set_polish`). Each active block is projected exactly onto its cone (restricted-row
   NNLS, `_project_cone`); the working set of each block is its set of tight rows; every round is
   one Newton step of the smooth problem on the faces {G_A w_b = 0} (null-space coordinates, one
   dense solve of size Σ dim(face)), truncated per block at its first blocking row (which joins
   the working set); at a face optimum the most negative face multiplier of each block is
   released; blocks that reach zero leave; when nothing changes, every zero block is priced
   (cheap bound from the ADMM multipliers, then restricted NNLS only where that bound exceeds β)
   and blocks whose projected steepest-descent direction beats β enter (column generation).
   Iterates stay exactly feasible. v4: the fit Hessian of the face coordinates is carried from
   round to round as Tᵀ H T when blocks only gained rows (Householder basis updates, `_fit_hessian`),
   null bases and face multipliers use pivoted QR / gelsy instead of SVDs, and before pricing all
   zero blocks' multipliers are improved together by batched projected gradient (`_dual_pg`), so the
   per-block NNLS runs only for the few blocks still above β. The returned multipliers (face multipliers for active blocks,
   NNLS multipliers for priced zero blocks) certify the class directly. Fallback when the
   active-set method does not finish (v2): a restricted conic solve (Clarabel called directly with
   the kq × kq fit Hessian, no CVXPY) seeding the face Newton `_polish_class`.
3. Certificate: Lagrangian duality with λ ∈ R^{n×C} for the fit and μ ≥ 0 for the cones gives
       max  Σ_c [ λ_cᵀ y_c − ½‖λ_c‖² ]
       s.t. ‖U'ᵀ( D_i λ_c + S_i μ_ic)‖ ≤ β,  ‖U'ᵀ(−D_i λ_c + S_i μ'_ic)‖ ≤ β  for all i, c, μ ≥ 0.
   We take λ_c = y_c − f_c (the residual of the returned point), μ from the solver (improved by a
   few projected-gradient steps, and, for blocks still above β, by an exact Lawson–Hanson solve
   (`_exact_multipliers`) of the per-block non-negative least-squares problem
   min_{μ ≥ 0} ‖U'ᵀ(±D_i λ_c + S_i μ)‖), and scale (λ_c, μ_c) by s_c ≤ min(1, β / max_i norm), which
   makes the pair feasible; s_c is chosen to maximise the dual value. The dual value is therefore a
   true lower bound on the optimum for the given masks, whatever the state of the solver, and
       gap = (primal(u) − dual) / max(primal(u), tiny)
   is an honest relative duality gap. The cone violation max_{i,c,j} (−(S_i U' u_ic)_j)_+ is reported
   separately (the primal value is a valid upper bound only when it is zero); status is "optimal"
   only when gap ≤ tol and violation ≤ 1e-9·max(1, max‖u‖). The certificate is always evaluated in
   float64, even when iterations run in float32.

4. Working-set mode (`_solve_c2_working_set`, automatic for P > WORKING_SET_PATTERNS or a dense state above
   DENSE_C2_BYTES): class by class, the dense method above runs on a subset of patterns, every other
   pattern is priced at the new residual with certified bounds (`price_patterns`: μ = 0, batched
   projected gradient, exact cone projection where still above β) and the most violating ones join;
   the certificate combines the subset's multipliers with the pricing bounds.

Memory: the dense C2 solver keeps about 8 arrays of n·2P·C numbers (V, Λ, U'W, temporaries); the working-set
mode keeps the masks (n·P bytes) plus one dense solve on n × 2|A|; `solve_gated_fast`
(no cone constraints) processes rows in chunks and may recompute masks from arrangement generators,
so its memory is O(chunk·P·C + n·q + P·q·C).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import scipy.linalg
import torch

#: Cone violation accepted as "feasible", relative to max(1, max block norm).
CONE_TOL = 1e-9
#: Run the ADMM phase of a float64 solve in float32 (the polish and certificate stay float64).
_ADMM_FP32 = True
_TINY = 1e-300
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
    iterations: int  # first-order iterations (FISTA steps) in total
    seconds: float
    history: list[dict] = field(default_factory=list)
    dual: float = float("nan")  # the certified lower bound
    device: str = "cpu"
    dtype: str = "float64"
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def neurons(self) -> int:
        """Number of non-zero blocks (neurons of the reconstructed network)."""
        nu = np.linalg.norm(self.u, axis=1)
        nup = np.linalg.norm(self.up, axis=1)
        scale = max(float(nu.max(initial=0.0)), float(nup.max(initial=0.0)), 1e-300)
        return int((nu > 1e-8 * scale).sum() + (nup > 1e-8 * scale).sum())


# --------------------------------------------------------------------------------------------------
# set-up helpers


def resolve_device(device: str | torch.device | None) -> torch.device:
    """CUDA when available and nothing was asked, else the requested device."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu' or None")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Map 'float32'/'float64' (or a torch dtype) to a torch dtype."""
    table = {"float32": torch.float32, "float64": torch.float64, "fp32": torch.float32, "fp64": torch.float64}
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype {dtype} not supported; use 'float32' or 'float64'")
        return dtype
    if dtype not in table:
        raise ValueError(f"dtype {dtype!r} not supported; use 'float32' or 'float64'")
    return table[dtype]


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
def _threads(k: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(k)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextmanager
def _blas_threads(k: int) -> Iterator[None]:
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


def _as_Y(Y: np.ndarray, n: int) -> np.ndarray:
    """Y as an (n, C) float64 matrix with a clear error on a shape mismatch."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ValueError(f"Y must have shape (n,) or (n, C) with n = {n} rows, got {Y.shape}")
    return Y


def _check_inputs(Ut: np.ndarray, beta: float, loss: str) -> np.ndarray:
    """Validate U' and β and the loss (only squared loss is implemented by the fast solver)."""
    if loss != "squared":
        raise ValueError(
            f"the fast solver implements loss='squared' only, got loss={loss!r}; "
            "use a CVXPY solver (solver='auto' or 'CLARABEL') for other losses"
        )
    Ut = np.asarray(Ut, dtype=np.float64)
    if Ut.ndim != 2:
        raise ValueError(f"Ut must be an (n, q) matrix, got shape {Ut.shape}")
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    q = Ut.shape[1]
    G = Ut.T @ Ut
    err = float(np.abs(G - np.eye(q)).max())
    if err > 1e-6:
        raise ValueError(
            f"Ut must have orthonormal columns (U' of convexbn.whitening), but max|U'ᵀU' − I| = {err:.2e}; "
            "pass Whitening.features(X) of the training data"
        )
    return Ut


def _masks_from(Ut: np.ndarray, masks: np.ndarray | None, generators: np.ndarray | None) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------
# the C2 operator (full tensors) and its certificate


class _C2:
    """Tensors of one (C2) instance: U', masks, signs and targets on a device in a dtype."""

    def __init__(self, Ut: np.ndarray, masks: np.ndarray, Y: np.ndarray, beta: float,
                 dtype: torch.dtype, device: torch.device):
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


def _group_shrink(W: torch.Tensor, thr: float) -> torch.Tensor:
    """Block soft-threshold: each column block W[:, s, i, c] shrunk towards 0 by `thr` in norm."""
    nrm = W.norm(dim=0, keepdim=True)
    return W * torch.clamp(1 - thr / torch.clamp(nrm, min=_TINY), min=0)


def _improve_multipliers(op: _C2, lam: torch.Tensor, p: torch.Tensor, iters: int) -> torch.Tensor:
    """FISTA steps on min_{p≥0} ½‖U'ᵀ(σ D λ + S p)‖² per block (the dual NNLS); returns p ≥ 0."""
    base = op.sig * op.M * lam[:, None, None, :]
    x = p.clone()
    yk = p.clone()
    t = 1.0
    for _ in range(iters):
        A = op.adj(base + op.S * yk)
        grad = op.S * op.Z(A)
        x_new = torch.clamp(yk - grad, min=0)  # step 1: the Hessian S U'U'ᵀ S has norm 1
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        yk = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return x


def _certificate(op64: _C2, W: torch.Tensor, p: torch.Tensor | None, tol: float,
                 nnls_iters: int = 100) -> dict[str, Any]:
    """Primal value, dual lower bound, relative gap and cone violation at W (float64 operator)."""
    beta = op64.beta
    Z = op64.Z(W)
    g = op64.S * Z
    viol = float(torch.clamp(-g, min=0).max()) if g.numel() else 0.0
    f = op64.fit(Z)
    r = f - op64.Y
    norms = W.norm(dim=0)  # (2, P, C)
    primal_c = 0.5 * (r * r).sum(0) + beta * norms.sum(dim=(0, 1))
    lam = -r
    if p is None:
        p = torch.zeros_like(Z)
    base = op64.sig * op64.M * lam[:, None, None, :]

    def worst(pp: torch.Tensor) -> torch.Tensor:
        return op64.adj(base + op64.S * pp).norm(dim=0).amax(dim=(0, 1))  # (C,)

    wmax = worst(p)
    if nnls_iters > 0 and bool((wmax > beta * (1 + 0.1 * tol)).any()):
        p2 = _improve_multipliers(op64, lam, p, nnls_iters)
        w2 = worst(p2)
        better = w2 < wmax
        if bool(better.any()):
            p = torch.where(better.view(1, 1, 1, -1), p2, p)
            wmax = torch.minimum(w2, wmax)
    ly = (lam * op64.Y).sum(0)
    ll = (lam * lam).sum(0)
    smax = torch.clamp(beta / torch.clamp(wmax, min=_TINY), max=1.0)
    s = torch.minimum(torch.clamp(ly / torch.clamp(ll, min=_TINY), min=0.0), smax)
    dual_c = s * ly - 0.5 * s * s * ll
    primal = float(primal_c.sum())
    dual = float(dual_c.sum())
    gap = (primal - dual) / max(abs(primal), 1e-12)
    scale = max(1.0, float(norms.max()) if norms.numel() else 1.0)
    return {"primal": primal, "dual": dual, "gap": max(gap, 0.0), "violation": viol,
            "viol_ok": viol <= CONE_TOL * scale, "p": p, "dual_scale": float(smax.min())}


# --------------------------------------------------------------------------------------------------
# polish: Newton on the identified active manifold


def _null_basis(G: np.ndarray, q: int) -> np.ndarray:
    """Orthonormal basis (q, k) of {u : G u = 0}."""
    if G.shape[0] == 0:
        return np.eye(q)
    _, s, Vt = np.linalg.svd(G, full_matrices=True)
    rank = int((s > 1e-10 * max(s[0], 1e-300)).sum())
    return Vt[rank:].T.copy()


def _newton_blocks(Ms: list[np.ndarray], z0: list[np.ndarray], y: np.ndarray, beta: float,
                   iters: int = 40) -> tuple[list[np.ndarray], bool]:
    """Damped Newton for min ½‖Σ_b M_b z_b − y‖² + β Σ ‖z_b‖ from z0 (all blocks non-zero)."""
    sizes = [m.shape[1] for m in Ms]
    if not Ms:
        return [], True
    M = np.hstack(Ms)
    offs = np.cumsum([0] + sizes)
    z = np.concatenate(z0)
    H0 = M.T @ M
    Mty = M.T @ y

    def value(zz: np.ndarray) -> float:
        r = M @ zz - y
        return 0.5 * float(r @ r) + beta * sum(float(np.linalg.norm(zz[offs[b]:offs[b + 1]])) for b in range(len(Ms)))

    fval = value(z)
    for _ in range(iters):
        grad = H0 @ z - Mty
        H = H0.copy()
        for b in range(len(Ms)):
            sl = slice(offs[b], offs[b + 1])
            zb = z[sl]
            nb = float(np.linalg.norm(zb))
            if nb < 1e-14:
                return [z[offs[b]:offs[b + 1]] for b in range(len(Ms))], False
            zh = zb / nb
            grad[sl] += beta * zh
            H[sl, sl] += (beta / nb) * (np.eye(len(zb)) - np.outer(zh, zh))
        try:
            L = np.linalg.cholesky(H + 1e-14 * np.trace(H) / len(H) * np.eye(len(H)))
            d = -np.linalg.solve(L.T, np.linalg.solve(L, grad))
        except np.linalg.LinAlgError:
            d = -np.linalg.lstsq(H, grad, rcond=None)[0]
        dec = float(-grad @ d)
        if dec <= 1e-26 * max(1.0, abs(fval)):
            break
        step = 1.0
        while step > 1e-10:
            zn = z + step * d
            fn = value(zn)
            if fn <= fval - 1e-4 * step * dec or fn <= fval:
                break
            step *= 0.5
        z, fval = zn, fn
        if dec <= 1e-24 * max(1.0, abs(fval)):
            break
    return [z[offs[b]:offs[b + 1]] for b in range(len(Ms))], True


def _vstep(M: torch.Tensor, Y4: torch.Tensor, A: torch.Tensor, e: torch.Tensor, rho: float,
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


def _polish_class(Ut: np.ndarray, masks: np.ndarray, y: np.ndarray, beta: float, W: np.ndarray,
                  act_rel: float = 1e-3, tight: float = 1e-2, rounds: int = 80, min_rows: int = 0,
                  deadline: float = math.inf,
                  init_sets: dict[tuple[int, int], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Active-set polish of one class: Newton on the faces of the active blocks, sets corrected.

    W: (q, 2, P) blocks from the first-order method. Active blocks have norm > act_rel·max; each
    starts with the rows whose normalised slack is ≤ `tight` (at most q − 1) as equalities; Newton
    solves the smooth restricted problem in null-space coordinates; then, per block, the most
    violated dropped row is added and the most negative multiplier released, until no change.
    Returns (W_new (q, 2, P), multipliers (n, 2, P)) of an exactly feasible KKT point of the
    restricted problem, or None when the sets did not settle.
    """
    n, q = Ut.shape
    P = masks.shape[1]
    S = 2.0 * masks - 1.0
    norms = np.linalg.norm(W, axis=0)
    top = float(norms.max()) if norms.size else 0.0
    if top == 0.0:
        return None
    rown = np.linalg.norm(Ut, axis=1) + 1e-300
    blocks = [(s, i) for s in range(2) for i in range(P) if norms[s, i] > act_rel * top]
    G = {b: S[:, b[1]:b[1] + 1] * Ut for b in blocks}
    Fm = {b: (1.0 if b[0] == 0 else -1.0) * (masks[:, b[1]:b[1] + 1] * Ut) for b in blocks}
    act: dict[tuple[int, int], np.ndarray] = {}
    wcur: dict[tuple[int, int], np.ndarray] = {}
    for b in blocks:
        w = W[:, b[0], b[1]]
        slack = (G[b] @ w) / (rown * np.linalg.norm(w))
        order = np.argsort(slack)
        k = int(min(q - 1, max((slack <= tight).sum(), min_rows)))
        a = np.zeros(n, dtype=bool)
        a[order[:k]] = True
        if init_sets is not None and b in init_sets:
            a = init_sets[b].copy()
        act[b], wcur[b] = a, w.copy()
    mult: dict[tuple[int, int], np.ndarray] = {}
    for _ in range(rounds):
        if time.perf_counter() > deadline:
            return None
        Ms, z0, Ns = [], [], []
        keep = []
        for b in blocks:
            N = _null_basis(G[b][act[b]], q)
            if N.shape[1] == 0:  # the face is {0}: release the row with the largest slack direction
                idx = np.flatnonzero(act[b])
                act[b][idx[-1]] = False
                N = _null_basis(G[b][act[b]], q)
            z = N.T @ wcur[b]
            if np.linalg.norm(z) < 1e-12 * top:
                z = N.T @ (G[b][act[b]].sum(0) if act[b].any() else wcur[b]) + 1e-3 * top * N[0]
            Ms.append(Fm[b] @ N)
            z0.append(z)
            Ns.append(N)
            keep.append(b)
        zs, fine = _newton_blocks(Ms, z0, y, beta)
        if not fine:  # a block shrank to zero: drop the smallest block and retry
            nz = [float(np.linalg.norm(z)) for z in zs]
            j = int(np.argmin(nz))
            blocks = [b for b in keep if b != keep[j]]
            for b, N, z in zip(keep, Ns, zs):
                wcur[b] = N @ z
            if not blocks:
                return None
            continue
        r = sum(Ms[j] @ zs[j] for j in range(len(keep))) - y
        changed = False
        for j, b in enumerate(keep):
            w = Ns[j] @ zs[j]
            wcur[b] = w
            nb = float(np.linalg.norm(w))
            slack = G[b] @ w
            A = np.flatnonzero(act[b])
            rhs = Fm[b].T @ r + beta * w / nb
            mu = np.linalg.lstsq(G[b][A].T, rhs, rcond=None)[0] if A.size else np.zeros(0)
            cand = np.where(act[b], np.inf, slack / rown)
            worst = int(np.argmin(cand))
            if cand[worst] < -1e-12 * nb:
                act[b][worst] = True
                changed = True
            if mu.size and mu.min() < -1e-9 * max(1.0, float(np.abs(mu).max())):
                act[b][A[int(np.argmin(mu))]] = False
                changed = True
            full = np.zeros(n)
            full[A] = np.maximum(mu, 0.0)
            mult[b] = full
        blocks = keep
        if not changed:
            Wn = np.zeros((q, 2, P))
            pn = np.zeros((n, 2, P))
            for b in keep:
                Wn[:, b[0], b[1]] = wcur[b]
                pn[:, b[0], b[1]] = mult[b]
            return Wn, pn
    return None



# --------------------------------------------------------------------------------------------------
# warm starts


def _polish_bytes(n: int, q: int, blocks: int, dim: int = 0) -> float:
    """Bytes of the polish's per-block matrices (G_b, F_b: n × q each) and a dense Hessian of size `dim`."""
    return 16.0 * n * q * blocks + 8.0 * (n + dim) * dim


def _restricted_conic(Ut: np.ndarray, masks: np.ndarray, y: np.ndarray, beta: float,
                      blocks: list[tuple[int, int]], rows: dict[tuple[int, int], np.ndarray]
                      ) -> tuple[dict[tuple[int, int], np.ndarray], dict[tuple[int, int], np.ndarray]] | None:
    """Solve (C2) restricted to `blocks` and, per block, the cone rows `rows[b]` with Clarabel directly.

    Built without CVXPY in reduced coordinates: variables x = (w_1..w_k, t_1..t_k), the fit enters as
    the dense quadratic ½ wᵀ(FᵀF)w − (Fᵀy)ᵀw (kq × kq, independent of n), rows as −G_b w_b ∈ R₊ and
    (t_b, w_b) ∈ SOC. The faer supernodal factorisation is used when available (dense KKT block).
    Returns (w_b, row multipliers μ_b ≥ 0 on rows[b]) per block, or None when the solver fails.
    """
    import clarabel
    import scipy.sparse as sp

    n, q = Ut.shape
    k = len(blocks)
    if k == 0 or _polish_bytes(n, q, k, k * q) > POLISH_MAX_BYTES:
        return None
    F = np.hstack([(1.0 if s == 0 else -1.0) * (masks[:, i:i + 1] * Ut) for s, i in blocks])  # (n, kq)
    H = F.T @ F
    N = k * q + k
    iu, ju = np.triu_indices(k * q)
    Pm = sp.csc_matrix((H[iu, ju], (iu, ju)), shape=(N, N))
    cvec = np.concatenate([-(F.T @ y), np.full(k, beta)])
    ri, ci, vals = [], [], []
    off = 0
    sizes = []
    for j, (s, i) in enumerate(blocks):
        r = rows[(s, i)]
        Gb = (2.0 * masks[r, i:i + 1] - 1.0) * Ut[r]  # (|r|, q)
        rr, cc = np.meshgrid(np.arange(len(r)), np.arange(q), indexing="ij")
        ri.append((off + rr).ravel())
        ci.append((j * q + cc).ravel())
        vals.append(-Gb.ravel())
        off += len(r)
        sizes.append(len(r))
    nn = off
    for j in range(k):  # SOC rows: −(t_j, w_j) + s = 0
        ri.append(off + np.arange(q + 1))
        ci.append(np.concatenate([[k * q + j], j * q + np.arange(q)]))
        vals.append(-np.ones(q + 1))
        off += q + 1
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(ri), np.concatenate(ci))), shape=(off, N))
    cones = [clarabel.NonnegativeConeT(nn)] + [clarabel.SecondOrderConeT(q + 1) for _ in range(k)]
    st = clarabel.DefaultSettings()
    st.verbose = False
    st.max_threads = 1
    try:
        st.direct_solve_method = "faer"
    except Exception:  # noqa: BLE001 - older builds: keep the default factorisation
        pass
    try:
        sol = clarabel.DefaultSolver(Pm, cvec, A, np.zeros(off), cones, st).solve()
    except Exception:  # noqa: BLE001 - a failed polish only means "no polish"
        return None
    if "Solved" not in str(sol.status):
        return None
    x = np.asarray(sol.x)
    z = np.asarray(sol.z)
    ws = {b: x[j * q:(j + 1) * q].copy() for j, b in enumerate(blocks)}
    mus: dict[tuple[int, int], np.ndarray] = {}
    o = 0
    for j, b in enumerate(blocks):
        mus[b] = np.maximum(z[o:o + sizes[j]], 0.0)
        o += sizes[j]
    return ws, mus


def _polish_conic(Ut: np.ndarray, masks: np.ndarray, y: np.ndarray, beta: float, W: np.ndarray,
                  act_rel: float = 1e-3, extra_rows: int = 2, rounds: int = 4,
                  deadline: float = math.inf) -> tuple[np.ndarray, np.ndarray] | None:
    """Polish one class: small conic solve on active blocks / near-tight rows, then exact face Newton.

    Candidate rows per active block: the extra_rows·q smallest normalised slacks. After the conic
    solve, any violated dropped row is added and the solve repeated; the tight rows (positive
    multipliers) then seed `_polish_class`, whose Newton step on the faces makes the point exactly
    feasible (cone violation at round-off level) and returns KKT multipliers.
    """
    n, q = Ut.shape
    P = masks.shape[1]
    S = 2.0 * masks - 1.0
    norms = np.linalg.norm(W, axis=0)
    top = float(norms.max()) if norms.size else 0.0
    if top == 0.0:
        return None
    rown = np.linalg.norm(Ut, axis=1) + 1e-300
    blocks = [(s, i) for s in range(2) for i in range(P) if norms[s, i] > act_rel * top]
    rows: dict[tuple[int, int], np.ndarray] = {}
    for b in blocks:
        w = W[:, b[0], b[1]]
        slack = (S[:, b[1]] * (Ut @ w)) / (rown * np.linalg.norm(w))
        rows[b] = np.sort(np.argsort(slack)[: min(n, extra_rows * q)])
    for _ in range(rounds):
        if time.perf_counter() > deadline:
            return None
        res = _restricted_conic(Ut, masks, y, beta, blocks, rows)
        if res is None:
            return None
        ws, mus = res
        added = False
        for b in blocks:
            slack = S[:, b[1]] * (Ut @ ws[b])
            nb = max(float(np.linalg.norm(ws[b])), 1e-300)
            viol = np.flatnonzero(slack / rown < -1e-7 * nb)
            new = np.setdiff1d(viol, rows[b])
            if new.size:
                rows[b] = np.union1d(rows[b], new)
                added = True
        if not added:
            break
    nb_all = {b: float(np.linalg.norm(ws[b])) for b in blocks}
    keep = [b for b in blocks if nb_all[b] > 1e-7 * top]
    Wc = np.zeros((q, 2, P))
    sets: dict[tuple[int, int], np.ndarray] = {}
    for b in keep:
        Wc[:, b[0], b[1]] = ws[b]
        mu = mus[b]
        a = np.zeros(n, dtype=bool)
        big = mu > 1e-6 * max(float(mu.max(initial=0.0)), 1e-300)
        order = np.argsort(-mu)
        cnt = int(min(q - 1, big.sum()))
        a[rows[b][order[:cnt]]] = True
        sets[b] = a
    return _polish_class(Ut, masks, y, beta, Wc, act_rel=0.0, rounds=40, deadline=deadline, init_sets=sets)


def _project_cone(G: np.ndarray, w: np.ndarray, rown: np.ndarray | None = None,
                  first: int | None = None, accept_below: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean projection of w onto {u : G u ≥ 0} via the NNLS dual; returns (projection, μ ≥ 0).

    NNLS is solved on the `first` rows of smallest normalised G w (default 3q), and violated rows are
    added until the projection is feasible for every row, which makes it exact (KKT of the full cone).
    Any μ ≥ 0 bounds min_μ ‖w + Gᵀμ‖ from above, so when only that bound matters the first restricted
    solve is returned as soon as ‖w + Gᵀμ‖ ≤ accept_below.
    """
    from scipy.optimize import nnls

    n, q = G.shape
    rown = np.linalg.norm(G, axis=1) + 1e-300 if rown is None else rown
    k = min(n, first or 3 * q)
    gw = G @ w
    rows = np.argsort(gw / rown)[:k] if k < n else np.arange(n)
    for _ in range(20):
        mu_r, _ = nnls(G[rows].T, -w, maxiter=50 * len(rows))
        d = w + G[rows].T @ mu_r
        if float(np.linalg.norm(d)) <= accept_below:
            mu = np.zeros(n)
            mu[rows] = mu_r
            return d, mu
        bad = np.flatnonzero(G @ d < -1e-12 * rown * max(float(np.linalg.norm(d)), 1e-300))
        bad = np.setdiff1d(bad, rows)
        mu = np.zeros(n)
        mu[rows] = mu_r
        if bad.size == 0 or len(rows) == n:
            return d, mu
        rows = np.union1d(rows, bad)
    mu, _ = nnls(G.T, -w, maxiter=50 * n)
    return w + G.T @ mu, mu


def _active_set_polish(Ut: np.ndarray, masks: np.ndarray, y: np.ndarray, beta: float, W: np.ndarray,
                       act_rel: float = 0.05, rounds: int = 2000, deadline: float = math.inf,
                       enter_tol: float = 1e-9, mu0: np.ndarray | None = None, pricing_pg_iters: int = 10, trace: list[tuple[Any, ...]] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Primal active-set Newton method for one class on the blocks with norm > act_rel·max in W (q, 2, P).

    Start: each active block projected onto its cone (exactly feasible), working set = rows with a
    positive projection multiplier. Each round takes one Newton step of the smooth problem restricted
    to the faces {G_A w_b = 0} (null-space coordinates), limited by a ratio test on every dropped row
    (the blocking row joins the working set); when the face problem is solved, the most negative
    face multiplier of each block leaves its working set; blocks that shrink to zero are removed.
    Iterates stay feasible, so the result has round-off cone violation. Returns (W_new (q, 2, P),
    multipliers (n, 2, P)) of a KKT point of the problem restricted to the active blocks, or None.
    Zero blocks are priced at the end (bound from `mu0`, then restricted NNLS) and enter when their
    projected steepest-descent direction exceeds β(1 + enter_tol), so a returned point is optimal for
    the whole class and its multipliers certify it; `trace` (optional list) records the rounds.
    Before each pricing, `pricing_pg_iters` batched projected-gradient steps (`_dual_pg`) improve μ0
    for all blocks at once, so the per-block NNLS runs only where that bound still exceeds β.
    """
    n, q = Ut.shape
    P = masks.shape[1]
    norms = np.linalg.norm(W, axis=0)
    top = float(norms.max()) if norms.size else 0.0
    if top == 0.0:
        return None
    blocks = [(s, i) for s in range(2) for i in range(P) if norms[s, i] > act_rel * top]
    if _polish_bytes(n, q, len(blocks)) > POLISH_MAX_BYTES:
        return None  # too large to polish densely: the caller keeps iterating ADMM
    G = _BlockMats(Ut, masks, cone=True)
    Fm = _BlockMats(Ut, masks, cone=False)
    rown = np.linalg.norm(Ut, axis=1) + 1e-300
    w: dict[tuple[int, int], np.ndarray] = {}
    act: dict[tuple[int, int], np.ndarray] = {}
    for b in blocks:
        wp, mu = _project_cone(G[b], W[:, b[0], b[1]], rown)
        w[b] = wp
        act[b] = np.flatnonzero(mu > 0)
    blocks = [b for b in blocks if np.linalg.norm(w[b]) > 1e-9 * top]
    if not blocks:
        return None
    nullb: dict[tuple[int, int], np.ndarray] = {}
    mu_last: dict[tuple[int, int], np.ndarray] = {}
    # fit Hessian (FN)ᵀ(FN) of the previous round and the basis changes since then (v4): when every
    # block kept its basis or only lost columns by a Householder update (N ← N T_b), the new one is
    # Tᵀ H T, O(D²·d) instead of O(n·D²); any fresh basis or block change forces a full rebuild
    hcache: dict[str, Any] = {}
    trans: dict[tuple[int, int], np.ndarray] = {}
    fresh: set[tuple[int, int]] = set()

    def basis(b: tuple[int, int]) -> np.ndarray:
        if b not in nullb:
            A = act[b]
            if A.size == 0:
                nullb[b] = np.eye(q)
            else:
                nullb[b] = _null_basis_qr(G[b][A])
            fresh.add(b)
        return nullb[b]

    def colsign(bl: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """(σ_b m_i, S_i) columns (n, k) of the blocks in `bl`."""
        idx = [b[1] for b in bl]
        sg = np.array([1.0 if b[0] == 0 else -1.0 for b in bl])
        m = masks[:, idx].astype(float)
        return m * sg, 2.0 * m - 1.0

    def value(ws: dict[tuple[int, int], np.ndarray]) -> tuple[float, np.ndarray]:
        Wm = np.stack([ws[b] for b in blocks], 1)
        r = ((Ut @ Wm) * colsign(blocks)[0]).sum(1) - y
        return 0.5 * float(r @ r) + beta * float(np.linalg.norm(Wm, axis=0).sum()), r

    fval, r = value(w)
    for _ in range(rounds):
        if time.perf_counter() > deadline or _polish_bytes(n, q, len(blocks)) > POLISH_MAX_BYTES:
            return None
        Ns = [basis(b) for b in blocks]
        dims = [N.shape[1] for N in Ns]
        if _polish_bytes(n, q, len(blocks), int(sum(dims))) > POLISH_MAX_BYTES:
            return None  # the face Hessian (and F N, n × D) would not fit
        offs = np.cumsum([0] + dims)
        Fs, Ss = colsign(blocks)
        Hfit = _fit_hessian(Ut, Ns, Fs, dims, blocks, hcache, trans, fresh)
        H = Hfit.copy()
        FtR = Ut.T @ (Fs * r[:, None])  # (q, k): F_bᵀ r of every block
        grad = np.concatenate([Ns[j].T @ FtR[:, j] for j in range(len(blocks))]) if blocks else np.zeros(0)
        for j, b in enumerate(blocks):
            sl = slice(offs[j], offs[j + 1])
            nb = float(np.linalg.norm(w[b]))
            wh = w[b] / nb
            Nw = Ns[j].T @ wh
            grad[sl] += beta * Nw
            H[sl, sl] += (beta / nb) * (np.eye(dims[j]) - np.outer(Nw, Nw))
        if H.size:
            try:
                Hr = H + 1e-13 * (np.trace(H) / len(H)) * np.eye(len(H))
                dz = -scipy.linalg.cho_solve(scipy.linalg.cho_factor(Hr, check_finite=False), grad,
                                             check_finite=False)
            except np.linalg.LinAlgError:
                dz = -np.linalg.lstsq(H, grad, rcond=None)[0]
        else:
            dz = np.zeros(0)
        dec = float(-grad @ dz)
        D = {b: Ns[j] @ dz[offs[j]:offs[j + 1]] for j, b in enumerate(blocks)}
        if trace is not None:
            trace.append((fval, dec, len(blocks), int(offs[-1])))
        # ratio test over the rows outside the working sets, per block
        alpha: dict[tuple[int, int], float] = {}
        hit: dict[tuple[int, int], int] = {}
        k = len(blocks)
        Dm = np.stack([D[b] for b in blocks], 1)
        GDW = (Ut @ np.hstack([Dm, np.stack([w[b] for b in blocks], 1)])) * np.hstack([Ss, Ss])
        GD, GW = GDW[:, :k], GDW[:, k:]
        neg = GD < -1e-15 * rown[:, None] * np.maximum(np.linalg.norm(Dm, axis=0), 1e-300)[None, :]
        for jb, b in enumerate(blocks):
            neg[act[b], jb] = False
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(neg, np.maximum(GW, 0.0) / -GD, np.inf)
        jmin = ratios.argmin(0)
        rmin = ratios[jmin, np.arange(k)]
        for jb, b in enumerate(blocks):
            alpha[b] = 1.0
            if rmin[jb] < 1.0:
                alpha[b], hit[b] = float(rmin[jb]), int(jmin[jb])
        face_done = dec <= 1e-18 * max(1.0, abs(fval))
        if not face_done:
            # per-block truncated Newton direction (every block stops at its own first blocking row)
            slope = sum(alpha[b] * float(grad[offs[j]:offs[j + 1]] @ dz[offs[j]:offs[j + 1]])
                        for j, b in enumerate(blocks))
            if slope >= 0:  # not a descent direction: one common step length instead
                amin = min(alpha.values())
                alpha = {b: amin for b in blocks}
                slope = -amin * dec
            step = 1.0
            while True:
                wn = {b: w[b] + step * alpha[b] * D[b] for b in blocks}
                fn, rn = value(wn)
                if fn <= fval + 1e-4 * step * slope or step < 1e-12:
                    break
                step *= 0.5
            if fn > fval or (fn == fval and not hit):
                face_done = True  # no progress possible along the face: treat it as solved
                if trace is not None:
                    trace.append(("ls-fail", step, slope))
            else:
                w, fval, r = wn, fn, rn
                added = False
                if step == 1.0:
                    for b, j in hit.items():
                        if alpha[b] < 1.0 and G[b][j] @ w[b] <= 1e-12 * rown[j] * np.linalg.norm(w[b]):
                            _shrink_basis(nullb, b, G[b][j], trans)
                            act[b] = np.append(act[b], j)
                            added = True
                            if trace is not None:
                                trace.append(("add", b, j, alpha[b]))
                small = [b for b in blocks if np.linalg.norm(w[b]) <= 1e-9 * top]
                if small:  # a block shrank to zero: remove it from the problem
                    for b in small:
                        w[b] = np.zeros(q)
                    blocks = [b for b in blocks if b not in small]
                    if not blocks:
                        return None
                    fval, r = value(w)
                    continue
                if added or dec > 1e-18 * max(1.0, abs(fval)):
                    continue
        # face problem solved: multipliers, release negative ones
        released = False
        mult: dict[tuple[int, int], np.ndarray] = {}
        FtR = Ut.T @ (colsign(blocks)[0] * r[:, None])  # (q, k): F_bᵀ r of every block in one GEMM
        for jb, b in enumerate(blocks):
            nb = float(np.linalg.norm(w[b]))
            rhs = FtR[:, jb] + beta * w[b] / nb
            A = act[b]
            mu = _lstsq(G[b][A].T, rhs) if A.size else np.zeros(0)
            if mu.size and mu.min() < -1e-10 * max(1.0, float(np.abs(mu).max())):
                j = int(np.argmin(mu))
                act[b] = np.delete(A, j)
                nullb.pop(b, None)
                released = True
                if trace is not None:
                    trace.append(("release", b, int(A[j]), float(mu[j])))
            full = np.zeros(n)
            full[A] = np.maximum(mu, 0.0)
            mult[b] = full
        if released:
            continue
        # the restricted problem is solved: price every zero block (column generation)
        lam = -r
        Aall = Ut.T @ (masks * lam[:, None])  # (q, P): U'ᵀ D_i λ
        an = np.linalg.norm(Aall, axis=0)
        inside = set(blocks)
        pn = np.zeros((n, 2, P))
        bound = None
        if mu0 is not None:  # cheap bounds ‖U'ᵀ(σ D_i λ + S_i μ0)‖ per block, μ0 first improved in batch (v4)
            mu0, bound = _dual_pg(Ut, masks, lam, mu0, pricing_pg_iters)
        entering: list[tuple[tuple[int, int], np.ndarray, np.ndarray]] = []
        for i in np.flatnonzero(an > beta * (1 + 1e-12)):
            for sg in range(2):
                b = (sg, int(i))
                if b in inside:
                    continue
                a = (1.0 if sg == 0 else -1.0) * Aall[:, i]
                if bound is not None and bound[sg, i] <= beta * (1 + 1e-12):
                    pn[:, sg, i] = mu0[:, sg, i]
                    continue
                if b in mu_last:  # multipliers of the previous pricing round are often still enough
                    mu = mu_last[b]
                    if float(np.linalg.norm(a + G[b].T @ mu)) <= beta * (1 + 1e-12):
                        pn[:, sg, i] = mu
                        continue
                d, mu = _project_cone(G[b], a, rown, accept_below=beta * (1 + 1e-12))
                nd = float(np.linalg.norm(d))
                if nd > beta * (1 + enter_tol):
                    entering.append((b, d, mu))
                else:
                    pn[:, sg, i] = mu
                    mu_last[b] = mu
        if trace is not None:
            trace.append(("price", int((an > beta * (1 + 1e-12)).sum()), len(entering)))
        if entering:
            for b, d, mu in entering:
                nd = float(np.linalg.norm(d))
                fd = Fm[b] @ d
                t = (nd * nd - beta * nd) / max(float(fd @ fd), 1e-300) / len(entering)
                w[b] = t * d
                act[b] = np.flatnonzero(mu > 0)
                nullb.pop(b, None)
                blocks.append(b)
            fval, r = value(w)
            continue
        Wn = np.zeros((q, 2, P))
        for b in blocks:
            Wn[:, b[0], b[1]] = w[b]
            pn[:, b[0], b[1]] = mult[b]
        return Wn, pn
    return None


def _null_basis_qr(GA: np.ndarray) -> np.ndarray:
    """Orthonormal basis (q, k) of {u : G_A u = 0} from a column-pivoted QR of G_Aᵀ (rank-revealing)."""
    q = GA.shape[1]
    Q, R, _ = scipy.linalg.qr(GA.T, pivoting=True, check_finite=False)
    d = np.abs(np.diag(R))
    rank = int((d > 1e-10 * max(float(d[0]) if d.size else 0.0, 1e-300)).sum())
    return np.ascontiguousarray(Q[:, rank:]) if rank < q else np.zeros((q, 0))


def _lstsq(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares solution of A x ≈ b by complete orthogonal factorisation (LAPACK gelsy)."""
    return scipy.linalg.lstsq(A, b, lapack_driver="gelsy", check_finite=False)[0]


def _dual_pg(Ut: np.ndarray, masks: np.ndarray, lam: np.ndarray, mu: np.ndarray, iters: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Improve cone multipliers μ ≥ 0 (n, 2, P) of every block at once for the pricing bounds.

    FISTA with step 1 (‖S_i U'‖ = 1) on min_{μ ≥ 0} ½‖U'ᵀ(σ D_i λ + S_i μ)‖², all 2P blocks in two
    GEMMs per step. Any μ ≥ 0 gives a valid bound, so per block the better of the start and the end
    is kept. Returns (μ, bounds (2, P) = ‖U'ᵀ(σ D_i λ + S_i μ)‖).
    """
    n, q = Ut.shape
    P = masks.shape[1]
    Sm = (2.0 * masks - 1.0)[:, None, :]
    Dl = masks * lam[:, None]
    base = np.stack([Dl, -Dl], 1)  # (n, 2, P)

    def grad_norm(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        A = Ut.T @ (base + Sm * m).reshape(n, -1)
        return A, np.linalg.norm(A, axis=0).reshape(2, P)

    _, b0 = grad_norm(mu)
    x, y, t = mu, mu, 1.0
    for _ in range(iters):
        A, _ = grad_norm(y)
        xn = np.maximum(y - Sm * (Ut @ A).reshape(n, 2, P), 0.0)
        tn = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        y = xn + ((t - 1) / tn) * (xn - x)
        x, t = xn, tn
    _, b1 = grad_norm(x)
    better = b1 < b0
    return np.where(better[None], x, mu), np.where(better, b1, b0)


def _fit_hessian(Ut: np.ndarray, Ns: list[np.ndarray], Fs: np.ndarray, dims: list[int],
                 blocks: list[tuple[int, int]], cache: dict[str, Any], trans: dict[Any, np.ndarray],
                 fresh: set[Any]) -> np.ndarray:
    """(FN)ᵀ(FN) of the face coordinates, FN = [σ_b D_b U' N_b], updated from the previous round when possible.

    `trans[b]` (d_old × d_new) maps the previous basis of block b to the current one (Householder
    updates); `fresh` holds blocks whose basis was rebuilt. Both are consumed (cleared). The cached
    matrix is reused as Tᵀ H T only when the block list is unchanged and no basis is fresh.
    """
    D = int(sum(dims))
    same = (cache.get("blocks") == blocks and not (fresh & set(blocks))
            and all((trans[b].shape[1] if b in trans else old) == d
                    for b, old, d in zip(blocks, cache.get("dims", []), dims)))
    if same:
        H0, odims = cache["H"], cache["dims"]
        ooffs = np.cumsum([0] + list(odims))
        cols = [H0[:, ooffs[j]:ooffs[j + 1]] @ trans[b] if b in trans else H0[:, ooffs[j]:ooffs[j + 1]]
                for j, b in enumerate(blocks)]
        HT = np.hstack(cols) if cols else np.zeros((0, 0))
        rows = [trans[b].T @ HT[ooffs[j]:ooffs[j + 1]] if b in trans else HT[ooffs[j]:ooffs[j + 1]]
                for j, b in enumerate(blocks)]
        H = np.vstack(rows) if rows else np.zeros((0, 0))
        H = 0.5 * (H + H.T)
    elif D:
        FN = (Ut @ np.hstack(Ns)) * np.repeat(Fs, dims, axis=1)
        H = FN.T @ FN
    else:
        H = np.zeros((0, 0))
    trans.clear()
    fresh.clear()
    cache["blocks"], cache["dims"], cache["H"] = list(blocks), list(dims), H
    return H


def _shrink_basis(cache: dict[Any, np.ndarray], key: Any, g: np.ndarray,
                  trans: dict[Any, np.ndarray] | None = None) -> None:
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


class _BlockMats(dict):
    """Lazily built per-block matrices: G_b = S_i U' (cone=True) or F_b = ±D_i U' (cone=False)."""

    def __init__(self, Ut: np.ndarray, masks: np.ndarray, cone: bool):
        super().__init__()
        self.Ut, self.masks, self.cone = Ut, masks, cone

    def __missing__(self, b: tuple[int, int]) -> np.ndarray:
        m = self.masks[:, b[1]:b[1] + 1]
        val = (2.0 * m - 1.0) * self.Ut if self.cone else (1.0 if b[0] == 0 else -1.0) * (m * self.Ut)
        self[b] = val
        return val


def _exact_multipliers(Ut: np.ndarray, masks: np.ndarray, W: np.ndarray, Y: np.ndarray, beta: float,
                       p: np.ndarray, tol: float) -> np.ndarray:
    """Re-solve the per-block dual NNLS exactly where the current multipliers give a norm > β.

    For block (s, i, c) with g = U'ᵀ(s D_i λ_c) and G = S_i U', min_{μ ≥ 0} ‖g + Gᵀμ‖ equals the
    norm of the projection of g onto the cone {u : G u ≥ 0} (Moreau); Lawson–Hanson NNLS
    (scipy.optimize.nnls, q rows) solves it exactly. Only blocks whose current bound exceeds
    β(1 + tol/4) are re-solved. Returns the improved multipliers p (n, 2, P, C).
    """
    from scipy.optimize import nnls

    S = 2.0 * masks - 1.0
    f = np.einsum("np,nq,qspc->nc", masks.astype(float), Ut, W[:, 0:1] - W[:, 1:2])
    lam = Y - f
    sg = np.array([1.0, -1.0]).reshape(1, 2, 1, 1)
    base = sg * masks[:, None, :, None] * lam[:, None, None, :] + S[:, None, :, None] * p
    norms = np.linalg.norm(np.einsum("nq,nspc->qspc", Ut, base), axis=0)
    out = p.copy()
    for s, i, c in zip(*np.nonzero(norms > beta * (1 + 0.25 * tol))):
        G = S[:, i:i + 1] * Ut
        g = (1.0 if s == 0 else -1.0) * (Ut.T @ (masks[:, i] * lam[:, c]))
        mu, _ = nnls(G.T, -g, maxiter=50 * Ut.shape[0])
        if np.linalg.norm(g + G.T @ mu) < norms[s, i, c]:
            out[:, s, i, c] = mu
    return out


def _adapt_blocks(u: np.ndarray, q: int, P: int, C: int) -> np.ndarray:
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


def _warm_W(warm_start: Any, q: int, P: int, C: int) -> tuple[np.ndarray | None, np.ndarray | None]:
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
    u = _adapt_blocks(u, q, P, C)
    up = _adapt_blocks(up, q, P, C)
    W = np.stack([u, up], axis=0).transpose(2, 0, 1, 3)  # (q, 2, P, C)
    if mult is not None and (mult.shape[1:] != (2, P, C)):
        mult = None
    return np.ascontiguousarray(W), mult


# --------------------------------------------------------------------------------------------------
# the C2 solver


def solve_c2_fast(
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
    warm_start: Any = None,
    polish: bool = True,
    verbose: bool = False,
    threads: int | None = None,
    working_set: bool | None = None,
) -> FastSolution:
    """Solve (C2) (scalar or decoupled vector output) to relative duality gap `tol` with a certificate.

    Stops when certified (gap ≤ tol, cone violation ≤ 1e-9·scale), or at `max_iter` FISTA steps /
    `max_seconds`; the returned gap and violation are always computed from explicit points (module
    docstring), so a stopped-early run reports its true, larger gap. `working_set` (default: when the
    dense state would exceed DENSE_C2_BYTES or P > WORKING_SET_PATTERNS) solves class by class on
    growing pattern subsets instead (`_solve_c2_working_set`); warm starts and `polish=False` apply to
    the dense mode only.
    """
    t0 = time.perf_counter()
    Ut = _check_inputs(Ut, beta, loss)
    n, q = Ut.shape
    masks = _masks_from(Ut, masks, generators)
    Y = _as_Y(Y, n)
    P, C = masks.shape[1], Y.shape[1]
    if P == 0:
        raise ValueError("no arrangement patterns given (masks has 0 columns)")
    if not (tol > 0):
        raise ValueError(f"tol must be positive, got {tol}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    nthreads = threads or choose_threads(n, q, 2 * P * C, dev)
    if working_set is None:
        working_set = dense_c2_bytes(n, P, C) > DENSE_C2_BYTES or P > WORKING_SET_PATTERNS
    if working_set:
        with _threads(nthreads), _blas_threads(nthreads):
            sol = _solve_c2_working_set(Ut, Y, float(beta), masks, tol, max_seconds, max_iter, dtype, dev,
                                        verbose, t0, nthreads)
        sol.threads = nthreads
        return sol
    with _threads(nthreads), _blas_threads(nthreads):
        sol = _solve_c2(Ut, Y, float(beta), masks, tol, max_seconds, max_iter, dt, dev, warm_start,
                        polish, verbose, t0)
    sol.threads = nthreads
    return sol


def _solve_c2(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, tol: float,
              max_seconds: float | None, max_iter: int | None, dt: torch.dtype, dev: torch.device,
              warm_start: Any, polish: bool, verbose: bool, t0: float) -> FastSolution:
    """ADMM (closed-form w-step, row-separable v-step) + active-set polish + certificate."""
    n, q = Ut.shape
    P, C = masks.shape[1], Y.shape[1]
    # ADMM only has to bring the point to residual ~1e-2 before the float64 polish and certificate, so
    # it runs in float32 when a float64 solve with polish was asked (v4; switched to float64 if a
    # polish attempt fails and ADMM has to go on).
    adt = torch.float32 if (polish and dt == torch.float64 and _ADMM_FP32) else dt
    op64 = _C2(Ut, masks, Y, beta, torch.float64, dev)
    op = op64 if adt == torch.float64 else _C2(Ut, masks, Y, beta, adt, dev)
    Y4 = op.Y.view(n, 1, 1, C)
    W0, _mult0 = _warm_W(warm_start, q, P, C)
    rho = 16.0  # dimensionless (the objective is homogeneous in (y, β)); best of 2–32 on the E instances
    if isinstance(warm_start, FastSolution) and "rho" in warm_start.extra:
        rho = float(warm_start.extra["rho"])
    if W0 is None:
        W = torch.zeros(q, 2, P, C, dtype=adt, device=dev)
        V = torch.zeros(n, 2, P, C, dtype=adt, device=dev)
    else:
        W = torch.as_tensor(W0, dtype=adt, device=dev)
        Z0 = op.Z(W)
        V = torch.where(op.M > 0, Z0.clamp(min=0), Z0.clamp(max=0))
    L = torch.zeros(n, 2, P, C, dtype=adt, device=dev)
    e = torch.zeros(n, 1, 1, C, dtype=adt, device=dev)
    alpha = 1.6
    history: list[dict] = []
    iters, status = 0, "max_iter"
    best: dict[str, Any] | None = None
    check, adapt = 10, 40
    act_prev: torch.Tensor | None = None
    stable, polish_tries, last_polish_it = 0, 0, -10**9
    seconds_polish = 0.0

    def out_of_budget() -> str | None:
        if max_iter is not None and iters >= max_iter:
            return "max_iter"
        if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
            return "time_limit"
        return None

    def record(stage: str, cert: dict[str, Any], **kw: Any) -> None:
        history.append({"stage": stage, "iteration": iters, "seconds": time.perf_counter() - t0,
                        "objective": cert["primal"], "dual": cert["dual"], "gap": cert["gap"],
                        "violation": cert["violation"], "rho": rho, **kw})
        if verbose:
            print(f"[fast c2] {stage:7s} it={iters:6d} t={history[-1]['seconds']:.2f}s obj={cert['primal']:.10g} "
                  f"gap={cert['gap']:.2e} viol={cert['violation']:.1e} {kw}")

    def better(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
        if b is None:
            return True
        if a["viol_ok"] != b["viol_ok"]:
            return a["viol_ok"]
        return a["gap"] < b["gap"]

    def admm_multipliers() -> torch.Tensor:
        """Cone multipliers implied by the ADMM state: μ_b = (S_b(s_b D_b e − ρ λ_b))₊."""
        return torch.clamp(op.S * (op.sig * op.M * e - rho * L), min=0)

    while True:
        # ---- one ADMM iteration (over-relaxed)
        X = op.adj(V - L)
        W = _group_shrink(X, beta / rho)
        Z = op.Z(W)
        Zh = alpha * Z + (1 - alpha) * V
        V_old = V
        V, e = _vstep(op.M, Y4, Zh + L, e, rho, off=op.off)
        L = L + Zh - V
        iters += 1
        stop = out_of_budget()
        if iters % check and not stop:
            continue
        rp = float((Z - V).norm()) / max(float(Z.norm()), float(V.norm()), _TINY)
        rd = float((V - V_old).norm()) / max(float(L.norm()), _TINY)
        norms = W.norm(dim=0)
        act = norms > 1e-3 * norms.amax(dim=(0, 1), keepdim=True).clamp(min=_TINY)
        stable = stable + 1 if act_prev is not None and bool((act == act_prev).all()) else 0
        n_act, n_prev = int(act.sum()), (int(act_prev.sum()) if act_prev is not None else -1)
        act_prev = act
        settled = stable >= 3 and rp < 1e-3  # the v2 rule: also allows the conic fallback
        # the active-set polish adds and removes blocks itself: start it once the count settles
        early = rp < 1e-2 and n_prev > 0 and abs(n_act - n_prev) <= 0.15 * n_prev
        want_polish = polish and (stop is not None or ((settled or early)
                                  and iters - last_polish_it >= 4 * check * max(1, polish_tries)))
        if verbose and iters % (5 * check) == 0:
            print(f"[fast c2] admm it={iters} rho={rho:.3g} rp={rp:.1e} rd={rd:.1e} active={int(act.sum())} stable={stable}")
        if want_polish or stop:
            W64 = W.to(torch.float64)
            cert = _certificate(op64, W64, admm_multipliers().to(torch.float64), tol, nnls_iters=0)
            cert["W"], cert["mu"] = W64, cert["p"]
            record("admm", cert, rp=rp, rd=rd)
            if better(cert, best):
                best = cert
            if cert["gap"] <= tol and cert["viol_ok"]:
                status = "optimal"
                break
        if want_polish:
            polish_tries += 1
            last_polish_it = iters
            tp = time.perf_counter()
            Wn = W.to(torch.float64).cpu().numpy()
            p_est = admm_multipliers().to(torch.float64).cpu().numpy()
            Wp, pp, ok = np.zeros_like(Wn), p_est.copy(), True
            deadline = math.inf if max_seconds is None else t0 + max_seconds
            exact = True  # every class priced by the active-set method: its multipliers are final
            for c in range(C):
                res = _active_set_polish(Ut, masks, Y[:, c], beta, Wn[..., c], deadline=deadline,
                                         mu0=p_est[..., c])
                if res is not None:
                    Wp[..., c], pp[..., c] = res
                    continue
                exact = False
                if not (settled or stop):
                    ok = False  # too early for the expensive conic fallback: keep iterating
                    break
                res = _polish_conic(Ut, masks, Y[:, c], beta, Wn[..., c], deadline=deadline)
                if res is None:
                    ok = False
                    break
                Wp[..., c] = res[0]
                act_c = np.linalg.norm(res[0], axis=0) > 0  # (2, P)
                pp[:, act_c, c] = res[1][:, act_c]
            if ok:
                Wt = torch.as_tensor(Wp, dtype=torch.float64, device=dev)
                cp_ = _certificate(op64, Wt, torch.as_tensor(pp, dtype=torch.float64, device=dev), tol,
                                   nnls_iters=0 if exact else 100)
                if cp_["gap"] > tol:  # inactive blocks' bounds are loose: exact per-block NNLS where needed
                    pe = _exact_multipliers(Ut, masks, Wp, Y, beta, cp_["p"].cpu().numpy(), tol)
                    cp_ = _certificate(op64, Wt, torch.as_tensor(pe, dtype=torch.float64, device=dev), tol,
                                       nnls_iters=0)
                cp_["W"], cp_["mu"] = Wt, cp_["p"]
                seconds_polish += time.perf_counter() - tp
                record("polish", cp_)
                if better(cp_, best):
                    best = cp_
                if cp_["gap"] <= tol and cp_["viol_ok"]:
                    status = "optimal"
                    break
            else:
                seconds_polish += time.perf_counter() - tp
                if verbose:
                    print(f"[fast c2] polish did not settle ({time.perf_counter() - tp:.2f}s)")
                if op is not op64:  # ADMM has to go further than float32 allows: continue in float64
                    op = op64
                    W, V, L, e = (t_.to(torch.float64) for t_ in (W, V, L, e))
                    Y4 = op.Y.view(n, 1, 1, C)
        if stop:
            status = stop
            break
        # ---- residual balancing
        if iters % adapt == 0:
            if rp > 5 * rd and rho < 1e6:
                rho *= 2.0
                L = L / 2.0
            elif rd > 5 * rp and rho > 1e-6:
                rho /= 2.0
                L = L * 2.0
    assert best is not None
    Wb = best["W"].cpu().numpy()
    return FastSolution(
        u=np.ascontiguousarray(Wb[:, 0].transpose(1, 0, 2)),
        up=np.ascontiguousarray(Wb[:, 1].transpose(1, 0, 2)),
        # an infeasible point's value is no upper bound: no gap is claimed for it (NaN; status says why)
        objective=best["primal"], gap=best["gap"] if best["viol_ok"] else math.nan,
        cone_violation=best["violation"], status=status,
        iterations=iters, seconds=time.perf_counter() - t0, history=history, dual=best["dual"],
        device=str(dev), dtype=str(dt).replace("torch.", ""),
        extra={"multipliers": best["mu"].cpu().numpy(), "rho": rho, "polish_attempts": polish_tries,
               "admm_dtype": str(op.dtype).replace("torch.", ""),
               "polish_seconds": seconds_polish},
    )



def dense_c2_bytes(n: int, P: int, C: int) -> float:
    """Approximate peak bytes of the dense (C2) solver: about 8 float64 arrays of n·2P·C numbers."""
    return 64.0 * n * 2 * P * C


def price_patterns(Ut: np.ndarray, masks: np.ndarray, lam: np.ndarray, beta: float, *, skip: np.ndarray | None = None,
                   tol: float = 1e-6, pg_iters: int = 20, chunk: int = 256, stop_after: int | None = None,
                   exact: bool = True) -> np.ndarray:
    """Certified upper bounds (2, P) on min_{μ ≥ 0} ‖U'ᵀ(±D_i λ + S_i μ)‖ for every pattern not in `skip`.

    A block is dual feasible for the residual λ when its bound is ≤ β. Per chunk of patterns: μ = 0,
    then batched projected gradient (`_dual_pg`), then for blocks still above β(1 + tol/4) the exact
    cone projection (`_project_cone`, Moreau: the bound becomes the projection norm). Exact
    projections run in order of decreasing bound; with `stop_after`, they stop once that many blocks
    are proven above β (column generation only needs the worst few; the rest keep their PG bound);
    `exact=False` skips them (valid, looser bounds). Skipped patterns get NaN. Memory O(n · chunk).
    """
    n, q = Ut.shape
    P = masks.shape[1]
    bound = np.full((2, P), np.nan)
    thr = beta * (1 + 0.25 * tol)
    rown = np.linalg.norm(Ut, axis=1) + 1e-300
    out = np.setdiff1d(np.arange(P), np.asarray(skip if skip is not None else [], dtype=int))
    grads: dict[int, np.ndarray] = {}
    for a in range(0, len(out), chunk):
        idx = out[a:a + chunk]
        m = masks[:, idx].astype(np.float64)
        g = Ut.T @ (m * lam[:, None])  # (q, k): U'ᵀ D_i λ, the μ = 0 value of both signs
        b0 = np.linalg.norm(g, axis=0)
        bound[:, idx] = b0
        need = b0 > thr
        if need.any() and pg_iters > 0:
            sub = idx[need]
            _, b = _dual_pg(Ut, masks[:, sub], lam, np.zeros((n, 2, len(sub))), pg_iters)
            bound[:, sub] = b
            for j in np.flatnonzero((b > thr).any(0)):
                grads[int(sub[j])] = g[:, np.flatnonzero(need)[j]]
    todo = [(s, i) for i in grads for s in range(2) if bound[s, i] > thr] if exact else []
    todo.sort(key=lambda b: -bound[b])
    found = 0
    for s, i in todo:
        G = (2.0 * masks[:, i:i + 1] - 1.0) * Ut
        d, _ = _project_cone(G, (1.0 if s == 0 else -1.0) * grads[i], rown, accept_below=thr)
        bound[s, i] = min(bound[s, i], float(np.linalg.norm(d)))
        if bound[s, i] > thr:
            found += 1
            if stop_after is not None and found >= stop_after:
                break
    return bound


def _solve_c2_working_set(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, tol: float,
                          max_seconds: float | None, max_iter: int | None, dtype: str, dev: torch.device,
                          verbose: bool, t0: float, threads: int, initial: int = 64, add: int = 32
                          ) -> FastSolution:
    """(C2) class by class by column generation: dense solves on a growing pattern subset, priced on all.

    For class c the working set starts with the `initial` patterns of largest ‖U'ᵀ D_i y_c‖; each round
    solves (C2) restricted to it with the dense solver (warm-started, to gap tol/4), prices every other
    pattern at the new residual (`price_patterns`) and adds the `add` most violating ones. When no
    pattern violates its dual constraint the class is done; its certificate combines the restricted
    solve's multipliers (patterns inside) with the pricing bounds (patterns outside) in one dual-feasible
    point, scaled as in `_certificate`. Memory: masks (n·P bytes) plus one dense solve on n × 2|A|.
    """
    n, q = Ut.shape
    P, C = masks.shape[1], Y.shape[1]
    U_all = np.zeros((P, q, C))
    Up_all = np.zeros((P, q, C))
    primal = dual = viol = 0.0
    history: list[dict] = []
    iters, status, scale = 0, "optimal", 1.0
    sg = np.array([1.0, -1.0])
    for c in range(C):
        y = Y[:, c]
        b_zero = np.linalg.norm(Ut.T @ (masks * y[:, None]), axis=0)
        A = np.sort(np.argsort(-b_zero, kind="stable")[:min(initial, P)])
        warm: Any = None
        budget_left = None
        last_ok: tuple[Any, ...] | None = None  # (A, u, up, μ, violation, objective) of the last certified round
        while True:
            if max_seconds is not None:
                budget_left = max_seconds - (time.perf_counter() - t0)
            if budget_left is not None and budget_left <= 0:
                sub = None
            else:
                left_iter = None if max_iter is None else max(1, max_iter - iters)
                sub = solve_c2_fast(Ut, y, beta, masks[:, A], tol=0.25 * tol, max_seconds=budget_left,
                                    max_iter=left_iter, dtype=dtype, device=dev, warm_start=warm,
                                    threads=threads, working_set=False)
                iters += sub.iterations
            if sub is not None and sub.status == "optimal":
                u, up, mu = sub.u, sub.up, sub.extra["multipliers"][..., 0]
                sub_status, sub_viol, sub_obj = sub.status, sub.cone_violation, sub.objective
                last_ok = (A, u, up, mu, sub_viol, sub_obj)
            elif last_ok is not None:  # stopped early: certify the last round's feasible optimum instead
                A, u, up, mu, sub_viol, sub_obj = last_ok
                sub_status = "time_limit" if sub is None else sub.status
            elif sub is None:  # out of time before any solve of this class: the zero point
                u = np.zeros((len(A), q, 1))
                up = np.zeros((len(A), q, 1))
                mu = np.zeros((n, 2, len(A)))
                sub_status, sub_viol, sub_obj = "time_limit", 0.0, 0.5 * float(y @ y)
            else:
                u, up, mu = sub.u, sub.up, sub.extra["multipliers"][..., 0]
                sub_status, sub_viol, sub_obj = sub.status, sub.cone_violation, sub.objective
            mA = masks[:, A].astype(np.float64)
            f = (mA * (Ut @ (u[:, :, 0] - up[:, :, 0]).T)).sum(1)
            lam = y - f
            out_of_time = sub_status != "optimal" or (max_iter is not None and iters >= max_iter)
            t_price = time.perf_counter()
            bound = price_patterns(Ut, masks, lam, beta, skip=A, tol=tol, stop_after=None if out_of_time else add,
                                   exact=not out_of_time, pg_iters=0 if sub is None and last_ok is None else 20)
            viol_out = np.nan_to_num(bound, nan=0.0).max(0)  # (P,)
            entering = np.flatnonzero(viol_out > beta * (1 + 0.25 * tol))
            history.append({"stage": "working-set", "class": c, "patterns": int(len(A)),
                            "entering": int(len(entering)), "objective": sub_obj, "status": sub_status,
                            "solve_seconds": 0.0 if sub is None else sub.seconds,
                            "pricing_seconds": time.perf_counter() - t_price, "seconds": time.perf_counter() - t0})
            if verbose:
                h = history[-1]
                print(f"[fast c2 ws] class {c} |A|={len(A)} obj={sub_obj:.10g} sub={sub_status} "
                      f"entering={len(entering)} solve={h['solve_seconds']:.1f}s pricing={h['pricing_seconds']:.1f}s "
                      f"t={h['seconds']:.1f}s")
            if len(entering) and not out_of_time:
                new = entering[np.argsort(-viol_out[entering], kind="stable")[:add]]
                A_new = np.union1d(A, new)
                pos = np.searchsorted(A_new, A)
                wu, wup = np.zeros((len(A_new), q, 1)), np.zeros((len(A_new), q, 1))
                wu[pos], wup[pos] = u, up
                A, warm = A_new, (wu, wup)
                continue
            if len(entering):  # stopped by the budget: the bounds above (PG only) still certify a gap
                status = sub_status if sub_status != "optimal" else "time_limit"
            elif sub_status != "optimal":
                status = sub_status
            break
        base = sg[None, :, None] * mA[:, None, :] * lam[:, None, None] + (2.0 * mA - 1.0)[:, None, :] * mu
        w_in = float(np.linalg.norm(Ut.T @ base.reshape(n, -1), axis=0).max()) if len(A) else 0.0
        wmax = max(w_in, float(np.nan_to_num(bound, nan=0.0).max()))
        ly, ll = float(lam @ y), float(lam @ lam)
        smax = min(1.0, beta / max(wmax, _TINY))
        s_c = min(max(ly / max(ll, _TINY), 0.0), smax)
        scale = min(scale, smax)
        nrm = np.linalg.norm(u[:, :, 0], axis=1).sum() + np.linalg.norm(up[:, :, 0], axis=1).sum()
        primal += 0.5 * float(np.sum((y - f) ** 2)) + beta * float(nrm)
        dual += s_c * ly - 0.5 * s_c * s_c * ll
        viol = max(viol, sub_viol)
        U_all[A, :, c] = u[:, :, 0]
        Up_all[A, :, c] = up[:, :, 0]
    gap = max(0.0, (primal - dual) / max(abs(primal), 1e-12))
    norms = max(float(np.linalg.norm(U_all, axis=1).max()), float(np.linalg.norm(Up_all, axis=1).max()), 1.0)
    if status == "optimal" and not (gap <= tol and viol <= CONE_TOL * norms):
        status = "max_iter"
    if viol > CONE_TOL * norms:  # an infeasible point's value is no upper bound: no gap is claimed
        gap = math.nan
    return FastSolution(u=U_all, up=Up_all, objective=primal, gap=gap, cone_violation=viol, status=status,
                        iterations=iters, seconds=time.perf_counter() - t0, history=history, dual=dual,
                        device=str(dev), dtype=str(dtype), extra={"mode": "working_set", "dual_scale": scale})


def solve_c2_path(Ut: np.ndarray, Y: np.ndarray, betas: Sequence[float], masks: np.ndarray | None = None,
                  **kwargs: Any) -> list[FastSolution]:
    """Solve (C2) for each β in order, warm-starting each solve from the previous solution."""
    if len(betas) == 0:
        raise ValueError("betas must contain at least one value")
    out: list[FastSolution] = []
    warm = kwargs.pop("warm_start", None)
    for b in betas:
        sol = solve_c2_fast(Ut, Y, float(b), masks, warm_start=warm, **kwargs)
        out.append(sol)
        warm = sol
    return out


def c2_primal(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, u: np.ndarray,
              up: np.ndarray) -> tuple[float, float]:
    """(objective, cone violation) of blocks u, up (P, q, C) in program (C2), in float64 NumPy."""
    Y = _as_Y(Y, Ut.shape[0])
    f = np.einsum("np,nq,pqc->nc", masks.astype(float), Ut, u - up)
    obj = 0.5 * float(((f - Y) ** 2).sum()) + beta * float(np.linalg.norm(u, axis=1).sum() + np.linalg.norm(up, axis=1).sum())
    S = 2.0 * masks - 1.0
    g1 = np.einsum("np,nq,pqc->npc", S, Ut, u)
    g2 = np.einsum("np,nq,pqc->npc", S, Ut, up)
    viol = float(max(np.clip(-g1, 0, None).max(initial=0.0), np.clip(-g2, 0, None).max(initial=0.0)))
    return obj, viol


# --------------------------------------------------------------------------------------------------
# the gated relaxation (no cone constraints), chunked over rows


class _Gated:
    """Chunked operator f = Σ_i D_i U' w_i with masks stored or recomputed from generators."""

    def __init__(self, Ut: np.ndarray, masks: np.ndarray | None, generators: np.ndarray | None,
                 Y: np.ndarray, dtype: torch.dtype, device: torch.device, chunk: int):
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
    Y = _as_Y(Y, Ut.shape[0])
    op = _Gated(Ut, masks, generators, Y, dt, dev, chunk)
    Wt = torch.as_tensor(W, dtype=dt, device=dev)
    nth = threads or choose_threads(Ut.shape[0], Ut.shape[1], op.P * op.C, dev)
    best = math.inf
    with _threads(nth):
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
    Ut = _check_inputs(Ut, beta, loss)
    n, q = Ut.shape
    if masks is None and generators is None:
        raise ValueError("pass either masks (n, P) bool or generators (q, P)")
    if masks is not None:
        masks = _masks_from(Ut, masks, None)
    Y = _as_Y(Y, n)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    op = _Gated(Ut, masks, generators, Y, dt, dev, chunk)
    P, C = op.P, op.C
    nthreads = threads or choose_threads(n, q, P * C, dev)
    history: list[dict] = []
    with _threads(nthreads):
        L = op.lipschitz()
        if warm_start is None:
            W = torch.zeros(q, P, C, dtype=dt, device=dev)
        else:
            u0 = warm_start.u if isinstance(warm_start, FastSolution) else warm_start
            W = torch.as_tensor(_adapt_blocks(u0, q, P, C).transpose(1, 0, 2).copy(), dtype=dt, device=dev)
        x, yk, t = W, W, 1.0
        it = 0
        status = "max_iter"
        best: dict[str, Any] | None = None
        while True:
            r = op.forward(yk) - op.Y
            grad = op.adjoint(r)
            x_new = _group_shrink((yk - grad / L).unsqueeze(1), beta / L).squeeze(1)
            it += 1
            diff = x_new - x
            if float(((yk - x_new) * diff).sum()) > 0:
                t, yk = 1.0, x_new
            else:
                t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
                yk = x_new + ((t - 1) / t_new) * diff
                t = t_new
            x = x_new
            stop = None
            if max_iter is not None and it >= max_iter:
                stop = "max_iter"
            elif max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
                stop = "time_limit"
            if it % check_every == 0 or stop:
                cert = _gated_certificate(op, x, beta)
                cert["W"] = x
                history.append({"iteration": it, "seconds": time.perf_counter() - t0, "objective": cert["primal"],
                                "dual": cert["dual"], "gap": cert["gap"]})
                if verbose:
                    print(f"[fast gated] it={it} obj={cert['primal']:.10g} gap={cert['gap']:.2e}")
                if best is None or cert["gap"] < best["gap"]:
                    best = cert
                if cert["gap"] <= tol:
                    status = "optimal"
                    break
            if stop:
                status = stop
                break
    assert best is not None
    Wb = best["W"].to(torch.float64).cpu().numpy().transpose(1, 0, 2)
    return FastSolution(u=np.ascontiguousarray(Wb), up=np.zeros_like(Wb), objective=best["primal"],
                        gap=best["gap"], cone_violation=0.0, status=status, iterations=it,
                        seconds=time.perf_counter() - t0, history=history, dual=best["dual"], device=str(dev),
                        dtype=str(dt).replace("torch.", ""), threads=nthreads, extra={"lipschitz": L})


def _gated_certificate(op: _Gated, W: torch.Tensor, beta: float) -> dict[str, Any]:
    """Primal, dual and relative gap of the gated relaxation at W (accumulated in float64)."""
    r = (op.forward(W) - op.Y)
    lam = -r
    A = op.adjoint(lam)
    wmax = A.norm(dim=0).amax(dim=0).to(torch.float64)  # (C,)
    lam64, Y64 = lam.to(torch.float64), op.Y.to(torch.float64)
    ly = (lam64 * Y64).sum(0)
    ll = (lam64 * lam64).sum(0)
    smax = torch.clamp(beta / torch.clamp(wmax, min=_TINY), max=1.0)
    s = torch.minimum(torch.clamp(ly / torch.clamp(ll, min=_TINY), min=0.0), smax)
    dual = float((s * ly - 0.5 * s * s * ll).sum())
    primal = 0.5 * float(ll.sum()) + beta * float(W.to(torch.float64).norm(dim=0).sum())
    gap = max((primal - dual) / max(abs(primal), 1e-12), 0.0)
    return {"primal": primal, "dual": dual, "gap": gap}
