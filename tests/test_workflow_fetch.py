"""The fetch rule against a real HTTP server on 127.0.0.1 (tests/cifar_server.py).

Each case runs `snakemake results/raw/cifar10.tar.gz` in a scratch copy of the workflow, so the
real rule, script and convexbn.data.fetch_cifar are exercised: a good archive, a wrong checksum,
a truncated transfer, an unreachable server, a transient failure that a retry fixes and a local
archive. Failures must say what went wrong and leave no partial output behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cifar_server import CifarServer, closed_port_url, write_test_archives
from conftest import copy_workflow, run_snakemake, write_overlay

TARGET = "results/raw/cifar10.tar.gz"
LOG = "results/logs/fetch/fetch_cifar10.log"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A folder with generated CIFAR-format archives under their official names, and their MD5s."""
    folder = tmp_path_factory.mktemp("mirror")
    return folder, write_test_archives(folder, n_train=30, n_test=10, names=("cifar10",))


def fetch(tmp_path: Path, cifar10: dict[str, Any], **fetch_cfg: Any) -> tuple[Any, Path]:
    """Run the fetch rule for CIFAR-10 with the given data.cifar10 and fetch settings."""
    wf = copy_workflow(tmp_path / "wf")
    overlay = {
        "data": {"cifar10": {"synthetic": None, **cifar10}},
        "fetch": {"retries": 0, "backoff": 0.0, "timeout": 5, "job_retries": 0, **fetch_cfg},
    }
    cfg = write_overlay(tmp_path / "fetch.yaml", overlay)
    proc = run_snakemake(wf, TARGET, "--cores", "1", "--configfile", "config/ci.yaml", str(cfg), timeout=180)
    return proc, wf


def assert_clean_failure(proc: Any, wf: Path, *phrases: str) -> None:
    """The run failed, its log says why, and neither the archive nor a partial file is left."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    log = (wf / LOG).read_text()
    for phrase in phrases:
        assert phrase in log, f"{phrase!r} not in the fetch log:\n{log[-3000:]}"
    raw = wf / "results" / "raw"
    leftovers = [p.name for p in raw.iterdir()] if raw.exists() else []
    assert leftovers == [], f"partial output left behind: {leftovers}"


def test_fetch_good_archive_is_verified_and_placed(tmp_path: Path, mirror: tuple[Path, dict[str, str]]) -> None:
    """A good download is placed at results/raw/cifar10.tar.gz with the expected MD5."""
    folder, md5s = mirror
    with CifarServer(folder) as server:
        proc, wf = fetch(tmp_path, {"url": server.url_for("cifar-10-python.tar.gz"), "md5": md5s["cifar10"]})
        assert server.requests == ["/cifar-10-python.tar.gz"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    from convexbn.data import file_md5

    assert file_md5(wf / TARGET) == md5s["cifar10"]
    assert "verified" in (wf / LOG).read_text()


def test_fetch_wrong_checksum_fails_without_output(tmp_path: Path, mirror: tuple[Path, dict[str, str]]) -> None:
    """Bytes that do not match the configured MD5 are refused and removed."""
    folder, md5s = mirror
    with CifarServer(folder, mode="corrupt") as server:
        proc, wf = fetch(tmp_path, {"url": server.url_for("cifar-10-python.tar.gz"), "md5": md5s["cifar10"]})
    assert_clean_failure(proc, wf, "MD5", md5s["cifar10"])


def test_fetch_truncated_transfer_fails_without_output(tmp_path: Path, mirror: tuple[Path, dict[str, str]]) -> None:
    """A connection closed mid-body is retried, then reported; nothing partial stays."""
    folder, md5s = mirror
    with CifarServer(folder, mode="truncate", fraction=0.3) as server:
        proc, wf = fetch(tmp_path, {"url": server.url_for("cifar-10-python.tar.gz"), "md5": md5s["cifar10"]}, retries=1)
        assert len(server.requests) == 2  # first attempt + one retry
    assert_clean_failure(proc, wf, "could not download cifar10", "after 2 attempt(s)")


def test_fetch_unreachable_server_fails_with_offline_help(tmp_path: Path, mirror: tuple[Path, dict[str, str]]) -> None:
    """Nothing listening: a clear error that says how to use a local archive instead."""
    _, md5s = mirror
    proc, wf = fetch(tmp_path, {"url": closed_port_url(), "md5": md5s["cifar10"]})
    assert_clean_failure(proc, wf, "could not download cifar10", "data.cifar10.archive")


def test_fetch_retry_recovers_from_a_transient_error(tmp_path: Path, mirror: tuple[Path, dict[str, str]]) -> None:
    """A 503 on the first request is retried and the archive arrives."""
    folder, md5s = mirror
    with CifarServer(folder, fail_first=1) as server:
        proc, wf = fetch(tmp_path, {"url": server.url_for("cifar-10-python.tar.gz"), "md5": md5s["cifar10"]}, retries=2)
        assert len(server.requests) == 2
    assert proc.returncode == 0, (wf / LOG).read_text()[-3000:]
    assert (wf / TARGET).is_file()


def test_fetch_local_archive_needs_no_network(tmp_path: Path, mirror: tuple[Path, dict[str, str]]) -> None:
    """data.cifar10.archive is copied (MD5 verified) instead of downloading from an unreachable URL."""
    folder, md5s = mirror
    proc, wf = fetch(
        tmp_path, {"url": closed_port_url(), "md5": md5s["cifar10"], "archive": str(folder / "cifar-10-python.tar.gz")}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (wf / TARGET).stat().st_size == (folder / "cifar-10-python.tar.gz").stat().st_size
