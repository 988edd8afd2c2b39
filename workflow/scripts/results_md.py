"""Snakemake entry: RESULTS.md from the scoreboard, the tables, the job JSONs and the benchmark files."""

from pathlib import Path

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Gather the facts (git, machine, provenance, benchmark files) and write RESULTS.md atomically."""
    from convexbn import results_md as R
    from convexbn.claims import read_tables
    from convexbn.io import atomic_write_bytes, read_json

    tables = read_tables(list(snakemake.input.tables))
    bench = {t: R.benchmark_stats(paths) for t, paths in dict(snakemake.params.benchmarks).items()}
    text = R.render(
        scoreboard_md=Path(snakemake.input.scoreboard).read_text(encoding="utf-8"),
        missing=dict(snakemake.params.missing),
        tables=tables,
        bench=bench,
        stages=R.stage_times(dict(snakemake.params.stages)),
        docs=[read_json(p) for p in snakemake.input.jobs],
        configfiles=list(snakemake.config.get(snakemake.params.configfiles_key, [])),
        commit=R.git_state(),
        machine=R.local_machine(),
        now=R.now_utc(),
    )
    atomic_write_bytes(snakemake.output[0], text.encode())
    log.info("wrote %s (%d tables, %d job JSONs)", snakemake.output[0], len(tables), len(snakemake.input.jobs))


run_logged(snakemake, "results_md", main)
