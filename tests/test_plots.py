"""Figures and tables come from small hand-written aggregated CSVs only (no recomputation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import load_config

from convexbn import plots
from convexbn.experiments import EXPERIMENT_NAMES, family_of, grid, tables
from convexbn.experiments.runner import make_figures

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"


def _summary(**kw):
    return {"record": "summary", "device": "cpu", "synthetic": True, "status": "ok", **kw}


def _trace(**kw):
    return {"record": "trace", "device": "cpu", "synthetic": True, **kw}


def _rows_equivalence():
    rows = [
        _summary(
            job="convex", kind="convex", p_star=1.0, m_star=3, reconstructed_objective=1.0, solver_status="optimal"
        )
    ]
    for opt in ("gd", "adam"):
        for f, w in ((0.5, 2), (2.0, 6)):
            job = f"{opt}_m{f:g}x"
            rows.append(
                _summary(
                    job=job,
                    kind="baselines",
                    optimizer=opt,
                    width=w,
                    width_factor=f,
                    p_star=1.0,
                    best_final_objective=1.0 + 1 / w,
                    runs_below_p_star=0,
                    runs_reaching_p_star=1,
                    inits=2,
                )
            )
            for init in range(2):
                for e in (0, 1, 10, 100):
                    rows.append(
                        _trace(
                            job=job,
                            optimizer=opt,
                            width=w,
                            width_factor=f,
                            init=init,
                            epoch=e,
                            objective=1.0 + 5.0 / (e + 1) + 1 / w,
                        )
                    )
    return rows


def _rows_closed_form():
    rows = []
    for out in ("scalar", "onehot"):
        for b in (0.1, 0.5, 1.0):
            rows.append(
                _summary(
                    job=f"{out}_b{b}",
                    output=out,
                    beta=b,
                    p_closed=b,
                    p_cvxpy=b * (1 + 1e-9),
                    p_gd_best=b * 1.001,
                    closed_net_objective=b,
                    rel_diff_cvxpy=1e-9,
                    rel_diff_gd=1e-3,
                    fit_diff_cvxpy=1e-7,
                    fit_diff_gd=1e-2,
                    penalty_closed=1.0,
                    penalty_cvxpy=1.0,
                    neurons_closed=2,
                    solver_status="optimal",
                )
            )
    return rows


def _rows_whitening():
    return [
        _summary(
            job=t,
            transform=t,
            p_star=1.0,
            bn_best=1.01,
            relu_best=0.5 + i / 10,
            cond_X=1.0 + i,
            obj_change_convex=0.0,
            obj_change_bn=0.001,
            obj_change_relu=0.1 * i,
            fit_change_convex=0.0,
            fit_change_bn=0.01,
            fit_change_relu=0.2 * i,
            solver_status="optimal",
        )
        for i, t in enumerate(("identity", "whitened", "random_linear", "scaled"))
    ]


def _rows_implicit_bias(datasets):
    rows = []
    for ds in datasets:
        rows.append(
            _summary(
                job=f"gd_{ds}",
                dataset=ds,
                method="gd",
                n=50,
                rank=20,
                beta=0.05,
                top_fraction=0.1,
                top_energy_init=0.4,
                top_energy=0.6,
                train_acc=0.9,
                test_acc=0.8,
                synthetic=False,
            )
        )
        rows.append(
            _summary(
                job=f"convex_{ds}",
                dataset=ds,
                method="convex",
                n=50,
                rank=20,
                beta=0.05,
                top_fraction=0.1,
                top_energy=0.2,
                train_acc=1.0,
                test_acc=0.7,
                synthetic=False,
            )
        )
        E = np.geomspace(1, 1e-3, 20)
        for e in (0, 10, 100):
            for i, v in enumerate(E ** (1 + e / 100)):
                rows.append(
                    _trace(
                        job=f"gd_{ds}", dataset=ds, method="gd", record_kind="energy", epoch=e, index=i + 1, energy=v
                    )
                )
        for i in range(20):
            rows.append(
                _trace(
                    job=f"convex_{ds}", dataset=ds, method="convex", record_kind="energy", index=i + 1, energy=1 / 20
                )
            )
            rows.append(
                _trace(
                    job=f"gd_{ds}", dataset=ds, method="gd", record_kind="spectrum", index=i + 1, sigma=10.0 / (i + 1)
                )
            )
    return rows


def _rows_truncation(datasets):
    rows = []
    for ds in datasets:
        rows.append(
            _summary(
                job=f"sgd_{ds}",
                dataset=ds,
                method="sgd",
                k=None,
                train_acc=0.9,
                val_acc=0.8,
                test_acc=0.8,
                synthetic=False,
            )
        )
        for k, v in ((4, 0.7), (16, 0.85), (55, 0.8)):
            rows.append(
                _summary(
                    job=f"k{k}_{ds}",
                    dataset=ds,
                    method="convex",
                    k=k,
                    train_acc=min(1.0, v + 0.1),
                    val_acc=v,
                    test_acc=v - 0.01,
                    solver_status="max_iter",
                    synthetic=False,
                )
            )
    return rows


def _rows_main(datasets):
    rows = []
    for ds in datasets:
        for method, acc in (("sgd", 0.8), ("convex_full", 0.75), ("convex_truncated", 0.85)):
            for seed in range(3):
                job = f"{method}_{ds}_s{seed}"
                rows.append(
                    _summary(
                        job=job,
                        dataset=ds,
                        method=method,
                        seed=seed,
                        test_acc=acc + 0.01 * seed,
                        train_acc=0.95,
                        seconds=10.0 + seed,
                        k=None if method == "sgd" else 16,
                        solver_status=None if method == "sgd" else "max_iter",
                        synthetic=ds != "digits",
                    )
                )
                for e in range(4):
                    rows.append(
                        _trace(
                            job=job,
                            dataset=ds,
                            method=method,
                            seed=seed,
                            epoch=e * 10,
                            seconds=e * 2.5,
                            test_acc=acc * (e + 1) / 4,
                            synthetic=ds != "digits",
                        )
                    )
    return rows


def _rows_variants():
    return [
        _summary(
            job=f"{v}_i{i}",
            variant=v,
            instance=i,
            form="exact",
            n=8,
            P=20,
            p_star=1.0 + i,
            best_nonconvex=1.001 + i,
            rel_gap=0.001,
            neurons=3,
            inits=2,
            solver_status="optimal",
            best_nonconvex_shared_neurons=0.9 + i if v == "vector_output" else None,
        )
        for v in ("bn_after_relu", "cnn", "deep", "vector_output")
        for i in range(2)
    ]


def _rows(name, ds):
    ds = [ds] if ds else []
    return {
        "equivalence": _rows_equivalence,
        "closed_form": _rows_closed_form,
        "whitening_invariance": _rows_whitening,
        "variants": _rows_variants,
        "implicit_bias": lambda: _rows_implicit_bias(ds),
        "truncation": lambda: _rows_truncation(ds),
        "main_comparison": lambda: _rows_main(ds),
    }[name]()


def _table_of(name, config=None):
    """The first aggregated table of experiment `name` in the CI config."""
    return next(t for t in tables(config or load_config("ci.yaml")).values() if t.experiment == name)


def _draw(tmp_path, table, plot=None):
    """Write the hand-made CSV of a table and draw it; returns the output folder."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv = tmp_path / f"{table.id}.csv"
    pd.DataFrame(_rows(table.experiment, table.dataset)).to_csv(csv, index=False)
    out = tmp_path / "figures"
    make_figures(table.experiment, table.dataset, plot or table.plot, str(csv), str(out))
    return out


@pytest.mark.parametrize("name", EXPERIMENT_NAMES)
def test_figures_and_tables_from_handwritten_csv(tmp_path, name):
    table = _table_of(name)
    out = _draw(tmp_path, table)
    for stem in table.figures:
        assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
        assert (out / f"{stem}.png").stat().st_size > 1000
    for stem in table.tables:
        md = (out / f"{stem}.md").read_text()
        assert md.startswith("|") and "settings ours" in md
        assert "\\begin{tabular}" in (out / f"{stem}.tex").read_text()


def test_plot_rc_restyles_a_figure(tmp_path):
    """An experiment's plot.rc settings reach matplotlib: a lower savefig.dpi gives a smaller PNG."""
    table = _table_of("closed_form")
    plain = _draw(tmp_path / "plain", table) / "closed_form_objective_vs_beta.png"
    small = _draw(tmp_path / "small", table, {"rc": {"savefig.dpi": 40}}) / "closed_form_objective_vs_beta.png"
    assert small.stat().st_size < plain.stat().st_size / 2
    with pytest.raises(ValueError, match="not matplotlib rcParams"):
        _draw(tmp_path / "bad", table, {"rc": {"lines.widht": 2}})


def test_main_table_reports_mean_and_std_over_seeds(tmp_path):
    table = _table_of("main_comparison")
    _draw(tmp_path, table)
    md = (tmp_path / "figures" / f"main_accuracy_table_{table.dataset}.md").read_text()
    assert "81.00 ± 1.00" in md  # SGD: 0.80, 0.81, 0.82
    assert "cpu" in md and "Convex (exact, full whitening)" in md


def test_titles_mark_synthetic_data_and_device():
    assert "[synthetic]" in plots._title("x", True, "cuda:0") and "cuda:0" in plots._title("x", True, "cuda:0")
    assert "synthetic" not in plots._title("x", False)


def test_every_figure_family_has_one_caption():
    """Captions are per figure family (not per dataset copy), and every stem of the shipped configs has one."""
    families = {fam for figs, tabs in grid.OUTPUT_FAMILIES.values() for fam in (*figs, *tabs)}
    assert {p.stem for p in REPORT.glob("*.rst")} == families | {"claims"}  # + the scoreboard's caption
    for config in (load_config(), load_config("ci.yaml"), load_config("ci.yaml", "demo.yaml")):
        for t in tables(config).values():
            for stem in t.figures + t.tables:
                cap = REPORT / f"{family_of(stem)}.rst"
                assert cap.is_file(), f"missing caption {cap}"
                assert "ours" in cap.read_text()


def test_csv_without_record_column_is_rejected(tmp_path):
    csv = tmp_path / "bad.csv"
    pd.DataFrame({"a": [1]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="record"):
        plots.read_table(str(csv))
