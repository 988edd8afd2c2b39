"""Run one job, aggregate an experiment's job JSONs into a tidy CSV, draw a table's figures.

Each experiment module (``convexbn.experiments.<name>``) provides ``run(params, inputs)`` and
``draw(summary, trace, dataset, out_dir)``, and optionally ``add_columns(rows, docs)`` for derived
table columns. The aggregated CSV is long-format with a ``record`` column: ``summary`` rows (one per
job, metrics) and ``trace`` rows (one per recorded epoch/step of a run), so figures never re-run anything.
"""

from __future__ import annotations

import importlib
import logging
import time
from types import ModuleType
from typing import Any

import numpy as np

from convexbn.experiments.common import JobInputs
from convexbn.experiments.grid import EXPERIMENT_NAMES, Job

log = logging.getLogger("convexbn.experiments")


def module_of(name: str) -> ModuleType:
    """The module implementing experiment `name`."""
    if name not in EXPERIMENT_NAMES:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENT_NAMES)}")
    return importlib.import_module(f"convexbn.experiments.{name}")


def job_device(spec: str) -> str:
    """The torch device a job runs on ('auto' → CUDA when present), as a string."""
    from convexbn.devices import resolve_device

    try:
        return str(resolve_device(spec))
    except ValueError as exc:
        raise ValueError(f"config key defaults.device (or the experiment's device): {exc}") from None


def _strip_arrays(obj: Any) -> Any:
    """Drop non-JSON heavy objects (arrays of solutions, models) from a result dict."""
    if isinstance(obj, dict):
        return {k: _strip_arrays(v) for k, v in obj.items() if k not in ("u", "up", "model", "whitening")}
    if isinstance(obj, list):
        return [_strip_arrays(v) for v in obj]
    return obj


def _inputs(
    job: Job, device: str, data: dict[str, str], whitening: dict[str, str], checkpoint: str | None
) -> tuple[JobInputs, bool]:
    """The job's inputs (its dataset and whitening loaded) and whether its data are synthetic."""
    from convexbn.experiments.datasets import load_prepared
    from convexbn.whitening import load_whitening

    if not job.datasets:
        return JobInputs(device=device, checkpoint=checkpoint), True
    ds = job.datasets[0]
    if ds not in data or ds not in whitening:
        raise ValueError(
            f"experiment {job.experiment}, job {job.id}: no prepared data/whitening path for dataset "
            f"{ds!r} (got {sorted(data)}); the pipeline must pass both"
        )
    d = load_prepared(data[ds])
    return (
        JobInputs(device=device, data=d, whitening=load_whitening(whitening[ds]), checkpoint=checkpoint),
        bool(d["meta"].get("synthetic", False)),
    )


def run_job(
    job: Job, data: dict[str, str], whitening: dict[str, str], out_json: str, checkpoint: str | None = None
) -> None:
    """Run one job and write its JSON (metrics, trace, solver status, provenance) atomically to out_json."""
    import torch

    from convexbn.io import provenance, write_json

    p = job.params
    torch.set_num_threads(max(1, int(p["threads"])))
    device = job_device(p["device"])
    np.random.seed(int(p["seed"]))
    t0 = time.perf_counter()
    log.info("experiment %s: job %s on %s", job.experiment, job.id, device)
    inputs, synthetic = _inputs(job, device, data, whitening, checkpoint)
    res = module_of(job.experiment).run(p, inputs)
    seconds = time.perf_counter() - t0
    doc = {
        "experiment": job.experiment,
        "job": job.id,
        "kind": job.kind,
        "dataset": job.datasets[0] if job.datasets else None,
        "synthetic": synthetic,
        "status": res["status"],
        "device": device,
        "wall_seconds": seconds,
        "metrics": _strip_arrays(res["metrics"]),
        "solver": res["solver"],
        "trace": _strip_arrays(res["trace"]),
        "grid": _strip_arrays(res.get("grid", [])),
        "provenance": provenance(config=p, seed=int(p["seed"]), device=device, seconds=seconds),
    }
    write_json(out_json, doc)


def _flat_scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics restricted to scalars (lists/dicts are kept in the JSON, not the CSV)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


def _rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary row and the trace rows of one job JSON."""
    base = {
        "experiment": doc["experiment"],
        "job": doc["job"],
        "kind": doc["kind"],
        "dataset": doc.get("dataset"),
        "synthetic": bool(doc.get("synthetic", False)),
        "device": doc.get("device"),
        "status": doc.get("status"),
    }
    summary = {
        "record": "summary",
        **base,
        "wall_seconds": doc.get("wall_seconds"),
        **_flat_scalar_metrics(doc["metrics"]),
    }
    solver = doc.get("solver") or {}
    summary.update({f"solver_{k}": v for k, v in solver.items() if isinstance(v, (int, float, str, bool))})
    meta = {
        k: doc["metrics"].get(k)
        for k in ("method", "seed", "width", "width_factor", "optimizer", "k")
        if k in doc["metrics"]
    }
    grid = [{"record": "grid", **base, **_flat_scalar_metrics(g)} for g in doc.get("grid", [])]
    trace = [{"record": "trace", **base, **meta, **_flat_scalar_metrics(t)} for t in doc.get("trace", [])]
    return [summary] + trace + grid


def aggregate(name: str, job_jsons: list[str], out_csv: str) -> None:
    """Merge job JSONs into one tidy long-format CSV: summary rows (one per job) and trace rows."""
    import pandas as pd

    from convexbn.io import atomic_write_bytes, read_json

    module = module_of(name)
    docs = [read_json(p) for p in job_jsons]
    if not docs:
        raise ValueError(f"aggregate {name}: no job JSONs given")
    rows = [row for doc in docs for row in _rows(doc)]
    if hasattr(module, "add_columns"):
        module.add_columns(rows, docs)
    atomic_write_bytes(out_csv, pd.DataFrame(rows).to_csv(index=False).encode())


def make_figures(name: str, dataset: str | None, plot: dict[str, Any], table_csv: str, out_dir: str) -> None:
    """Draw every figure and write every table of one aggregated CSV, in the experiment's `plot` style."""
    from convexbn import plots

    summary, trace = plots.read_table(table_csv)
    if dataset is not None and summary[summary["dataset"] == dataset].empty:
        raise ValueError(f"{table_csv}: no rows for dataset {dataset!r} of experiment {name}")
    module = module_of(name)
    with plots.style(plot.get("rc", {})):
        module.draw(summary, trace, dataset, out_dir)
        if hasattr(module, "draw_grid"):
            module.draw_grid(summary, plots.read_grid(table_csv), dataset, out_dir)
