"""The paper's experiments as named, statically expanded jobs: config → job list → job JSON → tidy CSV.

Every setting here (sizes, widths, β, k, P, optimisers, schedules) is OURS, not the paper's: the
paper's experimental settings and numbers are not available (paper.md §0, §5, §7). Each experiment is
a config entry ``experiments.<name>`` whose jobs are listed by :func:`list_jobs`; the pipeline runs
each job with :func:`run_job` (one JSON per job under ``results/<name>/``), merges them with
:func:`aggregate` (one tidy CSV per experiment) and draws them with ``convexbn.plots``.

The aggregated CSV is long-format with a ``record`` column: ``summary`` rows (one per job, metrics)
and ``trace`` rows (one per recorded epoch/step of a run), so figures never re-run anything.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger("convexbn.experiments")

#: The seven experiments of the issue, in the order of the paper's claims.
EXPERIMENT_NAMES: tuple[str, ...] = (
    "equivalence",
    "closed_form",
    "whitening_invariance",
    "implicit_bias",
    "truncation",
    "main_comparison",
    "variants",
)

#: Experiments that read prepared real datasets (the others generate seeded synthetic data).
REAL_DATA_EXPERIMENTS: frozenset[str] = frozenset({"implicit_bias", "truncation", "main_comparison"})

#: Dataset kinds `build_dataset` understands.
DATASET_KINDS: tuple[str, ...] = ("digits", "fashion_mnist", "cifar10", "cifar100")

#: Variants of experiment 7.
VARIANT_NAMES: tuple[str, ...] = ("bn_after_relu", "cnn", "deep", "vector_output")


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def default_config() -> dict[str, Any]:
    """Full-reproduction configuration (all settings ours; see the key-by-key comments below).

    Top level: ``defaults`` (merged into every experiment), ``datasets`` (how each prepared dataset
    is built), ``experiments`` (one entry per experiment in :data:`EXPERIMENT_NAMES`).

    defaults
        seed: 0 — base seed; every job derives its seeds from it (data, inits, arrangements).
        solver: "auto" — CVXPY solver for the small exact programs (MOSEK if licensed, else CLARABEL).
        device: "auto" — torch device for training and the fast solver ("auto" = CUDA when present).
        threads: 1 — torch/BLAS threads per job (1 is fastest for skinny shapes on small CPUs).
    datasets.<name>
        kind: one of digits | fashion_mnist | cifar10 | cifar100.
        n_train / n_val / n_test: sizes of the training subset, the validation split carved from the
        training set (used to choose k, never the test set) and the test subset (A7: ours).
        seed: seed of the subset draw. synthetic: True only for generated stand-in data.
        normalize: "channel" (per-channel mean/std, images) or "standardize" (per pixel), train statistics.
        test_fraction: digits only — share of the 1 797 images held out as the test pool (0.25).
    experiments.equivalence  (claim 1; synthetic, exact arrangements)
        n, d: 15, 3 — samples and input dimension (rank 3 keeps exact enumeration cheap).
        noise: 0.1 — label noise of the random ReLU teacher. beta: 0.1 — weight decay β.
        optimizers: [gd, sgd, adam]; width_factors: [0.5, 1, 2, 4] × m* (m* = neurons of the sparsest
        optimal convex solution we find: an LP vertex over the solver's active blocks, ≤ n); inits: 5;
        epochs {gd: 4000, sgd: 1500, adam: 3000}; lr {gd: 0.01, sgd: null = training's default
        heuristic, adam: 0.01}; batch_size: 5 (SGD, mini-batch BN statistics, A9).
        tol: 1e-6 — relative tolerance for "no run below p*". trace_points: 150 per run.
    experiments.closed_form  (claim 2; n ≤ d)
        n, d: 10, 30; betas: 8 values in [0.05, 3]; outputs: [scalar, onehot] (classes: 3);
        gd: width 8, 3 inits, L-BFGS ("lbfgs") epochs 300 as the local-search reference.
    experiments.whitening_invariance  (claim 3)
        n, d, beta as equivalence; transforms: identity, whitened, random_linear, scaled;
        width: 32, inits: 5, epochs: 2000 (Adam) for the BN network and for the plain ReLU network.
    experiments.implicit_bias  (claim 4)
        datasets: [digits, cifar10]; n_train: 1000 (subset of the prepared training set);
        width: 256; gd: 2000 full-batch GD epochs, lr null (training's stable default 1/(n(1+m/4+β))),
        snapshots [0, 10, 100, 500, 2000]; beta_per_sample: 1e-3 (β = beta_per_sample·n, sum-loss
        convention); convex: P = 256 sampled arrangements, fast solver, max_iter 5000, max_seconds 600,
        polish true (the active-set Newton polish certifies the optimum; false = budgeted ADMM only).
    experiments.truncation  (claim 5)
        datasets: [digits, fashion_mnist, cifar10]; ks: truncation grid ("full" = no truncation);
        arrangements: 64; beta_per_sample: 1e-3; convex: max_iter 3000, max_seconds 240 per solve;
        sgd reference: width 512, epochs 30, batch 500, lr_factor 5 (lr = 5 × training's stable default
        0.1/(n(1 + width/4 + β)); batch gradients are scaled to the full sum over n samples, so steps
        scale like 1/n), momentum 0.9, float32 ("lr" overrides lr_factor when given);
        predictor: "network" (A4: reconstructed BN net; "generator" = generator gates).
    experiments.main_comparison  (claim 6)
        datasets: [digits, fashion_mnist, cifar10, cifar100]; seeds: [0, 1, 2];
        methods: sgd, convex_full, convex_truncated (k chosen on validation from ks);
        ks: [16, 64, 256] candidates for the truncated model; convex: P = 64, max_seconds 600 (full),
        120 per k (truncated); trace_points: 20 accuracy checkpoints (warm-started solver pieces);
        sgd: as in truncation. Every convex solve stops at max_iter or max_seconds (status recorded).
    experiments.variants  (claim 7)
        variants: bn_after_relu, cnn, deep, vector_output; instances: 4 random draws each;
        sizes per variant (n, d, ...); inits: 5; L-BFGS/Adam local search from each init.
    """
    cfg: dict[str, Any] = {
        "defaults": {"seed": 0, "solver": "auto", "device": "auto", "threads": 1},
        "datasets": {
            "digits": {"kind": "digits", "n_train": 1000, "n_val": 300, "n_test": 450, "seed": 0,
                       "normalize": "standardize", "test_fraction": 0.25, "synthetic": False},
            "fashion_mnist": {"kind": "fashion_mnist", "n_train": 10000, "n_val": 2000, "n_test": 10000,
                              "seed": 0, "normalize": "channel", "synthetic": False},
            "cifar10": {"kind": "cifar10", "n_train": 10000, "n_val": 2000, "n_test": 10000, "seed": 0,
                        "normalize": "channel", "synthetic": False},
            "cifar100": {"kind": "cifar100", "n_train": 10000, "n_val": 2000, "n_test": 10000, "seed": 0,
                         "normalize": "channel", "synthetic": False},
        },
        "experiments": {
            "equivalence": {
                "n": 15, "d": 3, "noise": 0.1, "beta": 0.1, "arrangements": "exact",
                "optimizers": ["gd", "sgd", "adam"],
                "width_factors": [0.5, 1.0, 2.0, 4.0],
                "inits": 5,
                "epochs": {"gd": 4000, "sgd": 1500, "adam": 3000},
                "lr": {"gd": 0.01, "sgd": None, "adam": 0.01},  # sgd None: training's default heuristic
                "batch_size": 5,
                "tol": 1e-6,
                "trace_points": 150,
            },
            "closed_form": {
                "n": 10, "d": 30, "noise": 0.1, "classes": 3,
                "betas": [0.05, 0.1, 0.2, 0.4, 0.8, 1.2, 2.0, 3.0],
                "outputs": ["scalar", "onehot"],
                "gd": {"optimizer": "lbfgs", "width": 8, "inits": 3, "epochs": 300, "lr": 0.5},
                "tol": 1e-5,
            },
            "whitening_invariance": {
                "n": 15, "d": 3, "noise": 0.1, "beta": 0.1, "arrangements": "exact",
                "transforms": ["identity", "whitened", "random_linear", "scaled"],
                "width": 32, "inits": 5, "epochs": 2000, "lr": 0.01,
                "tol": 1e-4,
            },
            "implicit_bias": {
                "datasets": ["digits", "cifar10"],
                "n_train": 1000,
                "beta_per_sample": 1e-3,
                "width": 256,
                "gd": {"epochs": 2000, "lr": None, "snapshots": [0, 10, 100, 500, 2000]},
                "convex": {"arrangements": 256, "max_iter": 5000, "max_seconds": 600, "tol": 1e-6},
                "top_fraction": 0.1,
            },
            "truncation": {
                "datasets": ["digits", "fashion_mnist", "cifar10"],
                "ks": [4, 16, 64, 256, "full"],
                "arrangements": 64,
                "beta_per_sample": 1e-3,
                "convex": {"max_iter": 3000, "max_seconds": 240, "tol": 1e-6},
                "sgd": {"width": 512, "epochs": 30, "batch_size": 500, "lr_factor": 5.0, "momentum": 0.9,
                        "dtype": "float32"},
                "predictor": "network",
            },
            "main_comparison": {
                "datasets": ["digits", "fashion_mnist", "cifar10", "cifar100"],
                "seeds": [0, 1, 2],
                "methods": ["sgd", "convex_full", "convex_truncated"],
                "arrangements": 64,
                "beta_per_sample": 1e-3,
                "ks": [16, 64, 256],
                "convex_full": {"max_iter": 3000, "max_seconds": 600, "tol": 1e-6},
                "convex_truncated": {"max_iter": 2000, "max_seconds": 120, "tol": 1e-6},
                "trace_points": 20,
                "sgd": {"width": 512, "epochs": 30, "batch_size": 500, "lr_factor": 5.0, "momentum": 0.9,
                        "dtype": "float32"},
                "predictor": "network",
            },
            "variants": {
                "variants": list(VARIANT_NAMES),
                "instances": 4,
                "inits": 5,
                "beta": 0.1,
                "bn_after_relu": {"n": 12, "d": 3},
                "cnn": {"n": 8, "length": 4, "patch": 2, "stride": 1},
                "deep": {"n": 12, "d": 3, "hidden": [4], "width": 16},
                "vector_output": {"n": 12, "d": 2, "classes": 3},
                "local_search": {"optimizer": "adam", "epochs": 1500, "lr": 0.02, "width": 16},
                "arrangements": "exact",
            },
        },
    }
    return cfg


def ci_config() -> dict[str, Any]:
    """Toy-scale configuration running every experiment in minutes on 2 CPU cores (same keys)."""
    cfg = default_config()
    cfg["datasets"] = {
        "digits": {"kind": "digits", "n_train": 300, "n_val": 100, "n_test": 200, "seed": 0,
                   "normalize": "standardize", "test_fraction": 0.25, "synthetic": False},
        # generated CIFAR-format archive (data.make_cifar_archive) stands in for CIFAR-10 in CI
        "cifar10": {"kind": "cifar10", "n_train": 300, "n_val": 100, "n_test": 200, "seed": 0,
                    "normalize": "channel", "synthetic": True},
    }
    ex = cfg["experiments"]
    ex["equivalence"].update({"n": 10, "d": 2, "width_factors": [0.5, 1.0, 3.0], "inits": 5,
                              "epochs": {"gd": 400, "sgd": 150, "adam": 400}, "trace_points": 60,
                              "lr": {"gd": 0.01, "sgd": None, "adam": 0.01}})
    ex["closed_form"].update({"n": 7, "d": 12, "betas": [0.1, 0.5, 1.5],
                              "gd": {"optimizer": "lbfgs", "width": 6, "inits": 2, "epochs": 100, "lr": 0.5}})
    ex["whitening_invariance"].update({"n": 10, "d": 2, "width": 16, "inits": 3, "epochs": 600})
    ex["implicit_bias"].update({"datasets": ["digits"], "n_train": 200, "width": 32,
                                "gd": {"epochs": 200, "lr": None, "snapshots": [0, 20, 200]},
                                "convex": {"arrangements": 32, "max_iter": 400, "max_seconds": 20, "tol": 1e-5}})
    ex["truncation"].update({"datasets": ["digits"], "ks": [4, 16, "full"], "arrangements": 16,
                             "convex": {"max_iter": 300, "max_seconds": 15, "tol": 1e-5},
                             "sgd": {"width": 64, "epochs": 5, "batch_size": 100, "lr_factor": 5.0, "momentum": 0.9,
                                     "dtype": "float32"}})
    ex["main_comparison"].update({"datasets": ["digits", "cifar10"], "seeds": [0, 1, 2], "arrangements": 16,
                                  "ks": [8, 32],
                                  "convex_full": {"max_iter": 300, "max_seconds": 15, "tol": 1e-5},
                                  "convex_truncated": {"max_iter": 200, "max_seconds": 8, "tol": 1e-5},
                                  "trace_points": 6,
                                  "sgd": {"width": 64, "epochs": 5, "batch_size": 100, "lr_factor": 5.0,
                                          "momentum": 0.9, "dtype": "float32"}})
    ex["variants"].update({"instances": 2, "inits": 3,
                           "bn_after_relu": {"n": 8, "d": 2},
                           "cnn": {"n": 6, "length": 3, "patch": 2, "stride": 1},
                           "deep": {"n": 8, "d": 2, "hidden": [3], "width": 8},
                           "vector_output": {"n": 8, "d": 2, "classes": 3},
                           "local_search": {"optimizer": "adam", "epochs": 500, "lr": 0.02, "width": 12}})
    return cfg


def _require(exp_cfg: dict[str, Any], key: str, name: str) -> Any:
    """exp_cfg[key] or a ValueError naming the missing key and the fix."""
    if key not in exp_cfg:
        raise ValueError(f"config key experiments.{name}.{key} is missing; add it (see "
                         f"convexbn.experiments.default_config() for the default)")
    return exp_cfg[key]


def _check_name(name: str) -> None:
    """Raise a ValueError for an unknown experiment name."""
    if name not in EXPERIMENT_NAMES:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENT_NAMES)}")


def _ks_label(k: int | str | None) -> str:
    """Job-name label of a truncation value ('full' for no truncation)."""
    return "full" if k is None or (isinstance(k, str) and k.lower() == "full") else str(int(k))


def _parse_k(k: int | str | None) -> int | None:
    """Truncation value from config ('full'/None → None)."""
    if k is None or (isinstance(k, str) and k.strip().lower() == "full"):
        return None
    try:
        kk = int(k)
    except (TypeError, ValueError):
        raise ValueError(f"truncation k={k!r} is neither a positive integer nor 'full'") from None
    if kk < 1:
        raise ValueError(f"truncation k={k!r} must be >= 1 (or 'full')")
    return kk


def list_jobs(name: str, exp_cfg: dict[str, Any]) -> list[str]:
    """All job names of an experiment (static expansion of its config entry)."""
    _check_name(name)
    if name == "equivalence":
        jobs = ["convex"]
        for opt in _require(exp_cfg, "optimizers", name):
            for f in _require(exp_cfg, "width_factors", name):
                jobs.append(f"{opt}_m{float(f):g}x")
        return jobs
    if name == "closed_form":
        return [f"{out}_b{i}" for out in _require(exp_cfg, "outputs", name)
                for i in range(len(_require(exp_cfg, "betas", name)))]
    if name == "whitening_invariance":
        return list(_require(exp_cfg, "transforms", name))
    if name == "implicit_bias":
        return [f"{m}_{ds}" for ds in _require(exp_cfg, "datasets", name) for m in ("gd", "convex")]
    if name == "truncation":
        return [f"{m}_{ds}" for ds in _require(exp_cfg, "datasets", name)
                for m in (["sgd"] + [f"k{_ks_label(k)}" for k in _require(exp_cfg, "ks", name)])]
    if name == "main_comparison":
        return [f"{m}_{ds}_s{int(s)}" for ds in _require(exp_cfg, "datasets", name)
                for m in _require(exp_cfg, "methods", name) for s in _require(exp_cfg, "seeds", name)]
    # variants
    for v in _require(exp_cfg, "variants", name):
        if v not in VARIANT_NAMES:
            raise ValueError(f"config key experiments.variants.variants: {v!r} is not one of {', '.join(VARIANT_NAMES)}")
    return [f"{v}_i{i}" for v in exp_cfg["variants"] for i in range(int(_require(exp_cfg, "instances", name)))]


def _split_job(name: str, exp_cfg: dict[str, Any], job: str) -> tuple[str, str | None, int | None]:
    """(method, dataset, seed) of a real-data job name; raises for a job not in list_jobs."""
    if job not in list_jobs(name, exp_cfg):
        raise ValueError(f"experiment {name}: job {job!r} is not one of its jobs "
                         f"({', '.join(list_jobs(name, exp_cfg)[:8])}, ...); check the config")
    if name == "main_comparison":
        rest, s = job.rsplit("_s", 1)
        for ds in sorted(exp_cfg["datasets"], key=len, reverse=True):
            if rest.endswith("_" + ds):
                return rest[: -len(ds) - 1], ds, int(s)
    if name in ("implicit_bias", "truncation"):
        for ds in sorted(exp_cfg["datasets"], key=len, reverse=True):
            if job.endswith("_" + ds):
                return job[: -len(ds) - 1], ds, None
    return job, None, None


def job_kind(name: str, exp_cfg: dict[str, Any], job: str) -> str:
    """'baselines' for non-convex network training jobs, 'convex' for jobs whose core is a convex solve."""
    method, _, _ = _split_job(name, exp_cfg, job)
    if name == "equivalence":
        return "convex" if job == "convex" else "baselines"
    if name in ("implicit_bias", "truncation", "main_comparison"):
        return "baselines" if method in ("gd", "sgd") else "convex"
    return "convex"


def job_datasets(name: str, exp_cfg: dict[str, Any], job: str) -> list[str]:
    """Prepared datasets (keys of config 'datasets') a job reads; [] for synthetic experiments."""
    _, ds, _ = _split_job(name, exp_cfg, job)
    return [ds] if ds is not None else []


# --------------------------------------------------------------------------------------------------
# Datasets (prepared npz + cached whitening)
# --------------------------------------------------------------------------------------------------


def _raw_arrays(kind: str, ds_name: str, ds_cfg: dict[str, Any], raw: str | None) -> dict[str, Any]:
    """Raw train/test arrays of a dataset from convexbn.data's loaders."""
    from convexbn import data

    if kind == "digits":
        return data.load_digits_split(test_fraction=float(ds_cfg.get("test_fraction", 0.25)),
                                      seed=int(ds_cfg.get("seed", 0)))
    if kind in ("cifar10", "cifar100"):
        if raw is None:
            raise ValueError(f"dataset {ds_name} ({kind}): no raw archive path given; the download rule must "
                             f"provide results/raw/{kind} archive (or set datasets.{ds_name}.archive)")
        return data.load_cifar(raw, name=kind)
    return data.load_fashion_mnist(raw)  # raw None → Debian's dataset-fashion-mnist folder (clear error if absent)


def build_dataset(ds_name: str, ds_cfg: dict[str, Any], raw: str | None, out_npz: str) -> None:
    """Prepare `results/data/{ds}.npz`: seeded train/val/test subsets normalised with train statistics."""
    from convexbn import data

    kind = ds_cfg.get("kind", ds_name)
    if kind not in DATASET_KINDS:
        raise ValueError(f"config key datasets.{ds_name}.kind: {kind!r} is not one of {', '.join(DATASET_KINDS)}")
    src = _raw_arrays(kind, ds_name, ds_cfg, raw)
    seed = int(ds_cfg.get("seed", 0))
    n_train, n_val = int(ds_cfg["n_train"]), int(ds_cfg.get("n_val", 0))
    n_test = ds_cfg.get("n_test")
    ytr_all = np.asarray(src["y_train"]).reshape(-1)
    if n_train + n_val > ytr_all.shape[0]:
        raise ValueError(f"datasets.{ds_name}: n_train + n_val = {n_train + n_val} exceeds the {ytr_all.shape[0]} "
                         f"training samples of {kind}; lower n_train or n_val")
    rng = np.random.default_rng(seed + 104729)
    val_idx = data.stratified_subset(ytr_all, n_val, rng) if n_val else np.zeros(0, dtype=np.int64)
    pool = np.setdiff1d(np.arange(ytr_all.shape[0]), val_idx)
    Xtr_all = np.asarray(src["X_train"])
    opts = {"classes": ds_cfg.get("classes"), "n_train": n_train, "normalize": ds_cfg.get("normalize", "standardize"),
            "seed": seed, "num_classes": None}
    main = data.prepare_arrays(Xtr_all[pool], ytr_all[pool], src["X_test"], src["y_test"],
                               n_test=None if n_test is None else int(n_test), **opts)
    out = {"X_train": main["X_train"], "y_train": main["y_train"], "X_test": main["X_test"],
           "y_test": main["y_test"], "num_classes": int(len(main["classes"]))}
    if n_val:  # same training subset and statistics (same seed), the validation rows take the test slot
        val = data.prepare_arrays(Xtr_all[pool], ytr_all[pool], Xtr_all[val_idx], ytr_all[val_idx], n_test=None, **opts)
        out.update({"X_val": val["X_test"], "y_val": val["y_test"]})
    else:
        out.update({"X_val": main["X_train"][:0], "y_val": main["y_train"][:0]})
    meta = {"name": ds_name, "kind": kind, "config": ds_cfg, "synthetic": bool(ds_cfg.get("synthetic", False)),
            "raw": raw, "n_train": int(out["X_train"].shape[0]), "n_val": int(out["X_val"].shape[0]),
            "n_test": int(out["X_test"].shape[0]), "d": int(out["X_train"].shape[1])}
    data.save_prepared(out_npz, {**out, "meta": json.dumps(meta)})


def load_prepared(path: str) -> dict[str, Any]:
    """Arrays and metadata of a prepared dataset npz written by `build_dataset`."""
    from convexbn import data

    out = data.load_prepared(path)
    missing = [k for k in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "num_classes") if k not in out]
    if missing:
        raise ValueError(f"prepared dataset {path} lacks {missing}; rebuild it with convexbn.experiments.build_dataset")
    out["meta"] = json.loads(out["meta"]) if isinstance(out.get("meta"), str) else {}
    out["num_classes"] = int(out["num_classes"])
    return out


def whiten_dataset(in_npz: str, out_npz: str, ds_cfg: dict[str, Any]) -> None:
    """Cache the centred-SVD whitening of a prepared dataset's training split (bias column per config)."""
    from convexbn.whitening import save_whitening, whiten

    d = load_prepared(in_npz)
    wh = whiten(np.asarray(d["X_train"], dtype=np.float64), bias=ds_cfg.get("bias", "unit"))
    save_whitening(out_npz, wh)


# --------------------------------------------------------------------------------------------------
# Small shared helpers
# --------------------------------------------------------------------------------------------------


def resolve_device(spec: str | None) -> str:
    """'auto' → 'cuda' when available else 'cpu'; otherwise the name given (validated)."""
    import torch

    s = (spec or "auto").lower()
    if s == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if s.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"config key defaults.device: {spec!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if not (s == "cpu" or s.startswith("cuda")):
        raise ValueError(f"config key defaults.device: {spec!r} is not one of auto, cpu, cuda")
    return s


def one_hot(y: np.ndarray, classes: int) -> np.ndarray:
    """(n, C) float64 one-hot matrix of integer labels."""
    Y = np.zeros((len(y), classes))
    Y[np.arange(len(y)), np.asarray(y, dtype=np.int64)] = 1.0
    return Y


def accuracy(out: np.ndarray, y: np.ndarray) -> float:
    """Classification accuracy of argmax outputs (C > 1) or of sign(out) vs y ∈ {0,1} (C = 1)."""
    out = np.asarray(out).reshape(len(y), -1)
    pred = out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0.5).astype(int)
    return float(np.mean(pred == np.asarray(y)))


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


def _log_indices(count: int, points: int) -> np.ndarray:
    """About `points` indices in [0, count) spaced logarithmically (always first and last)."""
    if count <= points:
        return np.arange(count)
    idx = np.unique(np.round(np.geomspace(1, count, points)).astype(int) - 1)
    return np.unique(np.concatenate([[0], idx, [count - 1]]))


def _set_threads(exp_cfg: dict[str, Any]) -> None:
    """Apply the configured thread count to torch."""
    import torch

    torch.set_num_threads(max(1, int(exp_cfg.get("threads", 1))))


def _record_dict(rec: Any) -> dict[str, Any]:
    """A SolveRecord (or similar) as a plain dict."""
    if rec is None:
        return {}
    keys = ("solver", "status", "seconds", "iterations", "objective", "reason")
    out = {k: getattr(rec, k, None) for k in keys}
    extra = getattr(rec, "extra", None)
    if isinstance(extra, dict):
        out["extra"] = {k: v for k, v in extra.items() if isinstance(v, (int, float, str, bool, type(None)))}
    return out


def convex_outputs(Phi: np.ndarray, u: np.ndarray, up: np.ndarray, generators: np.ndarray | None = None,
                   predictor: str = "network", chunk_elems: int = 20_000_000) -> np.ndarray:
    """Outputs Σ_i (Φu_i)_+ − (Φu'_i)_+ (= the reconstructed BN net, A4 'network') or generator-gated ones."""
    Phi = np.asarray(Phi, dtype=np.float64)
    P, q, C = u.shape
    if predictor not in ("network", "generator"):
        raise ValueError(f"predictor={predictor!r}; choose 'network' (reconstructed BN net) or 'generator'")
    rows = max(1, chunk_elems // max(1, P * C))
    out = np.empty((Phi.shape[0], C))
    flat = lambda B: np.ascontiguousarray(B.transpose(1, 0, 2)).reshape(q, P * C)  # noqa: E731  (q, P·C) for BLAS
    Uf, Upf, Df = flat(u), flat(up), flat(u - up)
    for s in range(0, Phi.shape[0], rows):
        F = Phi[s:s + rows]
        if predictor == "network":
            a = (F @ Uf).reshape(-1, P, C)
            b = (F @ Upf).reshape(-1, P, C)
            out[s:s + rows] = np.maximum(a, 0).sum(1) - np.maximum(b, 0).sum(1)
        else:
            gates = (F @ generators >= 0).astype(np.float64)  # (n, P)
            out[s:s + rows] = np.einsum("np,npc->nc", gates, (F @ Df).reshape(-1, P, C))
    return out


def path_energy_convex(u: np.ndarray, up: np.ndarray, r: int) -> np.ndarray:
    """Per-singular-direction energy Σ_blocks u_k²/‖u_{1:r}‖ of a convex solution (normalised to 1)."""
    B = np.concatenate([u, up], axis=0)[:, :r, :]  # (2P, r, C)
    B = np.moveaxis(B, 2, 1).reshape(-1, r)  # blocks × r
    nrm = np.linalg.norm(B, axis=1)
    keep = nrm > 0
    E = (B[keep] ** 2 / nrm[keep, None]).sum(0)
    return E / max(E.sum(), 1e-300)


def path_energy_network(W: np.ndarray, gamma: np.ndarray, Vout: np.ndarray, V: np.ndarray,
                        sigma: np.ndarray) -> np.ndarray:
    """Per-singular-direction energy Σ_j |γ_j|‖v_j‖ ẑ_jk² of a BN net, ẑ_j ∝ Σ Vᵀ w_j (normalised to 1)."""
    Z = sigma[:, None] * (V.T @ W)  # (r, m)
    Zn = Z / np.maximum(np.linalg.norm(Z, axis=0, keepdims=True), 1e-300)
    weight = np.abs(gamma) * np.linalg.norm(Vout, axis=1)
    E = (Zn**2 * weight[None, :]).sum(1)
    return E / max(E.sum(), 1e-300)


def top_fraction_energy(E: np.ndarray, fraction: float) -> float:
    """Share of the energy carried by the top `fraction` of singular directions."""
    k = max(1, int(math.ceil(fraction * len(E))))
    return float(np.sum(E[:k]) / max(np.sum(E), 1e-300))


def sparsify_blocks(Ut: np.ndarray, masks: np.ndarray, u: np.ndarray, up: np.ndarray,
                    rel_tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray, str]:
    """A sparsest-vertex optimal solution with the same fit and norm sum (LP over block magnitudes).

    Interior-point solvers return non-sparse optima; keeping each active block's direction fixed, any
    magnitudes t ≥ 0 reproducing the optimal fit with Σt equal to the optimum is optimal too, and a
    vertex of that LP has at most n·C non-zero blocks.
    """
    from scipy.optimize import linprog

    P, q, C = u.shape
    n = Ut.shape[0]
    norms = np.concatenate([np.linalg.norm(u, axis=1), np.linalg.norm(up, axis=1)], axis=0)  # (2P, C)
    thr = rel_tol * max(float(norms.max()), 1e-300)
    idx = np.argwhere(norms > thr)  # (b, 2) rows: (block, class)
    if idx.shape[0] == 0:
        return u, up, "empty"
    cols, mags = [], []
    for blk, c in idx:
        i, sgn = (blk, 1.0) if blk < P else (blk - P, -1.0)
        vec = (u if sgn > 0 else up)[i, :, c]
        t = float(np.linalg.norm(vec))
        col = np.zeros((n, C))
        col[:, c] = sgn * masks[:, i] * (Ut @ (vec / t))
        cols.append(col.ravel())
        mags.append(t)
    A = np.stack(cols, axis=1)
    t0 = np.array(mags)
    res = linprog(np.ones(len(t0)), A_eq=A, b_eq=A @ t0, bounds=(0, None), method="highs-ds")
    if res.status != 0 or res.x is None or res.fun > t0.sum() * (1 + 1e-9) + 1e-12:
        return u, up, f"lp_failed:{res.message}"
    t = np.where(res.x > 1e-12 * t0.max(), res.x, 0.0)
    u2, up2 = np.zeros_like(u), np.zeros_like(up)
    for (blk, c), tk, t_old in zip(idx, t, t0):
        if blk < P:
            u2[blk, :, c] = u[blk, :, c] / t_old * tk
        else:
            up2[blk - P, :, c] = up[blk - P, :, c] / t_old * tk
    return u2, up2, "ok"


def count_blocks(u: np.ndarray, up: np.ndarray, rel_tol: float = 1e-7) -> int:
    """Number of non-zero (pattern, class, sign) blocks = neurons of the reconstructed network."""
    norms = np.concatenate([np.linalg.norm(u, axis=1), np.linalg.norm(up, axis=1)], axis=0)
    return int(np.sum(norms > rel_tol * max(float(norms.max()), 1e-300)))


def _fit_of(net: Any, X: np.ndarray) -> np.ndarray:
    """Training-set outputs of a BN net with full-batch statistics (running stats reset to X)."""
    import torch

    from convexbn.networks import predict, set_running_stats

    p = next(net.parameters())
    set_running_stats(net, torch.as_tensor(np.asarray(X), dtype=p.dtype, device=p.device))
    return predict(net, X)


# --------------------------------------------------------------------------------------------------
# Training adapters (training engineer's API; see module `convexbn.training`)
# --------------------------------------------------------------------------------------------------


def _train(X: np.ndarray, Y: np.ndarray, beta: float, width: int, **kw: Any) -> Any:
    """Call convexbn.training.train_bn_network with only the keyword arguments it accepts."""
    import inspect

    from convexbn.training import train_bn_network

    sig = inspect.signature(train_bn_network).parameters
    kw = {k: v for k, v in kw.items() if k in sig and v is not None}
    return train_bn_network(X, Y, beta, width, **kw)


def _history_rows(hist: list[dict[str, Any]], points: int | None = None) -> list[dict[str, Any]]:
    """Trace rows (epoch, step, objective, seconds, accuracies) from a training history, log-subsampled."""
    keep = range(len(hist)) if points is None else _log_indices(len(hist), points)
    cols = ("epoch", "step", "objective", "seconds", "train_acc", "val_acc", "test_acc")
    return [{c: hist[i].get(c) for c in cols if c in hist[i]} for i in keep]


# --------------------------------------------------------------------------------------------------
# Experiment 1 — equivalence
# --------------------------------------------------------------------------------------------------


def _solve_exact(X: np.ndarray, Y: np.ndarray, beta: float, exp_cfg: dict[str, Any]) -> Any:
    """Program (C2) with exact (or configured) arrangements through convexbn.programs."""
    from convexbn.programs import solve_two_layer

    return solve_two_layer(X, Y, beta, arrangements=exp_cfg.get("arrangements", "exact"),
                           solver=exp_cfg.get("solver", "auto"), seed=int(exp_cfg.get("seed", 0)),
                           loss="squared", bias=exp_cfg.get("bias", "unit"))


def _reconstructed_objective(res: Any, u: np.ndarray, up: np.ndarray, X: np.ndarray, Y: np.ndarray,
                             beta: float) -> tuple[float, Any]:
    """Objective of the BN network reconstructed from blocks (u, u') by an ordinary forward pass."""
    from convexbn.networks import bn_mlp_from_params, evaluate_objective
    from convexbn.programs import reconstruct_before

    wh = res.extra["whitening"]
    params = reconstruct_before(wh, u, up, 1e-9 * max(float(np.abs(u).max()), float(np.abs(up).max()), 1e-300))
    bias_value = None if abs(wh.bias_value - 1.0 / math.sqrt(X.shape[0])) < 1e-15 else wh.bias_value
    net = bn_mlp_from_params(params, X, placement="before", bias_value=bias_value)
    return evaluate_objective(net, X, Y, beta), net


@functools.lru_cache(maxsize=4)
def _equivalence_reference_cached(key: str) -> dict[str, Any]:
    """Convex reference of experiment 1 (p*, sparsest m*, reconstruction), cached per config key."""
    exp_cfg = json.loads(key)
    X, Y = synthetic_data(int(exp_cfg["n"]), int(exp_cfg["d"]), int(exp_cfg.get("seed", 0)), "scalar",
                          noise=float(exp_cfg.get("noise", 0.1)))
    beta = float(exp_cfg["beta"])
    t0 = time.perf_counter()
    res = _solve_exact(X, Y, beta, exp_cfg)
    out: dict[str, Any] = {"p_star": res.objective, "record": _record_dict(res.record), "P": res.arrangements,
                           "neurons_solver": res.neurons, "X": X, "Y": Y, "solve_seconds": time.perf_counter() - t0}
    if res.params is None or "u" not in res.extra:
        out.update({"m_star": None, "status": res.record.status})
        return out
    u, up = np.asarray(res.extra["u"]), np.asarray(res.extra["up"])
    u = u.reshape(u.shape[0], u.shape[1], -1)
    up = up.reshape(up.shape[0], up.shape[1], -1)
    wh, arr = res.extra["whitening"], res.extra["arrangements"]
    Ut = wh.features(X)
    us, ups, sp_status = sparsify_blocks(Ut, arr.masks, u, up)
    rec_obj, _ = _reconstructed_objective(res, us, ups, X, Y, beta)
    rec_obj_dense, _ = _reconstructed_objective(res, u, up, X, Y, beta)
    out.update({"m_star": count_blocks(us, ups), "sparsify": sp_status, "reconstructed_objective": rec_obj,
                "reconstructed_objective_dense": rec_obj_dense, "neurons_dense": count_blocks(u, up),
                "status": res.record.status})
    return out


def _equivalence_reference(exp_cfg: dict[str, Any]) -> dict[str, Any]:
    """Cached convex reference keyed by the settings that determine it."""
    keys = ("n", "d", "noise", "beta", "seed", "solver", "arrangements", "bias")
    return _equivalence_reference_cached(json.dumps({k: exp_cfg[k] for k in keys if exp_cfg.get(k) is not None},
                                                    sort_keys=True))


def _run_equivalence(exp_cfg: dict[str, Any], job: str, device: str) -> dict[str, Any]:
    """Convex job: p*, m*, reconstructed objective; baseline job: one optimiser × width, ≥5 inits."""
    ref = _equivalence_reference(exp_cfg)
    p_star = ref["p_star"]
    common = {"p_star": p_star, "m_star": ref["m_star"], "P": ref["P"]}
    if job == "convex":
        metrics = {**common, "reconstructed_objective": ref.get("reconstructed_objective"),
                   "reconstructed_objective_dense": ref.get("reconstructed_objective_dense"),
                   "neurons_dense": ref.get("neurons_dense"), "sparsify": ref.get("sparsify"),
                   "reconstruction_gap": (None if ref.get("reconstructed_objective") is None else
                                          (ref["reconstructed_objective"] - p_star) / max(1.0, abs(p_star))),
                   "method": "convex", "solve_seconds": ref["solve_seconds"]}
        return {"metrics": metrics, "solver": ref["record"], "trace": [], "status": ref["status"]}
    opt, fac = job.split("_m")
    factor = float(fac.rstrip("x"))
    if ref["m_star"] is None:
        raise RuntimeError(f"equivalence: the convex reference failed (status {ref['status']}); "
                           f"cannot size the networks — fix the solver (config defaults.solver) first")
    width = max(1, int(math.ceil(factor * ref["m_star"])))
    X, Y, beta = ref["X"], ref["Y"], float(exp_cfg["beta"])
    tol = float(exp_cfg.get("tol", 1e-6))
    trace, finals, mins = [], [], []
    for init in range(int(exp_cfg["inits"])):
        seed = int(exp_cfg.get("seed", 0)) * 1000 + init
        tr = _train(X, Y, beta, width, optimizer=opt, lr=exp_cfg.get("lr", {}).get(opt),
                    epochs=int(exp_cfg["epochs"][opt]),
                    batch_size=int(exp_cfg.get("batch_size", 5)) if opt == "sgd" else None,
                    seed=seed, device=device, dtype="float64")
        objs = [h["objective"] for h in tr.history if h.get("objective") is not None]
        finals.append(float(tr.final_objective))
        mins.append(float(min(objs + [tr.final_objective])))
        for row in _history_rows(tr.history, int(exp_cfg.get("trace_points", 150))):
            trace.append({**row, "init": init})
    gap = (min(mins) - p_star) / max(1.0, abs(p_star))
    metrics = {**common, "method": opt, "optimizer": opt, "width": width, "width_factor": factor,
               "inits": len(finals), "best_final_objective": min(finals), "worst_final_objective": max(finals),
               "min_objective": min(mins), "rel_gap_best": (min(finals) - p_star) / max(1.0, abs(p_star)),
               "rel_gap_min": gap, "runs_below_p_star": int(sum((m - p_star) / max(1.0, abs(p_star)) < -tol
                                                                 for m in mins)),
               "runs_reaching_p_star": int(sum((f - p_star) / max(1.0, abs(p_star)) < 1e-3 for f in finals))}
    return {"metrics": metrics, "solver": ref["record"], "trace": trace, "status": "ok"}


# --------------------------------------------------------------------------------------------------
# Experiment 2 — closed form (n ≤ d)
# --------------------------------------------------------------------------------------------------


def _run_closed_form(exp_cfg: dict[str, Any], job: str, device: str) -> dict[str, Any]:
    """Closed form vs CVXPY vs local search for one (output kind, β): objectives, fits, penalties."""
    from convexbn.networks import bn_mlp_from_params, evaluate_objective
    from convexbn.programs import closed_form

    out_kind, bi = job.rsplit("_b", 1)
    beta = float(exp_cfg["betas"][int(bi)])
    n, d = int(exp_cfg["n"]), int(exp_cfg["d"])
    if n > d:
        raise ValueError(f"config experiments.closed_form: n={n} > d={d}; the closed form needs n <= d")
    X, Y = synthetic_data(n, d, int(exp_cfg.get("seed", 0)), out_kind, classes=int(exp_cfg.get("classes", 3)),
                          noise=float(exp_cfg.get("noise", 0.1)))
    cf = closed_form(X, Y, beta)
    fit_cf = None
    cf_net_obj = None
    if cf.params is not None and cf.params.width > 0:
        net = bn_mlp_from_params(cf.params, X)
        cf_net_obj = evaluate_objective(net, X, Y, beta)
        fit_cf = _fit_of(net, X)
    elif cf.params is not None:
        fit_cf = np.zeros_like(Y)
        cf_net_obj = 0.5 * float(np.sum(Y**2))
    cv = _solve_exact(X, Y, beta, {**exp_cfg, "arrangements": "exact"})
    fit_cv = None
    if cv.params is not None and cv.params.width > 0:
        fit_cv = _fit_of(bn_mlp_from_params(cv.params, X), X)
    elif cv.params is not None:
        fit_cv = np.zeros_like(Y)
    g = exp_cfg["gd"]
    best, fit_gd, finals = math.inf, None, []
    for init in range(int(g.get("inits", 3))):
        tr = _train(X, Y, beta, int(g["width"]), optimizer=g.get("optimizer", "lbfgs"), lr=g.get("lr"),
                    epochs=int(g["epochs"]), seed=int(exp_cfg.get("seed", 0)) * 1000 + init, device=device,
                    dtype="float64")
        finals.append(float(tr.final_objective))
        if tr.final_objective < best:
            best, fit_gd = float(tr.final_objective), _fit_of(tr.model, X)
    # fits relative to ‖Y‖ when the closed-form fit is (near) zero, i.e. for β ≥ ‖y_±‖
    rel = lambda a, b: None if a is None or b is None else float(  # noqa: E731
        np.linalg.norm(a - b) / max(np.linalg.norm(b), np.linalg.norm(Y), 1e-12))
    p_cf = cf.objective
    metrics = {
        "output": out_kind, "beta": beta, "n": n, "d": d,
        "p_closed": p_cf, "p_cvxpy": cv.objective, "p_gd_best": best, "closed_net_objective": cf_net_obj,
        "rel_diff_cvxpy": None if cv.objective is None else abs(cv.objective - p_cf) / max(1.0, abs(p_cf)),
        "rel_diff_gd": abs(best - p_cf) / max(1.0, abs(p_cf)),
        "fit_diff_cvxpy": rel(fit_cv, fit_cf), "fit_diff_gd": rel(fit_gd, fit_cf),
        "penalty_closed": None if cf.params is None else cf.params.penalty(),
        "penalty_cvxpy": None if cv.params is None else cv.params.penalty(),
        "neurons_closed": cf.neurons, "neurons_cvxpy": cv.neurons, "P": cv.arrangements,
        "gd_finals": finals, "method": "closed_form",
    }
    return {"metrics": metrics, "solver": _record_dict(cv.record), "trace": [],
            "status": "ok" if cv.record.status == "optimal" else cv.record.status}


# --------------------------------------------------------------------------------------------------
# Experiment 3 — whitening invariance
# --------------------------------------------------------------------------------------------------


def transform_data(X: np.ndarray, transform: str, seed: int) -> np.ndarray:
    """An invertible linear transform of X keeping its centred column space (or X itself)."""
    from convexbn.whitening import whiten

    rng = np.random.default_rng(seed + 7919)
    d = X.shape[1]
    if transform == "identity":
        return X.copy()
    if transform == "whitened":
        wh = whiten(X)
        return wh.features(X)[:, :-1] * math.sqrt(X.shape[0])  # U·√n (unit-variance whitened data)
    if transform == "random_linear":
        A = rng.standard_normal((d, d))
        return X @ A + rng.standard_normal(d)  # invertible a.s.; a shift leaves JX's column space unchanged
    if transform == "scaled":
        return X * np.geomspace(1e-1, 1e1, d)  # anisotropic scaling, condition number 100
    raise ValueError(f"whitening_invariance transform {transform!r}; choose identity, whitened, random_linear, scaled")


def train_plain_relu(X: np.ndarray, Y: np.ndarray, beta: float, width: int, *, epochs: int, lr: float,
                     seed: int, device: str = "cpu") -> tuple[float, np.ndarray]:
    """Full-batch Adam on a plain ReLU net (Linear+bias → ReLU → Linear), weight decay (β/2)·‖all weights‖²."""
    import torch

    torch.manual_seed(seed)
    dt = torch.float64
    Xt = torch.as_tensor(X, dtype=dt, device=device)
    Yt = torch.as_tensor(Y, dtype=dt, device=device)
    first = torch.nn.Linear(X.shape[1], width).to(dt).to(device)
    second = torch.nn.Linear(width, Y.shape[1], bias=False).to(dt).to(device)
    params = list(first.parameters()) + list(second.parameters())
    opt = torch.optim.Adam(params, lr=lr)

    def objective() -> torch.Tensor:
        """Full-batch squared loss plus (β/2)·Σ‖θ‖² over all weights and biases."""
        out = second(torch.relu(first(Xt)))
        return 0.5 * torch.sum((out - Yt) ** 2) + 0.5 * beta * sum(torch.sum(p**2) for p in params)

    for _ in range(int(epochs)):
        opt.zero_grad()
        val = objective()
        val.backward()
        opt.step()
    with torch.no_grad():
        final = float(objective())
        fit = second(torch.relu(first(Xt))).cpu().numpy()
    return final, fit


def _run_whitening(exp_cfg: dict[str, Any], job: str, device: str) -> dict[str, Any]:
    """Convex optimum, best trained BN net and best plain ReLU net on one transform of the same data."""
    from convexbn.networks import bn_mlp_from_params

    seed = int(exp_cfg.get("seed", 0))
    X0, Y = synthetic_data(int(exp_cfg["n"]), int(exp_cfg["d"]), seed, "scalar", noise=float(exp_cfg.get("noise", 0.1)))
    X = transform_data(X0, job, seed)
    beta = float(exp_cfg["beta"])
    res = _solve_exact(X, Y, beta, exp_cfg)
    fit_cvx = (_fit_of(bn_mlp_from_params(res.params, X), X) if res.params is not None and res.params.width
               else np.zeros_like(Y))
    bn_best, bn_fit, relu_best, relu_fit = math.inf, None, math.inf, None
    for init in range(int(exp_cfg["inits"])):
        s = seed * 1000 + init
        tr = _train(X, Y, beta, int(exp_cfg["width"]), optimizer="adam", lr=float(exp_cfg["lr"]),
                    epochs=int(exp_cfg["epochs"]), seed=s, device=device, dtype="float64")
        if tr.final_objective < bn_best:
            bn_best, bn_fit = float(tr.final_objective), _fit_of(tr.model, X)
        val, fit = train_plain_relu(X, Y, beta, int(exp_cfg["width"]), epochs=int(exp_cfg["epochs"]),
                                    lr=float(exp_cfg["lr"]), seed=s, device=device)
        if val < relu_best:
            relu_best, relu_fit = val, fit
    metrics = {"transform": job, "method": job, "p_star": res.objective, "bn_best": bn_best, "relu_best": relu_best,
               "cond_X": float(np.linalg.cond(X - X.mean(0))), "P": res.arrangements,
               "fit_convex": fit_cvx.ravel().tolist(), "fit_bn": bn_fit.ravel().tolist(),
               "fit_relu": relu_fit.ravel().tolist()}
    return {"metrics": metrics, "solver": _record_dict(res.record), "trace": [], "status": res.record.status}


# --------------------------------------------------------------------------------------------------
# Real-data helpers (experiments 4–6)
# --------------------------------------------------------------------------------------------------


def _beta(exp_cfg: dict[str, Any], n: int) -> float:
    """β in the paper's sum-loss convention: beta_per_sample·n (or an explicit 'beta')."""
    if "beta" in exp_cfg and exp_cfg["beta"] is not None:
        return float(exp_cfg["beta"])
    return float(exp_cfg["beta_per_sample"]) * n


def _fast_solve_traced(Ut: np.ndarray, Y: np.ndarray, beta: float, masks: np.ndarray, *,
                       max_iter: int, max_seconds: float, tol: float, chunks: int, device: str,
                       on_chunk: Callable[[np.ndarray, np.ndarray], dict[str, Any]],
                       polish: bool = False) -> tuple[Any, list[dict[str, Any]]]:
    """Run the fast solver in `chunks` warm-started pieces, calling on_chunk(u, u') after each."""
    import inspect

    from convexbn.solver import solve_c2_fast

    sig = inspect.signature(solve_c2_fast).parameters
    trace: list[dict[str, Any]] = []
    warm, sol = None, None
    it_total, sec_total = 0, 0.0
    chunks = max(1, int(chunks))
    per_iter = max(1, int(math.ceil(max_iter / chunks)))
    per_sec = max_seconds / chunks if max_seconds else None
    for c in range(chunks):
        kw: dict[str, Any] = {"tol": tol, "max_iter": per_iter, "max_seconds": per_sec, "device": device,
                              "warm_start": warm, "polish": polish and c == chunks - 1}
        kw = {k: v for k, v in kw.items() if k in sig}
        sol = solve_c2_fast(Ut, Y, beta, masks, **kw)
        it_total += int(sol.iterations or 0)
        sec_total += float(sol.seconds or 0.0)
        u, up = np.asarray(sol.u), np.asarray(sol.up)
        row = {"epoch": it_total, "step": it_total, "seconds": sec_total, "objective": float(sol.objective),
               "gap": None if sol.gap is None else float(sol.gap), **on_chunk(u, up)}
        trace.append(row)
        warm = sol
        if sol.status == "optimal":
            break
    return sol, trace


def _solver_dict(sol: Any, seconds: float) -> dict[str, Any]:
    """Fast-solver outcome as a plain dict."""
    return {"solver": "fast", "status": sol.status, "seconds": seconds, "iterations": sol.iterations,
            "objective": float(sol.objective), "gap": None if sol.gap is None else float(sol.gap),
            "cone_violation": None if getattr(sol, "cone_violation", None) is None else float(sol.cone_violation)}


def _convex_real(d: dict[str, Any], wh: Any, k: int | None, exp_cfg: dict[str, Any], settings: dict[str, Any],
                 seed: int, device: str, chunks: int) -> dict[str, Any]:
    """Truncate the whitening, sample P arrangements, fast-solve with traced accuracies; train/val/test acc."""
    from convexbn.arrangements import sample_arrangements
    from convexbn.whitening import truncate

    wk = truncate(wh, k)
    Xtr = np.asarray(d["X_train"], dtype=np.float64)
    C = int(d["num_classes"])
    Y = one_hot(d["y_train"], C)
    Ut = wk.features(Xtr)
    arr = sample_arrangements(Ut, int(exp_cfg["arrangements"]), seed=seed)
    Phi_val = wk.features(np.asarray(d["X_val"], dtype=np.float64)) if len(d["y_val"]) else None
    Phi_te = wk.features(np.asarray(d["X_test"], dtype=np.float64))
    pred_kind = exp_cfg.get("predictor", "network")
    beta = _beta(exp_cfg, Xtr.shape[0])

    def evaluate(u: np.ndarray, up: np.ndarray) -> dict[str, Any]:
        """Train/val/test accuracy of the current convex iterate."""
        fit = convex_outputs(Ut, u, up)  # = Σ_i D_i U'(u_i − u'_i) when the cone constraints hold
        row = {"train_acc": accuracy(fit, d["y_train"]),
               "test_acc": accuracy(convex_outputs(Phi_te, u, up, arr.generators, pred_kind), d["y_test"])}
        if Phi_val is not None:
            row["val_acc"] = accuracy(convex_outputs(Phi_val, u, up, arr.generators, pred_kind), d["y_val"])
        return row

    t0 = time.perf_counter()
    sol, trace = _fast_solve_traced(Ut, Y, beta, arr.masks, max_iter=int(settings.get("max_iter", 1000)),
                                    max_seconds=float(settings.get("max_seconds", 600)),
                                    tol=float(settings.get("tol", 1e-6)), chunks=chunks, device=device,
                                    on_chunk=evaluate, polish=bool(settings.get("polish", True)))
    seconds = time.perf_counter() - t0
    last = trace[-1]
    return {"k": wk.k, "q": wk.q, "P": arr.count, "beta": beta, "objective": float(sol.objective),
            "train_acc": last["train_acc"], "val_acc": last.get("val_acc"), "test_acc": last["test_acc"],
            "neurons": count_blocks(np.asarray(sol.u), np.asarray(sol.up), 1e-6),
            "solver": _solver_dict(sol, seconds), "trace": trace, "u": np.asarray(sol.u), "up": np.asarray(sol.up),
            "whitening": wk}


def _sgd_lr(s: dict[str, Any], n: int, beta: float) -> float | None:
    """SGD step: 'lr' as given, else lr_factor × training's stable default 0.1/(n(1 + width/4 + β))."""
    if s.get("lr") is not None:
        return float(s["lr"])
    if s.get("lr_factor") is not None:
        from convexbn.training import default_lr

        return float(s["lr_factor"]) * default_lr(s.get("optimizer", "sgd"), n, int(s["width"]), beta)
    return None


def _sgd_real(d: dict[str, Any], exp_cfg: dict[str, Any], s: dict[str, Any], seed: int, device: str,
              checkpoint: str | None) -> dict[str, Any]:
    """SGD-trained BN network on a prepared dataset; per-epoch accuracy trace with wall-clock time."""
    from convexbn.training import CheckpointMismatch

    C = int(d["num_classes"])
    Xtr = np.asarray(d["X_train"], dtype=np.float64)
    beta = _beta(exp_cfg, Xtr.shape[0])
    args = (Xtr, one_hot(d["y_train"], C), beta, int(s["width"]))
    kwargs = {"optimizer": s.get("optimizer", "sgd"), "lr": _sgd_lr(s, Xtr.shape[0], beta), "epochs": int(s["epochs"]),
              "batch_size": int(s["batch_size"]), "momentum": float(s.get("momentum", 0.9)), "seed": seed,
              "device": device, "dtype": s.get("dtype", "float32"), "X_test": np.asarray(d["X_test"], dtype=np.float64),
              "Y_test": one_hot(d["y_test"], C), "checkpoint": checkpoint}
    try:
        tr = _train(*args, **kwargs)
    except CheckpointMismatch as exc:  # a checkpoint left by an earlier, different configuration: start afresh
        if checkpoint is None:
            raise
        log.warning("discarding stale checkpoint %s: %s", checkpoint, exc)
        Path(checkpoint).unlink(missing_ok=True)
        tr = _train(*args, **kwargs)
    from convexbn.networks import predict

    out_tr = predict(tr.model, Xtr)
    out_te = predict(tr.model, np.asarray(d["X_test"], dtype=np.float64))
    res = {"objective": float(tr.final_objective), "train_acc": accuracy(out_tr, d["y_train"]),
           "test_acc": accuracy(out_te, d["y_test"]), "width": int(s["width"]), "beta": _beta(exp_cfg, Xtr.shape[0]),
           "trace": _history_rows(tr.history), "seconds": float(tr.seconds), "device": str(tr.device), "model": tr.model}
    if len(d["y_val"]):
        res["val_acc"] = accuracy(predict(tr.model, np.asarray(d["X_val"], dtype=np.float64)), d["y_val"])
    return res


def _checkpoint_path(out_json: str, name: str, job: str) -> str:
    """Checkpoint path <dirname(out_json)>/../checkpoints/<job>.pt of a resumable baseline."""
    return str(Path(out_json).resolve().parent.parent / "checkpoints" / f"{job}.pt")


# --------------------------------------------------------------------------------------------------
# Experiment 4 — implicit bias
# --------------------------------------------------------------------------------------------------


def _run_implicit_bias(exp_cfg: dict[str, Any], job: str, d: dict[str, Any], device: str) -> dict[str, Any]:
    """GD snapshots' (or the convex solution's) energy per singular direction on a training subset."""
    from convexbn.arrangements import sample_arrangements
    from convexbn.whitening import whiten

    method, ds, _ = _split_job("implicit_bias", exp_cfg, job)
    n = min(int(exp_cfg["n_train"]), len(d["y_train"]))
    X = np.asarray(d["X_train"][:n], dtype=np.float64)
    y = d["y_train"][:n]
    C = int(d["num_classes"])
    Y = one_hot(y, C)
    Xte = np.asarray(d["X_test"], dtype=np.float64)
    wh = whiten(X)
    r = wh.k
    beta = _beta(exp_cfg, n)
    seed = int(exp_cfg.get("seed", 0))
    frac = float(exp_cfg.get("top_fraction", 0.1))
    spectrum = [{"record_kind": "spectrum", "index": i + 1, "sigma": float(s)} for i, s in enumerate(wh.full_sigma)]
    if method == "gd":
        g = exp_cfg["gd"]
        snaps = sorted({int(e) for e in g["snapshots"]} | {0, int(g["epochs"])})
        model, done, trace, history = None, 0, [], []
        energies = {}
        for e in snaps:
            if e > done:
                tr = _train(X, Y, beta, int(exp_cfg["width"]), optimizer="gd", lr=g.get("lr"), epochs=e - done,
                            seed=seed, device=device, dtype="float64", init=model)
                history.extend({**h, "epoch": done + h.get("epoch", 0)} for h in tr.history
                               if not (history and h.get("epoch", 0) == 0))  # epoch 0 of a segment = last record
                model, done = tr.model, e
            elif model is None:
                from convexbn.networks import BNMLP
                import torch

                torch.manual_seed(seed)
                model = BNMLP(X.shape[1], int(exp_cfg["width"]), C).double().to(device)
            p = model.to_params(n)
            E = path_energy_network(p.W, p.gamma, p.V, wh.V, wh.sigma)
            energies[e] = E
            trace += [{"record_kind": "energy", "epoch": e, "index": i + 1, "energy": float(v)} for i, v in enumerate(E)]
        from convexbn.networks import predict

        final = energies[snaps[-1]]
        metrics = {"method": "gd", "dataset": ds, "n": n, "rank": r, "beta": beta, "epochs": int(g["epochs"]),
                   "top_energy_init": top_fraction_energy(energies[0], frac),
                   "top_energy": top_fraction_energy(final, frac), "top_fraction": frac,
                   "train_acc": accuracy(predict(model, X), y), "test_acc": accuracy(predict(model, Xte), d["y_test"]),
                   "objective": history[-1]["objective"] if history else None}
        trace += [{"record_kind": "objective", **row} for row in _history_rows(history, 100)]
        return {"metrics": metrics, "solver": {}, "trace": trace + spectrum, "status": "ok"}
    cc = exp_cfg["convex"]
    Ut = wh.features(X)
    arr = sample_arrangements(Ut, int(cc["arrangements"]), seed=seed)
    t0 = time.perf_counter()
    sol, _ = _fast_solve_traced(Ut, Y, beta, arr.masks, max_iter=int(cc["max_iter"]),
                                max_seconds=float(cc["max_seconds"]), tol=float(cc["tol"]), chunks=1, device=device,
                                on_chunk=lambda u, up: {}, polish=bool(cc.get("polish", True)))
    u, up = np.asarray(sol.u), np.asarray(sol.up)
    E = path_energy_convex(u, up, r)
    metrics = {"method": "convex", "dataset": ds, "n": n, "rank": r, "beta": beta, "P": arr.count,
               "top_energy": top_fraction_energy(E, frac), "top_fraction": frac,
               "train_acc": accuracy(convex_outputs(Ut, u, up), y),
               "test_acc": accuracy(convex_outputs(wh.features(Xte), u, up), d["y_test"]),
               "objective": float(sol.objective)}
    trace = [{"record_kind": "energy", "epoch": None, "index": i + 1, "energy": float(v)} for i, v in enumerate(E)]
    return {"metrics": metrics, "solver": _solver_dict(sol, time.perf_counter() - t0), "trace": trace + spectrum,
            "status": sol.status}


# --------------------------------------------------------------------------------------------------
# Experiments 5 and 6 — truncation and the main comparison
# --------------------------------------------------------------------------------------------------


def _run_truncation(exp_cfg: dict[str, Any], job: str, d: dict[str, Any], wh: Any, device: str,
                    out_json: str) -> dict[str, Any]:
    """One truncation k of the convex model (or the SGD reference) on one dataset."""
    method, ds, _ = _split_job("truncation", exp_cfg, job)
    seed = int(exp_cfg.get("seed", 0))
    if method == "sgd":
        r = _sgd_real(d, exp_cfg, exp_cfg["sgd"], seed, device, _checkpoint_path(out_json, "truncation", job))
        metrics = {"method": "sgd", "dataset": ds, **{k: r[k] for k in ("objective", "train_acc", "test_acc", "width",
                                                                           "beta") if k in r},
                   "val_acc": r.get("val_acc"), "k": None}
        return {"metrics": metrics, "solver": {}, "trace": r["trace"], "status": "ok"}
    k = _parse_k(method[1:])
    r = _convex_real(d, wh, k, exp_cfg, exp_cfg["convex"], seed, device, chunks=1)
    metrics = {"method": "convex", "dataset": ds, "k": r["k"], "k_label": _ks_label(k), "q": r["q"], "P": r["P"],
               "beta": r["beta"], "objective": r["objective"], "train_acc": r["train_acc"], "val_acc": r["val_acc"],
               "test_acc": r["test_acc"], "neurons": r["neurons"], "rank": wh.rank}
    return {"metrics": metrics, "solver": r["solver"], "trace": r["trace"], "status": r["solver"]["status"]}


def _run_main(exp_cfg: dict[str, Any], job: str, d: dict[str, Any], wh: Any, device: str,
              out_json: str) -> dict[str, Any]:
    """SGD BN net, exact convex (full whitening) or validation-chosen truncated convex model, one seed."""
    method, ds, seed = _split_job("main_comparison", exp_cfg, job)
    chunks = int(exp_cfg.get("trace_points", 20))
    base = {"method": method, "dataset": ds, "seed": seed}
    if method == "sgd":
        r = _sgd_real(d, exp_cfg, exp_cfg["sgd"], seed, device, _checkpoint_path(out_json, "main_comparison", job))
        metrics = {**base, **{k: r.get(k) for k in ("objective", "train_acc", "val_acc", "test_acc", "width", "beta")},
                   "seconds": r["seconds"]}
        return {"metrics": metrics, "solver": {}, "trace": r["trace"], "status": "ok"}
    if method == "convex_full":
        r = _convex_real(d, wh, None, exp_cfg, exp_cfg["convex_full"], seed, device, chunks)
        metrics = {**base, **{k: r[k] for k in ("k", "q", "P", "beta", "objective", "train_acc", "val_acc",
                                                "test_acc", "neurons")}, "seconds": r["solver"]["seconds"]}
        return {"metrics": metrics, "solver": r["solver"], "trace": r["trace"], "status": r["solver"]["status"]}
    if method != "convex_truncated":
        raise ValueError(f"main_comparison method {method!r}; choose sgd, convex_full or convex_truncated")
    results = []
    for k in exp_cfg["ks"]:
        kk = _parse_k(k)
        if kk is not None and kk >= wh.k:
            continue
        results.append(_convex_real(d, wh, kk, exp_cfg, exp_cfg["convex_truncated"], seed, device, chunks))
    if not results:
        raise ValueError(f"main_comparison.ks={exp_cfg['ks']}: every k is >= the data rank {wh.k}; choose smaller ks")
    has_val = results[0]["val_acc"] is not None
    best = max(results, key=lambda r: (r["val_acc"] if has_val else r["train_acc"], -r["k"]))
    seconds = sum(r["solver"]["seconds"] for r in results)
    metrics = {**base, **{k: best[k] for k in ("k", "q", "P", "beta", "objective", "train_acc", "val_acc",
                                               "test_acc", "neurons")},
               "k_selected_by": "validation accuracy" if has_val else "training accuracy (no validation split)",
               "k_candidates": [r["k"] for r in results], "val_acc_candidates": [r["val_acc"] for r in results],
               "seconds": best["solver"]["seconds"], "seconds_all_k": seconds}
    return {"metrics": metrics, "solver": best["solver"], "trace": best["trace"], "status": best["solver"]["status"]}


# --------------------------------------------------------------------------------------------------
# Experiment 7 — variants
# --------------------------------------------------------------------------------------------------


def _local_search(make_net: Callable[[int], Any], objective: Callable[[Any], Any], inits: int, epochs: int, lr: float,
                  optimizer: str, params_of: Callable[[Any], list] | None = None) -> list[float]:
    """Final objectives of full-batch Adam (or L-BFGS) on a torch module from several seeded inits."""
    import torch

    finals = []
    for i in range(inits):
        net = make_net(i)
        params = params_of(net) if params_of else [p for p in net.parameters() if p.requires_grad]
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(params, lr=lr, max_iter=20, line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                """Re-evaluate the objective and its gradient for L-BFGS."""
                opt.zero_grad()
                v = objective(net)
                v.backward()
                return v

            for _ in range(max(1, epochs // 20)):
                opt.step(closure)
        else:
            opt = torch.optim.Adam(params, lr=lr)
            for _ in range(epochs):
                opt.zero_grad()
                v = objective(net)
                v.backward()
                opt.step()
        with torch.no_grad():
            finals.append(float(objective(net)))
    return finals


def _run_variant(exp_cfg: dict[str, Any], job: str, device: str) -> dict[str, Any]:
    """Convex optimum of one variant on one random instance vs the best local-search objective."""
    import torch

    from convexbn import variants as V

    variant, inst = job.rsplit("_i", 1)
    finals_best = math.inf
    seed = int(exp_cfg.get("seed", 0)) * 100 + int(inst)
    beta = float(exp_cfg["beta"])
    ls = exp_cfg["local_search"]
    vc = exp_cfg[variant]
    arr_spec = exp_cfg.get("arrangements", "exact")
    solver = exp_cfg.get("solver", "auto")
    inits, epochs, lr, opt = int(exp_cfg["inits"]), int(ls["epochs"]), float(ls["lr"]), ls.get("optimizer", "adam")
    width = int(ls["width"])
    dt = torch.float64
    info: dict[str, Any] = {"variant": variant, "instance": int(inst), "beta": beta}
    if variant in ("bn_after_relu", "vector_output"):
        outputs = "onehot" if variant == "vector_output" else "scalar"
        X, Y = synthetic_data(int(vc["n"]), int(vc["d"]), seed, outputs, classes=int(vc.get("classes", 3)))
        if variant == "bn_after_relu":
            res = V.solve_bn_after_relu(X, Y, beta, arrangements=arr_spec, seed=seed, solver=solver, loss="squared")
            placement = "after"
        else:
            res = _solve_exact(X, Y, beta, exp_cfg)
            placement = "before"
        def best_of(Yc: np.ndarray) -> list[float]:
            """Final objectives of the local search from every init on targets Yc."""
            return [float(_train(X, Yc, beta, width, optimizer=opt, lr=lr, epochs=epochs, seed=seed * 1000 + i,
                                 placement=placement, device=device, dtype="float64").final_objective)
                    for i in range(inits)]

        if variant == "vector_output":
            # The decoupled per-class program (A5) lets each neuron feed one class, i.e. C independent
            # scalar problems: its non-convex counterpart is one scalar BN network per class (objectives
            # add up). A free vector-output network (shared neurons) is reported too: it may go below.
            per_class = [best_of(Y[:, [c]]) for c in range(Y.shape[1])]
            finals = [float(sum(v)) for v in zip(*per_class)]
            finals_best = float(sum(min(v) for v in per_class))
            shared = best_of(Y)
            info["best_nonconvex_shared_neurons"] = min(shared)
        else:
            finals = best_of(Y)
        info.update({"n": X.shape[0], "d": X.shape[1], "outputs": Y.shape[1]})
    elif variant == "cnn":
        rng = np.random.default_rng(seed)
        n, L = int(vc["n"]), int(vc["length"])
        X = rng.standard_normal((n, L))
        y = np.maximum(X[:, :2].sum(1), 0) - 0.5 * np.maximum(-X[:, -2:].sum(1), 0) + 0.1 * rng.standard_normal(n)
        Y = ((y - y.mean()) / (y.std() + 1e-12))[:, None]
        patches = V.extract_patches_1d(X, int(vc["patch"]), int(vc.get("stride", 1)))
        res = V.solve_cnn(patches, Y, beta, arrangements=arr_spec, seed=seed, solver=solver, loss="squared")
        Pt = torch.as_tensor(patches, dtype=dt, device=device)
        Yt = torch.as_tensor(Y, dtype=dt, device=device)

        def make(i: int) -> Any:
            """A freshly initialised BN-CNN for init i."""
            torch.manual_seed(seed * 1000 + i)
            return V.BNConvNet(patches.shape[2], width, Y.shape[1]).to(dt).to(device)

        finals = _local_search(make, lambda net: net.objective(Pt, Yt, beta), inits, epochs, lr, opt)
        info.update({"n": n, "K": patches.shape[1], "h": patches.shape[2]})
    elif variant == "deep":
        X, Y = synthetic_data(int(vc["n"]), int(vc["d"]), seed, "scalar")
        widths = [int(h) for h in vc["hidden"]]
        torch.manual_seed(seed)
        base = V.DeepBNNet(X.shape[1], widths + [int(vc["width"])], Y.shape[1]).to(dt)
        res = V.solve_deep_last_two(base, X, Y, beta, arrangements=arr_spec, seed=seed, solver=solver)
        Xt = torch.as_tensor(X, dtype=dt, device=device)
        Yt = torch.as_tensor(Y, dtype=dt, device=device)

        def make(i: int) -> Any:
            """Copy of the fixed-earlier-layers net with freshly initialised last two layers."""
            net = copy.deepcopy(base).to(device)
            torch.manual_seed(seed * 1000 + i)
            for mod in (net.linears[-1], net.bns[-1], net.out):
                mod.reset_parameters()
            return net

        def last_two(net: Any) -> list:
            """Parameters of the last hidden layer (Linear + BN) and the output layer; others frozen."""
            ps = [*net.linears[-1].parameters(), *net.bns[-1].parameters(), *net.out.parameters()]
            for p in net.parameters():
                p.requires_grad_(False)
            for p in ps:
                p.requires_grad_(True)
            return ps

        finals = _local_search(make, lambda net: net.objective(Xt, Yt, beta), inits, epochs, lr, opt, last_two)
        info.update({"n": X.shape[0], "d": X.shape[1], "hidden": widths})
    else:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANT_NAMES)}")
    p_star = res.objective
    best = finals_best if variant == "vector_output" else min(finals)
    metrics = {**info, "method": variant, "p_star": p_star, "best_nonconvex": best, "worst_nonconvex": max(finals),
               "rel_gap": None if p_star is None else (best - p_star) / max(1.0, abs(p_star)), "P": res.arrangements,
               "neurons": res.neurons, "inits": inits,
               "form": "decoupled per-class (A5)" if variant == "vector_output" else "exact"}
    return {"metrics": metrics, "solver": _record_dict(res.record), "trace": [], "status": res.record.status}


# --------------------------------------------------------------------------------------------------
# Entry points used by the pipeline
# --------------------------------------------------------------------------------------------------


def _strip_arrays(obj: Any) -> Any:
    """Drop non-JSON heavy objects (arrays of solutions, models) from a result dict."""
    if isinstance(obj, dict):
        return {k: _strip_arrays(v) for k, v in obj.items() if k not in ("u", "up", "model", "whitening")}
    if isinstance(obj, list):
        return [_strip_arrays(v) for v in obj]
    return obj


def run_job(name: str, exp_cfg: dict[str, Any], job: str, data: dict[str, str], whitening: dict[str, str],
            out_json: str) -> None:
    """Run one job and write its JSON (metrics, trace, solver status, provenance) atomically to out_json."""
    from convexbn.io import provenance, write_json
    from convexbn.whitening import load_whitening

    _check_name(name)
    datasets = job_datasets(name, exp_cfg, job)
    _set_threads(exp_cfg)
    device = resolve_device(exp_cfg.get("device", "auto"))
    seed = int(exp_cfg.get("seed", 0))
    np.random.seed(seed)
    t0 = time.perf_counter()
    synthetic = True
    dataset = None
    log.info("experiment %s: job %s on %s", name, job, device)
    if name == "equivalence":
        res = _run_equivalence(exp_cfg, job, device)
    elif name == "closed_form":
        res = _run_closed_form(exp_cfg, job, device)
    elif name == "whitening_invariance":
        res = _run_whitening(exp_cfg, job, device)
    elif name == "variants":
        res = _run_variant(exp_cfg, job, device)
    else:
        dataset = datasets[0]
        if dataset not in data:
            raise ValueError(f"experiment {name}, job {job}: no prepared data path for dataset {dataset!r} "
                             f"(got {sorted(data)}); the pipeline must pass data[{dataset!r}]")
        d = load_prepared(data[dataset])
        synthetic = bool(d["meta"].get("synthetic", False))
        if name == "implicit_bias":
            res = _run_implicit_bias(exp_cfg, job, d, device)
        else:
            wpath = whitening.get(dataset)
            if wpath is None:
                raise ValueError(f"experiment {name}, job {job}: no cached whitening for {dataset!r}")
            wh = load_whitening(wpath)
            if name == "truncation":
                res = _run_truncation(exp_cfg, job, d, wh, device, out_json)
            else:
                res = _run_main(exp_cfg, job, d, wh, device, out_json)
    seconds = time.perf_counter() - t0
    method, _, job_seed = _split_job(name, exp_cfg, job)
    doc = {"experiment": name, "job": job, "kind": job_kind(name, exp_cfg, job), "dataset": dataset,
           "synthetic": synthetic, "status": res["status"], "device": device, "wall_seconds": seconds,
           "metrics": _strip_arrays(res["metrics"]), "solver": res["solver"], "trace": _strip_arrays(res["trace"]),
           "provenance": provenance(config=exp_cfg, seed=seed if job_seed is None else job_seed, device=device,
                                    seconds=seconds)}
    write_json(out_json, doc)


def _flat_scalar_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics restricted to scalars (lists/dicts are kept in the JSON, not the CSV)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


def aggregate(name: str, exp_cfg: dict[str, Any], job_jsons: list[str], out_csv: str) -> None:
    """Merge job JSONs into one tidy long-format CSV: summary rows (one per job) and trace rows."""
    import pandas as pd

    from convexbn.io import atomic_write_bytes, read_json

    _check_name(name)
    rows: list[dict[str, Any]] = []
    docs = [read_json(p) for p in job_jsons]
    if not docs:
        raise ValueError(f"aggregate {name}: no job JSONs given")
    for doc in docs:
        base = {"experiment": doc["experiment"], "job": doc["job"], "kind": doc["kind"], "dataset": doc.get("dataset"),
                "synthetic": bool(doc.get("synthetic", False)), "device": doc.get("device"),
                "status": doc.get("status")}
        summary = {"record": "summary", **base, "wall_seconds": doc.get("wall_seconds"),
                   **_flat_scalar_metrics(doc["metrics"])}
        solver = doc.get("solver") or {}
        summary.update({f"solver_{k}": v for k, v in solver.items() if isinstance(v, (int, float, str, bool))})
        rows.append(summary)
        meta = {k: doc["metrics"].get(k) for k in ("method", "seed", "width", "width_factor", "optimizer", "k")
                if k in doc["metrics"]}
        for t in doc.get("trace", []):
            rows.append({"record": "trace", **base, **meta, **_flat_scalar_metrics(t)})
    if name == "whitening_invariance":
        ident = next((d for d in docs if d["job"] == "identity"), None)
        for row in rows:
            if row["record"] != "summary" or ident is None:
                continue
            doc = next(d for d in docs if d["job"] == row["job"])
            for key in ("convex", "bn", "relu"):
                a = np.asarray(doc["metrics"][f"fit_{key}"])
                b = np.asarray(ident["metrics"][f"fit_{key}"])
                row[f"fit_change_{key}"] = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
            for key, col in (("convex", "p_star"), ("bn", "bn_best"), ("relu", "relu_best")):
                base_v = ident["metrics"][col]
                row[f"obj_change_{key}"] = abs(row[col] - base_v) / max(1.0, abs(base_v))
    df = pd.DataFrame(rows)
    atomic_write_bytes(out_csv, df.to_csv(index=False).encode())


def figure_stems(name: str, exp_cfg: dict[str, Any]) -> list[str]:
    """Figure file stems (figures/{stem}.pdf|png) an experiment produces."""
    from convexbn import plots

    return plots.figure_stems(name, exp_cfg)


def table_stems(name: str, exp_cfg: dict[str, Any]) -> list[str]:
    """Table file stems (figures/{stem}.md|tex) an experiment produces."""
    from convexbn import plots

    return plots.table_stems(name, exp_cfg)


def make_figures(name: str, exp_cfg: dict[str, Any], table_csv: str, out_dir: str) -> None:
    """Draw every figure and write every table of an experiment from its aggregated CSV."""
    from convexbn import plots

    plots.make_figures(name, exp_cfg, table_csv, out_dir)


def experiment_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """exp_cfg = {**config['defaults'], **config['experiments'][name]} (the pipeline's convention)."""
    _check_name(name)
    if name not in config.get("experiments", {}):
        raise ValueError(f"config has no experiments.{name} entry; add it (see default_config())")
    return {**config.get("defaults", {}), **config["experiments"][name]}

