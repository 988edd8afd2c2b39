"""Snakemake entry: figures (PDF, PNG) and Markdown/LaTeX tables of one experiment from its CSV."""

from pathlib import Path

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Call convexbn.plots via convexbn.experiments.make_figures; check every promised file exists."""
    import matplotlib

    matplotlib.use("Agg")
    from convexbn.experiments import make_figures

    name = snakemake.params.name
    out_dir = Path(snakemake.output[0]).parent
    log.info("plotting %s from %s into %s", name, snakemake.input.table, out_dir)
    make_figures(name, dict(snakemake.params.experiment), snakemake.input.table, str(out_dir))
    missing = [f for f in snakemake.output if not Path(f).is_file()]
    if missing:
        raise RuntimeError(f"make_figures({name!r}) did not write {missing}; figure_stems/table_stems "
                           "and make_figures disagree")


run_logged(snakemake, "figures", main)
