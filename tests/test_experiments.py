"""Every experiment's jobs at tiny scale, expanded from the shipped config files by the grid and run
through convexbn.experiments.runner, with each claim checked."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import load_config

from convexbn.experiments import grid
from convexbn.experiments.common import synthetic_data
from convexbn.experiments.datasets import build_dataset, load_prepared, whiten_dataset
from convexbn.experiments.runner import aggregate, job_device, run_job
from convexbn.experiments.selection import select_on_validation

SOLVER = {"seed": 0, "solver": "CLARABEL", "device": "cpu", "threads": 1}


def tiny_config(name: str, **settings) -> dict:
    """The CI config with experiment `name` overridden by `settings` and an open-source solver on the CPU."""
    return load_config("ci.yaml", {"defaults": SOLVER, "experiments": {name: settings}})


def _run_all(name, config, tmp_path, data=None, whitening=None):
    """Run every job of an experiment and aggregate; returns (docs by job, aggregated DataFrame)."""
    docs, paths = {}, []
    for job in grid.experiment_jobs(config, name):
        out = tmp_path / "results" / name / "jobs" / f"{job.id}.json"
        ckpt = tmp_path / "results" / name / "checkpoints" / f"{job.id}.pt" if job.kind == "baselines" else None
        run_job(job, data or {}, whitening or {}, str(out), None if ckpt is None else str(ckpt))
        docs[job.id] = json.loads(out.read_text())
        paths.append(str(out))
    csv = tmp_path / "tables" / f"{name}.csv"
    aggregate(name, paths, str(csv))
    return docs, pd.read_csv(csv)


def _check_doc(doc):
    assert {"metrics", "trace", "solver", "provenance", "status", "device", "synthetic"} <= set(doc)
    prov = doc["provenance"]
    assert prov["config"] and prov["device"] == "cpu" and prov["wall_seconds"] > 0 and "versions" in prov


# ------------------------------------------------------------------------------------------ config and grid


def test_configs_expand_to_jobs_with_kinds_and_datasets():
    for config in (load_config(), load_config("ci.yaml"), load_config("ci.yaml", "demo.yaml")):
        assert set(config["experiments"]) == set(grid.EXPERIMENT_NAMES)
        for name in grid.EXPERIMENT_NAMES:
            jobs = grid.experiment_jobs(config, name)
            assert jobs and len({j.id for j in jobs}) == len(jobs)
            for job in jobs:
                assert job.kind in ("baselines", "convex")
                assert {"seed", "device", "threads"} <= set(job.params)
                for ds in job.datasets:
                    assert ds in config["datasets"], (name, job.id, ds)
            if name not in grid.REAL_DATA_EXPERIMENTS:
                assert all(j.datasets == () for j in jobs)
    full = load_config()["experiments"]
    assert full["equivalence"]["inits"] >= 5 and len(full["main_comparison"]["seeds"]) >= 3
    assert {"cifar10", "cifar100"} <= set(full["main_comparison"]["datasets"])


DS = ("digits", "cifar10")  # the CI config's main_comparison datasets


def test_a_job_receives_only_its_own_settings():
    """Adding a k, a seed or a width factor adds jobs and leaves every existing job's parameters as they were."""
    before = grid.jobs(load_config("ci.yaml"))
    more = {
        "experiments": {
            "truncation": {"ks": [4, "full", 16]},
            "main_comparison": {"seeds": [0, 1]},
            "equivalence": {"width_factors": [1.0, 3.0, 5.0]},
        }
    }
    after = grid.jobs(load_config("ci.yaml", more))
    assert set(before) < set(after)
    assert {k for k in after if k not in before} == {
        ("truncation", "k16_digits"),
        ("equivalence", "gd_m5x"),
        ("equivalence", "adam_m5x"),
        *{("main_comparison", f"{m}_{ds}_s1") for m in ("sgd", "convex_full", "convex_truncated_k8") for ds in DS},
    }
    ks = grid.jobs(load_config("ci.yaml", {"experiments": {"main_comparison": {"ks": [8, 4, "full"]}}}))
    assert {k for k in ks if k not in before} == {  # one truncated job per (dataset, seed, k) and per P
        ("main_comparison", f"{stem}_k{k}_{ds}_s0")
        for stem in ("convex_truncated", "convex_P16")
        for k in (4, "full")
        for ds in DS
    }
    assert all(ks[key].params == job.params for key, job in before.items())
    for key, job in before.items():
        assert after[key].params == job.params, key
    k4 = after[("truncation", "k4_digits")].params
    assert k4["k"] == 4 and "ks" not in k4 and "sgd" not in k4  # the convex job never sees the SGD settings
    assert "convex" not in after[("truncation", "sgd_digits")].params


def test_bad_configs_are_rejected_with_clear_messages():
    config = load_config("ci.yaml")
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        grid.experiment_config(config, "nope")
    with pytest.raises(ValueError, match="not one of its jobs"):
        grid.find_job(config, "main_comparison", "sgd_mnist_s0")
    with pytest.raises(ValueError, match="epochs has no entry for optimizer 'lbfgs'"):
        grid.experiment_jobs(
            load_config("ci.yaml", {"experiments": {"equivalence": {"optimizers": ["lbfgs"]}}}), "equivalence"
        )
    with pytest.raises(ValueError, match="'mnist', which is not defined under 'datasets:'"):
        grid.experiment_jobs(
            load_config("ci.yaml", {"experiments": {"truncation": {"datasets": ["mnist"]}}}), "truncation"
        )
    with pytest.raises(ValueError, match="duplicate jobs"):
        grid.experiment_jobs(load_config("ci.yaml", {"experiments": {"truncation": {"ks": [4, 4]}}}), "truncation")
    with pytest.raises(ValueError, match="defaults.device"):
        job_device("tpu")
    assert grid.non_finite_numbers({"a": {"b": [1.0, float("nan")]}, "c": float("inf"), "d": 2}) == [
        "config.a.b[1]",
        "config.c",
    ]


def test_the_grid_imports_neither_numpy_nor_torch():
    """The Snakefile parses the grid: it must stay light (standard library only)."""
    import subprocess

    code = "import sys, convexbn.experiments.grid; print(sorted({'numpy', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_selection_on_validation_prefers_validation_then_the_smaller_k():
    cands = [
        {"k": 4, "val_acc": 0.8, "train_acc": 0.9, "test_acc": 0.1},
        {"k": 16, "val_acc": 0.8, "train_acc": 1.0, "test_acc": 0.9},
        {"k": 64, "val_acc": 0.7, "train_acc": 1.0, "test_acc": 1.0},
    ]
    assert select_on_validation(cands)["k"] == 4  # tie on validation: the smaller k; test never looked at
    no_val = [{**c, "val_acc": None} for c in cands]
    assert select_on_validation(no_val)["k"] == 16
    with pytest.raises(ValueError, match="no candidates"):
        select_on_validation([])


# ------------------------------------------------------------------------------------------ helpers


def test_convex_predictor_equals_reconstructed_network_and_energies_agree():
    """A4 'network' predictor = the reconstructed BN net on new data; both energy definitions agree."""
    from convexbn.networks import bn_mlp_from_params, predict
    from convexbn.programs import convex_outputs, predict_convex_gates, reconstruct_before, solve_two_layer
    from convexbn.whitening import path_energy_convex, path_energy_network

    X, Y = synthetic_data(9, 2, 3, "scalar")
    res = solve_two_layer(X, Y, 0.1, arrangements="exact", solver="CLARABEL")
    wh, u, up = res.extra["whitening"], res.extra["u"], res.extra["up"]
    Xnew = np.random.default_rng(1).standard_normal((7, 2))
    net = bn_mlp_from_params(reconstruct_before(wh, u, up, 1e-9), X)
    np.testing.assert_allclose(convex_outputs(wh.features(Xnew), u, up), predict(net, Xnew), rtol=1e-6, atol=1e-8)
    arr = res.extra["arrangements"]
    np.testing.assert_allclose(
        convex_outputs(wh.features(Xnew), u, up, arr.generators, "generator"),
        predict_convex_gates(wh, arr, u, up, Xnew),
        rtol=1e-8,
        atol=1e-10,
    )
    p = reconstruct_before(wh, u, up, 0.0)
    np.testing.assert_allclose(
        path_energy_network(p.W, p.gamma, p.V, wh.V, wh.sigma), path_energy_convex(u, up, wh.k), rtol=1e-6, atol=1e-10
    )


# ------------------------------------------------------------------------------------------ experiments


def test_equivalence_reconstruction_attains_p_star_and_no_run_beats_it(tmp_path):
    config = tiny_config(
        "equivalence",
        n=8,
        d=2,
        optimizers=["gd", "adam"],
        width_factors=[0.5, 2.0],
        inits=2,
        epochs={"gd": 60, "adam": 150},
        lr={"gd": 0.01, "adam": 0.02},
        tol=1e-6,
        trace_points=20,
    )
    docs, df = _run_all("equivalence", config, tmp_path)
    conv = docs["convex"]["metrics"]
    p_star = conv["p_star"]
    assert docs["convex"]["status"] == "optimal"
    assert abs(conv["reconstructed_objective"] - p_star) <= 1e-6 * max(1.0, p_star)  # reconstructed net attains p*
    assert 1 <= conv["m_star"] <= 8  # sparsest vertex: at most n neurons (scalar output)
    for job, doc in docs.items():
        _check_doc(doc)
        if job == "convex":
            continue
        m = doc["metrics"]
        assert m["runs_below_p_star"] == 0 and m["min_objective"] >= p_star * (1 - 1e-6)
        assert len(doc["trace"]) >= 2 * 2
    trace = df[df["record"] == "trace"]
    assert (trace["objective"] >= p_star * (1 - 1e-6)).all()
    assert docs["adam_m2x"]["metrics"]["rel_gap_best"] < 0.1  # a wide network gets close to p*


def test_closed_form_equals_cvxpy(tmp_path):
    config = tiny_config(
        "closed_form",
        n=6,
        d=9,
        betas=[0.3],
        outputs=["scalar", "onehot"],
        gd={"optimizer": "lbfgs", "width": 4, "inits": 1, "epochs": 20, "lr": 0.5},
    )
    docs, _ = _run_all("closed_form", config, tmp_path)
    for doc in docs.values():
        _check_doc(doc)
        m = doc["metrics"]
        assert m["rel_diff_cvxpy"] < 1e-6
        assert abs(m["closed_net_objective"] - m["p_closed"]) < 1e-7 * max(1.0, m["p_closed"])
        assert m["fit_diff_cvxpy"] < 1e-3
        assert m["p_gd_best"] >= m["p_closed"] * (1 - 1e-6)  # local search never below the optimum


def test_whitening_invariance_of_the_convex_optimum(tmp_path):
    config = tiny_config(
        "whitening_invariance",
        n=8,
        d=2,
        width=8,
        inits=1,
        epochs=80,
        lr=0.02,
        transforms=["identity", "whitened", "random_linear", "scaled"],
    )
    docs, df = _run_all("whitening_invariance", config, tmp_path)
    s = df[df["record"] == "summary"].set_index("transform")
    assert (s["obj_change_convex"] < 1e-6).all()
    assert (s["fit_change_convex"] < 1e-4).all()
    assert s.loc["identity", "obj_change_relu"] == 0.0


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A tiny prepared digits dataset (the CI config's definition, smaller) and its cached whitening."""
    root = tmp_path_factory.mktemp("digits")
    ds_cfg = {**load_config("ci.yaml")["datasets"]["digits"], "n_train": 120, "n_val": 40, "n_test": 60}
    build_dataset("digits", ds_cfg, None, str(root / "digits.npz"))
    whiten_dataset(str(root / "digits.npz"), str(root / "wh.npz"), ds_cfg)
    return {"digits": str(root / "digits.npz")}, {"digits": str(root / "wh.npz")}


def test_build_dataset_splits_and_rejects_oversized_requests(digits, tmp_path):
    d = load_prepared(digits[0]["digits"])
    assert d["X_train"].shape == (120, 64) and d["X_val"].shape == (40, 64) and d["X_test"].shape == (60, 64)
    assert d["num_classes"] == 10 and d["meta"]["synthetic"] is False
    ds_cfg = load_config("ci.yaml")["datasets"]["digits"]
    with pytest.raises(ValueError, match="n_train \\+ n_val"):
        build_dataset("digits", {**ds_cfg, "n_train": 5000, "n_test": 10}, None, str(tmp_path / "x.npz"))
    with pytest.raises(ValueError, match="kind"):
        build_dataset("x", {**ds_cfg, "kind": "mnist"}, None, str(tmp_path / "x.npz"))


def test_each_seed_draws_its_own_training_subsets_and_keeps_the_test_split(tmp_path):
    """Seed s reads training/validation subsets of its own (the same every time); the test split is the dataset's."""
    ds_cfg = {**load_config("ci.yaml")["datasets"]["digits"], "n_train": 120, "n_val": 40, "n_test": 60}
    raw = {**ds_cfg, "normalize": "none"}  # unnormalised rows compare across seeds exactly
    built = {}
    for name, cfg, rep in (("a0", raw, 0), ("b0", raw, 0), ("a1", raw, 1), ("own", raw, None), ("z1", ds_cfg, 1)):
        build_dataset("digits", cfg, None, str(tmp_path / f"{name}.npz"), replicate=rep)
        built[name] = load_prepared(str(tmp_path / f"{name}.npz"))
    a0, b0, a1 = built["a0"], built["b0"], built["a1"]
    rows = lambda x: {r.tobytes() for r in x}  # noqa: E731
    for key in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        assert np.array_equal(a0[key], b0[key]), key  # the same seed: identical subsets
    assert rows(a0["X_train"]) != rows(a1["X_train"]) and rows(a0["X_val"]) != rows(a1["X_val"])
    assert a0["X_train"].shape == a1["X_train"].shape == (120, 64) and a1["X_val"].shape == (40, 64)
    assert np.bincount(a0["y_train"]).tolist() == np.bincount(a1["y_train"]).tolist()  # both stratified
    for other in (a1, built["own"]):
        assert np.array_equal(a0["X_test"], other["X_test"]) and np.array_equal(a0["y_test"], other["y_test"])
    assert np.array_equal(built["z1"]["y_test"], a0["y_test"])  # normalised with the seed's training statistics
    assert abs(float(built["z1"]["X_train"].mean())) < 1e-5
    assert a1["meta"]["replicate"] == 1 and built["own"]["meta"]["replicate"] is None


def test_seeded_experiments_read_the_data_of_their_seed():
    """main_comparison and truncation jobs read results/data/{ds}/seed{s}; implicit_bias the dataset's own subsets."""
    jobs = grid.jobs(load_config("ci.yaml", {"experiments": {"main_comparison": {"seeds": [0, 3]}}}))
    assert grid.data_stem(jobs[("main_comparison", "sgd_digits_s3")], "digits") == "digits/seed3"
    assert grid.data_stem(jobs[("main_comparison", "convex_full_digits_s0")], "digits") == "digits/seed0"
    assert grid.data_stem(jobs[("truncation", "sgd_digits")], "digits") == "digits/seed0"
    assert grid.data_stem(jobs[("implicit_bias", "gd_digits")], "digits") == "digits"


SGD_GRID = {
    "width": 16,
    "batch_size": 40,
    "momentum": 0.9,
    "dtype": "float32",
    "beta_per_sample": [0.001, 0.01],
    "lr_factors": [5.0],
    "epochs": [1, 2],
}


def test_implicit_bias_gd_concentrates_more_than_the_convex_solution(digits, tmp_path):
    config = tiny_config(
        "implicit_bias",
        datasets=["digits"],
        n_train=100,
        width=16,
        gd={"epochs": 30, "lr": None, "snapshots": [0, 30]},
        convex={"arrangements": 8, "max_iter": 150, "max_seconds": 10, "tol": 1e-5},
    )
    docs, df = _run_all("implicit_bias", config, tmp_path, *digits)
    gd, cv = docs["gd_digits"]["metrics"], docs["convex_digits"]["metrics"]
    assert gd["top_energy"] > cv["top_energy"]
    # one β relative to the data, the same for GD and the convex solve
    assert gd["beta_ratio"] == cv["beta_ratio"] == config["experiments"]["implicit_bias"]["beta_ratio"]
    assert gd["beta"] == cv["beta"] == pytest.approx(gd["beta_ratio"] * gd["beta_max"]) and gd["beta_max"] > 0
    job = grid.find_job(config, "implicit_bias", "gd_digits")
    assert "beta_per_sample" not in job.params and "convex" not in job.params  # GD reads P only, for β_max
    energy = df[(df["record"] == "trace") & (df["record_kind"] == "energy")]
    for (_, _), g in energy.groupby(["job", "epoch"], dropna=False):
        assert abs(g["energy"].sum() - 1.0) < 1e-6


def test_truncation_and_main_comparison_choose_every_setting_on_validation(digits, tmp_path):
    base = {
        "datasets": ["digits"],
        "arrangements": 6,
        "sgd": SGD_GRID,
        "predictor": "network",
        "beta_ratios": [0.3, 0.1],
        "convex": {"max_seconds": 10, "tol": 1e-5},
    }
    tdocs, tdf = _run_all("truncation", tiny_config("truncation", **base, ks=[4, 500, "full"]), tmp_path, *digits)
    assert tdocs["k500_digits"]["metrics"]["k"] == tdocs["kfull_digits"]["metrics"]["k"]  # k ≥ rank: full whitening
    assert tdocs["kfull_digits"]["metrics"]["k"] == tdocs["kfull_digits"]["metrics"]["rank"]
    assert tdocs["k4_digits"]["metrics"]["q"] == 5
    mconfig = tiny_config(
        "main_comparison",
        **base,
        seeds=[0],
        methods=["sgd", "convex_full", "convex_truncated"],
        ks=[4, 12],
        p_sweep=[6, 10],
    )
    mdocs, df = _run_all("main_comparison", mconfig, tmp_path, *digits)
    assert set(mdocs) == {
        "sgd_digits_s0",
        "convex_full_digits_s0",
        *{f"{stem}_k{k}_digits_s0" for stem in ("convex_truncated", "convex_P10") for k in (4, 12)},
    }  # P = 6 is the truncated jobs themselves
    for doc in mdocs.values():
        _check_doc(doc)
        m = doc["metrics"]
        assert m["selected_by"] == "validation" and 0.0 <= m["test_acc"] <= 1.0 and doc["dataset"] == "digits"
        chosen = [g for g in doc["grid"] if g["selected"]]
        assert len(chosen) == 1 and chosen[0]["val_acc"] == max(g["val_acc"] for g in doc["grid"])
        assert chosen[0]["test_acc"] == m["test_acc"]
    tr = [g for k in (4, 12) for g in mdocs[f"convex_truncated_k{k}_digits_s0"]["grid"]]
    assert {(g["k"], g["beta_ratio"]) for g in tr} == {(4, 0.3), (4, 0.1), (12, 0.3), (12, 0.1)}
    assert all(g["beta"] == pytest.approx(g["beta_ratio"] * g["beta_max"]) for g in tr)
    assert all(g["test_acc_network"] is not None and g["test_acc_generator"] is not None for g in tr)
    # k is chosen at aggregation, with the same rule, over the grids of the per-k jobs
    summ, grid_rows = df[df["record"] == "summary"], df[df["record"] == "grid"]
    for method, P in (("convex_truncated", 6), ("convex_P", 10)):
        row = summ[summ["method"] == method]
        assert len(row) == 1 and row["grid_points"].iloc[0] == 4 and row["grid_jobs"].iloc[0] == 2
        assert row["P"].iloc[0] == P and row["k_selected_by"].iloc[0] == "validation accuracy"
        mine = grid_rows[grid_rows["method"] == method]
        best = select_on_validation(mine.to_dict("records"), ("-beta_ratio", "k"))
        picked = mine[mine["selected"].astype(str) == "True"]
        assert len(picked) == 1 and (picked["k"].iloc[0], picked["beta_ratio"].iloc[0]) == (
            best["k"],
            best["beta_ratio"],
        )
        assert row["test_acc"].iloc[0] == best["test_acc"] and row["k"].iloc[0] == best["k"]
        traced = set(df[(df["record"] == "trace") & (df["method"] == method)]["job"])
        assert traced == set(row["job"])  # the test-accuracy curve is the chosen k's path
    assert len(grid_rows) == sum(len(d["grid"]) for d in mdocs.values())  # the whole grid reaches the table
    sgd = mdocs["sgd_digits_s0"]
    assert {(g["beta_per_sample"], g["epochs"]) for g in sgd["grid"]} == {(0.001, 1), (0.001, 2), (0.01, 1), (0.01, 2)}
    assert sgd["trace"] and all("val_acc" in r for r in sgd["trace"])  # per-epoch validation accuracy
    assert set(tdf[tdf["record"] == "grid"]["job"]) == {"sgd_digits", "k4_digits", "k500_digits", "kfull_digits"}
    ckpts = list((tmp_path / "results" / "main_comparison" / "checkpoints").glob("sgd_digits_s0_*.pt"))
    assert len(ckpts) == 2  # one resumable training per (β, lr)
    # a changed configuration discards the stale checkpoints instead of failing
    mconfig2 = tiny_config("main_comparison", **{**base, "sgd": {**SGD_GRID, "width": 8}}, seeds=[0])
    out = tmp_path / "results" / "main_comparison" / "jobs" / "sgd_digits_s0.json"
    ckpt = tmp_path / "results" / "main_comparison" / "checkpoints" / "sgd_digits_s0.pt"
    run_job(grid.find_job(mconfig2, "main_comparison", "sgd_digits_s0"), *digits, str(out), str(ckpt))
    assert json.loads(out.read_text())["status"] == "ok"


def test_one_selection_rule_for_every_method_never_reads_test():
    """Validation and test disagree: the validation choice wins; ties go to the stronger β, then the smaller k."""
    sgd = [
        {"beta_per_sample": 1e-3, "epochs": 30, "val_acc": 0.90, "train_acc": 0.99, "test_acc": 0.80},
        {"beta_per_sample": 1e-2, "epochs": 30, "val_acc": 0.85, "train_acc": 0.95, "test_acc": 0.97},
    ]
    assert select_on_validation(sgd, ("-beta_per_sample", "epochs"))["beta_per_sample"] == 1e-3
    convex = [
        {"k": 16, "beta_ratio": 0.01, "val_acc": 0.9, "train_acc": 1.0, "test_acc": 0.5},
        {"k": 16, "beta_ratio": 0.1, "val_acc": 0.9, "train_acc": 0.9, "test_acc": 0.6},
        {"k": 8, "beta_ratio": 0.1, "val_acc": 0.9, "train_acc": 0.8, "test_acc": 0.7},
        {"k": 32, "beta_ratio": 0.3, "val_acc": 0.8, "train_acc": 0.8, "test_acc": 0.99},
    ]
    best = select_on_validation(convex, ("-beta_ratio", "k"))
    assert (best["k"], best["beta_ratio"]) == (8, 0.1)


def test_variants_local_search_never_beats_the_convex_optimum(tmp_path):
    config = tiny_config(
        "variants",
        variants=["bn_after_relu", "cnn", "deep", "vector_output"],
        instances=1,
        inits=1,
        beta=0.1,
        bn_after_relu={"n": 6, "d": 2},
        cnn={"n": 5, "length": 3, "patch": 2, "stride": 1},
        deep={"n": 6, "d": 2, "hidden": [3], "width": 6},
        vector_output={"n": 6, "d": 2, "classes": 2},
        local_search={"optimizer": "adam", "epochs": 150, "lr": 0.03, "width": 6},
    )
    docs, df = _run_all("variants", config, tmp_path)
    for job, doc in docs.items():
        m = doc["metrics"]
        assert doc["status"] == "optimal", job
        assert m["rel_gap"] >= -1e-6, (job, m["p_star"], m["best_nonconvex"])
    assert set(df[df["record"] == "summary"]["variant"]) == {"bn_after_relu", "cnn", "deep", "vector_output"}


def test_cifar_format_archive_builds_a_dataset_marked_synthetic(tmp_path):
    from convexbn.synthetic_cifar import make_cifar_archive

    archive = tmp_path / "cifar10.tar.gz"
    make_cifar_archive(archive, "cifar10", 80, 30, seed=0)
    ds_cfg = {**load_config("ci.yaml")["datasets"]["cifar10"], "n_train": 40, "n_val": 20, "n_test": 30}
    build_dataset("cifar10", ds_cfg, str(archive), str(tmp_path / "c.npz"))
    d = load_prepared(str(tmp_path / "c.npz"))
    assert d["X_train"].shape == (40, 3072) and d["X_val"].shape == (20, 3072) and d["meta"]["synthetic"] is True
    with pytest.raises(ValueError, match="no raw archive"):
        build_dataset("cifar10", ds_cfg, None, str(tmp_path / "d.npz"))


def test_a_diverged_sgd_training_is_recorded_and_never_chosen(digits, tmp_path):
    """A learning rate that blows up marks its grid points 'diverged' (no accuracy); the job chooses among the rest."""
    settings = {**SGD_GRID, "lr_factors": [1.0, 1.0e12], "beta_per_sample": [0.001]}
    config = tiny_config("main_comparison", datasets=["digits"], seeds=[0], methods=["sgd"], sgd=settings)
    docs, df = _run_all("main_comparison", config, tmp_path, *digits)
    doc = docs["sgd_digits_s0"]
    status = {(g["lr_factor"], g["epochs"]): g["training_status"] for g in doc["grid"]}
    assert status == {(1.0, 1): "ok", (1.0, 2): "ok", (1.0e12, 1): "diverged", (1.0e12, 2): "diverged"}
    bad = [g for g in doc["grid"] if g["training_status"] == "diverged"]
    assert all(g["val_acc"] is None and "lower the learning rate" in g["training_error"] for g in bad)
    m = doc["metrics"]
    assert m["lr_factor"] == 1.0 and m["grid_points"] == 4 and m["grid_diverged"] == 2
    assert m["selected_by"] == "validation" and doc["status"] == "ok"
