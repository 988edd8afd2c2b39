"""Dense (C2) solve: ADMM with the splitting v_b = U' w_b, then the active-set polish and the certificate.

ADMM: v_b ∈ K_b = {v : v_j ≥ 0 where m_bj = 1, v_j ≤ 0 where m_bj = 0} (b runs over the 2P blocks
u_i, u'_i with signs ±1). Because U' has orthonormal columns the w-step is a group soft-threshold of
U'ᵀ(v − λ) (one GEMM for all blocks and classes); the v-step is row-separable (`vstep`).
Over-relaxation 1.6 and residual balancing of ρ. For a float64 solve with polish the ADMM phase runs in
float32 (it only has to reach residual ~1e-2; the polish and the certificate are float64) and switches
to float64 if a polish attempt fails. The polish starts as soon as the number of active blocks settles
(count changes ≤ 15 % between checks and primal residual < 1e-2); when the active-set polish does not
finish, a restricted conic solve seeds a face Newton method (`polish_conic`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from convexbn.solver.certificate import certificate, exact_multipliers
from convexbn.solver.conic_polish import polish_conic
from convexbn.solver.operator import C2Operator, group_shrink, vstep
from convexbn.solver.polish import active_set_polish
from convexbn.solver.state import ADMM_FP32, TINY, FastSolution, warm_blocks

#: ADMM iterations between convergence checks and between ρ updates, over-relaxation, initial ρ.
CHECK_EVERY = 10
ADAPT_EVERY = 40
RELAX = 1.6
RHO0 = 16.0  # dimensionless (the objective is homogeneous in (y, β)); best of 2–32 on the E instances


@dataclass
class AdmmProblem:
    """The instance and the stopping rules of one dense solve."""

    Ut: np.ndarray
    masks: np.ndarray
    Y: np.ndarray
    beta: float
    tol: float
    max_seconds: float | None
    max_iter: int | None
    polish: bool
    verbose: bool
    t0: float
    dev: torch.device


@dataclass
class AdmmState:
    """ADMM iterate (W, V, Λ, row residuals e, ρ) with the operators, the best certified point and counters."""

    op: C2Operator
    op64: C2Operator
    W: torch.Tensor
    V: torch.Tensor
    L: torch.Tensor
    e: torch.Tensor
    rho: float
    iters: int = 0
    status: str = "max_iter"
    history: list[dict] = field(default_factory=list)
    best: dict[str, Any] | None = None
    act_prev: torch.Tensor | None = None
    stable: int = 0
    polish_tries: int = 0
    last_polish_it: int = -10**9
    seconds_polish: float = 0.0


def init_admm(pb: AdmmProblem, dt: torch.dtype, warm_start: Any) -> AdmmState:
    """Operators in the ADMM and float64 dtypes and the starting iterate (zero or from a warm start)."""
    n, q = pb.Ut.shape
    P, C = pb.masks.shape[1], pb.Y.shape[1]
    adt = torch.float32 if (pb.polish and dt == torch.float64 and ADMM_FP32) else dt
    op64 = C2Operator(pb.Ut, pb.masks, pb.Y, pb.beta, torch.float64, pb.dev)
    op = op64 if adt == torch.float64 else C2Operator(pb.Ut, pb.masks, pb.Y, pb.beta, adt, pb.dev)
    W0, _ = warm_blocks(warm_start, q, P, C)
    rho = RHO0
    if isinstance(warm_start, FastSolution) and "rho" in warm_start.extra:
        rho = float(warm_start.extra["rho"])
    if W0 is None:
        W = torch.zeros(q, 2, P, C, dtype=adt, device=pb.dev)
        V = torch.zeros(n, 2, P, C, dtype=adt, device=pb.dev)
    else:
        W = torch.as_tensor(W0, dtype=adt, device=pb.dev)
        Z0 = op.Z(W)
        V = torch.where(op.M > 0, Z0.clamp(min=0), Z0.clamp(max=0))
    L = torch.zeros(n, 2, P, C, dtype=adt, device=pb.dev)
    e = torch.zeros(n, 1, 1, C, dtype=adt, device=pb.dev)
    return AdmmState(op=op, op64=op64, W=W, V=V, L=L, e=e, rho=rho)


def out_of_budget(pb: AdmmProblem, st: AdmmState) -> str | None:
    """'max_iter' / 'time_limit' when a budget is spent, else None."""
    if pb.max_iter is not None and st.iters >= pb.max_iter:
        return "max_iter"
    if pb.max_seconds is not None and time.perf_counter() - pb.t0 >= pb.max_seconds:
        return "time_limit"
    return None


def record(pb: AdmmProblem, st: AdmmState, stage: str, cert: dict[str, Any], **kw: Any) -> None:
    """Append a certificate to the history (and print it when verbose)."""
    st.history.append({"stage": stage, "iteration": st.iters, "seconds": time.perf_counter() - pb.t0,
                       "objective": cert["primal"], "dual": cert["dual"], "gap": cert["gap"],
                       "violation": cert["violation"], "rho": st.rho, **kw})
    if pb.verbose:
        print(f"[fast c2] {stage:7s} it={st.iters:6d} t={st.history[-1]['seconds']:.2f}s obj={cert['primal']:.10g} "
              f"gap={cert['gap']:.2e} viol={cert['violation']:.1e} {kw}")


def better(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
    """Whether certificate a beats b: feasible first, then smaller gap."""
    if b is None:
        return True
    if a["viol_ok"] != b["viol_ok"]:
        return a["viol_ok"]
    return a["gap"] < b["gap"]


def keep_best(st: AdmmState, cert: dict[str, Any]) -> None:
    """Remember `cert` when it beats the best point so far."""
    if better(cert, st.best):
        st.best = cert


def admm_multipliers(st: AdmmState) -> torch.Tensor:
    """Cone multipliers implied by the ADMM state: μ_b = (S_b(s_b D_b e − ρ λ_b))₊."""
    op = st.op
    return torch.clamp(op.S * (op.sig * op.M * st.e - st.rho * st.L), min=0)


def admm_iteration(st: AdmmState, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One over-relaxed ADMM iteration in place → (U'W, previous V) for the residuals."""
    op = st.op
    X = op.adj(st.V - st.L)
    st.W = group_shrink(X, beta / st.rho)
    Z = op.Z(st.W)
    Zh = RELAX * Z + (1 - RELAX) * st.V
    V_old = st.V
    st.V, st.e = vstep(op.M, op.Y.view(op.n, 1, 1, op.C), Zh + st.L, st.e, st.rho, off=op.off)
    st.L = st.L + Zh - st.V
    return Z, V_old


def progress(st: AdmmState, Z: torch.Tensor, V_old: torch.Tensor) -> tuple[float, float, bool, bool]:
    """(primal residual, dual residual, settled, early): whether the active set has settled enough to polish."""
    rp = float((Z - st.V).norm()) / max(float(Z.norm()), float(st.V.norm()), TINY)
    rd = float((st.V - V_old).norm()) / max(float(st.L.norm()), TINY)
    norms = st.W.norm(dim=0)
    act = norms > 1e-3 * norms.amax(dim=(0, 1), keepdim=True).clamp(min=TINY)
    st.stable = st.stable + 1 if st.act_prev is not None and bool((act == st.act_prev).all()) else 0
    n_act, n_prev = int(act.sum()), (int(st.act_prev.sum()) if st.act_prev is not None else -1)
    st.act_prev = act
    settled = st.stable >= 3 and rp < 1e-3  # also allows the conic fallback
    early = rp < 1e-2 and n_prev > 0 and abs(n_act - n_prev) <= 0.15 * n_prev
    return rp, rd, settled, early


def polish_classes(pb: AdmmProblem, Wn: np.ndarray, p_est: np.ndarray, fallback_ok: bool
                   ) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Polish every class (active set, else the conic fallback when allowed) → (W, μ, all priced exactly) or None."""
    Wp, pp, exact = np.zeros_like(Wn), p_est.copy(), True
    deadline = math.inf if pb.max_seconds is None else pb.t0 + pb.max_seconds
    for c in range(pb.Y.shape[1]):
        res = active_set_polish(pb.Ut, pb.masks, pb.Y[:, c], pb.beta, Wn[..., c], deadline=deadline,
                                mu0=p_est[..., c])
        if res is not None:
            Wp[..., c], pp[..., c] = res
            continue
        exact = False
        if not fallback_ok:
            return None  # too early for the expensive conic fallback: keep iterating
        res = polish_conic(pb.Ut, pb.masks, pb.Y[:, c], pb.beta, Wn[..., c], deadline=deadline)
        if res is None:
            return None
        Wp[..., c] = res[0]
        act_c = np.linalg.norm(res[0], axis=0) > 0  # (2, P)
        pp[:, act_c, c] = res[1][:, act_c]
    return Wp, pp, exact


def polished_certificate(pb: AdmmProblem, st: AdmmState, Wp: np.ndarray, pp: np.ndarray, exact: bool
                         ) -> dict[str, Any]:
    """Certificate of a polished point; exact per-block NNLS where the multipliers leave a gap above tol."""
    Wt = torch.as_tensor(Wp, dtype=torch.float64, device=pb.dev)
    cert = certificate(st.op64, Wt, torch.as_tensor(pp, dtype=torch.float64, device=pb.dev), pb.tol,
                       nnls_iters=0 if exact else 100)
    if cert["gap"] > pb.tol:  # inactive blocks' bounds are loose: exact per-block NNLS where needed
        pe = exact_multipliers(pb.Ut, pb.masks, Wp, pb.Y, pb.beta, cert["p"].cpu().numpy(), pb.tol)
        cert = certificate(st.op64, Wt, torch.as_tensor(pe, dtype=torch.float64, device=pb.dev), pb.tol,
                           nnls_iters=0)
    cert["W"], cert["mu"] = Wt, cert["p"]
    return cert


def upcast(st: AdmmState) -> None:
    """Continue ADMM in float64 (float32 cannot go further than a failed polish needs)."""
    if st.op is not st.op64:
        st.op = st.op64
        st.W, st.V, st.L, st.e = (t.to(torch.float64) for t in (st.W, st.V, st.L, st.e))


def try_polish(pb: AdmmProblem, st: AdmmState, fallback_ok: bool) -> bool:
    """Polish the current ADMM point; True when the polished point is certified optimal."""
    st.polish_tries += 1
    st.last_polish_it = st.iters
    tp = time.perf_counter()
    Wn = st.W.to(torch.float64).cpu().numpy()
    p_est = admm_multipliers(st).to(torch.float64).cpu().numpy()
    res = polish_classes(pb, Wn, p_est, fallback_ok)
    if res is None:
        st.seconds_polish += time.perf_counter() - tp
        if pb.verbose:
            print(f"[fast c2] polish did not settle ({time.perf_counter() - tp:.2f}s)")
        upcast(st)
        return False
    cert = polished_certificate(pb, st, *res)
    st.seconds_polish += time.perf_counter() - tp
    record(pb, st, "polish", cert)
    keep_best(st, cert)
    return cert["gap"] <= pb.tol and cert["viol_ok"]


def admm_certificate(pb: AdmmProblem, st: AdmmState, **kw: Any) -> bool:
    """Certify the ADMM point itself (multipliers from the ADMM state); True when it is certified optimal."""
    W64 = st.W.to(torch.float64)
    cert = certificate(st.op64, W64, admm_multipliers(st).to(torch.float64), pb.tol, nnls_iters=0)
    cert["W"], cert["mu"] = W64, cert["p"]
    record(pb, st, "admm", cert, **kw)
    keep_best(st, cert)
    return cert["gap"] <= pb.tol and cert["viol_ok"]


def balance(st: AdmmState, rp: float, rd: float) -> None:
    """Residual balancing: double or halve ρ (and rescale the scaled dual Λ) when one residual dominates."""
    if rp > 5 * rd and st.rho < 1e6:
        st.rho *= 2.0
        st.L = st.L / 2.0
    elif rd > 5 * rp and st.rho > 1e-6:
        st.rho /= 2.0
        st.L = st.L * 2.0


def admm_result(pb: AdmmProblem, st: AdmmState, dt: torch.dtype) -> FastSolution:
    """The best certified point as a FastSolution (no gap is claimed for an infeasible point)."""
    best = st.best
    assert best is not None
    Wb = best["W"].cpu().numpy()
    return FastSolution(
        u=np.ascontiguousarray(Wb[:, 0].transpose(1, 0, 2)),
        up=np.ascontiguousarray(Wb[:, 1].transpose(1, 0, 2)),
        objective=best["primal"], gap=best["gap"] if best["viol_ok"] else math.nan,
        cone_violation=best["violation"], status=st.status,
        iterations=st.iters, seconds=time.perf_counter() - pb.t0, history=st.history, dual=best["dual"],
        device=str(pb.dev), dtype=str(dt).replace("torch.", ""),
        extra={"multipliers": best["mu"].cpu().numpy(), "rho": st.rho, "polish_attempts": st.polish_tries,
               "admm_dtype": str(st.op.dtype).replace("torch.", ""), "polish_seconds": st.seconds_polish},
    )


def solve_dense(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, *, tol: float,
                max_seconds: float | None = None, max_iter: int | None = None, dtype: torch.dtype = torch.float64,
                device: torch.device = torch.device("cpu"), warm_start: Any = None, polish: bool = True,
                verbose: bool = False, t0: float | None = None) -> FastSolution:
    """ADMM + active-set polish + certificate on validated inputs (U' orthonormal, Y (n, C), masks (n, P) bool)."""
    pb = AdmmProblem(Ut=Ut, masks=masks, Y=Y, beta=beta, tol=tol, max_seconds=max_seconds, max_iter=max_iter,
                     polish=polish, verbose=verbose, t0=time.perf_counter() if t0 is None else t0, dev=device)
    st = init_admm(pb, dtype, warm_start)
    while True:
        Z, V_old = admm_iteration(st, beta)
        st.iters += 1
        stop = out_of_budget(pb, st)
        if st.iters % CHECK_EVERY and not stop:
            continue
        rp, rd, settled, early = progress(st, Z, V_old)
        want_polish = polish and (stop is not None or ((settled or early) and st.iters - st.last_polish_it
                                                       >= 4 * CHECK_EVERY * max(1, st.polish_tries)))
        if verbose and st.iters % (5 * CHECK_EVERY) == 0:
            print(f"[fast c2] admm it={st.iters} rho={st.rho:.3g} rp={rp:.1e} rd={rd:.1e} "
                  f"active={int(st.act_prev.sum())} stable={st.stable}")
        if (want_polish or stop) and admm_certificate(pb, st, rp=rp, rd=rd):
            st.status = "optimal"
            break
        if want_polish and try_polish(pb, st, settled or stop is not None):
            st.status = "optimal"
            break
        if stop:
            st.status = stop
            break
        if st.iters % ADAPT_EVERY == 0:
            balance(st, rp, rd)
    return admm_result(pb, st, dtype)
