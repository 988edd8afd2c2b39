"""Snakemake entry: decode and subset one named dataset into results/data/{ds}.npz."""

from _common import run_logged

snakemake = globals()["snakemake"]


def raw_location(ds_cfg: dict, source_cfg: dict, inputs: list[str]) -> str | None:
    """Where the raw data lives: the fetched archive, the configured folder, or None (built in)."""
    if inputs:
        return inputs[0]
    return source_cfg.get("dir")


def main(log) -> None:
    """Call convexbn.experiments.datasets.build_dataset."""
    from convexbn.experiments.datasets import build_dataset

    ds, cfg = snakemake.wildcards.ds, dict(snakemake.params.dataset)
    raw = raw_location(cfg, dict(snakemake.params.source), list(snakemake.input))
    log.info("dataset %s of kind %s (raw: %s): %s", ds, cfg.get("kind"), raw, cfg)
    build_dataset(ds, cfg, raw, snakemake.output[0])


run_logged(snakemake, "prepare", main)
