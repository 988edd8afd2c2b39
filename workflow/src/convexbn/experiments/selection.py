"""The one rule for choosing hyper-parameters (β ratio, k, learning rate, epochs) on validation data,
shared by every method of every experiment, the tables and the claims scoreboard. Standard library only."""

from __future__ import annotations

import math
from typing import Any, Sequence

#: Value of the ``selected_by`` column when a setting was chosen with :func:`select_on_validation`
#: on a validation split (the claims scoreboard reads it).
VALIDATION = "validation"


def _has(c: dict[str, Any], key: str) -> bool:
    """True when a candidate has a real (not None, not NaN) value under `key`."""
    v = c.get(key)
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def selection_rule(candidates: Sequence[dict[str, Any]]) -> str:
    """How :func:`select_on_validation` chooses among these candidates, in words."""
    if candidates and all(_has(c, "val_acc") for c in candidates):
        return "validation accuracy"
    return "training accuracy (no validation split)"


def selected_by(candidates: Sequence[dict[str, Any]]) -> str:
    """The ``selected_by`` value of a choice among these candidates: 'validation' or 'training'."""
    return VALIDATION if selection_rule(candidates) == "validation accuracy" else "training"


def _tie_value(c: dict[str, Any], key: str) -> float:
    """Tie-break value of a candidate: the grid value with a leading '-' meaning 'prefer larger'."""
    sign, name = (-1.0, key[1:]) if key.startswith("-") else (1.0, key)
    v = c.get(name)
    return math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else sign * float(v)


def select_on_validation(candidates: Sequence[dict[str, Any]], grid_key: str | Sequence[str] = "k") -> dict[str, Any]:
    """The candidate with the best validation accuracy (training accuracy when there is no validation
    split); ties go to the smaller value of the grid keys in order ('-key': the larger value, e.g. the
    stronger regularisation). Never looks at test accuracy."""
    if not candidates:
        raise ValueError("select_on_validation: no candidates to choose from")
    keys = [grid_key] if isinstance(grid_key, str) else list(grid_key)
    score = "val_acc" if selection_rule(candidates) == "validation accuracy" else "train_acc"
    finite = [c for c in candidates if _has(c, score)]
    if not finite:
        raise ValueError(f"select_on_validation: no candidate has a {score} value; check the solves/trainings")
    return min(finite, key=lambda c: (-float(c[score]), *(_tie_value(c, k) for k in keys)))
