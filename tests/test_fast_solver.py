"""The fast first-order (C2) solver against a CVXPY oracle, its certificate, dtypes and devices."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

import convexbn.solver.admm as admm_mod
import convexbn.solver.state as state_mod
import convexbn.solver.working_set as ws_mod
from convexbn.arrangements import sample_arrangements
from convexbn.solver import (
    WORKING_SET_PATTERNS,
    C2Operator,
    FastSolution,
    active_set_polish,
    beta_max,
    c2_primal,
    certificate,
    choose_threads,
    dual_pg,
    fit_hessian,
    low_rank_cheaper,
    lstsq,
    newton_low_rank,
    null_basis_qr,
    polish_bytes,
    polish_conic,
    price_patterns,
    project_cone,
    shrink_basis,
    solve_c2_fast,
    solve_c2_path,
    solve_gated_fast,
    solve_working_set,
    vstep,
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
    assert sol.dual <= p_star * (1 + 1e-9)
    if sol.cone_violation > 1e-9:  # infeasible: its value bounds nothing, so no gap is claimed
        assert np.isnan(sol.gap)
    else:  # the reported gap really bounds the distance to the optimum
        assert sol.gap > 1e-8
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


def _vstep_inputs(seed: int, n: int, P: int, C: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random masks M (n,1,P,1), targets Y4 (n,1,1,C) and v-step arguments A (n,2,P,C) in float64."""
    rng = np.random.default_rng(seed)
    M = torch.as_tensor(rng.random((n, 1, P, 1)) < 0.5, dtype=torch.float64)
    Y4 = torch.as_tensor(rng.standard_normal((n, 1, 1, C)))
    A = torch.as_tensor(rng.standard_normal((n, 2, P, C)))
    return M, Y4, A


def test_vstep_solves_row_problem_exactly():
    """The ADMM v-step returns v in the sign cones whose row residual satisfies its fixed point."""
    n, P, C, rho = 40, 7, 2, 0.7
    M, Y4, A = _vstep_inputs(11, n, P, C)
    V, e = vstep(M, Y4, A, torch.zeros(n, 1, 1, C, dtype=torch.float64), rho)
    assert bool((V[M.expand_as(V) > 0] >= 0).all()) and bool((V[M.expand_as(V) == 0] <= 0).all())
    fit = (M * (V[:, 0:1] - V[:, 1:2])).sum(2, keepdim=True) - Y4
    assert torch.allclose(fit, e, atol=1e-12)
    # stationarity of ½(fit)² + ρ/2‖v − a‖² on rows inside the mask: v = max(0, a − s e/ρ)
    sg = torch.tensor([1.0, -1.0], dtype=torch.float64).view(1, 2, 1, 1)
    want = torch.where(M > 0, (A - sg * e / rho).clamp(min=0), A.clamp(max=0))
    assert torch.allclose(V, want, atol=1e-12)


def test_project_cone_satisfies_kkt():
    """The restricted-row NNLS projection onto {u : S U' u ≥ 0} is exact (full KKT on all rows)."""
    U, _, M, _ = instance(200, 4, 3, seed=12)
    G = (2.0 * M[:, :1] - 1.0) * U
    w = np.random.default_rng(12).standard_normal(U.shape[1])
    d, mu = project_cone(G, w, first=U.shape[1])  # few rows first: forces the row-adding loop
    assert np.allclose(d, w + G.T @ mu, atol=1e-12)
    assert (mu >= 0).all()
    assert (G @ d).min() >= -1e-12
    assert abs(float(mu @ (G @ d))) <= 1e-10  # complementarity


def test_project_cone_row_generation_matches_nnls_on_every_row():
    """Starting from very few rows (rows dropped and added each round) gives the projection of the full NNLS."""
    from scipy.optimize import nnls

    for seed in range(6):
        U, _, M, _ = instance(300, 8, 4, seed=20 + seed)
        G = (2.0 * M[:, seed % 4 : seed % 4 + 1] - 1.0) * U
        w = np.random.default_rng(seed).standard_normal(U.shape[1]) * 3.0
        mu_full, _ = nnls(G.T, -w, maxiter=50 * G.shape[0])
        d, mu = project_cone(G, w, first=2)
        assert np.allclose(d, w + G.T @ mu_full, atol=1e-9)
        assert (G @ d).min() >= -1e-12


def test_project_cone_of_a_point_on_a_degenerate_face_returns_the_point():
    """A point already in the cone, on a face with many tight rows, projects onto itself.

    Such points are exact projections (here by BVLS), e.g. the optimum of an earlier β. On some of these
    seeds scipy's Lawson–Hanson NNLS returns a non-optimal μ whose d = w + Gᵀμ leaves the cone and is
    longer than w; `project_cone` must detect that and still return w.
    """
    from scipy.optimize import lsq_linear

    for seed in range(100):
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((200, 19))
        U = np.linalg.qr(np.hstack([X - X.mean(0), np.ones((200, 1))]))[0]
        G = (2.0 * (U @ rng.standard_normal(20) >= 0)[:, None] - 1.0) * U
        v = rng.standard_normal(20)
        w = v + G.T @ lsq_linear(G.T, -v, bounds=(0.0, np.inf), method="bvls").x
        if np.linalg.norm(w) < 1e-9 * np.linalg.norm(v):
            continue  # v lies in the polar cone: its projection is the apex
        d, mu = project_cone(G, w)
        assert np.linalg.norm(d - w) <= 1e-9 * np.linalg.norm(w), seed
        assert (G @ d).min() >= -1e-12 * np.linalg.norm(w), seed
        assert (mu >= 0).all()


def rough_point(U: np.ndarray, Y: np.ndarray, beta: float, M: np.ndarray, iters: int):
    """Blocks W (q, 2, P) and multipliers (n, 2, P) of class 0 after `iters` ADMM iterations without polish."""
    rough = solve_c2_fast(U, Y, beta, M, max_iter=iters, polish=False)
    return np.stack([rough.u[..., 0], rough.up[..., 0]], 0).transpose(2, 0, 1), rough.extra["multipliers"][..., 0]


def test_active_set_polish_from_rough_admm_point():
    """The active-set polish turns a rough ADMM point into an exactly feasible, certified optimum."""
    U, Y, M, _ = instance(60, 3, 20, seed=13)
    beta = 0.2
    W, mu0 = rough_point(U, Y, beta, M, 40)
    res = active_set_polish(U, M, Y[:, 0], beta, W, mu0=mu0)
    assert res is not None
    Wp, pp = res
    obj, viol = c2_primal(U, Y, beta, M, Wp[:, 0].T[..., None], Wp[:, 1].T[..., None])
    assert viol <= 1e-12
    p_star = oracle_c2(U, Y, beta, M)
    assert abs(obj - p_star) <= 1e-7 * abs(p_star)
    op = C2Operator(U, M, Y, beta, torch.float64, torch.device("cpu"))
    cert = certificate(op, torch.as_tensor(Wp[..., None]), torch.as_tensor(pp[..., None]), 1e-9, nnls_iters=0)
    assert cert["gap"] <= 1e-9  # the returned multipliers certify optimality without further NNLS
    assert cert["dual"] <= p_star * (1 + 1e-9)


def test_polish_at_small_beta_adds_many_rows_per_round_and_matches_the_oracle():
    """At 0.01·β_max most neurons end on edges of their cones; the polish finds those rows many per round.

    A search that reaches one row per round needs at least as many rounds as rows added; fewer rounds
    than rows is the property, and the optimum must still be exact.
    """
    U, Y, M, _ = instance(200, 6, 30, seed=3)
    beta = 0.01 * beta_max(U, Y, M)
    W, mu0 = rough_point(U, Y, beta, M, 30)
    trace: list = []
    res = active_set_polish(U, M, Y[:, 0], beta, W, mu0=mu0, trace=trace)
    assert res is not None
    rounds = sum(1 for x in trace if isinstance(x[0], float))
    added = sum(1 for x in trace if x[0] == "add")
    assert added > 100  # a small-β instance: many tight rows to find
    assert rounds < added
    obj, viol = c2_primal(U, Y, beta, M, res[0][:, 0].T[..., None], res[0][:, 1].T[..., None])
    assert viol <= 1e-12
    p_star = oracle_c2(U, Y, beta, M)
    assert abs(obj - p_star) <= 1e-7 * abs(p_star)


def crossing_step():
    """One block at a projected point and a direction crossing one of its tight rows → (prob, st, ns, w, μ, row)."""
    from convexbn.solver.polish import FaceProblem, FaceState, NewtonStep, face_value

    U, Y, M, _ = instance(40, 3, 6, seed=5)
    prob = FaceProblem(Ut=U, masks=M, y=Y[:, 0], beta=0.1, top=1.0)
    b = (0, 0)
    w, mu = project_cone(prob.G[b], np.ones(U.shape[1]), prob.rown)
    j = int(np.argmax(mu))
    st = FaceState(blocks=[b], w={b: w}, act={b: np.zeros(0, dtype=int)})
    st.fval, st.r = face_value(prob, st.blocks, st.w)
    q = U.shape[1]
    D = -prob.G[b][j] / np.linalg.norm(prob.G[b][j])  # crosses row j
    ns = NewtonStep(dz=np.zeros(q), grad=np.zeros(q), dec=0.0, offs=np.array([0, q]), D={b: D})
    return prob, st, ns, w, mu, j


def test_bent_search_adds_a_tight_row_the_direction_crosses_without_moving():
    """A row at distance 0 outside the working set gives α_b = 0: it joins at once and the point stays put."""
    from convexbn.solver.polish import bent_search, ratio_test

    prob, st, ns, w, mu, j = crossing_step()
    b = st.blocks[0]
    assert mu[j] > 0 and abs(prob.G[b][j] @ w) <= 1e-12  # a tight row of the projected point
    alpha, hit = ratio_test(prob, st, ns.D)
    assert alpha[b] == 0.0
    assert bent_search(prob, st, ns, alpha, hit) == [b]
    assert hit[b] in st.act[b]
    np.testing.assert_array_equal(st.w[b], w)


def test_bent_search_keeps_a_block_still_instead_of_re_adding_a_row_it_just_released():
    """A row released since f last decreased does not rejoin at distance 0: its block stays put (no cycling)."""
    from convexbn.solver.polish import bent_search, ratio_test

    prob, st, ns, w, _, _ = crossing_step()
    b = st.blocks[0]
    alpha, hit = ratio_test(prob, st, ns.D)
    assert alpha[b] == 0.0  # a tight row the direction crosses: without the release it would join at once
    st.released.add((b, hit[b]))
    assert bent_search(prob, st, ns, alpha, hit) == []
    assert hit[b] not in st.act[b]
    np.testing.assert_array_equal(st.w[b], w)


def test_block_path_slides_along_every_row_it_meets_and_stays_in_the_cone():
    """The projected path of a block: feasible at every s, tight on each row it passed, stops at max_bends."""
    from convexbn.solver.bends import block_paths, segment_lengths, shrunk_face
    from convexbn.solver.polish import FaceProblem

    U, Y, M, _ = instance(60, 8, 8, seed=7)
    prob = FaceProblem(Ut=U, masks=M, y=Y[:, 0], beta=0.1, top=1.0)
    b = (0, 1)
    G = prob.G[b]
    q = U.shape[1]
    w, _ = project_cone(G, np.ones(q), prob.rown)
    w = w + 0.5 * project_cone(G, np.linspace(1.0, -1.0, q), prob.rown)[0]  # an interior point of the cone
    d = -0.9 * w + 0.5 * np.linalg.norm(w) * np.sin(np.arange(q))  # towards the apex: crosses many rows
    tol = 1e-10 * np.linalg.norm(w)
    S = np.stack([2.0 * M[:, 1] - 1.0, 2.0 * M[:, 2] - 1.0], 1)  # block b and a second, still block
    none = [np.zeros(0, dtype=int)] * 2
    paths = block_paths(U, S, [np.eye(q)] * 2, np.stack([w, w], 1), np.stack([d, 0 * d], 1), none, prob.rown, 64)
    path, still = paths.path(0), paths.path(1)
    assert still.breaks == [] and still.dirs.shape == (q, 0)
    assert len(path.breaks) >= 2  # several rows in one step, where stopping at the first row gives one
    assert np.all(np.diff(path.starts) >= 0) and path.starts[0] == 0.0
    for s_row, row in path.breaks:
        at = w + path.dirs @ segment_lengths(path.starts, path.lens, s_row)
        assert abs(G[row] @ at) <= tol * prob.rown[row]  # the row is tight where it joins
    for s in np.linspace(0.0, 1.0, 41):
        ws = w + path.dirs @ segment_lengths(path.starts, path.lens, s)
        assert (G @ ws).min() >= -tol  # inside the cone all along
        for s_row, row in path.breaks:
            if s_row <= s:  # a row once passed stays tight: the path slides along it
                assert abs(G[row] @ ws) <= tol * prob.rown[row]
    stopped = block_paths(U, S[:, :1], [np.eye(q)], w[:, None], d[:, None], none[:1], prob.rown, max_bends=1)
    first = stopped.path(0)
    assert [r for _, r in first.breaks] == [path.breaks[0][1]]  # max_bends = 1 stops at the first row
    assert first.starts[-1] + first.lens[-1] == path.breaks[0][0]
    assert np.abs(G[path.breaks[0][1]] @ shrunk_face(np.eye(q), stopped.removed[0][:, :1])).max() <= 1e-10
    m = 2  # the face once the first m rows joined: orthonormal, on those rows, holding the later segments
    N = np.eye(q) @ shrunk_face(np.eye(q), paths.removed[0][:, :m])
    rows = [r for _, r in path.breaks[:m]]
    assert N.shape == (q, q - m) and np.allclose(N.T @ N, np.eye(q - m))
    assert np.abs(G[rows] @ N).max() <= 1e-10
    later = path.dirs[:, m:]
    assert np.allclose(N @ (N.T @ later), later)


def test_a_partial_pricing_stops_after_patience_misses_and_finds_a_subset_of_the_entering_blocks(monkeypatch):
    """`price_zero_blocks(..., patience=k)` projects in decreasing order of the bound and stops after k blocks in a row
    stay out; its entering blocks are among those of the full pricing, which projects every candidate."""
    import convexbn.solver.polish as polish_mod
    from convexbn.solver.polish import FaceProblem, FaceState, price_zero_blocks

    U, Y, M, _ = instance(120, 4, 40, seed=7)
    beta = 0.8 * beta_max(U, Y[:, :1], M)
    calls: list[int] = []
    inner = polish_mod.project_cone

    def counted(*args, **kw):
        calls.append(1)
        return inner(*args, **kw)

    monkeypatch.setattr(polish_mod, "project_cone", counted)
    runs = {}
    for patience in (None, 2):
        prob = FaceProblem(Ut=U, masks=M, y=Y[:, 0], beta=beta, top=1.0)
        st = FaceState(blocks=[], w={}, act={}, r=-Y[:, 0].copy())
        calls.clear()
        entering, _, _ = price_zero_blocks(prob, st, None, 0, 1e-9, None, patience)
        runs[patience] = ({b for b, _, _ in entering}, len(calls))
    (full, n_full), (part, n_part) = runs[None], runs[2]
    assert full and n_full > len(full) + 2  # candidates that stay out: the μ = 0 bound is loose
    assert part <= full and part
    assert n_part < n_full, (n_full, n_part, len(full), len(part))


def test_leaving_rows_releases_every_row_the_projected_descent_direction_leaves():
    """Rows with G_j d > 0 for d = Π_tangent(−g) leave together; rows the direction stays on are kept."""
    from convexbn.solver.polish import leaving_rows

    GA = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    g = np.array([-1.0, -2.0, 3.0])  # −g points into rows 0, 1 (and their sum, row 3) and out of row 2
    mu_ls = np.linalg.lstsq(GA.T, g, rcond=None)[0]
    out = leaving_rows(GA, g, mu_ls)
    assert sorted(out.tolist()) == [0, 1, 3]
    assert leaving_rows(GA[2:3], np.array([0.0, 0.0, 1.0]), np.array([1.0])).tolist() == [0]  # fallback: argmin


def test_a_polish_that_stops_descending_gives_up_after_the_stall_rounds(monkeypatch):
    """Rounds that no longer lower the objective end the polish (None) after STALL_ROUNDS, long before its round cap."""
    import convexbn.solver.polish as polish_mod

    U, Y, M, _ = instance(60, 3, 20, seed=13)
    W, _ = rough_point(U, Y, 0.2, M, 40)
    steps = []

    def no_progress(prob, st, ns, trace):
        steps.append(1)
        return "continue"

    monkeypatch.setattr(polish_mod, "STALL_ROUNDS", 7)
    monkeypatch.setattr(polish_mod, "face_step", no_progress)
    assert active_set_polish(U, M, Y[:, 0], 0.2, W, rounds=10_000) is None
    assert len(steps) == 6


def test_a_newton_step_blocked_by_a_released_row_gives_way_to_steepest_descent():
    """A row released at the current f may not rejoin at distance 0; when that blocks the Newton step, the
    polish takes a steepest-descent round (which leaves the row) instead of repeating the blocked step.

    On this instance (Gaussian n × 50, noisy-sine targets, β = 1, 60 ADMM iterations) the blocked step
    repeated itself until the stall rule gave up after 500 rounds and the solve fell back to ADMM; two
    polishes from different ADMM points must now both finish in a few dozen rounds and agree.
    """
    rng = np.random.default_rng(101)
    X = rng.standard_normal((1000, 50))
    y = np.sin(X @ rng.standard_normal(50) / np.sqrt(50)) + 0.3 * rng.standard_normal(1000)
    U = whiten(X).features(X)
    M = sample_arrangements(U, 100, seed=101).masks
    values = []
    for iters in (60, 100):
        W, mu0 = rough_point(U, y[:, None], 1.0, M, iters)
        trace: list = []
        res = active_set_polish(U, M, y, 1.0, W, mu0=mu0, trace=trace)
        assert res is not None, iters
        assert sum(1 for x in trace if isinstance(x[0], float)) < 200
        obj, viol = c2_primal(U, y[:, None], 1.0, M, res[0][:, 0].T[..., None], res[0][:, 1].T[..., None])
        assert viol <= 1e-12
        op = C2Operator(U, M, y[:, None], 1.0, torch.float64, torch.device("cpu"))
        Wt, pt = torch.as_tensor(res[0][..., None]), torch.as_tensor(res[1][..., None])
        cert = certificate(op, Wt, pt, 1e-9, nnls_iters=0)
        assert cert["gap"] <= 1e-8  # certified by the returned multipliers alone
        values.append(obj)
    assert values[0] == pytest.approx(values[1], rel=1e-9)


def test_conic_fallback_polish_matches_oracle():
    """The fallback polish (direct Clarabel restricted solve + face Newton) reaches the optimum."""
    U, Y, M, _ = instance(40, 3, 12, seed=14)
    beta = 0.2
    W, _ = rough_point(U, Y, beta, M, 300)
    res = polish_conic(U, M, Y[:, 0], beta, W, extra_rows=4)
    assert res is not None
    obj, viol = c2_primal(U, Y, beta, M, res[0][:, 0].T[..., None], res[0][:, 1].T[..., None])
    assert viol <= 1e-12
    assert abs(obj - oracle_c2(U, Y, beta, M)) <= 1e-6 * obj


def test_vstep_with_precomputed_offsets_and_float32():
    """The v-step gives the same result with the cached 0/−∞ mask offsets and (to fp32 accuracy) in float32."""
    n, P, C, rho = 50, 9, 1, 3.0
    M, Y4, A = _vstep_inputs(21, n, P, C)
    e0 = torch.zeros(n, 1, 1, C, dtype=torch.float64)
    V, e = vstep(M, Y4, A, e0, rho)
    off = torch.zeros_like(M).masked_fill_(M == 0, -np.inf)
    V2, e2 = vstep(M, Y4, A, e0, rho, off=off)
    assert torch.equal(V, V2) and torch.equal(e, e2)
    V32, _ = vstep(M.float(), Y4.float(), A.float(), e0.float(), rho, off=off.float())
    assert V32.dtype == torch.float32
    assert torch.allclose(V32.double(), V, atol=1e-5)


def test_null_basis_qr_and_lstsq_helpers():
    """The QR null-space basis is orthonormal and annihilates G_A, also for dependent rows; gelsy solves LS."""
    rng = np.random.default_rng(22)
    G = rng.standard_normal((4, 9))
    G = np.vstack([G, G[0] + 2 * G[1]])  # a dependent row: rank 4, null space of dimension 5
    N = null_basis_qr(G)
    assert N.shape == (9, 5)
    assert np.allclose(N.T @ N, np.eye(5), atol=1e-12)
    assert np.abs(G @ N).max() <= 1e-12
    A = rng.standard_normal((9, 4))
    b = rng.standard_normal(9)
    assert np.allclose(lstsq(A, b), np.linalg.lstsq(A, b, rcond=None)[0], atol=1e-12)


def test_dual_pg_gives_valid_and_better_bounds():
    """Batched pricing multipliers stay ≥ 0, their bounds are the true norms and never worse than the start."""
    U, Y, M, _ = instance(80, 4, 10, seed=23)
    n, q = U.shape
    P = M.shape[1]
    lam = np.random.default_rng(23).standard_normal(n)
    mu0 = np.zeros((n, 2, P))
    mu, bound = dual_pg(U, M, lam, mu0, iters=15)
    assert (mu >= 0).all()
    S = 2.0 * M - 1.0
    for s, sg in enumerate((1.0, -1.0)):
        for i in range(P):
            true = np.linalg.norm(U.T @ (sg * M[:, i] * lam + S[:, i] * mu[:, s, i]))
            assert true == pytest.approx(bound[s, i], rel=1e-10)
            assert true <= np.linalg.norm(U.T @ (sg * M[:, i] * lam)) * (1 + 1e-12)
    assert (bound < np.linalg.norm(U.T @ (M * lam[:, None]), axis=0)[None]).any()  # it does improve


def test_fit_hessian_update_matches_rebuild():
    """The Householder-updated face Hessian Tᵀ H T equals a fresh (FN)ᵀ(FN) after rows are added."""
    U, _, M, _ = instance(70, 5, 4, seed=24)
    q = U.shape[1]
    blocks = [(0, 0), (1, 2), (0, 3)]
    S = 2.0 * M - 1.0
    Fs = np.stack([(1.0 if s == 0 else -1.0) * M[:, i] for s, i in blocks], 1)
    nullb = {b: null_basis_qr((S[:3, b[1] : b[1] + 1] * U[:3])) for b in blocks}
    cache: dict = {}
    trans: dict = {}
    fresh: set = set(blocks)
    Ns = [nullb[b] for b in blocks]
    fit_hessian(U, Ns, Fs, [N.shape[1] for N in Ns], blocks, cache, trans, fresh)
    for b, row in zip(blocks[:2], (10, 20)):  # two blocks gain a row, the third keeps its face
        shrink_basis(nullb, b, S[row, b[1]] * U[row], trans)
    Ns = [nullb[b] for b in blocks]
    dims = [N.shape[1] for N in Ns]
    H_upd = fit_hessian(U, Ns, Fs, dims, blocks, cache, trans, set())
    FN = (U @ np.hstack(Ns)) * np.repeat(Fs, dims, axis=1)
    assert dims == [q - 4, q - 4, q - 3]
    assert np.allclose(H_upd, FN.T @ FN, atol=1e-11)
    assert not trans


def test_newton_low_rank_solves_the_face_newton_system():
    """Woodbury through the n × n capacitance matrix solves VᵀV + blockdiag(c_j(I − v_j v_jᵀ)) with singular blocks."""
    rng = np.random.default_rng(31)
    n, dims = 40, [25, 30, 1, 18]
    V = rng.standard_normal((n, sum(dims)))
    c = rng.uniform(0.05, 5.0, len(dims))
    v = [x / np.linalg.norm(x) for x in (rng.standard_normal(d) for d in dims)]  # unit: each block singular alone
    H = V.T @ V
    offs = np.cumsum([0] + dims)
    for j, d in enumerate(dims):
        H[offs[j] : offs[j + 1], offs[j] : offs[j + 1]] += c[j] * (np.eye(d) - np.outer(v[j], v[j]))
    g = rng.standard_normal(sum(dims))
    x = newton_low_rank(V, c, v, dims, g)
    assert np.linalg.norm(H @ x - g) <= 1e-9 * np.linalg.norm(g)
    assert low_rank_cheaper(n, 4 * n) and not low_rank_cheaper(n, n)


def test_polish_with_face_dimension_far_above_n_takes_the_low_rank_step_and_matches_the_oracle(monkeypatch):
    """Many blocks with wide faces on few samples (dim ≫ n): Newton by Woodbury, and the optimum is still exact."""
    import convexbn.solver.polish as polish_mod

    calls = {"low": 0}
    inner = polish_mod.newton_low_rank

    def counted(*args):  # type: ignore[no-untyped-def]
        """The low-rank Newton solve, counted."""
        calls["low"] += 1
        return inner(*args)

    monkeypatch.setattr(polish_mod, "newton_low_rank", counted)
    U, Y, M, _ = instance(50, 12, 60, seed=8)
    beta = 0.01 * beta_max(U, Y, M)
    W, mu0 = rough_point(U, Y, beta, M, 20)
    trace: list = []
    res = active_set_polish(U, M, Y[:, 0], beta, W, mu0=mu0, trace=trace)
    assert res is not None and calls["low"] >= 1
    assert max(x[2] for x in trace if isinstance(x[0], float)) > U.shape[0]  # more blocks than samples: H singular
    obj, viol = c2_primal(U, Y, beta, M, res[0][:, 0].T[..., None], res[0][:, 1].T[..., None])
    assert viol <= 1e-12
    p_star = oracle_c2(U, Y, beta, M)
    assert abs(obj - p_star) <= 1e-7 * abs(p_star)


def test_float64_solve_runs_admm_in_float32_then_upcasts_if_polish_fails(monkeypatch):
    """ADMM runs in float32 before a float64 polish; if polishing fails it continues in float64."""
    U, Y, M, _ = instance(60, 3, 12, seed=25)
    sol = solve_c2_fast(U, Y, 0.3, M)
    assert sol.status == "optimal" and sol.dtype == "float64"
    assert sol.extra["admm_dtype"] == "float32"
    assert sol.cone_violation <= 1e-12
    monkeypatch.setattr(admm_mod, "active_set_polish", lambda *a, **k: None)
    monkeypatch.setattr(admm_mod, "polish_conic", lambda *a, **k: None)
    sol2 = solve_c2_fast(U, Y, 0.3, M, max_iter=400)
    assert sol2.extra["admm_dtype"] == "float64"
    assert sol2.iterations == 400 and sol2.status == "max_iter"
    # ADMM kept converging in float64: nearly feasible, objective close; a gap only when feasible
    assert sol2.cone_violation < 1e-3
    assert abs(sol2.objective - sol.objective) <= 1e-3 * sol.objective
    assert np.isnan(sol2.gap) if sol2.cone_violation > 1e-9 else 0 <= sol2.gap < 1e-3


def test_working_set_matches_cvxpy_and_dense():
    """Column generation on pattern subsets reaches the same certified optimum as the dense solver and CVXPY."""
    U, Y, M, _ = instance(40, 3, 30, C=2, seed=31)
    beta = 0.15
    p_star = oracle_c2(U, Y, beta, M)
    ws = solve_c2_fast(U, Y, beta, M, tol=1e-8, working_set=True)
    assert ws.extra["mode"] == "working_set"
    assert_certified(ws, U, Y, beta, M, p_star)
    dense = solve_c2_fast(U, Y, beta, M, tol=1e-8, working_set=False)
    assert ws.objective == pytest.approx(dense.objective, rel=1e-7)


def test_working_set_grows_from_a_small_start():
    """Started from 2 patterns per class it must add the violating ones until pricing finds none."""
    U, Y, M, _ = instance(40, 3, 30, C=1, seed=32)
    beta = 0.1
    sol = solve_working_set(U, Y, beta, M, tol=1e-8, initial=2, add=3)
    sizes = [h["patterns"] for h in sol.history]
    assert sizes[0] == 2 and sizes[-1] > 2 and sol.history[-1]["entering"] == 0
    assert_certified(sol, U, Y, beta, M, oracle_c2(U, Y, beta, M))


def test_working_set_stopped_early_is_honest():
    """A working-set solve stopped by max_iter reports its status and a gap that bounds the true one."""
    U, Y, M, _ = instance(40, 3, 30, C=2, seed=33)
    p_star = oracle_c2(U, Y, 0.1, M)
    sol = solve_c2_fast(U, Y, 0.1, M, tol=1e-8, max_iter=3, working_set=True)
    assert sol.status == "max_iter"
    assert sol.dual <= p_star * (1 + 1e-9)
    assert np.isnan(sol.gap) == (sol.cone_violation > 1e-9)
    if not np.isnan(sol.gap):
        assert sol.gap > 1e-8
        assert (sol.objective - p_star) / sol.objective <= sol.gap + 1e-12


def test_price_patterns_bounds_are_valid_and_exact_where_needed():
    """Bounds never undercut the exact cone-projection norm; blocks above β get the exact value."""
    U, Y, M, _ = instance(60, 3, 20, seed=34)
    assert M.shape[1] > 6
    lam = np.random.default_rng(34).standard_normal(U.shape[0])
    beta = 0.5 * float(np.linalg.norm(U.T @ (M * lam[:, None]), axis=0).mean())
    bound = price_patterns(U, M, lam, beta, skip=np.array([0, 5]), tol=1e-8, chunk=7)
    assert np.isnan(bound[:, [0, 5]]).all()
    for s, sg in enumerate((1.0, -1.0)):
        for i in set(range(M.shape[1])) - {0, 5}:
            G = (2.0 * M[:, i : i + 1] - 1.0) * U
            d, _ = project_cone(G, sg * U.T @ (M[:, i] * lam), first=U.shape[0])
            exact = float(np.linalg.norm(d))
            assert bound[s, i] >= exact * (1 - 1e-9) - 1e-12
            if bound[s, i] > beta * (1 + 1e-8):
                assert bound[s, i] == pytest.approx(exact, rel=1e-8)


def test_many_patterns_switch_to_working_set():
    U, Y, M, _ = instance(400, 2, WORKING_SET_PATTERNS + 40, seed=35)
    assert M.shape[1] > WORKING_SET_PATTERNS
    sol = solve_c2_fast(U, Y, 0.5, M, tol=1e-6)
    assert sol.extra.get("mode") == "working_set"
    assert sol.status == "optimal"


def test_working_set_stopped_after_a_certified_round_keeps_a_finite_gap(monkeypatch):
    """When a later round stops early, the class falls back to the last certified feasible point."""
    U, Y, M, _ = instance(40, 3, 30, C=1, seed=32)
    p_star = oracle_c2(U, Y, 0.1, M)
    real = ws_mod.solve_dense
    calls = []

    def second_round_stops(*a, **k):
        calls.append(1)
        if len(calls) >= 2:
            k.update(max_iter=1, polish=False)
        return real(*a, **k)

    monkeypatch.setattr(ws_mod, "solve_dense", second_round_stops)
    sol = solve_working_set(U, Y, 0.1, M, tol=1e-8, initial=2, add=3)
    assert len(calls) == 2 and sol.status == "max_iter"
    assert sol.cone_violation <= 1e-9 and np.isfinite(sol.gap) and sol.gap > 1e-8
    assert sol.dual <= p_star * (1 + 1e-9) <= sol.objective * (1 + 1e-9)
    assert (sol.objective - p_star) / sol.objective <= sol.gap + 1e-12


def test_class_slots_split_a_budget_evenly_per_round_of_workers():
    """Under a budget each class first gets an equal slice (per round of workers side by side); no budget, no slices."""
    assert ws_mod.class_slots(120.0, 4, 1) == pytest.approx([30.0, 60.0, 90.0, 120.0])
    assert ws_mod.class_slots(120.0, 5, 2) == pytest.approx([40.0, 40.0, 80.0, 80.0, 120.0])
    assert ws_mod.class_slots(None, 3, 1) == [None, None, None]
    assert ws_mod.class_slots(120.0, 3, 8) == pytest.approx([120.0] * 3)  # more workers than classes: one round


def test_a_pool_starts_the_largest_working_sets_first_and_gives_the_same_classes():
    """On a pool the classes start in decreasing working-set size; each class's result is the one solved in turn."""
    from concurrent.futures import ThreadPoolExecutor

    U, Y, M, _ = instance(40, 3, 30, C=3, seed=37)
    sets = [np.arange(4), np.arange(12), np.arange(8)]

    class Recording(ThreadPoolExecutor):
        """A thread pool that records the class of every job it is given."""

        started: list[int] = []

        def submit(self, fn, *args, **kwargs):  # type: ignore[override]
            self.started.append(args[7])  # _class_job(Ut, y, beta, masks, A, warm, opt, c, wall_t0)
            return super().submit(fn, *args, **kwargs)

    with Recording(max_workers=1) as pool:
        pooled = ws_mod.solve_working_set(U, Y, 0.1, M, tol=1e-8, start_sets=sets, pool=pool, workers=2)
    assert Recording.started == [1, 2, 0]
    alone = ws_mod.solve_working_set(U, Y, 0.1, M, tol=1e-8, start_sets=sets)
    assert pooled.status == alone.status == "optimal"
    assert np.allclose(pooled.u, alone.u) and np.allclose(pooled.up, alone.up)
    assert [h["class"] for h in pooled.history] == sorted(h["class"] for h in pooled.history)


def test_a_class_out_of_time_in_its_slice_resumes_with_the_rest_of_the_budget(monkeypatch):
    """Class 0 stopped in its first slice gets the time the point has left, warm-started, and is certified."""
    U, Y, M, _ = instance(40, 3, 30, C=2, seed=36)
    real = ws_mod.solve_dense
    calls = []

    def first_solve_runs_out(Ut, y, beta, masks, **k):
        calls.append((0 if np.allclose(y[:, 0], Y[:, 0]) else 1, k))
        if len(calls) == 1:
            out = real(Ut, y, beta, masks, **{**k, "max_iter": 1, "polish": False})
            out.status = "time_limit"
            return out
        return real(Ut, y, beta, masks, **k)

    monkeypatch.setattr(ws_mod, "solve_dense", first_solve_runs_out)
    sol = solve_working_set(U, Y, 0.1, M, tol=1e-8, max_seconds=600.0)
    budgets = [k["max_seconds"] for _, k in calls]
    assert calls[0][0] == 0 and budgets[0] <= 300.0  # class 0's first slice: half of the budget
    assert calls[-1][0] == 0 and budgets[-1] > 300.0  # class 0 again, with what is left of all 600 s
    assert calls[-1][1]["warm_start"] is not None
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(oracle_c2(U, Y, 0.1, M), rel=1e-6)


def test_polish_too_large_for_memory_is_skipped_not_killed(monkeypatch):
    """Above POLISH_MAX_BYTES the polish declines (None) and ADMM goes on: a budget status, no crash."""
    U, Y, M, _ = instance(60, 3, 12, seed=25)
    assert polish_bytes(60, 4) > 0
    monkeypatch.setattr(state_mod, "POLISH_MAX_BYTES", 1.0)
    W = np.random.default_rng(0).standard_normal((U.shape[1], 2, M.shape[1]))
    assert active_set_polish(U, M, Y[:, 0], 0.3, W) is None
    sol = solve_c2_fast(U, Y, 0.3, M, max_iter=200)
    assert sol.status == "max_iter" and sol.extra["polish_attempts"] >= 1
    assert sol.cone_violation < 1e-2
