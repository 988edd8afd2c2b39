"""Figures and tables of every experiment, drawn ONLY from the aggregated CSVs under results/tables/.

One shared style (:func:`style`, restyled per experiment by its `plot.rc` config), headless Agg backend,
PDF + PNG per figure, Markdown + LaTeX per table (pandas). Axis labels carry units; legends name the
methods as the paper does ("SGD (BN network)", "Convex (exact)", "Convex (truncated, k)"). Figures from
synthetic data say "synthetic" in their title. All settings shown are ours, not the paper's
(docs/deviations.md).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from convexbn.experiments.selection import select_on_validation  # noqa: E402

#: How the methods are named in legends and tables.
METHOD_LABELS: dict[str, str] = {
    "sgd": "SGD (BN network)",
    "gd": "GD (BN network)",
    "adam": "Adam (BN network)",
    "convex": "Convex (exact)",
    "convex_full": "Convex (exact, full whitening)",
    "convex_truncated": "Convex (truncated whitening, k on validation)",
    "convex_P": "Convex (truncated whitening) at another P",
    "closed_form": "Closed form",
}

#: One colour per method, shared by every figure.
METHOD_COLORS: dict[str, str] = {
    "sgd": "#1f77b4",
    "gd": "#2ca02c",
    "adam": "#9467bd",
    "convex": "#000000",
    "convex_full": "#d62728",
    "convex_truncated": "#ff7f0e",
    "closed_form": "#8c564b",
    "convex_P": "#e377c2",
}

STYLE: dict[str, Any] = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 110,
    "savefig.dpi": 160,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.4,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,
    "figure.constrained_layout.use": True,
}

DATASET_LABELS: dict[str, str] = {
    "digits": "digits (8×8)",
    "fashion_mnist": "Fashion-MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
}


@contextlib.contextmanager
def style(rc: dict[str, Any] | None = None) -> Iterator[None]:
    """The shared matplotlib style overlaid by `rc` (an experiment's `plot.rc` settings) for a block."""
    rc = dict(rc or {})
    unknown = sorted(k for k in rc if k not in matplotlib.rcParams)
    if unknown:
        raise ValueError(f"plot.rc: {unknown} are not matplotlib rcParams; use names from matplotlib.rcParams")
    with plt.rc_context({**STYLE, **rc}):
        yield


def _dataset_label(ds: str) -> str:
    """Human name of a dataset key."""
    return DATASET_LABELS.get(ds, ds)


def _title(text: str, synthetic: bool, device: str | None = None) -> str:
    """Figure title with the synthetic marker and the device when known; settings are ours."""
    parts = [text]
    if synthetic:
        parts[0] = "[synthetic] " + parts[0]
    if device:
        parts.append(f"device: {device}")
    return (
        "\n".join([parts[0], " · ".join(parts[1:] + ["settings ours"])])
        if len(parts) > 1
        else parts[0] + "\n(settings ours)"
    )


def _save(fig: plt.Figure, out_dir: str, stem: str) -> None:
    """Write figure `stem` as PDF and PNG into out_dir (atomic per file)."""
    import io

    from convexbn.io import atomic_write_bytes

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for ext in ("pdf", "png"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext)
        atomic_write_bytes(os.path.join(out_dir, f"{stem}.{ext}"), buf.getvalue())
    plt.close(fig)


def _write_table(df: pd.DataFrame, out_dir: str, stem: str, caption: str) -> None:
    """Write a table as Markdown (+ caption line) and LaTeX (booktabs)."""
    from convexbn.io import atomic_write_bytes

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    df = df.astype(object).where(df.notna(), "")
    md = df.to_markdown(index=False, floatfmt=".6g") + f"\n\n{caption}\n"
    atomic_write_bytes(os.path.join(out_dir, f"{stem}.md"), md.encode())
    tex = df.to_latex(index=False, float_format=lambda v: f"{v:.6g}", caption=caption, label=f"tab:{stem}", escape=True)
    atomic_write_bytes(os.path.join(out_dir, f"{stem}.tex"), tex.encode())


def read_table(table_csv: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary rows, trace rows) of an aggregated CSV; an error when it has no summary rows."""
    df = pd.read_csv(table_csv)
    if "record" not in df.columns:
        raise ValueError(
            f"{table_csv} has no 'record' column; it was not written by convexbn.experiments.runner.aggregate"
        )
    summary, trace = df[df["record"] == "summary"].copy(), df[df["record"] == "trace"].copy()
    if summary.empty:
        raise ValueError(f"{table_csv}: no summary rows; nothing to plot")
    return summary, trace


def read_grid(table_csv: str) -> pd.DataFrame:
    """The grid rows (every setting a method was selected from) of an aggregated CSV; empty when none."""
    df = pd.read_csv(table_csv)
    return df[df["record"] == "grid"].copy() if "record" in df.columns else df.iloc[:0]


def _any_true(s: pd.Series | None) -> bool:
    """True when any entry of a boolean-like column is true."""
    if s is None or len(s) == 0:
        return False
    return bool(s.astype(str).str.lower().isin(["true", "1", "1.0"]).any())


def _devices(df: pd.DataFrame) -> str | None:
    """Comma-separated devices of the rows (None if absent)."""
    if "device" not in df.columns or df["device"].dropna().empty:
        return None
    return ", ".join(sorted({str(v) for v in df["device"].dropna()}))


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    """Column `name` or a NaN column."""
    return df[name] if name in df.columns else pd.Series([np.nan] * len(df), index=df.index)


# --------------------------------------------------------------------------------------------------
# experiment 1
# --------------------------------------------------------------------------------------------------


def plot_equivalence(summary: pd.DataFrame, trace: pd.DataFrame, out_dir: str) -> None:
    """Objective vs iteration per optimiser (curves per width, thin per init) with the convex optimum p*."""
    p_star = float(summary["p_star"].dropna().iloc[0])
    opts = [o for o in ("gd", "sgd", "adam") if o in set(trace.get("optimizer", pd.Series(dtype=str)).dropna())]
    opts = opts or sorted(set(trace.get("optimizer", pd.Series(dtype=str)).dropna()))
    fig, axes = plt.subplots(1, max(1, len(opts)), figsize=(4.0 * max(1, len(opts)), 3.8), sharey=True, squeeze=False)
    factors = sorted(set(_col(trace, "width_factor").dropna()))
    cmap = plt.get_cmap("viridis")
    for ax, opt in zip(axes[0], opts):
        t = trace[trace["optimizer"] == opt]
        for fi, f in enumerate(factors):
            tf = t[t["width_factor"] == f]
            color = cmap(fi / max(1, len(factors) - 1) * 0.85)
            width = int(tf["width"].iloc[0]) if len(tf) else 0
            for k, (init, g) in enumerate(tf.groupby("init")):
                ax.plot(
                    g["epoch"].clip(lower=0) + 1,
                    g["objective"],
                    color=color,
                    alpha=0.75,
                    lw=1.0,
                    label=f"m = {width} ({f:g}·m*)" if k == 0 else None,
                )
        ax.axhline(p_star, color="k", ls="--", lw=1.4, label=f"convex optimum p* = {p_star:.5g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("epoch + 1 (full passes over the data)")
        ax.set_title(METHOD_LABELS.get(opt, opt))
    axes[0][0].set_ylabel("training objective (paper convention)")
    axes[0][-1].legend(loc="upper right")
    m_star = summary["m_star"].dropna()
    fig.suptitle(
        _title(
            f"Non-convex BN network vs convex optimum (m* = {int(m_star.iloc[0]) if len(m_star) else '?'})",
            True,
            _devices(summary),
        )
    )
    _save(fig, out_dir, "equivalence_objective_vs_iteration")


def table_equivalence(summary: pd.DataFrame, out_dir: str) -> None:
    """Convex row (p*, reconstructed objective, m*) and one row per optimiser × width."""
    conv = summary[summary["job"] == "convex"]
    rows = []
    for _, r in conv.iterrows():
        rows.append(
            {
                "method": "Convex (exact, CVXPY)",
                "width m": r.get("m_star"),
                "objective": r["p_star"],
                "reconstructed net objective": r.get("reconstructed_objective"),
                "runs below p*": 0,
                "runs reaching p* (rel 1e-3)": None,
                "solver status": r.get("solver_status"),
            }
        )
    base = summary[summary["job"] != "convex"].sort_values(["optimizer", "width_factor"])
    for _, r in base.iterrows():
        rows.append(
            {
                "method": f"{METHOD_LABELS.get(r['optimizer'], r['optimizer'])}, {r['width_factor']:g}·m*",
                "width m": r["width"],
                "objective": r["best_final_objective"],
                "reconstructed net objective": None,
                "runs below p*": r["runs_below_p_star"],
                "runs reaching p* (rel 1e-3)": f"{int(r['runs_reaching_p_star'])}/{int(r['inits'])}",
                "solver status": None,
            }
        )
    _write_table(
        pd.DataFrame(rows),
        out_dir,
        "equivalence_table",
        "Synthetic data. Convex optimum p*, objective of the reconstructed BN network and best final "
        "objective of the non-convex BN network over inits (settings ours).",
    )


# --------------------------------------------------------------------------------------------------
# experiment 2
# --------------------------------------------------------------------------------------------------


def plot_closed_form(summary: pd.DataFrame, out_dir: str) -> None:
    """Objective vs β (closed form line, CVXPY and local-search markers) and relative differences."""
    outs = [o for o in ("scalar", "onehot") if o in set(summary["output"])]
    fig, axes = plt.subplots(2, len(outs), figsize=(4.4 * len(outs), 6.0), squeeze=False, sharex="col")
    for j, o in enumerate(outs):
        s = summary[summary["output"] == o].sort_values("beta")
        ax = axes[0][j]
        ax.plot(s["beta"], s["p_closed"], "-", color=METHOD_COLORS["closed_form"], label="Closed form")
        ax.plot(s["beta"], s["p_cvxpy"], "o", mfc="none", color="k", label="Convex program (CVXPY)")
        ax.plot(s["beta"], s["p_gd_best"], "x", color=METHOD_COLORS["gd"], label="Local search on BN net (best init)")
        ax.set_xscale("log")
        ax.set_ylabel("optimal objective")
        ax.set_title("scalar output" if o == "scalar" else "one-hot vector output")
        ax.legend()
        ax2 = axes[1][j]
        floor = 1e-16
        for col, lab, mk, c in (
            ("rel_diff_cvxpy", "|p_CVXPY − p_closed| / max(1, p_closed)", "o", "k"),
            ("rel_diff_gd", "|p_local − p_closed| / max(1, p_closed)", "x", METHOD_COLORS["gd"]),
            ("fit_diff_cvxpy", "‖f_CVXPY − f_closed‖ / ‖f_closed‖", "s", "#7f7f7f"),
        ):
            if col in s.columns:
                ax2.plot(s["beta"], np.maximum(s[col].astype(float), floor), mk, color=c, mfc="none", label=lab)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("weight decay β")
        ax2.set_ylabel("relative difference")
        ax2.legend(fontsize=7)
    fig.suptitle(_title("Closed form vs CVXPY vs local search (n ≤ d)", True, _devices(summary)))
    _save(fig, out_dir, "closed_form_objective_vs_beta")


def table_closed_form(summary: pd.DataFrame, out_dir: str) -> None:
    """Objectives, fits and penalties per (output, β)."""
    cols = [
        "output",
        "beta",
        "p_closed",
        "p_cvxpy",
        "p_gd_best",
        "closed_net_objective",
        "rel_diff_cvxpy",
        "fit_diff_cvxpy",
        "fit_diff_gd",
        "penalty_closed",
        "penalty_cvxpy",
        "neurons_closed",
        "solver_status",
    ]
    df = summary[[c for c in cols if c in summary.columns]].sort_values(["output", "beta"])
    _write_table(
        df,
        out_dir,
        "closed_form_table",
        "Synthetic data, n ≤ d. Closed-form optimum vs CVXPY optimum vs best local search; fits f(X) and "
        "penalties compared because weights are unique only up to symmetries (settings ours).",
    )


# --------------------------------------------------------------------------------------------------
# experiment 3
# --------------------------------------------------------------------------------------------------


def plot_whitening(summary: pd.DataFrame, out_dir: str) -> None:
    """Grouped bars: convex optimum, trained BN net, plain ReLU net per data transform."""
    s = summary.set_index("transform")
    order = [t for t in ("identity", "whitened", "random_linear", "scaled") if t in s.index] + [
        t for t in s.index if t not in ("identity", "whitened", "random_linear", "scaled")
    ]
    s = s.loc[order]
    x = np.arange(len(order))
    w = 0.27
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.bar(x - w, s["p_star"], w, color=METHOD_COLORS["convex"], label="Convex (exact) optimum")
    ax.bar(x, s["bn_best"], w, color=METHOD_COLORS["adam"], label="BN network (Adam, best init)")
    ax.bar(x + w, s["relu_best"], w, color="#bcbd22", label="ReLU network without BN (Adam, best init)")
    ax.set_xticks(x, [t.replace("_", " ") for t in order])
    ax.set_xlabel("transform applied to X (invertible, same centred column space)")
    ax.set_ylabel("training objective")
    ax.legend()
    ax.set_title(_title("BN whitens the data: invariance to linear transforms of X", True, _devices(summary)))
    _save(fig, out_dir, "whitening_invariance_objectives")


def table_whitening(summary: pd.DataFrame, out_dir: str) -> None:
    """Objectives and relative changes vs the identity transform."""
    cols = [
        "transform",
        "cond_X",
        "p_star",
        "bn_best",
        "relu_best",
        "obj_change_convex",
        "obj_change_bn",
        "obj_change_relu",
        "fit_change_convex",
        "fit_change_bn",
        "fit_change_relu",
        "solver_status",
    ]
    _write_table(
        summary[[c for c in cols if c in summary.columns]],
        out_dir,
        "whitening_invariance_table",
        "Synthetic data. Objectives under invertible linear transforms of X and their relative change "
        "from the untransformed data (settings ours).",
    )


# --------------------------------------------------------------------------------------------------
# experiment 4
# --------------------------------------------------------------------------------------------------


def plot_implicit_bias(summary: pd.DataFrame, trace: pd.DataFrame, ds: str, out_dir: str) -> None:
    """Energy per singular direction: GD snapshots (colour = epoch) vs the convex solution; spectrum inset."""
    t = trace[trace["dataset"] == ds]
    en = t[t["record_kind"] == "energy"]
    fig, (ax, axs) = plt.subplots(1, 2, figsize=(9.6, 3.8), gridspec_kw={"width_ratios": [2.2, 1]})
    gd = en[en["method"] == "gd"]
    epochs = sorted(set(gd["epoch"].dropna()))
    cmap = plt.get_cmap("viridis")
    for i, e in enumerate(epochs):
        g = gd[gd["epoch"] == e].sort_values("index")
        ax.plot(
            g["index"],
            g["energy"],
            color=cmap(i / max(1, len(epochs) - 1) * 0.9),
            lw=1.1,
            label=f"GD (BN network), epoch {int(e)}",
        )
    cv = en[en["method"] == "convex"].sort_values("index")
    if len(cv):
        ax.plot(cv["index"], cv["energy"], color="k", lw=1.6, ls="--", label="Convex (exact)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("singular direction index k (descending σ_k)")
    ax.set_ylabel("share of first-layer energy")
    ax.legend(fontsize=7)
    sp = t[(t["record_kind"] == "spectrum")].drop_duplicates("index").sort_values("index")
    axs.plot(sp["index"], sp["sigma"], color="#7f7f7f")
    axs.set_xscale("log")
    axs.set_yscale("log")
    axs.set_xlabel("index k")
    axs.set_ylabel("singular value σ_k of centred X")
    s = summary[summary["dataset"] == ds]
    fig.suptitle(_title(f"Implicit bias of GD on {_dataset_label(ds)}", _any_true(s.get("synthetic")), _devices(s)))
    _save(fig, out_dir, f"implicit_bias_energy_{ds}")


def table_implicit_bias(summary: pd.DataFrame, out_dir: str, stem: str = "implicit_bias_table") -> None:
    """Top-fraction energy and accuracies of GD vs convex per dataset."""
    cols = [
        "dataset",
        "method",
        "n",
        "rank",
        "beta",
        "beta_ratio",
        "beta_max",
        "top_fraction",
        "top_energy_init",
        "top_energy",
        "train_acc",
        "test_acc",
        "objective",
        "device",
    ]
    df = summary[[c for c in cols if c in summary.columns]].sort_values(["dataset", "method"])
    df = df.assign(method=df["method"].map(lambda m: METHOD_LABELS.get(m, m)))
    _write_table(
        df,
        out_dir,
        stem,
        "Share of the first-layer energy in the top singular directions: GD-trained BN network (at "
        "initialisation and after training) vs the exact convex solution (settings ours).",
    )


# --------------------------------------------------------------------------------------------------
# experiment 5
# --------------------------------------------------------------------------------------------------


def _k_numeric(s: pd.DataFrame) -> pd.Series:
    """Numeric k column (rank for 'full')."""
    return pd.to_numeric(s["k"], errors="coerce")


def plot_truncation(summary: pd.DataFrame, ds: str, out_dir: str) -> None:
    """Train/val/test accuracy of the convex model vs k, SGD reference lines, validation-chosen k marked."""
    s = summary[summary["dataset"] == ds]
    cv = s[s["method"] == "convex"].assign(kn=lambda d: _k_numeric(d)).sort_values("kn")
    sg = s[s["method"] == "sgd"]
    fig, ax = plt.subplots()
    for col, lab, mk in (("train_acc", "train", "o-"), ("val_acc", "validation", "s-"), ("test_acc", "test", "^-")):
        if col in cv.columns and cv[col].notna().any():
            ax.plot(
                cv["kn"],
                100 * cv[col],
                mk,
                color=METHOD_COLORS["convex_truncated"],
                alpha={"train_acc": 0.45, "val_acc": 0.7, "test_acc": 1.0}[col],
                label=f"Convex (truncated), {lab}",
            )
    if len(sg):
        ax.axhline(100 * sg["test_acc"].iloc[0], color=METHOD_COLORS["sgd"], ls="--", label="SGD (BN network), test")
        ax.axhline(100 * sg["train_acc"].iloc[0], color=METHOD_COLORS["sgd"], ls=":", label="SGD (BN network), train")
    if "val_acc" in cv.columns and cv["val_acc"].notna().any():
        best = select_on_validation(cv.to_dict("records"), "kn")
        ax.axvline(best["kn"], color="#7f7f7f", lw=0.8)
        ax.annotate(
            f"k chosen on validation = {int(best['kn'])}",
            (best["kn"], ax.get_ylim()[0]),
            xytext=(4, 6),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("truncation k (retained singular directions; largest = full whitening)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title(_title(f"Truncated whitening on {_dataset_label(ds)}", _any_true(s.get("synthetic")), _devices(s)))
    _save(fig, out_dir, f"truncation_accuracy_vs_k_{ds}")


def table_truncation(summary: pd.DataFrame, out_dir: str, stem: str = "truncation_table") -> None:
    """Per dataset: every k (accuracies) with the validation choice flagged, plus the SGD reference."""
    rows = []
    for ds, s in summary.groupby("dataset"):
        # requested k at or above the rank all give the full whitening: one row for that k
        cv = s[s["method"] == "convex"].assign(kn=lambda d: _k_numeric(d)).sort_values("kn").drop_duplicates("kn")
        best_k = select_on_validation(cv.to_dict("records"), "kn")["kn"] if cv["val_acc"].notna().any() else None
        for _, r in cv.iterrows():
            rows.append(
                {
                    "dataset": ds,
                    "method": "Convex (truncated)",
                    "k": int(r["kn"]),
                    "setting chosen on validation": f"β/β_max={r.get('beta_ratio')}",
                    "k chosen on validation": "yes" if r["kn"] == best_k else "",
                    "train acc": r["train_acc"],
                    "val acc": r["val_acc"],
                    "test acc": r["test_acc"],
                    "solver status": r.get("solver_status"),
                    "certified grid points": f"{_int_or(r.get('grid_certified'))}/{_int_or(r.get('grid_points'))}",
                    "uncertified": r.get("uncertified"),
                }
            )
        for _, r in s[s["method"] == "sgd"].iterrows():
            rows.append(
                {
                    "dataset": ds,
                    "method": METHOD_LABELS["sgd"],
                    "k": None,
                    "setting chosen on validation": _chosen_setting(s[s["method"] == "sgd"], "sgd"),
                    "k chosen on validation": "",
                    "train acc": r["train_acc"],
                    "val acc": r.get("val_acc"),
                    "test acc": r["test_acc"],
                    "solver status": None,
                    "certified grid points": "",
                    "uncertified": "",
                }
            )
    _write_table(
        pd.DataFrame(rows),
        out_dir,
        stem,
        "Accuracy of the convex model with whitening truncated to k directions, β/β_max chosen per k "
        "and k chosen on the validation split, never on the test set (settings ours).",
    )


# --------------------------------------------------------------------------------------------------
# experiment 6
# --------------------------------------------------------------------------------------------------


def plot_main(summary: pd.DataFrame, trace: pd.DataFrame, ds: str, xaxis: str, out_dir: str) -> None:
    """Test accuracy vs epoch or wall-clock seconds: mean ± std over seeds per method."""
    t = trace[(trace["dataset"] == ds) & trace["test_acc"].notna()]
    s = summary[summary["dataset"] == ds]
    col = "epoch" if xaxis == "epoch" else "seconds"
    fig, ax = plt.subplots()
    for method in ("sgd", "convex_full", "convex_truncated"):
        tm = t[t["method"] == method]
        if tm.empty:
            continue
        curves = [g.sort_values(col) for _, g in tm.groupby("seed")]
        for i, g in enumerate(curves):
            ax.plot(
                g[col] if xaxis == "time" else g[col],
                100 * g["test_acc"],
                color=METHOD_COLORS[method],
                alpha=0.85,
                lw=1.2,
                label=METHOD_LABELS[method] + (f" ({len(curves)} seeds)" if i == 0 else "") if i == 0 else None,
            )
    if xaxis == "epoch":
        ax.set_xlabel("epoch (SGD: passes over the data; convex: full-batch solver iterations)")
        ax.set_xscale("symlog", linthresh=1)
    else:
        ax.set_xlabel("wall-clock time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title(
        _title(
            f"{_dataset_label(ds)}: test accuracy vs {'epoch' if xaxis == 'epoch' else 'time'}",
            _any_true(s.get("synthetic")),
            _devices(s),
        )
    )
    _save(fig, out_dir, f"main_test_accuracy_vs_{xaxis}_{ds}")


def _pm(v: pd.Series, scale: float = 100.0) -> str:
    """'mean ± std' of a series (percent by default)."""
    v = v.dropna().astype(float) * scale
    if v.empty:
        return "n/a"
    return f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2f}"


def _int_or(v: Any, missing: str = "n/a") -> str:
    """An integer-valued cell as text ('3', not '3.0'); `missing` for None/NaN."""
    return missing if v is None or (isinstance(v, float) and np.isnan(v)) else str(int(float(v)))


def _chosen_setting(g: pd.DataFrame, method: str) -> str:
    """The validation-chosen settings of one method over seeds, in words."""
    if method == "sgd":
        return "; ".join(
            sorted(
                {
                    f"β/n={r.beta_per_sample:g}, lr×{r.lr_factor:g}, {int(r.epochs)} ep"
                    for r in g.itertuples()
                    if pd.notna(getattr(r, "beta_per_sample", None))
                }
            )
        )
    ks = _col(g, "k")
    return "; ".join(
        sorted(
            {
                f"k={'full' if pd.isna(k) else int(k)}, β/β_max={b:g}"
                for k, b in zip(ks, _col(g, "beta_ratio"))
                if pd.notna(b)
            }
        )
    )


def table_main(summary: pd.DataFrame, out_dir: str, stem: str = "main_accuracy_table") -> None:
    """Test accuracy of each method's validation choice, mean ± std over seeds, with its grid size and time."""
    rows = []
    for (ds, method), g in summary.groupby(["dataset", "method"], sort=False):
        if method == "convex_P":
            continue  # accuracy against P: the knobs table
        cert = _col(g, "grid_certified")
        rows.append(
            {
                "dataset": _dataset_label(ds),
                "method": METHOD_LABELS.get(method, method),
                "seeds": len(g),
                "test acc (%)": _pm(g["test_acc"]),
                "val acc (%)": _pm(_col(g, "val_acc")),
                "train acc (%)": _pm(g["train_acc"]),
                "chosen on validation": _chosen_setting(g, method),
                "grid points per seed": _pm(_col(g, "grid_points"), 1.0),
                "certified grid points": ""
                if method == "sgd"
                else f"{int(cert.sum())}/{int(_col(g, 'grid_points').sum())}",
                "grid time (s)": _pm(_col(g, "grid_seconds"), 1.0),
                "device": _devices(g) or "",
            }
        )
    _write_table(
        pd.DataFrame(rows),
        out_dir,
        stem,
        "Test accuracy (mean ± std over seeds) of each method's setting chosen on the validation split "
        "from its grid (SGD: β, learning rate, epochs; convex: β/β_max, k), evaluated once on test. "
        "Every grid point is in the grid table (settings ours).",
    )


def table_grid(grid: pd.DataFrame, out_dir: str, stem: str, experiment: str) -> None:
    """Every grid point of every job: its setting, validation and test accuracy, certificate, and the choice."""
    cols = {
        "method": "method",
        "seed": "seed",
        "k": "k",
        "P": "P",
        "beta_ratio": "β/β_max",
        "beta_max": "β_max",
        "beta_per_sample": "β/n",
        "lr_factor": "lr factor",
        "epochs": "epochs",
        "beta": "β",
        "val_acc": "val acc",
        "test_acc": "test acc",
        "test_acc_generator": "test acc (generator gates)",
        "solver_status": "solver status",
        "solver_gap": "gap",
        "seconds": "time (s)",
        "selected": "chosen",
    }
    if grid.empty:
        df = pd.DataFrame({"note": ["no grid recorded"]})
    else:
        g = grid[[c for c in cols if c in grid.columns]].copy()
        if "selected" in g.columns:
            g["selected"] = g["selected"].astype(str).isin(["True", "true", "1", "1.0"]).map({True: "yes", False: ""})
        df = g.rename(columns=cols)
    _write_table(
        df,
        out_dir,
        stem,
        f"{experiment}: every grid point (validation and test accuracy of each setting); 'chosen' marks the "
        "setting picked on validation accuracy by the one selection rule, ties to the stronger "
        "regularisation (settings ours).",
    )


def table_knobs(summary: pd.DataFrame, out_dir: str, stem: str) -> None:
    """Test accuracy against the number of arrangements P, and with both test-time predictors (A4)."""
    rows = []
    cv = summary[summary["method"].isin(["convex_truncated", "convex_P"]) & _col(summary, "P").notna()]
    first = _col(cv, "seed").min() if len(cv) else None
    cv = cv[_col(cv, "seed") == first]
    for _, r in (cv.sort_values("P") if len(cv) else cv).iterrows():
        chosen = f"k={_int_or(r.get('k'), 'full')}, β/β_max={r.get('beta_ratio'):g}"
        rows.append(
            {
                "knob": "arrangements P",
                "method": METHOD_LABELS["convex_truncated"],
                "value": int(r["P"]),
                "seeds": 1,
                "chosen on validation": chosen,
                "test acc (%)": f"{100 * float(r['test_acc']):.2f}",
                "certified": f"{_int_or(r.get('grid_certified'))}/{_int_or(r.get('grid_points'))}",
            }
        )
    for method in ("convex_full", "convex_truncated"):
        g = summary[summary["method"] == method]
        for pred in ("network", "generator"):
            if g.empty or f"test_acc_{pred}" not in g.columns:
                continue
            rows.append(
                {
                    "knob": "test-time predictor (A4)",
                    "method": METHOD_LABELS[method],
                    "value": pred,
                    "seeds": len(g),
                    "chosen on validation": _chosen_setting(g, method),
                    "test acc (%)": _pm(_col(g, f"test_acc_{pred}")),
                    "certified": "",
                }
            )
    _write_table(
        pd.DataFrame(rows or [{"knob": "none measured"}]),
        out_dir,
        stem,
        "Other knobs: test accuracy of the truncated convex model selected on validation at each number of "
        "sampled arrangements P (first seed), and of each convex model's chosen solution predicted by the "
        "reconstructed BN network or by the generator gates (A4) (settings ours).",
    )


# --------------------------------------------------------------------------------------------------
# experiment 7
# --------------------------------------------------------------------------------------------------


def plot_variants(summary: pd.DataFrame, out_dir: str) -> None:
    """Best non-convex objective vs convex optimum per variant and instance (ratio, 1 = equal)."""
    s = summary.sort_values(["variant", "instance"])
    fig, ax = plt.subplots()
    labels = [f"{v.replace('_', ' ')} #{int(i)}" for v, i in zip(s["variant"], s["instance"])]
    ratio = s["best_nonconvex"].astype(float) / s["p_star"].astype(float)
    colors = [METHOD_COLORS["convex_truncated"] if "vector" in v else METHOD_COLORS["adam"] for v in s["variant"]]
    ax.bar(np.arange(len(s)), ratio, color=colors)
    ax.axhline(1.0, color="k", ls="--", label="convex optimum (ratio 1)")
    ax.set_xticks(np.arange(len(s)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("best non-convex objective / convex optimum")
    ax.set_xlabel("variant and random instance")
    lo = float(np.nanmin(ratio)) if len(ratio) else 1.0
    ax.set_ylim(min(0.95, lo - 0.02), None)
    ax.legend()
    ax.set_title(_title("Variants: local search vs convex optimum", True, _devices(summary)))
    _save(fig, out_dir, "variants_objectives")


def table_variants(summary: pd.DataFrame, out_dir: str) -> None:
    """Convex optimum vs best non-convex objective per variant and instance."""
    cols = [
        "variant",
        "instance",
        "form",
        "n",
        "P",
        "p_star",
        "best_nonconvex",
        "rel_gap",
        "best_nonconvex_shared_neurons",
        "neurons",
        "inits",
        "solver_status",
    ]
    df = summary[[c for c in cols if c in summary.columns]].sort_values(["variant", "instance"])
    _write_table(
        df,
        out_dir,
        "variants_table",
        "Synthetic instances. Convex optimum vs best local-search objective of the non-convex network "
        "(rel_gap ≥ 0 expected for exact programs; vector output uses the decoupled form, A5) (settings ours).",
    )


# --------------------------------------------------------------------------------------------------


__all__ = ["METHOD_LABELS", "read_table", "style"]
