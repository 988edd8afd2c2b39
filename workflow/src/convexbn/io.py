"""Atomic result files and provenance (config, seed, versions, device, git revision, time)."""

from __future__ import annotations

import errno
import functools
import json
import os
import platform
import stat
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


class OutputPathError(ValueError):
    """An output path that must not be written (special file, an input, unwritable folder, bad name)."""


def _name_max(folder: Path) -> int:
    """Longest file name (bytes) the file system of `folder` accepts (255 when it cannot say)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder above `path` that exists (the current folder for a bare relative name)."""
    parent = path.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    return parent


def check_output_path(
    path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = (), what: str = "output"
) -> Path:
    """`path` if a result can safely be written there: absent or a regular file, not one of `inputs`,
    every component a valid name, the nearest existing folder above it writable; else OutputPathError."""
    out = Path(path)
    if not str(path):
        raise OutputPathError(f"{what} path is empty; give a file name such as result.json")
    limit = _name_max(_existing_ancestor(out))
    for part in out.parts:
        if len(os.fsencode(part)) > limit:
            raise OutputPathError(
                f"{what} name {part[:40]!r}... is {len(os.fsencode(part))} bytes, longer than "
                f"the file system's limit of {limit}; choose a shorter file name"
            )
    try:
        st = os.stat(out)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputPathError(f"{what} {str(path)!r}: a folder in the path is a file; fix the path") from None
    except OSError as exc:
        raise OutputPathError(
            f"{what} {str(path)!r} cannot be checked ({os.strerror(exc.errno or 0)}); choose another path"
        ) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputPathError(f"{what} {str(path)!r} is a directory; give a file name such as result.json")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputPathError(
            f"{what} {str(path)!r} is a special file (device, FIFO or socket), which would be "
            "replaced; give the path of a regular file"
        )
    for source in inputs:
        try:
            same = st is not None and os.path.samefile(out, source)
        except OSError:
            same = False
        if same or os.path.abspath(out) == os.path.abspath(source):
            raise OutputPathError(
                f"{what} {str(path)!r} is also an input ({str(source)!r}) and would be "
                "overwritten; write the result to another file"
            )
    folder = _existing_ancestor(out)
    if not folder.is_dir():
        raise OutputPathError(f"{what} {str(path)!r}: {str(folder)!r} is not a folder; fix the path")
    if not _writable(folder):
        raise OutputPathError(
            f"{what} {str(path)!r}: folder {str(folder)!r} is not writable; choose a folder "
            "you can write to or fix its permissions"
        )
    return out


def _writable(folder: Path) -> bool:
    """Whether a file can be created in `folder` (probed with a nameless temporary file: root passes
    every permission check, yet read-only mounts and pseudo file systems still refuse)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def physical_memory_bytes() -> int:
    """Physical memory of this machine in bytes (16 GiB when the system cannot say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return 16 << 30


def _umask() -> int:
    """The process's file-creation mask (from /proc on Linux, else by setting and restoring it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_writer(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[BinaryIO]:
    """Yield a binary temp file next to `path`; on a clean exit fsync it and rename it over `path`, else delete it.

    The file gets the mode a plain open() would give (0666 minus the umask), and an existing `path`
    that is not a regular file (device, FIFO, socket, folder) is never replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_special(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _refuse_special(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _refuse_special(path: Path) -> None:
    """Raise OutputPathError when `path` exists and is not a regular file (or a link to one)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return
        raise
    if not stat.S_ISREG(st.st_mode):
        raise OutputPathError(
            f"refusing to replace {str(path)!r}: it is not a regular file (a device, FIFO, "
            "socket or folder); write to a regular file instead"
        )


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
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _proc_value(path: str, key: str) -> str | None:
    """The value of the first 'key: value' line of a /proc file, or None."""
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.split(":")[0].strip() == key:
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


@functools.lru_cache(maxsize=1)
def machine_facts() -> dict[str, Any]:
    """CPU model, logical cores, memory (GiB) and GPUs of this machine (Linux /proc, nvidia-smi; None where unknown).

    Cached: the machine does not change within a process, and nvidia-smi takes a moment on GPU hosts.
    """
    mem = _proc_value("/proc/meminfo", "MemTotal")
    gpu = None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode == 0 and out.stdout.strip():
            gpu = "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu_model": _proc_value("/proc/cpuinfo", "model name") or platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(int(mem.split()[0]) / 2**20, 1) if mem else None,
        "gpu": gpu,
    }


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


def provenance(
    config: Any = None, seed: int | None = None, device: str | None = None, seconds: float | None = None
) -> dict[str, Any]:
    """Provenance block saved inside every result file."""
    return {
        "config": config,
        "seed": seed,
        "device": device,
        "wall_seconds": seconds,
        "versions": package_versions(),
        "git": git_revision(Path(__file__).resolve().parent),
        "host": platform.node(),
        **machine_facts(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
