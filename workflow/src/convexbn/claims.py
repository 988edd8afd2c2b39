"""The claims scoreboard: one row per claim of the paper, computed from the aggregated tables only.

Every claim function takes the summary rows of one table (``None`` when the table was not produced)
and returns one scoreboard row: the statistic that tests the claim, its explicit criterion, the
measured value (± spread over seeds or instances), the dataset, the number of runs, whether the
compared settings were chosen on validation data, whether every convex solve was certified
(solver status ``optimal``) and the verdict. A verdict is never typed by hand: it follows from the
numbers and the criterion. Accuracy comparisons whose β (or other settings) were not chosen on
validation data, comparisons resting on uncertified convex solves, and comparisons whose chosen
setting lies at an end of its grid (`EDGE_KEYS`) are "not tested fairly": a single setting is not a
finding about the method.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from convexbn.experiments.selection import select_on_validation as choose

HOLDS = "holds"
FAILS = "does not hold"
NOT_RUN = "not run"
UNFAIR = "not tested fairly"
#: Every verdict a scoreboard row can carry.
VERDICTS: tuple[str, ...] = (HOLDS, FAILS, NOT_RUN, UNFAIR)

#: Columns of the scoreboard, in order.
COLUMNS: tuple[str, ...] = (
    "claim",
    "statistic",
    "criterion",
    "measured",
    "dataset",
    "runs",
    "validated",
    "certified",
    "verdict",
    "note",
)

#: Relative tolerance for "equal to the convex optimum" (objectives are relative to max(1, |p*|)).
OBJ_TOL = 1e-6
#: Smallest relative change of the trained plain-ReLU objective that counts as "not invariant".
RELU_CHANGE_MIN = 1e-2
#: Variants of the convex model the paper extends the equivalence to (variants table).
VARIANTS: tuple[str, ...] = ("bn_after_relu", "cnn", "deep", "vector_output")
#: Real-data experiments whose tables are per dataset: {experiment: claim key}.
REAL_DATA = {"implicit_bias": "implicit_bias", "truncation": "truncation", "main_comparison": "convex_vs_sgd"}
#: Columns holding β, in order of preference (a ratio of β_max when the experiment records one).
BETA_COLUMNS: tuple[str, ...] = ("beta_ratio", "beta")
#: Largest duality gap of a certified convex solve (status optimal as well).
CERTIFIED_GAP = 1e-4
#: Columns whose value is the selection rule of a setting (recorded by the experiment when it selects).
SELECTED_BY_COLUMNS: tuple[str, ...] = ("beta_selected_by", "selected_by")
#: The tuned settings of each compared method whose place in its grid is checked: a choice at an end
#: of its grid says a wider grid might choose better, so the comparison is not yet a finding.
EDGE_KEYS: dict[str, tuple[str, ...]] = {"sgd": ("beta_per_sample", "lr_factor", "epochs"), "convex": ("beta_ratio",)}
#: How the scoreboard names each checked setting.
EDGE_LABELS: dict[str, str] = {
    "beta_per_sample": "β per sample",
    "lr_factor": "lr factor",
    "epochs": "epochs",
    "beta_ratio": "β/β_max",
}

CLAIM_TEXT: dict[str, str] = {
    "equivalence_lower": "Exact equivalence: no non-convex run ends below the convex optimum",
    "equivalence_reconstruction": (
        "Exact equivalence: the reconstructed BN network's objective equals the convex optimum"
    ),
    "closed_form": "Closed form for n ≤ d equals the CVXPY optimum of (C2)",
    "whitening_convex": "BN whitens the data: the convex (BN) optimum is invariant to invertible transforms of X",
    "whitening_relu": "... but a plain ReLU network (no BN) is not invariant",
    "implicit_bias": "GD's implicit bias toward large singular directions",
    "truncation": "Truncated whitening (explicit regulariser) improves on full whitening",
    "convex_vs_sgd": "The convex model with the explicit regulariser matches or beats the SGD-trained BN network",
    "variant_bn_after_relu": "Variant: BN after ReLU, no local search below the convex optimum",
    "variant_cnn": "Variant: CNN with BN, no local search below the convex optimum",
    "variant_deep": "Variant: deep network (last two layers), no local search below the convex optimum",
    "variant_vector_output": (
        "Variant: vector output (decoupled per class, A5), no local search below the convex optimum"
    ),
}


def summary(df: pd.DataFrame | None) -> pd.DataFrame | None:
    """The per-job summary rows of an aggregated table (None stays None)."""
    if df is None:
        return None
    return df[df["record"] == "summary"] if "record" in df.columns else df


def col(df: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column of `df`, all-NaN when absent (so missing columns read as 'not measured')."""
    if name not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[name], errors="coerce")


def text_col(df: pd.DataFrame, name: str) -> pd.Series:
    """A text column of `df` ('' where absent or empty)."""
    if name not in df.columns:
        return pd.Series("", index=df.index, dtype=object)
    return df[name].astype(object).where(df[name].notna(), "").astype(str)


def pm(values: Iterable[float], scale: float = 1.0, fmt: str = ".3g", unit: str = "") -> str:
    """'mean ± std' of finite values (std over ≥ 2 values, ddof 1); 'n/a' when there are none."""
    v = np.array([float(x) * scale for x in values if x is not None and math.isfinite(float(x))])
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return f"{v[0]:{fmt}}{unit}"
    return f"{v.mean():{fmt}} ± {v.std(ddof=1):{fmt.lstrip('+')}}{unit}"


def row(
    key: str,
    *,
    statistic: str,
    criterion: str,
    measured: str = "–",
    dataset: str = "–",
    runs: int = 0,
    validated: str = "n/a",
    certified: str = "n/a",
    verdict: str = NOT_RUN,
    note: str = "",
) -> dict[str, Any]:
    """One scoreboard row (the claim text is looked up from its key)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    return {
        "claim": CLAIM_TEXT[key],
        "statistic": statistic,
        "criterion": criterion,
        "measured": measured,
        "dataset": dataset,
        "runs": int(runs),
        "validated": validated,
        "certified": certified,
        "verdict": verdict,
        "note": note,
        "key": key,
    }


def dataset_label(s: pd.DataFrame | None, name: str | None) -> str:
    """A dataset's name, marked '(generated)' when its rows say synthetic; synthetic instances otherwise."""
    if name is None:
        return "generated random instances"
    synthetic = (
        s is not None
        and not s.empty
        and "synthetic" in s.columns
        and s["synthetic"].astype(str).isin(["True", "true", "1", "1.0"]).any()
    )
    return f"{name} (generated)" if synthetic else name


def certification(s: pd.DataFrame) -> tuple[bool, str]:
    """(every convex solve certified, 'yes …' or 'no: …, which and why').

    A solve is certified when its status is optimal and its gap is at most CERTIFIED_GAP. Rows of a
    validated grid (grid_points, grid_certified, uncertified columns) count every grid point the choice
    was made from, and name the uncertified ones (k, β/β_max: status and gap).
    """
    if s.empty:
        return False, "no convex solve"
    if "grid_points" in s.columns and col(s, "grid_points").notna().all():
        total, good = int(col(s, "grid_points").sum()), int(col(s, "grid_certified").fillna(0).sum())
        if good == total:
            return True, f"yes ({good}/{total} grid solves optimal, gap ≤ {CERTIFIED_GAP:g})"
        which = "; ".join(f"seed {sd}: {u}" for sd, u in zip(seeds(s), text_col(s, "uncertified")) if u)
        return False, f"no ({good}/{total} grid solves certified; {which})"
    status = text_col(s, "solver_status").replace("", "missing")
    gap = col(s, "solver_gap")
    ok = (status == "optimal") & ~(gap > CERTIFIED_GAP)
    if ok.all():
        return True, f"yes ({len(status)}/{len(status)} optimal)"
    bad = status[~ok].where(status[~ok] != "optimal", f"optimal with gap > {CERTIFIED_GAP:g}")
    counts = ", ".join(f"{k} × {v}" for k, v in bad.value_counts().items())
    return False, f"no ({int(ok.sum())}/{len(status)} optimal; {counts})"


def _not_run(key: str, statistic: str, criterion: str, dataset: str, why: str) -> dict[str, Any]:
    """The row of a claim whose table was not produced."""
    return row(key, statistic=statistic, criterion=criterion, dataset=dataset, verdict=NOT_RUN, note=why)


# --------------------------------------------------------------------------------------------------
# exact equivalence, closed form, whitening (synthetic instances)
# --------------------------------------------------------------------------------------------------


def claim_equivalence_lower(table: pd.DataFrame | None, why: str = "table not produced") -> dict[str, Any]:
    """No GD/SGD/Adam run ends (or passes) below the certified convex optimum p*."""
    stat = "runs whose lowest objective is below p* (experiment tolerance); min (objective − p*)/max(1,|p*|)"
    crit = "0 runs below p*"
    s = summary(table)
    base = s[s["method"] != "convex"] if s is not None and "method" in s.columns else None
    if base is None or base.empty:
        return _not_run("equivalence_lower", stat, crit, dataset_label(s, None), why)
    conv = s[s["method"] == "convex"]
    runs = int(col(base, "inits").fillna(1).sum())
    below = int(col(base, "runs_below_p_star").fillna(0).sum())
    ok_cert, cert = certification(conv if not conv.empty else base.head(1))
    measured = f"{below} of {runs} runs below p*; min rel. gap {col(base, 'rel_gap_min').min():.3g}"
    verdict = UNFAIR if not ok_cert else (HOLDS if below == 0 else FAILS)
    note = "" if ok_cert else "p* is not certified: the comparison has no reference"
    return row(
        "equivalence_lower",
        statistic=stat,
        criterion=crit,
        measured=measured,
        dataset=dataset_label(s, None),
        runs=runs,
        certified=cert,
        verdict=verdict,
        note=note,
    )


def claim_equivalence_reconstruction(table: pd.DataFrame | None, why: str = "table not produced") -> dict[str, Any]:
    """The network rebuilt from the convex solution evaluates (forward pass) to p*."""
    stat = "|reconstructed network objective − p*| / max(1,|p*|)"
    crit = f"≤ {OBJ_TOL:g}"
    s = summary(table)
    conv = s[s["method"] == "convex"] if s is not None and "method" in s.columns else None
    if conv is None or conv.empty or col(conv, "reconstruction_gap").isna().all():
        return _not_run("equivalence_reconstruction", stat, crit, dataset_label(s, None), why)
    gaps = col(conv, "reconstruction_gap").abs().dropna()
    ok_cert, cert = certification(conv)
    worst = float(gaps.max())
    verdict = UNFAIR if not ok_cert else (HOLDS if worst <= OBJ_TOL else FAILS)
    return row(
        "equivalence_reconstruction",
        statistic=stat,
        criterion=crit,
        measured=f"{worst:.2g}",
        dataset=dataset_label(s, None),
        runs=len(gaps),
        certified=cert,
        verdict=verdict,
        note="" if ok_cert else "p* is not certified",
    )


def claim_closed_form(table: pd.DataFrame | None, why: str = "table not produced") -> dict[str, Any]:
    """The closed-form optimum for n ≤ d equals the conic solver's optimum of (C2)."""
    stat = "max over β and outputs of |p_closed − p_CVXPY| / max(1,|p_CVXPY|)"
    crit = f"≤ {OBJ_TOL:g}, every instance with n ≤ d"
    s = summary(table)
    if s is None or s.empty or col(s, "rel_diff_cvxpy").isna().all():
        return _not_run("closed_form", stat, crit, dataset_label(s, None), why)
    diffs = col(s, "rel_diff_cvxpy").abs()
    n_le_d = bool((col(s, "n") <= col(s, "d")).all())
    ok_cert, cert = certification(s)
    worst = float(diffs.max())
    if not ok_cert:
        verdict, note = UNFAIR, "the CVXPY reference is not certified"
    elif not n_le_d:
        verdict, note = UNFAIR, "some instance has n > d: the closed form does not apply"
    else:
        verdict, note = (HOLDS if worst <= OBJ_TOL else FAILS), ""
    net = col(s, "closed_net_objective")
    if net.notna().any():
        net_gap = float(((net - col(s, "p_closed")).abs() / col(s, "p_closed").abs().clip(lower=1.0)).max())
        note = "; ".join(x for x in (note, f"closed-form BN network vs formula: {net_gap:.2g}") if x)
    return row(
        "closed_form",
        statistic=stat,
        criterion=crit,
        measured=f"{worst:.2g}",
        dataset=dataset_label(s, None),
        runs=len(s),
        certified=cert,
        verdict=verdict,
        note=note,
    )


def claim_whitening_convex(table: pd.DataFrame | None, why: str = "table not produced") -> dict[str, Any]:
    """The convex optimum does not change under invertible transforms of X (BN whitens the data)."""
    stat = "max over transforms of |p*(XA) − p*(X)| / max(1,|p*(X)|)"
    crit = f"≤ {OBJ_TOL:g}"
    s = summary(table)
    if s is None or s.empty or col(s, "obj_change_convex").isna().all():
        return _not_run("whitening_convex", stat, crit, dataset_label(s, None), why)
    worst = float(col(s, "obj_change_convex").max())
    ok_cert, cert = certification(s)
    verdict = UNFAIR if not ok_cert else (HOLDS if worst <= OBJ_TOL else FAILS)
    transforms = ", ".join(text_col(s, "transform"))
    return row(
        "whitening_convex",
        statistic=stat,
        criterion=crit,
        measured=f"{worst:.2g}",
        dataset=dataset_label(s, None),
        runs=len(s),
        certified=cert,
        verdict=verdict,
        note=f"transforms: {transforms}; trained BN network changes ≤ {col(s, 'obj_change_bn').max():.2g}",
    )


def claim_whitening_relu(table: pd.DataFrame | None, why: str = "table not produced") -> dict[str, Any]:
    """A trained plain ReLU network's objective does change under the same transforms."""
    stat = "max over transforms of the relative change of the trained plain-ReLU objective"
    crit = f"≥ {RELU_CHANGE_MIN:g} and > the trained BN network's max change"
    s = summary(table)
    if s is None or s.empty or col(s, "obj_change_relu").isna().all():
        return _not_run("whitening_relu", stat, crit, dataset_label(s, None), why)
    relu, bn = float(col(s, "obj_change_relu").max()), float(col(s, "obj_change_bn").max())
    verdict = HOLDS if relu >= RELU_CHANGE_MIN and (math.isnan(bn) or relu > bn) else FAILS
    return row(
        "whitening_relu",
        statistic=stat,
        criterion=crit,
        measured=f"ReLU {relu:.3g} vs BN {bn:.3g}",
        dataset=dataset_label(s, None),
        runs=len(s),
        verdict=verdict,
        note="non-convex training: both changes include optimisation error",
    )


# --------------------------------------------------------------------------------------------------
# real-data claims: selection on validation, fairness, certification
# --------------------------------------------------------------------------------------------------


def seeds(s: pd.DataFrame) -> pd.Series:
    """Seed of each row (0 when the table has a single seed and no seed column)."""
    return col(s, "seed").fillna(0).astype(int)


def select_on_validation(s: pd.DataFrame) -> pd.DataFrame:
    """Per seed, the row chosen by the experiments' one selection rule (best validation accuracy; ties to
    the stronger regularisation, then the smaller k); every row of a seed is a candidate."""
    if s.empty:
        return s
    s = s.assign(_seed=seeds(s))
    keep = []
    for _, g in s.groupby("_seed", sort=True):
        recs = [
            {"_i": i, "val_acc": v, "train_acc": t, "beta_ratio": b, "k": k}
            for i, v, t, b, k in zip(g.index, col(g, "val_acc"), col(g, "train_acc"), col(g, "beta_ratio"), col(g, "k"))
        ]
        keep.append(choose(recs, ("-beta_ratio", "k"))["_i"])
    return s.loc[keep].drop(columns=["_seed"])


def beta_validation(s: pd.DataFrame) -> tuple[bool, str]:
    """(β was chosen on validation data, how) for one method's candidate rows.

    Chosen on validation means: the experiment recorded a selection rule naming validation, or the
    table holds at least two β values per seed with validation accuracies to choose between.
    """
    for name in SELECTED_BY_COLUMNS:
        rule = text_col(s, name)
        if (rule != "").any():
            ok = bool(rule[rule != ""].str.contains("validation").all())
            return ok, f"β by {rule[rule != ''].iloc[0]}"
    beta_col = next((c for c in BETA_COLUMNS if c in s.columns and col(s, c).notna().any()), None)
    if beta_col is None:
        return False, "β not recorded"
    per_seed = s.assign(_seed=seeds(s)).groupby("_seed")[beta_col].nunique()
    has_val = col(s, "val_acc").notna().any()
    if int(per_seed.min()) >= 2 and has_val:
        return True, f"{beta_col} from {int(per_seed.min())} values on validation"
    return False, f"{beta_col} fixed at {col(s, beta_col).dropna().iloc[0]:.3g} (not validated)"


def grid_edges(table: pd.DataFrame, chosen: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """'<setting> at the grid's smallest|largest value v (m/n seeds)' for each chosen setting at an end of its grid.

    The grid of a chosen row is every grid row of its method and seed (every k, diverged trainings
    included); a setting with fewer than two values in that grid has no ends. A choice of 0 at the lower
    end (no weight decay) is inside: every checked setting is non-negative, so no grid can reach below it.
    """
    grid = table[table["record"] == "grid"] if "record" in table.columns else table.iloc[0:0]
    gseeds, gmethods = seeds(grid), text_col(grid, "method")
    counts: dict[tuple[str, str, float], int] = {}
    for seed, method, (_, r) in zip(seeds(chosen), text_col(chosen, "method"), chosen.iterrows()):
        g = grid[(gseeds == seed) & (gmethods == method)]
        for key in keys:
            values, v = col(g, key).dropna(), pd.to_numeric(r.get(key), errors="coerce")
            if values.nunique() < 2 or pd.isna(v):
                continue
            end = "smallest" if v <= values.min() and v != 0 else "largest" if v >= values.max() else ""
            if end:
                counts[(key, end, float(v))] = counts.get((key, end, float(v)), 0) + 1
    n = len(chosen)
    return [f"{EDGE_LABELS.get(k, k)} at the grid's {e} value {v:g} ({c}/{n} seeds)" for (k, e, v), c in counts.items()]


def _edges(table: pd.DataFrame, parts: Sequence[tuple[str, str, pd.DataFrame]]) -> tuple[bool, str]:
    """(every chosen setting inside its grid, 'chosen at a grid end: method setting …; …')."""
    hits = [f"{name} {e}" for name, kind, rows in parts for e in grid_edges(table, rows, EDGE_KEYS[kind])]
    return not hits, ("chosen at a grid end: " + "; ".join(hits)) if hits else ""


def _fairness(parts: Sequence[tuple[str, pd.DataFrame]]) -> tuple[bool, str]:
    """(every part's β chosen on validation, 'method: how; ...')."""
    results = [(name, *beta_validation(rows)) for name, rows in parts]
    return all(ok for _, ok, _ in results), "; ".join(f"{name}: {how}" for name, _, how in results)


def _paired(a: pd.DataFrame, b: pd.DataFrame, column: str) -> pd.Series:
    """a[column] − b[column] over the seeds both have (selected rows, one per seed)."""
    x = pd.Series(col(a, column).values, index=seeds(a).values)
    y = pd.Series(col(b, column).values, index=seeds(b).values)
    common = x.index.intersection(y.index)
    return (x.loc[common] - y.loc[common]).dropna()


def _accuracy_verdict(
    diff: pd.Series, validated: bool, certified: bool, threshold: float, strict: bool, interior: bool = True
) -> str:
    """Verdict of an accuracy comparison: unfair unless validated, certified and chosen inside every grid,
    else mean diff vs threshold."""
    if diff.empty:
        return NOT_RUN
    if not (validated and certified and interior):
        return UNFAIR
    mean = float(diff.mean())
    return HOLDS if (mean > threshold if strict else mean >= threshold) else FAILS


def _unfair_note(validated: bool, certified: bool, interior: bool = True) -> str:
    """Why an accuracy comparison is not a finding."""
    why = [
        w
        for w, bad in (
            ("settings not chosen on validation", not validated),
            ("uncertified convex solves (accuracy of a stopped iterate)", not certified),
            ("a setting chosen at an end of its grid (a wider grid may choose better)", not interior),
        )
        if bad
    ]
    return "; ".join(why)


def claim_implicit_bias(table: pd.DataFrame | None, dataset: str, why: str = "table not produced") -> dict[str, Any]:
    """GD concentrates first-layer energy on the top singular directions; the convex optimum does not."""
    stat = "share of path energy on the top singular directions: trained GD network vs convex optimum"
    crit = "GD share > convex share and > the uniform share (top fraction)"
    s = summary(table)
    if s is None or s.empty or "method" not in s.columns:
        return _not_run("implicit_bias", stat, crit, dataset_label(s, dataset), why)
    gd, cv = s[s["method"] == "gd"], s[s["method"] == "convex"]
    if gd.empty or cv.empty:
        return _not_run("implicit_bias", stat, crit, dataset_label(s, dataset), "needs both the GD and the convex job")
    g, c = col(gd, "top_energy"), col(cv, "top_energy")
    frac = float(col(s, "top_fraction").dropna().iloc[0]) if col(s, "top_fraction").notna().any() else math.nan
    ok_cert, cert = certification(cv)
    measured = (
        f"GD {pm(g, 100, '.1f', ' %')} (init {pm(col(gd, 'top_energy_init'), 100, '.1f', ' %')}), "
        f"convex {pm(c, 100, '.1f', ' %')}, top {frac:.0%} of directions"
    )
    holds = float(g.mean()) > float(c.mean()) and (math.isnan(frac) or float(g.mean()) > frac)
    verdict = UNFAIR if not ok_cert else (HOLDS if holds else FAILS)
    return row(
        "implicit_bias",
        statistic=stat,
        criterion=crit,
        measured=measured,
        dataset=dataset_label(s, dataset),
        runs=len(gd) + len(cv),
        certified=cert,
        verdict=verdict,
        note="" if ok_cert else "the convex reference is an uncertified iterate, not the optimum",
    )


def claim_truncation(table: pd.DataFrame | None, dataset: str, why: str = "table not produced") -> dict[str, Any]:
    """The validation-chosen truncated convex model has higher test accuracy than full whitening."""
    stat = "test accuracy: truncated (k < rank, chosen on validation) − full whitening, per seed"
    crit = "mean difference > 0 pp, settings chosen on validation, every convex solve certified"
    s = summary(table)
    if s is None or s.empty or "method" not in s.columns:
        return _not_run("truncation", stat, crit, dataset_label(s, dataset), why)
    cv = s[s["method"] == "convex"]
    full = (text_col(cv, "k_label") == "full") | (col(cv, "k") >= col(cv, "rank"))
    trunc_all, full_all = cv[~full], cv[full]
    if trunc_all.empty or full_all.empty:
        return _not_run(
            "truncation", stat, crit, dataset_label(s, dataset), "needs a truncated k and full whitening in the table"
        )
    trunc, fullw = select_on_validation(trunc_all), select_on_validation(full_all)
    diff = _paired(trunc, fullw, "test_acc") * 100
    validated, how = _fairness([("truncated", trunc_all), ("full", full_all)])
    k_ok = col(trunc_all, "val_acc").notna().all()
    validated = validated and bool(k_ok)
    how = f"k: {'on validation' if k_ok else 'no validation accuracy'}; {how}"
    ok_cert, cert = certification(pd.concat([trunc_all, full_all]))
    interior, edges = _edges(table, [("truncated", "convex", trunc), ("full", "convex", fullw)])
    how = "; ".join(x for x in (how, edges) if x)
    ks = ", ".join(str(int(k)) for k in sorted(set(col(trunc, "k").dropna())))
    measured = (
        f"Δ {pm(diff, 1, '+.1f', ' pp')} (truncated k = {ks}: {pm(col(trunc, 'test_acc'), 100, '.1f', ' %')}; "
        f"full: {pm(col(fullw, 'test_acc'), 100, '.1f', ' %')})"
    )
    verdict = _accuracy_verdict(diff, validated, ok_cert, 0.0, strict=True, interior=interior)
    return row(
        "truncation",
        statistic=stat,
        criterion=crit,
        measured=measured,
        dataset=dataset_label(s, dataset),
        runs=len(trunc_all) + len(full_all),
        validated=how,
        certified=cert,
        verdict=verdict,
        note=_unfair_note(validated, ok_cert, interior) if verdict == UNFAIR else "",
    )


def claim_convex_vs_sgd(table: pd.DataFrame | None, dataset: str, why: str = "table not produced") -> dict[str, Any]:
    """The truncated convex model's test accuracy matches or beats the SGD-trained BN network's."""
    stat = "test accuracy: convex truncated (explicit regulariser) − SGD-trained BN network, paired by seed"
    crit = "mean difference ≥ 0 pp, β of both chosen on validation, every convex solve certified"
    s = summary(table)
    if s is None or s.empty or "method" not in s.columns:
        return _not_run("convex_vs_sgd", stat, crit, dataset_label(s, dataset), why)
    cv_all, sgd_all = s[s["method"] == "convex_truncated"], s[s["method"] == "sgd"]
    if cv_all.empty or sgd_all.empty:
        return _not_run(
            "convex_vs_sgd",
            stat,
            crit,
            dataset_label(s, dataset),
            "needs the convex_truncated and sgd methods in the table",
        )
    cv, sgd = select_on_validation(cv_all), select_on_validation(sgd_all)
    diff = _paired(cv, sgd, "test_acc") * 100
    validated, how = _fairness([("convex", cv_all), ("SGD", sgd_all)])
    k_rule = text_col(cv_all, "k_selected_by")
    if (k_rule != "").any():
        k_ok = bool(k_rule.str.contains("validation").all())  # a row without a rule was not validated
        validated = validated and k_ok
        how = f"k by {k_rule[k_rule != ''].iloc[0]}{'' if k_ok else ' (not every seed)'}; {how}"
    ok_cert, cert = certification(cv)
    interior, edges = _edges(table, [("convex", "convex", cv), ("SGD", "sgd", sgd)])
    how = "; ".join(x for x in (how, edges) if x)
    measured = (
        f"Δ {pm(diff, 1, '+.1f', ' pp')} (convex {pm(col(cv, 'test_acc'), 100, '.1f', ' %')}, "
        f"SGD {pm(col(sgd, 'test_acc'), 100, '.1f', ' %')}; seeds: {len(diff)})"
    )
    verdict = _accuracy_verdict(diff, validated, ok_cert, 0.0, strict=False, interior=interior)
    full = s[s["method"] == "convex_full"]
    note = _unfair_note(validated, ok_cert, interior) if verdict == UNFAIR else ""
    if not full.empty:
        note = "; ".join(x for x in (note, f"full whitening: {pm(col(full, 'test_acc'), 100, '.1f', ' %')}") if x)
    return row(
        "convex_vs_sgd",
        statistic=stat,
        criterion=crit,
        measured=measured,
        dataset=dataset_label(s, dataset),
        runs=len(cv_all) + len(sgd_all),
        validated=how,
        certified=cert,
        verdict=verdict,
        note=note,
    )


def claim_variant(table: pd.DataFrame | None, variant: str, why: str = "table not produced") -> dict[str, Any]:
    """For one variant: no local search on the non-convex network ends below its convex optimum."""
    key = f"variant_{variant}"
    stat = "min over instances of (best local search − p*) / max(1,|p*|)"
    crit = f"≥ −{OBJ_TOL:g} (no run below p*)"
    s = summary(table)
    v = s[text_col(s, "variant") == variant] if s is not None else None
    if v is None or v.empty:
        return _not_run(key, stat, crit, dataset_label(s, None), why if s is None else "variant not in the table")
    gaps = col(v, "rel_gap")
    ok_cert, cert = certification(v)
    worst = float(gaps.min())
    verdict = UNFAIR if not ok_cert else (HOLDS if worst >= -OBJ_TOL else FAILS)
    note = "" if ok_cert else "p* not certified"
    shared = col(v, "best_nonconvex_shared_neurons")
    if shared.notna().any():
        rel = (shared - col(v, "p_star")) / col(v, "p_star").abs().clip(lower=1.0)
        note = "; ".join(
            x
            for x in (
                note,
                f"a free shared-neuron network reaches {pm(rel, 1, '.3g')} relative to the decoupled optimum (A5)",
            )
            if x
        )
    return row(
        key,
        statistic=stat,
        criterion=crit,
        measured=f"min {worst:.3g}; {pm(gaps, 1, '.3g')}",
        dataset=dataset_label(s, None),
        runs=len(v),
        certified=cert,
        verdict=verdict,
        note=note,
    )


# --------------------------------------------------------------------------------------------------
# the scoreboard
# --------------------------------------------------------------------------------------------------


def _why(stem: str, expected: Sequence[str], reasons: Mapping[str, str]) -> str:
    """Why a table is absent: the caller's reason, or 'experiment not enabled' when not expected."""
    if stem in reasons:
        return reasons[stem]
    return "table not produced" if stem in expected else "experiment not enabled in the config"


def real_datasets(experiment: str, expected: Sequence[str]) -> list[str]:
    """Datasets of a real-data experiment, from the expected table stems `{experiment}_{dataset}`."""
    return [t[len(experiment) + 1 :] for t in expected if t.startswith(f"{experiment}_")]


def scoreboard(
    tables: Mapping[str, pd.DataFrame], expected: Sequence[str], reasons: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Every claim row from the tables read (`tables`), the stems the config asks for and why some are absent."""
    reasons = dict(reasons or {})

    def get(stem: str) -> tuple[pd.DataFrame | None, str]:
        """(the table or None, why it is absent)."""
        return tables.get(stem), _why(stem, expected, reasons)

    rows = [
        claim_equivalence_lower(*get("equivalence")),
        claim_equivalence_reconstruction(*get("equivalence")),
        claim_closed_form(*get("closed_form")),
        claim_whitening_convex(*get("whitening_invariance")),
        claim_whitening_relu(*get("whitening_invariance")),
    ]
    funcs = {
        "implicit_bias": claim_implicit_bias,
        "truncation": claim_truncation,
        "main_comparison": claim_convex_vs_sgd,
    }
    for experiment, func in funcs.items():
        datasets = real_datasets(experiment, expected) or [None]
        for ds in datasets:
            if ds is None:
                rows.append(func(None, "–", "experiment not enabled in the config"))
            else:
                stem = f"{experiment}_{ds}"
                rows.append(func(tables.get(stem), ds, _why(stem, expected, reasons)))
    variants_table, why = get("variants")
    rows += [claim_variant(variants_table, v, why) for v in VARIANTS]
    return pd.DataFrame(rows, columns=[*COLUMNS, "key"])


def verdict_counts(board: pd.DataFrame) -> str:
    """'holds 5 · does not hold 1 · ...' over every verdict (zeros included)."""
    counts = board["verdict"].value_counts()
    return " · ".join(f"{v}: {int(counts.get(v, 0))}" for v in VERDICTS)


CAPTION = (
    "Claims scoreboard: one row per claim of the paper and dataset, computed by convexbn.claims from "
    "results/tables/ only. Verdicts: holds / does not hold (the criterion on the measured statistic), "
    "not run (no table: experiment disabled or data unavailable, e.g. CIFAR without an archive), not "
    "tested fairly (settings such as β not chosen on validation data, uncertified convex solves, or a "
    "setting chosen at an end of its grid: a setting is never a finding). Spreads are mean ± standard "
    "deviation over seeds or instances. All settings are ours, not the paper's."
)


def _md_cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(board: pd.DataFrame) -> str:
    """The scoreboard as a Markdown table with its caption and verdict counts."""
    cols = list(COLUMNS)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(r[c]) for c in cols) + " |" for _, r in board.iterrows()]
    return "\n".join(lines) + f"\n\nVerdicts — {verdict_counts(board)}.\n\n{CAPTION}\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
#: Column widths of the LaTeX scoreboard (wrapped text; fits a landscape page).
TEX_COLUMNS = "p{3cm}p{3cm}p{2.2cm}p{2.6cm}p{1.6cm}rp{2.4cm}p{1.8cm}p{1.4cm}p{2.4cm}"


def tex_escape(text: Any) -> str:
    """Text with LaTeX's special characters (and <, >, |) made literal."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def to_latex(board: pd.DataFrame) -> str:
    """The scoreboard as a LaTeX (booktabs) longtable with wrapped columns and its caption."""
    cells = board[list(COLUMNS)].astype(object).map(tex_escape)
    cells.columns = [tex_escape(c) for c in cells.columns]
    return cells.to_latex(
        index=False,
        escape=False,
        longtable=True,
        caption=tex_escape(CAPTION),
        label="tab:claims",
        column_format=TEX_COLUMNS,
    )


def read_tables(paths: Iterable[str]) -> dict[str, pd.DataFrame]:
    """{table stem: DataFrame} of aggregated CSV files."""
    from pathlib import Path

    return {Path(p).stem: pd.read_csv(p) for p in paths}


def write_scoreboard(board: pd.DataFrame, md_path: str, tex_path: str) -> None:
    """Write the scoreboard's Markdown and LaTeX files atomically."""
    from convexbn.io import atomic_write_bytes

    atomic_write_bytes(md_path, to_markdown(board).encode())
    atomic_write_bytes(tex_path, to_latex(board).encode())
