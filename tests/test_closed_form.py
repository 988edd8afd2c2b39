"""Closed forms in the high-dimensional regime (rank(JX) = n − 1): equal the (C2) optimum and the network's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from convexbn.networks import bn_mlp_from_params, evaluate_objective
from convexbn.programs import closed_form, solve_two_layer


def reference_value(Y: np.ndarray, beta: float) -> float:
    """p* from §3.3/§3.4 computed independently: Σ over sign/class parts of the shrinkage value."""
    Y = Y[:, None] if Y.ndim == 1 else Y
    parts = [np.maximum(Y[:, 0], 0), np.maximum(-Y[:, 0], 0)] if Y.shape[1] == 1 else list(Y.T)
    total = 0.0
    for p in parts:
        r = np.linalg.norm(p)
        total += beta * r - beta**2 / 2 if r > beta else r**2 / 2
    return total


def forward(net: torch.nn.Module, X: np.ndarray) -> np.ndarray:
    """Train-mode outputs of a copy of `net`."""
    with torch.no_grad():
        return copy.deepcopy(net).train()(torch.as_tensor(X)).numpy()


def scalar_data() -> tuple[np.ndarray, np.ndarray]:
    """n = 7 ≤ d = 12, scalar target."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((7, 12)), rng.standard_normal(7)


def test_scalar_closed_form_equals_cvxpy_and_network() -> None:
    """Over β below, between and above ‖y_±‖: closed form = exact (C2) optimum = network objective."""
    X, y = scalar_data()
    npos, nneg = np.linalg.norm(np.maximum(y, 0)), np.linalg.norm(np.maximum(-y, 0))
    lo, hi = sorted((npos, nneg))
    for beta in (0.05, 0.4, (lo + hi) / 2, hi + 0.5):
        cf = closed_form(X, y, beta)
        assert cf.objective == pytest.approx(reference_value(y, beta), rel=1e-12)
        cv = solve_two_layer(X, y, beta, solver="CLARABEL")  # exact arrangements: q = n = 7
        assert cv.record.status == "optimal"
        assert cf.objective == pytest.approx(cv.objective, rel=1e-6, abs=1e-9)
        assert cf.neurons == int(npos > beta) + int(nneg > beta)
        if cf.neurons:
            net = bn_mlp_from_params(cf.params, X)
            assert evaluate_objective(net, X, y, beta) == pytest.approx(cf.objective, rel=1e-9)
            np.testing.assert_allclose(forward(net, X), cf.extra["prediction"], atol=1e-9)
        else:
            assert cf.objective == pytest.approx(0.5 * np.sum(y**2))


def test_one_hot_vector_closed_form() -> None:
    """One-hot C = 3: closed form = per-class (C2) optimum = reconstructed network objective."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((7, 12))
    Y = np.eye(3)[np.array([0, 0, 0, 1, 1, 2, 2])]  # class norms √3, √2, √2
    for beta in (0.3, 1.5):  # 0.3: all classes active; 1.5: only class 0 (norm √3) survives
        cf = closed_form(X, Y, beta)
        assert cf.objective == pytest.approx(reference_value(Y, beta), rel=1e-12)
        assert cf.neurons == int(np.sum(np.linalg.norm(Y, axis=0) > beta))
        cv = solve_two_layer(X, Y, beta, solver="CLARABEL")
        assert cf.objective == pytest.approx(cv.objective, rel=1e-6)
        net = bn_mlp_from_params(cf.params, X)
        assert evaluate_objective(net, X, Y, beta) == pytest.approx(cf.objective, rel=1e-9)


def test_closed_form_weights_follow_formula() -> None:
    """The '+' neuron: v = √(‖y_+‖ − β), γ and α as in §3.3, w ∝ (JX)^† y_+."""
    X, y = scalar_data()
    beta = 0.3
    cf = closed_form(X, y, beta)
    yp = np.maximum(y, 0)
    r = np.linalg.norm(yp)
    c = np.sqrt(r - beta)
    j = int(np.argmax(cf.params.V[:, 0]))
    assert cf.params.V[j, 0] == pytest.approx(c)
    assert cf.params.gamma[j] == pytest.approx(c * np.linalg.norm(yp - yp.mean()) / r)
    assert cf.params.alpha[j] == pytest.approx(c * np.sqrt(len(y)) * yp.mean() / r)
    w_ref = np.linalg.pinv(X - X.mean(axis=0)) @ yp
    w = cf.params.W[:, j]
    assert abs(w @ w_ref) / (np.linalg.norm(w) * np.linalg.norm(w_ref)) == pytest.approx(1.0, abs=1e-10)
    assert w @ w_ref > 0


def test_closed_form_rejects_bad_inputs() -> None:
    """Rank-deficient data, non-one-hot vector targets and bias='ones' raise clear ValueErrors."""
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="rank"):
        closed_form(rng.standard_normal((10, 3)), rng.standard_normal(10), 0.1)
    X = rng.standard_normal((6, 10))
    with pytest.raises(ValueError, match="rank"):  # duplicated rows: rank(JX) < n − 1
        closed_form(np.vstack([X, X[:1]]), rng.standard_normal(7), 0.1)
    with pytest.raises(ValueError, match="one-hot"):
        closed_form(X, rng.standard_normal((6, 2)), 0.1)
    with pytest.raises(ValueError, match="bias"):
        closed_form(X, rng.standard_normal(6), 0.1, bias="ones")
    with pytest.raises(ValueError, match="beta"):
        closed_form(X, rng.standard_normal(6), -1.0)
