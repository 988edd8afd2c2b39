"""Experiment 6 (claim 6): the SGD-trained BN network against the exact (fully whitened) convex model
and the truncated convex model with k chosen on validation, on real data, over seeds."""

from __future__ import annotations

from typing import Any

from convexbn.experiments.common import JobInputs, convex_real, sgd_real
from convexbn.experiments.selection import select_on_validation, selection_rule


def _run_sgd(p: dict[str, Any], inputs: JobInputs, base: dict[str, Any]) -> dict[str, Any]:
    """The SGD-trained BN network for one seed (resumable from its checkpoint)."""
    r = sgd_real(inputs.data, p, inputs.device, inputs.checkpoint)
    metrics = {**base, **{k: r.get(k) for k in ("objective", "train_acc", "val_acc", "test_acc", "width", "beta")},
               "seconds": r["seconds"]}
    return {"metrics": metrics, "solver": {}, "trace": r["trace"], "status": "ok"}


def _run_full(p: dict[str, Any], inputs: JobInputs, base: dict[str, Any]) -> dict[str, Any]:
    """The fully whitened convex model, with accuracy checkpoints along the solve."""
    r = convex_real(inputs.data, inputs.whitening, None, p, p["convex_full"], inputs.device, int(p["trace_points"]))
    metrics = {**base, **{k: r[k] for k in ("k", "q", "P", "beta", "objective", "train_acc", "val_acc", "test_acc",
                                            "neurons")}, "seconds": r["solver"]["seconds"]}
    return {"metrics": metrics, "solver": r["solver"], "trace": r["trace"], "status": r["solver"]["status"]}


def _run_truncated(p: dict[str, Any], inputs: JobInputs, base: dict[str, Any]) -> dict[str, Any]:
    """One truncated convex model per k below the data rank; the one chosen on validation is reported."""
    wh = inputs.whitening
    results = [convex_real(inputs.data, wh, None if k == "full" else int(k), p, p["convex_truncated"], inputs.device,
                           int(p["trace_points"]))
               for k in p["ks"] if k == "full" or int(k) < wh.k]
    if not results:
        raise ValueError(f"main_comparison.ks={p['ks']}: every k is >= the data rank {wh.k}; choose smaller ks")
    best = select_on_validation(results)
    metrics = {**base, **{k: best[k] for k in ("k", "q", "P", "beta", "objective", "train_acc", "val_acc",
                                               "test_acc", "neurons")},
               "k_selected_by": selection_rule(results),
               "k_candidates": [r["k"] for r in results], "val_acc_candidates": [r["val_acc"] for r in results],
               "seconds": best["solver"]["seconds"], "seconds_all_k": sum(r["solver"]["seconds"] for r in results)}
    return {"metrics": metrics, "solver": best["solver"], "trace": best["trace"], "status": best["solver"]["status"]}


_METHODS = {"sgd": _run_sgd, "convex_full": _run_full, "convex_truncated": _run_truncated}


def run(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """The job's method on its dataset for its seed."""
    base = {"method": p["method"], "dataset": p["dataset"], "seed": p["seed"]}
    return _METHODS[p["method"]](p, inputs, base)


def draw(summary: Any, trace: Any, dataset: str | None, out_dir: str) -> None:
    """Test accuracy vs epoch and vs time, and the mean ± std table of one dataset."""
    from convexbn import plots

    for x in ("epoch", "time"):
        plots.plot_main(summary, trace, dataset, x, out_dir)
    plots.table_main(summary[summary["dataset"] == dataset], out_dir, f"main_accuracy_table_{dataset}")
