"""Compare two results/tables/ folders: same files, rows and columns, and equal values except timing.

    python workflow/scripts/compare_tables.py BEFORE/tables results/tables

Timing columns (`seconds`, `wall_seconds`, `solver_seconds`, `solve_seconds`, `seconds_all_k`)
are skipped; every other value must be equal exactly (NaN equal to NaN). Exit status 1 when
anything differs, so a refactoring can show that the CI config's tables did not change.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def is_timing(column: str) -> bool:
    """True for a wall-clock column (its value depends on the machine's load)."""
    return column.endswith("seconds") or column == "seconds_all_k"


def differing_columns(x: pd.DataFrame, y: pd.DataFrame) -> list[tuple[str, int]]:
    """(column, number of differing rows) of every non-timing column that differs between x and y."""
    out = []
    for c in x.columns:
        if is_timing(c):
            continue
        if c not in y.columns:
            out.append((c, len(x)))
            continue
        u, v = x[c], y[c]
        if pd.api.types.is_numeric_dtype(u) and pd.api.types.is_numeric_dtype(v):
            same = np.isclose(u.astype(float), v.astype(float), rtol=0, atol=0, equal_nan=True)
        else:
            same = ((u.astype(str) == v.astype(str)) | (u.isna() & v.isna())).to_numpy()
        if not same.all():
            out.append((c, int((~same).sum())))
    return out


def compare(before: Path, after: Path) -> int:
    """Print one line per table and return the number of tables that differ."""
    names = sorted(p.name for p in before.glob("*.csv"))
    if names != sorted(p.name for p in after.glob("*.csv")):
        print(f"different tables: {names} vs {sorted(p.name for p in after.glob('*.csv'))}")
        return 1
    bad = 0
    for name in names:
        x, y = pd.read_csv(before / name), pd.read_csv(after / name)
        diffs = differing_columns(x, y) if x.shape == y.shape and set(x.columns) == set(y.columns) else ["shape"]
        bad += bool(diffs)
        print(f"{name}: {x.shape[0]} rows x {x.shape[1]} columns, differing (timing skipped): {diffs or 'none'}")
    return bad


if __name__ == "__main__":
    if len(sys.argv) != 3 or not all(Path(a).is_dir() for a in sys.argv[1:]):
        print("compare_tables.py: give two existing folders: BEFORE_TABLES_DIR AFTER_TABLES_DIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if compare(Path(sys.argv[1]), Path(sys.argv[2])) else 0)
