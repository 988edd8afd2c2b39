"""Solver choice (MOSEK licence detection, CLARABEL fallback) and honest recording of non-optimal statuses."""

from __future__ import annotations

import logging
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest

from convexbn import cli
from convexbn.programs import solve_two_layer
from convexbn.conic import SolverError, resolve_solver, solve_problem


@pytest.fixture
def no_licence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MOSEK licence: env var unset and an empty home folder."""
    monkeypatch.delenv("MOSEKLM_LICENSE_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def small() -> tuple[np.ndarray, np.ndarray]:
    """A tiny scalar problem."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((9, 2)), rng.standard_normal(9)


def test_auto_without_licence_uses_clarabel(no_licence: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """auto → CLARABEL, the reason names the missing licence, and the CLI logs it on stderr."""
    name, reason = resolve_solver("auto")
    assert name == "CLARABEL" and "licence" in reason
    X, y = small()
    res = solve_two_layer(X, y, 0.1, arrangements=10, solver="auto")
    assert res.record.solver == "CLARABEL" and "licence" in res.record.reason
    np.savez(tmp_path / "d.npz", X=X, y=y)
    rc = cli.main(["solve", "--data", str(tmp_path / "d.npz"), "--beta", "0.1", "--arrangements", "10",
                   "--out", str(tmp_path / "r.json")])
    assert rc == 0
    err = capsys.readouterr().err
    assert "solver CLARABEL (auto:" in err and "licence" in err


def test_explicit_mosek_without_licence(no_licence: None) -> None:
    """Explicit MOSEK without a licence: SolverError naming the licence and an alternative, before solving."""
    with pytest.raises(SolverError, match="licen[cs]e") as info:
        resolve_solver("MOSEK")
    assert "CLARABEL" in str(info.value)
    X, y = small()
    with pytest.raises(SolverError, match="MOSEK"):
        solve_two_layer(X, y, 0.1, solver="mosek")


def test_fake_licence_makes_auto_pick_mosek(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A licence file named by MOSEKLM_LICENSE_FILE makes auto resolve to MOSEK (no solve attempted)."""
    if "MOSEK" not in cp.installed_solvers():
        pytest.skip("mosek Python package not installed")
    lic = tmp_path / "mosek.lic"
    lic.write_text("FEATURE PTS MOSEKLM 11 31-dec-2099 uncounted\n")
    monkeypatch.setenv("MOSEKLM_LICENSE_FILE", str(lic))
    name, reason = resolve_solver("auto")
    assert name == "MOSEK" and str(lic) in reason
    assert resolve_solver("MOSEK")[0] == "MOSEK"


def test_unknown_solver_name() -> None:
    """Unknown names list the accepted ones."""
    with pytest.raises(SolverError, match="unknown solver 'GUROBIX'.*CLARABEL"):
        resolve_solver("GUROBIX")
    X, y = small()
    with pytest.raises(SolverError, match="unknown solver"):
        solve_two_layer(X, y, 0.1, solver="GUROBIX")
    assert resolve_solver("clarabel")[0] == "CLARABEL"


def test_non_optimal_status_is_recorded(caplog: pytest.LogCaptureFixture) -> None:
    """SCS stopped after 2 iterations: status recorded, not certified, a warning logged, no exception."""
    X, y = small()
    with caplog.at_level(logging.WARNING, logger="convexbn"):
        res = solve_two_layer(X, y, 0.1, arrangements=10, solver="SCS", max_iters=2)
    assert res.record.solver == "SCS"
    assert res.record.status != "optimal" and res.extra["certified"] is False
    assert "warning" in res.extra and res.record.status in res.extra["warning"]
    assert any("not certified" in r.message for r in caplog.records)
    if res.params is None:
        assert np.isnan(res.objective)
    else:  # a returned point is still turned into a network and its objective recomputed
        assert np.isfinite(res.objective)


def test_infeasible_and_unbounded_toys_do_not_raise() -> None:
    """solve_problem records infeasible/unbounded statuses instead of raising."""
    x = cp.Variable()
    rec = solve_problem(cp.Problem(cp.Minimize(x), [x >= 1, x <= 0]), "CLARABEL")
    assert rec.status.startswith("infeasible") and rec.objective is None and not rec.optimal
    rec = solve_problem(cp.Problem(cp.Minimize(x), [x <= 0]), "CLARABEL")
    assert rec.status.startswith("unbounded") and not rec.optimal


def test_library_logs_which_solver_and_why(no_licence: None, caplog: pytest.LogCaptureFixture) -> None:
    """Without the CLI, the convex solves themselves log the solver chosen by 'auto' and the reason."""
    X, y = small()
    with caplog.at_level(logging.INFO, logger="convexbn"):
        solve_two_layer(X, y, 0.1, arrangements=8, solver="auto")
    assert any(r.getMessage().startswith("solver CLARABEL (auto:") and "licence" in r.getMessage()
               for r in caplog.records)
