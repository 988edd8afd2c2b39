"""Argument types and input checks of the `convexbn` command: every bad value becomes one CLIError line.

Kept apart from `convexbn.cli` (parsers and sub-commands) so each sub-command validates its inputs the
same way: numbers with bounds, data files read without pickle, output paths checked before any work.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import zipfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


class CLIError(Exception):
    """A problem with the user's input: reported as one line, exit code 2, no output written."""


def one_line(text: str) -> str:
    """Collapse a message onto one line."""
    return " ".join(str(text).split())


# ------------------------------------------------------------------------------------ argument types

#: Largest accepted --width: a width-m network on d features holds m·(d + C + 2) parameters plus
#: (n, m) activations, so 10^6 neurons already need gigabytes for modest n and d.
MAX_WIDTH = 1_000_000
#: Seeds must fit the 64-bit integers torch.manual_seed and numpy accept.
MAX_SEED = 2**63 - 1


def as_int(text: str) -> int:
    """An integer written plainly or in integral scientific notation ('1e3' → 1000); ValueError otherwise."""
    try:
        return int(text)
    except ValueError:
        val = float(text)  # ValueError for non-numbers
        if not math.isfinite(val) or not val.is_integer():
            raise ValueError(text) from None
        return int(val)


def number_type(
    label: str, cast: Callable[[str], float], low: float, strict: bool = False, high: float | None = None, why: str = ""
) -> Callable[[str], Any]:
    """argparse type: a finite number (`cast` = float or int) >= low (> low when `strict`), <= high."""
    what = "an integer" if cast is int else "a number"
    bound = f" {'>' if strict else '>='} {low:g}"
    convert = as_int if cast is int else float

    def parse(text: str) -> Any:
        """Convert `text`, or raise an ArgumentTypeError naming the option and the allowed range."""
        try:
            val = convert(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{label} {text!r} is not {what}; give e.g. {max(low, 0) + 1:g}") from None
        if not math.isfinite(val) or val < low or (strict and val == low):
            raise argparse.ArgumentTypeError(
                f"{label} must be {'a finite number' if cast is float else what}{bound}, got {text!r}"
            )
        if high is not None and val > high:
            raise argparse.ArgumentTypeError(
                f"{label} {text!r} exceeds the limit of {high:,}{why}; give at most {high:,}"
            )
        return val

    return parse


def nonneg_float(label: str) -> Callable[[str], Any]:
    """argparse type: a finite number >= 0."""
    return number_type(label, float, 0.0)


def pos_float(label: str) -> Callable[[str], Any]:
    """argparse type: a finite number > 0."""
    return number_type(label, float, 0.0, strict=True)


def pos_int(label: str, high: int | None = None, why: str = "") -> Callable[[str], Any]:
    """argparse type: an integer >= 1 (and <= high when given, `why` saying why)."""
    return number_type(label, int, 1, high=high, why=why)


def seed_type(label: str) -> Callable[[str], Any]:
    """argparse type: a seed, an integer in [0, 2^63 - 1] (what numpy and torch accept)."""
    return number_type(label, int, 0, high=MAX_SEED, why=" (seeds are 64-bit integers)")


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """`--opt -inf` → `--opt=-inf`: argparse reads a value that starts with '-' and is not a plain
    negative number ('-inf', '-nan', '-1e5') as an option, which would give a misleading error."""
    out: list[str] = []
    for arg in argv:
        prev = out[-1] if out else ""
        if prev.startswith("--") and prev != "--" and "=" not in prev and arg.startswith("-") and is_float(arg):
            out[-1] = f"{prev}={arg}"
        else:
            out.append(arg)
    return out


def is_float(text: str) -> bool:
    """Whether float() accepts `text`."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def arrangement_spec(text: str) -> str | int:
    """argparse type: 'exact' or a positive integer number of sampled patterns."""
    from convexbn.arrangements import parse_arrangement_spec

    try:
        return parse_arrangement_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--{exc}") from None


# ------------------------------------------------------------------------------------ inputs

_NPY_MAGIC = b"\x93NUMPY"


def check_data_path(path: str, hint: str) -> Path:
    """The data file, after checking that it exists, is a regular file and its name is valid."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CLIError(f"data file '{path}' does not exist; pass an existing .npz file ({hint})") from None
    except OSError as exc:
        shown = path if len(path) <= 80 else path[:60] + "..."
        raise CLIError(
            f"data file '{shown}' cannot be opened ({os.strerror(exc.errno or 0)}); "
            "pass the path of an existing .npz file"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise CLIError(f"data path '{path}' is not a file; pass an .npz file ({hint})")
    return Path(path)


def open_npz(p: Path, path: str, hint: str) -> Any:
    """np.load of `p` after checking its magic bytes and the sizes its zip directory declares."""
    with open(p, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if head.startswith(_NPY_MAGIC):
        raise CLIError(f"'{path}' holds a single array, not an .npz archive with X and y; {hint}")
    if not head.startswith(b"PK"):
        raise CLIError(f"'{path}' is not a NumPy .npz archive (a zip file); {hint}")
    from convexbn.io import physical_memory_bytes

    try:
        with zipfile.ZipFile(p) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, EOFError):
        raise CLIError(f"'{path}' is not a readable .npz archive (damaged zip file); {hint}") from None
    budget = physical_memory_bytes() // 4
    if declared > budget:
        raise CLIError(
            f"'{path}' declares {declared:,} bytes of arrays, more than a quarter of this machine's "
            f"memory ({budget:,} bytes); use a smaller data set or a larger machine"
        )
    try:
        return np.load(p, allow_pickle=False)
    except Exception:  # noqa: BLE001 - any unreadable file is a user error here
        raise CLIError(f"cannot read '{path}' as a NumPy .npz archive of numeric arrays; {hint}") from None


def load_data(path: str, allow_3d: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read X and y from an .npz file with one-line, fix-naming errors (CLIError)."""
    hint = f"save the data with numpy.savez('{path if len(path) <= 80 else 'data.npz'}', X=X, y=y)"
    p = check_data_path(path, hint)
    archive = open_npz(p, path, hint)
    arrays: dict[str, np.ndarray] = {}
    with archive:
        for key in ("X", "y"):
            if key not in archive.files:
                found = ", ".join(archive.files) or "nothing"
                raise CLIError(f"'{path}' has no array '{key}' (it holds: {found}); {hint}")
            try:
                arrays[key] = archive[key]
            except Exception:  # noqa: BLE001 - numpy's text would suggest allow_pickle, never an option here
                raise CLIError(
                    f"array '{key}' in '{path}' cannot be read (object arrays are never unpickled); "
                    f"store plain numeric arrays"
                ) from None
    X, y = arrays["X"], arrays["y"]
    for key, arr in (("X", X), ("y", y)):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
            raise CLIError(f"array '{key}' in '{path}' has non-numeric dtype {arr.dtype}; store real numbers")
    dims = (2, 3) if allow_3d else (2,)
    if X.ndim not in dims:
        want = "(n, d) or (n, channels, L)" if allow_3d else "(n, d)"
        raise CLIError(f"X in '{path}' must be a {want} matrix, got shape {X.shape}")
    if y.ndim not in (1, 2):
        raise CLIError(f"y in '{path}' must be (n,) (scalar target) or (n, C), got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise CLIError(
            f"shape mismatch in '{path}': X has {X.shape[0]} rows but y has {y.shape[0]}; give one target per sample"
        )
    if X.shape[0] < 2:
        raise CLIError(f"'{path}' has n={X.shape[0]} samples; BatchNorm needs at least 2")
    X = X.astype(np.float64)
    y = y.astype(np.float64)
    for key, arr in (("X", X), ("y", y)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise CLIError(f"{key} in '{path}' contains {bad} NaN/infinite value(s); remove or impute them")
    return X, y


def check_out(path: str, inputs: tuple[str, ...] = ()) -> Path:
    """The --out path after the checks of convexbn.io.check_output_path, as a one-line CLIError."""
    from convexbn.io import OutputPathError, check_output_path

    try:
        return check_output_path(path, inputs, what="--out")
    except OutputPathError as exc:
        raise CLIError(one_line(exc)) from None


def positive_list(label: str) -> Callable[[str], list[float]]:
    """argparse type: comma-separated finite numbers > 0 in strictly decreasing order (a path from large to small β)."""
    one = pos_float(label)

    def parse(text: str) -> list[float]:
        """Split on commas and check every value and the order."""
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(
                f"{label} needs comma-separated numbers such as 0.3,0.1,0.03, got {text!r}"
            )
        values = [one(p) for p in parts]
        if any(b >= a for a, b in zip(values, values[1:])):
            raise argparse.ArgumentTypeError(
                f"{label} must be strictly decreasing (a path from large to small β), "
                f"got {text!r}; sort the values from largest to smallest"
            )
        return values

    return parse
