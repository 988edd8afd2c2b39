"""Experiment 2 (claim 2): for n ≤ d the optimum has a closed form; it equals the convex program's
optimum and no local search goes below it. One job per output kind (scalar, one-hot) × β."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convexbn.experiments.common import JobInputs, record_dict, synthetic_data, train
from convexbn.experiments.equivalence import solve_exact


def _fit_or_zero(res: Any, X: np.ndarray, Y: np.ndarray) -> np.ndarray | None:
    """Training fit of the network a convex result reconstructs (zeros for the empty network)."""
    from convexbn.networks import bn_mlp_from_params, training_fit

    if res.params is None:
        return None
    return training_fit(bn_mlp_from_params(res.params, X), X) if res.params.width > 0 else np.zeros_like(Y)


def _local_search(
    X: np.ndarray, Y: np.ndarray, beta: float, p: dict[str, Any], device: str
) -> tuple[float, np.ndarray | None, list[float]]:
    """(best final objective, its fit, every final objective) of the local search from each init."""
    from convexbn.networks import training_fit

    g = p["gd"]
    best, fit, finals = math.inf, None, []
    for init in range(int(g["inits"])):
        tr = train(
            X,
            Y,
            beta,
            int(g["width"]),
            optimizer=g["optimizer"],
            lr=g["lr"],
            epochs=int(g["epochs"]),
            seed=int(p["seed"]) * 1000 + init,
            device=device,
            dtype="float64",
        )
        finals.append(float(tr.final_objective))
        if tr.final_objective < best:
            best, fit = float(tr.final_objective), training_fit(tr.model, X)
    return best, fit, finals


def run(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """Closed form vs CVXPY vs local search for one (output kind, β): objectives, fits, penalties."""
    from convexbn.networks import bn_mlp_from_params, evaluate_objective
    from convexbn.programs import closed_form

    beta, n, d, out_kind = float(p["beta"]), int(p["n"]), int(p["d"]), p["output"]
    if n > d:
        raise ValueError(f"config experiments.closed_form: n={n} > d={d}; the closed form needs n <= d")
    X, Y = synthetic_data(n, d, int(p["seed"]), out_kind, classes=int(p["classes"]), noise=float(p["noise"]))
    cf = closed_form(X, Y, beta)
    fit_cf = _fit_or_zero(cf, X, Y)
    cf_net_obj = None
    if cf.params is not None:
        cf_net_obj = (
            evaluate_objective(bn_mlp_from_params(cf.params, X), X, Y, beta)
            if cf.params.width > 0
            else 0.5 * float(np.sum(Y**2))
        )
    cv = solve_exact(X, Y, beta, {**p, "arrangements": "exact"})
    fit_cv = _fit_or_zero(cv, X, Y)
    best, fit_gd, finals = _local_search(X, Y, beta, p, inputs.device)
    # fits relative to ‖Y‖ when the closed-form fit is (near) zero, i.e. for β ≥ ‖y_±‖

    def rel(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
        """‖a − b‖ relative to max(‖b‖, ‖Y‖): defined even when the closed-form fit is zero."""
        if a is None or b is None:
            return None
        return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.linalg.norm(Y), 1e-12))

    p_cf = cf.objective
    metrics = {
        "output": out_kind,
        "beta": beta,
        "n": n,
        "d": d,
        "p_closed": p_cf,
        "p_cvxpy": cv.objective,
        "p_gd_best": best,
        "closed_net_objective": cf_net_obj,
        "rel_diff_cvxpy": None if cv.objective is None else abs(cv.objective - p_cf) / max(1.0, abs(p_cf)),
        "rel_diff_gd": abs(best - p_cf) / max(1.0, abs(p_cf)),
        "fit_diff_cvxpy": rel(fit_cv, fit_cf),
        "fit_diff_gd": rel(fit_gd, fit_cf),
        "penalty_closed": None if cf.params is None else cf.params.penalty(),
        "penalty_cvxpy": None if cv.params is None else cv.params.penalty(),
        "neurons_closed": cf.neurons,
        "neurons_cvxpy": cv.neurons,
        "P": cv.arrangements,
        "gd_finals": finals,
        "method": "closed_form",
    }
    return {
        "metrics": metrics,
        "solver": record_dict(cv.record),
        "trace": [],
        "status": "ok" if cv.record.status == "optimal" else cv.record.status,
    }


def draw(summary: Any, trace: Any, dataset: str | None, out_dir: str) -> None:
    """The objective-vs-β figure and the table."""
    from convexbn import plots

    plots.plot_closed_form(summary, out_dir)
    plots.table_closed_form(summary, out_dir)
