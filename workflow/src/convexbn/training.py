"""Non-convex baselines: train the PyTorch BN network (`networks.BNMLP`) with GD, SGD, Adam or L-BFGS.

The differentiated objective is the paper's objective (paper.md §2.3-2.4), in paper convention:

    F(θ) = ℓ(f(X), Y) + (β/2) Σ_j (γ_j² + α_j² + ‖v_j‖²) [+ (λ₁/2) ‖W‖²],

with γ = √n·γ_torch and α = β_torch/c (c = 1/√n unless `bias_value` is given), n = size of the FULL
training set. Weight decay is written into the objective, never delegated to an optimiser's
`weight_decay` knob (whose scaling would differ).

Optimisers (choices marked "ours" are not the paper's, paper.md §5.2):
- "gd":    full-batch gradient descent, BN statistics over the whole training set (the theory's
           setting, paper.md §4.1); one epoch = one step; `momentum` is ignored.
- "sgd":   mini-batch SGD with heavy-ball momentum `momentum` (paper.md §4.3 baseline).
- "adam":  mini-batch Adam (betas 0.9, 0.999).
- "lbfgs": full-batch L-BFGS with strong-Wolfe line search; one epoch = one `optimizer.step` of up to
           `lbfgs_max_iter` iterations (for local-search checks against the convex optimum).

Mini-batches (paper ambiguity A9): every epoch draws a fresh permutation and cuts it into
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

from convexbn.io import atomic_writer
from convexbn.networks import BNMLP, data_loss, default_device, set_running_stats

log = logging.getLogger("convexbn.training")

OPTIMIZERS = ("gd", "sgd", "adam", "lbfgs")
LOSSES = ("squared", "cross_entropy")
PLACEMENTS = ("before", "after")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
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
_DEFAULT_BATCH = 1000  # sgd/adam default mini-batch (capped at n); the 2020 group code's value (§4.3)

Callback = Callable[[int, "dict[str, Any] | None"], None]


@dataclass
class TrainResult:
    """Outcome of `train_bn_network`: final full-batch objective, per-record history and the model."""

    final_objective: float  # full-batch train-mode objective after the last epoch (paper convention)
    history: list[dict[str, Any]]  # records: epoch, step, objective, data_loss, penalty, seconds, train_acc, test_acc
    model: BNMLP  # trained network (running statistics = full training-set statistics)
    device: str  # device the training ran on, e.g. "cpu" or "cuda:0"
    seconds: float  # training wall time in seconds, summed over interrupted and resumed parts
    config: dict[str, Any] = field(default_factory=dict)  # effective training configuration (see `training_config`)
    resumed_from: int | None = None  # epoch of the checkpoint this call resumed from, None for a fresh start

    def summary(self) -> dict[str, Any]:
        """JSON-friendly dict of everything except the model."""
        return {"final_objective": self.final_objective, "device": self.device, "seconds": self.seconds,
                "config": self.config, "resumed_from": self.resumed_from, "history": self.history}


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


def _check_number(name: str, value: Any, *, low: float, low_open: bool = False, integer: bool = False,
                  high: float | None = None, high_open: bool = False) -> None:
    """Raise a ValueError naming `name` unless value is a finite number in the given range."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, (int, np.integer)) and not isinstance(value, bool) if integer else (
        isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool))
    if not ok_type or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    lo_bad = value <= low if low_open else value < low
    hi_bad = high is not None and (value >= high if high_open else value > high)
    if lo_bad or hi_bad:
        lo = f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f" and {'<' if high_open else '<='} {high:g}"
        raise ValueError(f"{name} must be {lo}{hi}, got {value!r}")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None/"auto" → CUDA when available else CPU; an explicit CUDA request without CUDA raises."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device; use 'auto', 'cpu' or 'cuda[:i]'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use device='auto' or 'cpu'")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32'/'float64' (or the torch dtypes) → torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")


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
def _build_model(d: int, width: int, C: int, *, placement: str, seed: int, init: BNMLP | None,
                 bias_value: float | None, bn_eps: float, dtype: torch.dtype, device: torch.device) -> BNMLP:
    """Fresh seeded BNMLP (PyTorch default Linear init, γ_t = 1, β_t = 0) or a copy of `init`."""
    if init is not None:
        net = copy.deepcopy(init)
    else:
        with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
            torch.manual_seed(seed)
            net = BNMLP(d, width, C, placement=placement, bias_value=bias_value, eps=bn_eps)
    return net.to(dtype=dtype, device=device)


def _check_init(init: Any, d: int, width: int, C: int, placement: str) -> None:
    """Raise a clear error unless `init` is a BNMLP matching the data and the requested width/placement."""
    if not isinstance(init, BNMLP):
        raise ValueError(f"init must be a convexbn.networks.BNMLP, got {type(init).__name__}")
    shape = (init.first.in_features, init.first.out_features, init.second.out_features)
    if shape != (d, width, C):
        raise ValueError(f"init has (d, width, C) = {shape} but the data/width need {(d, width, C)}; "
                         "pass width equal to the init's width or build a matching init")
    if init.placement != placement:
        raise ValueError(f"init has placement {init.placement!r} but placement={placement!r} was requested")


def _objective_terms(net: BNMLP, Xb: torch.Tensor, Yb: torch.Tensor, n: int, beta: float, loss: str,
                     first_layer_decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(objective, data loss, penalty, outputs) for a batch: (n/|b|)·ℓ_b + (β/2)·penalty_n [+ (λ₁/2)‖W‖²]."""
    out = net(Xb)
    dl = data_loss(out, Yb, loss)  # type: ignore[arg-type]
    if Xb.shape[0] != n:
        dl = dl * (n / Xb.shape[0])
    pen = net.penalty(n)
    obj = dl + 0.5 * beta * pen
    if first_layer_decay:
        obj = obj + 0.5 * first_layer_decay * torch.sum(net.first.weight ** 2)
    return obj, dl, pen, out


@torch.no_grad()
def _full_batch_record(net: BNMLP, Xt: torch.Tensor, Yt: torch.Tensor, beta: float, loss: str,
                       first_layer_decay: float, kind: str | None, Xs: torch.Tensor | None,
                       Ys: torch.Tensor | None, chunk: int = 8192) -> dict[str, Any]:
    """Full-batch train-mode objective (paper convention, = `networks.evaluate_objective`) and accuracies.

    Train accuracy comes from the same train-mode forward as the objective (the theory's f(X)); test
    accuracy from eval mode after `networks.set_running_stats` on the full training set.
    """
    net.train()
    obj, dl, pen, out = _objective_terms(net, Xt, Yt, Xt.shape[0], beta, loss, first_layer_decay)
    rec: dict[str, Any] = {"objective": float(obj), "data_loss": float(dl), "penalty": float(pen),
                           "train_acc": _accuracy(out, Yt, kind), "test_acc": None}
    if Xs is not None and Ys is not None and kind is not None:
        set_running_stats(net, Xt)
        net.eval()
        correct = 0.0
        for i in range(0, Xs.shape[0], chunk):
            acc = _accuracy(net(Xs[i:i + chunk]), Ys[i:i + chunk], kind)
            correct += (acc or 0.0) * min(chunk, Xs.shape[0] - i)
        net.train()
        rec["test_acc"] = correct / Xs.shape[0]
    return rec


def _make_optimizer(name: str, params: list[nn.Parameter], lr: float, momentum: float, lbfgs_max_iter: int,
                    dtype: torch.dtype) -> torch.optim.Optimizer:
    """The torch optimiser for `name` (no weight_decay: the penalty is part of the objective)."""
    if name == "gd":
        return torch.optim.SGD(params, lr=lr, momentum=0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    tight = dtype == torch.float64
    return torch.optim.LBFGS(params, lr=lr, max_iter=lbfgs_max_iter, history_size=50,
                             line_search_fn="strong_wolfe",
                             tolerance_grad=1e-10 if tight else 1e-7, tolerance_change=1e-14 if tight else 1e-9)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray] | None:
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
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
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
    np.random.set_state({"bit_generator": s["bit_generator"],
                         "state": {"key": s["key"].numpy().astype(np.uint32), "pos": s["pos"]},
                         "has_gauss": s["has_gauss"], "gauss": s["gauss"]})
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
        raise ValueError(f"checkpoint {str(path)!r} is not a convexbn training checkpoint (format "
                         f"{CHECKPOINT_FORMAT}); delete it or choose another checkpoint path")
    return payload


def config_differences(saved: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two training configs (ignoring epochs and device)."""
    keys = sorted((set(saved) | set(requested)) - set(_RESUMABLE_KEYS))
    return [k for k in keys if saved.get(k, "<missing>") != requested.get(k, "<missing>")]


# ---------------------------------------------------------------------------------------------- training
def training_config(*, n: int, d: int, C: int, beta: float, width: int, optimizer: str, lr: float,
                    epochs: int, batch_size: int, momentum: float, seed: int, placement: str, loss: str,
                    first_layer_decay: float, dtype: torch.dtype, device: torch.device, record_every: int,
                    lbfgs_max_iter: int, bias_value: float | None, bn_eps: float, data_sha256: str,
                    test_sha256: str, init_sha256: str | None) -> dict[str, Any]:
    """The effective configuration saved in checkpoints and results (plain JSON types)."""
    return {
        "n": int(n), "d": int(d), "C": int(C), "beta": float(beta), "width": int(width),
        "optimizer": optimizer, "lr": float(lr), "epochs": int(epochs), "batch_size": int(batch_size),
        "momentum": float(momentum) if optimizer == "sgd" else 0.0, "seed": int(seed),
        "placement": placement, "loss": loss, "first_layer_decay": float(first_layer_decay),
        "dtype": str(dtype).replace("torch.", ""), "device": str(device), "record_every": int(record_every),
        "lbfgs_max_iter": int(lbfgs_max_iter) if optimizer == "lbfgs" else 0,
        "bias_value": None if bias_value is None else float(bias_value), "bn_eps": float(bn_eps),
        "data_sha256": data_sha256, "test_sha256": test_sha256, "init": init_sha256 or f"seed:{int(seed)}",
    }


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
    continues it), a different configuration raises. `callback(epoch, record_or_None)` runs after every
    epoch (after the checkpoint), e.g. for early stopping by raising. Raises FloatingPointError when
    the objective becomes NaN/inf.
    """
    t_start = time.monotonic()
    # ---- validation ---------------------------------------------------------------------------------
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be 'before' or 'after' (the ReLU), got {placement!r}")
    Xn = _as_matrix("X", X)
    n, d = Xn.shape
    if n < 2:
        raise ValueError(f"X has {n} sample(s); BatchNorm needs at least 2 training samples")
    Yn = _as_matrix("Y", Y, rows=n)
    C = Yn.shape[1]
    if loss == "cross_entropy" and C < 2:
        raise ValueError("loss='cross_entropy' needs one-hot Y of shape (n, C) with C >= 2; "
                         f"got Y with {C} column(s)")
    _check_number("beta", beta, low=0.0)
    _check_number("width", width, low=1, integer=True)
    _check_number("epochs", epochs, low=0, integer=True)
    _check_number("first_layer_decay", first_layer_decay, low=0.0)
    _check_number("momentum", momentum, low=0.0, high=1.0, high_open=True)
    _check_number("seed", seed, low=0, integer=True)
    _check_number("record_every", record_every, low=1, integer=True)
    _check_number("checkpoint_every", checkpoint_every, low=1, integer=True)
    _check_number("lbfgs_max_iter", lbfgs_max_iter, low=1, integer=True)
    _check_number("log_every_seconds", log_every_seconds, low=0.0, low_open=True)
    _check_number("bn_eps", bn_eps, low=0.0, low_open=True)
    if bias_value is not None:
        _check_number("bias_value", bias_value, low=0.0, low_open=True)
    if lr is None:
        lr = default_lr(optimizer, n, int(width), float(beta))
    _check_number("lr", lr, low=0.0, low_open=True)
    if optimizer in ("gd", "lbfgs"):
        if batch_size is not None and batch_size != n:
            raise ValueError(f"optimizer {optimizer!r} is full-batch: batch_size must be None or n = {n}, got "
                             f"{batch_size!r}; use optimizer='sgd' or 'adam' for mini-batches")
        batch_size = n
    elif batch_size is None:
        batch_size = min(n, _DEFAULT_BATCH)
    else:
        _check_number("batch_size", batch_size, low=1, integer=True, high=n)
        if batch_size < 2:
            raise ValueError("batch_size must be >= 2: BatchNorm statistics of a single sample are undefined "
                             f"(got {batch_size}); use a batch of at least 2 samples")
    if (X_test is None) != (Y_test is None):
        raise ValueError("give both X_test and Y_test, or neither")
    Xs_n = Ys_n = None
    if X_test is not None:
        Xs_n = _as_matrix("X_test", X_test)
        if Xs_n.shape[1] != d:
            raise ValueError(f"X_test has {Xs_n.shape[1]} columns but X has {d}; use the same features")
        Ys_n = _as_matrix("Y_test", Y_test, rows=Xs_n.shape[0])
        if Ys_n.shape[1] != C:
            raise ValueError(f"Y_test has {Ys_n.shape[1]} columns but Y has {C}; encode both the same way")
    if init is not None:
        _check_init(init, d, int(width), C, placement)
        bias_value, bn_eps = init.bias_value, float(init.bn.eps)
    dev = resolve_device(device)
    tdtype = resolve_dtype(dtype)
    kind = label_kind(Yn)

    cfg = training_config(
        n=n, d=d, C=C, beta=beta, width=int(width), optimizer=optimizer, lr=lr, epochs=int(epochs),
        batch_size=int(batch_size), momentum=momentum, seed=int(seed), placement=placement, loss=loss,
        first_layer_decay=first_layer_decay, dtype=tdtype, device=dev, record_every=int(record_every),
        lbfgs_max_iter=int(lbfgs_max_iter), bias_value=bias_value, bn_eps=bn_eps,
        data_sha256=_sha256(Xn, Yn), test_sha256=_sha256(Xs_n, Ys_n),
        init_sha256=_module_sha256(init) if init is not None else None)

    # ---- state ----------------------------------------------------------------------------------------
    net = _build_model(d, int(width), C, placement=placement, seed=int(seed), init=init, bias_value=bias_value,
                       bn_eps=bn_eps, dtype=tdtype, device=dev)
    opt = _make_optimizer(optimizer, list(net.parameters()), float(lr), momentum, int(lbfgs_max_iter), tdtype)
    batch_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1]))
    Xt = torch.as_tensor(Xn, dtype=tdtype, device=dev)
    Yt = torch.as_tensor(Yn, dtype=tdtype, device=dev)
    Xs = torch.as_tensor(Xs_n, dtype=tdtype, device=dev) if Xs_n is not None else None
    Ys = torch.as_tensor(Ys_n, dtype=tdtype, device=dev) if Ys_n is not None else None
    history: list[dict[str, Any]] = []
    epoch, step, prior_seconds, resumed_from = 0, 0, 0.0, None
    ckpt_path = Path(checkpoint) if checkpoint is not None else None

    if ckpt_path is not None and ckpt_path.exists():
        payload = load_checkpoint(ckpt_path)  # on CPU: RNG states must stay CPU tensors
        diff = config_differences(payload["config"], cfg)
        if diff:
            detail = "; ".join(f"{k}: saved {payload['config'].get(k, '<missing>')!r} vs requested "
                               f"{cfg.get(k, '<missing>')!r}" for k in diff)
            raise CheckpointMismatch(f"checkpoint {str(ckpt_path)!r} was written by a different training configuration "
                             f"({detail}); delete the checkpoint to start afresh or pass another checkpoint path")
        if payload["epoch"] > epochs:
            raise CheckpointMismatch(f"checkpoint {str(ckpt_path)!r} is at epoch {payload['epoch']}, beyond the requested "
                             f"epochs={epochs}; ask for at least {payload['epoch']} epochs or delete the checkpoint")
        if payload["config"]["device"] != cfg["device"]:
            log.warning("resuming a checkpoint written on %s on %s: numbers can differ from an uninterrupted run",
                        payload["config"]["device"], cfg["device"])
        net.load_state_dict(payload["model"])
        opt.load_state_dict(payload["optimizer"])
        _restore_rng_states(payload["rng"], batch_rng)
        epoch, step = int(payload["epoch"]), int(payload["step"])
        history = list(payload["history"])
        prior_seconds = float(payload["seconds"])
        resumed_from = epoch
        log.info("resumed %s training from %s at epoch %d/%d", optimizer, ckpt_path, epoch, epochs)
    else:
        log.info("training BN network (n=%d, d=%d, C=%d, width=%d, placement=%s) with %s, lr=%g, batch=%d, "
                 "beta=%g for %d epochs on %s (%s)", n, d, C, width, placement, optimizer, lr, batch_size, beta,
                 epochs, dev, cfg["dtype"])

    def elapsed() -> float:
        """Training seconds so far, including earlier interrupted parts."""
        return prior_seconds + time.monotonic() - t_start

    def record() -> dict[str, Any]:
        """Append and return a full-batch history record for the current epoch."""
        rec = _full_batch_record(net, Xt, Yt, float(beta), loss, float(first_layer_decay), kind, Xs, Ys)
        if not math.isfinite(rec["objective"]):
            raise FloatingPointError(f"objective became {rec['objective']} at epoch {epoch} with {optimizer} "
                                     f"lr={lr:g}; lower the learning rate (or use float64)")
        entry = {"epoch": epoch, "step": step, **rec, "seconds": elapsed()}
        history.append(entry)
        return entry

    def save() -> None:
        """Write the checkpoint (no-op without a checkpoint path)."""
        if ckpt_path is None:
            return
        _save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "config": cfg, "epoch": epoch, "step": step, "history": history,
            "seconds": elapsed(), "model": net.state_dict(), "optimizer": opt.state_dict(),
            "rng": _rng_states(batch_rng), "torch_version": str(torch.__version__),
        })

    if not history:
        record()
    beta_f, fld = float(beta), float(first_layer_decay)
    params = list(net.parameters())
    last_log = time.monotonic()

    def closure() -> torch.Tensor:
        """Full-batch objective and gradient (for L-BFGS)."""
        opt.zero_grad(set_to_none=True)
        obj = _objective_terms(net, Xt, Yt, n, beta_f, loss, fld)[0]
        obj.backward()
        return obj

    while epoch < epochs:
        net.train()
        if optimizer == "lbfgs":
            last = opt.step(closure)
            epoch += 1
            step = int(opt.state[params[0]].get("n_iter", 0))
        else:
            batches = _batches(n, int(batch_size), batch_rng) if optimizer in ("sgd", "adam") else None
            for b, idx in enumerate(batches if batches is not None else [None]):
                if batches is not None and time.monotonic() - last_log >= log_every_seconds:
                    last_log = time.monotonic()
                    log.info("epoch %d/%d, batch %d/%d, step %d: last recorded full-batch objective %.6g, "
                             "%.1f s elapsed", epoch + 1, epochs, b + 1, len(batches), step,
                             history[-1]["objective"], elapsed())
                opt.zero_grad(set_to_none=True)
                if idx is None:
                    Xb, Yb = Xt, Yt
                else:
                    it = torch.as_tensor(idx, device=dev)
                    Xb, Yb = Xt[it], Yt[it]
                last = _objective_terms(net, Xb, Yb, n, beta_f, loss, fld)[0]
                last.backward()
                opt.step()
                step += 1
            epoch += 1
        if not math.isfinite(float(last.detach())):
            raise FloatingPointError(f"objective became {float(last.detach())} in epoch {epoch} with {optimizer} "
                                     f"lr={lr:g}; lower the learning rate (or use float64)")
        entry = record() if (epoch % record_every == 0 or epoch == epochs) else None
        if epoch % checkpoint_every == 0 or epoch == epochs:
            save()
        now = time.monotonic()
        if now - last_log >= log_every_seconds:
            last_log = now
            obj_txt = f"{history[-1]['objective']:.6g} (epoch {history[-1]['epoch']})"
            rate = (elapsed() - prior_seconds) / max(epoch - (resumed_from or 0), 1)
            log.info("epoch %d/%d, step %d: full-batch objective %s, %.1f s elapsed, about %.0f s left",
                     epoch, epochs, step, obj_txt, elapsed(), rate * (epochs - epoch))
        if callback is not None:
            callback(epoch, entry)

    if history[-1]["epoch"] != epoch:  # defensive: the last epoch is always recorded
        record()
    set_running_stats(net, Xt)  # the returned model predicts with full training-set statistics
    if ckpt_path is not None and epochs == 0:
        save()
    seconds = elapsed()
    log.info("finished %s training: %d epochs, %d steps, final objective %.8g, %.1f s", optimizer, epoch, step,
             history[-1]["objective"], seconds)
    return TrainResult(final_objective=float(history[-1]["objective"]), history=history, model=net,
                       device=str(dev), seconds=seconds, config=cfg, resumed_from=resumed_from)
