"""Program (C2): reconstructed BN networks attain the convex optimum (real torch forward passes)."""

from __future__ import annotations

import copy
import sys
import types

import numpy as np
import pytest
import torch

from convexbn.arrangements import arrangements_for
from convexbn.networks import bn_mlp_from_params, evaluate_objective, predict
from convexbn.programs import (
    ConvexResult,
    c2_objective,
    c2_problem,
    network_objective,
    predict_convex_gates,
    reconstruct_before,
    solve_c2,
    solve_two_layer,
)
from convexbn.whitening import whiten

REL = 1e-6


def rel(a: float, b: float) -> float:
    """Relative difference."""
    return abs(a - b) / max(abs(b), 1e-12)


def train_outputs(net: torch.nn.Module, X: np.ndarray) -> np.ndarray:
    """Train-mode (batch statistics) outputs of a copy of `net`."""
    work = copy.deepcopy(net).train()
    with torch.no_grad():
        return work(torch.as_tensor(X, dtype=torch.float64)).numpy()


def problem(seed: int, n: int, d: int, C: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random data; C = 1 gives a scalar target (n,), C > 1 one-hot labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal(n) if C == 1 else np.eye(C)[rng.integers(0, C, n)]
    return X, Y


def check_reconstruction(res: ConvexResult, X: np.ndarray, Y: np.ndarray, beta: float, loss: str = "squared") -> None:
    """The reconstructed BN network's train-mode objective equals the convex optimum."""
    assert res.params is not None and res.neurons == res.params.width > 0
    net = bn_mlp_from_params(res.params, X, bias_value=res.extra["whitening"].bias_value)
    net_obj = evaluate_objective(net, X, Y, beta, loss=loss)
    assert rel(net_obj, res.objective) < REL, (net_obj, res.objective)
    Ut = res.extra["whitening"].features(X)
    again = c2_objective(Ut, Y, beta, res.extra["arrangements"].masks, res.extra["u"], res.extra["up"], loss)
    assert again == pytest.approx(res.objective, rel=1e-12)


@pytest.mark.parametrize(
    "seed,n,d,arr,beta",
    [
        (0, 10, 2, "exact", 0.1),
        (1, 13, 3, "exact", 0.05),
        (2, 14, 3, 40, 0.2),
        (3, 9, 2, 15, 0.5),
    ],
)
def test_scalar_reconstruction_matches_optimum(seed: int, n: int, d: int, arr: str | int, beta: float) -> None:
    """Scalar output: network objective == (C2) optimum to 1e-6, certified optimal, cone-feasible."""
    X, y = problem(seed, n, d)
    res = solve_two_layer(X, y, beta, arrangements=arr, solver="CLARABEL", seed=seed)
    assert res.record.status == "optimal" and res.extra["certified"]
    assert res.record.objective == pytest.approx(res.objective, rel=1e-7)
    assert res.record.extra["cone_violation"] < 1e-7
    assert res.arrangements == res.extra["arrangements"].count
    assert res.extra["u"].shape == (res.arrangements, d + 1, 1)
    assert res.record.seconds >= res.record.extra["solver_seconds"] > 0
    check_reconstruction(res, X, y, beta)


def test_reference_check_1() -> None:
    """The toy of examples/toy.npz: n=15, d=3, β=0.1 gives 4.181357 (draw: default_rng(0), X then y)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((15, 3))
    y = rng.standard_normal(15)
    res = solve_two_layer(X, y, 0.1, solver="CLARABEL")
    assert res.objective == pytest.approx(4.181357, abs=1e-6)
    check_reconstruction(res, X, y, 0.1)


@pytest.mark.parametrize("arr", ["exact", 60])
def test_vector_one_hot_reconstruction(arr: str | int) -> None:
    """Vector output (one-hot, C=3, decoupled per-class blocks): network objective == optimum."""
    X, Y = problem(4, 12, 2, C=3)
    res = solve_two_layer(X, Y, 0.1, arrangements=arr, solver="CLARABEL", seed=1)
    assert res.record.status == "optimal"
    assert res.extra["u"].shape[2] == 3 and res.params.V.shape[1] == 3
    # each neuron feeds exactly one class (decoupled form)
    assert np.all(np.count_nonzero(res.params.V, axis=1) == 1)
    check_reconstruction(res, X, Y, 0.1)


def test_truncation() -> None:
    """k = rank reproduces the full optimum; k < rank gives an optimum >= it, still attained by a network."""
    X, y = problem(5, 12, 3)
    full = solve_two_layer(X, y, 0.1, solver="CLARABEL")
    same = solve_two_layer(X, y, 0.1, solver="CLARABEL", truncate=3)
    assert same.objective == pytest.approx(full.objective, rel=1e-7)
    for k in (1, 2):
        trunc = solve_two_layer(X, y, 0.1, solver="CLARABEL", truncate=k)
        assert trunc.extra["whitening"].k == k and trunc.extra["u"].shape[1] == k + 1
        assert trunc.objective >= full.objective - 1e-7
        check_reconstruction(trunc, X, y, 0.1)
    assert trunc.objective > full.objective + 1e-4  # k=2 < rank=3 loses something on this draw


def test_same_seed_same_patterns() -> None:
    """Sampled arrangements depend on the seed only (not on the solver); another seed differs."""
    X, y = problem(6, 14, 3)
    a = solve_two_layer(X, y, 0.1, arrangements=25, seed=7, solver="CLARABEL")
    b = solve_two_layer(X, y, 0.1, arrangements=25, seed=7, solver="auto")
    c = solve_two_layer(X, y, 0.1, arrangements=25, seed=8, solver="CLARABEL")
    ref = arrangements_for(whiten(X).features(X), 25, seed=7)
    assert np.array_equal(a.extra["arrangements"].masks, b.extra["arrangements"].masks)
    assert np.array_equal(a.extra["arrangements"].masks, ref.masks)
    assert not np.array_equal(a.extra["arrangements"].masks, c.extra["arrangements"].masks)
    assert a.objective == pytest.approx(b.objective, rel=1e-7)


def test_fast_solver_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """solver="fast" calls convexbn.solver.solve_c2_fast with the same patterns and converts its result."""
    X, y = problem(7, 11, 2)
    ref = solve_two_layer(X, y, 0.1, arrangements=20, seed=3, solver="CLARABEL")
    seen = {}

    def fake_fast(Ut, Y, beta, masks, *, tol=1e-6, loss="squared", **kw):  # noqa: ANN001, ANN202
        seen["masks"], seen["tol"] = masks.copy(), tol
        return types.SimpleNamespace(
            u=ref.extra["u"],
            up=ref.extra["up"],
            objective=ref.objective,
            gap=3e-9,
            cone_violation=1e-12,
            status="optimal",
            iterations=42,
            seconds=0.01,
            history=[{"iteration": 42}],
        )

    monkeypatch.setitem(sys.modules, "convexbn.solver", types.SimpleNamespace(solve_c2_fast=fake_fast))
    res = solve_two_layer(X, y, 0.1, arrangements=20, seed=3, solver="fast", tol=1e-7)
    assert np.array_equal(seen["masks"], ref.extra["arrangements"].masks) and seen["tol"] == 1e-7
    assert res.record.solver == "fast" and res.record.iterations == 42
    assert res.record.extra["gap"] == 3e-9 and res.record.extra["cone_violation"] == 1e-12
    assert res.objective == pytest.approx(ref.objective, rel=1e-12)
    check_reconstruction(res, X, y, 0.1)


def test_predictions_through_running_statistics() -> None:
    """Eval mode on training rows = train mode; generator-gate and own-gate predictors agree on training rows."""
    X, y = problem(8, 12, 3)
    res = solve_two_layer(X, y, 0.1, arrangements=50, seed=2, solver="CLARABEL")
    wh, arr = res.extra["whitening"], res.extra["arrangements"]
    net = bn_mlp_from_params(res.params, X, bias_value=wh.bias_value)
    train = train_outputs(net, X)
    np.testing.assert_allclose(predict(net, X), train, atol=1e-8)
    np.testing.assert_allclose(predict_convex_gates(wh, arr, res.extra["u"], res.extra["up"], X), train, atol=1e-7)
    # out of sample the network computes Σ_i (φᵀu_i)_+ − (φᵀu'_i)_+ (own-weight gates)
    Xnew = np.random.default_rng(99).standard_normal((7, 3))
    phi = wh.features(Xnew)
    own = (
        np.maximum(np.einsum("nq,pqc->npc", phi, res.extra["u"]), 0)
        - np.maximum(np.einsum("nq,pqc->npc", phi, res.extra["up"]), 0)
    ).sum(axis=1)
    np.testing.assert_allclose(predict(net, Xnew), own, atol=1e-6)
    assert predict_convex_gates(wh, arr, res.extra["u"], res.extra["up"], Xnew).shape == (7, 1)


def test_cross_entropy_and_hinge() -> None:
    """Other convex losses: the reconstruction attains the convex optimum (softmax CE, hinge)."""
    X, Y = problem(9, 10, 2, C=3)
    ce = solve_two_layer(X, Y, 0.1, arrangements=30, seed=0, solver="CLARABEL", loss="cross_entropy")
    assert ce.record.status in ("optimal", "optimal_inaccurate")
    check_reconstruction(ce, X, Y, 0.1, loss="cross_entropy")
    y = np.where(np.random.default_rng(1).standard_normal(10) > 0, 1.0, -1.0)
    hi = solve_two_layer(X, y, 0.1, arrangements=30, seed=0, solver="CLARABEL", loss="hinge")
    net = bn_mlp_from_params(hi.params, X)
    assert rel(network_objective(net, X, y, 0.1, "hinge"), hi.objective) < REL
    with pytest.raises(ValueError, match="one-hot"):
        solve_two_layer(X, y, 0.1, loss="cross_entropy")
    with pytest.raises(ValueError, match="-1, \\+1"):
        solve_two_layer(X, Y, 0.1, loss="hinge")


def test_c2_problem_and_solve_c2_shapes() -> None:
    """c2_problem's CVXPY value equals the numpy objective; solve_c2 returns (P, q, C) blocks."""
    X, Y = problem(10, 9, 2, C=2)
    Ut = whiten(X).features(X)
    masks = arrangements_for(Ut, 12, seed=0).masks
    prog = c2_problem(Ut, Y, 0.2, masks)
    assert prog.u.shape == (masks.shape[1] * 3, 2)
    u, up, rec = solve_c2(Ut, Y, 0.2, masks, solver="CLARABEL")
    assert u.shape == up.shape == (masks.shape[1], 3, 2) and rec.status == "optimal"
    assert c2_objective(Ut, Y, 0.2, masks, u, up) == pytest.approx(rec.objective, rel=1e-7)
    with pytest.raises(ValueError, match="masks"):
        c2_problem(Ut, Y, 0.2, masks[:-1])


def test_reconstruct_before_edge_cases() -> None:
    """Pruning, empty solutions, shape checks and truncated whitening in reconstruct_before."""
    X, _ = problem(11, 8, 3)
    wh = whiten(X, k=2)
    u = np.zeros((4, 3, 1))
    up = np.zeros((4, 3, 1))
    empty = reconstruct_before(wh, u, up)
    assert empty.width == 0 and empty.W.shape == (3, 0) and empty.V.shape == (0, 1)
    u[1, :, 0] = [0.3, -0.4, 1.2]
    up[2, :, 0] = [1e-12, 0, 0]  # pruned: below 1e-9 × largest norm
    p = reconstruct_before(wh, u, up)
    assert p.width == 1 and p.V[0, 0] == pytest.approx(np.sqrt(1.3))
    assert p.gamma[0] ** 2 + p.alpha[0] ** 2 == pytest.approx(1.3)  # ‖s‖² = ‖u‖
    with pytest.raises(ValueError, match="q="):
        reconstruct_before(whiten(X), u, up)


def test_large_beta_gives_zero_network() -> None:
    """β beyond every dual constraint: the optimum is the zero network, objective ½‖y‖²."""
    X, y = problem(12, 10, 2)
    res = solve_two_layer(X, y, 100.0, arrangements=20, solver="CLARABEL")
    assert res.objective == pytest.approx(0.5 * np.sum(y**2), rel=1e-6)


def test_pure_shift_block_reconstructs_to_a_working_neuron() -> None:
    """A block with s_{1:k} = 0 (γ = 0, only the bias coordinate) gets a non-zero filter; objective still equal."""
    X, y = problem(13, 10, 3)
    wh = whiten(X)
    Ut = wh.features(X)
    masks = np.ones((10, 1), dtype=bool)  # U'u = 0.5·c·1 > 0: the all-active pattern is cone-feasible
    u = np.zeros((1, wh.q, 1))
    u[0, -1, 0] = 0.5
    up = np.zeros_like(u)
    params = reconstruct_before(wh, u, up)
    assert params.width == 1 and params.gamma[0] == 0 and np.linalg.norm(params.W) > 0
    net = bn_mlp_from_params(params, X, bias_value=wh.bias_value)
    assert rel(evaluate_objective(net, X, y, 0.1), c2_objective(Ut, y, 0.1, masks, u, up)) < 1e-10
