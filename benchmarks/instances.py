"""Benchmark instances of (C2) built with the project's own API: real images and unseen random ones."""

from __future__ import annotations

import numpy as np

from convexbn.arrangements import sample_arrangements
from convexbn.whitening import whiten


def standardise(X: np.ndarray) -> np.ndarray:
    """Columns to zero mean and unit variance (constant columns become 0)."""
    sd = X.std(0)
    return (X - X.mean(0)) / np.where(sd > 0, sd, 1.0)


def one_hot(labels: np.ndarray, C: int) -> np.ndarray:
    """(n, C) one-hot targets in {0, 1}."""
    Y = np.zeros((len(labels), C))
    Y[np.arange(len(labels)), labels] = 1.0
    return Y


def image_instance(X: np.ndarray, labels: np.ndarray, k: int | None, P: int, C: int = 10, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U', one-hot Y, masks) of standardised images X, whitening truncated to k (None: full), P sampled patterns."""
    Xs = standardise(np.asarray(X, dtype=np.float64))
    U = whiten(Xs, k=k).features(Xs)
    masks = sample_arrangements(U, P, seed=seed).masks
    return U, one_hot(labels, C), masks


def digits_instance(k: int | None, n: int = 1000, P: int = 256, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn digits: the first n images of a seeded permutation, standardised, one-hot, C = 10."""
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = np.random.default_rng(seed).permutation(len(d.target))[:n]
    return image_instance(d.data[idx], d.target[idx], k, P, seed=seed)


def fashion_instance(k: int | None, n: int = 10_000, P: int = 256, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST training images (Debian package): a seeded subset of n, standardised, one-hot, C = 10."""
    from convexbn.data import load_fashion_mnist

    d = load_fashion_mnist()
    images, labels = d["X_train"], d["y_train"]
    idx = np.random.default_rng(seed).permutation(len(labels))[:n]
    return image_instance(np.asarray(images[idx]).reshape(n, -1), np.asarray(labels[idx]), k, P, seed=seed)


def random_instance(n: int, d: int, P: int, labels: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian data with targets of a kind the solver was not tuned on: 'regression', 'pm1' (±1) or 'onehot' (C = 3)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if labels == "regression":
        Y = np.sin(X @ rng.standard_normal(d) / np.sqrt(d)) + 0.3 * rng.standard_normal(n)
    elif labels == "pm1":
        Y = np.sign(X @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n))
    elif labels == "onehot":
        Y = one_hot(np.argmax(X @ rng.standard_normal((d, 3)), 1), 3)
    else:
        raise ValueError(f"labels must be 'regression', 'pm1' or 'onehot', got {labels!r}")
    U = whiten(X).features(X)
    return U, Y, sample_arrangements(U, P, seed=seed).masks
