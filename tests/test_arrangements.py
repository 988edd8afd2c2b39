"""Arrangements: exact enumeration is complete, sampling is seeded, de-duplication is exact."""

import numpy as np
import pytest

from convexbn.arrangements import (
    arrangement_upper_bound,
    arrangements_for,
    dedupe_masks,
    exact_arrangements,
    sample_arrangements,
)
from convexbn.whitening import whiten


def _patterns(masks):
    return {bytes(np.packbits(c)) for c in masks.T}


@pytest.mark.parametrize("n,d,seed", [(12, 2, 0), (15, 3, 1), (9, 1, 2)])
def test_exact_contains_every_sampled_pattern(n, d, seed):
    X = np.random.default_rng(seed).standard_normal((n, d))
    U = whiten(X).features(X)
    ex = exact_arrangements(U)
    assert ex.exact and ex.count <= arrangement_upper_bound(n, U.shape[1])
    np.testing.assert_array_equal(U @ ex.generators >= 0, ex.masks)
    sampled = sample_arrangements(U, 20000, seed=seed)
    assert _patterns(sampled.masks) <= _patterns(ex.masks)
    # in general position, affine arrangements of n points in R^{q-1} reach the bound (minus the empty one)
    assert ex.count == arrangement_upper_bound(n, U.shape[1]) - 1


def test_sampling_seeded_and_distinct():
    U = whiten(np.random.default_rng(5).standard_normal((30, 4))).features(
        np.random.default_rng(5).standard_normal((30, 4)))
    a = sample_arrangements(U, 200, seed=7)
    b = sample_arrangements(U, 200, seed=7)
    c = sample_arrangements(U, 200, seed=8)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.masks, c.masks) or a.count == 0
    assert len(_patterns(a.masks)) == a.count
    assert a.masks.any(axis=0).all()


def test_dedupe_keeps_first_order():
    m = np.array([[1, 0, 1, 1], [0, 0, 0, 1], [1, 0, 1, 0]], dtype=bool)
    g = np.arange(8.0).reshape(2, 4)
    mm, gg = dedupe_masks(m, g)
    np.testing.assert_array_equal(mm, m[:, [0, 3]])
    np.testing.assert_array_equal(gg, g[:, [0, 3]])


def test_exact_refuses_astronomical_counts():
    U = whiten(np.random.default_rng(0).standard_normal((200, 30))).features(
        np.random.default_rng(0).standard_normal((200, 30)))
    with pytest.raises(ValueError, match="sampled arrangements"):
        exact_arrangements(U)


def test_spec_parsing():
    U = whiten(np.random.default_rng(0).standard_normal((10, 2))).features(
        np.random.default_rng(0).standard_normal((10, 2)))
    assert arrangements_for(U, "exact").exact
    assert not arrangements_for(U, "50", seed=1).exact
    with pytest.raises(ValueError, match="neither"):
        arrangements_for(U, "lots")
    with pytest.raises(ValueError):
        arrangements_for(U, 0)
