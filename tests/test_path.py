"""Regularisation paths of (C2): β_max, screening, certified warm-started points and `convexbn path`."""

from __future__ import annotations

import json

import cvxpy as cp
import numpy as np
import pytest

from convexbn import cli
from convexbn.arrangements import sample_arrangements
from convexbn.solver import beta_max, c2_primal, project_cone, safe_screen, solve_c2_fast, solve_path
from convexbn.whitening import whiten

ORACLE_OPTS = {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def instance(n: int, d: int, P: int, C: int, seed: int):
    """Random whitened data U', targets Y (n, C) and sampled arrangement masks."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((n, C))
    U = whiten(X).features(X)
    return U, Y, sample_arrangements(U, P, seed=seed).masks


def oracle(U: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(optimum, u, up) of (C2), decoupled per class, by CVXPY + Clarabel at tight tolerances."""
    q, P = U.shape[1], masks.shape[1]
    Mf = masks.astype(float)
    S = 2.0 * Mf - 1.0
    total, us, ups = 0.0, [], []
    for c in range(Y.shape[1]):
        u, up = cp.Variable((q, P)), cp.Variable((q, P))
        f = cp.sum(cp.multiply(Mf, U @ (u - up)), axis=1)
        obj = 0.5 * cp.sum_squares(f - Y[:, c]) + beta * (cp.sum(cp.norm(u, axis=0)) + cp.sum(cp.norm(up, axis=0)))
        prob = cp.Problem(cp.Minimize(obj), [cp.multiply(S, U @ u) >= 0, cp.multiply(S, U @ up) >= 0])
        prob.solve(solver="CLARABEL", **ORACLE_OPTS)
        total += float(prob.value)
        us.append(u.value.T)
        ups.append(up.value.T)
    return total, np.stack(us, 2), np.stack(ups, 2)


def dual_values(U: np.ndarray, masks: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Exact min_{μ ≥ 0} ‖U'ᵀ(σ D_i λ + S_i μ)‖ for every block of one class (2, P), by cone projection."""
    out = np.zeros((2, masks.shape[1]))
    for i in range(masks.shape[1]):
        G = (2.0 * masks[:, i : i + 1] - 1.0) * U
        for s, sg in enumerate((1.0, -1.0)):
            d, _ = project_cone(G, sg * U.T @ (masks[:, i] * lam), first=U.shape[0])
            out[s, i] = np.linalg.norm(d)
    return out


def test_beta_max_is_where_the_zero_network_stops_being_optimal():
    U, Y, M = instance(40, 3, 16, C=2, seed=1)
    bmax = beta_max(U, Y, M)
    assert bmax <= beta_max(U, Y, M, exact=False) * (1 + 1e-12)  # μ = 0 gives an upper bound
    exact = max(dual_values(U, M, Y[:, c]).max() for c in range(2))
    assert bmax == pytest.approx(exact, rel=1e-9)
    zero = 0.5 * float((Y * Y).sum())
    assert oracle(U, Y, 1.001 * bmax, M)[0] == pytest.approx(zero, rel=1e-7)
    assert oracle(U, Y, 0.97 * bmax, M)[0] < zero * (1 - 1e-6)


def test_path_certificates_match_cvxpy_and_cold_solves():
    U, Y, M = instance(50, 3, 20, C=2, seed=2)
    bmax = beta_max(U, Y, M)
    ratios = [1.5, 0.6, 0.2, 0.05, 0.01]
    path = solve_path(U, Y, [r * bmax for r in ratios], M, tol=1e-8)
    assert len(path) == len(ratios)
    assert path[0].extra["mode"] == "zero" and path[0].neurons == 0 and path[0].gap == 0.0
    for r, sol in zip(ratios, path):
        beta = r * bmax
        p_star = oracle(U, Y, beta, M)[0]
        assert sol.status == "optimal" and sol.gap <= 1e-8 and sol.cone_violation <= 1e-9
        obj, viol = c2_primal(U, Y, beta, M, sol.u, sol.up)
        assert obj == pytest.approx(sol.objective, rel=1e-12) and viol <= 1e-9
        assert abs(sol.objective - p_star) <= 1e-6 * p_star
        assert sol.dual <= p_star * (1 + 1e-8)  # a true lower bound
        assert sol.extra["beta"] == beta and sol.extra["beta_max"] == bmax
        cold = solve_c2_fast(U, Y, beta, M, tol=1e-8)
        assert sol.objective == pytest.approx(cold.objective, rel=1e-7)


def test_screened_out_patterns_satisfy_their_dual_constraints_at_the_end():
    """Every pattern outside a class's final working set is dual feasible at the returned residual (KKT check)."""
    U, Y, M = instance(60, 3, 30, C=1, seed=3)
    bmax = beta_max(U, Y, M)
    betas = [0.8 * bmax, 0.6 * bmax, 0.45 * bmax]  # short steps: the strong rule 2β − β_prev leaves patterns out
    path = solve_path(U, Y, betas, M, tol=1e-9)
    left_out = 0
    for beta, sol in zip(betas, path):
        kept = sol.extra["patterns"][0]
        out = np.setdiff1d(np.arange(M.shape[1]), kept)
        left_out += len(out)
        f = (M * (U @ (sol.u[:, :, 0] - sol.up[:, :, 0]).T)).sum(1)
        vals = dual_values(U, M, Y[:, 0] - f)
        assert (vals[:, out] <= beta * (1 + 1e-7)).all()
        assert sol.status == "optimal"
        assert sol.objective == pytest.approx(oracle(U, Y, beta, M)[0], rel=1e-6)
    assert sum(s.extra["screening"][0]["strong"] for s in path[1:]) > 0  # the rule did leave blocks out
    assert left_out > 0


def test_safe_rule_never_drops_a_block_the_optimum_uses():
    """Blocks the gap-safe rule discards at β (from the solution at a larger β) are zero at the optimum at β."""
    U, Y, M = instance(60, 3, 30, C=1, seed=4)
    bmax = beta_max(U, Y, M)
    prev = solve_c2_fast(U, Y, 0.7 * bmax, M, tol=1e-10)
    beta = 0.65 * bmax
    f = (M * (U @ (prev.u[:, :, 0] - prev.up[:, :, 0]).T)).sum(1)
    lam = Y[:, 0] - f
    primal = 0.5 * float(lam @ lam) + beta * float(
        np.linalg.norm(prev.u, axis=1).sum() + np.linalg.norm(prev.up, axis=1).sum()
    )
    dropped = safe_screen(U, M, lam, Y[:, 0], beta, primal)
    assert dropped.sum() > 0  # the test would be empty otherwise
    sol = solve_c2_fast(U, Y, beta, M, tol=1e-10)
    _, u_or, up_or = oracle(U, Y, beta, M)
    top = max(np.linalg.norm(sol.u, axis=1).max(), np.linalg.norm(sol.up, axis=1).max())
    for blocks, orc, s in ((sol.u, u_or, 0), (sol.up, up_or, 1)):
        assert (np.linalg.norm(blocks[:, :, 0], axis=1)[dropped[s]] <= 1e-9 * top).all()
        assert (np.linalg.norm(orc[:, :, 0], axis=1)[dropped[s]] <= 1e-6 * top).all()


def test_classes_in_worker_processes_give_the_same_path():
    """Classes are independent programs: solving them in two processes changes no point of the path."""
    U, Y, M = instance(60, 3, 24, C=3, seed=8)
    bmax = beta_max(U, Y, M)
    betas = [r * bmax for r in (0.5, 0.1, 0.02)]
    one = solve_path(U, Y, betas, M, tol=1e-8)
    two = solve_path(U, Y, betas, M, tol=1e-8, workers=2)
    for a, b in zip(one, two):
        assert b.status == a.status == "optimal"
        assert b.objective == a.objective and b.gap == a.gap
        np.testing.assert_array_equal(b.u, a.u)
        np.testing.assert_array_equal(b.up, a.up)
    ws = solve_c2_fast(U, Y, betas[-1], M, tol=1e-8, working_set=True, workers=3)
    assert ws.status == "optimal" and ws.objective == pytest.approx(two[-1].objective, rel=1e-6)


def test_worker_processes_keep_the_points_time_budget():
    """A budget spent before the classes start stops every class, whether they run in one process or two."""
    U, Y, M = instance(60, 3, 24, C=3, seed=8)
    bmax = beta_max(U, Y, M)
    for workers in (1, 2):
        sols = solve_path(U, Y, [0.05 * bmax], M, tol=1e-8, max_seconds=1e-9, workers=workers)
        assert sols[0].status == "time_limit"


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_workers_must_be_a_positive_integer(workers):
    U, Y, M = instance(20, 2, 6, C=2, seed=5)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        solve_path(U, Y, [0.1], M, workers=workers)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        solve_c2_fast(U, Y, 0.1, M, workers=workers)


def test_path_rejects_bad_betas():
    U, Y, M = instance(20, 2, 6, C=1, seed=5)
    with pytest.raises(ValueError, match="decreasing"):
        solve_path(U, Y, [0.1, 0.2], M)
    with pytest.raises(ValueError, match="positive"):
        solve_path(U, Y, [0.1, -0.2], M)
    with pytest.raises(ValueError, match="non-empty"):
        solve_path(U, Y, [], M)


@pytest.fixture
def data_file(tmp_path):
    """A small regression data set as .npz."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((40, 3))
    y = np.sin(X[:, 0]) + 0.1 * rng.standard_normal(40)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    return path


def test_cli_path_writes_the_contract(data_file, tmp_path):
    out = tmp_path / "path.json"
    rc = cli.main(
        ["path", "--data", str(data_file), "--ratios", "1.2,0.3,0.05", "--arrangements", "20", "--out", str(out)]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["beta_max"] > 0 and res["seconds"] > 0
    keys = {"beta", "ratio", "objective", "network_objective", "gap", "cone_violation", "status", "seconds", "neurons"}
    assert [p["ratio"] for p in res["points"]] == pytest.approx([1.2, 0.3, 0.05])
    for p in res["points"]:
        assert keys <= set(p)
        assert p["status"] == "optimal" and p["gap"] <= 1e-6
        assert p["beta"] == pytest.approx(p["ratio"] * res["beta_max"])
        assert p["network_objective"] == pytest.approx(p["objective"], rel=1e-7)  # the real network attains it
    assert res["points"][0]["neurons"] == 0 and res["points"][-1]["neurons"] > 0


def test_cli_path_workers_give_the_same_points(tmp_path):
    rng = np.random.default_rng(9)
    X = rng.standard_normal((40, 3))
    data = tmp_path / "multi.npz"
    np.savez(data, X=X, y=np.eye(3)[rng.integers(0, 3, 40)])
    outs = [tmp_path / "w1.json", tmp_path / "w2.json"]
    common = ["path", "--data", str(data), "--ratios", "0.3,0.05", "--arrangements", "12"]
    assert cli.main([*common, "--out", str(outs[0])]) == 0
    assert cli.main([*common, "--workers", "2", "--out", str(outs[1])]) == 0
    a, b = (json.loads(o.read_text()) for o in outs)
    assert [p["objective"] for p in a["points"]] == [p["objective"] for p in b["points"]]
    assert all(p["status"] == "optimal" for p in b["points"])


def test_cli_path_conic_solver_agrees(data_file, tmp_path):
    fast, conic = tmp_path / "fast.json", tmp_path / "conic.json"
    common = ["path", "--data", str(data_file), "--betas", "0.5,0.1", "--arrangements", "15", "--seed", "3"]
    assert cli.main([*common, "--out", str(fast)]) == 0
    assert cli.main([*common, "--solver", "CLARABEL", "--out", str(conic)]) == 0
    a, b = json.loads(fast.read_text()), json.loads(conic.read_text())
    assert a["beta_max"] == pytest.approx(b["beta_max"])
    for p, r in zip(a["points"], b["points"]):
        assert r["status"] == "optimal"
        assert p["objective"] == pytest.approx(r["objective"], rel=1e-6)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--ratios", "0.1,0.3"], "strictly decreasing"),
        (["--ratios", "0.3,-1"], "--ratios must be"),
        (["--ratios", "0.3,,0.1"], "comma-separated"),
        (["--ratios", "0.3", "--betas", "1"], "not allowed"),
        (["--ratios", "0.3", "--solver", "MOSK"], "unknown solver"),
        (["--ratios", "0.3", "--tol", "0"], "--tol"),
        (["--ratios", "0.3", "--workers", "0"], "--workers"),
    ],
)
def test_cli_path_bad_input_is_one_line_exit_2(data_file, tmp_path, capsys, args, message):
    out = tmp_path / "bad.json"
    rc = cli.main(["path", "--data", str(data_file), "--arrangements", "10", *args, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and message in err[0] and err[0].startswith("convexbn: error:")
    assert not out.exists()


def test_cli_path_bad_targets_and_missing_file(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(["path", "--data", str(tmp_path / "none.npz"), "--ratios", "0.3", "--out", str(out)]) == 2
    bad = tmp_path / "nan.npz"
    np.savez(bad, X=np.ones((5, 2)), y=np.array([0.0, np.nan, 1, 2, 3]))
    assert cli.main(["path", "--data", str(bad), "--ratios", "0.3", "--out", str(out)]) == 2
    assert not out.exists()
