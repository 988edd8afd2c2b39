"""Snakemake entry: decode and subset one named dataset into results/data/{ds}.npz (or one seed's
subsets into results/data/{ds}/seed{s}.npz)."""

import logging
import sys

from _common import run_logged

snakemake = globals()["snakemake"]


def raw_location(ds_cfg: dict, source_cfg: dict, inputs: list[str]) -> str | None:
    """Where the raw data lives: the fetched archive, the configured folder, or None (built in)."""
    if inputs:
        return inputs[0]
    return source_cfg.get("dir")


def main(log) -> None:
    """Call convexbn.experiments.datasets.build_dataset."""
    from convexbn.data import DataError
    from convexbn.experiments.datasets import build_dataset

    ds, cfg = snakemake.wildcards.ds, dict(snakemake.params.dataset)
    raw = raw_location(cfg, dict(snakemake.params.source), list(snakemake.input))
    log.info("dataset %s of kind %s (raw: %s): %s", ds, cfg.get("kind"), raw, cfg)
    try:
        build_dataset(ds, cfg, raw, snakemake.output[0], snakemake.params.replicate)
    except DataError as exc:  # the message names the problem and the fix: one line, no traceback
        log.error("prepare %s: %s", ds, exc)
        logging.shutdown()
        sys.exit(1)


run_logged(snakemake, "prepare", main)
