"""Write the path points of pipeline job files side by side (one CSV row per point), e.g. one job at two commits.

    .venv/bin/python benchmarks/job_points.py OLD/kfull_fashion_mnist.json NEW/kfull_fashion_mnist.json \
        --out benchmarks/results_kfull_job.csv

Columns: the commit that wrote the job (`provenance.git`), the job's `wall_seconds`, and per point its β
ratio, seconds, solver status, objective and validation / test accuracy (from the job's `grid`).
"""

from __future__ import annotations

import argparse
import csv
import json


def main() -> None:
    """Read the job files in order and write their points to --out."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs", nargs="+", help="job result files (results/<experiment>/jobs/<job>.json)")
    ap.add_argument("--out", required=True, help="CSV to write")
    a = ap.parse_args()
    cols = ["commit", "job_wall_seconds", "beta_ratio", "point_seconds", "status", "objective", "val_acc", "test_acc"]
    with open(a.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for path in a.jobs:
            with open(path) as jf:
                d = json.load(jf)
            for g in d["grid"]:
                w.writerow(
                    [d["provenance"]["git"][:7], f"{d['wall_seconds']:.1f}", g["beta_ratio"], f"{g['seconds']:.1f}"]
                    + [g.get("solver_status"), f"{g['objective']:.1f}", g.get("val_acc"), g.get("test_acc")]
                )


if __name__ == "__main__":
    main()
