"""Tests for convexbn.training: objective convention, optimisers, determinism, checkpoints, validation."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from convexbn.networks import BNMLP, evaluate_objective, predict, set_running_stats
from convexbn.training import (
    CheckpointMismatch,
    TrainResult,
    default_lr,
    label_kind,
    load_checkpoint,
    minibatches,
    train_bn_network,
)

torch.set_num_threads(1)

REQUIRED_KEYS = {"epoch", "step", "objective", "data_loss", "penalty", "seconds", "train_acc", "test_acc"}


class Interrupt(Exception):
    """Raised from a callback to simulate a killed run."""


def _data(n: int = 20, d: int = 4, C: int = 3, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Small classification problem with a test split (one-hot labels)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = np.eye(C)[rng.integers(0, C, n)]
    Xs = rng.standard_normal((8, d))
    Ys = np.eye(C)[rng.integers(0, C, 8)]
    return X, Y, Xs, Ys


def _numbers(history: list[dict]) -> list[dict]:
    """History without the wall-clock field (the only non-deterministic entry)."""
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in history]


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Bit-identical parameters and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


KW = {
    "gd": dict(optimizer="gd", lr=0.01),
    "sgd": dict(optimizer="sgd", lr=0.002, batch_size=6),
    "adam": dict(optimizer="adam", lr=0.01, batch_size=7),
    "lbfgs": dict(optimizer="lbfgs", lbfgs_max_iter=5),
}


def test_history_keys_accuracy_and_result_type() -> None:
    X, Y, Xs, Ys = _data()
    res = train_bn_network(X, Y, 0.1, 6, epochs=4, X_test=Xs, Y_test=Ys, lr=0.01)
    assert isinstance(res, TrainResult) and isinstance(res.model, BNMLP)
    assert [h["epoch"] for h in res.history] == [0, 1, 2, 3, 4]
    assert [h["step"] for h in res.history] == [0, 1, 2, 3, 4]
    for rec in res.history:
        assert REQUIRED_KEYS <= rec.keys()
        assert 0.0 <= rec["train_acc"] <= 1.0 and 0.0 <= rec["test_acc"] <= 1.0
    assert res.final_objective == res.history[-1]["objective"]
    assert res.device == "cpu" and res.seconds > 0 and res.resumed_from is None
    assert res.config["optimizer"] == "gd" and res.config["width"] == 6 and res.config["lr"] == 0.01
    summary = res.summary()
    assert "model" not in summary and summary["history"] == res.history


def test_accuracy_values_match_predictions() -> None:
    X, Y, Xs, Ys = _data(seed=3)
    res = train_bn_network(X, Y, 0.1, 8, epochs=3, X_test=Xs, Y_test=Ys, lr=0.01)
    net = res.model
    before = predict(net, Xs)  # the returned model already carries full training-set statistics
    # Test accuracy: eval mode with running statistics of the full training set.
    set_running_stats(net, torch.as_tensor(X))
    np.testing.assert_allclose(predict(net, Xs), before, rtol=1e-12, atol=1e-12)
    test_acc = float(np.mean(predict(net, Xs).argmax(1) == Ys.argmax(1)))
    assert res.history[-1]["test_acc"] == pytest.approx(test_acc)
    # Train accuracy: the same full-batch train-mode forward as the objective.
    with torch.no_grad():
        net.train()
        out = net(torch.as_tensor(X)).numpy()
    assert res.history[-1]["train_acc"] == pytest.approx(float(np.mean(out.argmax(1) == Y.argmax(1))))


def test_regression_targets_have_no_accuracy_and_sign_labels_do() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((12, 3))
    y = rng.standard_normal(12)
    res = train_bn_network(X, y, 0.1, 4, epochs=2, X_test=X[:4], Y_test=y[:4], lr=0.01)
    assert res.history[-1]["train_acc"] is None and res.history[-1]["test_acc"] is None
    s = np.sign(y)
    res = train_bn_network(X, s, 0.1, 4, epochs=2, X_test=X[:4], Y_test=s[:4], lr=0.01)
    assert res.history[-1]["train_acc"] is not None and res.history[-1]["test_acc"] is not None
    assert label_kind(np.eye(3)[[0, 1, 2]]) == "argmax" and label_kind(y[:, None]) is None


def test_final_objective_equals_networks_evaluate_objective_paper_convention() -> None:
    X, Y, _, _ = _data(seed=2)
    for fld in (0.0, 0.3):
        res = train_bn_network(X, Y, 0.2, 5, epochs=3, lr=0.01, first_layer_decay=fld)
        ref = evaluate_objective(res.model, X, Y, 0.2, first_layer_decay=fld)
        assert res.final_objective == pytest.approx(ref, rel=1e-12)
        net = res.model
        n = X.shape[0]
        # penalty in paper convention: γ = √n γ_t, α = √n β_t (c = 1/√n).
        with torch.no_grad():
            pen = float(n * (net.bn.weight**2).sum() + n * (net.bn.bias**2).sum() + (net.second.weight**2).sum())
        assert res.history[-1]["penalty"] == pytest.approx(pen, rel=1e-12)


def test_gd_step_differentiates_the_paper_objective_not_torch_weight_decay() -> None:
    """One GD step equals θ − lr·∇[½‖f−Y‖² + (β/2)(n‖γ_t‖² + n‖β_t‖² + ‖V‖²) + (λ/2)‖W‖²]."""
    X, Y, _, _ = _data(n=10, d=3, C=2, seed=4)
    beta, lr, fld, n = 0.7, 0.003, 0.2, 10
    torch.manual_seed(5)
    init = BNMLP(3, 4, 2).double()
    res = train_bn_network(X, Y, beta, 4, epochs=1, lr=lr, init=init, first_layer_decay=fld)
    ref = BNMLP(3, 4, 2).double()
    ref.load_state_dict(init.state_dict())
    ref.train()
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    out = ref(Xt)
    obj = (
        0.5 * ((out - Yt) ** 2).sum()
        + 0.5 * beta * (n * (ref.bn.weight**2).sum() + n * (ref.bn.bias**2).sum() + (ref.second.weight**2).sum())
        + 0.5 * fld * (ref.first.weight**2).sum()
    )
    obj.backward()
    got = dict(res.model.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(got[name].detach(), (p - lr * p.grad).detach(), rtol=1e-12, atol=1e-14)
    # the caller's init module is left untouched
    assert torch.equal(init.first.weight, ref.first.weight)


def test_sgd_with_one_batch_and_no_momentum_is_gd() -> None:
    X, Y, _, _ = _data(seed=6)
    gd = train_bn_network(X, Y, 0.1, 5, optimizer="gd", lr=0.01, epochs=5)
    sgd = train_bn_network(X, Y, 0.1, 5, optimizer="sgd", lr=0.01, momentum=0.0, batch_size=20, epochs=5)
    assert _numbers(gd.history) == _numbers(sgd.history)


def test_minibatches_cover_every_sample_once_and_are_large_enough() -> None:
    rng = np.random.default_rng(0)
    for n, B in [(20, 6), (7, 2), (10, 3), (9, 9)]:
        batches = minibatches(n, B, rng)
        if n // B <= 1:
            assert batches is None
            continue
        assert sorted(np.concatenate(batches).tolist()) == list(range(n))
        assert all(len(b) >= B for b in batches) and len(batches) == n // B


def test_gd_objective_decreases_with_small_lr() -> None:
    X, Y, _, _ = _data(seed=7)
    res = train_bn_network(X, Y, 0.1, 8, optimizer="gd", lr=1e-3, epochs=30)
    obj = [h["objective"] for h in res.history]
    assert all(b <= a + 1e-12 for a, b in zip(obj, obj[1:]))
    assert obj[-1] < 0.9 * obj[0]


def test_default_lr_gd_decreases() -> None:
    X, Y, _, _ = _data(seed=8)
    res = train_bn_network(X, Y, 0.1, 50, optimizer="gd", epochs=20)
    assert res.config["lr"] == pytest.approx(default_lr("gd", 20, 50, 0.1))
    assert res.final_objective < res.history[0]["objective"]


@pytest.mark.parametrize("name", ["sgd", "adam", "lbfgs"])
def test_other_optimisers_run_and_improve(name: str) -> None:
    X, Y, Xs, Ys = _data(seed=9)
    res = train_bn_network(X, Y, 0.1, 8, epochs=15, X_test=Xs, Y_test=Ys, **KW[name])
    assert math.isfinite(res.final_objective)
    assert res.final_objective < res.history[0]["objective"]
    steps = [h["step"] for h in res.history]
    assert steps == sorted(steps) and steps[-1] > 0
    if name in ("sgd", "adam"):  # ⌊20/B⌋ updates per epoch
        assert steps[1] == 20 // KW[name]["batch_size"]


@pytest.mark.parametrize("name", ["gd", "sgd", "adam", "lbfgs"])
def test_same_seed_gives_bit_identical_history(name: str) -> None:
    X, Y, Xs, Ys = _data(seed=10)
    a = train_bn_network(X, Y, 0.1, 6, epochs=6, seed=3, X_test=Xs, Y_test=Ys, **KW[name])
    b = train_bn_network(X, Y, 0.1, 6, epochs=6, seed=3, X_test=Xs, Y_test=Ys, **KW[name])
    assert _numbers(a.history) == _numbers(b.history)
    assert _same_state(a.model, b.model)
    c = train_bn_network(X, Y, 0.1, 6, epochs=6, seed=4, X_test=Xs, Y_test=Ys, **KW[name])
    assert _numbers(c.history) != _numbers(a.history)


def test_training_leaves_global_torch_rng_alone() -> None:
    X, Y, _, _ = _data()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train_bn_network(X, Y, 0.1, 4, epochs=1, lr=0.01, seed=9)
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("name", ["gd", "sgd", "adam", "lbfgs"])
def test_resume_after_kill_equals_uninterrupted_run(name: str, tmp_path: Path) -> None:
    X, Y, Xs, Ys = _data(seed=11)
    kw = dict(epochs=9, seed=2, X_test=Xs, Y_test=Ys, record_every=2, **KW[name])
    full = train_bn_network(X, Y, 0.1, 6, **kw)
    ckpt = tmp_path / "run.pt"

    def kill(epoch: int, record: dict | None) -> None:
        """Simulate a crash after epoch 5 (checkpoint every 2 epochs → resume from epoch 4)."""
        if epoch == 5:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_bn_network(X, Y, 0.1, 6, checkpoint=ckpt, checkpoint_every=2, callback=kill, **kw)
    assert load_checkpoint(ckpt)["epoch"] == 4
    resumed = train_bn_network(X, Y, 0.1, 6, checkpoint=ckpt, checkpoint_every=2, **kw)
    assert resumed.resumed_from == 4
    assert _numbers(resumed.history) == _numbers(full.history)
    assert resumed.final_objective == full.final_objective
    assert _same_state(resumed.model, full.model)
    # a finished checkpoint is returned as is
    again = train_bn_network(X, Y, 0.1, 6, checkpoint=ckpt, checkpoint_every=2, **kw)
    assert again.resumed_from == 9 and _numbers(again.history) == _numbers(full.history)
    assert not [p for p in tmp_path.iterdir() if p.name != "run.pt"]  # no temporary files left


def test_resume_with_more_epochs_continues_the_run(tmp_path: Path) -> None:
    X, Y, _, _ = _data(seed=12)
    kw = dict(optimizer="sgd", lr=0.002, batch_size=5, seed=1)
    full = train_bn_network(X, Y, 0.1, 5, epochs=8, **kw)
    ckpt = tmp_path / "more.pt"
    first = train_bn_network(X, Y, 0.1, 5, epochs=3, checkpoint=ckpt, **kw)
    assert first.history[-1]["epoch"] == 3
    rest = train_bn_network(X, Y, 0.1, 5, epochs=8, checkpoint=ckpt, **kw)
    assert rest.resumed_from == 3 and _numbers(rest.history) == _numbers(full.history)


def test_checkpoint_contents(tmp_path: Path) -> None:
    X, Y, _, _ = _data()
    ckpt = tmp_path / "c.pt"
    res = train_bn_network(X, Y, 0.1, 4, optimizer="sgd", lr=0.01, batch_size=5, epochs=2, checkpoint=ckpt)
    payload = load_checkpoint(ckpt)
    assert {"model", "optimizer", "rng", "epoch", "step", "history", "config", "seconds"} <= payload.keys()
    assert {"torch", "numpy", "python", "batches"} <= payload["rng"].keys()
    assert payload["config"] == res.config and payload["epoch"] == 2
    assert payload["optimizer"]["state"]  # momentum buffers saved


def test_config_mismatch_raises_with_keys_and_fix(tmp_path: Path) -> None:
    X, Y, _, _ = _data()
    ckpt = tmp_path / "c.pt"
    train_bn_network(X, Y, 0.1, 4, lr=0.01, epochs=2, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"lr.*delete the checkpoint"):
        train_bn_network(X, Y, 0.1, 4, lr=0.02, epochs=2, checkpoint=ckpt)
    with pytest.raises(ValueError, match=r"beta.*width|width.*beta"):
        train_bn_network(X, Y, 0.2, 5, lr=0.01, epochs=2, checkpoint=ckpt)
    with pytest.raises(ValueError, match="data_sha256"):
        train_bn_network(X + 1.0, Y, 0.1, 4, lr=0.01, epochs=2, checkpoint=ckpt)
    with pytest.raises(CheckpointMismatch, match="beyond the requested"):
        train_bn_network(X, Y, 0.1, 4, lr=0.01, epochs=1, checkpoint=ckpt)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        train_bn_network(X, Y, 0.1, 4, lr=0.01, epochs=1, checkpoint=bad)


def test_record_every_and_epoch_zero() -> None:
    X, Y, _, _ = _data()
    res = train_bn_network(X, Y, 0.1, 4, lr=0.01, epochs=10, record_every=3)
    assert [h["epoch"] for h in res.history] == [0, 3, 6, 9, 10]
    res0 = train_bn_network(X, Y, 0.1, 4, lr=0.01, epochs=0)
    assert [h["epoch"] for h in res0.history] == [0]


def test_float32_and_init_module() -> None:
    X, Y, Xs, Ys = _data(seed=13)
    res = train_bn_network(X, Y, 0.1, 6, lr=0.01, epochs=5, dtype="float32", X_test=Xs, Y_test=Ys)
    assert res.model.first.weight.dtype == torch.float32 and res.config["dtype"] == "float32"
    assert all(math.isfinite(h["objective"]) for h in res.history)
    res64 = train_bn_network(X, Y, 0.1, 6, lr=0.01, epochs=5)
    assert res.final_objective == pytest.approx(res64.final_objective, rel=1e-4)
    # init: training starts from the given module's objective
    torch.manual_seed(0)
    init = BNMLP(4, 6, 3).double()
    start = evaluate_objective(init, X, Y, 0.1)
    res_init = train_bn_network(X, Y, 0.1, 6, lr=0.01, epochs=1, init=init)
    assert res_init.history[0]["objective"] == pytest.approx(start, rel=1e-12)
    assert res_init.config["init"] != res64.config["init"]


def test_progress_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    X, Y, _, _ = _data()
    with caplog.at_level(logging.INFO, logger="convexbn.training"):
        train_bn_network(X, Y, 0.1, 4, lr=0.01, epochs=30, log_every_seconds=1e-9)
    lines = [r.getMessage() for r in caplog.records if r.name == "convexbn.training"]
    assert any("epoch 30/30" in m and "objective" in m for m in lines)
    assert any(m.startswith("finished") for m in lines)


def test_divergence_raises() -> None:
    X, Y, _, _ = _data()
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train_bn_network(X * 1e3, Y * 1e3, 0.1, 8, lr=1e3, epochs=50)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(width=0), "width must be >= 1"),
        (dict(width=2.5), "width must be an integer"),
        (dict(lr=0.0), "lr must be > 0"),
        (dict(lr=float("nan")), "lr must be a number"),
        (dict(epochs=-1), "epochs must be >= 0"),
        (dict(beta=-0.1), "beta must be >= 0"),
        (dict(optimizer="sgd", batch_size=0), "batch_size must be >= 1"),
        (dict(optimizer="sgd", batch_size=21), "batch_size must be >= 1 and <= 20"),
        (dict(optimizer="sgd", batch_size=1), "batch_size must be >= 2"),
        (dict(optimizer="gd", batch_size=5), "full-batch"),
        (dict(optimizer="newton"), "optimizer must be one of"),
        (dict(loss="hinge2"), "loss must be one of"),
        (dict(placement="middle"), "placement must be"),
        (dict(dtype="float16"), "dtype must be one of"),
        (dict(momentum=1.0), "momentum must be"),
        (dict(device="cuda:7" if not torch.cuda.is_available() else "tpu"), "device"),
        (dict(X_test=np.zeros((3, 4))), "both X_test and Y_test"),
        (dict(X_test=np.zeros((3, 5)), Y_test=np.zeros((3, 3))), "X_test has 5 columns"),
        (dict(X_test=np.zeros((3, 4)), Y_test=np.zeros((3, 2))), "Y_test has 2 columns"),
        (dict(init=BNMLP(4, 5, 3)), "init has"),
        (dict(init=BNMLP(4, 6, 3, placement="after")), "placement"),
    ],
)
def test_validation_errors(kwargs: dict, match: str) -> None:
    X, Y, _, _ = _data()
    args = dict(beta=0.1, width=6, epochs=1)
    args.update(kwargs)
    beta, width = args.pop("beta"), args.pop("width")
    with pytest.raises(ValueError, match=match):
        train_bn_network(X, Y, beta, width, **args)


def test_data_validation_errors() -> None:
    X, Y, _, _ = _data()
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        train_bn_network(Xn, Y, 0.1, 4, epochs=1)
    with pytest.raises(ValueError, match="Y has 19 rows but X has 20"):
        train_bn_network(X, Y[:19], 0.1, 4, epochs=1)
    with pytest.raises(ValueError, match="at least 2 training samples"):
        train_bn_network(X[:1], Y[:1], 0.1, 4, epochs=1)
    with pytest.raises(ValueError, match="cross_entropy"):
        train_bn_network(X, Y[:, 0], 0.1, 4, epochs=1, loss="cross_entropy")
    with pytest.raises(ValueError, match="1-D or 2-D"):
        train_bn_network(X[None], Y, 0.1, 4, epochs=1)


def test_cross_entropy_runs() -> None:
    X, Y, Xs, Ys = _data(seed=14)
    res = train_bn_network(
        X, Y, 0.05, 6, optimizer="adam", lr=0.02, batch_size=10, epochs=10, loss="cross_entropy", X_test=Xs, Y_test=Ys
    )
    assert res.final_objective < res.history[0]["objective"]
    assert res.final_objective == pytest.approx(evaluate_objective(res.model, X, Y, 0.05, loss="cross_entropy"))


def test_bn_after_relu_placement() -> None:
    X, Y, _, _ = _data(seed=15)
    res = train_bn_network(X, Y, 0.1, 6, placement="after", lr=0.005, epochs=10)
    assert res.model.placement == "after"
    assert res.final_objective == pytest.approx(evaluate_objective(res.model, X, Y, 0.1), rel=1e-12)
    assert res.final_objective < res.history[0]["objective"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_matches_cpu() -> None:
    X, Y, Xs, Ys = _data(seed=16)
    gpu = train_bn_network(X, Y, 0.1, 6, lr=0.01, epochs=5, device="auto", X_test=Xs, Y_test=Ys)
    assert gpu.device.startswith("cuda") and gpu.model.first.weight.is_cuda
    cpu = train_bn_network(X, Y, 0.1, 6, lr=0.01, epochs=5, device="cpu", X_test=Xs, Y_test=Ys)
    assert gpu.final_objective == pytest.approx(cpu.final_objective, rel=1e-9)
    sgd = train_bn_network(X, Y, 0.1, 6, optimizer="sgd", lr=0.002, batch_size=5, epochs=3, device="cuda")
    assert math.isfinite(sgd.final_objective)
