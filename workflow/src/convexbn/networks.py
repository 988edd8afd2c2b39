"""PyTorch BN ReLU networks in the paper's convention, their objective, and construction from weights.

Paper BN: BN(h) = γ·Jh/‖Jh‖ + α·c·1 (c = 1/√n by default). PyTorch `BatchNorm1d` in training mode
computes γ_t·Jh/√(‖Jh‖²/n + eps) + β_t, hence γ = √n·γ_t and α = β_t/c (= √n·β_t for c = 1/√n).
The objective is ½‖f(X) − Y‖² + (β/2) Σ_j (γ_j² + α_j² + ‖v_j‖²) [+ (λ₁/2)‖W‖² if asked].
BatchNorm's eps is made negligible by scaling first-layer weights so that var(h) ≫ eps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

Placement = Literal["before", "after"]
Loss = Literal["squared", "cross_entropy"]


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
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def data_loss(out: torch.Tensor, Y: torch.Tensor, loss: Loss = "squared") -> torch.Tensor:
    """½‖out − Y‖²_F (squared) or summed softmax cross-entropy against one-hot/int labels."""
    if loss == "squared":
        return 0.5 * torch.sum((out - Y) ** 2)
    if loss == "cross_entropy":
        target = Y.argmax(dim=1) if Y.ndim == 2 else Y.long()
        return nn.functional.cross_entropy(out, target, reduction="sum")
    raise ValueError(f"unknown loss {loss!r}; choose 'squared' or 'cross_entropy'")


class BNMLP(nn.Module):
    """Linear(d, m, no bias) → BatchNorm1d(m) → ReLU → Linear(m, C, no bias) (or BN after the ReLU)."""

    def __init__(self, d: int, m: int, C: int = 1, placement: Placement = "before",
                 bias_value: float | None = None, eps: float = 1e-5) -> None:
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
        c = self.bias_value if self.bias_value is not None else 1.0 / math.sqrt(n)
        return self.bn.weight * math.sqrt(n), self.bn.bias / c

    def penalty(self, n: int) -> torch.Tensor:
        """Σ_j (γ_j² + α_j² + ‖v_j‖²) in paper convention for a batch of n samples."""
        gamma, alpha = self.paper_bn(n)
        return torch.sum(gamma**2) + torch.sum(alpha**2) + torch.sum(self.second.weight**2)

    def objective(self, X: torch.Tensor, Y: torch.Tensor, beta: float, loss: Loss = "squared",
                  first_layer_decay: float = 0.0) -> torch.Tensor:
        """Training objective on (X, Y) with a forward pass in the module's current mode."""
        Y = Y.reshape(Y.shape[0], -1) if loss == "squared" else Y
        val = data_loss(self(X), Y, loss) + 0.5 * beta * self.penalty(X.shape[0])
        if first_layer_decay:
            val = val + 0.5 * first_layer_decay * torch.sum(self.first.weight**2)
        return val

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


def bn_mlp_from_params(params: BNParams, X: np.ndarray, placement: Placement = "before",
                       bias_value: float | None = None, eps: float = 1e-5,
                       dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> BNMLP:
    """A real `BNMLP` holding `params`, with running statistics set from the training data X.

    For BN before the ReLU, first-layer columns are rescaled (f is invariant to that) so that eps is
    negligible. For BN after the ReLU a positive rescaling is also harmless (ReLU is homogeneous).
    """
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    m, C = params.V.shape
    W = scale_for_eps(params.W, X, eps, relu=placement == "after") if m else params.W
    c = bias_value if bias_value is not None else 1.0 / math.sqrt(n)
    net = BNMLP(d, m, C, placement=placement, bias_value=bias_value, eps=eps).to(dtype=dtype, device=device or "cpu")
    with torch.no_grad():  # copy after the dtype change: no float32 round trip
        net.first.weight.copy_(torch.as_tensor(W.T))
        net.bn.weight.copy_(torch.as_tensor(params.gamma / math.sqrt(n)))
        net.bn.bias.copy_(torch.as_tensor(params.alpha * c))
        net.second.weight.copy_(torch.as_tensor(params.V.T))
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
            hooks.append(mod.register_forward_pre_hook(
                lambda m, inp: counts.__setitem__(m, inp[0].numel() // inp[0].shape[1])))
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


def evaluate_objective(net: nn.Module, X: np.ndarray, Y: np.ndarray, beta: float, loss: Loss = "squared",
                       first_layer_decay: float = 0.0) -> float:
    """Objective of `net` by an ordinary forward pass in training mode (full-batch BN statistics)."""
    p = next(net.parameters())
    Xt = torch.as_tensor(np.asarray(X), dtype=p.dtype, device=p.device)
    Yt = torch.as_tensor(np.asarray(Y), dtype=p.dtype, device=p.device)
    was_training = net.training
    net.train()
    state = {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}
    with torch.no_grad():
        val = net.objective(Xt, Yt, beta, loss=loss, first_layer_decay=first_layer_decay)
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
