"""The fast first-order (C2) solver against a CVXPY oracle, its certificate, dtypes and devices."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

from convexbn.arrangements import sample_arrangements
from convexbn.solver import (
    FastSolution,
    c2_primal,
    choose_threads,
    solve_c2_fast,
    solve_c2_path,
    solve_gated_fast,
)
from convexbn.whitening import whiten

ORACLE_OPTS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}  # tight: the oracle must be accurate


def instance(n: int, d: int, P: int, C: int = 1, seed: int = 0, k: int | None = None):
    """Random whitened data U', targets Y (n, C) and sampled arrangement masks."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((n, C))
    U = whiten(X, k=k).features(X)
    arr = sample_arrangements(U, P, seed=seed)
    return U, Y, arr.masks, arr.generators


def oracle_c2(U: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray) -> float:
    """Optimum of (C2), decoupled per class, by CVXPY + Clarabel at tight tolerances."""
    q, P = U.shape[1], masks.shape[1]
    Mf = masks.astype(float)
    S = 2.0 * Mf - 1.0
    total = 0.0
    for c in range(Y.shape[1]):
        u, up = cp.Variable((q, P)), cp.Variable((q, P))
        f = cp.sum(cp.multiply(Mf, U @ (u - up)), axis=1)
        obj = 0.5 * cp.sum_squares(f - Y[:, c]) + beta * (cp.sum(cp.norm(u, axis=0)) + cp.sum(cp.norm(up, axis=0)))
        prob = cp.Problem(cp.Minimize(obj), [cp.multiply(S, U @ u) >= 0, cp.multiply(S, U @ up) >= 0])
        prob.solve(solver="CLARABEL", **ORACLE_OPTS)
        total += float(prob.value)
    return total


def oracle_gated(U: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray) -> float:
    """Optimum of the gated relaxation by CVXPY + Clarabel."""
    q, P = U.shape[1], masks.shape[1]
    Mf = masks.astype(float)
    total = 0.0
    for c in range(Y.shape[1]):
        w = cp.Variable((q, P))
        f = cp.sum(cp.multiply(Mf, U @ w), axis=1)
        prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(f - Y[:, c]) + beta * cp.sum(cp.norm(w, axis=0))))
        prob.solve(solver="CLARABEL", **ORACLE_OPTS)
        total += float(prob.value)
    return total


def assert_certified(sol: FastSolution, U, Y, beta, masks, p_star: float, tol: float = 1e-6) -> None:
    """Solution optimal, certified, consistent with its own blocks and with the oracle optimum."""
    assert sol.status == "optimal", sol.history[-3:]
    assert sol.gap <= tol
    assert sol.cone_violation <= 1e-9
    obj, viol = c2_primal(U, Y, beta, masks, sol.u, sol.up)
    assert obj == pytest.approx(sol.objective, rel=1e-12)
    assert viol <= 1e-9
    assert abs(sol.objective - p_star) <= 1e-6 * abs(p_star)
    assert sol.dual <= p_star * (1 + 1e-8)  # the certificate is a true lower bound


@pytest.mark.parametrize("n,d,P,beta,seed", [(24, 2, 12, 0.1, 0), (30, 3, 16, 0.5, 1)])
def test_scalar_matches_cvxpy(n, d, P, beta, seed):
    U, Y, M, _ = instance(n, d, P, seed=seed)
    sol = solve_c2_fast(U, Y, beta, M, tol=1e-8)
    assert sol.u.shape == (M.shape[1], U.shape[1], 1)
    assert_certified(sol, U, Y, beta, M, oracle_c2(U, Y, beta, M))


def test_vector_output_matches_cvxpy():
    U, Y, M, _ = instance(24, 2, 10, C=3, seed=2)
    sol = solve_c2_fast(U, Y, 0.2, M, tol=1e-8)
    assert sol.u.shape == (M.shape[1], 3, 3)
    assert_certified(sol, U, Y, 0.2, M, oracle_c2(U, Y, 0.2, M))


def test_truncated_matches_cvxpy():
    U, Y, M, _ = instance(26, 5, 12, seed=3, k=2)
    assert U.shape[1] == 3
    sol = solve_c2_fast(U, Y, 0.1, M, tol=1e-8)
    assert_certified(sol, U, Y, 0.1, M, oracle_c2(U, Y, 0.1, M))


def test_generators_equal_masks():
    U, Y, M, G = instance(20, 2, 8, seed=4)
    a = solve_c2_fast(U, Y, 0.1, M, tol=1e-8)
    b = solve_c2_fast(U, Y, 0.1, generators=G, tol=1e-8)
    assert b.status == "optimal"
    assert a.objective == pytest.approx(b.objective, rel=1e-9)


def test_gated_matches_cvxpy():
    U, Y, M, G = instance(30, 3, 12, C=2, seed=5)
    sol = solve_gated_fast(U, Y, 0.1, M, tol=1e-7, max_seconds=60)
    p_star = oracle_gated(U, Y, 0.1, M)
    assert sol.status == "optimal"
    assert abs(sol.objective - p_star) <= 1e-6 * p_star
    assert sol.dual <= p_star * (1 + 1e-9)
    chunked = solve_gated_fast(U, Y, 0.1, generators=G, tol=1e-7, chunk=7, max_seconds=60)
    assert chunked.objective == pytest.approx(sol.objective, rel=1e-6)


def test_stopped_early_reports_honest_gap():
    U, Y, M, _ = instance(30, 3, 16, seed=1)
    p_star = oracle_c2(U, Y, 0.1, M)
    sol = solve_c2_fast(U, Y, 0.1, M, tol=1e-8, max_iter=5, polish=False)
    assert sol.status == "max_iter"
    assert sol.gap > 1e-8
    assert sol.dual <= p_star * (1 + 1e-9)
    # the reported gap really bounds the distance to the optimum (when the point is feasible)
    if sol.cone_violation == 0.0:
        assert (sol.objective - p_star) / sol.objective <= sol.gap + 1e-12


def test_float32_and_float64_agree():
    U, Y, M, _ = instance(24, 2, 10, seed=6)
    a = solve_c2_fast(U, Y, 0.1, M, tol=1e-8, dtype="float64")
    b = solve_c2_fast(U, Y, 0.1, M, tol=1e-5, dtype="float32", max_seconds=60)
    assert b.dtype == "float32"
    assert b.gap <= 1e-5
    assert b.objective == pytest.approx(a.objective, rel=1e-4)


def test_beta_path_warm_start():
    U, Y, M, _ = instance(24, 2, 10, seed=7)
    betas = [0.5, 0.2]
    path = solve_c2_path(U, Y, betas, M, tol=1e-8)
    assert [s.status for s in path] == ["optimal", "optimal"]
    for beta, sol in zip(betas, path):
        assert sol.objective == pytest.approx(oracle_c2(U, Y, beta, M), rel=1e-6)


def test_warm_start_across_truncation():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((24, 4))
    Y = rng.standard_normal(24)
    U4 = whiten(X).features(X)
    U2 = whiten(X, k=2).features(X)
    M = sample_arrangements(U2, 10, seed=0).masks
    small = solve_c2_fast(U2, Y, 0.1, M, tol=1e-8)
    big = solve_c2_fast(U4, Y, 0.1, M, tol=1e-8, warm_start=(small.u, small.up))
    assert big.status == "optimal"
    assert big.objective <= small.objective + 1e-9  # more directions can only help


def test_bad_inputs_raise_clear_errors():
    U, Y, M, _ = instance(20, 2, 6)
    with pytest.raises(ValueError, match="squared"):
        solve_c2_fast(U, Y, 0.1, M, loss="cross_entropy")
    with pytest.raises(ValueError, match="orthonormal"):
        solve_c2_fast(2 * U, Y, 0.1, M)
    with pytest.raises(ValueError, match="beta"):
        solve_c2_fast(U, Y, -1.0, M)
    with pytest.raises(ValueError, match="masks"):
        solve_c2_fast(U, Y, 0.1, M[:5])
    with pytest.raises(ValueError, match="dtype"):
        solve_c2_fast(U, Y, 0.1, M, dtype="float16")


def test_thread_choice_skinny_is_one():
    assert choose_threads(100_000, 51, 200, torch.device("cpu")) == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_cpu():
    U, Y, M, _ = instance(30, 3, 12, seed=9)
    cpu = solve_c2_fast(U, Y, 0.1, M, tol=1e-8, device="cpu")
    gpu = solve_c2_fast(U, Y, 0.1, M, tol=1e-8, device="cuda")
    assert gpu.device.startswith("cuda")
    assert gpu.status == "optimal"
    assert gpu.objective == pytest.approx(cpu.objective, rel=1e-7)


def test_vstep_solves_row_problem_exactly():
    """The ADMM v-step returns v in the sign cones whose row residual satisfies its fixed point."""
    from convexbn.solver import _vstep

    rng = np.random.default_rng(11)
    n, P, C, rho = 40, 7, 2, 0.7
    M = torch.as_tensor(rng.random((n, 1, P, 1)) < 0.5, dtype=torch.float64)
    Y4 = torch.as_tensor(rng.standard_normal((n, 1, 1, C)))
    A = torch.as_tensor(rng.standard_normal((n, 2, P, C)))
    V, e = _vstep(M, Y4, A, torch.zeros(n, 1, 1, C, dtype=torch.float64), rho)
    assert bool((V[M.expand_as(V) > 0] >= 0).all()) and bool((V[M.expand_as(V) == 0] <= 0).all())
    fit = (M * (V[:, 0:1] - V[:, 1:2])).sum(2, keepdim=True) - Y4
    assert torch.allclose(fit, e, atol=1e-12)
    # stationarity of ½(fit)² + ρ/2‖v − a‖² on rows inside the mask: v = max(0, a − s e/ρ)
    sg = torch.tensor([1.0, -1.0], dtype=torch.float64).view(1, 2, 1, 1)
    want = torch.where(M > 0, (A - sg * e / rho).clamp(min=0), A.clamp(max=0))
    assert torch.allclose(V, want, atol=1e-12)


def test_project_cone_satisfies_kkt():
    """The restricted-row NNLS projection onto {u : S U' u ≥ 0} is exact (full KKT on all rows)."""
    from convexbn.solver import _project_cone

    U, _, M, _ = instance(200, 4, 3, seed=12)
    G = (2.0 * M[:, :1] - 1.0) * U
    w = np.random.default_rng(12).standard_normal(U.shape[1])
    d, mu = _project_cone(G, w, first=U.shape[1])  # few rows first: forces the row-adding loop
    assert np.allclose(d, w + G.T @ mu, atol=1e-12)
    assert (mu >= 0).all()
    assert (G @ d).min() >= -1e-12
    assert abs(float(mu @ (G @ d))) <= 1e-10  # complementarity


def test_active_set_polish_from_rough_admm_point():
    """The active-set polish turns a rough ADMM point into an exactly feasible, certified optimum."""
    from convexbn.solver import _C2, _active_set_polish, _certificate

    U, Y, M, _ = instance(60, 3, 20, seed=13)
    beta = 0.2
    rough = solve_c2_fast(U, Y, beta, M, max_iter=40, polish=False)
    W = np.stack([rough.u[..., 0], rough.up[..., 0]], 0).transpose(2, 0, 1)  # (q, 2, P)
    res = _active_set_polish(U, M, Y[:, 0], beta, W, mu0=rough.extra["multipliers"][..., 0])
    assert res is not None
    Wp, pp = res
    obj, viol = c2_primal(U, Y, beta, M, Wp[:, 0].T[..., None], Wp[:, 1].T[..., None])
    assert viol <= 1e-12
    p_star = oracle_c2(U, Y, beta, M)
    assert abs(obj - p_star) <= 1e-7 * abs(p_star)
    op = _C2(U, M, Y, beta, torch.float64, torch.device("cpu"))
    cert = _certificate(op, torch.as_tensor(Wp[..., None]), torch.as_tensor(pp[..., None]), 1e-9, nnls_iters=0)
    assert cert["gap"] <= 1e-9  # the returned multipliers certify optimality without further NNLS
    assert cert["dual"] <= p_star * (1 + 1e-9)


def test_conic_fallback_polish_matches_oracle():
    """The fallback polish (direct Clarabel restricted solve + face Newton) reaches the optimum."""
    from convexbn.solver import _polish_conic

    U, Y, M, _ = instance(40, 3, 12, seed=14)
    beta = 0.2
    rough = solve_c2_fast(U, Y, beta, M, max_iter=300, polish=False)
    W = np.stack([rough.u[..., 0], rough.up[..., 0]], 0).transpose(2, 0, 1)
    res = _polish_conic(U, M, Y[:, 0], beta, W, extra_rows=4)
    assert res is not None
    obj, viol = c2_primal(U, Y, beta, M, res[0][:, 0].T[..., None], res[0][:, 1].T[..., None])
    assert viol <= 1e-12
    assert abs(obj - oracle_c2(U, Y, beta, M)) <= 1e-6 * obj
