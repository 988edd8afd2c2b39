"""Experiment 1 (claim 1): non-convex BN training never ends below the convex optimum p*.

Jobs: ``convex`` (p*, the sparsest optimal width m*, the reconstructed network's objective) and one
``{optimizer}_m{factor}x`` job per optimiser × width (factor · m*), each from several seeded inits.
"""

from __future__ import annotations

import functools
import json
import math
import time
from typing import Any

import numpy as np

from convexbn.devices import count_neurons
from convexbn.experiments.common import JobInputs, history_rows, record_dict, synthetic_data, train
from convexbn.programs import block_norms, sparsify_blocks

#: Parameters that determine the convex reference (shared by every job of the experiment).
REFERENCE_KEYS = ("n", "d", "noise", "beta", "seed", "solver", "arrangements")


def solve_exact(X: np.ndarray, Y: np.ndarray, beta: float, p: dict[str, Any]) -> Any:
    """Program (C2) with the job's arrangements and solver through convexbn.programs."""
    from convexbn.programs import solve_two_layer

    return solve_two_layer(
        X, Y, beta, arrangements=p["arrangements"], solver=p["solver"], seed=int(p["seed"]), loss="squared"
    )


def reconstructed_objective(
    res: Any, u: np.ndarray, up: np.ndarray, X: np.ndarray, Y: np.ndarray, beta: float
) -> float:
    """Objective of the BN network reconstructed from blocks (u, u') by an ordinary forward pass."""
    from convexbn.networks import bn_mlp_from_params, evaluate_objective
    from convexbn.programs import reconstruct_before

    wh = res.extra["whitening"]
    params = reconstruct_before(wh, u, up, 1e-9 * max(float(np.abs(u).max()), float(np.abs(up).max()), 1e-300))
    bias_value = None if abs(wh.bias_value - 1.0 / math.sqrt(X.shape[0])) < 1e-15 else wh.bias_value
    net = bn_mlp_from_params(params, X, placement="before", bias_value=bias_value)
    return evaluate_objective(net, X, Y, beta)


@functools.lru_cache(maxsize=4)
def _reference_cached(key: str) -> dict[str, Any]:
    """Convex reference (p*, sparsest m*, reconstruction), cached per reference-parameter key."""
    p = json.loads(key)
    X, Y = synthetic_data(int(p["n"]), int(p["d"]), int(p["seed"]), "scalar", noise=float(p["noise"]))
    beta = float(p["beta"])
    t0 = time.perf_counter()
    res = solve_exact(X, Y, beta, p)
    out: dict[str, Any] = {
        "p_star": res.objective,
        "record": record_dict(res.record),
        "P": res.arrangements,
        "neurons_solver": res.neurons,
        "X": X,
        "Y": Y,
        "solve_seconds": time.perf_counter() - t0,
    }
    if res.params is None or "u" not in res.extra:
        out.update({"m_star": None, "status": res.record.status})
        return out
    u, up = np.asarray(res.extra["u"]), np.asarray(res.extra["up"])
    u = u.reshape(u.shape[0], u.shape[1], -1)
    up = up.reshape(up.shape[0], up.shape[1], -1)
    us, ups, sp_status = sparsify_blocks(res.extra["whitening"].features(X), res.extra["arrangements"].masks, u, up)
    out.update(
        {
            "m_star": count_neurons(block_norms(us, ups)),
            "sparsify": sp_status,
            "reconstructed_objective": reconstructed_objective(res, us, ups, X, Y, beta),
            "reconstructed_objective_dense": reconstructed_objective(res, u, up, X, Y, beta),
            "neurons_dense": count_neurons(block_norms(u, up)),
            "status": res.record.status,
        }
    )
    return out


def reference(p: dict[str, Any]) -> dict[str, Any]:
    """The cached convex reference of a job's parameters."""
    return _reference_cached(json.dumps({k: p[k] for k in REFERENCE_KEYS}, sort_keys=True))


def _run_convex(ref: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """The convex job's record: p*, m*, the reconstructed objectives."""
    p_star = ref["p_star"]
    rec = ref.get("reconstructed_objective")
    metrics = {
        **common,
        "reconstructed_objective": rec,
        "reconstructed_objective_dense": ref.get("reconstructed_objective_dense"),
        "neurons_dense": ref.get("neurons_dense"),
        "sparsify": ref.get("sparsify"),
        "reconstruction_gap": None if rec is None else (rec - p_star) / max(1.0, abs(p_star)),
        "method": "convex",
        "solve_seconds": ref["solve_seconds"],
    }
    return {"metrics": metrics, "solver": ref["record"], "trace": [], "status": ref["status"]}


def run(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """Convex job: p*, m*, reconstructed objective; baseline job: one optimiser × width, several inits."""
    ref = reference(p)
    p_star = ref["p_star"]
    common = {"p_star": p_star, "m_star": ref["m_star"], "P": ref["P"]}
    if "optimizer" not in p:
        return _run_convex(ref, common)
    if ref["m_star"] is None:
        raise RuntimeError(
            f"equivalence: the convex reference failed (status {ref['status']}); "
            f"cannot size the networks; fix the solver (config defaults.solver) first"
        )
    opt, factor = p["optimizer"], float(p["width_factor"])
    width = max(1, int(math.ceil(factor * ref["m_star"])))
    X, Y, beta = ref["X"], ref["Y"], float(p["beta"])
    trace, finals, mins = [], [], []
    for init in range(int(p["inits"])):
        tr = train(
            X,
            Y,
            beta,
            width,
            optimizer=opt,
            lr=p["lr"],
            epochs=int(p["epochs"]),
            batch_size=p.get("batch_size"),
            seed=int(p["seed"]) * 1000 + init,
            device=inputs.device,
            dtype="float64",
        )
        objs = [h["objective"] for h in tr.history if h.get("objective") is not None]
        finals.append(float(tr.final_objective))
        mins.append(float(min(objs + [tr.final_objective])))
        trace += [{**row, "init": init} for row in history_rows(tr.history, int(p["trace_points"]))]
    scale = max(1.0, abs(p_star))
    metrics = {
        **common,
        "method": opt,
        "optimizer": opt,
        "width": width,
        "width_factor": factor,
        "inits": len(finals),
        "best_final_objective": min(finals),
        "worst_final_objective": max(finals),
        "min_objective": min(mins),
        "rel_gap_best": (min(finals) - p_star) / scale,
        "rel_gap_min": (min(mins) - p_star) / scale,
        "runs_below_p_star": int(sum((m - p_star) / scale < -float(p["tol"]) for m in mins)),
        "runs_reaching_p_star": int(sum((f - p_star) / scale < 1e-3 for f in finals)),
    }
    return {"metrics": metrics, "solver": ref["record"], "trace": trace, "status": "ok"}


def draw(summary: Any, trace: Any, dataset: str | None, out_dir: str) -> None:
    """The objective-vs-iteration figure and the table."""
    from convexbn import plots

    plots.plot_equivalence(summary, trace, out_dir)
    plots.table_equivalence(summary, out_dir)
