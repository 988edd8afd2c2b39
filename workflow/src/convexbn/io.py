"""Atomic result files and provenance (config, seed, versions, device, git revision, time)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths to plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


@contextmanager
def atomic_writer(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Yield a binary temp file next to `path`; on a clean exit fsync it and rename it over `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to `path` via a temporary file in the same folder and an atomic rename."""
    with atomic_writer(path) as fh:
        fh.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (numpy values converted)."""
    atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def git_revision(cwd: str | os.PathLike | None = None) -> str | None:
    """The current git commit (with '-dirty' when the tree has changes), or None outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    """Versions of the numerical packages that shape results."""
    out: dict[str, str] = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "cvxpy", "torch", "clarabel", "mosek", "pandas"):
        try:
            mod = __import__(name)
            out[name] = str(getattr(mod, "__version__", getattr(mod, "Env", None) and "installed"))
        except Exception:  # noqa: BLE001 - absent optional packages are simply not listed
            continue
    from convexbn import __version__

    out["convexbn"] = __version__
    return out


def provenance(config: Any = None, seed: int | None = None, device: str | None = None,
               seconds: float | None = None) -> dict[str, Any]:
    """Provenance block saved inside every result file."""
    return {
        "config": config,
        "seed": seed,
        "device": device,
        "wall_seconds": seconds,
        "versions": package_versions(),
        "git": git_revision(Path(__file__).resolve().parent),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
