"""The one rule for choosing a hyper-parameter (k, later β) on validation data, shared by the
experiments and the plots. Standard library only."""

from __future__ import annotations

import math
from typing import Any, Sequence


def _has(c: dict[str, Any], key: str) -> bool:
    """True when a candidate has a real (not None, not NaN) value under `key`."""
    v = c.get(key)
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def selection_rule(candidates: Sequence[dict[str, Any]]) -> str:
    """How :func:`select_on_validation` chooses among these candidates, in words."""
    if candidates and all(_has(c, "val_acc") for c in candidates):
        return "validation accuracy"
    return "training accuracy (no validation split)"


def select_on_validation(candidates: Sequence[dict[str, Any]], grid_key: str = "k") -> dict[str, Any]:
    """The candidate with the best validation accuracy (training accuracy when there is no validation
    split); ties go to the smaller grid value (e.g. the smaller k). Never looks at test accuracy."""
    if not candidates:
        raise ValueError("select_on_validation: no candidates to choose from")
    score = "val_acc" if selection_rule(candidates) == "validation accuracy" else "train_acc"
    return max(candidates, key=lambda c: (c[score], -c[grid_key]))
