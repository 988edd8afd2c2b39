"""Whitening: orthonormal U', exact map of training rows, rank tolerance, truncation, cache round trip."""

import numpy as np
import pytest

from convexbn.whitening import load_whitening, save_whitening, truncate, whiten


@pytest.mark.parametrize("n,d", [(15, 3), (10, 20), (40, 8)])
def test_u_prime_orthonormal_and_features_match(n, d):
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((n, d)) * rng.uniform(0.1, 10, size=d)
    wh = whiten(X)
    U = wh.features(X)
    assert wh.rank == min(n - 1, d)
    assert U.shape == (n, wh.rank + 1)
    np.testing.assert_allclose(U.T @ U, np.eye(U.shape[1]), atol=1e-10)
    np.testing.assert_allclose(U[:, -1], 1 / np.sqrt(n))
    # the centred data is reproduced: J X = U Σ Vᵀ
    np.testing.assert_allclose(U[:, :-1] * wh.sigma @ wh.V.T, X - X.mean(0), atol=1e-9)


def test_rank_tolerance_is_explicit():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((30, 2))
    X = B @ rng.standard_normal((2, 6))  # rank 2 after centring (generically)
    assert whiten(X).rank == 2
    X_noisy = X + 1e-9 * rng.standard_normal(X.shape)
    assert whiten(X_noisy).rank == 6
    assert whiten(X_noisy, rank_tol=1e-6).rank == 2


def test_truncation_and_cache(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((25, 7))
    wh = whiten(X)
    t = truncate(wh, 3)
    assert t.k == 3 and t.q == 4
    np.testing.assert_allclose(t.features(X)[:, :3], wh.features(X)[:, :3])
    assert whiten(X, k=3).k == 3 and truncate(wh, 100) is wh
    save_whitening(str(tmp_path / "w.npz"), wh)
    back = load_whitening(str(tmp_path / "w.npz"))
    np.testing.assert_allclose(back.features(X), wh.features(X))
    # first_layer maps whitened directions back to data space: X w is the whitened coordinate
    S = rng.standard_normal((wh.k, 4))
    W = wh.first_layer(S)
    np.testing.assert_allclose((X - X.mean(0)) @ W, wh.features(X)[:, :-1] @ S, atol=1e-9)


def test_invariance_under_invertible_transform():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((12, 4))
    M = rng.standard_normal((4, 4)) + 4 * np.eye(4)
    U1 = whiten(X).features(X)
    U2 = whiten(X @ M).features(X @ M)
    # same column space ⇒ same projector
    np.testing.assert_allclose(U1 @ U1.T, U2 @ U2.T, atol=1e-9)


@pytest.mark.parametrize("bad", [np.zeros((1, 3)), np.array([[np.nan, 1.0], [0.0, 1.0]]), np.zeros(5)])
def test_bad_input(bad):
    with pytest.raises(ValueError):
        whiten(bad)


def test_bias_ones_and_bad_bias():
    X = np.random.default_rng(3).standard_normal((9, 3))
    assert whiten(X, bias="ones").features(X)[0, -1] == 1.0
    with pytest.raises(ValueError, match="bias"):
        whiten(X, bias="half")
