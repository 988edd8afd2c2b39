"""CIFAR's Python-2 pickles: a restricted reader whose arrays are bounded by the bytes really present
(and by the expected CIFAR shape), and a writer of the same format for generated archives."""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any, BinaryIO

import numpy as np

from convexbn.download import DataError

try:  # numpy >= 2 moved the private core module; both spellings appear in pickles
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct  # type: ignore[no-redef]


class _ArrayBudget:
    """Bytes the arrays of one pickle may still claim: real array data sits inside the pickle, so more
    than its length (or than the expected CIFAR shape) can only be uninitialised or duplicated memory."""

    def __init__(self, limit: int) -> None:
        """Start with `limit` bytes."""
        self.limit = self.left = int(limit)

    def claim(self, shape: Any, dtype: Any) -> None:
        """Reserve the bytes of an array of `shape` and `dtype`, or raise a DataError."""
        try:
            dt = np.dtype(dtype)
            dims = [int(v) for v in (shape if isinstance(shape, (tuple, list)) else (shape,))]
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"a CIFAR pickle declares an invalid array ({exc}); the archive is corrupt: delete it "
                "and fetch it again"
            ) from None
        if dt.hasobject or any(v < 0 for v in dims):
            raise DataError(
                "a CIFAR pickle declares an object or negative-size array, which CIFAR never holds; "
                "the archive is corrupt or malicious: delete it and fetch it again"
            )
        nbytes = dt.itemsize
        for v in dims:
            nbytes *= v
        if nbytes > self.left:
            raise DataError(
                f"a CIFAR pickle declares an array of {nbytes:,} bytes (shape {tuple(dims)} of {dt}) "
                f"where its own data and the CIFAR batch shape allow {self.limit:,} in all; the archive "
                "is corrupt or malicious: delete it and fetch it again"
            )
        self.left -= nbytes


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only the numpy array reconstruction CIFAR's python format needs, with every
    array's size bounded by `max_array_bytes` in total."""

    def __init__(self, file: BinaryIO, max_array_bytes: int, **kwargs: Any) -> None:
        """Unpickle from `file`; arrays may claim at most `max_array_bytes` bytes together."""
        super().__init__(file, **kwargs)
        budget = _ArrayBudget(max_array_bytes)

        class _Array(np.ndarray):
            """numpy.ndarray as this load sees it: a subclass so that BUILD (__setstate__) is counted too."""

            def __new__(cls, shape: Any, dtype: Any = float, *args: Any, **kw: Any) -> Any:
                """An array whose bytes are claimed from the budget first."""
                budget.claim(shape, dtype)
                return np.ndarray.__new__(cls, shape, dtype, *args, **kw)

            def __setstate__(self, state: Any) -> None:
                """Fill the array from a pickled state after claiming its bytes."""
                if not isinstance(state, tuple) or len(state) not in (4, 5):
                    raise DataError("a CIFAR pickle holds a malformed array state; the archive is corrupt")
                budget.claim(state[-4], state[-3])
                super().__setstate__(state)

        def reconstruct(cls: Any, shape: Any, dtype: Any) -> Any:
            """numpy's array reconstructor, for the bounded array type only."""
            if cls is not _Array:
                raise DataError("a CIFAR pickle reconstructs something other than a numpy array; refusing it")
            budget.claim(shape, dtype)
            return _np_reconstruct(_Array, shape, dtype)

        self._allowed: dict[tuple[str, str], Any] = {
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): _Array,
            ("numpy", "dtype"): np.dtype,
        }

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed numpy global, refuse everything else with a DataError."""
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                f"refusing to unpickle {module}.{name}: CIFAR batches contain only numpy arrays, "
                "lists, dicts and strings, so this file is not a genuine CIFAR batch (it may be "
                "malicious). Delete it and fetch the archive again with its MD5 verified."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids, which CIFAR never uses."""
        raise DataError("refusing to unpickle a persistent id: not a genuine CIFAR batch; fetch the archive again")


def _plain(obj: Any) -> Any:
    """`obj` with arrays at its top level or one container level down viewed as plain numpy arrays."""

    def view(value: Any) -> Any:
        """A plain ndarray view of an array, anything else unchanged."""
        return value.view(np.ndarray) if isinstance(value, np.ndarray) else value

    if isinstance(obj, dict):
        return {k: view(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [view(v) for v in obj]
    return view(obj)


def restricted_loads(data: bytes | bytearray, max_array_bytes: int | None = None) -> Any:
    """Unpickle CIFAR bytes with `RestrictedUnpickler` (encoding='bytes', as Python-2 pickles need); arrays
    may hold at most min(len(data), max_array_bytes) bytes in total."""
    limit = len(data) if max_array_bytes is None else min(len(data), int(max_array_bytes))
    try:
        return _plain(RestrictedUnpickler(io.BytesIO(data), limit, encoding="bytes").load())
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a corrupt member
        raise DataError(
            f"cannot decode a CIFAR pickle ({type(exc).__name__}: {exc}); the archive is corrupt: "
            "delete it and fetch it again"
        ) from exc


_PurePythonPickler: Any = getattr(pickle, "_Pickler")  # noqa: B009 - pure-Python pickler, overridable dispatch


class _Py2StylePickler(_PurePythonPickler):
    """Protocol-2 pickler writing bytes as Python-2 strings and numpy globals as old numpy did (like CIFAR)."""

    dispatch = _PurePythonPickler.dispatch.copy()

    def _save_py2_string(self, obj: bytes) -> None:
        """Write bytes as a Python-2 str opcode (SHORT_BINSTRING / BINSTRING)."""
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + struct.pack("<B", len(obj)) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    def _save_py2_text(self, obj: str) -> None:
        """Write ASCII text as a Python-2 str too (numpy's dtype codes such as 'u1' and '|')."""
        self._save_py2_string(obj.encode("latin-1"))

    dispatch[bytes] = _save_py2_string
    dispatch[str] = _save_py2_text

    def save_global(self, obj: Any, name: str | None = None) -> None:
        """Spell numpy's array reconstructor with its historical module path."""
        if obj is _np_reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def py2_pickle(obj: Any) -> bytes:
    """Pickle `obj` the way CIFAR's Python-2 batches are pickled."""
    buf = io.BytesIO()
    _Py2StylePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


__all__ = ["RestrictedUnpickler", "py2_pickle", "restricted_loads"]
