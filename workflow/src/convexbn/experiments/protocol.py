"""The validated comparison protocol on real data: every method is a grid of settings, each grid
point is scored on train/validation/test, and one setting is chosen on validation with
:func:`convexbn.experiments.selection.select_on_validation`.

- Convex model: β as ratios of β_max (the smallest β whose optimum is the zero network, computed on
  the training features of the job's k and arrangements), solved as one warm-started certified path
  (`convexbn.solver.solve_path`); every point is scored with both test-time predictors (A4).
- SGD-trained BN network: β (per sample, same objective convention (β/2)·penalty as the convex
  model), learning-rate factor and epochs; one training per (β, lr) resumed through the epoch grid,
  so the epochs cost nothing extra and every epoch's validation accuracy is traced.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from convexbn.devices import count_neurons
from convexbn.networks import accuracy, one_hot
from convexbn.programs import block_norms, convex_outputs

#: Largest duality gap (relative, as reported by the solver) of a certified solve.
CERTIFIED_GAP = 1e-4
#: The two test-time predictors of the convex model (A4).
PREDICTORS: tuple[str, ...] = ("network", "generator")


def certified(status: str, gap: float | None) -> bool:
    """A solve is certified when its status is optimal and its duality gap at most CERTIFIED_GAP."""
    return status == "optimal" and gap is not None and np.isfinite(gap) and gap <= CERTIFIED_GAP


def _scores(
    Phi: dict[str, np.ndarray | None],
    d: dict[str, Any],
    u: np.ndarray,
    up: np.ndarray,
    generators: np.ndarray,
    predictor: str,
) -> dict[str, Any]:
    """Accuracies of one convex solution: train (fit), validation and test with both predictors."""
    out: dict[str, Any] = {"train_acc": accuracy(convex_outputs(Phi["train"], u, up), d["y_train"])}
    for pred in PREDICTORS:
        for split, y in (("val", d["y_val"]), ("test", d["y_test"])):
            acc = None if Phi[split] is None else accuracy(convex_outputs(Phi[split], u, up, generators, pred), y)
            out[f"{split}_acc_{pred}"] = acc
    out["val_acc"], out["test_acc"] = out[f"val_acc_{predictor}"], out[f"test_acc_{predictor}"]
    return out


def class_beta_max(Ut: np.ndarray, Y: np.ndarray, masks: np.ndarray) -> list[float]:
    """β_max of each class alone (the decoupled vector-output program's β_max is their maximum)."""
    from convexbn.solver import beta_max

    return [float(beta_max(Ut, Y[:, c : c + 1], masks)) for c in range(Y.shape[1])]


def convex_path(
    d: dict[str, Any], wh: Any, k: int | None, p: dict[str, Any], arrangements: int, device: str
) -> dict[str, Any]:
    """One k: β_max on the training features, the path over p['beta_ratios'] (descending), every point scored."""
    from convexbn.arrangements import sample_arrangements
    from convexbn.solver import solve_path
    from convexbn.whitening import truncate

    wk = truncate(wh, k)
    Y = one_hot(d["y_train"], int(d["num_classes"]))
    Phi = {
        "train": wk.features(np.asarray(d["X_train"], dtype=np.float64)),
        "val": wk.features(np.asarray(d["X_val"], dtype=np.float64)) if len(d["y_val"]) else None,
        "test": wk.features(np.asarray(d["X_test"], dtype=np.float64)),
    }
    arr = sample_arrangements(Phi["train"], int(arrangements), seed=int(p["seed"]))
    per_class = class_beta_max(Phi["train"], Y, arr.masks)
    bmax = max(per_class)
    ratios = sorted({float(r) for r in p["beta_ratios"]}, reverse=True)
    s = p["convex"]
    t0 = time.perf_counter()
    sols = solve_path(
        Phi["train"],
        Y,
        [r * bmax for r in ratios],
        arr.masks,
        tol=float(s["tol"]),
        max_seconds=float(s["max_seconds"]),
        device=device,
        threads=int(p["threads"]),
        bmax=bmax,
        workers=int(p["threads"]),  # the classes are independent: one process per granted core
    )
    points = []
    for r, sol in zip(ratios, sols):
        u, up = np.asarray(sol.u), np.asarray(sol.up)
        gap = None if sol.gap is None else float(sol.gap)
        points.append(
            {
                "k": wk.k,
                "q": wk.q,
                "P": arr.count,
                "beta_ratio": r,
                "beta": r * bmax,
                "beta_max": bmax,
                "objective": float(sol.objective),
                "solver_status": sol.status,
                "solver_gap": gap,
                "certified": certified(sol.status, gap),
                "seconds": float(sol.seconds),
                "iterations": int(sol.iterations or 0),
                "neurons": count_neurons(block_norms(u, up)),
                **_scores(Phi, d, u, up, arr.generators, p["predictor"]),
            }
        )
    return {
        "k": wk.k,
        "q": wk.q,
        "P": arr.count,
        "beta_max": bmax,
        "beta_max_per_class": per_class,
        "points": points,
        "seconds": time.perf_counter() - t0,
    }


def convex_grid(
    d: dict[str, Any], wh: Any, ks: list[Any], p: dict[str, Any], arrangements: int, device: str
) -> list[dict[str, Any]]:
    """The paths of every k (None = full whitening) below the data rank; one list of scored grid points."""
    paths = [convex_path(d, wh, k, p, arrangements, device) for k in ks if k is None or int(k) < wh.k]
    if not paths:
        raise ValueError(f"ks={ks}: every k is >= the data rank {wh.k}; choose smaller ks or add 'full'")
    for path in paths:
        for pt in path["points"]:
            pt["beta_max_per_class"] = ";".join(f"{b:.6g}" for b in path["beta_max_per_class"])
    return [pt for path in paths for pt in path["points"]]


def uncertified_note(points: list[dict[str, Any]]) -> str:
    """'k=… ratio=…: status (gap …)' for every uncertified grid point; '' when all are certified."""
    bad = [pt for pt in points if not pt.get("certified", True)]
    return "; ".join(
        f"k={pt['k']} β/β_max={pt['beta_ratio']:g}: {pt['solver_status']} (gap "
        f"{'n/a' if pt['solver_gap'] is None else format(pt['solver_gap'], '.1e')})"
        for pt in bad
    )


def _sgd_point(model: Any, d: dict[str, Any], Xs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Train/validation/test accuracy of a trained BN network (full training-set BN statistics)."""
    from convexbn.networks import predict

    out = {f"{s}_acc": accuracy(predict(model, Xs[s]), d[f"y_{s}"]) for s in ("train", "test")}
    out["val_acc"] = accuracy(predict(model, Xs["val"]), d["y_val"]) if len(d["y_val"]) else None
    return out


def _train_resumable(ckpt: str, **kw: Any) -> Any:
    """One training through `experiments.common.train`, discarding a checkpoint left by another configuration."""
    from convexbn.experiments.common import train
    from convexbn.training import CheckpointMismatch

    try:
        return train(**kw, checkpoint=ckpt)
    except CheckpointMismatch:
        Path(ckpt).unlink(missing_ok=True)
        return train(**kw, checkpoint=ckpt)


def _diverged_point(setting: dict[str, Any], why: str) -> dict[str, Any]:
    """A grid point whose training diverged: recorded with its reason, never a candidate of the selection."""
    empty = dict.fromkeys(("objective", "seconds", "train_acc", "val_acc", "test_acc"))
    return {**setting, "training_status": "diverged", "training_error": why, **empty}


def _trace(tr: Any) -> list[dict[str, Any]]:
    """Per-epoch rows of one training (its validation accuracy is the history's held-out accuracy)."""
    if tr is None:
        return []
    keys = ("epoch", "seconds", "objective", "train_acc")
    return [{**{k: h.get(k) for k in keys}, "val_acc": h.get("test_acc")} for h in tr.history]


def sgd_grid(
    d: dict[str, Any], p: dict[str, Any], device: str, checkpoint: str | None = None
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """Every (β per sample, lr factor, epochs) of p['sgd']: (grid points, per-epoch traces with validation acc).

    One training per (β, lr factor), resumed through the epoch grid. A training that diverges
    (FloatingPointError) marks its remaining epoch values `training_status: diverged`; the grid goes on.
    With `checkpoint` (a .pt path), each (β, lr) training keeps its own resumable checkpoint next to it.
    """
    from convexbn.experiments.common import sgd_lr

    s = p["sgd"]
    C = int(d["num_classes"])
    Xs = {k: np.asarray(d[f"X_{k}"], dtype=np.float64) for k in ("train", "val", "test")}
    n, width = Xs["train"].shape[0], int(s["width"])
    has_val = len(d["y_val"]) > 0
    points, traces = [], []
    for bps, lf in ((float(b), float(f)) for b in s["beta_per_sample"] for f in s["lr_factors"]):
        beta = bps * n
        lr = sgd_lr({"lr": None, "lr_factor": lf, "width": width}, n, beta)
        tr, why = None, ""
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = (
                str(Path(tmp) / "run.pt")
                if checkpoint is None
                else f"{str(checkpoint).removesuffix('.pt')}_b{bps:g}_lr{lf:g}.pt"
            )
            for ep in sorted(int(e) for e in s["epochs"]):
                setting = {
                    "beta_per_sample": bps,
                    "beta": beta,
                    "lr_factor": lf,
                    "lr": lr,
                    "epochs": ep,
                    "width": width,
                }
                if why:
                    points.append(_diverged_point(setting, why))
                    continue
                try:
                    tr = _train_resumable(
                        ckpt,
                        X=Xs["train"],
                        Y=one_hot(d["y_train"], C),
                        beta=beta,
                        width=width,
                        optimizer="sgd",
                        lr=lr,
                        epochs=ep,
                        batch_size=int(s["batch_size"]),
                        momentum=float(s["momentum"]),
                        seed=int(p["seed"]),
                        device=device,
                        dtype=s["dtype"],
                        X_test=Xs["val"] if has_val else None,
                        Y_test=one_hot(d["y_val"], C) if has_val else None,
                    )
                except FloatingPointError as exc:
                    why = str(exc)
                    points.append(_diverged_point(setting, why))
                    continue
                points.append(
                    {
                        **setting,
                        "training_status": "ok",
                        "objective": float(tr.final_objective),
                        "seconds": float(tr.seconds),
                        **_sgd_point(tr.model, d, Xs),
                    }
                )
        traces.append(_trace(tr))
    return points, traces
