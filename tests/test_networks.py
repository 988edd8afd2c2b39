"""BN networks: paper ↔ PyTorch conversion, objective by forward pass, eps negligible, eval = train on train data."""

import copy
import math

import numpy as np
import pytest
import torch

from convexbn.networks import BNMLP, BNParams, bn_mlp_from_params, data_loss, evaluate_objective, predict


def _paper_objective(params, X, Y, beta, placement):
    n = X.shape[0]
    H = X @ params.W
    if placement == "after":
        H = np.maximum(H, 0)
    Hc = H - H.mean(0)
    bn = params.gamma * Hc / np.linalg.norm(Hc, axis=0) + params.alpha / math.sqrt(n)
    A = np.maximum(bn, 0) if placement == "before" else bn
    return 0.5 * np.sum((A @ params.V - Y) ** 2) + 0.5 * beta * params.penalty()


@pytest.mark.parametrize("placement", ["before", "after"])
@pytest.mark.parametrize("C", [1, 3])
def test_forward_objective_matches_paper_formula(placement, C):
    rng = np.random.default_rng(C)
    n, d, m = 20, 5, 7
    X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, C))
    p = BNParams(
        W=rng.standard_normal((d, m)) * 1e-3,
        gamma=rng.standard_normal(m),
        alpha=rng.standard_normal(m),
        V=rng.standard_normal((m, C)),
    )
    net = bn_mlp_from_params(p, X, placement=placement, eps=1e-5)
    got = evaluate_objective(net, X, Y, beta=0.3)
    np.testing.assert_allclose(got, _paper_objective(p, X, Y, 0.3, placement), rtol=1e-10)
    back = net.to_params(n)
    np.testing.assert_allclose(back.gamma, p.gamma, rtol=1e-12)
    np.testing.assert_allclose(back.alpha, p.alpha, rtol=1e-12)
    # running statistics give the same outputs on the training data in eval mode
    with torch.no_grad():  # a train-mode pass on a copy: it would update the running statistics
        train_out = copy.deepcopy(net).train()(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(predict(net, X), train_out, rtol=1e-8, atol=1e-10)


def test_evaluate_objective_leaves_running_stats_untouched():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((10, 3)), rng.standard_normal((10, 1))
    net = BNMLP(3, 4).double()
    before = net.bn.running_mean.clone()
    evaluate_objective(net, X, Y, 0.1)
    assert torch.equal(before, net.bn.running_mean)


def test_bad_placement():
    with pytest.raises(ValueError, match="placement"):
        BNMLP(3, 4, placement="middle")


def test_hinge_loss_and_vector_targets_by_forward_pass():
    """data_loss's hinge term Σ max(0, 1 − y·f) through evaluate_objective; a target vector (n,) is one column."""
    rng = np.random.default_rng(4)
    n, d, m = 12, 3, 5
    X, y = rng.standard_normal((n, d)), np.sign(rng.standard_normal(n))
    p = BNParams(
        W=rng.standard_normal((d, m)),
        gamma=rng.standard_normal(m),
        alpha=rng.standard_normal(m),
        V=rng.standard_normal((m, 1)),
    )
    net = bn_mlp_from_params(p, X)
    with torch.no_grad():
        f = copy.deepcopy(net).train()(torch.as_tensor(X)).numpy()[:, 0]
    want = np.sum(np.maximum(0.0, 1.0 - y * f)) + 0.5 * 0.2 * p.penalty()
    np.testing.assert_allclose(evaluate_objective(net, X, y, 0.2, loss="hinge"), want, rtol=1e-10)
    np.testing.assert_allclose(
        evaluate_objective(net, X, y, 0.2), evaluate_objective(net, X, y[:, None], 0.2), rtol=1e-14
    )
    with pytest.raises(ValueError, match="unknown loss"):
        evaluate_objective(net, X, y, 0.2, loss="l1")


def test_evaluate_objective_needs_a_bn_network_and_applies_first_layer_decay():
    """Only convexbn BN networks are accepted; λ₁ adds (λ₁/2)‖W‖² of the first layer."""
    with pytest.raises(TypeError, match="PaperBNNet"):
        evaluate_objective(torch.nn.Linear(3, 1).double(), np.zeros((4, 3)), np.zeros(4), 0.1)
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((9, 3)), rng.standard_normal((9, 1))
    net = BNMLP(3, 4).double()
    extra = evaluate_objective(net, X, Y, 0.1, first_layer_decay=0.3) - evaluate_objective(net, X, Y, 0.1)
    np.testing.assert_allclose(extra, 0.15 * float(torch.sum(net.first.weight.detach() ** 2)), rtol=1e-10)


def test_first_layer_gradient_is_preconditioned_by_sigma_squared():
    """∇_W L = V Σ ∇_Z G for z_j = Σ Vᵀ w_j, and ∇_z G ⊥ z: a GD step moves z by −η Σ² ∇_z G."""
    rng = np.random.default_rng(3)
    n, d, m, beta = 15, 4, 6, 0.1
    X = rng.standard_normal((n, d)) * np.array([5.0, 2.0, 1.0, 0.2])  # well-separated singular values
    Y = rng.standard_normal((n, 2))
    torch.manual_seed(0)
    net = BNMLP(d, m, 2, eps=1e-12).double().train()
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    net.objective(Xt, Yt, beta).backward()
    grad_W = net.first.weight.grad.numpy().T  # (d, m)

    _, sigma, Vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    V = Vt.T
    Z = torch.tensor(np.diag(sigma) @ Vt @ net.first.weight.detach().numpy().T, requires_grad=True)  # (d, m)
    W_of_Z = torch.as_tensor(V / sigma) @ Z  # w = V Σ⁻¹ z
    out = net.second(torch.relu(net.bn(Xt @ W_of_Z)))
    G = data_loss(out, Yt) + 0.5 * beta * net.penalty(n)
    G.backward()
    grad_Z = Z.grad.numpy()
    np.testing.assert_allclose(grad_W, V @ np.diag(sigma) @ grad_Z, rtol=1e-8, atol=1e-10)
    # BN sees only the direction of z: its gradient is orthogonal to z, column by column
    cos = np.sum(grad_Z * Z.detach().numpy(), axis=0) / (
        np.linalg.norm(grad_Z, axis=0) * np.linalg.norm(Z.detach().numpy(), axis=0)
    )
    assert np.max(np.abs(cos)) < 1e-8
    # hence one GD step on W moves Z by −η Σ² ∇_Z G
    eta = 1e-3
    Z_after = np.diag(sigma) @ Vt @ (net.first.weight.detach().numpy().T - eta * grad_W)
    np.testing.assert_allclose(Z_after, Z.detach().numpy() - eta * np.diag(sigma**2) @ grad_Z, rtol=1e-10, atol=1e-12)
