"""Snakemake entry: collect one table's job JSONs into results/tables/{table}.csv."""

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Call convexbn.experiments.runner.aggregate."""
    from convexbn.experiments.runner import aggregate

    name = snakemake.params.name
    log.info("aggregating %d job results of %s", len(snakemake.input), name)
    aggregate(name, list(snakemake.input), snakemake.output[0])


run_logged(snakemake, "aggregate", main)
