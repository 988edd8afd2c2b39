"""Snakemake entry: figures (PDF, PNG) and Markdown/LaTeX tables of one aggregated table."""

from pathlib import Path

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Call convexbn.experiments.runner.make_figures; check every promised file exists."""
    import matplotlib

    matplotlib.use("Agg")
    from convexbn.experiments.runner import make_figures

    name, dataset = snakemake.params.name, snakemake.params.dataset
    out_dir = Path(snakemake.output[0]).parent
    log.info("plotting %s (%s) from %s into %s", name, dataset, snakemake.input.table, out_dir)
    make_figures(name, dataset, dict(snakemake.params.plot), snakemake.input.table, str(out_dir))
    missing = [f for f in snakemake.output if not Path(f).is_file()]
    if missing:
        raise RuntimeError(
            f"make_figures({name!r}) did not write {missing}; the grid's figure stems "
            "(convexbn.experiments.grid.OUTPUT_FAMILIES) and the experiment's draw() disagree"
        )


run_logged(snakemake, "figures", main)
