"""Datasets: CIFAR download (checksum, retries, atomic), safe loading, synthetic CIFAR archives,
offline real datasets (scikit-learn digits, Debian's Fashion-MNIST) and array preparation.

Every error raised here is a `DataError` whose message names the problem and the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import logging
import os
import pickle
import re
import struct
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from convexbn.io import atomic_writer

try:  # numpy >= 2 moved the private core module; both spellings appear in pickles
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct  # type: ignore[no-redef]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


class DataError(ValueError):
    """A dataset could not be fetched, verified or decoded; the message says what to do."""


@dataclass(frozen=True)
class CifarSource:
    """Where an official CIFAR archive lives and what it contains."""

    url: str
    md5: str
    filename: str
    folder: str
    train_members: tuple[str, ...]
    test_member: str
    meta_member: str
    label_key: str
    names_key: str


CIFAR_SOURCES: dict[str, CifarSource] = {
    "cifar10": CifarSource(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        filename="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_member="test_batch",
        meta_member="batches.meta",
        label_key="labels",
        names_key="label_names",
    ),
    "cifar100": CifarSource(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        filename="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train_members=("train",),
        test_member="test",
        meta_member="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
    ),
}

CIFAR10_LABEL_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
FASHION_MNIST_LABEL_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
)
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
NORMALIZATIONS: tuple[str, ...] = ("standardize", "channel", "none")

_CHUNK = 1 << 20
_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_RETRY_HTTP_CODES = frozenset({408, 425, 429, 500, 502, 503, 504})


# --------------------------------------------------------------------------- small helpers
def _check_name(name: str) -> CifarSource:
    """The CifarSource of `name`, or a DataError listing the valid names."""
    if name not in CIFAR_SOURCES:
        raise DataError(f"unknown CIFAR dataset {name!r}: use one of {', '.join(sorted(CIFAR_SOURCES))}")
    return CIFAR_SOURCES[name]


def _check_md5(md5: str, what: str) -> str:
    """`md5` lower-cased after checking it is 32 hexadecimal characters."""
    if not isinstance(md5, str) or not _MD5_RE.match(md5):
        raise DataError(f"{what}: {md5!r} is not an MD5 checksum (32 hexadecimal characters, "
                        "as printed by `md5sum FILE`)")
    return md5.lower()


def _check_url(url: str, key: str) -> str:
    """`url` after checking its scheme is http, https or file."""
    scheme = urllib.parse.urlparse(url).scheme.lower() if isinstance(url, str) else ""
    if scheme not in ("http", "https", "file"):
        raise DataError(f"config key {key}: {url!r} is not an http://, https:// or file:// URL; "
                        "give a full URL such as https://host/path/archive.tar.gz or file:///path/archive.tar.gz")
    return url


def file_md5(path: PathLike) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_help(name: str, filename: str) -> str:
    """How to point the pipeline at a local copy of a CIFAR archive."""
    return (f"To use a local copy instead, download {filename} on a machine with internet access "
            f"(check it with `md5sum {filename}`) and set config key data.{name}.archive: "
            f"/path/to/{filename}; or point data.{name}.url at a reachable mirror "
            f"(http://, https:// or file:///path/to/{filename}).")


# --------------------------------------------------------------------------- fetching
class _TransientError(Exception):
    """A network failure worth retrying."""


def _destination(name: str, dest: PathLike) -> Path:
    """The archive path inside `dest` (a folder), or `dest` itself when it names a .tar.gz/.tgz file."""
    dest = Path(dest)
    if not dest.is_dir() and dest.name.endswith((".tar.gz", ".tgz")):
        return dest
    return dest / CIFAR_SOURCES[name].filename


def _download_into(url: str, fh: BinaryIO, timeout: float) -> tuple[str, int]:
    """Stream `url` into `fh` (rewound first); return (md5, bytes); raise _TransientError on network trouble."""
    fh.seek(0)
    fh.truncate()
    digest = hashlib.md5()
    received = 0
    request = urllib.request.Request(url, headers={"User-Agent": "convexbn-data/1"})
    last_log = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length_header = resp.headers.get("Content-Length")
            expected = int(length_header) if length_header and length_header.isdigit() else None
            while chunk := resp.read(_CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if time.monotonic() - last_log > 5.0:
                    total = f" of {expected / 1e6:.1f}" if expected else ""
                    log.info("downloading %s: %.1f%s MB", url, received / 1e6, total)
                    last_log = time.monotonic()
    except urllib.error.HTTPError as exc:
        if exc.code in _RETRY_HTTP_CODES:
            raise _TransientError(f"HTTP {exc.code} {exc.reason}") from exc
        raise DataError(f"the server refused {url}: HTTP {exc.code} {exc.reason}; check the URL") from exc
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        if urllib.parse.urlparse(url).scheme == "file":
            raise DataError(f"cannot read {url}: {getattr(exc, 'reason', exc)}; check the path") from exc
        reason = getattr(exc, "reason", None) or exc
        raise _TransientError(f"{type(exc).__name__}: {reason}") from exc
    if expected is not None and received != expected:
        raise _TransientError(f"connection closed after {received} of {expected} bytes (truncated transfer)")
    return digest.hexdigest(), received


def _copy_verified(name: str, archive: Path, target: Path, md5: str) -> Path:
    """Copy a local archive to `target` atomically, hashing while copying; refuse it on an MD5 mismatch."""
    if not archive.is_file():
        raise DataError(f"config key data.{name}.archive: {str(archive)!r} is not an existing file; "
                        f"fix the path, or remove the key to download from data.{name}.url")
    if target.exists() and archive.resolve() == target.resolve():
        actual = file_md5(archive)
        if actual != md5:
            raise DataError(_mismatch_message(name, str(archive), md5, actual, archive.stat().st_size, False))
        return target
    with atomic_writer(target, suffix=".part") as fh:
        digest = hashlib.md5()
        with open(archive, "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                fh.write(chunk)
        actual = digest.hexdigest()
        if actual != md5:
            raise DataError(_mismatch_message(name, str(archive), md5, actual, archive.stat().st_size, False))
    log.info("using local %s archive %s (MD5 %s verified) -> %s", name, archive, md5, target)
    return target


def _mismatch_message(name: str, origin: str, expected: str, actual: str, size: int, downloaded: bool) -> str:
    """The error text for an archive whose MD5 is not the expected one."""
    filename = CIFAR_SOURCES[name].filename
    what = "downloaded from" if downloaded else "at"
    return (f"checksum mismatch for the {name} archive {what} {origin}: expected MD5 {expected}, "
            f"got {actual} ({size} bytes). The file is corrupted, truncated or not {filename}; "
            "nothing was written to the destination. Fix: download it again (or from another mirror via "
            f"data.{name}.url), check it with `md5sum {filename}` and point data.{name}.archive at a copy "
            f"whose MD5 is {expected}.")


def fetch_cifar(name: str, dest: PathLike, url: str | None = None, md5: str | None = None,
                archive: PathLike | None = None, retries: int = 3, timeout: float = 60.0,
                backoff: float = 1.0) -> Path:
    """Download (or copy from `archive`) a CIFAR archive into `dest`, verify its MD5, place it atomically."""
    source = _check_name(name)
    # Without md5 the official checksum applies: a mirror or local copy must be the official file.
    expected = _check_md5(md5, f"config key data.{name}.md5") if md5 is not None else source.md5
    if not isinstance(retries, int) or retries < 0:
        raise DataError(f"retries={retries!r} must be a non-negative integer (retries after the first attempt)")
    if not timeout > 0 or backoff < 0:
        raise DataError(f"timeout={timeout!r} must be > 0 and backoff={backoff!r} must be >= 0 seconds")
    target = _destination(name, dest)
    if archive is not None:
        return _copy_verified(name, Path(archive), target, expected)
    url = _check_url(url if url is not None else source.url, f"data.{name}.url")
    if target.is_file():
        if file_md5(target) == expected:
            log.info("%s archive already present and verified: %s", name, target)
            return target
        log.warning("%s exists but its MD5 is not %s: downloading it again", target, expected)
    attempts = retries + 1
    errors: list[str] = []
    with atomic_writer(target, suffix=".part") as fh:
        for attempt in range(1, attempts + 1):
            try:
                log.info("downloading %s from %s (attempt %d of %d)", name, url, attempt, attempts)
                actual, size = _download_into(url, fh, timeout)
                break
            except _TransientError as exc:
                errors.append(f"attempt {attempt}: {exc}")
                log.warning("download of %s failed (%s)", url, exc)
                if attempt < attempts:
                    time.sleep(min(backoff * 2 ** (attempt - 1), 60.0))
        else:
            raise DataError(f"could not download {name} from {url} after {attempts} attempt(s) "
                            f"({'; '.join(errors)}). The machine may be offline or the server unreachable. "
                            + _offline_help(name, source.filename))
        if actual != expected:
            raise DataError(_mismatch_message(name, url, expected, actual, size, True))
    log.info("%s archive saved to %s (MD5 %s verified)", name, target, expected)
    return target


# --------------------------------------------------------------------------- loading
class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that admits only the numpy array reconstruction CIFAR's python format needs."""

    ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed numpy global, refuse everything else with a DataError."""
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name}: CIFAR batches contain only numpy arrays, "
                            "lists, dicts and strings, so this file is not a genuine CIFAR batch (it may be "
                            "malicious). Delete it and fetch the archive again with its MD5 verified.") from None

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids, which CIFAR never uses."""
        raise DataError("refusing to unpickle a persistent id: not a genuine CIFAR batch; fetch the archive again")


def restricted_loads(data: bytes) -> Any:
    """Unpickle CIFAR bytes with `RestrictedUnpickler` (encoding='bytes', as Python-2 pickles need)."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a corrupt member
        raise DataError(f"cannot decode a CIFAR pickle ({type(exc).__name__}: {exc}); the archive is corrupt: "
                        "delete it and fetch it again") from exc


def _text_keys(obj: Mapping[Any, Any], member: str) -> dict[str, Any]:
    """A pickled dict with its bytes keys decoded to str."""
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR member {member} holds a {type(obj).__name__}, not a dict; the archive is not "
                        "in CIFAR's python format")
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(values: Sequence[Any]) -> list[str]:
    """Label names decoded to str."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _decode_batch(batch: dict[str, Any], label_key: str, member: str,
                  image_size: int | None) -> tuple[NDArray[np.uint8], NDArray[np.int64], int]:
    """Images (n,s,s,3) uint8, labels int64 and the image size of one decoded CIFAR batch."""
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"CIFAR member {member} lacks key {key!r} (has {sorted(batch)}); "
                            "the archive is not in CIFAR's python format")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"CIFAR member {member}: 'data' is {data.dtype} with shape {data.shape}, "
                        "expected uint8 (n, 3*s*s); the archive is corrupt")
    side = int(round((data.shape[1] / 3) ** 0.5))
    if 3 * side * side != data.shape[1] or side == 0:
        raise DataError(f"CIFAR member {member}: rows of {data.shape[1]} bytes are not 3 square colour planes")
    if image_size is not None and side != image_size:
        raise DataError(f"CIFAR member {member} has {side}x{side} images, other members {image_size}x{image_size}")
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"CIFAR member {member}: {data.shape[0]} images but {labels.shape[0]} labels; corrupt archive")
    images = data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels, side


def _infer_name(members: Mapping[str, tarfile.TarInfo], path: Path) -> str:
    """Which CIFAR dataset an archive holds, from its folder name."""
    for candidate, source in CIFAR_SOURCES.items():
        if f"{source.folder}/{source.meta_member}" in members:
            return candidate
    raise DataError(f"{path} holds neither cifar-10-batches-py/ nor cifar-100-python/: it is not a CIFAR "
                    "python archive; use cifar-10-python.tar.gz or cifar-100-python.tar.gz")


def load_cifar(archive_path: PathLike, name: str | None = None, md5: str | None = None) -> dict[str, Any]:
    """Decode a CIFAR python tarball in memory into uint8 images (n,s,s,3), int64 labels and label names."""
    path = Path(archive_path)
    if not path.is_file():
        raise DataError(f"CIFAR archive {str(path)!r} does not exist; run fetch_cifar first or fix the path")
    if name is not None:
        _check_name(name)
    if md5 is not None:
        expected = _check_md5(md5, "md5")
        actual = file_md5(path)
        if actual != expected:
            raise DataError(f"checksum mismatch for {path}: expected MD5 {expected}, got {actual}; refusing to "
                            "unpickle it. Delete the file and fetch the archive again.")
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
            name = name or _infer_name(members, path)
            source = CIFAR_SOURCES[name]

            def read(member: str) -> dict[str, Any]:
                """Unpickle one archive member (a regular file) without touching the disk."""
                full = f"{source.folder}/{member}"
                info = members.get(full)
                if info is None or not info.isfile():
                    raise DataError(f"{path} lacks the regular file {full}: it is not {source.filename} "
                                    f"(or it is incomplete); fetch the {name} archive again")
                handle = tar.extractfile(info)
                assert handle is not None
                return _text_keys(restricted_loads(handle.read()), full)

            meta = read(source.meta_member)
            if source.names_key not in meta:
                raise DataError(f"{source.meta_member} lacks {source.names_key!r}; not a {name} archive")
            label_names = _names(meta[source.names_key])
            xs, ys, size = [], [], None
            raw_train = [read(m) for m in source.train_members]
            raw_test = read(source.test_member)
            for member, batch in zip(source.train_members, raw_train, strict=True):
                x, y, size = _decode_batch(batch, source.label_key, member, size)
                xs.append(x)
                ys.append(y)
            x_test, y_test, size = _decode_batch(raw_test, source.label_key, source.test_member, size)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise DataError(f"cannot read CIFAR archive {path} ({type(exc).__name__}: {exc}): it is truncated or "
                        "corrupt. Delete it and fetch it again (fetch_cifar verifies the MD5).") from exc
    out: dict[str, Any] = {
        "name": name,
        "X_train": np.concatenate(xs, axis=0),
        "y_train": np.concatenate(ys, axis=0),
        "X_test": x_test,
        "y_test": y_test,
        "label_names": label_names,
        "classes": label_names,
    }
    for split in ("train", "test"):
        y = out[f"y_{split}"]
        if y.size and (y.min() < 0 or y.max() >= len(label_names)):
            raise DataError(f"{name} {split} labels span {y.min()}..{y.max()} but there are {len(label_names)} "
                            "label names; the archive is corrupt")
    if name == "cifar100":
        out["y_train_coarse"] = np.concatenate(
            [np.asarray(b.get("coarse_labels", []), dtype=np.int64) for b in raw_train])
        out["y_test_coarse"] = np.asarray(raw_test.get("coarse_labels", []), dtype=np.int64)
        out["coarse_label_names"] = _names(meta.get("coarse_label_names", []))
    return out


# --------------------------------------------------------------------------- synthetic CIFAR
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


def _py2_pickle(obj: Any) -> bytes:
    """Pickle `obj` the way CIFAR's Python-2 batches are pickled."""
    buf = io.BytesIO()
    _Py2StylePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _class_templates(rng: np.random.Generator, num_classes: int, size: int) -> NDArray[np.float64]:
    """Per-class (size,size,3) signal: a coloured blob and a colour stripe at class-specific places."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    templates = np.empty((num_classes, size, size, 3))
    for c in range(num_classes):
        cy, cx = rng.uniform(0.2, 0.8, 2)
        radius = rng.uniform(0.12, 0.25)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
        angle = rng.uniform(0, np.pi)
        stripe = np.cos(2 * np.pi * rng.uniform(1.0, 3.0) * (np.cos(angle) * xx + np.sin(angle) * yy))
        blob_colour = rng.uniform(-1, 1, 3)
        stripe_colour = rng.uniform(-1, 1, 3)
        templates[c] = blob[..., None] * blob_colour + 0.5 * stripe[..., None] * stripe_colour
    templates -= templates.mean(axis=(1, 2), keepdims=True)  # class signal orthogonal to the background colour
    templates /= np.sqrt((templates ** 2).mean(axis=(1, 2, 3), keepdims=True)) + 1e-12  # unit RMS per class
    return templates


def _synthetic_images(rng: np.random.Generator, templates: NDArray[np.float64], labels: NDArray[np.int64],
                      noise: float) -> NDArray[np.uint8]:
    """uint8 images: random background + shifted class template + weaker distractor template + pixel noise."""
    n, num_classes, size = labels.shape[0], templates.shape[0], templates.shape[1]
    max_shift = size // 8
    images = rng.uniform(60, 196, (n, 1, 1, 3)) + rng.normal(0, noise, (n, size, size, 3))
    contrast = np.asarray(rng.uniform(20, 50, n))
    distractors = np.asarray(rng.integers(0, num_classes, n))
    shifts = rng.integers(-max_shift, max_shift + 1, (n, 2))
    for i in range(n):
        signal = templates[labels[i]] + 0.4 * templates[distractors[i]]
        images[i] += contrast[i] * np.roll(signal, tuple(shifts[i]), axis=(0, 1))
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def _balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> NDArray[np.int64]:
    """n labels covering the classes as evenly as possible, in random order."""
    return rng.permutation(np.arange(n, dtype=np.int64) % num_classes)


def _to_rows(images: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(n,s,s,3) images as CIFAR rows (n, 3*s*s): red plane, green plane, blue plane."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(images.shape[0], 3 * images.shape[1] ** 2))


def make_cifar_archive(path: PathLike, name: str, n_train: int, n_test: int, seed: int,
                       image_size: int = 32, noise: float = 48.0) -> str:
    """Write a synthetic archive in CIFAR's exact python layout with learnable classes; return its MD5."""
    source = _check_name(name)
    for key, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise DataError(f"{key}={value!r} must be a non-negative integer")
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise DataError(f"image_size={image_size!r} must be a positive integer (CIFAR uses 32)")
    rng = np.random.default_rng(seed)
    num_classes = 10 if name == "cifar10" else 100
    templates = _class_templates(rng, num_classes, int(image_size))
    y_train = _balanced_labels(rng, int(n_train), num_classes)
    y_test = _balanced_labels(rng, int(n_test), num_classes)
    x_train = _synthetic_images(rng, templates, y_train, noise)
    x_test = _synthetic_images(rng, templates, y_test, noise)

    def batch(x: NDArray[np.uint8], y: NDArray[np.int64], label: str, offset: int) -> dict[bytes, Any]:
        """One batch dict with CIFAR's keys (bytes, as Python-2 pickles decode)."""
        files = [f"synthetic_{offset + i:06d}.png".encode() for i in range(x.shape[0])]
        out: dict[bytes, Any] = {b"batch_label": label.encode(), b"filenames": files, b"data": _to_rows(x)}
        if name == "cifar10":
            out[b"labels"] = [int(v) for v in y]
        else:
            out[b"fine_labels"] = [int(v) for v in y]
            out[b"coarse_labels"] = [int(v) // 5 for v in y]
        return out

    members: list[tuple[str, bytes]] = []
    if name == "cifar10":
        parts = np.array_split(np.arange(int(n_train)), len(source.train_members))
        for i, (member, idx) in enumerate(zip(source.train_members, parts, strict=True), start=1):
            offset = int(idx[0]) if idx.size else 0
            members.append((member, _py2_pickle(batch(x_train[idx], y_train[idx],
                                                      f"training batch {i} of 5", offset))))
        members.append((source.test_member, _py2_pickle(batch(x_test, y_test, "testing batch 1 of 1", 0))))
        meta = {b"num_cases_per_batch": int(parts[0].size), b"num_vis": 3 * int(image_size) ** 2,
                b"label_names": [n.encode() for n in CIFAR10_LABEL_NAMES]}
        members.append((source.meta_member, _py2_pickle(meta)))
        members.append(("readme.html", b"<html><body>Synthetic CIFAR-10-format data (convexbn).</body></html>\n"))
    else:
        members.append(("train", _py2_pickle(batch(x_train, y_train, "training batch 1 of 1", 0))))
        members.append(("test", _py2_pickle(batch(x_test, y_test, "testing batch 1 of 1", 0))))
        meta = {b"fine_label_names": [f"synthetic_class_{c:03d}".encode() for c in range(100)],
                b"coarse_label_names": [f"synthetic_superclass_{c:02d}".encode() for c in range(20)]}
        members.append(("meta", _py2_pickle(meta)))
    target = Path(path)
    with atomic_writer(target, suffix=".part") as fh:
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                folder = tarfile.TarInfo(source.folder)
                folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(folder)
                for member, payload in members:
                    info = tarfile.TarInfo(f"{source.folder}/{member}")
                    info.size, info.mode, info.mtime = len(payload), 0o644, 0
                    tar.addfile(info, io.BytesIO(payload))
    return file_md5(target)


# --------------------------------------------------------------------------- offline real data
def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> dict[str, Any]:
    """scikit-learn's 8x8 digits (1,797 images, shipped offline) split stratified into train/test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"test_fraction={test_fraction!r} must lie strictly between 0 and 1 (e.g. 0.25)")
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float64), digits.target.astype(np.int64), test_size=float(test_fraction),
        random_state=int(seed), stratify=digits.target)
    return {"name": "digits", "X_train": x_train, "y_train": y_train, "X_test": x_test, "y_test": y_test,
            "label_names": [str(d) for d in range(10)], "classes": [str(d) for d in range(10)]}


_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def read_idx(path: PathLike, ndim: int | None = None) -> NDArray[Any]:
    """Read an idx file (gzip-compressed when it ends in .gz), checking its magic number and size."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"idx file {path} does not exist; check the Fashion-MNIST folder") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot decompress {path} ({type(exc).__name__}: {exc}): truncated or corrupt; "
                        "reinstall it (apt-get install --reinstall dataset-fashion-mnist)") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an idx file: magic bytes {raw[:4].hex() or '(empty)'} should be "
                        "00 00 <type 08..0e> <ndim>; use the original *-idx?-ubyte.gz files")
    dtype, dims = _IDX_DTYPES[raw[2]], raw[3]
    if ndim is not None and dims != ndim:
        raise DataError(f"{path} has {dims} dimensions, expected {ndim} (idx{ndim} file); are the image and "
                        "label files swapped?")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header ({len(raw)} bytes); reinstall or re-download it")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: header promises shape {shape} ({expected} data bytes) but the file holds "
                        f"{len(raw) - header}; it is truncated or corrupt, reinstall or re-download it")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(directory: Path, stem: str) -> Path:
    """`stem`.gz in `directory`, or the uncompressed `stem`, whichever exists."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{directory} lacks {stem}.gz (or {stem}); install Debian's Fashion-MNIST with "
                    f"`apt-get install dataset-fashion-mnist` (files in {FASHION_MNIST_DEBIAN_DIR}) or point "
                    "the config at a folder holding the four *-idx?-ubyte.gz files")


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
            raise DataError("Fashion-MNIST not found: install it with `apt-get install dataset-fashion-mnist` "
                            f"(files land in {FASHION_MNIST_DEBIAN_DIR}) or pass the folder holding the idx files")
        directory = found
    folder = Path(directory)
    if not folder.is_dir():
        raise DataError(f"Fashion-MNIST folder {str(folder)!r} does not exist; fix the path or install "
                        "`dataset-fashion-mnist` and use its default location")
    arrays = {key: read_idx(_idx_file(folder, stem), 3 if key.endswith("images") else 1)
              for key, stem in FASHION_MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"Fashion-MNIST {split}: {images.shape[0]} images but {labels.shape[0]} labels; "
                            "the files do not belong together")
        if labels.size and labels.max() >= len(FASHION_MNIST_LABEL_NAMES):
            raise DataError(f"Fashion-MNIST {split} labels reach {labels.max()}, expected 0..9; corrupt file")
    return {"name": "fashion_mnist",
            "X_train": arrays["train_images"].astype(np.uint8), "y_train": arrays["train_labels"].astype(np.int64),
            "X_test": arrays["test_images"].astype(np.uint8), "y_test": arrays["test_labels"].astype(np.int64),
            "label_names": list(FASHION_MNIST_LABEL_NAMES), "classes": list(FASHION_MNIST_LABEL_NAMES)}


# --------------------------------------------------------------------------- preparation
def stratified_subset(y: NDArray[Any], count: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Sorted indices of `count` samples whose class proportions follow `y` (largest remainders)."""
    n = y.shape[0]
    if count > n:
        raise DataError(f"asked for {count} samples but only {n} are available; lower the count to at most {n}")
    if count == n:
        return np.arange(n, dtype=np.int64)
    values, inverse, sizes = np.unique(y, return_inverse=True, return_counts=True)
    quota = sizes * count / n
    take = np.floor(quota).astype(np.int64)
    remainder = quota - take + rng.uniform(0, 1e-9, quota.shape)  # random tie-break
    for c in np.argsort(-remainder)[: count - int(take.sum())]:
        take[c] += 1
    chosen = [rng.choice(np.flatnonzero(inverse == c), size=int(k), replace=False)
              for c, k in enumerate(take) if k > 0]
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def _normalise(x_train: NDArray[Any], x_test: NDArray[Any],
               mode: str) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Flattened float32 train/test arrays normalised with statistics of the train split only, and the stats."""
    xtr = x_train.astype(np.float64)
    xte = x_test.astype(np.float64)
    if mode == "channel":
        if xtr.ndim == 3:  # grayscale (n,H,W): one channel
            xtr, xte = xtr[..., None], xte[..., None]
        if xtr.ndim != 4:
            raise DataError(f"normalize='channel' needs images (n,H,W,C) or (n,H,W), got shape {x_train.shape}; "
                            "use normalize='standardize' for feature vectors")
        axes = (0, 1, 2)
        mean, std = xtr.mean(axis=axes), xtr.std(axis=axes)
    elif mode == "standardize":
        xtr, xte = xtr.reshape(xtr.shape[0], -1), xte.reshape(xte.shape[0], -1)
        mean, std = xtr.mean(axis=0), xtr.std(axis=0)
    else:
        xtr, xte = xtr.reshape(xtr.shape[0], -1), xte.reshape(xte.shape[0], -1)
        mean, std = np.zeros(xtr.shape[1]), np.ones(xtr.shape[1])
    std = np.where(std > 1e-12, std, 1.0)
    for x in (xtr, xte):  # in place: these are private float64 copies
        x -= mean
        x /= std
    flat = [x.reshape(x.shape[0], -1).astype(np.float32) for x in (xtr, xte)]
    return flat[0], flat[1], mean.astype(np.float32), std.astype(np.float32)


def prepare_arrays(X_train: NDArray[Any], y_train: NDArray[Any], X_test: NDArray[Any], y_test: NDArray[Any], *,
                   classes: Sequence[int] | None = None, n_train: int | None = None, n_test: int | None = None,
                   normalize: str = "standardize", seed: int = 0, num_classes: int | None = None,
                   label_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Subset classes/samples (stratified, seeded), normalise with train statistics, flatten, one-hot."""
    if normalize not in NORMALIZATIONS:
        raise DataError(f"normalize={normalize!r} is not one of {', '.join(NORMALIZATIONS)}")
    X_train, X_test = np.asarray(X_train), np.asarray(X_test)
    y_train = np.asarray(y_train).reshape(-1).astype(np.int64)
    y_test = np.asarray(y_test).reshape(-1).astype(np.int64)
    for split, x, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        if x.shape[0] != y.shape[0]:
            raise DataError(f"X_{split} has {x.shape[0]} rows but y_{split} has {y.shape[0]} labels")
    if X_train.shape[1:] != X_test.shape[1:]:
        raise DataError(f"train samples have shape {X_train.shape[1:]} but test samples {X_test.shape[1:]}")
    if classes is None:
        chosen = np.unique(y_train)
    else:
        chosen = np.asarray(list(classes), dtype=np.int64)
        if chosen.size == 0 or np.unique(chosen).size != chosen.size:
            raise DataError(f"classes={list(classes)!r} must be a non-empty list of distinct labels")
        missing = sorted(set(chosen.tolist()) - set(np.unique(y_train).tolist()))
        if missing:
            raise DataError(f"classes {missing} do not occur in the training labels "
                            f"(present: {np.unique(y_train).tolist()}); fix the config's classes list")
    keep_train, keep_test = np.isin(y_train, chosen), np.isin(y_test, chosen)
    if classes is None and not keep_test.all():
        extra = sorted(set(np.unique(y_test[~keep_test]).tolist()))
        raise DataError(f"test labels {extra} never occur in the training labels; pass classes= explicitly")
    remap = {int(c): i for i, c in enumerate(chosen)}
    lookup = np.vectorize(remap.__getitem__, otypes=[np.int64])
    xtr, ytr = X_train[keep_train], lookup(y_train[keep_train]) if keep_train.any() else y_train[:0]
    xte, yte = X_test[keep_test], lookup(y_test[keep_test]) if keep_test.any() else y_test[:0]
    rng_train, rng_test = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if n_train is not None:
        idx = stratified_subset(ytr, int(n_train), rng_train)
        xtr, ytr = xtr[idx], ytr[idx]
    if n_test is not None:
        idx = stratified_subset(yte, int(n_test), rng_test)
        xte, yte = xte[idx], yte[idx]
    if xtr.shape[0] == 0:
        raise DataError("no training samples remain after selecting classes/n_train; widen the selection")
    count = len(chosen) if num_classes is None else int(num_classes)
    if count < len(chosen):
        raise DataError(f"num_classes={num_classes} is smaller than the {len(chosen)} selected classes")
    x_train_f, x_test_f, mean, std = _normalise(xtr, xte, normalize)
    eye = np.eye(count, dtype=np.float32)
    out: dict[str, Any] = {
        "X_train": x_train_f, "y_train": ytr, "Y_train": eye[ytr],
        "X_test": x_test_f, "y_test": yte, "Y_test": eye[yte],
        "classes": chosen.astype(np.int64), "mean": mean, "std": std,
        "normalize": normalize, "seed": int(seed),
    }
    if label_names is not None:
        names = list(label_names)
        if chosen.max() >= len(names) or chosen.min() < 0:
            raise DataError(f"label_names has {len(names)} entries but labels go up to {chosen.max()}")
        out["label_names"] = [str(names[int(c)]) for c in chosen]
    return out


def save_prepared(path: PathLike, arrays: Mapping[str, Any]) -> None:
    """Atomically save prepared arrays (numbers, strings, lists of strings too) as an uncompressed .npz."""
    payload: dict[str, NDArray[Any]] = {}
    for key, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype == object:
            raise DataError(f"save_prepared: value of {key!r} ({type(value).__name__}) is not a numeric or string "
                            "array; convert it or leave it out")
        payload[key] = arr
    target = Path(path)
    if target.suffix != ".npz":
        raise DataError(f"save_prepared: {str(target)!r} must end in .npz (numpy would append it otherwise)")
    with atomic_writer(target, suffix=".part") as fh:
        np.savez(fh, **payload)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds


def load_prepared(path: PathLike) -> dict[str, Any]:
    """Load arrays written by save_prepared (0-d values as Python scalars, string vectors as lists)."""
    target = Path(path)
    if not target.is_file():
        raise DataError(f"prepared dataset {str(target)!r} does not exist; run the data preparation step first")
    try:
        with np.load(target, allow_pickle=False) as npz:
            out: dict[str, Any] = {}
            for key in npz.files:
                arr = npz[key]
                if arr.ndim == 0:
                    out[key] = arr.item()
                elif arr.dtype.kind == "U" and arr.ndim == 1:
                    out[key] = [str(v) for v in arr]
                else:
                    out[key] = arr
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read prepared dataset {target} ({exc}); delete it and rerun the preparation") from exc
    return out


__all__ = [
    "CIFAR_SOURCES", "CIFAR10_LABEL_NAMES", "FASHION_MNIST_DEBIAN_DIR", "FASHION_MNIST_LABEL_NAMES",
    "NORMALIZATIONS", "CifarSource", "DataError", "RestrictedUnpickler", "fetch_cifar", "file_md5",
    "find_fashion_mnist", "load_cifar", "load_digits_split", "load_fashion_mnist", "load_prepared",
    "make_cifar_archive", "prepare_arrays", "read_idx", "restricted_loads", "save_prepared", "stratified_subset",
]
