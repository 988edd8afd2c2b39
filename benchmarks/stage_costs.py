"""Time and peak memory of every stage of a (possibly unfinished) pipeline run, read from its benchmark files.

    .venv/bin/python benchmarks/stage_costs.py --run /tmp/cif --configfile config/cifar10_generated.yaml \
        --out benchmarks/results_cifar10_generated.csv

`--run` is the run's folder (its `results/benchmarks/**.tsv` are Snakemake's `benchmark:` files: wall
seconds `s` and peak resident memory `max_rss` in MB). Every job the config plans is listed: measured when its
benchmark file exists, otherwise estimated as the mean of the measured jobs with the same id apart from the
seed suffix `_s<seed>` (in any experiment), otherwise "not measured". Convex jobs also show how many path
points were certified. (A finished run's RESULTS.md sums the same files per stage; this script adds one row
per job and the estimates an unfinished run needs.) Prints a Markdown table with totals (job-minutes measured,
estimated, and the wall time on `--cores` cores if the jobs packed perfectly) and writes the rows to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path
from statistics import mean
from typing import Any

import yaml

from convexbn.results_md import benchmark_stats

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["stage", "name", "source", "seconds", "max_rss_mb", "certified_points", "status"]


def merged_config(files: list[str]) -> dict[str, Any]:
    """config/config.yaml with the given overlays merged by Snakemake's own rule, schema defaults filled."""
    from snakemake.utils import update_config, validate

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for f in files:
        update_config(cfg, yaml.safe_load((REPO / f).read_text()))
    validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return cfg


def read_benchmark(path: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one Snakemake benchmark file, as RESULTS.md reads them."""
    stats = benchmark_stats([str(path)])
    if stats is None:
        return float("nan"), float("nan")
    return stats["seconds"], stats["max_rss_mb"]


def convex_summary(job_json: Path) -> tuple[str, str]:
    """('certified/points', status) of a convex job's path; ('', status) for other jobs."""
    if not job_json.exists():
        return "", "no job file"
    d = json.loads(job_json.read_text())
    grid = d.get("grid") or []
    statuses = [g.get("solver_status") for g in grid if isinstance(g, dict) and "solver_status" in g]
    if not statuses:
        return "", "finished"
    return f"{sum(s == 'optimal' for s in statuses)}/{len(statuses)}", "finished"


def rows_of(run: Path, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Measured stage rows (every benchmark file) and planned job rows (measured, estimated or not measured)."""
    from convexbn.experiments import grid

    bench = run / "results" / "benchmarks"
    rows: list[dict[str, Any]] = []
    planned = grid.jobs(cfg)
    job_files = {bench / exp / f"{jid}.tsv" for exp, jid in planned}
    for tsv in sorted(bench.glob("*/*.tsv")):
        if tsv in job_files:
            continue
        s, rss = read_benchmark(tsv)
        rows.append({"stage": tsv.parent.name, "name": tsv.stem, "source": "measured", "seconds": s, "max_rss_mb": rss})
    measured: dict[tuple[str, str], float] = {}
    for exp, jid in planned:
        tsv = bench / exp / f"{jid}.tsv"
        if tsv.exists():
            s, rss = read_benchmark(tsv)
            cert, status = convex_summary(run / "results" / exp / "jobs" / f"{jid}.json")
            measured[(exp, jid)] = s
            rows.append(
                {
                    "stage": exp,
                    "name": jid,
                    "source": "measured",
                    "seconds": s,
                    "max_rss_mb": rss,
                    "certified_points": cert,
                    "status": status,
                }
            )
    for exp, jid in planned:
        if (exp, jid) not in measured:
            rows.append(estimate(exp, jid, [(_base(j), s) for (_, j), s in measured.items()]))
    return rows + seed_stage_estimates(bench, cfg)


def _base(job_id: str) -> str:
    """A job id without its seed suffix: the jobs that differ only in the seed share it."""
    return re.sub(r"_s\d+$", "", job_id)


def estimate(exp: str, jid: str, measured: list[tuple[str, float]]) -> dict[str, Any]:
    """Row of an unmeasured job: mean of the measured jobs with its base id (any experiment: SGD grids match)."""
    like = [s for base, s in measured if base == _base(jid)]
    src = "estimated" if like else "not measured"
    nan = float("nan")
    secs = mean(like) if like else nan
    return {"stage": exp, "name": jid, "source": src, "seconds": secs, "max_rss_mb": nan, "status": "not run"}


def seed_stage_estimates(bench: Path, cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the per-seed prepare / whiten steps not yet run, estimated from one seed that ran."""
    seeds = sorted(set(cfg["experiments"].get("main_comparison", {}).get("seeds", [])))
    rows = []
    for stage in ("prepare", "whiten"):
        ran = {f.stem.rsplit("_seed", 1)[0]: f for f in sorted(bench.glob(f"{stage}/*_seed*.tsv"))}
        for ds, done in ran.items():  # one seed that ran is the estimate for every missing one
            for s in seeds:
                if not (bench / stage / f"{ds}_seed{s}.tsv").exists():
                    secs = read_benchmark(done)[0]
                    row = {"stage": stage, "name": f"{ds}_seed{s}", "source": "estimated", "seconds": secs}
                    rows.append({**row, "max_rss_mb": float("nan"), "status": "not run"})
    return rows


def markdown(rows: list[dict[str, Any]], cores: int) -> str:
    """The rows as a Markdown table plus a totals line."""
    out = ["| stage | job / step | source | minutes | peak memory (MB) | certified points |", "|---" * 6 + "|"]
    for r in rows:
        rss = "" if r["max_rss_mb"] != r["max_rss_mb"] else f"{r['max_rss_mb']:.0f}"
        mins = "–" if r["seconds"] != r["seconds"] else f"{r['seconds'] / 60:.1f}"
        out.append(f"| {r['stage']} | {r['name']} | {r['source']} | {mins} | {rss} | {r.get('certified_points', '')} |")
    meas = sum(r["seconds"] for r in rows if r["source"] == "measured")
    est = sum(r["seconds"] for r in rows if r["source"] == "estimated")
    missing = sum(r["source"] == "not measured" for r in rows)
    peak = max((r["max_rss_mb"] for r in rows if r["max_rss_mb"] == r["max_rss_mb"]), default=float("nan"))
    out.append("")
    out.append(
        f"Measured {meas / 60:.1f} job-minutes; estimated {est / 60:.1f} more; {missing} job(s) not measured; "
        f"together ≥ {(meas + est) / 60 / cores:.0f} minutes on {cores} cores if the jobs packed perfectly; "
        f"largest peak memory {peak:.0f} MB."
    )
    return "\n".join(out)


def main() -> int:
    """Parse the options, read the run and print / write its stage costs."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path, help="folder the pipeline ran in (holds results/)")
    ap.add_argument("--configfile", nargs="*", default=[], help="overlays the run used, relative to the repository")
    ap.add_argument("--cores", type=int, default=2, help="cores for the wall-time bound (default 2)")
    ap.add_argument("--out", required=True, type=Path, help="CSV to write")
    a = ap.parse_args()
    if not (a.run / "results" / "benchmarks").is_dir():
        print(f"error: {a.run}/results/benchmarks does not exist; give the folder a pipeline ran in", file=sys.stderr)
        return 2
    bad = [f for f in a.configfile if not (REPO / f).is_file()]
    if bad:
        print(f"error: config file(s) {bad} not found under {REPO}; give paths like config/ci.yaml", file=sys.stderr)
        return 2
    rows = rows_of(a.run, merged_config(a.configfile))
    with open(a.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in COLUMNS})
    print(markdown(rows, a.cores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
