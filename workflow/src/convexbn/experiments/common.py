"""Helpers shared by the experiment modules: seeded synthetic data, traced fast solves, the SGD
reference on a prepared dataset and result records.

Every function takes the job's own parameters (a slice of the validated configuration, see
:mod:`convexbn.experiments.grid`); none supplies a configuration default.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from convexbn.devices import count_neurons
from convexbn.networks import accuracy, one_hot
from convexbn.programs import block_norms, convex_outputs

log = logging.getLogger("convexbn.experiments")


@dataclass
class JobInputs:
    """What a job reads besides its parameters: device, prepared dataset, whitening, checkpoint path."""

    device: str
    data: dict[str, Any] | None = None
    whitening: Any = None
    checkpoint: str | None = None


def synthetic_data(n: int, d: int, seed: int, outputs: str = "scalar", classes: int = 3,
                   noise: float = 0.1, teacher: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Seeded synthetic (X, Y): Gaussian inputs, labels from a random ReLU teacher (+ noise) or its argmax."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Wt = rng.standard_normal((d, teacher * max(classes, 1)))
    H = np.maximum(X @ Wt + 0.3 * rng.standard_normal(Wt.shape[1]), 0.0)
    if outputs == "scalar":
        y = H[:, :teacher] @ rng.standard_normal(teacher) + noise * rng.standard_normal(n)
        return X, ((y - y.mean()) / (y.std() + 1e-12))[:, None]
    if outputs != "onehot":
        raise ValueError(f"synthetic outputs={outputs!r}; choose 'scalar' or 'onehot'")
    scores = H @ rng.standard_normal((H.shape[1], classes)) + noise * rng.standard_normal((n, classes))
    labels = scores.argmax(axis=1)
    labels[:classes] = np.arange(classes)  # every class present
    return X, one_hot(labels, classes)


def log_indices(count: int, points: int) -> np.ndarray:
    """About `points` indices in [0, count) spaced logarithmically (always first and last)."""
    if count <= points:
        return np.arange(count)
    idx = np.unique(np.round(np.geomspace(1, count, points)).astype(int) - 1)
    return np.unique(np.concatenate([[0], idx, [count - 1]]))


def record_dict(rec: Any) -> dict[str, Any]:
    """A SolveRecord (or similar) as a plain dict."""
    if rec is None:
        return {}
    keys = ("solver", "status", "seconds", "iterations", "objective", "reason")
    out = {k: getattr(rec, k, None) for k in keys}
    extra = getattr(rec, "extra", None)
    if isinstance(extra, dict):
        out["extra"] = {k: v for k, v in extra.items() if isinstance(v, (int, float, str, bool, type(None)))}
    return out


def train(X: np.ndarray, Y: np.ndarray, beta: float, width: int, **kw: Any) -> Any:
    """convexbn.training.train_bn_network with the keyword arguments that are set (None = its default)."""
    from convexbn.training import train_bn_network

    return train_bn_network(X, Y, beta, width, **{k: v for k, v in kw.items() if v is not None})


def history_rows(hist: list[dict[str, Any]], points: int | None = None) -> list[dict[str, Any]]:
    """Trace rows (epoch, step, objective, seconds, accuracies) from a training history, log-subsampled."""
    keep = range(len(hist)) if points is None else log_indices(len(hist), points)
    cols = ("epoch", "step", "objective", "seconds", "train_acc", "val_acc", "test_acc")
    return [{c: hist[i].get(c) for c in cols if c in hist[i]} for i in keep]


def beta_of(p: dict[str, Any], n: int) -> float:
    """β in the paper's sum-loss convention: beta_per_sample · n."""
    return float(p["beta_per_sample"]) * n


def fast_solve_traced(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, *, settings: dict[str, Any],
                      chunks: int, device: str,
                      on_chunk: Callable[[np.ndarray, np.ndarray], dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """Run the fast solver in `chunks` warm-started pieces, calling on_chunk(u, u') after each."""
    from convexbn.solver import solve_c2_fast

    trace: list[dict[str, Any]] = []
    warm, sol = None, None
    it_total, sec_total = 0, 0.0
    chunks = max(1, int(chunks))
    per_iter = max(1, int(math.ceil(int(settings["max_iter"]) / chunks)))
    per_sec = float(settings["max_seconds"]) / chunks
    for c in range(chunks):
        sol = solve_c2_fast(Ut, Y, beta, masks, tol=float(settings["tol"]), max_iter=per_iter, max_seconds=per_sec,
                            device=device, warm_start=warm, polish=bool(settings["polish"]) and c == chunks - 1)
        it_total += int(sol.iterations or 0)
        sec_total += float(sol.seconds or 0.0)
        row = {"epoch": it_total, "step": it_total, "seconds": sec_total, "objective": float(sol.objective),
               "gap": None if sol.gap is None else float(sol.gap), **on_chunk(np.asarray(sol.u), np.asarray(sol.up))}
        trace.append(row)
        warm = sol
        if sol.status == "optimal":
            break
    return sol, trace


def solver_dict(sol: Any, seconds: float) -> dict[str, Any]:
    """Fast-solver outcome as a plain dict."""
    return {"solver": "fast", "status": sol.status, "seconds": seconds, "iterations": sol.iterations,
            "objective": float(sol.objective), "gap": None if sol.gap is None else float(sol.gap),
            "cone_violation": None if getattr(sol, "cone_violation", None) is None else float(sol.cone_violation)}


def convex_real(d: dict[str, Any], wh: Any, k: int | None, p: dict[str, Any], settings: dict[str, Any],
                device: str, chunks: int) -> dict[str, Any]:
    """Truncate the whitening, sample P arrangements, fast-solve with traced accuracies; train/val/test acc."""
    from convexbn.arrangements import sample_arrangements
    from convexbn.whitening import truncate

    wk = truncate(wh, k)
    Xtr = np.asarray(d["X_train"], dtype=np.float64)
    Y = one_hot(d["y_train"], int(d["num_classes"]))
    Ut = wk.features(Xtr)
    arr = sample_arrangements(Ut, int(p["arrangements"]), seed=int(p["seed"]))
    Phi_val = wk.features(np.asarray(d["X_val"], dtype=np.float64)) if len(d["y_val"]) else None
    Phi_te = wk.features(np.asarray(d["X_test"], dtype=np.float64))
    beta = beta_of(p, Xtr.shape[0])

    def evaluate(u: np.ndarray, up: np.ndarray) -> dict[str, Any]:
        """Train/val/test accuracy of the current convex iterate."""
        fit = convex_outputs(Ut, u, up)  # = Σ_i D_i U'(u_i − u'_i) when the cone constraints hold
        row = {"train_acc": accuracy(fit, d["y_train"]),
               "test_acc": accuracy(convex_outputs(Phi_te, u, up, arr.generators, p["predictor"]), d["y_test"])}
        if Phi_val is not None:
            row["val_acc"] = accuracy(convex_outputs(Phi_val, u, up, arr.generators, p["predictor"]), d["y_val"])
        return row

    t0 = time.perf_counter()
    sol, trace = fast_solve_traced(Ut, Y, beta, arr.masks, settings=settings, chunks=chunks, device=device,
                                   on_chunk=evaluate)
    seconds = time.perf_counter() - t0
    last = trace[-1]
    return {"k": wk.k, "q": wk.q, "P": arr.count, "beta": beta, "objective": float(sol.objective),
            "train_acc": last["train_acc"], "val_acc": last.get("val_acc"), "test_acc": last["test_acc"],
            "neurons": count_neurons(block_norms(np.asarray(sol.u), np.asarray(sol.up)), rel_tol=1e-6),
            "solver": solver_dict(sol, seconds), "trace": trace}


def sgd_lr(s: dict[str, Any], n: int, beta: float) -> float:
    """SGD step: 'lr' as given, else lr_factor × training's stable default 0.1/(n(1 + width/4 + β))."""
    if s.get("lr") is not None:
        return float(s["lr"])
    from convexbn.training import default_lr

    return float(s["lr_factor"]) * default_lr("sgd", n, int(s["width"]), beta)


def sgd_real(d: dict[str, Any], p: dict[str, Any], device: str, checkpoint: str | None) -> dict[str, Any]:
    """SGD-trained BN network on a prepared dataset; per-epoch accuracy trace with wall-clock time."""
    from convexbn.networks import predict
    from convexbn.training import CheckpointMismatch

    s = p["sgd"]
    C = int(d["num_classes"])
    Xtr = np.asarray(d["X_train"], dtype=np.float64)
    beta = beta_of(p, Xtr.shape[0])
    args = (Xtr, one_hot(d["y_train"], C), beta, int(s["width"]))
    kwargs = {"optimizer": "sgd", "lr": sgd_lr(s, Xtr.shape[0], beta), "epochs": int(s["epochs"]),
              "batch_size": int(s["batch_size"]), "momentum": float(s["momentum"]), "seed": int(p["seed"]),
              "device": device, "dtype": s["dtype"], "X_test": np.asarray(d["X_test"], dtype=np.float64),
              "Y_test": one_hot(d["y_test"], C), "checkpoint": checkpoint}
    try:
        tr = train(*args, **kwargs)
    except CheckpointMismatch as exc:  # left by a different configuration (or a longer run): start afresh
        if checkpoint is None:
            raise
        log.warning("discarding stale checkpoint %s: %s", checkpoint, exc)
        Path(checkpoint).unlink(missing_ok=True)
        tr = train(*args, **kwargs)
    res = {"objective": float(tr.final_objective), "train_acc": accuracy(predict(tr.model, Xtr), d["y_train"]),
           "test_acc": accuracy(predict(tr.model, np.asarray(d["X_test"], dtype=np.float64)), d["y_test"]),
           "width": int(s["width"]), "beta": beta, "trace": history_rows(tr.history), "seconds": float(tr.seconds)}
    if len(d["y_val"]):
        res["val_acc"] = accuracy(predict(tr.model, np.asarray(d["X_val"], dtype=np.float64)), d["y_val"])
    return res
