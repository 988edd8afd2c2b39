"""Every experiment's jobs at tiny scale, run directly through convexbn.experiments, with its claim checked."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from convexbn import experiments as E

SOLVER = {"seed": 0, "solver": "CLARABEL", "device": "cpu", "threads": 1}


def _run_all(name, exp_cfg, tmp_path, data=None, whitening=None, jobs=None):
    """Run jobs (all by default) and aggregate; returns (docs by job, aggregated DataFrame)."""
    docs, paths = {}, []
    for job in jobs or E.list_jobs(name, exp_cfg):
        out = tmp_path / "results" / name / f"{job}.json"
        E.run_job(name, exp_cfg, job, data or {}, whitening or {}, str(out))
        docs[job] = json.loads(out.read_text())
        paths.append(str(out))
    csv = tmp_path / "tables" / f"{name}.csv"
    E.aggregate(name, exp_cfg, paths, str(csv))
    return docs, pd.read_csv(csv)


def _check_doc(doc):
    assert {"metrics", "trace", "solver", "provenance", "status", "device", "synthetic"} <= set(doc)
    prov = doc["provenance"]
    assert prov["config"] and prov["device"] == "cpu" and prov["wall_seconds"] > 0 and "versions" in prov


# ------------------------------------------------------------------------------------------ config


def test_configs_expand_to_jobs_with_kinds_and_datasets():
    for cfg in (E.default_config(), E.ci_config()):
        assert set(cfg["experiments"]) == set(E.EXPERIMENT_NAMES)
        for name in E.EXPERIMENT_NAMES:
            exp_cfg = E.experiment_config(cfg, name)
            jobs = E.list_jobs(name, exp_cfg)
            assert jobs and len(set(jobs)) == len(jobs)
            for job in jobs:
                assert E.job_kind(name, exp_cfg, job) in ("baselines", "convex")
                for ds in E.job_datasets(name, exp_cfg, job):
                    assert ds in cfg["datasets"], (name, job, ds)
            if name not in E.REAL_DATA_EXPERIMENTS:
                assert all(E.job_datasets(name, exp_cfg, j) == [] for j in jobs)
    full = E.default_config()["experiments"]
    assert full["equivalence"]["inits"] >= 5 and len(full["main_comparison"]["seeds"]) >= 3
    assert {"cifar10", "cifar100"} <= set(full["main_comparison"]["datasets"])


def test_bad_configs_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        E.list_jobs("nope", {})
    with pytest.raises(ValueError, match="experiments.equivalence.optimizers is missing"):
        E.list_jobs("equivalence", {"width_factors": [1]})
    with pytest.raises(ValueError, match="'mlp' is not one of"):
        E.list_jobs("variants", {"variants": ["mlp"], "instances": 1})
    with pytest.raises(ValueError, match="k='zero'"):
        E._parse_k("zero")
    cfg = E.experiment_config(E.ci_config(), "main_comparison")
    with pytest.raises(ValueError, match="not one of its jobs"):
        E.job_kind("main_comparison", cfg, "sgd_mnist_s0")
    with pytest.raises(ValueError, match="defaults.device"):
        E.resolve_device("tpu")


# ------------------------------------------------------------------------------------------ helpers


def test_convex_predictor_equals_reconstructed_network_and_energies_agree():
    """A4 'network' predictor = the reconstructed BN net on new data; both energy definitions agree."""
    from convexbn.networks import bn_mlp_from_params, predict
    from convexbn.programs import reconstruct_before, solve_two_layer

    X, Y = E.synthetic_data(9, 2, 3, "scalar")
    res = solve_two_layer(X, Y, 0.1, arrangements="exact", solver="CLARABEL")
    wh, u, up = res.extra["whitening"], res.extra["u"], res.extra["up"]
    Xnew = np.random.default_rng(1).standard_normal((7, 2))
    net = bn_mlp_from_params(reconstruct_before(wh, u, up, 1e-9), X)
    np.testing.assert_allclose(E.convex_outputs(wh.features(Xnew), u, up), predict(net, Xnew), rtol=1e-6, atol=1e-8)
    from convexbn.programs import predict_convex_gates

    arr = res.extra["arrangements"]
    np.testing.assert_allclose(E.convex_outputs(wh.features(Xnew), u, up, arr.generators, "generator"),
                               predict_convex_gates(wh, arr, u, up, Xnew), rtol=1e-8, atol=1e-10)
    p = reconstruct_before(wh, u, up, 0.0)
    np.testing.assert_allclose(E.path_energy_network(p.W, p.gamma, p.V, wh.V, wh.sigma),
                               E.path_energy_convex(u, up, wh.k), rtol=1e-6, atol=1e-10)


# ------------------------------------------------------------------------------------------ experiments


def test_equivalence_reconstruction_attains_p_star_and_no_run_beats_it(tmp_path):
    cfg = {**SOLVER, "n": 8, "d": 2, "noise": 0.1, "beta": 0.1, "arrangements": "exact", "optimizers": ["gd", "adam"],
           "width_factors": [0.5, 2.0], "inits": 2, "epochs": {"gd": 60, "adam": 150},
           "lr": {"gd": 0.01, "adam": 0.02}, "tol": 1e-6, "trace_points": 20}
    docs, df = _run_all("equivalence", cfg, tmp_path)
    conv = docs["convex"]["metrics"]
    p_star = conv["p_star"]
    assert docs["convex"]["status"] == "optimal"
    assert abs(conv["reconstructed_objective"] - p_star) <= 1e-6 * max(1.0, p_star)  # reconstructed net attains p*
    assert 1 <= conv["m_star"] <= cfg["n"]  # sparsest vertex: at most n neurons (scalar output)
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
    cfg = {**SOLVER, "n": 6, "d": 9, "noise": 0.1, "classes": 3, "betas": [0.3], "outputs": ["scalar", "onehot"],
           "gd": {"optimizer": "lbfgs", "width": 4, "inits": 1, "epochs": 20, "lr": 0.5}, "tol": 1e-5}
    docs, _ = _run_all("closed_form", cfg, tmp_path)
    for doc in docs.values():
        _check_doc(doc)
        m = doc["metrics"]
        assert m["rel_diff_cvxpy"] < 1e-6
        assert abs(m["closed_net_objective"] - m["p_closed"]) < 1e-7 * max(1.0, m["p_closed"])
        assert m["fit_diff_cvxpy"] < 1e-3
        assert m["p_gd_best"] >= m["p_closed"] * (1 - 1e-6)  # local search never below the optimum


def test_whitening_invariance_of_the_convex_optimum(tmp_path):
    cfg = {**SOLVER, "n": 8, "d": 2, "noise": 0.1, "beta": 0.1, "arrangements": "exact",
           "transforms": ["identity", "whitened", "random_linear", "scaled"], "width": 8, "inits": 1, "epochs": 80,
           "lr": 0.02, "tol": 1e-4}
    docs, df = _run_all("whitening_invariance", cfg, tmp_path)
    s = df[df["record"] == "summary"].set_index("transform")
    assert (s["obj_change_convex"] < 1e-6).all()
    assert (s["fit_change_convex"] < 1e-4).all()
    assert s.loc["identity", "obj_change_relu"] == 0.0


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A tiny prepared digits dataset and its cached whitening."""
    root = tmp_path_factory.mktemp("digits")
    ds_cfg = {"kind": "digits", "n_train": 120, "n_val": 40, "n_test": 60, "seed": 0, "normalize": "standardize"}
    E.build_dataset("digits", ds_cfg, None, str(root / "digits.npz"))
    E.whiten_dataset(str(root / "digits.npz"), str(root / "wh.npz"), ds_cfg)
    return {"digits": str(root / "digits.npz")}, {"digits": str(root / "wh.npz")}


def test_build_dataset_splits_and_rejects_oversized_requests(digits, tmp_path):
    d = E.load_prepared(digits[0]["digits"])
    assert d["X_train"].shape == (120, 64) and d["X_val"].shape == (40, 64) and d["X_test"].shape == (60, 64)
    assert d["num_classes"] == 10 and d["meta"]["synthetic"] is False
    with pytest.raises(ValueError, match="n_train \\+ n_val"):
        E.build_dataset("digits", {"kind": "digits", "n_train": 5000, "n_test": 10}, None, str(tmp_path / "x.npz"))
    with pytest.raises(ValueError, match="kind"):
        E.build_dataset("x", {"kind": "mnist"}, None, str(tmp_path / "x.npz"))


SGD = {"width": 16, "epochs": 2, "batch_size": 40, "lr_factor": 5.0, "momentum": 0.9, "dtype": "float32"}


def test_implicit_bias_gd_concentrates_more_than_the_convex_solution(digits, tmp_path):
    cfg = {**SOLVER, "datasets": ["digits"], "n_train": 100, "beta_per_sample": 1e-3, "width": 16,
           "gd": {"epochs": 30, "lr": None, "snapshots": [0, 30]},
           "convex": {"arrangements": 8, "max_iter": 150, "max_seconds": 10, "tol": 1e-5}, "top_fraction": 0.1}
    docs, df = _run_all("implicit_bias", cfg, tmp_path, *digits)
    gd, cv = docs["gd_digits"]["metrics"], docs["convex_digits"]["metrics"]
    assert gd["top_energy"] > cv["top_energy"]
    energy = df[(df["record"] == "trace") & (df["record_kind"] == "energy")]
    for (_, _), g in energy.groupby(["job", "epoch"], dropna=False):
        assert abs(g["energy"].sum() - 1.0) < 1e-6


def test_truncation_and_main_comparison_choose_k_on_validation(digits, tmp_path):
    base = {**SOLVER, "datasets": ["digits"], "arrangements": 6, "beta_per_sample": 1e-3, "sgd": SGD,
            "predictor": "network"}
    tcfg = {**base, "ks": [4, "full"], "convex": {"max_iter": 60, "max_seconds": 10, "tol": 1e-5}}
    tdocs, _ = _run_all("truncation", tcfg, tmp_path, *digits)
    assert tdocs["kfull_digits"]["metrics"]["k"] == tdocs["kfull_digits"]["metrics"]["rank"]
    assert tdocs["k4_digits"]["metrics"]["q"] == 5
    mcfg = {**base, "seeds": [0], "methods": ["sgd", "convex_full", "convex_truncated"], "ks": [4, 12],
            "convex_full": {"max_iter": 60, "max_seconds": 10, "tol": 1e-5},
            "convex_truncated": {"max_iter": 40, "max_seconds": 10, "tol": 1e-5}, "trace_points": 3}
    mdocs, df = _run_all("main_comparison", mcfg, tmp_path, *digits)
    tr = mdocs["convex_truncated_digits_s0"]["metrics"]
    best = int(np.argmax(tr["val_acc_candidates"]))
    assert tr["k"] == tr["k_candidates"][best]
    for doc in mdocs.values():
        _check_doc(doc)
        m = doc["metrics"]
        assert 0.0 <= m["test_acc"] <= 1.0 and doc["dataset"] == "digits"
        assert doc["trace"] and all("test_acc" in r for r in doc["trace"])
    assert len(mdocs["convex_full_digits_s0"]["trace"]) >= 2  # accuracy checkpoints of the traced solve
    ckpt = tmp_path / "results" / "checkpoints" / "sgd_digits_s0.pt"
    assert ckpt.is_file()
    # a changed configuration discards the stale checkpoint instead of failing
    mcfg2 = {**mcfg, "sgd": {**SGD, "lr_factor": 2.0}}
    out = tmp_path / "results" / "main_comparison" / "sgd_digits_s0.json"
    E.run_job("main_comparison", mcfg2, "sgd_digits_s0", *digits, str(out))
    assert json.loads(out.read_text())["status"] == "ok"


def test_variants_local_search_never_beats_the_convex_optimum(tmp_path):
    cfg = {**SOLVER, "variants": ["bn_after_relu", "cnn", "deep", "vector_output"], "instances": 1, "inits": 1,
           "beta": 0.1, "arrangements": "exact", "bn_after_relu": {"n": 6, "d": 2},
           "cnn": {"n": 5, "length": 3, "patch": 2, "stride": 1}, "deep": {"n": 6, "d": 2, "hidden": [3], "width": 6},
           "vector_output": {"n": 6, "d": 2, "classes": 2},
           "local_search": {"optimizer": "adam", "epochs": 150, "lr": 0.03, "width": 6}}
    docs, df = _run_all("variants", cfg, tmp_path)
    for job, doc in docs.items():
        m = doc["metrics"]
        assert doc["status"] == "optimal", job
        assert m["rel_gap"] >= -1e-6, (job, m["p_star"], m["best_nonconvex"])
    assert set(df[df["record"] == "summary"]["variant"]) == set(cfg["variants"])


def test_cifar_format_archive_builds_a_dataset_marked_synthetic(tmp_path):
    from convexbn.data import make_cifar_archive

    archive = tmp_path / "cifar10.tar.gz"
    make_cifar_archive(archive, "cifar10", 80, 30, seed=0)
    ds_cfg = {"kind": "cifar10", "n_train": 40, "n_val": 20, "n_test": 30, "seed": 0, "normalize": "channel",
              "synthetic": True}
    E.build_dataset("cifar10", ds_cfg, str(archive), str(tmp_path / "c.npz"))
    d = E.load_prepared(str(tmp_path / "c.npz"))
    assert d["X_train"].shape == (40, 3072) and d["X_val"].shape == (20, 3072) and d["meta"]["synthetic"] is True
    with pytest.raises(ValueError, match="no raw archive"):
        E.build_dataset("cifar10", ds_cfg, None, str(tmp_path / "d.npz"))
