"""Experiment 3 (claim 3): BN whitens the data, so the convex optimum and the trained BN network
are invariant to invertible linear transforms of X, while a plain ReLU network is not. One job per
transform (identity, whitened, random_linear, scaled)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convexbn.experiments.common import JobInputs, record_dict, synthetic_data, train
from convexbn.experiments.equivalence import solve_exact


def transform_data(X: np.ndarray, transform: str, seed: int) -> np.ndarray:
    """An invertible linear transform of X keeping its centred column space (or X itself)."""
    from convexbn.whitening import whiten

    rng = np.random.default_rng(seed + 7919)
    d = X.shape[1]
    if transform == "identity":
        return X.copy()
    if transform == "whitened":
        return whiten(X).features(X)[:, :-1] * math.sqrt(X.shape[0])  # U·√n (unit-variance whitened data)
    if transform == "random_linear":
        A = rng.standard_normal((d, d))
        return X @ A + rng.standard_normal(d)  # invertible a.s.; a shift leaves JX's column space unchanged
    if transform == "scaled":
        return X * np.geomspace(1e-1, 1e1, d)  # anisotropic scaling, condition number 100
    raise ValueError(f"whitening_invariance transform {transform!r}; choose identity, whitened, random_linear, scaled")


def train_plain_relu(
    X: np.ndarray, Y: np.ndarray, beta: float, width: int, *, epochs: int, lr: float, seed: int, device: str = "cpu"
) -> tuple[float, np.ndarray]:
    """Full-batch Adam on a plain ReLU net (Linear+bias → ReLU → Linear), weight decay (β/2)·‖all weights‖²."""
    import torch

    torch.manual_seed(seed)
    dt = torch.float64
    Xt = torch.as_tensor(X, dtype=dt, device=device)
    Yt = torch.as_tensor(Y, dtype=dt, device=device)
    first = torch.nn.Linear(X.shape[1], width).to(dt).to(device)
    second = torch.nn.Linear(width, Y.shape[1], bias=False).to(dt).to(device)
    params = list(first.parameters()) + list(second.parameters())
    opt = torch.optim.Adam(params, lr=lr)

    def objective() -> torch.Tensor:
        """Full-batch squared loss plus (β/2)·Σ‖θ‖² over all weights and biases."""
        out = second(torch.relu(first(Xt)))
        return 0.5 * torch.sum((out - Yt) ** 2) + 0.5 * beta * sum(torch.sum(p**2) for p in params)

    for _ in range(int(epochs)):
        opt.zero_grad()
        val = objective()
        val.backward()
        opt.step()
    with torch.no_grad():
        final = float(objective())
        fit = second(torch.relu(first(Xt))).cpu().numpy()
    return final, fit


def run(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """Convex optimum, best trained BN net and best plain ReLU net on one transform of the same data."""
    from convexbn.networks import bn_mlp_from_params, training_fit

    seed, beta, width = int(p["seed"]), float(p["beta"]), int(p["width"])
    X0, Y = synthetic_data(int(p["n"]), int(p["d"]), seed, "scalar", noise=float(p["noise"]))
    X = transform_data(X0, p["transform"], seed)
    res = solve_exact(X, Y, beta, p)
    fit_cvx = (
        training_fit(bn_mlp_from_params(res.params, X), X)
        if res.params is not None and res.params.width
        else np.zeros_like(Y)
    )
    bn_best, bn_fit, relu_best, relu_fit = math.inf, None, math.inf, None
    for init in range(int(p["inits"])):
        s = seed * 1000 + init
        tr = train(
            X,
            Y,
            beta,
            width,
            optimizer="adam",
            lr=float(p["lr"]),
            epochs=int(p["epochs"]),
            seed=s,
            device=inputs.device,
            dtype="float64",
        )
        if tr.final_objective < bn_best:
            bn_best, bn_fit = float(tr.final_objective), training_fit(tr.model, X)
        val, fit = train_plain_relu(
            X, Y, beta, width, epochs=int(p["epochs"]), lr=float(p["lr"]), seed=s, device=inputs.device
        )
        if val < relu_best:
            relu_best, relu_fit = val, fit
    metrics = {
        "transform": p["transform"],
        "method": p["transform"],
        "p_star": res.objective,
        "bn_best": bn_best,
        "relu_best": relu_best,
        "cond_X": float(np.linalg.cond(X - X.mean(0))),
        "P": res.arrangements,
        "fit_convex": fit_cvx.ravel().tolist(),
        "fit_bn": bn_fit.ravel().tolist(),
        "fit_relu": relu_fit.ravel().tolist(),
    }
    return {"metrics": metrics, "solver": record_dict(res.record), "trace": [], "status": res.record.status}


def add_columns(rows: list[dict[str, Any]], docs: list[dict[str, Any]]) -> None:
    """Relative change of fits and objectives from the untransformed (identity) data, per summary row."""
    ident = next((d for d in docs if d["job"] == "identity"), None)
    if ident is None:
        return
    for row in rows:
        if row["record"] != "summary":
            continue
        doc = next(d for d in docs if d["job"] == row["job"])
        for key in ("convex", "bn", "relu"):
            a = np.asarray(doc["metrics"][f"fit_{key}"])
            b = np.asarray(ident["metrics"][f"fit_{key}"])
            row[f"fit_change_{key}"] = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
        for key, col in (("convex", "p_star"), ("bn", "bn_best"), ("relu", "relu_best")):
            base_v = ident["metrics"][col]
            row[f"obj_change_{key}"] = abs(row[col] - base_v) / max(1.0, abs(base_v))


def draw(summary: Any, trace: Any, dataset: str | None, out_dir: str) -> None:
    """The grouped-bar figure and the table."""
    from convexbn import plots

    plots.plot_whitening(summary, out_dir)
    plots.table_whitening(summary, out_dir)
