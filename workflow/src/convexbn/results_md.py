"""RESULTS.md, written by the pipeline: the claims scoreboard, every experiment table, and the run's
commit, date, machine, configuration and compute time, so the results text cannot go stale.

The facts are gathered by small functions (git, /proc, job JSONs, Snakemake benchmark files) and
rendered by the pure function `render`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from convexbn.claims import summary, text_col
from convexbn.io import machine_facts

#: Provenance keys describing the machine, when a job JSON records them.
MACHINE_KEYS: tuple[str, ...] = ("host", "cpu_model", "cpu_count", "memory_gib", "gpu", "device")


def git_state(cwd: str | os.PathLike | None = None) -> str:
    """'<HEAD commit>' plus ' (dirty: uncommitted changes)' when tracked files differ; 'unknown' without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return "unknown"
        # RESULTS.md itself is excluded: a committed copy rewritten by an earlier run is not a code change
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)RESULTS.md"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    flag = " (dirty: uncommitted changes)" if dirty.returncode == 0 and dirty.stdout.strip() else ""
    return head.stdout.strip() + flag


def local_machine() -> dict[str, str]:
    """CPU model, cores, memory and GPU of the machine running this, as text ('unknown' where not found)."""
    m = machine_facts()
    return {
        "cpu_model": m["cpu_model"] or "unknown",
        "cores": str(m["cpu_count"] or "unknown"),
        "memory": f"{m['memory_gib']} GiB" if m["memory_gib"] else "unknown",
        "gpu": m["gpu"] or "none found",
    }


def provenance_facts(docs: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Distinct values of the machine keys, commits and creation times over the jobs' provenance."""
    facts: dict[str, set[str]] = {k: set() for k in (*MACHINE_KEYS, "git", "created")}
    for doc in docs:
        prov = dict(doc.get("provenance") or {})
        prov.setdefault("device", doc.get("device"))
        for key in facts:
            if prov.get(key) not in (None, ""):
                facts[key].add(str(prov[key]))
    return {k: sorted(v) for k, v in facts.items()}


def benchmark_stats(paths: Iterable[str]) -> dict[str, float] | None:
    """Summed wall seconds ('s') and largest peak memory ('max_rss', MB) of the benchmark files that exist."""
    seconds, peak, found = 0.0, 0.0, False
    for p in paths:
        if Path(p).is_file():
            df = pd.read_csv(p, sep="\t")
            if "s" in df.columns and len(df):
                seconds += float(pd.to_numeric(df["s"], errors="coerce").fillna(0).sum())
                rss = pd.to_numeric(df.get("max_rss", pd.Series(dtype=float)), errors="coerce").max()
                peak = max(peak, float(rss) if rss == rss else 0.0)
                found = True
    return {"seconds": seconds, "max_rss_mb": peak} if found else None


TIME_COLUMNS = (
    "table",
    "jobs",
    "job time (min, sum)",
    "rule wall time (min, benchmark files)",
    "largest job peak memory (MB)",
)


def _job_count(s: pd.DataFrame) -> int:
    """Jobs behind a table's summary rows: one each, or `grid_jobs` for a row combining per-k jobs."""
    if "grid_jobs" not in s.columns:
        return len(s)
    return int(pd.to_numeric(s["grid_jobs"], errors="coerce").fillna(1).sum())


def compute_times(tables: Mapping[str, pd.DataFrame], bench: Mapping[str, dict[str, float] | None]) -> pd.DataFrame:
    """Per table and in total: jobs, job seconds (from the table), benchmark wall time (minutes), peak memory."""
    rows, total = [], {"jobs": 0, "job": 0.0, "wall": 0.0, "rss": 0.0}
    for stem, df in tables.items():
        s = summary(df)
        secs = float(pd.to_numeric(s["wall_seconds"], errors="coerce").sum()) if "wall_seconds" in s.columns else None
        b = bench.get(stem)
        jobs = _job_count(s)
        total["jobs"] += jobs
        total["job"] += secs or 0.0
        total["wall"] += b["seconds"] if b else 0.0
        total["rss"] = max(total["rss"], b["max_rss_mb"] if b else 0.0)
        rows.append(
            (
                stem,
                jobs,
                "n/a" if secs is None else f"{secs / 60:.1f}",
                "n/a" if b is None else f"{b['seconds'] / 60:.1f}",
                "n/a" if b is None else f"{b['max_rss_mb']:.0f}",
            )
        )
    rows.append(
        ("**total**", total["jobs"], f"{total['job'] / 60:.1f}", f"{total['wall'] / 60:.1f}", f"{total['rss']:.0f}")
    )
    return pd.DataFrame(rows, columns=list(TIME_COLUMNS))


STAGE_COLUMNS = (
    "stage",
    "steps (measured / planned)",
    "wall time (min, sum)",
    "longest step (min)",
    "largest peak memory (MB)",
)


def stage_times(stages: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Per pipeline stage: steps with a benchmark file, summed and longest wall minutes, largest peak memory."""
    rows, total = [], {"found": 0, "planned": 0, "wall": 0.0, "rss": 0.0}
    for stage, paths in stages.items():
        planned = list(dict.fromkeys(paths))  # a step listed twice is one step
        per_step = [st for p in planned if (st := benchmark_stats([p])) is not None]
        secs = sum(st["seconds"] for st in per_step)
        rss = max((st["max_rss_mb"] for st in per_step), default=0.0)
        total["found"] += len(per_step)
        total["planned"] += len(planned)
        total["wall"] += secs
        total["rss"] = max(total["rss"], rss)
        longest = max((st["seconds"] for st in per_step), default=None)
        rows.append(
            (
                stage,
                f"{len(per_step)} / {len(planned)}",
                f"{secs / 60:.1f}" if per_step else "n/a",
                "n/a" if longest is None else f"{longest / 60:.1f}",
                f"{rss:.0f}" if rss >= 1 else "n/a",  # a step too short for Snakemake to sample shows ~0 MB
            )
        )
    rows.append(
        (
            "**total**",
            f"{total['found']} / {total['planned']}",
            f"{total['wall'] / 60:.1f}",
            "",
            f"{total['rss']:.0f}",
        )
    )
    return pd.DataFrame(rows, columns=list(STAGE_COLUMNS))


def dataset_kinds(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every dataset in the tables with whether it is real or generated, and the tables using it."""
    seen: dict[str, dict[str, Any]] = {}
    for stem, df in tables.items():
        s = summary(df)
        names = text_col(s, "dataset").replace("", "(random instances)")
        synth = text_col(s, "synthetic").isin(["True", "true", "1", "1.0"])
        for name, gen in zip(names, synth, strict=True):
            entry = seen.setdefault(name, {"dataset": name, "generated": False, "tables": []})
            entry["generated"] |= bool(gen) or name == "(random instances)"
            if stem not in entry["tables"]:
                entry["tables"].append(stem)
    return pd.DataFrame(
        [
            {
                "dataset": e["dataset"],
                "data": "GENERATED (synthetic)" if e["generated"] else "real",
                "tables": ", ".join(e["tables"]),
            }
            for e in seen.values()
        ],
        columns=["dataset", "data", "tables"],
    )


#: Summary columns shown in RESULTS.md's experiment tables (in this order, when present and not all empty).
TABLE_COLUMNS: tuple[str, ...] = (
    "job",
    "dataset",
    "method",
    "variant",
    "transform",
    "output",
    "optimizer",
    "width",
    "instance",
    "seed",
    "k",
    "beta",
    "beta_ratio",
    "beta_per_sample",
    "lr_factor",
    "lr",
    "epochs",
    "P",
    "selected_by",
    "grid_points",
    "grid_certified",
    "uncertified",
    "status",
    "solver_status",
    "objective",
    "p_star",
    "p_closed",
    "p_cvxpy",
    "rel_diff_cvxpy",
    "best_final_objective",
    "best_nonconvex",
    "rel_gap",
    "rel_gap_min",
    "runs_below_p_star",
    "reconstruction_gap",
    "obj_change_convex",
    "obj_change_bn",
    "obj_change_relu",
    "top_energy_init",
    "top_energy",
    "train_acc",
    "val_acc",
    "test_acc",
    "neurons",
    "solver_gap",
    "wall_seconds",
)


def _fmt(value: Any) -> str:
    """A table cell: 4 significant digits for floats, '' for missing."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def experiment_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per job of an aggregated table, restricted to the columns a reader compares."""
    s = summary(df)
    keep = [c for c in TABLE_COLUMNS if c in s.columns and s[c].notna().any()]
    return s[keep].astype(object).map(_fmt).reset_index(drop=True)


def md_table(df: pd.DataFrame) -> str:
    """A plain Markdown table (pipes in cells escaped)."""
    cells = [[str(v).replace("|", "\\|") for v in r] for r in df.astype(object).where(df.notna(), "").values]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in cells)])


def _facts_line(values: Sequence[str]) -> str:
    """One or several recorded values as text ('not recorded' when none)."""
    return ", ".join(values) if values else "not recorded"


def render(
    *,
    scoreboard_md: str,
    missing: Mapping[str, str],
    tables: Mapping[str, pd.DataFrame],
    bench: Mapping[str, float | None],
    stages: pd.DataFrame | None = None,
    docs: Sequence[Mapping[str, Any]],
    configfiles: Sequence[str],
    commit: str,
    machine: Mapping[str, str],
    now: datetime,
) -> str:
    """The text of RESULTS.md from the gathered facts (pure: no file or process access)."""
    prov = provenance_facts(docs)
    created = prov["created"]
    job_commits = prov["git"]
    stamp = " + ".join(configfiles) or "unknown config"
    out = [
        f"# RESULTS of `{stamp}`",
        "",
        "Written by the pipeline (`snakemake` rule `results_md`, from `results/tables/` and the job JSONs); "
        "do not edit by hand: re-run the pipeline instead. Every setting is ours, not the paper's.",
        "",
        f"- **Config file(s), merged in this order:** {', '.join(f'`{c}`' for c in configfiles) or 'unknown'}",
        f"- **Commit rendering this file:** `{commit}`",
        f"- **Commit(s) the jobs ran at:** {_facts_line([f'`{c}`' for c in job_commits])}",
        f"- **Jobs ran:** {created[0] + ' to ' + created[-1] if created else 'not recorded'}; "
        f"rendered {now.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- **Machine (jobs' provenance):** host {_facts_line(prov['host'])}; "
        f"cores {_facts_line(prov['cpu_count'])}; "
        f"device {_facts_line(prov['device'])}; CPU model {_facts_line(prov['cpu_model'])}; "
        f"memory (GiB) {_facts_line(prov['memory_gib'])}; GPU {_facts_line(prov['gpu'])}",
        f"- **Machine rendering this file:** {machine.get('cpu_model', 'unknown')}, {machine.get('cores', '?')} "
        f"cores, {machine.get('memory', 'unknown')} memory, GPU: {machine.get('gpu', 'unknown')}",
        "",
    ]
    if len(job_commits) > 1:
        out += [
            "**Warning:** the jobs ran at more than one commit; re-run from a clean state for one-commit results.",
            "",
        ]
    out += ["## Datasets", "", md_table(dataset_kinds(tables)), ""]
    if missing:
        out += ["Tables not produced: " + "; ".join(f"`{k}` ({v})" for k, v in missing.items()) + ".", ""]
    out += [
        "## Claims scoreboard",
        "",
        scoreboard_md.strip(),
        "",
        "## Compute time per table",
        "",
        md_table(compute_times(tables, bench)),
        "",
        "Job time is the sum of the jobs' own `wall_seconds`; rule wall time sums the Snakemake "
        "`benchmark:` files of the same jobs (each includes start-up).",
        "",
    ]
    if stages is not None:
        out += [
            "## Compute time and memory per stage",
            "",
            md_table(stages),
            "",
            "Every step of the run before this file, from its Snakemake `benchmark:` file (wall seconds and peak "
            "resident memory of the step's process tree): archive fetch or generation, dataset preparation, "
            "whitening, the jobs of each experiment, aggregation and the scoreboard. A planned step without a "
            "file has not run in this results folder. The figure rules run beside this file and are not listed.",
            "",
        ]
    out += [
        "## Experiment tables",
        "",
        "One row per job (`results/tables/<table>.csv`, summary rows; accuracies are fractions). The figures "
        "and the per-experiment tables with their captions are under `figures/` and in the report.",
        "",
    ]
    for stem, df in tables.items():
        out += [f"### {stem}", "", md_table(experiment_table(df)), ""]
    return "\n".join(out).rstrip() + "\n"


def now_utc() -> datetime:
    """The current time in UTC."""
    return datetime.now(timezone.utc)
