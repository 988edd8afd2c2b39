"""Tests of convexbn.data against a real HTTP server on 127.0.0.1 and real/generated files."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helper lives next to this file

from cifar_server import CifarServer, closed_port_url, write_test_archives  # noqa: E402

from convexbn import data as D  # noqa: E402
from convexbn.safe_pickle import py2_pickle  # noqa: E402
from convexbn.synthetic_cifar import make_cifar_archive  # noqa: E402

FAST = {"timeout": 2.0, "backoff": 0.01}


def _listing(folder: Path) -> list[str]:
    """Every entry in `folder` (hidden temp files included)."""
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A folder holding generated cifar10/cifar100 archives under their official names, with MD5s."""
    folder = tmp_path_factory.mktemp("mirror")
    return folder, write_test_archives(folder, n_train=40, n_test=15, seed=3, image_size=32)


@pytest.fixture()
def server(mirror: tuple[Path, dict[str, str]]):
    """A running server over the mirror folder, stopped after the test."""
    with CifarServer(mirror[0]) as srv:
        yield srv


# --------------------------------------------------------------------------- fetching
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_fetch_over_http_round_trip(name, mirror, server, tmp_path):
    folder, md5s = mirror
    filename = D.CIFAR_SOURCES[name].filename
    dest = tmp_path / "raw"
    path = D.fetch_cifar(name, dest, url=server.url_for(filename), md5=md5s[name], **FAST)
    assert path == dest / filename
    assert _listing(dest) == [filename]  # no temp file left behind
    assert path.read_bytes() == (folder / filename).read_bytes()
    assert D.file_md5(path) == md5s[name]
    fetched, original = D.load_cifar(path, name, md5=md5s[name]), D.load_cifar(folder / filename)
    for key in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(fetched[key], original[key])
    assert fetched["X_train"].shape == (40, 32, 32, 3) and fetched["X_train"].dtype == np.uint8
    assert fetched["y_test"].shape == (15,) and fetched["y_test"].dtype == np.int64
    # A second call finds the verified file and does not download again.
    requests = len(server.requests)
    assert D.fetch_cifar(name, dest, url=server.url_for(filename), md5=md5s[name], **FAST) == path
    assert len(server.requests) == requests


def test_fetch_replaces_a_stale_destination(mirror, server, tmp_path):
    _, md5s = mirror
    stale = tmp_path / "cifar-10-python.tar.gz"
    stale.write_bytes(b"an old partial download")
    path = D.fetch_cifar("cifar10", tmp_path, url=server.url_for("cifar-10-python.tar.gz"), md5=md5s["cifar10"], **FAST)
    assert D.file_md5(path) == md5s["cifar10"]
    assert len(server.requests) == 1


def test_fetch_to_explicit_file_name(mirror, server, tmp_path):
    _, md5s = mirror
    target = tmp_path / "sub" / "c10.tar.gz"
    path = D.fetch_cifar("cifar10", target, url=server.url_for("cifar-10-python.tar.gz"), md5=md5s["cifar10"], **FAST)
    assert path == target and D.file_md5(target) == md5s["cifar10"]


def test_wrong_checksum_is_refused_and_nothing_is_left(mirror, server, tmp_path):
    _, md5s = mirror
    wrong = "0123456789abcdef0123456789abcdef"
    with pytest.raises(D.DataError) as err:
        D.fetch_cifar("cifar10", tmp_path / "raw", url=server.url_for("cifar-10-python.tar.gz"), md5=wrong, **FAST)
    message = str(err.value)
    assert wrong in message and md5s["cifar10"] in message  # expected and actual MD5
    assert "checksum mismatch" in message and "data.cifar10.archive" in message
    assert _listing(tmp_path / "raw") == []
    assert len(server.requests) == 1  # a checksum mismatch is not retried


def test_corrupted_download_is_refused(mirror, server, tmp_path):
    _, md5s = mirror
    server.mode = "corrupt"
    with pytest.raises(D.DataError, match="checksum mismatch") as err:
        D.fetch_cifar("cifar10", tmp_path, url=server.url_for("cifar-10-python.tar.gz"), md5=md5s["cifar10"], **FAST)
    assert md5s["cifar10"] in str(err.value)
    assert _listing(tmp_path) == []


def test_truncated_transfer_is_retried_then_refused(mirror, server, tmp_path):
    _, md5s = mirror
    server.mode = "truncate"
    with pytest.raises(D.DataError, match="truncated") as err:
        D.fetch_cifar(
            "cifar10", tmp_path, url=server.url_for("cifar-10-python.tar.gz"), md5=md5s["cifar10"], retries=2, **FAST
        )
    assert "after 3 attempt(s)" in str(err.value)
    assert len(server.requests) == 3
    assert _listing(tmp_path) == []


def test_short_file_fails_checksum_and_truncated_archive_fails_loading(mirror, server, tmp_path):
    folder, md5s = mirror
    server.mode, server.fraction = "short", 0.6
    with pytest.raises(D.DataError, match="checksum mismatch"):
        D.fetch_cifar(
            "cifar100", tmp_path / "raw", url=server.url_for("cifar-100-python.tar.gz"), md5=md5s["cifar100"], **FAST
        )
    assert _listing(tmp_path / "raw") == []
    truncated = tmp_path / "truncated.tar.gz"
    data = (folder / "cifar-100-python.tar.gz").read_bytes()
    truncated.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(D.DataError, match="truncated or corrupt"):
        D.load_cifar(truncated, "cifar100")
    with pytest.raises(D.DataError, match="checksum mismatch"):  # MD5 checked before any unpickling
        D.load_cifar(truncated, "cifar100", md5=md5s["cifar100"])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_unreachable_server_says_how_to_use_a_local_copy(name, tmp_path, caplog):
    url = closed_port_url(D.CIFAR_SOURCES[name].filename)
    with caplog.at_level("INFO", logger="convexbn.download"), pytest.raises(D.DataError) as err:
        D.fetch_cifar(name, tmp_path, url=url, md5=D.CIFAR_SOURCES[name].md5, retries=2, timeout=1.0, backoff=0.05)
    message = str(err.value)
    assert f"data.{name}.archive" in message and f"data.{name}.url" in message
    assert "after 3 attempt(s)" in message and url in message
    # the back-off doubles between attempts (0.05 s, then 0.1 s) and stops after the last one
    assert [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()] == [
        f"retrying {url} in 0.05 s",
        f"retrying {url} in 0.1 s",
    ]
    assert _listing(tmp_path) == []


def test_hanging_server_times_out(mirror, tmp_path):
    folder, md5s = mirror
    # The server would hold each request for an hour; only the client's timeout ends the attempts.
    with CifarServer(folder, mode="hang", hang_seconds=3600) as srv:
        with pytest.raises(D.DataError, match="data.cifar10.archive") as err:
            D.fetch_cifar(
                "cifar10",
                tmp_path,
                url=srv.url_for("cifar-10-python.tar.gz"),
                md5=md5s["cifar10"],
                retries=1,
                timeout=0.3,
                backoff=0.0,
            )
        assert "after 2 attempt(s)" in str(err.value) and "timed out" in str(err.value)
        assert len(srv.requests) == 2
    assert _listing(tmp_path) == []


def test_transient_server_errors_are_retried(mirror, tmp_path):
    folder, md5s = mirror
    with CifarServer(folder, fail_first=2) as srv:
        path = D.fetch_cifar(
            "cifar10", tmp_path, url=srv.url_for("cifar-10-python.tar.gz"), md5=md5s["cifar10"], retries=3, **FAST
        )
        assert len(srv.requests) == 3
    assert D.file_md5(path) == md5s["cifar10"]


def test_missing_file_is_not_retried(server, tmp_path):
    with pytest.raises(D.DataError, match="HTTP 404"):
        D.fetch_cifar("cifar10", tmp_path, url=server.url_for("nothing-here.tar.gz"), retries=3, **FAST)
    assert len(server.requests) == 1
    assert _listing(tmp_path) == []


def test_file_url_and_local_archive(mirror, tmp_path):
    folder, md5s = mirror
    source = folder / "cifar-10-python.tar.gz"
    via_url = D.fetch_cifar("cifar10", tmp_path / "a", url=source.as_uri(), md5=md5s["cifar10"], **FAST)
    via_archive = D.fetch_cifar("cifar10", tmp_path / "b", archive=source, md5=md5s["cifar10"])
    assert D.file_md5(via_url) == D.file_md5(via_archive) == md5s["cifar10"]
    assert via_archive == tmp_path / "b" / "cifar-10-python.tar.gz"
    # The archive already at its destination is verified in place.
    assert D.fetch_cifar("cifar10", tmp_path / "b", archive=via_archive, md5=md5s["cifar10"]) == via_archive


def test_local_archive_with_wrong_checksum_or_missing(mirror, tmp_path):
    folder, md5s = mirror
    with pytest.raises(D.DataError, match="checksum mismatch") as err:
        D.fetch_cifar("cifar10", tmp_path / "dest", archive=folder / "cifar-100-python.tar.gz", md5=md5s["cifar10"])
    assert md5s["cifar100"] in str(err.value)
    assert _listing(tmp_path / "dest") == []
    with pytest.raises(D.DataError, match="data.cifar100.archive"):
        D.fetch_cifar("cifar100", tmp_path / "dest", archive=tmp_path / "absent.tar.gz")
    # Without an md5 the official checksum applies, which a generated archive cannot match.
    with pytest.raises(D.DataError, match=D.CIFAR_SOURCES["cifar10"].md5):
        D.fetch_cifar("cifar10", tmp_path / "dest", archive=folder / "cifar-10-python.tar.gz")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"name": "cifar1000"}, "unknown CIFAR dataset 'cifar1000'"),
        ({"url": "ftp://example.org/cifar.tar.gz"}, "data.cifar10.url"),
        ({"url": "cifar-10-python.tar.gz"}, "not an http"),
        ({"md5": "xyz"}, "not an MD5 checksum"),
        ({"retries": -1}, "non-negative"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_fetch_validates_arguments(kwargs, pattern, tmp_path):
    args = {"name": "cifar10", "dest": tmp_path, **kwargs}
    with pytest.raises(D.DataError, match=pattern):
        D.fetch_cifar(**args)
    assert _listing(tmp_path) == []


def test_official_sources():
    assert D.CIFAR_SOURCES["cifar10"].url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert D.CIFAR_SOURCES["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert D.CIFAR_SOURCES["cifar100"].url == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert D.CIFAR_SOURCES["cifar100"].md5 == "eb9058c3a382ffc7106e4002c42a8d85"


# --------------------------------------------------------------------------- restricted unpickling
class _Evil:
    """Pickles to a call of os.system (what a malicious archive would contain)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _tar_with(path: Path, members: dict[str, bytes]) -> None:
    """Write a .tar.gz with the given members."""
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    for protocol in (0, 2, 4, 5):
        with pytest.raises(D.DataError, match=r"refusing to unpickle (posix|nt|os)\.system"):
            D.restricted_loads(pickle.dumps({"data": _Evil(marker)}, protocol=protocol))
    evil = pickle.dumps({b"data": _Evil(marker)}, protocol=4)
    archive = tmp_path / "evil.tar.gz"
    meta = py2_pickle({b"label_names": [b"a", b"b"]})
    _tar_with(archive, {"cifar-10-batches-py/batches.meta": meta, "cifar-10-batches-py/data_batch_1": evil})
    with pytest.raises(D.DataError, match="refusing to unpickle"):
        D.load_cifar(archive, "cifar10")
    with pytest.raises(D.DataError, match="checksum mismatch"):  # checksum checked before unpickling
        D.load_cifar(archive, "cifar10", md5="0" * 32)
    for other in (pickle.dumps(print), pickle.dumps(np.load), pickle.dumps(np.int64(3))):
        with pytest.raises(D.DataError, match="refusing"):
            D.restricted_loads(other)
    assert not marker.exists()


def test_restricted_unpickler_reads_python2_and_python3_arrays():
    arr = np.arange(24, dtype=np.uint8).reshape(2, 12)
    for blob in (py2_pickle({b"data": arr}), pickle.dumps({b"data": arr}, protocol=4)):
        out = D.restricted_loads(blob)
        np.testing.assert_array_equal(out[b"data"], arr)
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in py2_pickle(arr)  # old numpy spelling, as in CIFAR


def test_restricted_unpickler_reads_a_hand_written_python2_batch():
    # The byte stream Python 2 + old numpy wrote for {'data': uint8 [[7, 8, 9]], 'labels': [1, 2]}:
    # py2 str opcodes, numpy.core.multiarray, integer flags in the dtype arguments.
    blob = (
        b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03"
        b"K\x00\x85q\x04U\x01b\x87q\x05Rq\x06(K\x01K\x01K\x03\x86q\x07cnumpy\ndtype\nq\x08U\x02u1K\x00K\x01"
        b"\x87Rq\t(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89U\x03\x07\x08\x09tbU\x06labelsq\n"
        b"]q\x0b(K\x01K\x02eu."
    )
    out = D.restricted_loads(blob)
    assert set(out) == {b"data", b"labels"} and out[b"labels"] == [1, 2]
    assert out[b"data"].dtype == np.uint8 and out[b"data"].tolist() == [[7, 8, 9]]


def test_load_cifar_rejects_non_cifar_archives(tmp_path):
    archive = tmp_path / "other.tar.gz"
    _tar_with(archive, {"something/else": b"x"})
    with pytest.raises(D.DataError, match="not a CIFAR"):
        D.load_cifar(archive)
    with pytest.raises(D.DataError, match="lacks the regular file cifar-10-batches-py/batches.meta"):
        D.load_cifar(archive, "cifar10")
    with pytest.raises(D.DataError, match="does not exist"):
        D.load_cifar(tmp_path / "absent.tar.gz")


# --------------------------------------------------------------------------- synthetic archives
def _raw_members(path: Path) -> dict[str, object]:
    """Unpickle every pickled member of a generated archive (keys kept as bytes)."""
    out = {}
    with tarfile.open(path, "r:gz") as tar:
        for info in tar.getmembers():
            if info.isfile() and not info.name.endswith(".html"):
                out[info.name] = D.restricted_loads(tar.extractfile(info).read())
    return out


def test_make_cifar10_archive_layout(tmp_path):
    path = tmp_path / "c10.tar.gz"
    md5 = make_cifar_archive(path, "cifar10", n_train=23, n_test=7, seed=5, image_size=8)
    assert md5 == D.file_md5(path)
    assert make_cifar_archive(tmp_path / "again.tar.gz", "cifar10", 23, 7, 5, image_size=8) == md5
    assert make_cifar_archive(tmp_path / "other.tar.gz", "cifar10", 23, 7, 6, image_size=8) != md5
    assert [p for p in _listing(tmp_path) if p.startswith(".")] == []
    raw = _raw_members(path)
    folder = "cifar-10-batches-py/"
    assert set(raw) == {folder + m for m in (*D.CIFAR_SOURCES["cifar10"].train_members, "test_batch", "batches.meta")}
    sizes = []
    for i in range(1, 6):
        batch = raw[f"{folder}data_batch_{i}"]
        assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
        assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape[1] == 3 * 8 * 8
        assert isinstance(batch[b"labels"], list) and all(type(v) is int for v in batch[b"labels"])
        sizes.append(len(batch[b"labels"]))
    assert sizes == [5, 5, 5, 4, 4]
    meta = raw[folder + "batches.meta"]
    assert [n.decode() for n in meta[b"label_names"]] == list(D.CIFAR10_LABEL_NAMES)
    loaded = D.load_cifar(path, md5=md5)
    assert loaded["name"] == "cifar10" and loaded["X_train"].shape == (23, 8, 8, 3)
    # Decoding puts the red plane first: pixel (0,0) red equals byte 0 of the first row.
    first = raw[folder + "data_batch_1"][b"data"][0]
    assert loaded["X_train"][0, 0, 0].tolist() == [first[0], first[64], first[128]]
    assert sorted(np.bincount(loaded["y_train"], minlength=10).tolist())[0] >= 2  # every class present


def test_make_cifar100_archive_layout(tmp_path):
    path = tmp_path / "c100.tar.gz"
    md5 = make_cifar_archive(path, "cifar100", n_train=200, n_test=100, seed=1, image_size=8)
    raw = _raw_members(path)
    assert set(raw) == {"cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"}
    train = raw["cifar-100-python/train"]
    assert set(train) == {b"batch_label", b"filenames", b"fine_labels", b"coarse_labels", b"data"}
    assert set(raw["cifar-100-python/meta"]) == {b"fine_label_names", b"coarse_label_names"}
    loaded = D.load_cifar(path, "cifar100", md5=md5)
    assert loaded["X_test"].shape == (100, 8, 8, 3) and len(loaded["label_names"]) == 100
    np.testing.assert_array_equal(np.bincount(loaded["y_train"]), np.full(100, 2))
    np.testing.assert_array_equal(loaded["y_train_coarse"], loaded["y_train"] // 5)
    assert len(loaded["coarse_label_names"]) == 20


def test_synthetic_classes_are_learnable(tmp_path):
    path = tmp_path / "c10.tar.gz"
    make_cifar_archive(path, "cifar10", n_train=300, n_test=200, seed=0, image_size=32)
    d = D.load_cifar(path)
    p = D.prepare_arrays(d["X_train"], d["y_train"], d["X_test"], d["y_test"], normalize="channel")
    centroids = np.stack([p["X_train"][p["y_train"] == c].mean(axis=0) for c in range(10)])
    scores = p["X_test"] @ centroids.T - 0.5 * (centroids**2).sum(axis=1)
    accuracy = float((scores.argmax(axis=1) == p["y_test"]).mean())
    assert accuracy > 0.4  # chance is 0.1; a nearest-class-mean classifier reaches about 0.7


def test_make_cifar_archive_validates(tmp_path):
    with pytest.raises(D.DataError, match="unknown CIFAR dataset"):
        make_cifar_archive(tmp_path / "x.tar.gz", "mnist", 5, 5, 0)
    with pytest.raises(D.DataError, match="n_train"):
        make_cifar_archive(tmp_path / "x.tar.gz", "cifar10", -1, 5, 0)
    assert _listing(tmp_path) == []


# --------------------------------------------------------------------------- offline real data
def test_digits_split_is_stratified_and_seeded():
    a = D.load_digits_split(test_fraction=0.2, seed=1)
    b = D.load_digits_split(test_fraction=0.2, seed=1)
    c = D.load_digits_split(test_fraction=0.2, seed=2)
    assert a["X_train"].shape[1] == 64 and a["X_train"].shape[0] + a["X_test"].shape[0] == 1797
    assert abs(a["X_test"].shape[0] - 0.2 * 1797) <= 1
    np.testing.assert_array_equal(a["y_test"], b["y_test"])
    assert not np.array_equal(a["y_test"], c["y_test"])
    train_share = np.bincount(a["y_train"]) / a["y_train"].size
    test_share = np.bincount(a["y_test"]) / a["y_test"].size
    assert np.abs(train_share - test_share).max() < 0.01
    assert a["X_train"].max() == 16 and a["label_names"][3] == "3"
    with pytest.raises(D.DataError, match="test_fraction"):
        D.load_digits_split(test_fraction=1.5)


def _write_idx(path: Path, array: np.ndarray, *, magic: bytes | None = None, cut: int = 0) -> None:
    """Write an idx file of uint8 data (gzip when the name ends in .gz), optionally corrupted."""
    header = (magic or bytes([0, 0, 0x08, array.ndim])) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    payload = payload[: len(payload) - cut]
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)


def _fake_fashion(folder: Path, n_train: int = 12, n_test: int = 6) -> dict[str, np.ndarray]:
    """Write the four Fashion-MNIST idx files with random content; return the arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)),
        "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in D.FASHION_MNIST_FILES.items():
        _write_idx(folder / f"{stem}.gz", arrays[key])
    return arrays


def test_fashion_mnist_reader_on_written_idx_files(tmp_path):
    arrays = _fake_fashion(tmp_path / "fm")
    d = D.load_fashion_mnist(tmp_path / "fm")
    np.testing.assert_array_equal(d["X_train"], arrays["train_images"])
    np.testing.assert_array_equal(d["y_test"], arrays["test_labels"])
    assert d["X_train"].dtype == np.uint8 and d["y_train"].dtype == np.int64
    assert d["label_names"][9] == "Ankle boot"
    # An uncompressed copy is accepted too.
    raw = tmp_path / "raw"
    raw.mkdir()
    for stem in D.FASHION_MNIST_FILES.values():
        (raw / stem).write_bytes(gzip.decompress((tmp_path / "fm" / f"{stem}.gz").read_bytes()))
    np.testing.assert_array_equal(D.load_fashion_mnist(raw)["X_test"], arrays["test_images"])


def test_fashion_mnist_reader_rejects_bad_files(tmp_path):
    folder = tmp_path / "fm"
    arrays = _fake_fashion(folder)
    labels = folder / "train-labels-idx1-ubyte.gz"
    _write_idx(labels, arrays["train_labels"], magic=bytes([0, 0, 0x08, 3]))
    with pytest.raises(D.DataError, match="3 dimensions, expected 1"):
        D.load_fashion_mnist(folder)
    _write_idx(labels, arrays["train_labels"], magic=b"PK\x03\x04")
    with pytest.raises(D.DataError, match="is not an idx file"):
        D.load_fashion_mnist(folder)
    _write_idx(labels, arrays["train_labels"], cut=3)
    with pytest.raises(D.DataError, match="truncated or corrupt"):
        D.load_fashion_mnist(folder)
    _write_idx(labels, arrays["train_labels"][:-1])
    with pytest.raises(D.DataError, match="12 images but 11 labels"):
        D.load_fashion_mnist(folder)
    labels.write_bytes(gzip.compress(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 12) + bytes(range(12)))[:20])
    with pytest.raises(D.DataError, match="cannot decompress"):
        D.load_fashion_mnist(folder)
    labels.unlink()
    with pytest.raises(D.DataError, match="apt-get install dataset-fashion-mnist"):
        D.load_fashion_mnist(folder)
    with pytest.raises(D.DataError, match="does not exist"):
        D.load_fashion_mnist(tmp_path / "nowhere")


@pytest.mark.skipif(
    D.find_fashion_mnist() is None,
    reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_debian_files():
    d = D.load_fashion_mnist(D.find_fashion_mnist())
    assert d["X_train"].shape == (60000, 28, 28) and d["X_test"].shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(d["y_train"]), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(d["y_test"]), np.full(10, 1000))
    assert abs(d["X_train"].mean() / 255 - 0.2860) < 1e-3  # the well-known Fashion-MNIST pixel mean


# --------------------------------------------------------------------------- preparation
def _toy_images(n: int, seed: int, num_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images (n,4,4,3) with labels 0..num_classes-1."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8), np.arange(n) % num_classes


def test_prepare_arrays_subsets_and_one_hot():
    x_train, y_train = _toy_images(80, 0)
    x_test, y_test = _toy_images(40, 1)
    p = D.prepare_arrays(x_train, y_train, x_test, y_test, classes=[3, 1], n_train=10, n_test=6, seed=4)
    assert p["X_train"].shape == (10, 48) and p["X_train"].dtype == np.float32
    np.testing.assert_array_equal(p["classes"], [3, 1])
    assert np.bincount(p["y_train"]).tolist() == [5, 5] and np.bincount(p["y_test"]).tolist() == [3, 3]
    np.testing.assert_array_equal(p["Y_train"], np.eye(2, dtype=np.float32)[p["y_train"]])
    assert p["Y_train"].dtype == np.float32
    # Label 3 became class 0: find one original sample and check its new label.
    raw_rows = x_train.reshape(80, -1).astype(np.float64)
    first = p["X_train"][0].astype(np.float64) * p["std"] + p["mean"]
    match = np.flatnonzero(np.abs(raw_rows - first).max(axis=1) < 1e-3)
    assert match.size == 1 and {3: 0, 1: 1}[int(y_train[match[0]])] == p["y_train"][0]
    again = D.prepare_arrays(x_train, y_train, x_test, y_test, classes=[3, 1], n_train=10, n_test=6, seed=4)
    np.testing.assert_array_equal(again["X_train"], p["X_train"])
    other = D.prepare_arrays(x_train, y_train, x_test, y_test, classes=[3, 1], n_train=10, n_test=6, seed=5)
    assert not np.array_equal(other["X_train"], p["X_train"])
    wide = D.prepare_arrays(x_train, y_train, x_test, y_test, num_classes=6)
    assert wide["Y_test"].shape == (40, 6)


def test_prepare_arrays_normalisation_uses_train_statistics_only():
    x_train, y_train = _toy_images(60, 0)
    x_test, y_test = _toy_images(30, 1)
    shifted = (x_test.astype(np.int64) // 2 + 100).astype(np.uint8)
    a = D.prepare_arrays(x_train, y_train, x_test, y_test, normalize="channel")
    b = D.prepare_arrays(x_train, y_train, shifted, y_test, normalize="channel")
    np.testing.assert_array_equal(a["mean"], b["mean"])
    assert a["mean"].shape == (3,) and a["std"].shape == (3,)
    channels = a["X_train"].reshape(60, 4, 4, 3)
    np.testing.assert_allclose(channels.mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(channels.std(axis=(0, 1, 2)), 1, atol=1e-5)
    assert abs(float(b["X_test"].mean())) > 0.1  # test data is not re-centred on itself
    s = D.prepare_arrays(x_train.reshape(60, -1), y_train, x_test.reshape(30, -1), y_test)
    np.testing.assert_allclose(s["X_train"].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(s["X_train"].std(axis=0), 1, atol=1e-5)
    assert s["mean"].shape == (48,)
    n = D.prepare_arrays(x_train, y_train, x_test, y_test, normalize="none")
    np.testing.assert_array_equal(n["X_train"], x_train.reshape(60, -1).astype(np.float32))
    g = D.prepare_arrays(x_train[..., 0], y_train, x_test[..., 0], y_test, normalize="channel")
    assert g["mean"].shape == (1,) and g["X_train"].shape == (60, 16)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"normalize": "zscore"}, "normalize='zscore' is not one of"),
        ({"classes": [0, 9]}, r"classes \[9\] do not occur"),
        ({"n_train": 1000}, "only 60 are available"),
        ({"num_classes": 2}, "num_classes=2 is smaller"),
        ({"normalize": "channel", "flat": True}, "needs images"),
    ],
)
def test_prepare_arrays_errors(kwargs, pattern):
    x_train, y_train = _toy_images(60, 0)
    x_test, y_test = _toy_images(30, 1)
    if kwargs.pop("flat", False):
        x_train, x_test = x_train.reshape(60, -1), x_test.reshape(30, -1)
    with pytest.raises(D.DataError, match=pattern):
        D.prepare_arrays(x_train, y_train, x_test, y_test, **kwargs)


def test_stratified_subset_keeps_proportions():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    idx = D.stratified_subset(y, 10, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [5, 3, 2]
    assert np.all(np.diff(idx) > 0)


def test_save_and_load_prepared(tmp_path):
    x_train, y_train = _toy_images(20, 0)
    x_test, y_test = _toy_images(8, 1)
    p = D.prepare_arrays(x_train, y_train, x_test, y_test, label_names=["a", "b", "c", "d"], seed=3)
    path = tmp_path / "prepared" / "toy.npz"
    D.save_prepared(path, p)
    assert _listing(path.parent) == ["toy.npz"]
    q = D.load_prepared(path)
    assert set(q) == set(p)
    for key, value in p.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(q[key], value)
            assert q[key].dtype == value.dtype
        else:
            assert q[key] == value
    assert q["label_names"] == ["a", "b", "c", "d"] and q["normalize"] == "standardize" and q["seed"] == 3
    with pytest.raises(D.DataError, match="must end in .npz"):
        D.save_prepared(tmp_path / "toy.bin", p)
    with pytest.raises(D.DataError, match="not a numeric or string"):
        D.save_prepared(tmp_path / "bad.npz", {"x": [object()]})
    assert not (tmp_path / "bad.npz").exists() and [f for f in _listing(tmp_path) if f.startswith(".")] == []
    with pytest.raises(D.DataError, match="does not exist"):
        D.load_prepared(tmp_path / "absent.npz")
