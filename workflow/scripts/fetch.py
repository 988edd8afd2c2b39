"""Snakemake entry: fetch one CIFAR archive (download, mirror or local file), MD5-checked, atomically."""

import logging
import sys
from pathlib import Path

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Call convexbn.data.fetch_cifar, which verifies the MD5 and renames into place atomically."""
    from convexbn.data import fetch_cifar
    from convexbn.download import DEFAULT_DEADLINE, DEFAULT_MAX_BYTES, DataError

    source = snakemake.wildcards.source
    cfg = dict(snakemake.params.source)
    fetch = snakemake.params.fetch
    out = Path(snakemake.output[0])
    archive, md5 = cfg.get("archive"), cfg.get("md5")
    if cfg.get("synthetic"):
        # Generated locally: its own checksum (written next to it) replaces the official one.
        archive, md5 = snakemake.input.archive, Path(snakemake.input.md5).read_text().strip()
        log.warning("%s: using the SYNTHETIC archive %s, not the real data set", source, archive)
    where = f"local archive {archive}" if archive else f"download from {cfg.get('url')}"
    log.info("%s: %s (expected MD5 %s)", source, where, md5 or "official")
    try:
        fetch_cifar(
            source,
            out,
            url=cfg.get("url"),
            md5=md5,
            archive=archive,
            retries=int(fetch["retries"]),
            timeout=float(fetch["timeout"]),
            backoff=float(fetch["backoff"]),
            max_bytes=int(fetch.get("max_bytes", DEFAULT_MAX_BYTES)),
            deadline=float(fetch.get("deadline", DEFAULT_DEADLINE)),
        )
    except DataError as exc:  # the message names the problem and the fix: one line, no traceback
        log.error("fetch_cifar %s: %s", source, exc)
        logging.shutdown()
        sys.exit(1)
    log.info("wrote %s (%d bytes)", out, out.stat().st_size)


run_logged(snakemake, "fetch", main, threads=False)
