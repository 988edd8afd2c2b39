"""Write examples/toy.npz: the tiny data set of the README's command-line examples.

15 samples with 3 Gaussian features and a Gaussian scalar target, drawn with numpy's default_rng(0)
(X first, then y). Small enough for CVXPY to solve the exact convex program over every hyperplane
arrangement in a few seconds:

    python examples/make_toy.py            # rewrites examples/toy.npz (identical bytes each time)
    convexbn solve --data examples/toy.npz --beta 0.1 --out toy.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def toy_data(n: int = 15, d: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with X (n, d) and y (n,) standard normal, drawn in that order from default_rng(seed)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    return X, y


def main() -> None:
    """Write the toy data set (default examples/toy.npz)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "toy.npz", help="output .npz (default: %(default)s)")
    args = parser.parse_args()
    X, y = toy_data()
    np.savez(args.out, X=X, y=y)
    print(f"wrote {args.out}: X {X.shape}, y {y.shape}")


if __name__ == "__main__":
    main()
