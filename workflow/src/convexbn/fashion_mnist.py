"""Fashion-MNIST from its idx files (Debian's dataset-fashion-mnist): headers read and checked first,
then exactly the declared bytes, so a small compressed file cannot inflate into gigabytes.

Every error raised here is a `DataError` whose message names the problem and the fix.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convexbn.download import DataError

PathLike = str | os.PathLike

FASHION_MNIST_LABEL_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


#: Default cap on an idx file's data: Fashion-MNIST's largest (train images) holds 47,040,000 bytes.
IDX_MAX_BYTES = 64 << 20


def _idx_header(fh: Any, path: Path, ndim: int | None) -> tuple[np.dtype, tuple[int, ...]]:
    """Read and check an idx header (magic, dimension count, sizes) from an open file."""
    magic = fh.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an idx file: magic bytes {magic.hex() or '(empty)'} should be "
            "00 00 <type 08..0e> <ndim>; use the original *-idx?-ubyte.gz files"
        )
    dtype, dims = _IDX_DTYPES[magic[2]], magic[3]
    if ndim is not None and dims != ndim:
        raise DataError(
            f"{path} has {dims} dimensions, expected {ndim} (idx{ndim} file); are the image and label files swapped?"
        )
    raw = fh.read(4 * dims)
    if len(raw) < 4 * dims:
        raise DataError(f"{path} is truncated inside its header; reinstall or re-download it")
    return dtype, struct.unpack(f">{dims}I", raw)


def read_idx(path: PathLike, ndim: int | None = None, max_bytes: int = IDX_MAX_BYTES) -> NDArray[Any]:
    """Read an idx file (gzip-compressed when it ends in .gz): the header first, its declared size checked
    against `max_bytes`, then exactly that many data bytes (never more: a bomb is not inflated)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            dtype, shape = _idx_header(fh, path, ndim)
            expected = dtype.itemsize
            for size in shape:
                expected *= size
            if expected > max_bytes:
                raise DataError(
                    f"{path}: header declares shape {shape} ({expected:,} data bytes), more than the "
                    f"limit of {max_bytes:,} (Fashion-MNIST's largest file holds 47,040,000); the file is "
                    "corrupt or not Fashion-MNIST: reinstall or re-download it"
                )
            raw = fh.read(expected)
            extra = fh.read(1)
    except FileNotFoundError:
        raise DataError(f"idx file {path} does not exist; check the Fashion-MNIST folder") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"cannot decompress {path} ({type(exc).__name__}: {exc}): truncated or corrupt; "
            "reinstall it (apt-get install --reinstall dataset-fashion-mnist)"
        ) from exc
    if len(raw) != expected or extra:
        held = f"{len(raw)}" if not extra else f"more than {expected}"
        raise DataError(
            f"{path}: header promises shape {shape} ({expected} data bytes) but the file holds "
            f"{held}; it is truncated or corrupt, reinstall or re-download it"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(directory: Path, stem: str) -> Path:
    """`stem`.gz in `directory`, or the uncompressed `stem`, whichever exists."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if os.path.isfile(candidate):
            return candidate
    raise DataError(
        f"{directory} lacks {stem}.gz (or {stem}); install Debian's Fashion-MNIST with "
        f"`apt-get install dataset-fashion-mnist` (files in {FASHION_MNIST_DEBIAN_DIR}) or point "
        "the config at a folder holding the four *-idx?-ubyte.gz files"
    )


def find_fashion_mnist() -> Path | None:
    """Debian's Fashion-MNIST folder when package dataset-fashion-mnist is installed, else None."""
    if all((FASHION_MNIST_DEBIAN_DIR / f"{stem}.gz").is_file() for stem in FASHION_MNIST_FILES.values()):
        return FASHION_MNIST_DEBIAN_DIR
    return None


def load_fashion_mnist(directory: PathLike | None = None) -> dict[str, Any]:
    """Fashion-MNIST from its four idx files: uint8 images (n,28,28), int64 labels, label names."""
    if directory is None:
        found = find_fashion_mnist()
        if found is None:
            raise DataError(
                "Fashion-MNIST not found: install it with `apt-get install dataset-fashion-mnist` "
                f"(files land in {FASHION_MNIST_DEBIAN_DIR}) or pass the folder holding the idx files"
            )
        directory = found
    folder = Path(directory)
    if not os.path.isdir(folder):
        raise DataError(
            f"Fashion-MNIST folder {str(folder)!r} does not exist; fix the path or install "
            "`dataset-fashion-mnist` and use its default location"
        )
    arrays = {
        key: read_idx(_idx_file(folder, stem), 3 if key.endswith("images") else 1)
        for key, stem in FASHION_MNIST_FILES.items()
    }
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"Fashion-MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels; "
                "the files do not belong together"
            )
        if labels.size and labels.max() >= len(FASHION_MNIST_LABEL_NAMES):
            raise DataError(f"Fashion-MNIST {split} labels reach {labels.max()}, expected 0..9; corrupt file")
    return {
        "name": "fashion_mnist",
        "X_train": arrays["train_images"].astype(np.uint8),
        "y_train": arrays["train_labels"].astype(np.int64),
        "X_test": arrays["test_images"].astype(np.uint8),
        "y_test": arrays["test_labels"].astype(np.int64),
        "label_names": list(FASHION_MNIST_LABEL_NAMES),
        "classes": list(FASHION_MNIST_LABEL_NAMES),
    }


__all__ = [
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_LABEL_NAMES",
    "IDX_MAX_BYTES",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
]
