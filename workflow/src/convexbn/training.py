"""Non-convex baselines: train the PyTorch BN network (`networks.BNMLP`) with GD, SGD, Adam or L-BFGS.

The differentiated objective is the paper's objective (docs/math.md, section 1), in paper convention:

    F(θ) = ℓ(f(X), Y) + (β/2) Σ_j (γ_j² + α_j² + ‖v_j‖²) [+ (λ₁/2) ‖W‖²],

with γ = √n·γ_torch and α = β_torch/c (c = 1/√n unless `bias_value` is given), n = size of the FULL
training set. Weight decay is written into the objective, never delegated to an optimiser's
`weight_decay` knob (whose scaling would differ).

Optimisers (choices marked "ours" are not the paper's; docs/deviations.md lists them):
- "gd":    full-batch gradient descent, BN statistics over the whole training set (the theory's
           setting, docs/math.md section 6); one epoch = one step; `momentum` is ignored.
- "sgd":   mini-batch SGD with heavy-ball momentum `momentum` (the paper's baseline).
- "adam":  mini-batch Adam (betas 0.9, 0.999).
- "lbfgs": full-batch L-BFGS with strong-Wolfe line search; one epoch = one `optimizer.step` of up to
           `lbfgs_max_iter` iterations (for local-search checks against the convex optimum).

Mini-batches (deviation A9, ours): every epoch draws a fresh permutation and cuts it into
k = ⌊n/B⌋ batches of nearly equal size (≥ B, so every sample is used once per epoch and no batch is
too small for BN). For a batch b the differentiated objective is

    F_b(θ) = (n/|b|)·ℓ(f_b(X_b), Y_b) + (β/2)·penalty_n(θ) [+ (λ₁/2)‖W‖²],

where f_b normalises with the statistics of the batch itself (train-mode BN). Its expectation over b
equals F up to the difference between batch and full-batch BN statistics.

Recorded per `record_every` epochs (and always at epoch 0 and at the last epoch): the FULL-BATCH
train-mode objective F in paper convention (same value as `networks.evaluate_objective`), its data and
penalty parts, accuracies when the labels are classes, step count and wall seconds. Test predictions
use BN running statistics set to the full training-set statistics by `networks.set_running_stats`
at every record; the returned model carries those statistics too (running statistics never enter
training, which always normalises with batch statistics).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from convexbn.devices import DTYPES, resolve_device, resolve_dtype
from convexbn.io import atomic_writer
from convexbn.networks import BNMLP, data_loss, set_running_stats

log = logging.getLogger("convexbn.training")

# Device and dtype resolution live in convexbn.devices; they stay importable from here for callers.
__all__ = [
    "CHECKPOINT_FORMAT",
    "DTYPES",
    "LOSSES",
    "OPTIMIZERS",
    "PLACEMENTS",
    "CheckpointMismatch",
    "TrainResult",
    "config_differences",
    "default_lr",
    "label_kind",
    "load_checkpoint",
    "minibatches",
    "resolve_device",
    "resolve_dtype",
    "train_bn_network",
]

OPTIMIZERS = ("gd", "sgd", "adam", "lbfgs")
LOSSES = ("squared", "cross_entropy")
PLACEMENTS = ("before", "after")
CHECKPOINT_FORMAT = 1


class CheckpointMismatch(ValueError):
    """A checkpoint exists but was written by another training configuration (or ran past `epochs`)."""


# Config keys that may change between a run and its resumption (they do not change the numbers).
_RESUMABLE_KEYS = ("epochs", "device")
# Default learning rates when lr=None (ours, a stability heuristic). The objective is a SUM over samples,
# the paper-convention penalty is β·n/2·(γ_t² + β_t²), and the output-layer Hessian's top eigenvalue grows
# like n·(1/2 + width/(2π)) at the default init, so GD steps scale like 1/(n·(1 + width/4 + β)).
_DEFAULT_LR_SCALED = {"gd": 1.0, "sgd": 0.1}  # multiplied by 1/(n·(1 + width/4 + β)); SGD momentum 0.9 ≈ 10× steps
_DEFAULT_LR = {"adam": 1e-3, "lbfgs": 1.0}
_DEFAULT_BATCH = 1000  # sgd/adam default mini-batch (capped at n); ours

Callback = Callable[[int, "dict[str, Any] | None"], None]


@dataclass
class TrainResult:
    """Outcome of `train_bn_network`: final full-batch objective, per-record history and the model."""

    final_objective: float  # full-batch train-mode objective after the last epoch (paper convention)
    history: list[dict[str, Any]]  # records: epoch, step, objective, data_loss, penalty, seconds, train_acc, test_acc
    model: BNMLP  # trained network (running statistics = full training-set statistics)
    device: str  # device the training ran on, e.g. "cpu" or "cuda:0"
    seconds: float  # training wall time in seconds, summed over interrupted and resumed parts
    config: dict[str, Any] = field(default_factory=dict)  # effective training configuration (see `_effective_config`)
    resumed_from: int | None = None  # epoch of the checkpoint this call resumed from, None for a fresh start

    def summary(self) -> dict[str, Any]:
        """JSON-friendly dict of everything except the model."""
        return {
            "final_objective": self.final_objective,
            "device": self.device,
            "seconds": self.seconds,
            "config": self.config,
            "resumed_from": self.resumed_from,
            "history": self.history,
        }


# --------------------------------------------------------------------------------------------- validation
def _as_matrix(name: str, A: Any, rows: int | None = None) -> np.ndarray:
    """A finite float64 2-D array (a 1-D array becomes one column); errors name `name` and the fix."""
    if isinstance(A, torch.Tensor):
        A = A.detach().cpu().numpy()
    try:
        A = np.asarray(A, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array, got {type(A).__name__}: {exc}") from exc
    if A.ndim == 1:
        A = A[:, None]
    if A.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (samples in rows), got shape {A.shape}")
    if rows is not None and A.shape[0] != rows:
        raise ValueError(f"{name} has {A.shape[0]} rows but X has {rows}; give one row per sample")
    if not np.all(np.isfinite(A)):
        bad = int(np.size(A) - np.count_nonzero(np.isfinite(A)))
        raise ValueError(f"{name} contains {bad} NaN/inf entries; clean or impute the data first")
    return A


def _check_number(
    name: str,
    value: Any,
    *,
    low: float,
    low_open: bool = False,
    integer: bool = False,
    high: float | None = None,
    high_open: bool = False,
) -> None:
    """Raise a ValueError naming `name` unless value is a finite number in the given range."""
    kind = "an integer" if integer else "a number"
    ok_type = (
        isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if integer
        else (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool))
    )
    if not ok_type or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    lo_bad = value <= low if low_open else value < low
    hi_bad = high is not None and (value >= high if high_open else value > high)
    if lo_bad or hi_bad:
        lo = f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name} must be {lo}{hi}, got {value!r}")


def default_lr(optimizer: str, n: int, width: int = 1, beta: float = 0.0) -> float:
    """Learning rate used when lr=None (ours): GD 1/(n·(1 + width/4 + β)), SGD a tenth of it, Adam 1e-3, L-BFGS 1."""
    if optimizer in _DEFAULT_LR_SCALED:
        return _DEFAULT_LR_SCALED[optimizer] / (n * (1.0 + width / 4.0 + beta))
    return _DEFAULT_LR[optimizer]


def label_kind(Y: np.ndarray) -> str | None:
    """'argmax' for class scores (C ≥ 2, unique row maximum), 'sign' for ±1 scalars, else None (regression)."""
    if Y.shape[1] >= 2:
        top = np.sort(Y, axis=1)
        return "argmax" if bool(np.all(top[:, -1] > top[:, -2])) else None
    return "sign" if bool(np.all(np.isin(Y, (-1.0, 1.0)))) else None


def _accuracy(out: torch.Tensor, Y: torch.Tensor, kind: str | None) -> float | None:
    """Fraction of correct predictions for class labels, None for regression targets."""
    if kind == "argmax":
        return float((out.argmax(dim=1) == Y.argmax(dim=1)).double().mean())
    if kind == "sign":
        return float(((out >= 0) == (Y > 0)).double().mean())
    return None


def _sha256(*arrays: np.ndarray | None) -> str:
    """Fingerprint of arrays (shape + float64 bytes) so a checkpoint is only resumed on the same data."""
    h = hashlib.sha256()
    for A in arrays:
        if A is None:
            h.update(b"none")
            continue
        A = np.ascontiguousarray(A, dtype=np.float64)
        h.update(str(A.shape).encode())
        h.update(A.tobytes())
    return h.hexdigest()


def _module_sha256(net: nn.Module) -> str:
    """Fingerprint of a module's parameters and buffers."""
    return _sha256(*[v.detach().double().cpu().numpy() for _, v in sorted(net.state_dict().items())])


# ---------------------------------------------------------------------------------------------- model
def _build_model(cfg: dict[str, Any], init: BNMLP | None, dtype: torch.dtype, device: torch.device) -> BNMLP:
    """Fresh BNMLP seeded by cfg["seed"] (PyTorch default Linear init, γ_t = 1, β_t = 0) or a copy of `init`."""
    if init is not None:
        net = copy.deepcopy(init)
    else:
        with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
            torch.manual_seed(cfg["seed"])
            net = BNMLP(cfg["d"], cfg["width"], cfg["C"], cfg["placement"], cfg["bias_value"], cfg["bn_eps"])
    return net.to(dtype=dtype, device=device)


def _check_init(init: Any, d: int, width: int, C: int, placement: str) -> None:
    """Raise a clear error unless `init` is a BNMLP matching the data and the requested width/placement."""
    if not isinstance(init, BNMLP):
        raise ValueError(f"init must be a convexbn.networks.BNMLP, got {type(init).__name__}")
    shape = (init.first.in_features, init.first.out_features, init.second.out_features)
    if shape != (d, width, C):
        raise ValueError(
            f"init has (d, width, C) = {shape} but the data/width need {(d, width, C)}; "
            "pass width equal to the init's width or build a matching init"
        )
    if init.placement != placement:
        raise ValueError(f"init has placement {init.placement!r} but placement={placement!r} was requested")


def _objective_terms(
    net: BNMLP, Xb: torch.Tensor, Yb: torch.Tensor, n: int, beta: float, loss: str, first_layer_decay: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective, data loss, penalty, outputs) for a batch: (n/|b|)·ℓ_b + (β/2)·penalty_n [+ (λ₁/2)‖W‖²]."""
    out = net(Xb)
    dl = data_loss(out, Yb, loss)  # type: ignore[arg-type]
    if Xb.shape[0] != n:
        dl = dl * (n / Xb.shape[0])
    pen = net.penalty(n)
    obj = dl + 0.5 * beta * pen
    if first_layer_decay:
        obj = obj + 0.5 * first_layer_decay * torch.sum(net.first.weight**2)
    return obj, dl, pen, out


@torch.no_grad()
def _full_batch_record(
    net: BNMLP,
    Xt: torch.Tensor,
    Yt: torch.Tensor,
    beta: float,
    loss: str,
    first_layer_decay: float,
    kind: str | None,
    Xs: torch.Tensor | None,
    Ys: torch.Tensor | None,
    chunk: int = 8192,
) -> dict[str, Any]:
    """Full-batch train-mode objective (paper convention, = `networks.evaluate_objective`) and accuracies.

    Train accuracy comes from the same train-mode forward as the objective (the theory's f(X)); test
    accuracy from eval mode after `networks.set_running_stats` on the full training set.
    """
    net.train()
    obj, dl, pen, out = _objective_terms(net, Xt, Yt, Xt.shape[0], beta, loss, first_layer_decay)
    rec: dict[str, Any] = {
        "objective": float(obj),
        "data_loss": float(dl),
        "penalty": float(pen),
        "train_acc": _accuracy(out, Yt, kind),
        "test_acc": None,
    }
    if Xs is not None and Ys is not None and kind is not None:
        set_running_stats(net, Xt)
        net.eval()
        correct = 0.0
        for i in range(0, Xs.shape[0], chunk):
            acc = _accuracy(net(Xs[i : i + chunk]), Ys[i : i + chunk], kind)
            correct += (acc or 0.0) * min(chunk, Xs.shape[0] - i)
        net.train()
        rec["test_acc"] = correct / Xs.shape[0]
    return rec


def _make_optimizer(cfg: dict[str, Any], params: list[nn.Parameter], dtype: torch.dtype) -> torch.optim.Optimizer:
    """The torch optimiser of cfg["optimizer"] (no weight_decay: the penalty is part of the objective)."""
    name, lr = cfg["optimizer"], cfg["lr"]
    if name == "gd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    tight = dtype == torch.float64
    return torch.optim.LBFGS(
        params, lr=lr, max_iter=cfg["lbfgs_max_iter"], history_size=50, line_search_fn="strong_wolfe",
        tolerance_grad=1e-10 if tight else 1e-7, tolerance_change=1e-14 if tight else 1e-9,
    )  # fmt: skip


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray] | None:
    """Index arrays of ⌊n/B⌋ nearly equal batches of a fresh permutation; None means one full batch."""
    k = n // batch_size
    if k <= 1:
        return None
    return np.array_split(rng.permutation(n), k)


# ---------------------------------------------------------------------------------------------- checkpoints
def _rng_states(batch_rng: np.random.Generator) -> dict[str, Any]:
    """Every RNG state the run could depend on, in types torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state(legacy=False)
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
        "batches": batch_rng.bit_generator.state,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any], batch_rng: np.random.Generator) -> None:
    """Inverse of `_rng_states`."""
    torch.set_rng_state(states["torch"])
    s = states["numpy"]
    np.random.set_state(
        {
            "bit_generator": s["bit_generator"],
            "state": {"key": s["key"].numpy().astype(np.uint32), "pos": s["pos"]},
            "has_gauss": s["has_gauss"],
            "gauss": s["gauss"],
        }
    )
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    batch_rng.bit_generator.state = states["batches"]
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, then an atomic os.replace."""
    with atomic_writer(path) as fh:
        torch.save(payload, fh)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint (safe `weights_only` unpickling); errors say how to recover."""
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"checkpoint {str(path)!r} cannot be read ({exc}); delete it to start afresh") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a convexbn training checkpoint (format "
            f"{CHECKPOINT_FORMAT}); delete it or choose another checkpoint path"
        )
    return payload


def config_differences(saved: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two training configs (ignoring epochs and device)."""
    keys = sorted((set(saved) | set(requested)) - set(_RESUMABLE_KEYS))
    return [k for k in keys if saved.get(k, "<missing>") != requested.get(k, "<missing>")]


# ---------------------------------------------------------------------------------------------- validation
def _check_choices(optimizer: str, loss: str, placement: str) -> None:
    """Raise a ValueError naming the option unless optimizer, loss and placement are known names."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be 'before' or 'after' (the ReLU), got {placement!r}")


def _check_settings(settings: dict[str, Any]) -> None:
    """Range checks of the numeric keyword arguments of `train_bn_network` (errors name the argument)."""
    for name in ("beta", "first_layer_decay"):
        _check_number(name, settings[name], low=0.0)
    for name in ("epochs", "seed"):
        _check_number(name, settings[name], low=0, integer=True)
    for name in ("width", "record_every", "checkpoint_every", "lbfgs_max_iter"):
        _check_number(name, settings[name], low=1, integer=True)
    _check_number("momentum", settings["momentum"], low=0.0, high=1.0, high_open=True)
    for name in ("log_every_seconds", "bn_eps"):
        _check_number(name, settings[name], low=0.0, low_open=True)
    if settings["bias_value"] is not None:
        _check_number("bias_value", settings["bias_value"], low=0.0, low_open=True)


def _training_arrays(
    X: Any, Y: Any, X_test: Any, Y_test: Any, loss: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validated float64 (X, Y, X_test, Y_test); the test pair is (None, None) when not given."""
    Xn = _as_matrix("X", X)
    n, d = Xn.shape
    if n < 2:
        raise ValueError(f"X has {n} sample(s); BatchNorm needs at least 2 training samples")
    Yn = _as_matrix("Y", Y, rows=n)
    C = Yn.shape[1]
    if loss == "cross_entropy" and C < 2:
        raise ValueError(f"loss='cross_entropy' needs one-hot Y of shape (n, C) with C >= 2; got Y with {C} column(s)")
    if (X_test is None) != (Y_test is None):
        raise ValueError("give both X_test and Y_test, or neither")
    if X_test is None:
        return Xn, Yn, None, None
    Xs = _as_matrix("X_test", X_test)
    if Xs.shape[1] != d:
        raise ValueError(f"X_test has {Xs.shape[1]} columns but X has {d}; use the same features")
    Ys = _as_matrix("Y_test", Y_test, rows=Xs.shape[0])
    if Ys.shape[1] != C:
        raise ValueError(f"Y_test has {Ys.shape[1]} columns but Y has {C}; encode both the same way")
    return Xn, Yn, Xs, Ys


def _resolve_batch_size(optimizer: str, batch_size: int | None, n: int) -> int:
    """n for the full-batch optimisers, min(n, 1000) by default for the mini-batch ones, else the checked value."""
    if optimizer in ("gd", "lbfgs"):
        if batch_size is not None and batch_size != n:
            raise ValueError(
                f"optimizer {optimizer!r} is full-batch: batch_size must be None or n = {n}, got "
                f"{batch_size!r}; use optimizer='sgd' or 'adam' for mini-batches"
            )
        return n
    if batch_size is None:
        return min(n, _DEFAULT_BATCH)
    _check_number("batch_size", batch_size, low=1, integer=True, high=n)
    if batch_size < 2:
        raise ValueError(
            "batch_size must be >= 2: BatchNorm statistics of a single sample are undefined "
            f"(got {batch_size}); use a batch of at least 2 samples"
        )
    return int(batch_size)


def _effective_config(args: dict[str, Any], arrays: tuple[np.ndarray, ...]) -> dict[str, Any]:
    """Validate the remaining arguments of `train_bn_network` and resolve them into the saved configuration.

    lr=None becomes `default_lr`, batch_size=None the optimiser's default, device/dtype torch names;
    an `init` module fixes bias_value and bn_eps. Plain JSON types, saved in checkpoints and results.
    """
    Xn, Yn, Xs, Ys = arrays
    (n, d), C = Xn.shape, Yn.shape[1]
    optimizer, width, seed, init = args["optimizer"], int(args["width"]), int(args["seed"]), args["init"]
    lr = default_lr(optimizer, n, width, float(args["beta"])) if args["lr"] is None else args["lr"]
    _check_number("lr", lr, low=0.0, low_open=True)
    batch_size = _resolve_batch_size(optimizer, args["batch_size"], n)
    bias_value, bn_eps = args["bias_value"], args["bn_eps"]
    if init is not None:
        _check_init(init, d, width, C, args["placement"])
        bias_value, bn_eps = init.bias_value, float(init.bn.eps)
    device, dtype = resolve_device(args["device"]), resolve_dtype(args["dtype"])
    return {
        "n": n, "d": d, "C": C, "beta": float(args["beta"]), "width": width, "optimizer": optimizer,
        "lr": float(lr), "epochs": int(args["epochs"]), "batch_size": batch_size,
        "momentum": float(args["momentum"]) if optimizer == "sgd" else 0.0, "seed": seed,
        "placement": args["placement"], "loss": args["loss"], "first_layer_decay": float(args["first_layer_decay"]),
        "dtype": str(dtype).replace("torch.", ""), "device": str(device), "record_every": int(args["record_every"]),
        "lbfgs_max_iter": int(args["lbfgs_max_iter"]) if optimizer == "lbfgs" else 0,
        "bias_value": None if bias_value is None else float(bias_value), "bn_eps": float(bn_eps),
        "data_sha256": _sha256(Xn, Yn), "test_sha256": _sha256(Xs, Ys),
        "init": _module_sha256(init) if init is not None else f"seed:{seed}",
    }  # fmt: skip


def _describe(cfg: dict[str, Any]) -> str:
    """One-line summary of a training configuration for the start-of-run log line."""
    return (
        f"n={cfg['n']}, d={cfg['d']}, C={cfg['C']}, width={cfg['width']}, placement={cfg['placement']}, "
        f"{cfg['optimizer']}, lr={cfg['lr']:g}, batch={cfg['batch_size']}, beta={cfg['beta']:g}, "
        f"{cfg['epochs']} epochs, {cfg['dtype']}"
    )


# ---------------------------------------------------------------------------------------------- run state
@dataclass
class _Run:
    """Everything a training run mutates: model, optimiser, RNG, counters, history, checkpoint path."""

    cfg: dict[str, Any]
    net: BNMLP
    opt: torch.optim.Optimizer
    batch_rng: np.random.Generator
    Xt: torch.Tensor
    Yt: torch.Tensor
    Xs: torch.Tensor | None
    Ys: torch.Tensor | None
    kind: str | None
    ckpt_path: Path | None
    t_start: float
    epoch: int = 0
    step: int = 0
    prior_seconds: float = 0.0
    resumed_from: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    last_log: float = 0.0

    def elapsed(self) -> float:
        """Training seconds so far, including earlier interrupted parts."""
        return self.prior_seconds + time.monotonic() - self.t_start


def _tensor(A: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A as a torch tensor of the run's dtype on the run's device."""
    return torch.as_tensor(A, dtype=dtype, device=device)


def _new_run(
    cfg: dict[str, Any],
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None],
    init: BNMLP | None,
    checkpoint: str | os.PathLike | None,
    t_start: float,
) -> _Run:
    """A fresh run from the effective configuration: seeded model, optimiser, batch RNG, data tensors."""
    dev, tdtype = torch.device(cfg["device"]), resolve_dtype(cfg["dtype"])
    net = _build_model(cfg, init, tdtype, dev)
    opt = _make_optimizer(cfg, list(net.parameters()), tdtype)
    Xn, Yn, Xs_n, Ys_n = arrays
    Xs, Ys = (None, None) if Xs_n is None else (_tensor(Xs_n, tdtype, dev), _tensor(Ys_n, tdtype, dev))
    return _Run(
        cfg=cfg,
        net=net,
        opt=opt,
        batch_rng=np.random.default_rng(np.random.SeedSequence([cfg["seed"], 1])),
        Xt=_tensor(Xn, tdtype, dev),
        Yt=_tensor(Yn, tdtype, dev),
        Xs=Xs,
        Ys=Ys,
        kind=label_kind(Yn),
        ckpt_path=Path(checkpoint) if checkpoint is not None else None,
        t_start=t_start,
    )


def _resume(run: _Run, epochs: int) -> None:
    """Load the run's checkpoint into it; a checkpoint of another configuration raises CheckpointMismatch."""
    path, cfg = run.ckpt_path, run.cfg
    payload = load_checkpoint(path)  # on CPU: RNG states must stay CPU tensors
    saved = payload["config"]
    diff = config_differences(saved, cfg)
    if diff:
        detail = "; ".join(
            f"{k}: saved {saved.get(k, '<missing>')!r} vs requested {cfg.get(k, '<missing>')!r}" for k in diff
        )
        raise CheckpointMismatch(
            f"checkpoint {str(path)!r} was written by a different training configuration ({detail}); "
            "delete the checkpoint to start afresh or pass another checkpoint path"
        )
    if payload["epoch"] > epochs:
        raise CheckpointMismatch(
            f"checkpoint {str(path)!r} is at epoch {payload['epoch']}, beyond the requested epochs={epochs}; "
            f"ask for at least {payload['epoch']} epochs or delete the checkpoint"
        )
    if saved["device"] != cfg["device"]:
        log.warning(
            "resuming a checkpoint written on %s on %s: numbers can differ from an uninterrupted run",
            saved["device"],
            cfg["device"],
        )
    run.net.load_state_dict(payload["model"])
    run.opt.load_state_dict(payload["optimizer"])
    _restore_rng_states(payload["rng"], run.batch_rng)
    run.epoch, run.step = int(payload["epoch"]), int(payload["step"])
    run.history = list(payload["history"])
    run.prior_seconds = float(payload["seconds"])
    run.resumed_from = run.epoch
    log.info("resumed %s training from %s at epoch %d/%d", cfg["optimizer"], path, run.epoch, epochs)


def _record(run: _Run) -> dict[str, Any]:
    """Append and return a full-batch history record for the run's current epoch."""
    cfg = run.cfg
    rec = _full_batch_record(
        run.net, run.Xt, run.Yt, cfg["beta"], cfg["loss"], cfg["first_layer_decay"], run.kind, run.Xs, run.Ys
    )
    if not math.isfinite(rec["objective"]):
        raise FloatingPointError(
            f"objective became {rec['objective']} at epoch {run.epoch} with {cfg['optimizer']} "
            f"lr={cfg['lr']:g}; lower the learning rate (or use float64)"
        )
    entry = {"epoch": run.epoch, "step": run.step, **rec, "seconds": run.elapsed()}
    run.history.append(entry)
    return entry


def _save(run: _Run) -> None:
    """Write the run's checkpoint (no-op without a checkpoint path)."""
    if run.ckpt_path is None:
        return
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": run.cfg,
        "epoch": run.epoch,
        "step": run.step,
        "history": run.history,
        "seconds": run.elapsed(),
        "model": run.net.state_dict(),
        "optimizer": run.opt.state_dict(),
        "rng": _rng_states(run.batch_rng),
        "torch_version": str(torch.__version__),
    }
    _save_checkpoint(run.ckpt_path, payload)


# ---------------------------------------------------------------------------------------------- epochs
def _lbfgs_epoch(run: _Run) -> torch.Tensor:
    """One L-BFGS `step` on the full batch; the step counter becomes L-BFGS's iteration count."""
    cfg = run.cfg

    def closure() -> torch.Tensor:
        """Full-batch objective and gradient."""
        run.opt.zero_grad(set_to_none=True)
        obj = _objective_terms(run.net, run.Xt, run.Yt, cfg["n"], cfg["beta"], cfg["loss"], cfg["first_layer_decay"])[0]
        obj.backward()
        return obj

    last = run.opt.step(closure)
    run.step = int(run.opt.state[next(iter(run.net.parameters()))].get("n_iter", 0))
    return last


def _gradient_epoch(run: _Run, epochs: int, log_every_seconds: float) -> torch.Tensor:
    """One epoch of GD (one full-batch step) or SGD/Adam (one pass over fresh mini-batches); the last objective."""
    cfg = run.cfg
    mini = cfg["optimizer"] in ("sgd", "adam")
    batches = minibatches(cfg["n"], cfg["batch_size"], run.batch_rng) if mini else None
    for b, idx in enumerate(batches if batches is not None else [None]):
        if batches is not None and time.monotonic() - run.last_log >= log_every_seconds:
            run.last_log = time.monotonic()
            log.info(
                "epoch %d/%d, batch %d/%d, step %d: last recorded full-batch objective %.6g, %.1f s elapsed",
                run.epoch + 1,
                epochs,
                b + 1,
                len(batches),
                run.step,
                run.history[-1]["objective"],
                run.elapsed(),
            )
        run.opt.zero_grad(set_to_none=True)
        if idx is None:
            Xb, Yb = run.Xt, run.Yt
        else:
            it = torch.as_tensor(idx, device=run.Xt.device)
            Xb, Yb = run.Xt[it], run.Yt[it]
        last = _objective_terms(run.net, Xb, Yb, cfg["n"], cfg["beta"], cfg["loss"], cfg["first_layer_decay"])[0]
        last.backward()
        run.opt.step()
        run.step += 1
    return last


def _log_progress(run: _Run, epochs: int, log_every_seconds: float) -> None:
    """A progress line (objective, elapsed, estimate of the time left) at most every `log_every_seconds`."""
    now = time.monotonic()
    if now - run.last_log < log_every_seconds:
        return
    run.last_log = now
    obj_txt = f"{run.history[-1]['objective']:.6g} (epoch {run.history[-1]['epoch']})"
    rate = (run.elapsed() - run.prior_seconds) / max(run.epoch - (run.resumed_from or 0), 1)
    log.info(
        "epoch %d/%d, step %d: full-batch objective %s, %.1f s elapsed, about %.0f s left",
        run.epoch,
        epochs,
        run.step,
        obj_txt,
        run.elapsed(),
        rate * (epochs - run.epoch),
    )


def _train_epochs(
    run: _Run,
    epochs: int,
    record_every: int,
    checkpoint_every: int,
    log_every_seconds: float,
    callback: Callback | None,
) -> None:
    """Run epochs until `epochs`, recording, checkpointing, logging and calling back after each one."""
    run.last_log = time.monotonic()
    while run.epoch < epochs:
        run.net.train()
        if run.cfg["optimizer"] == "lbfgs":
            last = _lbfgs_epoch(run)
        else:
            last = _gradient_epoch(run, epochs, log_every_seconds)
        run.epoch += 1
        if not math.isfinite(float(last.detach())):
            raise FloatingPointError(
                f"objective became {float(last.detach())} in epoch {run.epoch} with {run.cfg['optimizer']} "
                f"lr={run.cfg['lr']:g}; lower the learning rate (or use float64)"
            )
        entry = _record(run) if (run.epoch % record_every == 0 or run.epoch == epochs) else None
        if run.epoch % checkpoint_every == 0 or run.epoch == epochs:
            _save(run)
        _log_progress(run, epochs, log_every_seconds)
        if callback is not None:
            callback(run.epoch, entry)


def train_bn_network(
    X: Any,
    Y: Any,
    beta: float,
    width: int,
    *,
    optimizer: str = "gd",
    lr: float | None = None,
    epochs: int = 100,
    batch_size: int | None = None,
    momentum: float = 0.9,
    seed: int = 0,
    placement: str = "before",
    loss: str = "squared",
    first_layer_decay: float = 0.0,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float64",
    X_test: Any = None,
    Y_test: Any = None,
    checkpoint: str | os.PathLike | None = None,
    init: BNMLP | None = None,
    log_every_seconds: float = 10.0,
    record_every: int = 1,
    checkpoint_every: int = 1,
    lbfgs_max_iter: int = 20,
    bias_value: float | None = None,
    bn_eps: float = 1e-5,
    callback: Callback | None = None,
) -> TrainResult:
    """Train a two-layer BN ReLU network on the paper's weight-decay objective and record its history.

    X (n, d), Y (n,) or (n, C) (one-hot rows for classes); see the module docstring for the objective,
    optimisers, mini-batch convention and what each history record holds. `batch_size` applies to
    "sgd"/"adam" (default min(n, 1000)); "gd" and "lbfgs" are full-batch. `record_every` records the
    full-batch objective every that many epochs (for "gd" an epoch is one step, so 1 gives the
    per-step trace). With `checkpoint`, state is saved atomically every `checkpoint_every` epochs and at
    the end; an existing checkpoint with the same configuration is resumed (asking for more epochs
    continues it), a different configuration raises `CheckpointMismatch`. `callback(epoch, record_or_None)`
    runs after every epoch (after the checkpoint), e.g. for early stopping by raising. Raises
    FloatingPointError when the objective becomes NaN/inf.
    """
    args = dict(locals())  # exactly the call's arguments: validated and resolved below
    t_start = time.monotonic()
    _check_choices(optimizer, loss, placement)
    arrays = _training_arrays(X, Y, X_test, Y_test, loss)
    _check_settings(args)
    cfg = _effective_config(args, arrays)
    run = _new_run(cfg, arrays, init, checkpoint, t_start)
    if run.ckpt_path is not None and run.ckpt_path.exists():
        _resume(run, int(epochs))
    else:
        log.info("training BN network with %s on %s", _describe(cfg), cfg["device"])
    if not run.history:
        _record(run)
    _train_epochs(run, int(epochs), int(record_every), int(checkpoint_every), float(log_every_seconds), callback)
    if run.history[-1]["epoch"] != run.epoch:  # defensive: the last epoch is always recorded
        _record(run)
    set_running_stats(run.net, run.Xt)  # the returned model predicts with full training-set statistics
    if run.ckpt_path is not None and epochs == 0:
        _save(run)
    seconds = run.elapsed()
    log.info("finished %s training: %d epochs, %d steps, final objective %.8g, %.1f s", optimizer, run.epoch,
             run.step, run.history[-1]["objective"], seconds)  # fmt: skip
    return TrainResult(final_objective=float(run.history[-1]["objective"]), history=run.history, model=run.net,
                       device=cfg["device"], seconds=seconds, config=cfg, resumed_from=run.resumed_from)  # fmt: skip
