"""Synthetic archives in CIFAR's exact python layout, for tests and offline demos of the whole pipeline.

The images are learnable (class templates plus noise), so a pipeline run on them exercises every stage
with non-trivial accuracy; every dataset built from them is marked synthetic.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from convexbn.data import CIFAR10_LABEL_NAMES, DataError, PathLike, cifar_source, file_md5
from convexbn.io import atomic_writer
from convexbn.safe_pickle import py2_pickle


def _class_templates(rng: np.random.Generator, num_classes: int, size: int) -> NDArray[np.float64]:
    """Per-class (size,size,3) signal: a coloured blob and a colour stripe at class-specific places."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    templates = np.empty((num_classes, size, size, 3))
    for c in range(num_classes):
        cy, cx = rng.uniform(0.2, 0.8, 2)
        radius = rng.uniform(0.12, 0.25)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
        angle = rng.uniform(0, np.pi)
        stripe = np.cos(2 * np.pi * rng.uniform(1.0, 3.0) * (np.cos(angle) * xx + np.sin(angle) * yy))
        blob_colour = rng.uniform(-1, 1, 3)
        stripe_colour = rng.uniform(-1, 1, 3)
        templates[c] = blob[..., None] * blob_colour + 0.5 * stripe[..., None] * stripe_colour
    templates -= templates.mean(axis=(1, 2), keepdims=True)  # class signal orthogonal to the background colour
    templates /= np.sqrt((templates**2).mean(axis=(1, 2, 3), keepdims=True)) + 1e-12  # unit RMS per class
    return templates


def _synthetic_images(
    rng: np.random.Generator, templates: NDArray[np.float64], labels: NDArray[np.int64], noise: float
) -> NDArray[np.uint8]:
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


def make_cifar_archive(
    path: PathLike, name: str, n_train: int, n_test: int, seed: int, image_size: int = 32, noise: float = 48.0
) -> str:
    """Write a synthetic archive in CIFAR's exact python layout with learnable classes; return its MD5."""
    source = cifar_source(name)
    for key, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise DataError(f"{key}={value!r} must be a non-negative integer")
    if not isinstance(image_size, (int, np.integer)) or not 1 <= image_size <= 32:
        raise DataError(
            f"image_size={image_size!r} must be an integer from 1 to 32 (CIFAR's size, the most load_cifar accepts)"
        )
    most_train = source.train_images * len(source.train_members)
    if n_train > most_train or n_test > source.test_images:
        raise DataError(
            f"n_train={n_train}, n_test={n_test}: a {name} archive holds at most {most_train:,} training "
            f"and {source.test_images:,} test images (the most load_cifar accepts); lower them"
        )
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
            members.append((member, py2_pickle(batch(x_train[idx], y_train[idx], f"training batch {i} of 5", offset))))
        members.append((source.test_member, py2_pickle(batch(x_test, y_test, "testing batch 1 of 1", 0))))
        meta = {
            b"num_cases_per_batch": int(parts[0].size),
            b"num_vis": 3 * int(image_size) ** 2,
            b"label_names": [n.encode() for n in CIFAR10_LABEL_NAMES],
        }
        members.append((source.meta_member, py2_pickle(meta)))
        members.append(("readme.html", b"<html><body>Synthetic CIFAR-10-format data (convexbn).</body></html>\n"))
    else:
        members.append(("train", py2_pickle(batch(x_train, y_train, "training batch 1 of 1", 0))))
        members.append(("test", py2_pickle(batch(x_test, y_test, "testing batch 1 of 1", 0))))
        meta = {
            b"fine_label_names": [f"synthetic_class_{c:03d}".encode() for c in range(100)],
            b"coarse_label_names": [f"synthetic_superclass_{c:02d}".encode() for c in range(20)],
        }
        members.append(("meta", py2_pickle(meta)))
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
