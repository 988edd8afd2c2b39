"""Experiment 4 (claim 4): gradient descent on the BN network concentrates the first layer on the
large singular directions of the data; the convex solution does not. Per dataset: a GD job
(energy per singular direction at snapshot epochs) and a convex job (energy of the convex optimum).

Both minimise the same objective (docs/math.md §1) at the same β, given relative to the data:
β = beta_ratio · β_max, with β_max the smallest β whose convex optimum is the zero network, computed
on the job's training subset with the convex job's sampled arrangements."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from convexbn.experiments.common import JobInputs, fast_solve_traced, history_rows, solver_dict, train
from convexbn.networks import accuracy, one_hot
from convexbn.whitening import path_energy_convex, path_energy_network, top_fraction_energy


def _subset(p: dict[str, Any], d: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """(X, y, Y one-hot, whitening) of the first n_train training samples."""
    from convexbn.whitening import whiten

    n = min(int(p["n_train"]), len(d["y_train"]))
    X = np.asarray(d["X_train"][:n], dtype=np.float64)
    y = d["y_train"][:n]
    return X, y, one_hot(y, int(d["num_classes"])), whiten(X)


def _beta(p: dict[str, Any], X: np.ndarray, Y: np.ndarray, wh: Any) -> tuple[float, float, Any]:
    """(β, β_max, arrangements): β = beta_ratio · β_max of the convex program on the job's training subset."""
    from convexbn.arrangements import arrangements_for
    from convexbn.solver import beta_max

    Ut = wh.features(X)
    arr = arrangements_for(Ut, p["arrangements"], seed=int(p["seed"]))
    bmax = float(beta_max(Ut, Y, arr.masks))
    return float(p["beta_ratio"]) * bmax, bmax, arr


def _spectrum(wh: Any) -> list[dict[str, Any]]:
    """Trace rows of the data's singular values."""
    return [{"record_kind": "spectrum", "index": i + 1, "sigma": float(s)} for i, s in enumerate(wh.full_sigma)]


def _gd_snapshots(
    X: np.ndarray, Y: np.ndarray, beta: float, p: dict[str, Any], wh: Any, device: str
) -> tuple[Any, dict[int, np.ndarray], list[dict[str, Any]], list[dict[str, Any]]]:
    """(final model, energy per snapshot epoch, energy trace rows, objective history) of full-batch GD."""
    g, width, seed = p["gd"], int(p["width"]), int(p["seed"])
    snaps = sorted({int(e) for e in g["snapshots"]} | {0, int(g["epochs"])})
    model, done, trace, history, energies = None, 0, [], [], {}
    for e in snaps:
        if e > done:
            tr = train(
                X,
                Y,
                beta,
                width,
                optimizer="gd",
                lr=g["lr"],
                epochs=e - done,
                seed=seed,
                device=device,
                dtype="float64",
                init=model,
            )
            history.extend(
                {**h, "epoch": done + h.get("epoch", 0)} for h in tr.history if not (history and h.get("epoch", 0) == 0)
            )  # epoch 0 of a segment = last record
            model, done = tr.model, e
        elif model is None:
            import torch

            from convexbn.networks import BNMLP

            torch.manual_seed(seed)
            model = BNMLP(X.shape[1], width, Y.shape[1]).double().to(device)
        prm = model.to_params(X.shape[0])
        energies[e] = path_energy_network(prm.W, prm.gamma, prm.V, wh.V, wh.sigma)
        trace += [
            {"record_kind": "energy", "epoch": e, "index": i + 1, "energy": float(v)} for i, v in enumerate(energies[e])
        ]
    return model, energies, trace, history


def _run_gd(p: dict[str, Any], d: dict[str, Any], device: str) -> dict[str, Any]:
    """Energy of GD snapshots, top-fraction energy at init and at the end, accuracies."""
    from convexbn.networks import predict

    X, y, Y, wh = _subset(p, d)
    (beta, bmax, _), frac = _beta(p, X, Y, wh), float(p["top_fraction"])
    model, energies, trace, history = _gd_snapshots(X, Y, beta, p, wh, device)
    metrics = {
        "method": "gd",
        "dataset": p["dataset"],
        "n": X.shape[0],
        "rank": wh.k,
        "beta": beta,
        "beta_ratio": float(p["beta_ratio"]),
        "beta_max": bmax,
        "epochs": int(p["gd"]["epochs"]),
        "top_energy_init": top_fraction_energy(energies[0], frac),
        "top_energy": top_fraction_energy(energies[max(energies)], frac),
        "top_fraction": frac,
        "train_acc": accuracy(predict(model, X), y),
        "test_acc": accuracy(predict(model, np.asarray(d["X_test"], dtype=np.float64)), d["y_test"]),
        "objective": history[-1]["objective"] if history else None,
    }
    trace += [{"record_kind": "objective", **row} for row in history_rows(history, 100)]
    return {"metrics": metrics, "solver": {}, "trace": trace + _spectrum(wh), "status": "ok"}


def _run_convex(p: dict[str, Any], d: dict[str, Any], device: str) -> dict[str, Any]:
    """Energy of the convex solution on the same subset, its top-fraction energy and accuracies."""
    from convexbn.programs import convex_outputs

    X, y, Y, wh = _subset(p, d)
    (beta, bmax, arr), frac, cc = _beta(p, X, Y, wh), float(p["top_fraction"]), p["convex"]
    Ut = wh.features(X)
    t0 = time.perf_counter()
    sol, _ = fast_solve_traced(Ut, Y, beta, arr.masks, settings=cc, chunks=1, device=device, on_chunk=lambda u, up: {})
    u, up = np.asarray(sol.u), np.asarray(sol.up)
    E = path_energy_convex(u, up, wh.k)
    Xte = np.asarray(d["X_test"], dtype=np.float64)
    metrics = {
        "method": "convex",
        "dataset": p["dataset"],
        "n": X.shape[0],
        "rank": wh.k,
        "beta": beta,
        "beta_ratio": float(p["beta_ratio"]),
        "beta_max": bmax,
        "P": arr.count,
        "top_energy": top_fraction_energy(E, frac),
        "top_fraction": frac,
        "train_acc": accuracy(convex_outputs(Ut, u, up), y),
        "test_acc": accuracy(convex_outputs(wh.features(Xte), u, up), d["y_test"]),
        "objective": float(sol.objective),
    }
    trace = [{"record_kind": "energy", "epoch": None, "index": i + 1, "energy": float(v)} for i, v in enumerate(E)]
    return {
        "metrics": metrics,
        "solver": solver_dict(sol, time.perf_counter() - t0),
        "trace": trace + _spectrum(wh),
        "status": sol.status,
    }


_METHODS = {"gd": _run_gd, "convex": _run_convex}


def run(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """The job's method (GD snapshots or the convex solve) on one dataset's training subset."""
    return _METHODS[p["method"]](p, inputs.data, inputs.device)


def draw(summary: Any, trace: Any, dataset: str | None, out_dir: str) -> None:
    """The energy figure and the table of one dataset."""
    from convexbn import plots

    plots.plot_implicit_bias(summary, trace, dataset, out_dir)
    plots.table_implicit_bias(summary[summary["dataset"] == dataset], out_dir, f"implicit_bias_table_{dataset}")
