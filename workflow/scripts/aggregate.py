"""Snakemake entry: collect one experiment's job JSONs into results/tables/{experiment}.csv."""

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Call convexbn.experiments.aggregate."""
    from convexbn.experiments import aggregate

    name = snakemake.wildcards.experiment
    log.info("aggregating %d job results of %s", len(snakemake.input), name)
    aggregate(name, dict(snakemake.params.experiment), list(snakemake.input), snakemake.output[0])


run_logged(snakemake, "aggregate", main)
