"""Experiment 5 (claim 5): whitening truncated to the top-k singular directions makes GD's implicit
bias explicit. Per dataset: the SGD-trained BN network as reference and one convex job per k
(train/validation/test accuracy; k is chosen on validation when the tables are drawn)."""

from __future__ import annotations

from typing import Any

from convexbn.experiments.common import JobInputs, convex_real, sgd_real


def _run_sgd(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """The SGD reference on the job's dataset (resumable from its checkpoint)."""
    r = sgd_real(inputs.data, p, inputs.device, inputs.checkpoint)
    metrics = {"method": "sgd", "dataset": p["dataset"],
               **{k: r[k] for k in ("objective", "train_acc", "test_acc", "width", "beta") if k in r},
               "val_acc": r.get("val_acc"), "k": None}
    return {"metrics": metrics, "solver": {}, "trace": r["trace"], "status": "ok"}


def _run_convex(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """The convex model with whitening truncated to the job's k (None: full whitening)."""
    from convexbn.experiments.grid import k_label

    wh = inputs.whitening
    r = convex_real(inputs.data, wh, p["k"], p, p["convex"], inputs.device, chunks=1)
    metrics = {"method": "convex", "dataset": p["dataset"], "k": r["k"],
               "k_label": k_label("full" if p["k"] is None else p["k"]), "q": r["q"], "P": r["P"],
               "beta": r["beta"], "objective": r["objective"], "train_acc": r["train_acc"], "val_acc": r["val_acc"],
               "test_acc": r["test_acc"], "neurons": r["neurons"], "rank": wh.rank}
    return {"metrics": metrics, "solver": r["solver"], "trace": r["trace"], "status": r["solver"]["status"]}


_METHODS = {"sgd": _run_sgd, "convex": _run_convex}


def run(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """The job's method on its dataset."""
    return _METHODS[p["method"]](p, inputs)


def draw(summary: Any, trace: Any, dataset: str | None, out_dir: str) -> None:
    """Accuracy vs k and the table of one dataset, k chosen on validation."""
    from convexbn import plots

    plots.plot_truncation(summary, dataset, out_dir)
    plots.table_truncation(summary[summary["dataset"] == dataset], out_dir, f"truncation_table_{dataset}")
