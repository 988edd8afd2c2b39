"""Experiment 6 (claim 6): the SGD-trained BN network against the exact (fully whitened) convex model
and the truncated convex model, on real data, over seeds. Every method is a grid of settings chosen
on validation with the one selection rule (:mod:`convexbn.experiments.selection`); the whole grid
(validation and test of every point) is recorded. `convex_P` jobs repeat the truncated model's
selection at other numbers of arrangements P (test accuracy against P).

The truncated model runs one job per (dataset, seed, k), so adding a k adds jobs without re-running
the others; each job chooses β on its own path, and `add_columns` chooses k on validation with the
same rule when the jobs are aggregated (the best of the per-k choices is the choice over the whole
grid, since the rule is one lexicographic order)."""

from __future__ import annotations

from typing import Any

from convexbn.experiments.common import JobInputs
from convexbn.experiments.protocol import convex_grid, sgd_grid, uncertified_note
from convexbn.experiments.selection import select_on_validation, selected_by, selection_rule

#: Tie-breaks of the selection per method: the stronger regularisation, then the cheaper setting.
TIES: dict[str, tuple[str, ...]] = {"sgd": ("-beta_per_sample", "epochs", "lr_factor"), "convex": ("-beta_ratio", "k")}
#: Methods run as one job per k whose choice of k is made at aggregation.
PER_K: frozenset[str] = frozenset({"convex_truncated", "convex_P"})


def _ks(p: dict[str, Any], rank: int) -> list[Any]:
    """The job's truncation values (None = full whitening; a per-k job's k ≥ rank is full whitening)."""
    if p["method"] == "convex_full":
        return [None]
    if "ks" not in p:
        return [None if p["k"] is None or int(p["k"]) >= rank else int(p["k"])]
    return [None if k == "full" else int(k) for k in p["ks"]]


def _grid_record(base: dict[str, Any], points: list[dict[str, Any]], best: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid points tagged with the job's method/seed and whether each is the validation choice."""
    return [{**base, **pt, "selected": pt is best} for pt in points]


def run_sgd_grid(p: dict[str, Any], inputs: JobInputs, base: dict[str, Any]) -> dict[str, Any]:
    """The SGD grid (β × lr factor × epochs) for one seed; the validation choice among the non-diverged trainings."""
    points, traces = sgd_grid(inputs.data, p, inputs.device, inputs.checkpoint)
    trained = [pt for pt in points if pt["training_status"] == "ok"]  # diverged points are recorded, not chosen
    best = select_on_validation(trained, TIES["sgd"])
    per_run = len(points) // len(traces)  # one training per (β, lr), resumed through the epoch grid
    run = next(i for i, pt in enumerate(points) if pt is best) // per_run
    test_at = {pt["epochs"]: pt["test_acc"] for pt in points[run * per_run : (run + 1) * per_run]}
    trace = [{**t, "test_acc": test_at.get(t["epoch"])} for t in traces[run]]
    metrics = {
        **base,
        **best,
        "selected_by": selected_by(trained),
        "selection_rule": selection_rule(trained),
        "grid_points": len(points),
        "grid_diverged": len(points) - len(trained),
        "grid_trainings": len(traces),
        "grid_seconds": sum(tr[-1]["seconds"] or 0.0 for tr in traces if tr),
    }
    return {"metrics": metrics, "solver": {}, "trace": trace, "status": "ok", "grid": _grid_record(base, points, best)}


def run_convex_grid(p: dict[str, Any], inputs: JobInputs, base: dict[str, Any]) -> dict[str, Any]:
    """The convex paths of the job's ks at its P; (β ratio, k) chosen on validation."""
    P = int(p.get("P") or p["arrangements"])
    points = convex_grid(inputs.data, inputs.whitening, _ks(p, inputs.whitening.k), p, P, inputs.device)
    best = select_on_validation(points, TIES["convex"])
    path = [pt for pt in points if pt["k"] == best["k"]]
    its, secs, trace = 0, 0.0, []
    for pt in path:
        its, secs = its + pt["iterations"], secs + pt["seconds"]
        trace.append(
            {
                "epoch": its,
                "step": its,
                "seconds": secs,
                "objective": pt["objective"],
                "train_acc": pt["train_acc"],
                "val_acc": pt["val_acc"],
                "test_acc": pt["test_acc"],
            }
        )
    bad = uncertified_note(points)
    metrics = {
        **base,
        **best,
        "selected_by": selected_by(points),
        "selection_rule": selection_rule(points),
        "k_selected_by": selection_rule(points),
        "grid_points": len(points),
        "grid_certified": sum(bool(pt["certified"]) for pt in points),
        "uncertified": bad,
        "grid_seconds": sum(pt["seconds"] for pt in points),
    }
    solver = {"solver": "fast", "status": best["solver_status"], "gap": best["solver_gap"], "seconds": best["seconds"]}
    return {
        "metrics": metrics,
        "solver": solver,
        "trace": trace,
        "status": best["solver_status"],
        "grid": _grid_record(base, points, best),
    }


_METHODS = {
    "sgd": run_sgd_grid,
    "convex_full": run_convex_grid,
    "convex_truncated": run_convex_grid,
    "convex_P": run_convex_grid,
}


def run(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """The job's method on its dataset for its seed."""
    base = {"method": p["method"], "dataset": p["dataset"], "seed": p["seed"]}
    if p["method"] in PER_K:  # the jobs whose k is chosen together (arrangements as requested)
        base["P_requested"] = int(p.get("P") or p["arrangements"])
    return _METHODS[p["method"]](p, inputs, base)


def _combine(members: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-k summary row chosen on validation, with grid counts and times summed over the k jobs."""
    best = select_on_validation(members, TIES["convex"])
    total = lambda key: sum(float(m.get(key) or 0.0) for m in members)  # noqa: E731
    return {
        **best,
        "grid_points": int(total("grid_points")),
        "grid_certified": int(total("grid_certified")),
        "grid_seconds": total("grid_seconds"),
        "grid_jobs": len(members),
        "wall_seconds": total("wall_seconds"),
        "uncertified": "; ".join(str(m["uncertified"]) for m in members if m.get("uncertified")),
        "selected_by": selected_by(members),
        "k_selected_by": selection_rule(members),
    }


def add_columns(rows: list[dict[str, Any]], docs: list[dict[str, Any]]) -> None:
    """Choose k on validation over the per-k jobs of each (dataset, method, seed, P): one summary row and the
    chosen job's trace remain; every grid row stays, `selected` only on the overall choice."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if r["record"] == "summary" and r.get("method") in PER_K:
            key = (r.get("dataset"), r["method"], r.get("seed"), r.get("P_requested"))
            groups.setdefault(key, []).append(r)
    dropped: set[str] = set()
    chosen: dict[str, dict[str, Any]] = {}
    for members in groups.values():
        combined = _combine(members)
        chosen[combined["job"]] = combined
        dropped |= {m["job"] for m in members if m["job"] != combined["job"]}
    for r in rows:
        if r["record"] == "grid" and r["job"] in dropped:
            r["selected"] = False
    kept = [r for r in rows if not (r["record"] in ("summary", "trace") and r["job"] in dropped)]
    rows[:] = [chosen.get(r["job"], r) if r["record"] == "summary" else r for r in kept]


def draw(summary: Any, trace: Any, dataset: str | None, out_dir: str) -> None:
    """Test accuracy vs epoch and vs time, and the mean ± std table of one dataset."""
    from convexbn import plots

    for x in ("epoch", "time"):
        plots.plot_main(summary, trace, dataset, x, out_dir)
    plots.table_main(summary[summary["dataset"] == dataset], out_dir, f"main_accuracy_table_{dataset}")


def draw_grid(summary: Any, grid: Any, dataset: str | None, out_dir: str) -> None:
    """The whole grids (validation and test of every point), accuracy against P and both predictors (A4)."""
    from convexbn import plots

    plots.table_grid(grid, out_dir, f"main_grid_table_{dataset}", "main_comparison")
    plots.table_knobs(summary[summary["dataset"] == dataset], out_dir, f"main_knobs_table_{dataset}")
