"""Arrangements: exact enumeration is complete, sampling is seeded, de-duplication is exact."""

import numpy as np
import pytest

from convexbn.arrangements import (
    arrangement_upper_bound,
    arrangements_for,
    dedupe_masks,
    exact_arrangements,
    parse_arrangement_spec,
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
        np.random.default_rng(5).standard_normal((30, 4))
    )
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
        np.random.default_rng(0).standard_normal((200, 30))
    )
    with pytest.raises(ValueError, match="sampled arrangements"):
        exact_arrangements(U)


def test_spec_parsing():
    U = whiten(np.random.default_rng(0).standard_normal((10, 2))).features(
        np.random.default_rng(0).standard_normal((10, 2))
    )
    assert arrangements_for(U, "exact").exact
    assert not arrangements_for(U, "50", seed=1).exact
    with pytest.raises(ValueError, match="neither"):
        arrangements_for(U, "lots")
    with pytest.raises(ValueError):
        arrangements_for(U, 0)


def test_huge_exact_request_is_refused_quickly_with_a_readable_message():
    """CIFAR-sized rank: the bound stops at the cap (no multi-thousand-digit integer), the message says what to do."""
    A = np.broadcast_to(np.ones(3073), (50_000, 3073))  # a view: no memory, never touched before the refusal
    with pytest.raises(ValueError, match=r"more than the limit of 200,000 patterns.*--arrangements N"):
        exact_arrangements(A)
    # the summation stopped after the two terms that passed the cap: 2·C(49999, 0) + 2·C(49999, 1)
    assert arrangement_upper_bound(50_000, 3073, cap=1000) == 2 + 2 * 49_999
    assert arrangement_upper_bound(50_000, 3073, cap=200_000) == 2 + 2 * 49_999 + 2 * (49_999 * 49_998 // 2)
    assert arrangement_upper_bound(12, 3, cap=10**9) == arrangement_upper_bound(12, 3) == 2 * (1 + 11 + 55)


@pytest.mark.parametrize("spec,want", [("exact", "exact"), (" EXACT ", "exact"), ("40", 40), (7, 7), (3.0, 3)])
def test_parse_arrangement_spec(spec, want):
    assert parse_arrangement_spec(spec) == want


@pytest.mark.parametrize(
    "spec,match",
    [("lots", "neither"), (2.5, "neither"), (True, "neither"), (None, "neither"), (0, ">= 1"), ("-4", ">= 1")],
)
def test_parse_arrangement_spec_rejects(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_arrangement_spec(spec)
