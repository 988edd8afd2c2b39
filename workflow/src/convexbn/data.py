"""Datasets: CIFAR download (checksum, retries, atomic, bounded: convexbn.download), size-checked
loading (restricted unpickling: convexbn.safe_pickle), offline real datasets (scikit-learn digits;
Debian's Fashion-MNIST from convexbn.fashion_mnist) and array preparation. Synthetic archives in CIFAR's
layout: convexbn.synthetic_cifar.

Every error raised here is a `DataError` whose message names the problem and the fix.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import tarfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convexbn.download import (
    DEFAULT_DEADLINE,
    DEFAULT_MAX_BYTES,
    DataError,
    Limits,
    check_url,
    copy_verified,
    download_verified,
    file_url_path,
)
from convexbn.fashion_mnist import (
    FASHION_MNIST_DEBIAN_DIR,
    FASHION_MNIST_FILES,
    FASHION_MNIST_LABEL_NAMES,
    IDX_MAX_BYTES,
    find_fashion_mnist,
    load_fashion_mnist,
    read_idx,
)
from convexbn.io import atomic_writer
from convexbn.safe_pickle import RestrictedUnpickler, restricted_loads

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


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
    train_images: int  # images in each training member (CIFAR-10: 5 x 10,000; CIFAR-100: 1 x 50,000)
    test_images: int = 10_000


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
        train_images=10_000,
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
        train_images=50_000,
    ),
}

CIFAR10_LABEL_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NORMALIZATIONS: tuple[str, ...] = ("standardize", "channel", "none")

_CHUNK = 1 << 20
#: Bytes of one CIFAR image row (32 x 32 pixels x 3 colour planes, uint8).
CIFAR_ROW_BYTES = 3072
#: Pickled bytes a batch may need per image beyond its pixels (CIFAR's labels and file names take ~32).
_PER_IMAGE_OVERHEAD = 256
#: Size cap of archive members that hold no images (batches.meta, readme.html: a few kB in CIFAR).
_SMALL_MEMBER_BYTES = 1 << 20
#: Most entries a CIFAR archive may list (the official ones have 9 and 5).
_MAX_MEMBERS = 64
_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}$")


# --------------------------------------------------------------------------- small helpers
def cifar_source(name: str) -> CifarSource:
    """The CifarSource of `name`, or a DataError listing the valid names."""
    if name not in CIFAR_SOURCES:
        shown = repr(name) if len(str(name)) <= 60 else repr(str(name)[:40] + "...")
        raise DataError(f"unknown CIFAR dataset {shown}: use one of {', '.join(sorted(CIFAR_SOURCES))}")
    return CIFAR_SOURCES[name]


def _check_md5(md5: str, what: str) -> str:
    """`md5` lower-cased after checking it is 32 hexadecimal characters."""
    if not isinstance(md5, str) or not _MD5_RE.match(md5):
        raise DataError(
            f"{what}: {md5!r} is not an MD5 checksum (32 hexadecimal characters, as printed by `md5sum FILE`)"
        )
    return md5.lower()


def file_md5(path: PathLike) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_help(name: str, filename: str) -> str:
    """How to point the pipeline at a local copy of a CIFAR archive."""
    return (
        f"To use a local copy instead, download {filename} on a machine with internet access "
        f"(check it with `md5sum {filename}`) and set config key data.{name}.archive: "
        f"/path/to/{filename}; or point data.{name}.url at a reachable mirror "
        f"(http://, https:// or file:///path/to/{filename})."
    )


# --------------------------------------------------------------------------- fetching
def _destination(name: str, dest: PathLike) -> Path:
    """The archive path inside `dest` (a folder), or `dest` itself when it names a .tar.gz/.tgz file;
    checked to be absent or a regular file in a writable folder before anything is fetched."""
    from convexbn.io import OutputPathError, check_output_path

    folder = Path(dest)
    target = (
        folder
        if not os.path.isdir(folder) and folder.name.endswith((".tar.gz", ".tgz"))
        else folder / CIFAR_SOURCES[name].filename
    )
    try:
        return check_output_path(target, what=f"{name} archive destination")
    except OutputPathError as exc:
        raise DataError(str(exc)) from None


def _copy_local(name: str, archive: Path, target: Path, md5: str, limits: Limits, key: str) -> Path:
    """Copy a local archive to `target` (verified in place when it already is `target`); MD5 checked."""

    def mismatch(actual: str, size: int) -> str:
        """The error text of a local archive with the wrong checksum."""
        return _mismatch_message(name, str(archive), md5, actual, size, False)

    if os.path.exists(target) and os.path.exists(archive) and archive.resolve() == target.resolve():
        actual = file_md5(archive)
        if actual != md5:
            raise DataError(mismatch(actual, archive.stat().st_size))
        return target
    copy_verified(archive, target, md5, limits, key, mismatch)
    log.info("using local %s archive %s (MD5 %s verified) -> %s", name, archive, md5, target)
    return target


def _mismatch_message(name: str, origin: str, expected: str, actual: str, size: int, downloaded: bool) -> str:
    """The error text for an archive whose MD5 is not the expected one."""
    filename = CIFAR_SOURCES[name].filename
    what = "downloaded from" if downloaded else "at"
    return (
        f"checksum mismatch for the {name} archive {what} {origin}: expected MD5 {expected}, "
        f"got {actual} ({size} bytes). The file is corrupted, truncated or not {filename}; "
        "nothing was written to the destination. Fix: download it again (or from another mirror via "
        f"data.{name}.url), check it with `md5sum {filename}` and point data.{name}.archive at a copy "
        f"whose MD5 is {expected}."
    )


def fetch_cifar(
    name: str,
    dest: PathLike,
    url: str | None = None,
    md5: str | None = None,
    archive: PathLike | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 1.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    deadline: float = DEFAULT_DEADLINE,
) -> Path:
    """Download (or copy from `archive` or a file:// URL) a CIFAR archive into `dest`, at most `max_bytes`
    and `deadline` seconds per attempt, verify its MD5, place it atomically."""
    source = cifar_source(name)
    # Without md5 the official checksum applies: a mirror or local copy must be the official file.
    expected = _check_md5(md5, f"config key data.{name}.md5") if md5 is not None else source.md5
    limits = Limits(max_bytes=max_bytes, deadline=deadline, timeout=timeout, retries=retries, backoff=backoff).check()
    target = _destination(name, dest)
    if archive is not None:
        return _copy_local(name, Path(archive), target, expected, limits, f"data.{name}.archive")
    url = check_url(url if url is not None else source.url, f"data.{name}.url")
    local = file_url_path(url)
    if local is not None:
        return _copy_local(name, local, target, expected, limits, f"data.{name}.url")
    if os.path.isfile(target):
        if file_md5(target) == expected:
            log.info("%s archive already present and verified: %s", name, target)
            return target
        log.warning("%s exists but its MD5 is not %s: downloading it again", target, expected)

    def failure(errors: list[str]) -> str:
        """The error text after every attempt failed."""
        return (
            f"could not download {name} from {url} after {len(errors)} attempt(s) ({'; '.join(errors)}). "
            "The machine may be offline or the server unreachable or too slow. " + _offline_help(name, source.filename)
        )

    def mismatch(actual: str, size: int) -> str:
        """The error text of a download with the wrong checksum."""
        return _mismatch_message(name, url, expected, actual, size, True)

    download_verified(url, target, expected, limits, failure, mismatch)
    log.info("%s archive saved to %s (MD5 %s verified)", name, target, expected)
    return target


# --------------------------------------------------------------------------- loading
def _text_keys(obj: Mapping[Any, Any], member: str) -> dict[str, Any]:
    """A pickled dict with its bytes keys decoded to str."""
    if not isinstance(obj, dict):
        raise DataError(
            f"CIFAR member {member} holds a {type(obj).__name__}, not a dict; the archive is not "
            "in CIFAR's python format"
        )
    return {k.decode("latin-1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(values: Sequence[Any]) -> list[str]:
    """Label names decoded to str."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _decode_batch(
    batch: dict[str, Any], label_key: str, member: str, image_size: int | None, max_images: int
) -> tuple[NDArray[np.uint8], NDArray[np.int64], int]:
    """Images (n,s,s,3) uint8, labels int64 and the image size of one decoded CIFAR batch."""
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(
                f"CIFAR member {member} lacks key {key!r} (has {sorted(batch)}); "
                "the archive is not in CIFAR's python format"
            )
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    if data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(
            f"CIFAR member {member}: 'data' is {data.dtype} with shape {data.shape}, "
            "expected uint8 (n, 3*s*s); the archive is corrupt"
        )
    if data.shape[0] > max_images or data.shape[1] > CIFAR_ROW_BYTES:
        raise DataError(
            f"CIFAR member {member} holds {data.shape[0]:,} images of {data.shape[1]:,} bytes; CIFAR has "
            f"at most {max_images:,} images of {CIFAR_ROW_BYTES} bytes there: the archive is corrupt"
        )
    side = int(round((data.shape[1] / 3) ** 0.5))
    if 3 * side * side != data.shape[1] or side == 0:
        raise DataError(f"CIFAR member {member}: rows of {data.shape[1]} bytes are not 3 square colour planes")
    if image_size is not None and side != image_size:
        raise DataError(f"CIFAR member {member} has {side}x{side} images, other members {image_size}x{image_size}")
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"CIFAR member {member}: {data.shape[0]} images but {labels.shape[0]} labels; corrupt archive")
    images = data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels, side


def member_images(member: str) -> int:
    """Most images the archive member `member` ('folder/name') holds in any CIFAR dataset (0: none)."""
    for source in CIFAR_SOURCES.values():
        if member == f"{source.folder}/{source.test_member}":
            return source.test_images
        if member in (f"{source.folder}/{m}" for m in source.train_members):
            return source.train_images
    return 0


def member_byte_limit(member: str) -> int:
    """Largest size the archive member `member` may declare: its images' pixels plus labels and names."""
    images = member_images(member)
    return images * (CIFAR_ROW_BYTES + _PER_IMAGE_OVERHEAD) + _SMALL_MEMBER_BYTES


def archive_byte_limit() -> int:
    """Most decompressed bytes a CIFAR archive may span: every member at its limit, plus headers and
    small extra entries (274,194,432 bytes)."""
    totals = [
        sum(member_byte_limit(f"{s.folder}/{m}") for m in (*s.train_members, s.test_member, s.meta_member))
        for s in CIFAR_SOURCES.values()
    ]
    return max(totals) + _MAX_MEMBERS * (_SMALL_MEMBER_BYTES + 1024)


class _BoundedStream:
    """Read-only view of a decompressed archive that refuses single reads above `max_read` bytes and
    positions beyond `limit`: no tar header (pax, long name) or member can make tarfile inflate more."""

    def __init__(self, raw: Any, limit: int, max_read: int, path: Path) -> None:
        """Wrap the seekable stream `raw`."""
        self.raw, self.limit, self.max_read, self.path = raw, limit, max_read, path

    def _refuse(self, what: str) -> DataError:
        """The error for a read or seek past the bounds."""
        return DataError(
            f"{self.path}: {what}, beyond what a CIFAR archive holds (at most {self.limit:,} bytes "
            f"in all, {self.max_read:,} per header); the archive is corrupt or malicious: delete it "
            "and fetch the real one"
        )

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (a size must be given and be at most `max_read`)."""
        if size is None or size < 0 or size > self.max_read:
            raise self._refuse(f"a header asks to read {f'{size:,}' if size and size > 0 else 'all'} bytes at once")
        if self.raw.tell() + size > self.limit:
            raise self._refuse("the entries reach past the archive limit")
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Seek (absolute or relative) within the limit."""
        target = offset if whence == 0 else self.raw.tell() + offset if whence == 1 else None
        if target is None or target > self.limit:
            raise self._refuse("the entries reach past the archive limit")
        return int(self.raw.seek(target))

    def tell(self) -> int:
        """The position in the decompressed stream."""
        return int(self.raw.tell())


@contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """A plain or gzip tar archive opened for reading through a _BoundedStream."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        with tarfile.open(fileobj=_BoundedStream(stream, archive_byte_limit(), _CHUNK, path), mode="r:") as tar:
            yield tar


def _read_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytearray:
    """The bytes of one member, read in chunks (its declared size was checked by _scan_members)."""
    handle = tar.extractfile(info)
    if handle is None:
        raise DataError(f"member {info.name} is not a regular file; the archive is not a CIFAR archive")
    blob = bytearray()
    while piece := handle.read(_CHUNK):
        blob += piece
    return blob


def _scan_members(tar: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    """The archive's entries by name, each size checked from its header before its data is read."""
    members: dict[str, tarfile.TarInfo] = {}
    for info in tar:
        if len(members) >= _MAX_MEMBERS:
            raise DataError(
                f"{path} lists more than {_MAX_MEMBERS} entries; a CIFAR archive has fewer than 10: "
                "it is not a CIFAR archive, fetch the real one"
            )
        name = info.name.removeprefix("./")
        if info.size > member_byte_limit(name):
            raise DataError(
                f"{path}: member {name[:80]} declares {info.size:,} bytes, more than the "
                f"{member_byte_limit(name):,} a CIFAR archive holds there; the archive is corrupt or "
                "malicious (nothing was decompressed): delete it and fetch the real one"
            )
        if name in members:
            raise DataError(
                f"{path} lists {name[:80]} twice; a CIFAR archive lists each file once: it is corrupt "
                "or malicious, fetch the real one"
            )
        members[name] = info
    return members


def _infer_name(members: Mapping[str, tarfile.TarInfo], path: Path) -> str:
    """Which CIFAR dataset an archive holds, from its folder name."""
    for candidate, source in CIFAR_SOURCES.items():
        if f"{source.folder}/{source.meta_member}" in members:
            return candidate
    raise DataError(
        f"{path} holds neither cifar-10-batches-py/ nor cifar-100-python/: it is not a CIFAR "
        "python archive; use cifar-10-python.tar.gz or cifar-100-python.tar.gz"
    )


def load_cifar(archive_path: PathLike, name: str | None = None, md5: str | None = None) -> dict[str, Any]:
    """Decode a CIFAR python tarball in memory into uint8 images (n,s,s,3), int64 labels and label names."""
    path = Path(archive_path)
    if not os.path.isfile(path):
        raise DataError(f"CIFAR archive {str(path)!r} does not exist; run fetch_cifar first or fix the path")
    if name is not None:
        cifar_source(name)
    if md5 is not None:
        expected = _check_md5(md5, "md5")
        actual = file_md5(path)
        if actual != expected:
            raise DataError(
                f"checksum mismatch for {path}: expected MD5 {expected}, got {actual}; refusing to "
                "unpickle it. Delete the file and fetch the archive again."
            )
    try:
        with _open_tar(path) as tar:
            members = _scan_members(tar, path)
            name = name or _infer_name(members, path)
            source = CIFAR_SOURCES[name]

            def read(member: str) -> dict[str, Any]:
                """Unpickle one archive member (a regular file) without touching the disk."""
                full = f"{source.folder}/{member}"
                info = members.get(full)
                if info is None or not info.isfile():
                    raise DataError(
                        f"{path} lacks the regular file {full}: it is not {source.filename} "
                        f"(or it is incomplete); fetch the {name} archive again"
                    )
                blob = _read_member(tar, info)
                return _text_keys(restricted_loads(blob, member_images(full) * CIFAR_ROW_BYTES or 65_536), full)

            meta = read(source.meta_member)
            if source.names_key not in meta:
                raise DataError(f"{source.meta_member} lacks {source.names_key!r}; not a {name} archive")
            label_names = _names(meta[source.names_key])
            xs, ys, size = [], [], None
            raw_train = [read(m) for m in source.train_members]
            raw_test = read(source.test_member)
            for member, batch in zip(source.train_members, raw_train, strict=True):
                x, y, size = _decode_batch(batch, source.label_key, member, size, source.train_images)
                xs.append(x)
                ys.append(y)
            x_test, y_test, size = _decode_batch(
                raw_test, source.label_key, source.test_member, size, source.test_images
            )
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise DataError(
            f"cannot read CIFAR archive {path} ({type(exc).__name__}: {exc}): it is truncated or "
            "corrupt. Delete it and fetch it again (fetch_cifar verifies the MD5)."
        ) from exc
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
            raise DataError(
                f"{name} {split} labels span {y.min()}..{y.max()} but there are {len(label_names)} "
                "label names; the archive is corrupt"
            )
    if name == "cifar100":
        out["y_train_coarse"] = np.concatenate(
            [np.asarray(b.get("coarse_labels", []), dtype=np.int64) for b in raw_train]
        )
        out["y_test_coarse"] = np.asarray(raw_test.get("coarse_labels", []), dtype=np.int64)
        out["coarse_label_names"] = _names(meta.get("coarse_label_names", []))
    return out


# --------------------------------------------------------------------------- offline real data
def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> dict[str, Any]:
    """scikit-learn's 8x8 digits (1,797 images, shipped offline) split stratified into train/test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"test_fraction={test_fraction!r} must lie strictly between 0 and 1 (e.g. 0.25)")
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float64),
        digits.target.astype(np.int64),
        test_size=float(test_fraction),
        random_state=int(seed),
        stratify=digits.target,
    )
    return {
        "name": "digits",
        "X_train": x_train,
        "y_train": y_train,
        "X_test": x_test,
        "y_test": y_test,
        "label_names": [str(d) for d in range(10)],
        "classes": [str(d) for d in range(10)],
    }


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
    chosen = [rng.choice(np.flatnonzero(inverse == c), size=int(k), replace=False) for c, k in enumerate(take) if k > 0]
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def _normalise(
    x_train: NDArray[Any], x_test: NDArray[Any], mode: str
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Flattened float32 train/test arrays normalised with statistics of the train split only, and the stats."""
    xtr = x_train.astype(np.float64)
    xte = x_test.astype(np.float64)
    if mode == "channel":
        if xtr.ndim == 3:  # grayscale (n,H,W): one channel
            xtr, xte = xtr[..., None], xte[..., None]
        if xtr.ndim != 4:
            raise DataError(
                f"normalize='channel' needs images (n,H,W,C) or (n,H,W), got shape {x_train.shape}; "
                "use normalize='standardize' for feature vectors"
            )
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


def prepare_arrays(
    X_train: NDArray[Any],
    y_train: NDArray[Any],
    X_test: NDArray[Any],
    y_test: NDArray[Any],
    *,
    classes: Sequence[int] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    normalize: str = "standardize",
    seed: int = 0,
    num_classes: int | None = None,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
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
            raise DataError(
                f"classes {missing} do not occur in the training labels "
                f"(present: {np.unique(y_train).tolist()}); fix the config's classes list"
            )
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
        "X_train": x_train_f,
        "y_train": ytr,
        "Y_train": eye[ytr],
        "X_test": x_test_f,
        "y_test": yte,
        "Y_test": eye[yte],
        "classes": chosen.astype(np.int64),
        "mean": mean,
        "std": std,
        "normalize": normalize,
        "seed": int(seed),
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
            raise DataError(
                f"save_prepared: value of {key!r} ({type(value).__name__}) is not a numeric or string "
                "array; convert it or leave it out"
            )
        payload[key] = arr
    target = Path(path)
    if target.suffix != ".npz":
        raise DataError(f"save_prepared: {str(target)!r} must end in .npz (numpy would append it otherwise)")
    with atomic_writer(target, suffix=".part") as fh:
        np.savez(fh, **payload)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds


def load_prepared(path: PathLike) -> dict[str, Any]:
    """Load arrays written by save_prepared (0-d values as Python scalars, string vectors as lists)."""
    target = Path(path)
    if not os.path.isfile(target):
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
    except (OSError, ValueError, EOFError, zlib.error) as exc:  # numpy's own text would suggest allow_pickle
        raise DataError(
            f"cannot read prepared dataset {target}: it is not an .npz archive of plain arrays "
            f"({type(exc).__name__}); delete it and rerun the preparation"
        ) from exc
    return out


__all__ = [
    "CIFAR_ROW_BYTES",
    "CIFAR_SOURCES",
    "CIFAR10_LABEL_NAMES",
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_LABEL_NAMES",
    "IDX_MAX_BYTES",
    "NORMALIZATIONS",
    "CifarSource",
    "DataError",
    "RestrictedUnpickler",
    "archive_byte_limit",
    "fetch_cifar",
    "file_md5",
    "find_fashion_mnist",
    "load_cifar",
    "load_digits_split",
    "load_fashion_mnist",
    "load_prepared",
    "member_byte_limit",
    "member_images",
    "prepare_arrays",
    "read_idx",
    "restricted_loads",
    "save_prepared",
    "stratified_subset",
]
