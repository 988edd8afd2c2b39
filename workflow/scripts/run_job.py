"""Snakemake entry: run one job (training or convex solve) of an experiment, write its JSON."""

import re
from pathlib import Path

from _common import run_logged

snakemake = globals()["snakemake"]

#: How convexbn.training names a checkpoint it refuses to resume because it ran more epochs than
#: now requested (convexbn.experiments itself discards checkpoints of a different configuration).
_STALE = re.compile(r"checkpoint '([^']+)' is at epoch")


def stale_checkpoint(exc: Exception, checkpoint_dir: Path) -> Path | None:
    """The checkpoint an error refuses to resume, if it lies in this experiment's checkpoint folder."""
    match = _STALE.search(str(exc))
    if not match:
        return None
    path = Path(match.group(1)).resolve()
    return path if path.parent == checkpoint_dir.resolve() and path.is_file() else None


def main(log) -> None:
    """Call convexbn.experiments.run_job with the prepared data and whitening of each dataset.

    Snakemake reruns a job when its config changed; a checkpoint that has run past the (now fewer)
    requested epochs cannot be resumed, so it is discarded (with a warning) and the job starts
    afresh. A checkpoint of the same config (a killed run) is resumed by convexbn.training itself.
    """
    from convexbn.experiments import run_job

    name, job = snakemake.wildcards.experiment, snakemake.wildcards.job
    datasets = list(snakemake.params.datasets)
    data = {ds: snakemake.input[f"data_{ds}"] for ds in datasets}
    whitening = {ds: snakemake.input[f"whiten_{ds}"] for ds in datasets}
    cfg = dict(snakemake.params.experiment)
    out = snakemake.output[0]
    log.info("experiment %s job %s on %s", name, job, datasets or "generated data")
    try:
        run_job(name, cfg, job, data, whitening, out)
    except ValueError as exc:
        stale = stale_checkpoint(exc, Path(out).parent.parent / "checkpoints")
        if stale is None:
            raise
        log.warning("discarding checkpoint %s: %s; starting afresh", stale, exc)
        stale.unlink()
        run_job(name, cfg, job, data, whitening, out)


run_logged(snakemake, "run_job", main)
