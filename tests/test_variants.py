"""Variants of the convex BN programs: BN after ReLU (§3.7), BN-CNN (§3.6), deep nets (§3.5).

Every check compares against a real PyTorch forward pass (train mode, float64): reconstructions
attain the convex optimum, and local search (L-BFGS) on the non-convex networks never ends below it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convexbn import variants as V
from convexbn.networks import BNMLP, bn_mlp_from_params, evaluate_objective
from convexbn.conic import SolverError

torch.set_num_threads(1)

SOLVER = "CLARABEL"
REL = 1e-6  # reconstruction == optimum
SLACK = 1e-7  # local search >= optimum


def _rel(a: float, b: float) -> float:
    """Relative difference |a − b| / max(1, |b|)."""
    return abs(a - b) / max(1.0, abs(b))


def _lbfgs(net: torch.nn.Module, inputs: torch.Tensor, Y: torch.Tensor, beta: float, params: list,
           loss: str = "squared", rounds: int = 2, max_iter: int = 80) -> float:
    """Run L-BFGS (strong Wolfe) on `params` of `net`'s train-mode objective; return the final objective."""
    net.train()
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, max_eval=2 * max_iter, history_size=50,
                            line_search_fn="strong_wolfe",
                            tolerance_grad=1e-11, tolerance_change=1e-15)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        val = net.objective(inputs, Y, beta, loss=loss)
        val.backward()
        return val

    for _ in range(rounds):
        opt.step(closure)
    with torch.no_grad():
        return float(net.objective(inputs, Y, beta, loss=loss))


def _one_hot(labels: np.ndarray, C: int) -> np.ndarray:
    """(n, C) one-hot matrix."""
    Y = np.zeros((labels.size, C))
    Y[np.arange(labels.size), labels] = 1.0
    return Y


# ------------------------------------------------------------------------------------------------
# BN after ReLU
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,n,d,C,beta,loss", [
    (0, 12, 3, 1, 0.1, "squared"),
    (1, 10, 2, 1, 0.3, "squared"),
    (2, 9, 3, 2, 0.05, "squared"),
    (3, 10, 2, 3, 0.2, "cross_entropy"),
])
def test_bn_after_reconstruction_attains_optimum(seed: int, n: int, d: int, C: int, beta: float, loss: str) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = _one_hot(rng.integers(0, C, n), C) if loss == "cross_entropy" else rng.standard_normal((n, C))
    res = V.solve_bn_after_relu(X, Y, beta, arrangements="exact", solver=SOLVER, loss=loss)
    assert res.record.status in ("optimal", "optimal_inaccurate")
    assert res.extra["arrangements"].exact
    assert _rel(res.objective, res.record.objective) < REL  # recomputed value == solver's value
    assert res.params is not None and res.neurons == res.params.width
    assert res.record.seconds >= res.extra["solver_seconds"] > 0
    net = bn_mlp_from_params(res.params, X, placement="after")
    val = evaluate_objective(net, X, Y, beta, loss=loss)
    assert _rel(val, res.objective) < REL, (val, res.objective)
    # sanity: the BN output really sits after the ReLU (a pre-ReLU network with these weights differs)
    before = bn_mlp_from_params(res.params, X, placement="before")
    assert abs(evaluate_objective(before, X, Y, beta, loss=loss) - val) > 1e-6


def test_bn_after_paper_check_4_local_search_never_below() -> None:
    """§9 [4]-like: n=12, d=3, β=0.1; best L-BFGS ≥ convex optimum and close to it."""
    n, d, beta = 12, 3, 0.1
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    res = V.solve_bn_after_relu(X, y, beta, solver=SOLVER)
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(y)
    finals = []
    for init in range(3):
        torch.manual_seed(init)
        net = BNMLP(d, 10, 1, placement="after").double()
        with torch.no_grad():
            net.bn.weight.uniform_(0.1, 0.5)
            net.second.weight.mul_(0.5)
        finals.append(_lbfgs(net, Xt, Yt, beta, list(net.parameters())))
    assert min(finals) >= res.objective * (1 - SLACK), (finals, res.objective)
    assert min(finals) <= res.objective * 1.10, (finals, res.objective)  # local search gets near it


def test_bn_after_sampled_arrangements_upper_bound() -> None:
    """Sampled patterns give a restriction of the exact program: optimum ≥ exact optimum, still attained."""
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((10, 3)), rng.standard_normal(10)
    exact = V.solve_bn_after_relu(X, y, 0.1, solver=SOLVER)
    sampled = V.solve_bn_after_relu(X, y, 0.1, arrangements=6, seed=1, solver=SOLVER)
    assert not sampled.extra["arrangements"].exact and sampled.arrangements <= 6
    assert sampled.objective >= exact.objective * (1 - SLACK)
    net = bn_mlp_from_params(sampled.params, X, placement="after")
    assert _rel(evaluate_objective(net, X, y, 0.1), sampled.objective) < REL


def test_bn_after_rank_deficient_data() -> None:
    """X with a repeated column (rank 2 < d = 3): arrangements come from the row space."""
    rng = np.random.default_rng(6)
    Z = rng.standard_normal((10, 2))
    X = np.hstack([Z, Z[:, :1]])
    y = rng.standard_normal(10)
    res = V.solve_bn_after_relu(X, y, 0.2, solver=SOLVER)
    assert res.extra["arrangements"].generators.shape[0] == 3
    net = bn_mlp_from_params(res.params, X, placement="after")
    assert _rel(evaluate_objective(net, X, y, 0.2), res.objective) < REL


def test_bias_column_ones_convention() -> None:
    """Ambiguity A1: with α·1 (c = 1) instead of α/√N the reconstructions still attain the optimum."""
    rng = np.random.default_rng(12)
    X, y = rng.standard_normal((9, 2)), rng.standard_normal(9) + 1.0
    unit = V.solve_bn_after_relu(X, y, 0.2, solver=SOLVER)
    ones = V.solve_bn_after_relu(X, y, 0.2, solver=SOLVER, bias="ones")
    assert ones.extra["bias_value"] == 1.0
    assert abs(ones.objective - unit.objective) > 1e-6  # the bias weighting changes the program
    net = bn_mlp_from_params(ones.params, X, placement="after", bias_value=1.0)
    assert _rel(evaluate_objective(net, X, y, 0.2), ones.objective) < REL
    P = V.extract_patches_1d(rng.standard_normal((5, 4)), 2, 1)
    res = V.solve_cnn(P, y[:5], 0.1, solver=SOLVER, bias="ones")
    assert res.extra["network"].bias_value == 1.0
    assert _rel(evaluate_objective(res.extra["network"], P, y[:5], 0.1), res.objective) < REL


def test_variants_refuse_fast_solver_and_bad_inputs() -> None:
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((8, 2)), rng.standard_normal(8)
    with pytest.raises(SolverError, match="conic solver"):
        V.solve_bn_after_relu(X, y, 0.1, solver="fast")
    with pytest.raises(SolverError, match="conic solver"):
        V.solve_cnn(rng.standard_normal((4, 3, 2)), y[:4], 0.1, solver="fast")
    with pytest.raises(ValueError, match=r"Y must have shape \(8,\)"):
        V.solve_bn_after_relu(X, y[:5], 0.1, solver=SOLVER)
    with pytest.raises(ValueError, match="beta must be a positive"):
        V.solve_bn_after_relu(X, y, 0.0, solver=SOLVER)
    with pytest.raises(ValueError, match="cross_entropy"):
        V.solve_bn_after_relu(X, y, 0.1, solver=SOLVER, loss="cross_entropy")


# ------------------------------------------------------------------------------------------------
# CNN
# ------------------------------------------------------------------------------------------------

def test_extract_patches_1d_shapes_and_values() -> None:
    X = np.arange(2 * 7, dtype=float).reshape(2, 7)
    P = V.extract_patches_1d(X, 3, 2)
    assert P.shape == (2, 3, 3)
    np.testing.assert_array_equal(P[1, 2], X[1, 4:7])
    X3 = np.arange(2 * 2 * 5, dtype=float).reshape(2, 2, 5)  # (n, channels, L)
    P3 = V.extract_patches_1d(X3, 2, 1)
    assert P3.shape == (2, 4, 4)
    np.testing.assert_array_equal(P3[0, 1], np.concatenate([X3[0, 0, 1:3], X3[0, 1, 1:3]]))


@pytest.mark.parametrize("size,stride,msg", [
    (6, 1, "exceeds the signal length 5"),
    (0, 1, "size must be a positive integer"),
    (2, 0, "stride must be a positive integer"),
    (2.5, 1, "size must be a positive integer"),
])
def test_extract_patches_1d_rejects_bad_sizes(size, stride, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        V.extract_patches_1d(np.zeros((3, 5)), size, stride)


def test_extract_patches_1d_rejects_bad_array() -> None:
    with pytest.raises(ValueError, match=r"must be \(n, L\)"):
        V.extract_patches_1d(np.zeros(5), 2, 1)


def test_bnconvnet_matches_paper_bn_formula() -> None:
    """BNConvNet forward = Σ_k (γ J M w/‖J M w‖ + α/√(nK))_+ v with statistics over all n·K rows."""
    rng = np.random.default_rng(8)
    n, K, h, m = 5, 4, 3, 2
    P = rng.standard_normal((n, K, h))
    torch.manual_seed(0)
    net = V.BNConvNet(h, m, 1, eps=1e-30).double()
    with torch.no_grad():
        net.bn.weight.uniform_(0.5, 1.5)
        net.bn.bias.uniform_(-0.5, 0.5)
    with torch.no_grad():
        out = net.train()(torch.as_tensor(P)).numpy()
    W = net.filters.weight.detach().numpy().T
    gamma, alpha = (t.detach().numpy() for t in net.paper_bn(n * K))
    Z = P.reshape(n * K, h) @ W
    Z = Z - Z.mean(axis=0)
    B = gamma * Z / np.linalg.norm(Z, axis=0) + alpha / math.sqrt(n * K)
    ref = np.maximum(B, 0).reshape(n, K, m).sum(axis=1) @ net.head.weight.detach().numpy().T
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        pen = float(net.penalty(n * K))
    assert abs(pen - (np.sum(gamma**2) + np.sum(alpha**2) + np.sum(net.head.weight.detach().numpy() ** 2))) < 1e-12


@pytest.mark.parametrize("seed,n,L,size,C,beta,loss", [
    (0, 6, 4, 2, 1, 0.1, "squared"),
    (1, 5, 5, 2, 2, 0.05, "squared"),
    (2, 6, 4, 2, 2, 0.1, "cross_entropy"),
])
def test_cnn_reconstruction_attains_optimum(seed: int, n: int, L: int, size: int, C: int, beta: float,
                                            loss: str) -> None:
    rng = np.random.default_rng(seed)
    P = V.extract_patches_1d(rng.standard_normal((n, L)), size, 1)
    Y = _one_hot(rng.integers(0, C, n), C) if loss == "cross_entropy" else rng.standard_normal((n, C))
    # CLARABEL stalls on the exponential cones of cross-entropy with all ~300 exact patterns here
    # (status solver_error); 30 sampled patterns keep the check about the loss and the reconstruction.
    spec = 30 if loss == "cross_entropy" else "exact"
    res = V.solve_cnn(P, Y, beta, arrangements=spec, seed=seed, solver=SOLVER, loss=loss)
    assert res.record.status in ("optimal", "optimal_inaccurate")
    assert _rel(res.objective, res.record.objective) < REL
    net = res.extra["network"]
    assert isinstance(net, V.BNConvNet)
    val = evaluate_objective(net, P, Y, beta, loss=loss)  # real train-mode forward pass, float64
    assert _rel(val, res.objective) < REL, (val, res.objective)


def test_cnn_paper_check_5_local_search_never_below() -> None:
    """§9 [5]-like: n=8, K=3, h=2, β=0.05; L-BFGS on the BN-CNN ≥ convex optimum and close to it."""
    n, beta = 8, 0.05
    rng = np.random.default_rng(9)
    P = V.extract_patches_1d(rng.standard_normal((n, 4)), 2, 1)
    assert P.shape == (8, 3, 2)
    y = rng.standard_normal(n)
    res = V.solve_cnn(P, y, beta, solver=SOLVER)
    assert res.extra["arrangements"].exact
    assert _rel(evaluate_objective(res.extra["network"], P, y, beta), res.objective) < REL
    Pt, Yt = torch.as_tensor(P), torch.as_tensor(y)
    finals = []
    for init in range(3):
        torch.manual_seed(init)
        net = V.BNConvNet(2, 12, 1).double()
        with torch.no_grad():
            net.bn.weight.uniform_(0.05, 0.3)
            net.head.weight.mul_(0.5)
        finals.append(_lbfgs(net, Pt, Yt, beta, list(net.parameters())))
    assert min(finals) >= res.objective * (1 - SLACK), (finals, res.objective)
    assert min(finals) <= res.objective * 1.10, (finals, res.objective)


def test_cnn_rejects_bad_patches() -> None:
    with pytest.raises(ValueError, match=r"\(n, K, h\)"):
        V.solve_cnn(np.zeros((4, 3)), np.zeros(4), 0.1, solver=SOLVER)
    with pytest.raises(ValueError, match=r"Y must have shape \(4,\)"):
        V.solve_cnn(np.random.default_rng(0).standard_normal((4, 3, 2)), np.zeros(5), 0.1, solver=SOLVER)


# ------------------------------------------------------------------------------------------------
# Deep networks
# ------------------------------------------------------------------------------------------------

def _random_deep(d: int, widths: list[int], C: int, seed: int) -> V.DeepBNNet:
    """A DeepBNNet in float64 with random BN parameters."""
    torch.manual_seed(seed)
    net = V.DeepBNNet(d, widths, C).double()
    with torch.no_grad():
        for bn in net.bns:
            bn.weight.uniform_(0.1, 0.6)
            bn.bias.uniform_(-0.3, 0.3)
    return net


@pytest.mark.parametrize("seed,widths,C,truncate", [
    (0, [4, 3], 1, None),
    (1, [3, 5, 4], 2, None),
    (2, [5], 1, None),
    (3, [6, 4], 1, 3),
])
def test_deep_last_two_assembled_objective(seed: int, widths: list[int], C: int, truncate: int | None) -> None:
    rng = np.random.default_rng(seed)
    n, d, beta = 10, 3, 0.1
    X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, C))
    net = _random_deep(d, widths, C, seed)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = V.solve_deep_last_two(net, X, Y, beta, arrangements="exact", solver=SOLVER, truncate=truncate)
    assert res.record.status in ("optimal", "optimal_inaccurate")
    # the input net is untouched (running statistics included)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        fixed = 0.5 * beta * float(net.bn_penalty(n, list(range(len(widths) - 1))))
    assert abs(res.extra["fixed_penalty"] - fixed) < 1e-12
    if len(widths) == 1:
        assert fixed == 0.0
    assert abs(res.objective - (fixed + res.extra["two_layer_objective"])) < 1e-12
    new = res.extra["network"]
    assert isinstance(new, V.DeepBNNet) and new.widths[:-1] == widths[:-1] and new.widths[-1] == res.params.width
    for l in range(len(widths) - 1):  # earlier layers copied unchanged
        assert torch.equal(new.linears[l].weight, net.linears[l].weight)
        assert torch.equal(new.bns[l].weight, net.bns[l].weight)
    val = evaluate_objective(new, X, Y, beta)
    assert _rel(val, res.objective) < REL, (val, res.objective)


def test_deep_last_two_local_search_never_below() -> None:
    """L-BFGS over the last two layers (earlier layers frozen) never beats the convexified optimum."""
    rng = np.random.default_rng(11)
    n, d, beta = 10, 3, 0.1
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    net = _random_deep(d, [4, 8], 1, 11)
    res = V.solve_deep_last_two(net, X, y, beta, solver=SOLVER)
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(y)
    finals = []
    for init in range(2):
        torch.manual_seed(100 + init)
        trial = _random_deep(d, [4, 8], 1, 11)  # same earlier layers (same seed) ...
        trial.linears[-1].reset_parameters()  # ... fresh last two layers
        trial.out.reset_parameters()
        last = [trial.linears[-1].weight, trial.bns[-1].weight, trial.bns[-1].bias, trial.out.weight]
        finals.append(_lbfgs(trial, Xt, Yt, beta, last))
    assert min(finals) >= res.objective * (1 - SLACK), (finals, res.objective)


def test_deep_rejects_bad_inputs() -> None:
    net = V.DeepBNNet(3, [4, 3], 1).double()
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        V.solve_deep_last_two(net, np.zeros((5, 2)), np.zeros(5), 0.1, solver=SOLVER)
    with pytest.raises(ValueError, match="outputs"):
        V.solve_deep_last_two(net, np.ones((5, 3)), np.zeros((5, 2)), 0.1, solver=SOLVER)
    with pytest.raises(ValueError, match="widths"):
        V.DeepBNNet(3, [], 1)


def test_hinge_loss_for_bn_after_and_cnn() -> None:
    """The shared loss helpers give every variant the hinge loss; reconstructions attain the optimum."""
    rng = np.random.default_rng(13)
    X, y = rng.standard_normal((8, 2)), np.sign(rng.standard_normal(8))
    res = V.solve_bn_after_relu(X, y, 0.1, arrangements=12, seed=0, solver=SOLVER, loss="hinge")
    net = bn_mlp_from_params(res.params, X, placement="after")
    assert _rel(evaluate_objective(net, X, y, 0.1, loss="hinge"), res.objective) < REL
    P = V.extract_patches_1d(rng.standard_normal((6, 4)), 2, 1)
    cnn = V.solve_cnn(P, y[:6], 0.1, arrangements=12, seed=0, solver=SOLVER, loss="hinge")
    assert _rel(evaluate_objective(cnn.extra["network"], P, y[:6], 0.1, loss="hinge"), cnn.objective) < REL
    with pytest.raises(ValueError, match="hinge"):
        V.solve_bn_after_relu(X, y + 0.5, 0.1, solver=SOLVER, loss="hinge")
