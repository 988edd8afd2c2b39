"""convexbn's fast certified solver of program (C2), as a package.

Problem (decoupled per class c = 1..C, masks D_i = diag(m_i), U' with orthonormal columns):

    min_{u_ic, u'_ic}  ½ Σ_c ‖Σ_i D_i U'(u_ic − u'_ic) − y_c‖² + β Σ_{i,c} (‖u_ic‖ + ‖u'_ic‖)
    s.t.  S_i U' u_ic ≥ 0,  S_i U' u'_ic ≥ 0,   S_i = 2 D_i − I.

Modules, in the order a solve uses them:
- `state`: limits, the result record `FastSolution`, input checks, thread choice, warm starts;
- `operator`: the (C2) operator on tensors, the group shrink and the row-separable ADMM v-step;
- `admm`: the dense solve (ADMM, then the polish, then the certificate);
- `polish`: the primal active-set Newton polish with pricing of zero blocks (`faces`: its linear
  algebra); `conic_polish`: the fallback (restricted Clarabel solve + face Newton);
- `certificate`: dual-feasible points, duality gap, cone violation, pricing bounds;
- `working_set`: column generation over patterns, class by class (large P or large dense state);
- `c2`: `solve_c2_fast`, the entry point choosing dense or working-set mode;
- `path`: `beta_max`, screening and `solve_path` along decreasing β;
- `gated`: the gated relaxation (no cone constraints) by FISTA.

Memory: the dense mode keeps about 8 arrays of n·2P·C numbers; the working-set mode keeps the masks
(n·P bytes) plus one dense solve on n × 2|A|; the gated solver processes rows in chunks.
"""

from __future__ import annotations

from convexbn.solver.admm import solve_dense
from convexbn.solver.c2 import solve_c2_fast
from convexbn.solver.certificate import (
    c2_primal,
    certificate,
    dual_pg,
    exact_multipliers,
    price_patterns,
    project_cone,
)
from convexbn.solver.conic_polish import polish_conic
from convexbn.solver.faces import (
    fit_hessian,
    low_rank_cheaper,
    lstsq,
    newton_low_rank,
    null_basis_qr,
    polish_bytes,
    shrink_basis,
)
from convexbn.solver.gated import gated_gradient_time, solve_gated_fast
from convexbn.solver.operator import C2Operator, vstep
from convexbn.solver.path import beta_max, safe_screen, solve_c2_path, solve_path
from convexbn.solver.polish import active_set_polish
from convexbn.solver.state import (
    CONE_TOL,
    DENSE_C2_BYTES,
    POLISH_MAX_BYTES,
    WORKING_SET_PATTERNS,
    FastSolution,
    choose_threads,
    dense_c2_bytes,
)
from convexbn.solver.working_set import solve_working_set

__all__ = [
    "CONE_TOL",
    "DENSE_C2_BYTES",
    "POLISH_MAX_BYTES",
    "WORKING_SET_PATTERNS",
    "C2Operator",
    "FastSolution",
    "active_set_polish",
    "beta_max",
    "c2_primal",
    "certificate",
    "choose_threads",
    "dense_c2_bytes",
    "dual_pg",
    "exact_multipliers",
    "fit_hessian",
    "gated_gradient_time",
    "low_rank_cheaper",
    "lstsq",
    "newton_low_rank",
    "null_basis_qr",
    "polish_bytes",
    "polish_conic",
    "price_patterns",
    "project_cone",
    "safe_screen",
    "shrink_basis",
    "solve_c2_fast",
    "solve_c2_path",
    "solve_dense",
    "solve_gated_fast",
    "solve_path",
    "solve_working_set",
    "vstep",
]
