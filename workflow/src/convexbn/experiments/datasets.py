"""Prepared datasets: seeded train/validation/test subsets (`results/data/{ds}.npz`) and their
cached whitening (`results/whiten/{ds}.npz`).

Repeated runs vary the data too: seed s of an experiment reads its own training and validation
subsets (`results/data/{ds}/seed{s}.npz`, drawn from the dataset's pool with a generator seeded by
(dataset seed, s)) with the dataset's test subset. Each seed is a prepared file of its own rather
than a subset drawn inside every job: normalisation statistics and the whitening (one SVD) belong
to the seed's training subset, so a file per seed computes them once and every job of that seed
(each k, each method, each P) reuses them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

#: Dataset kinds `build_dataset` understands.
DATASET_KINDS: tuple[str, ...] = ("digits", "fashion_mnist", "cifar10", "cifar100")


def _raw_arrays(kind: str, ds_name: str, ds_cfg: dict[str, Any], raw: str | None) -> dict[str, Any]:
    """Raw train/test arrays of a dataset from convexbn.data's loaders."""
    from convexbn import data

    if kind == "digits":
        return data.load_digits_split(test_fraction=float(ds_cfg["test_fraction"]), seed=int(ds_cfg["seed"]))
    if kind in ("cifar10", "cifar100"):
        if raw is None:
            raise ValueError(
                f"dataset {ds_name} ({kind}): no raw archive path given; the download rule must "
                f"provide results/raw/{kind} archive (or set data.{kind}.archive)"
            )
        return data.load_cifar(raw, name=kind)
    return data.load_fashion_mnist(raw)  # raw None → Debian's dataset-fashion-mnist folder (clear error if absent)


def _subset_rngs(seed: int, replicate: int | None) -> tuple[np.random.Generator, np.random.Generator | None]:
    """(validation, training) generators: the dataset's own subsets, or those of one seed of a repeated run.

    replicate None keeps the dataset's subsets (training subset drawn by `data.prepare_arrays` from
    `seed`, generator None); replicate s draws both from SeedSequence((seed, s)).
    """
    if replicate is None:
        return np.random.default_rng(seed + 104729), None
    val, train = np.random.SeedSequence([seed, int(replicate)]).spawn(2)
    return np.random.default_rng(val), np.random.default_rng(train)


def _training_rows(
    y: np.ndarray, pool: np.ndarray, ds_cfg: dict[str, Any], rng: np.random.Generator | None
) -> tuple[np.ndarray, int | None]:
    """(rows of the training pool, n_train left for prepare_arrays): the seed's stratified subset when rng is set."""
    from convexbn import data

    n_train = int(ds_cfg["n_train"])
    if rng is None:
        return pool, n_train
    classes = ds_cfg["classes"]
    eligible = pool if classes is None else pool[np.isin(y[pool], np.asarray(classes, dtype=np.int64))]
    return eligible[data.stratified_subset(y[eligible], n_train, rng)], None


def build_dataset(
    ds_name: str, ds_cfg: dict[str, Any], raw: str | None, out_npz: str, replicate: int | None = None
) -> None:
    """Prepare `results/data/{ds}.npz` (or seed `replicate`'s subsets): train/val/test normalised with train statistics.

    `ds_cfg` is one validated `datasets.<name>` entry (the schema filled in its defaults). The test
    subset depends on the dataset's seed only, so it is the same for every replicate.
    """
    from convexbn import data

    kind = ds_cfg["kind"]
    if kind not in DATASET_KINDS:
        raise ValueError(f"config key datasets.{ds_name}.kind: {kind!r} is not one of {', '.join(DATASET_KINDS)}")
    src = _raw_arrays(kind, ds_name, ds_cfg, raw)
    seed = int(ds_cfg["seed"])
    n_train, n_val = int(ds_cfg["n_train"]), int(ds_cfg["n_val"])
    n_test = ds_cfg["n_test"]
    ytr_all = np.asarray(src["y_train"]).reshape(-1)
    if n_train + n_val > ytr_all.shape[0]:
        raise ValueError(
            f"datasets.{ds_name}: n_train + n_val = {n_train + n_val} exceeds the {ytr_all.shape[0]} "
            f"training samples of {kind}; lower n_train or n_val"
        )
    val_rng, train_rng = _subset_rngs(seed, replicate)
    val_idx = data.stratified_subset(ytr_all, n_val, val_rng) if n_val else np.zeros(0, dtype=np.int64)
    pool, n_left = _training_rows(ytr_all, np.setdiff1d(np.arange(ytr_all.shape[0]), val_idx), ds_cfg, train_rng)
    Xtr_all = np.asarray(src["X_train"])
    opts = {
        "classes": ds_cfg["classes"],
        "n_train": n_left,
        "normalize": ds_cfg["normalize"],
        "seed": seed,
        "num_classes": None,
    }
    main = data.prepare_arrays(
        Xtr_all[pool],
        ytr_all[pool],
        src["X_test"],
        src["y_test"],
        n_test=None if n_test is None else int(n_test),
        **opts,
    )
    out = {
        "X_train": main["X_train"],
        "y_train": main["y_train"],
        "X_test": main["X_test"],
        "y_test": main["y_test"],
        "num_classes": int(len(main["classes"])),
    }
    if n_val:  # same training subset and statistics (same seed), the validation rows take the test slot
        val = data.prepare_arrays(Xtr_all[pool], ytr_all[pool], Xtr_all[val_idx], ytr_all[val_idx], n_test=None, **opts)
        out.update({"X_val": val["X_test"], "y_val": val["y_test"]})
    else:
        out.update({"X_val": main["X_train"][:0], "y_val": main["y_train"][:0]})
    meta = {
        "name": ds_name,
        "kind": kind,
        "config": ds_cfg,
        "synthetic": bool(ds_cfg["synthetic"]),
        "raw": raw,
        "replicate": replicate,
        "n_train": int(out["X_train"].shape[0]),
        "n_val": int(out["X_val"].shape[0]),
        "n_test": int(out["X_test"].shape[0]),
        "d": int(out["X_train"].shape[1]),
    }
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
    save_whitening(out_npz, whiten(np.asarray(d["X_train"], dtype=np.float64), bias=ds_cfg["bias"]))
