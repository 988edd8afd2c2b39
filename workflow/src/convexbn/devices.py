"""Device, dtype and neuron-count conventions shared by the solver, the trainers and the experiments.

One place decides what "auto" means (CUDA when present, else CPU), which float types are supported,
and when a convex block counts as a neuron, so every result file counts the same way.
"""

from __future__ import annotations

import numpy as np
import torch

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}

# A block (one neuron of the reconstructed network) counts when its norm exceeds this fraction of the
# largest block norm: solver iterates carry round-off of ~1e-12 relative in blocks that are zero at the
# optimum, while a neuron that matters carries a visible share of the fit.
NEURON_RTOL = 1e-8


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None/'auto' → CUDA when available, else CPU; an explicit CUDA request without CUDA raises."""
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r} is not a torch device; use 'auto', 'cpu' or 'cuda[:i]'") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; use 'auto', 'cpu' or 'cuda[:i]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use 'auto' or 'cpu'")
    return dev


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """'float32'/'float64' (or those torch dtypes) → torch dtype; anything else raises."""
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")


def count_neurons(*block_norms: np.ndarray, rel_tol: float = NEURON_RTOL) -> int:
    """Number of blocks whose norm exceeds rel_tol × the largest norm over all the given arrays."""
    norms = np.concatenate([np.ravel(np.asarray(b, dtype=np.float64)) for b in block_norms])
    if norms.size == 0:
        return 0
    top = float(norms.max())
    return int(np.sum((norms > rel_tol * top) & (norms > 0))) if top > 0 else 0
