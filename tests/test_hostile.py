"""Hostile and careless input: nothing replaced, nothing exhausted, every error one line.

Memory limits are checked through the sizes files *declare* (small files that announce huge
contents), slow servers through the bytes they managed to send, never through wall-clock bounds.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import struct
import sys
import tarfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helper lives next to this file

from cifar_server import CifarServer, write_test_archives  # noqa: E402

from convexbn import cli  # noqa: E402
from convexbn import data as D  # noqa: E402
from convexbn.arrangements import MAX_ARRANGEMENTS, parse_arrangement_spec, sample_arrangements  # noqa: E402
from convexbn.download import DataError, Limits, check_url, remove_stale_parts  # noqa: E402
from convexbn.io import OutputPathError, atomic_writer, check_output_path, write_json  # noqa: E402
from convexbn.programs import beta_max, solve_c2, solve_two_layer, zero_is_optimal  # noqa: E402
from convexbn.safe_pickle import py2_pickle  # noqa: E402
from convexbn.synthetic_cifar import make_cifar_archive  # noqa: E402
from convexbn.whitening import whiten  # noqa: E402

FAST = {"timeout": 2.0, "backoff": 0.0}
LONG_NAME = "n" * 300


def _listing(folder: Path) -> list[str]:
    """Every entry below `folder` (hidden files included), as relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Generated cifar10 archive under its official name, with its MD5."""
    folder = tmp_path_factory.mktemp("mirror")
    return folder, write_test_archives(folder, n_train=20, n_test=10, seed=1, image_size=8, names=("cifar10",))


# --------------------------------------------------------------------------- the CLI, table-driven
def _good_data(folder: Path) -> Path:
    """A small rank-2 data set X (10, 2), y (10,)."""
    rng = np.random.default_rng(0)
    path = folder / "good.npz"
    np.savez(path, X=rng.standard_normal((10, 2)), y=rng.standard_normal(10))
    return path


def _fifo(folder: Path) -> str:
    """A FIFO in the test's own folder (never a system device)."""
    path = folder / "pipe.json"
    os.mkfifo(path)
    return str(path)


def _text_file(folder: Path) -> str:
    """A text file posing as .npz."""
    path = folder / "text.npz"
    path.write_text("not numpy at all\n")
    return str(path)


def _object_array(folder: Path) -> str:
    """An .npz whose X is a pickled object array."""
    path = folder / "objects.npz"
    np.savez(path, X=np.array([{"a": 1}] * 10, dtype=object), y=np.zeros(10))
    return str(path)


def _tall_data(folder: Path) -> str:
    """100,000 samples of one feature: a width of 10^6 would need terabytes of activations."""
    path = folder / "tall.npz"
    np.savez(path, X=np.arange(100_000, dtype=np.float64)[:, None], y=np.zeros(100_000))
    return str(path)


# Each case: (id, sub-command argv with {data} / {out} / {dir} placeholders, needles, setup). `setup`
# returns a replacement for the data or out path; everything must end with exit 2, one stderr line,
# and the folder exactly as before.
Setup = Callable[[Path], str]
CASES: list[tuple[str, list[str], list[str], dict[str, Setup]]] = [
    ("out-fifo", ["solve", "--beta", "0.1"], ["special file"], {"out": _fifo}),
    ("out-is-data", ["solve", "--beta", "0.1"], ["also an input"], {"out": lambda d: str(d / "good.npz")}),
    (
        "out-is-data-other-spelling",
        ["train", "--beta", "0.1", "--width", "2"],
        ["also an input"],
        {"out": lambda d: str(d / "." / "good.npz")},
    ),
    ("out-dir", ["solve", "--beta", "0.1"], ["is a directory"], {"out": str}),
    ("out-under-a-file", ["solve", "--beta", "0.1"], ["is a file"], {"out": lambda d: str(d / "good.npz" / "r.json")}),
    ("out-name-300", ["solve", "--beta", "0.1"], ["longer than", "shorter"], {"out": lambda d: str(d / LONG_NAME)}),
    (
        "data-name-300",
        ["solve", "--beta", "0.1"],
        ["cannot be opened", "too long"],
        {"data": lambda d: str(d / LONG_NAME)},
    ),
    ("data-not-npz", ["solve", "--beta", "0.1"], ["not a NumPy .npz"], {"data": _text_file}),
    ("data-object-array", ["solve", "--beta", "0.1"], ["never unpickled"], {"data": _object_array}),
    ("data-fifo", ["solve", "--beta", "0.1"], ["not a file"], {"data": _fifo}),
    ("beta-minus-inf", ["solve", "--beta", "-inf"], ["--beta", "finite"], {}),
    ("beta-nan", ["solve", "--beta", "nan"], ["--beta", "finite"], {}),
    ("beta-inf", ["train", "--beta", "inf", "--width", "2"], ["--beta", "finite"], {}),
    ("width-1e11", ["train", "--beta", "0.1", "--width", "1e11"], ["--width", "limit of 1,000,000"], {}),
    (
        "width-memory",
        ["train", "--beta", "0.1", "--width", "1000000"],
        ["--width", "GiB", "at most"],
        {"data": _tall_data},
    ),
    ("width-fraction", ["train", "--beta", "0.1", "--width", "2.5"], ["--width", "not an integer"], {}),
    ("seed-1e23", ["train", "--beta", "0.1", "--width", "2", "--seed", "1e23"], ["--seed", "limit"], {}),
    ("seed-solve-huge", ["solve", "--beta", "0.1", "--seed", str(2**64)], ["--seed", "limit"], {}),
    (
        "arrangements-1e9",
        ["solve", "--beta", "0.1", "--arrangements", "1000000000"],
        ["arrangements", f"{MAX_ARRANGEMENTS:,}", "memory"],
        {},
    ),
    ("truncate-above-rank", ["solve", "--beta", "0.1", "--truncate", "1000"], ["--truncate", "rank 2"], {}),
    ("solver-osqp", ["solve", "--beta", "0.1", "--solver", "OSQP"], ["OSQP", "second-order cones"], {}),
    ("solver-highs", ["solve", "--beta", "0.1", "--solver", "highs"], ["second-order cones", "CLARABEL"], {}),
]
if Path("/proc/self").is_dir():  # a folder nobody can create files in, root included
    CASES.append(
        (
            "out-unwritable-folder",
            ["solve", "--beta", "0.1"],
            ["not writable"],
            {"out": lambda d: "/proc/convexbn-hostile-test/r.json"},
        )
    )


@pytest.mark.parametrize("argv,needles,setup", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_bad_input_is_one_line_exit_2_nothing_written(
    argv: list[str], needles: list[str], setup: dict[str, Setup], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every bad input of the table: exit 2, exactly one stderr line naming the problem, nothing written."""
    data = _good_data(tmp_path)
    data_arg = setup["data"](tmp_path) if "data" in setup else str(data)
    out_arg = setup["out"](tmp_path) if "out" in setup else str(tmp_path / "result.json")
    before = {p: (p.stat().st_mode, p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    rc = cli.main([*argv, "--data", data_arg, "--out", out_arg])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("convexbn: error: "), err
    assert "allow_pickle" not in err and "Traceback" not in err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    after = {p: (p.stat().st_mode, p.read_bytes() if p.is_file() else None) for p in tmp_path.rglob("*")}
    assert after == before  # nothing created, replaced or modified (a FIFO stays a FIFO)


def test_negative_values_reach_the_option() -> None:
    """`--beta -inf` is the value of --beta, not an unknown option; plain words are left alone."""
    assert cli.join_negative_values(["solve", "--beta", "-inf", "--out", "x"]) == ["solve", "--beta=-inf", "--out", "x"]
    assert cli.join_negative_values(["--beta", "-1e5"]) == ["--beta=-1e5"]
    assert cli.join_negative_values(["--out", "-x.json"]) == ["--out", "-x.json"]
    assert cli.join_negative_values(["--", "-inf"]) == ["--", "-inf"]


def test_beta_above_beta_max_is_the_certified_zero_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--beta 1e20: no conic solve, the zero network with status optimal and 0 neurons."""
    data, out = _good_data(tmp_path), tmp_path / "r.json"
    rc = cli.main(["solve", "--data", str(data), "--beta", "1e20", "--arrangements", "20", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = json.loads(out.read_text())
    assert res["neurons"] == 0 and res["certified"] and res["status"] == "optimal"
    y = np.load(data)["y"]
    assert res["objective"] == pytest.approx(0.5 * float(y @ y)) == res["network_objective"]


def test_beta_max_is_where_the_conic_optimum_becomes_zero() -> None:
    """At β_max CLARABEL's optimum equals the zero network's value; just below it, it is lower."""
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((12, 3)), rng.standard_normal(12)
    wh = whiten(X)
    Ut = wh.features(X)
    first = solve_two_layer(X, y, 1.0, arrangements=30, seed=1, solver="CLARABEL")
    masks = first.extra["arrangements"].masks
    bmax = beta_max(Ut, y, masks)
    zero_value = 0.5 * float(y @ y)
    assert zero_is_optimal(Ut, y, bmax, masks) and not zero_is_optimal(Ut, y, 0.99 * bmax, masks)
    assert not zero_is_optimal(Ut, y, 10 * bmax, masks, loss="hinge")  # certified for the squared loss only
    at = solve_two_layer(X, y, bmax, arr=first.extra["arrangements"], solver="CLARABEL")
    assert at.record.solver.startswith("zero") and at.neurons == 0 and at.objective == pytest.approx(zero_value)
    _, _, oracle_at = solve_c2(Ut, y, bmax, masks, solver="CLARABEL")  # the certificate is sound
    assert oracle_at.objective == pytest.approx(zero_value, rel=1e-6)
    below = solve_two_layer(X, y, 0.5 * bmax, arr=first.extra["arrangements"], solver="CLARABEL")
    assert below.record.solver == "CLARABEL" and below.objective < zero_value * (1 - 1e-6)
    import cvxpy as cp

    advice = cli.failure_advice("CLARABEL")
    assert "CLARABEL" not in advice and "--solver SCS" in advice  # SCS comes with cvxpy
    assert "ECOS" not in advice or "ECOS" in cp.installed_solvers()  # only installed solvers are suggested
    assert "--solver CLARABEL" in cli.failure_advice("SCS")


# --------------------------------------------------------------------------- output files
def test_atomic_writer_never_replaces_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputPathError, match="not a regular file"):
        write_json(fifo, {"a": 1})
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and _listing(tmp_path) == ["pipe"]  # no temp file left


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(mask: int, mode: int, tmp_path: Path) -> None:
    old = os.umask(mask)
    try:
        write_json(tmp_path / "r.json", {})
        with atomic_writer(tmp_path / "x.bin", suffix=".part") as fh:
            fh.write(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "x.bin").stat().st_mode) == mode


def test_check_output_path(tmp_path: Path) -> None:
    """Absent or regular files in a writable folder pass (missing folders are created later)."""
    (tmp_path / "old.json").write_text("{}")
    assert check_output_path(tmp_path / "old.json") == tmp_path / "old.json"
    assert check_output_path(tmp_path / "new" / "deeper" / "r.json").name == "r.json"
    with pytest.raises(OutputPathError, match="also an input"):
        check_output_path(tmp_path / "old.json", (str(tmp_path / "sub" / ".." / "old.json"),))
    with pytest.raises(OutputPathError, match="empty"):
        check_output_path("")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputPathError, match="not writable"):
            check_output_path(folder / "r.json")
    finally:
        folder.chmod(0o755)


# --------------------------------------------------------------------------- downloads
def test_announced_size_over_the_cap_is_refused_before_reading(mirror, tmp_path: Path) -> None:
    folder, md5s = mirror
    size = (folder / "cifar-10-python.tar.gz").stat().st_size
    with CifarServer(folder) as srv:
        with pytest.raises(DataError, match="fetch.max_bytes") as err:
            D.fetch_cifar(
                "cifar10",
                tmp_path,
                url=srv.url_for("cifar-10-python.tar.gz"),
                md5=md5s["cifar10"],
                max_bytes=size - 1,
                **FAST,
            )
        assert len(srv.requests) == 1  # not retried
    assert f"{size:,}" in str(err.value) and "\n" not in str(err.value)
    assert _listing(tmp_path) == []


def test_endless_stream_stops_at_the_byte_cap(mirror, tmp_path: Path) -> None:
    folder, md5s = mirror
    with CifarServer(folder, mode="endless", send_limit=64 << 20) as srv:
        with pytest.raises(DataError, match="more than fetch.max_bytes = 1,000,000"):
            D.fetch_cifar(
                "cifar10",
                tmp_path,
                url=srv.url_for("x"),
                md5=md5s["cifar10"],
                max_bytes=1_000_000,
                retries=2,
                **{"timeout": 2.0, "backoff": 0.0},
            )
        assert len(srv.requests) == 1
        assert srv.bytes_sent < 16 << 20  # stopped long before the server's own limit of 64 MiB
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("mode", ["drip", "drip_headers"])
def test_slow_drip_is_stopped_by_the_deadline(mode: str, mirror, tmp_path: Path) -> None:
    """timeout (per read) 5 s never fires on a byte every 20 ms; the per-attempt deadline does."""
    folder, md5s = mirror
    with CifarServer(folder, mode=mode, drip_interval=0.02, send_limit=3000) as srv:
        with pytest.raises(DataError, match="fetch.deadline = 0.4 s") as err:
            D.fetch_cifar(
                "cifar10",
                tmp_path,
                url=srv.url_for("cifar-10-python.tar.gz"),
                md5=md5s["cifar10"],
                retries=1,
                timeout=5.0,
                backoff=0.0,
                deadline=0.4,
            )
        assert len(srv.requests) == 2 and "after 2 attempt(s)" in str(err.value)
        assert 0 < srv.bytes_sent < 3000  # the server was cut off, it did not run out by itself
    assert _listing(tmp_path) == []


def test_file_urls_and_local_archives_are_bounded(mirror, tmp_path: Path) -> None:
    folder, md5s = mirror
    archive = folder / "cifar-10-python.tar.gz"
    size = archive.stat().st_size
    fifo = tmp_path / "src" / "fifo.tar.gz"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    dest = tmp_path / "raw"
    with pytest.raises(DataError, match="not an existing regular file"):
        D.fetch_cifar("cifar10", dest, url=fifo.as_uri(), md5=md5s["cifar10"])
    with pytest.raises(DataError, match="not an existing regular file"):
        D.fetch_cifar("cifar10", dest, archive=fifo, md5=md5s["cifar10"])
    for kwargs in ({"url": archive.as_uri()}, {"archive": archive}):
        with pytest.raises(DataError, match=f"has {size:,} bytes, more than fetch.max_bytes"):
            D.fetch_cifar("cifar10", dest, md5=md5s["cifar10"], max_bytes=size - 1, **kwargs)
    assert not dest.exists() or _listing(dest) == []
    assert (
        D.file_md5(D.fetch_cifar("cifar10", dest, url=archive.as_uri(), md5=md5s["cifar10"], max_bytes=size))
        == md5s["cifar10"]
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://",
        "http://host:99999/a.tar.gz",
        "file://remote/a.tar.gz",
        "ftp://host/a.tar.gz",
        "h" * 300,
    ],
)
def test_malformed_urls_are_one_line(url: str) -> None:
    with pytest.raises(DataError, match="data.cifar10.url") as err:
        check_url(url, "data.cifar10.url")
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"deadline": 0}, "fetch.deadline"),
        ({"max_bytes": 0}, "fetch.max_bytes"),
        ({"timeout": float("inf")}, "fetch.timeout"),
        ({"retries": True}, "fetch.retries"),
    ],
)
def test_limits_are_checked(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(DataError, match=key):
        Limits(**kwargs).check()


def test_stale_partial_downloads_are_removed_at_the_next_fetch(mirror, tmp_path: Path) -> None:
    folder, md5s = mirror
    stale = [tmp_path / ".cifar-10-python.tar.gz.k2j3h4.part", tmp_path / ".cifar-10-python.tar.gz.zz.part"]
    keep = [tmp_path / ".cifar-100-python.tar.gz.abc.part", tmp_path / "notes.part"]
    for path in stale + keep:
        path.write_bytes(b"partial")
    with CifarServer(folder) as srv:
        D.fetch_cifar("cifar10", tmp_path, url=srv.url_for("cifar-10-python.tar.gz"), md5=md5s["cifar10"], **FAST)
    assert _listing(tmp_path) == sorted(["cifar-10-python.tar.gz", *(p.name for p in keep)])
    assert remove_stale_parts(tmp_path / "cifar-100-python.tar.gz") == [keep[0]]


def test_over_long_names_in_data_paths_are_one_line(tmp_path: Path) -> None:
    """300-character names: a local archive, a CIFAR archive to load, a Fashion-MNIST folder."""
    long = tmp_path / LONG_NAME
    for call, pattern in (
        (lambda: D.fetch_cifar("cifar10", tmp_path / "raw", archive=long), "too long"),
        (lambda: D.load_cifar(long), "does not exist"),
        (lambda: D.load_fashion_mnist(long), "does not exist"),
        (lambda: D.load_prepared(long), "does not exist"),
        (lambda: D.fetch_cifar("c" * 300, tmp_path), "unknown CIFAR dataset"),
    ):
        with pytest.raises(DataError, match=pattern) as err:
            call()
        assert "\n" not in str(err.value)
    assert _listing(tmp_path) == []


def test_fetch_destination_that_is_a_fifo_is_refused(mirror, tmp_path: Path) -> None:
    _, md5s = mirror
    fifo = tmp_path / "cifar-10-python.tar.gz"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="special file"):
        D.fetch_cifar("cifar10", tmp_path, url="http://127.0.0.1:9/x", md5=md5s["cifar10"])
    with pytest.raises(DataError, match="longer than"):
        D.fetch_cifar("cifar10", tmp_path / f"{LONG_NAME}.tar.gz", url="http://127.0.0.1:9/x", md5=md5s["cifar10"])
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and _listing(tmp_path) == [fifo.name]


# --------------------------------------------------------------------------- archives that lie
class _Reduce:
    """Pickles to an arbitrary call (what a hand-made archive can contain)."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _batch(images: int, row: int = 3, seed: int = 0) -> bytes:
    """A CIFAR-10-format batch pickle of `images` rows of `row` bytes."""
    data = np.random.default_rng(seed).integers(0, 255, (images, row), dtype=np.uint8)
    return py2_pickle({b"data": data, b"labels": [i % 10 for i in range(images)]})


def _cifar10_tar(path: Path, replace: dict[str, bytes]) -> Path:
    """A small CIFAR-10-format archive (1x1-pixel images) with some members replaced."""
    members = {f"data_batch_{i}": _batch(4, seed=i) for i in range(1, 6)}
    members["test_batch"] = _batch(4, seed=9)
    members["batches.meta"] = py2_pickle({b"label_names": [str(i).encode() for i in range(10)]})
    members.update(replace)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_small_archive_loads(tmp_path: Path) -> None:
    out = D.load_cifar(_cifar10_tar(tmp_path / "ok.tar.gz", {}), "cifar10")
    assert out["X_train"].shape == (20, 1, 1, 3) and out["X_test"].shape == (4, 1, 1, 3)


def test_pickle_bomb_through_ndarray_is_refused(tmp_path: Path) -> None:
    """numpy.ndarray((230000, 3072), 'u1') would allocate 706 MB of uninitialised memory from 100 bytes."""
    bomb = py2_pickle({b"data": _Reduce(np.ndarray, ((230_000, 3072), "u1")), b"labels": [0]})
    assert len(bomb) < 200
    with pytest.raises(DataError, match=r"declares an array of 706,560,000 bytes \(shape \(230000, 3072\)"):
        D.restricted_loads(bomb)
    archive = _cifar10_tar(tmp_path / "bomb.tar.gz", {"data_batch_1": bomb})
    with pytest.raises(DataError, match="declares an array of 706,560,000 bytes"):
        D.load_cifar(archive, "cifar10", md5=D.file_md5(archive))  # a matching MD5 does not make it safe


def test_array_bytes_used_twice_are_refused() -> None:
    """Two arrays built from one memoised byte string would need twice the bytes the pickle holds."""
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's array reconstructor, as pickles name it
    raw = bytes(range(256)) * 40
    state = (1, (len(raw),), np.dtype(np.uint8), False, raw)
    twice = py2_pickle(
        {
            b"a": _Reduce(reconstruct, (np.ndarray, (0,), b"b"), state),
            b"b": _Reduce(reconstruct, (np.ndarray, (0,), b"b"), state),
        }
    )
    assert len(twice) < 2 * len(raw)
    with pytest.raises(DataError, match="declares an array"):
        D.restricted_loads(twice)
    once = py2_pickle({b"a": _Reduce(reconstruct, (np.ndarray, (0,), b"b"), state)})
    assert D.restricted_loads(once)[b"a"].tobytes() == raw


def test_object_arrays_are_refused() -> None:
    blob = py2_pickle(np.array([1, "a"], dtype=object))
    with pytest.raises(DataError, match="object"):
        D.restricted_loads(blob)


def test_more_images_than_a_cifar_batch_are_refused(tmp_path: Path) -> None:
    archive = _cifar10_tar(tmp_path / "big.tar.gz", {"data_batch_1": _batch(10_001)})
    with pytest.raises(DataError, match="10,001 images of 3 bytes; CIFAR has at most 10,000"):
        D.load_cifar(archive, "cifar10")


def _declare_size(tar_gz: Path, member: str, declared: int) -> Path:
    """Rewrite the tar header of `member` to declare `declared` bytes (data unchanged), re-gzip."""
    raw = bytearray(gzip.decompress(tar_gz.read_bytes()))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tar:
        offset = tar.getmember(member).offset
    header = raw[offset : offset + 512]
    header[124:136] = b"%011o\0" % declared
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    raw[offset : offset + 512] = header
    out = tar_gz.with_name("declared-" + tar_gz.name)
    out.write_bytes(gzip.compress(bytes(raw)))
    return out


@pytest.mark.parametrize(
    "member,declared", [("cifar-10-batches-py/data_batch_1", 2 << 30), ("cifar-10-batches-py/batches.meta", 50 << 20)]
)
def test_member_declaring_a_huge_size_is_refused_from_its_header(member: str, declared: int, tmp_path: Path) -> None:
    archive = _declare_size(_cifar10_tar(tmp_path / "a.tar.gz", {}), member, declared)
    assert archive.stat().st_size < 10_000
    with pytest.raises(DataError, match=f"declares {declared:,} bytes.*nothing was decompressed"):
        D.load_cifar(archive, "cifar10")


def test_pax_header_declaring_megabytes_is_refused(tmp_path: Path) -> None:
    """tarfile reads a pax header whole; a header of more than 1 MiB is refused before that read."""
    path = tmp_path / "pax.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.pax_headers = {"comment": "x" * (2 << 20)}
        tar.addfile(info, io.BytesIO(b""))
    assert path.stat().st_size < 20_000
    with pytest.raises(DataError, match="asks to read 2,09.* bytes at once"):
        D.load_cifar(path, "cifar10")


def test_archive_listing_a_member_twice_is_refused(tmp_path: Path) -> None:
    path = _cifar10_tar(tmp_path / "a.tar.gz", {})
    with tarfile.open(path, "r:gz") as src, tarfile.open(tmp_path / "twice.tar.gz", "w:gz") as dst:
        for info in src.getmembers():
            dst.addfile(info, src.extractfile(info))
        info = src.getmember("cifar-10-batches-py/test_batch")
        dst.addfile(info, src.extractfile(info))
    with pytest.raises(DataError, match="lists cifar-10-batches-py/test_batch twice"):
        D.load_cifar(tmp_path / "twice.tar.gz", "cifar10")


def test_archive_with_too_many_entries_is_refused(tmp_path: Path) -> None:
    archive = _cifar10_tar(tmp_path / "many.tar.gz", {f"junk_{i}": b"" for i in range(70)})
    with pytest.raises(DataError, match="more than 64 entries"):
        D.load_cifar(archive, "cifar10")


def _idx_gz(path: Path, dims: tuple[int, ...], payload: bytes) -> Path:
    """A gzip idx file of uint8 with the given header dimensions and data bytes."""
    path.write_bytes(gzip.compress(bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload))
    return path


def test_idx_header_declaring_a_huge_array_is_refused(tmp_path: Path) -> None:
    bomb = _idx_gz(tmp_path / "bomb-idx3-ubyte.gz", (4_000_000, 28, 28), bytes(1 << 20))
    assert bomb.stat().st_size < 10_000
    with pytest.raises(DataError, match="3,136,000,000 data bytes"):
        D.read_idx(bomb, 3)
    with pytest.raises(DataError, match="limit of 100"):
        D.read_idx(_idx_gz(tmp_path / "small.gz", (2, 10, 10), bytes(200)), 3, max_bytes=100)
    with pytest.raises(DataError, match="more than 4"):  # trailing data after the declared array
        D.read_idx(_idx_gz(tmp_path / "long.gz", (4,), bytes(5)), 1)
    np.testing.assert_array_equal(D.read_idx(_idx_gz(tmp_path / "ok.gz", (4,), bytes([1, 2, 3, 4])), 1), [1, 2, 3, 4])


def test_generator_stays_within_what_the_loader_accepts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="1 to 32"):
        make_cifar_archive(tmp_path / "x.tar.gz", "cifar10", 5, 5, 0, image_size=64)
    with pytest.raises(DataError, match="at most 50,000 training"):
        make_cifar_archive(tmp_path / "x.tar.gz", "cifar10", 50_001, 5, 0)
    assert _listing(tmp_path) == []


# --------------------------------------------------------------------------- arrangements
def test_arrangement_counts_are_bounded() -> None:
    with pytest.raises(ValueError, match=f"limit of {MAX_ARRANGEMENTS:,} patterns.*memory"):
        parse_arrangement_spec(1_000_000_000_000)
    with pytest.raises(ValueError, match="limit"):
        parse_arrangement_spec("1000000000")
    assert parse_arrangement_spec(MAX_ARRANGEMENTS) == MAX_ARRANGEMENTS
    A = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(ValueError, match=r"need 7,400 bytes.*more than the 1,000 allowed.*at most 13"):
        sample_arrangements(A, 100, memory=1_000)
    with pytest.raises(ValueError, match="limit"):
        sample_arrangements(A, MAX_ARRANGEMENTS + 1)
    assert sample_arrangements(A, 13, memory=1_000).masks.shape[0] == 50


# --------------------------------------------------------------------------- through the pipeline
def test_pipeline_refuses_a_pickle_bomb_with_a_matching_md5(tmp_path: Path) -> None:
    """`snakemake results/data/cifar10.npz` on a bomb archive whose MD5 is in the config: the fetch
    accepts the file (its checksum is right), preparation refuses it in one log line, no dataset."""
    from conftest import copy_workflow, run_snakemake, write_overlay

    bomb = py2_pickle({b"data": _Reduce(np.ndarray, ((230_000, 3072), "u1")), b"labels": [0]})
    archive = _cifar10_tar(tmp_path / "cifar-10-python.tar.gz", {"data_batch_1": bomb})
    wf = copy_workflow(tmp_path / "wf")
    overlay = {
        "data": {"cifar10": {"synthetic": None, "archive": str(archive), "md5": D.file_md5(archive)}},
        "datasets": {"cifar10": {"synthetic": False, "n_train": 10, "n_val": 0, "n_test": 4}},
    }
    proc = run_snakemake(
        wf,
        "results/data/cifar10.npz",
        "--cores",
        "1",
        "--configfile",
        "config/ci.yaml",
        str(write_overlay(tmp_path / "bomb.yaml", overlay)),
        timeout=240,
    )
    assert proc.returncode != 0, proc.stdout[-2000:]
    log = (wf / "results" / "logs" / "prepare" / "cifar10.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "declares an array of 706,560,000 bytes" in errors[0], log[-3000:]
    assert "Traceback" not in log
    assert not (wf / "results" / "data" / "cifar10.npz").exists()
