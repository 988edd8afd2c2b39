"""Snakemake entry: centred SVD of one prepared dataset, cached as results/whiten/{ds}.npz."""

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Call convexbn.experiments.datasets.whiten_dataset."""
    from convexbn.experiments.datasets import whiten_dataset

    log.info("whitening %s", snakemake.input[0])
    whiten_dataset(snakemake.input[0], snakemake.output[0], dict(snakemake.params.dataset))


run_logged(snakemake, "whiten", main)
