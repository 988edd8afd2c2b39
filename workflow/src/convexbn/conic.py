"""Conic solver selection for CVXPY: MOSEK when licensed, CLARABEL otherwise; status/time recording."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cvxpy as cp

log = logging.getLogger("convexbn.conic")

#: Solvers convexbn accepts by name (case-insensitive). "fast" is convexbn's own first-order solver.
KNOWN_SOLVERS = ("auto", "fast", "MOSEK", "CLARABEL", "SCS", "ECOS", "QOCO", "OSQP", "HIGHS")

MOSEK_HELP = (
    "MOSEK needs a licence file: put it at ~/mosek/mosek.lic or point MOSEKLM_LICENSE_FILE at it "
    "(free academic licences: https://www.mosek.com/products/academic-licenses/); "
    "or choose an open-source solver with --solver CLARABEL (or 'auto')"
)


class SolverError(ValueError):
    """A solver name or licence problem the user must fix."""


@dataclass
class SolveRecord:
    """What a solve reports besides its variables: which solver, status, time, iterations."""

    solver: str
    status: str
    seconds: float
    iterations: int | None = None
    objective: float | None = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def optimal(self) -> bool:
        """True only for a fully optimal status."""
        return self.status == "optimal"


def mosek_license_path() -> Path | None:
    """The MOSEK licence file that MOSEK itself would find (env var first, then ~/mosek/mosek.lic)."""
    env = os.environ.get("MOSEKLM_LICENSE_FILE")
    if env:
        for part in env.split(os.pathsep):
            p = Path(part).expanduser()
            if p.is_file():
                return p
            if "@" in part:  # a licence server (port@host): trust it, MOSEK will say if it is wrong
                return Path(part)
    home = Path.home() / "mosek" / "mosek.lic"
    return home if home.is_file() else None


def mosek_available() -> tuple[bool, str]:
    """(usable, why): MOSEK is importable through CVXPY and a licence file is present."""
    if "MOSEK" not in cp.installed_solvers():
        return False, "the mosek Python package is not installed"
    lic = mosek_license_path()
    if lic is None:
        return False, "no MOSEK licence found (MOSEKLM_LICENSE_FILE unset or missing, no ~/mosek/mosek.lic)"
    return True, f"MOSEK licence found at {lic}"


def resolve_solver(name: str) -> tuple[str, str]:
    """Map a user's solver name to an installed CVXPY solver (or 'fast'); returns (solver, reason)."""
    if not isinstance(name, str) or not name.strip():
        raise SolverError(f"solver name must be a non-empty string, got {name!r}; choose one of {', '.join(KNOWN_SOLVERS)}")
    key = name.strip()
    upper = key.upper()
    if key.lower() == "fast":
        return "fast", "convexbn's first-order solver requested"
    if key.lower() == "auto":
        ok, why = mosek_available()
        if ok:
            return "MOSEK", f"auto: {why}"
        return "CLARABEL", f"auto: {why}; using CLARABEL (open-source interior point)"
    if upper not in [s.upper() for s in KNOWN_SOLVERS]:
        raise SolverError(f"unknown solver {name!r}; choose one of {', '.join(KNOWN_SOLVERS)}")
    if upper == "MOSEK":
        ok, why = mosek_available()
        if not ok:
            raise SolverError(f"solver MOSEK was requested but {why}. {MOSEK_HELP}")
        return "MOSEK", why
    if upper not in cp.installed_solvers():
        raise SolverError(
            f"solver {upper} is not installed for CVXPY (installed: {', '.join(cp.installed_solvers())}); "
            f"pip install it or choose CLARABEL"
        )
    return upper, f"{upper} requested"


#: Accurate settings per solver (tight tolerances; the oracle must be accurate).
ACCURATE_OPTIONS: dict[str, dict[str, Any]] = {
    "CLARABEL": {"tol_gap_abs": 1e-8, "tol_gap_rel": 1e-8, "tol_feas": 1e-8, "max_iter": 500},
    "ECOS": {"abstol": 1e-10, "reltol": 1e-10, "feastol": 1e-10, "max_iters": 500},
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
    "MOSEK": {},
}


def solve_problem(problem: cp.Problem, solver: str, accurate: bool = True, **options: Any) -> SolveRecord:
    """Solve a CVXPY problem with a resolved solver name; never raises on solver failure, records it."""
    opts = dict(ACCURATE_OPTIONS.get(solver, {})) if accurate else {}
    opts.update(options)
    t0 = time.perf_counter()
    try:
        problem.solve(solver=solver, **opts)
        status = str(problem.status)
        reason = ""
    except cp.error.SolverError as exc:  # numerical failure etc.: record, do not crash the caller
        status = "solver_error"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    seconds = time.perf_counter() - t0
    stats = problem.solver_stats
    iters = getattr(stats, "num_iters", None) if stats is not None else None
    value = problem.value if status in ("optimal", "optimal_inaccurate") else None
    if status != "optimal":
        log.warning("solver %s returned status %s %s", solver, status, reason)
    return SolveRecord(solver=solver, status=status, seconds=seconds, iterations=iters,
                       objective=None if value is None else float(value), reason=reason)
