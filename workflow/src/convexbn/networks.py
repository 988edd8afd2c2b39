"""PyTorch BN ReLU networks in the paper's convention, their objective, and construction from weights.

Paper BN: BN(h) = γ·Jh/‖Jh‖ + α·c·1 (c = 1/√n by default). PyTorch `BatchNorm1d` in training mode
computes γ_t·Jh/√(‖Jh‖²/n + eps) + β_t, hence γ = √n·γ_t and α = β_t/c (= √n·β_t for c = 1/√n).
The objective is ½‖f(X) − Y‖² + (β/2) Σ_j (γ_j² + α_j² + ‖v_j‖²) [+ (λ₁/2)‖W‖² if asked].
BatchNorm's eps is made negligible by scaling first-layer weights so that var(h) ≫ eps.

`PaperBNNet` is the base of every BN network of the package (`BNMLP` here, `variants.BNConvNet` and
`variants.DeepBNNet`): one `objective`, so `evaluate_objective` and `predict` work for all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from convexbn.devices import resolve_device

Placement = Literal["before", "after"]
Loss = Literal["squared", "cross_entropy", "hinge"]
#: Data losses of the objective: ½‖F − Y‖², summed softmax cross-entropy (one-hot Y), Σ max(0, 1 − Y∘F).
LOSSES = ("squared", "cross_entropy", "hinge")


@dataclass
class BNParams:
    """Weights of a two-layer BN network in paper convention (numpy, float64)."""

    W: np.ndarray  # (d, m) first-layer weights (any positive column scaling is equivalent for BN-before-ReLU)
    gamma: np.ndarray  # (m,) paper BN scale γ
    alpha: np.ndarray  # (m,) paper BN shift α (multiplies c·1)
    V: np.ndarray  # (m, C) output weights

    @property
    def width(self) -> int:
        """Number of hidden neurons m."""
        return int(self.gamma.shape[0])

    def penalty(self) -> float:
        """Σ_j (γ_j² + α_j² + ‖v_j‖²)."""
        return float(np.sum(self.gamma**2) + np.sum(self.alpha**2) + np.sum(self.V**2))


def default_device() -> torch.device:
    """CUDA when available, else CPU (the 'auto' of `convexbn.devices.resolve_device`)."""
    return resolve_device("auto")


def data_loss(out: torch.Tensor, Y: torch.Tensor, loss: Loss = "squared") -> torch.Tensor:
    """½‖out − Y‖²_F (squared), summed softmax cross-entropy (one-hot/int labels) or Σ max(0, 1 − Y∘out) (hinge)."""
    if loss == "cross_entropy":
        target = Y.argmax(dim=1) if Y.ndim == 2 else Y.long()
        return nn.functional.cross_entropy(out, target, reduction="sum")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    Y = Y.reshape(out.shape)  # a target vector (n,) against outputs (n, 1)
    if loss == "squared":
        return 0.5 * torch.sum((out - Y) ** 2)
    return torch.sum(torch.relu(1.0 - Y * out))


class PaperBNNet(nn.Module):
    """Base of the BN networks: paper-convention (γ, α) and objective ℓ(f(X), Y) + (β/2)·penalty [+ decay]."""

    bias_value: float | None  # c of the paper's α·c·1; None means 1/√N for a batch of N BN rows

    def paper_bn_of(self, bn: nn.BatchNorm1d, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ, α) of one BN layer in paper convention for a batch of `rows` BN rows."""
        c = self.bias_value if self.bias_value is not None else 1.0 / math.sqrt(rows)
        return bn.weight * math.sqrt(rows), bn.bias / c

    def bn_rows(self, X: torch.Tensor) -> int:
        """Number of rows BN normalises over for input X (the batch size n; n·K for a CNN)."""
        return int(X.shape[0])

    def penalty(self, rows: int) -> torch.Tensor:
        """Σ (γ² + α² + ‖v‖²) in paper convention for a batch of `rows` BN rows (defined by subclasses)."""
        raise NotImplementedError

    def decayed_weights(self) -> list[torch.Tensor]:
        """Weights that the optional first-layer decay λ₁ penalises (defined by subclasses)."""
        raise NotImplementedError

    def objective(
        self, X: torch.Tensor, Y: torch.Tensor, beta: float, loss: Loss = "squared", first_layer_decay: float = 0.0
    ) -> torch.Tensor:
        """Training objective on (X, Y) with a forward pass in the module's current mode."""
        val = data_loss(self(X), Y, loss) + 0.5 * beta * self.penalty(self.bn_rows(X))
        if first_layer_decay:
            val = val + 0.5 * first_layer_decay * sum(torch.sum(w**2) for w in self.decayed_weights())
        return val


class BNMLP(PaperBNNet):
    """Linear(d, m, no bias) → BatchNorm1d(m) → ReLU → Linear(m, C, no bias) (or BN after the ReLU)."""

    def __init__(
        self,
        d: int,
        m: int,
        C: int = 1,
        placement: Placement = "before",
        bias_value: float | None = None,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if placement not in ("before", "after"):
            raise ValueError(f"placement must be 'before' or 'after' the ReLU, got {placement!r}")
        self.placement = placement
        self.first = nn.Linear(d, m, bias=False)
        self.bn = nn.BatchNorm1d(m, eps=eps, momentum=None)  # momentum=None: cumulative (exact) running stats
        self.second = nn.Linear(m, C, bias=False)
        # c of the paper's α·c·1; None means 1/√n of the batch the objective is evaluated on.
        self.bias_value = bias_value

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Network output f(X) (n, C); BN uses batch statistics in train mode, running ones in eval mode."""
        h = self.first(X)
        if self.placement == "before":
            a = torch.relu(self.bn(h))
        else:
            a = self.bn(torch.relu(h))
        return self.second(a)

    def paper_bn(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ, α) in paper convention for a batch of n samples."""
        return self.paper_bn_of(self.bn, n)

    def penalty(self, n: int) -> torch.Tensor:
        """Σ_j (γ_j² + α_j² + ‖v_j‖²) in paper convention for a batch of n samples."""
        gamma, alpha = self.paper_bn(n)
        return torch.sum(gamma**2) + torch.sum(alpha**2) + torch.sum(self.second.weight**2)

    def decayed_weights(self) -> list[torch.Tensor]:
        """The first-layer weights W."""
        return [self.first.weight]

    def to_params(self, n: int) -> BNParams:
        """Export weights in paper convention (float64 numpy)."""
        gamma, alpha = self.paper_bn(n)
        return BNParams(
            W=self.first.weight.detach().double().cpu().numpy().T.copy(),
            gamma=gamma.detach().double().cpu().numpy(),
            alpha=alpha.detach().double().cpu().numpy(),
            V=self.second.weight.detach().double().cpu().numpy().T.copy(),
        )


def scale_for_eps(W: np.ndarray, X: np.ndarray, eps: float, ratio: float = 1e12, relu: bool = False) -> np.ndarray:
    """Rescale each column of W so that the batch variance of X w (or of (X w)_+) is ratio·eps."""
    H = np.asarray(X, dtype=np.float64) @ W
    if relu:
        H = np.maximum(H, 0.0)
    var = H.var(axis=0)
    safe = np.where(var > 0, var, 1.0)
    factor = np.where(var > 0, np.sqrt(ratio * max(eps, 1e-300) / safe), 1.0)
    return W * factor


def load_paper_params(
    first: nn.Linear,
    bn: nn.BatchNorm1d,
    second: nn.Linear,
    params: BNParams,
    H: np.ndarray,
    bias_value: float | None = None,
    relu: bool = False,
) -> None:
    """Copy paper-convention `params` into (first, bn, second); H (N, d) is `first`'s input over the BN batch.

    First-layer columns are rescaled (the network is invariant to that) so that BN's eps is negligible:
    by `scale_for_eps` of H w, or of (H w)_+ when BN follows the ReLU (`relu=True`).
    """
    H = np.asarray(H, dtype=np.float64)
    N = H.shape[0]
    W = scale_for_eps(params.W, H, bn.eps, relu=relu) if params.width else params.W
    c = bias_value if bias_value is not None else 1.0 / math.sqrt(N)
    with torch.no_grad():  # modules already in their dtype/device: copy_ converts, no float32 round trip
        first.weight.copy_(torch.as_tensor(W.T))
        bn.weight.copy_(torch.as_tensor(params.gamma / math.sqrt(N)))
        bn.bias.copy_(torch.as_tensor(params.alpha * c))
        second.weight.copy_(torch.as_tensor(params.V.T))


def bn_mlp_from_params(
    params: BNParams,
    X: np.ndarray,
    placement: Placement = "before",
    bias_value: float | None = None,
    eps: float = 1e-5,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> BNMLP:
    """A real `BNMLP` holding `params`, with running statistics set from the training data X.

    For BN before the ReLU, first-layer columns are rescaled (f is invariant to that) so that eps is
    negligible. For BN after the ReLU a positive rescaling is also harmless (ReLU is homogeneous).
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    m, C = params.V.shape
    net = BNMLP(d, m, C, placement=placement, bias_value=bias_value, eps=eps).to(dtype=dtype, device=device or "cpu")
    load_paper_params(net.first, net.bn, net.second, params, X, bias_value=bias_value, relu=placement == "after")
    set_running_stats(net, torch.as_tensor(X, dtype=dtype, device=net.first.weight.device))
    return net


@torch.no_grad()
def set_running_stats(net: nn.Module, X: torch.Tensor) -> None:
    """Set every BN layer's running mean/var to the full-batch statistics of X (one train-mode pass).

    PyTorch stores the unbiased variance in `running_var`; training-mode BN normalises with the biased
    one. We store the biased variance so that eval mode on the training set reproduces training mode.
    """
    was_training = net.training
    counts: dict[nn.Module, int] = {}
    hooks = []
    for mod in net.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average: one pass = exact batch statistics
            hooks.append(
                mod.register_forward_pre_hook(lambda m, inp: counts.__setitem__(m, inp[0].numel() // inp[0].shape[1]))
            )
    net.train()
    try:
        net(X)
    finally:
        for h in hooks:
            h.remove()
    for mod, count in counts.items():
        if count > 1:
            mod.running_var.mul_((count - 1) / count)
    net.train(was_training)


def evaluate_objective(
    net: nn.Module, X: np.ndarray, Y: np.ndarray, beta: float, loss: Loss = "squared", first_layer_decay: float = 0.0
) -> float:
    """Objective of any `PaperBNNet` (BNMLP; BNConvNet on patches; DeepBNNet) by a train-mode forward pass.

    BN uses the full-batch statistics of X; the network (running statistics included) is left untouched.
    """
    if not isinstance(net, PaperBNNet):
        raise TypeError(f"evaluate_objective needs a convexbn BN network (PaperBNNet), got {type(net).__name__}")
    p = next(net.parameters())
    Xt = torch.as_tensor(np.asarray(X), dtype=p.dtype, device=p.device)
    Yt = torch.as_tensor(np.asarray(Y), dtype=p.dtype, device=p.device)
    was_training = net.training
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}
    try:
        with torch.no_grad():
            val = net.objective(Xt, Yt, beta, loss=loss, first_layer_decay=first_layer_decay)
    finally:
        net.load_state_dict({**net.state_dict(), **state})  # a pure evaluation leaves running stats untouched
        net.train(was_training)
    return float(val)


@torch.no_grad()
def predict(net: nn.Module, X: np.ndarray) -> np.ndarray:
    """Outputs on new data with BN in inference mode (running statistics)."""
    p = next(net.parameters())
    was_training = net.training
    net.eval()
    out = net(torch.as_tensor(np.asarray(X), dtype=p.dtype, device=p.device))
    net.train(was_training)
    return out.double().cpu().numpy()


def one_hot(y: np.ndarray, classes: int) -> np.ndarray:
    """(n, C) float64 one-hot matrix of integer labels."""
    Y = np.zeros((len(y), classes))
    Y[np.arange(len(y)), np.asarray(y, dtype=np.int64)] = 1.0
    return Y


def accuracy(out: np.ndarray, y: np.ndarray) -> float:
    """Classification accuracy of argmax outputs (C > 1) or of out > 0.5 against y ∈ {0, 1} (C = 1)."""
    out = np.asarray(out).reshape(len(y), -1)
    pred = out.argmax(axis=1) if out.shape[1] > 1 else (out[:, 0] > 0.5).astype(int)
    return float(np.mean(pred == np.asarray(y)))


def training_fit(net: nn.Module, X: np.ndarray) -> np.ndarray:
    """Training-set outputs of a BN net with full-batch statistics (running statistics reset to X)."""
    p = next(net.parameters())
    set_running_stats(net, torch.as_tensor(np.asarray(X), dtype=p.dtype, device=p.device))
    return predict(net, X)
