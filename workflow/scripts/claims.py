"""Snakemake entry: the claims scoreboard (figures/claims.md, .tex) from the aggregated tables."""

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Call convexbn.claims on the tables that were produced; the absent ones become 'not run'."""
    from convexbn import claims

    tables = claims.read_tables(list(snakemake.input.tables))
    board = claims.scoreboard(tables, list(snakemake.params.expected), dict(snakemake.params.missing))
    log.info("scoreboard from %d tables: %s", len(tables), claims.verdict_counts(board))
    claims.write_scoreboard(board, snakemake.output.md, snakemake.output.tex)


run_logged(snakemake, "claims", main)
