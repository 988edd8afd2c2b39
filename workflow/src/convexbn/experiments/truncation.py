"""Experiment 5 (claim 5): whitening truncated to the top-k singular directions makes GD's implicit
bias explicit. Per dataset: the SGD-trained BN network as reference (its validated grid) and one
convex job per k, each a warm-started path over β/β_max with β chosen on validation; k is chosen on
validation by the claims scoreboard and the tables with the same rule."""

from __future__ import annotations

from typing import Any

from convexbn.experiments.common import JobInputs
from convexbn.experiments.main_comparison import run_convex_grid, run_sgd_grid


def run(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """The SGD grid or one k's convex path on the job's dataset."""
    from convexbn.experiments.grid import k_label

    base = {"method": p["method"], "dataset": p["dataset"], "seed": p["seed"]}
    if p["method"] == "sgd":
        res = run_sgd_grid(p, inputs, base)
        res["metrics"]["k"] = None
        return res
    ks = [p["k"] if p["k"] is not None and int(p["k"]) < inputs.whitening.k else "full"]  # k ≥ rank: full
    res = run_convex_grid({**p, "method": "convex_k", "ks": ks}, inputs, base)
    res["metrics"].update({"k_label": k_label("full" if p["k"] is None else p["k"]), "rank": inputs.whitening.rank})
    return res


def draw(summary: Any, trace: Any, dataset: str | None, out_dir: str) -> None:
    """Accuracy against k (validation-chosen k marked) and the per-k table of one dataset."""
    from convexbn import plots

    plots.plot_truncation(summary, dataset, out_dir)
    plots.table_truncation(summary[summary["dataset"] == dataset], out_dir, f"truncation_table_{dataset}")


def draw_grid(summary: Any, grid: Any, dataset: str | None, out_dir: str) -> None:
    """The whole grid of every job (validation and test of every point)."""
    from convexbn import plots

    plots.table_grid(grid, out_dir, f"truncation_grid_table_{dataset}", "truncation")
