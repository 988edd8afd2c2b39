"""Helpers shared by the experiment modules: seeded synthetic data, traced fast solves, training
calls, the SGD step size and result records (the real-data grids live in :mod:`.protocol`).

Every function takes the job's own parameters (a slice of the validated configuration, see
:mod:`convexbn.experiments.grid`); none supplies a configuration default.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from convexbn.networks import one_hot

log = logging.getLogger("convexbn.experiments")


@dataclass
class JobInputs:
    """What a job reads besides its parameters: device, prepared dataset, whitening, checkpoint path."""

    device: str
    data: dict[str, Any] | None = None
    whitening: Any = None
    checkpoint: str | None = None


def synthetic_data(
    n: int, d: int, seed: int, outputs: str = "scalar", classes: int = 3, noise: float = 0.1, teacher: int = 3
) -> tuple[np.ndarray, np.ndarray]:
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


def fast_solve_traced(
    Ut: np.ndarray,
    Y: np.ndarray,
    beta: float,
    masks: np.ndarray,
    *,
    settings: dict[str, Any],
    chunks: int,
    device: str,
    on_chunk: Callable[[np.ndarray, np.ndarray], dict[str, Any]],
) -> tuple[Any, list[dict[str, Any]]]:
    """Run the fast solver in `chunks` warm-started pieces, calling on_chunk(u, u') after each."""
    from convexbn.solver import solve_c2_fast

    trace: list[dict[str, Any]] = []
    warm, sol = None, None
    it_total, sec_total = 0, 0.0
    chunks = max(1, int(chunks))
    per_iter = max(1, int(math.ceil(int(settings["max_iter"]) / chunks)))
    per_sec = float(settings["max_seconds"]) / chunks
    for c in range(chunks):
        sol = solve_c2_fast(
            Ut,
            Y,
            beta,
            masks,
            tol=float(settings["tol"]),
            max_iter=per_iter,
            max_seconds=per_sec,
            device=device,
            warm_start=warm,
            polish=bool(settings["polish"]) and c == chunks - 1,
        )
        it_total += int(sol.iterations or 0)
        sec_total += float(sol.seconds or 0.0)
        row = {
            "epoch": it_total,
            "step": it_total,
            "seconds": sec_total,
            "objective": float(sol.objective),
            "gap": None if sol.gap is None else float(sol.gap),
            **on_chunk(np.asarray(sol.u), np.asarray(sol.up)),
        }
        trace.append(row)
        warm = sol
        if sol.status == "optimal":
            break
    return sol, trace


def solver_dict(sol: Any, seconds: float) -> dict[str, Any]:
    """Fast-solver outcome as a plain dict."""
    return {
        "solver": "fast",
        "status": sol.status,
        "seconds": seconds,
        "iterations": sol.iterations,
        "objective": float(sol.objective),
        "gap": None if sol.gap is None else float(sol.gap),
        "cone_violation": None if getattr(sol, "cone_violation", None) is None else float(sol.cone_violation),
    }


def sgd_lr(s: dict[str, Any], n: int, beta: float) -> float:
    """SGD step: 'lr' as given, else lr_factor × training's stable default 0.1/(n(1 + width/4 + β))."""
    if s.get("lr") is not None:
        return float(s["lr"])
    from convexbn.training import default_lr

    return float(s["lr_factor"]) * default_lr("sgd", n, int(s["width"]), beta)
