"""The paper's exact convex programs in CVXPY (C2 scalar/vector), closed forms and reconstruction.

(Being filled in; the dataclass below is the shared contract other modules import.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from convexbn.networks import BNParams
from convexbn.solvers import SolveRecord


@dataclass
class ConvexResult:
    """A solved convex program: optimum (paper convention), solver record and reconstructed weights."""

    objective: float  # convex optimum, recomputed from the returned variables in the paper convention
    record: SolveRecord  # solver, status, seconds (whole solve incl. construction), iterations
    params: BNParams | None  # reconstructed non-convex network (None when the solve failed)
    neurons: int  # number of non-zero blocks = neurons of the reconstructed network
    arrangements: int  # number of arrangement patterns P used
    extra: dict[str, Any] = field(default_factory=dict)  # variant-specific data (blocks, certificates, ...)
