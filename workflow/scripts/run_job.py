"""Snakemake entry: run one job (training or convex solve) of an experiment, write its JSON."""

from _common import run_logged

snakemake = globals()["snakemake"]


def main(log) -> None:
    """Call convexbn.experiments.runner.run_job with the job's own parameters and its inputs.

    A baseline training resumes from its checkpoint when the checkpoint was written by the same
    configuration (a killed run); one left by another configuration is discarded by the experiment
    (convexbn.training raises CheckpointMismatch for it) and the job starts afresh.
    """
    from convexbn.experiments.grid import Job
    from convexbn.experiments.runner import run_job

    name, job_id = snakemake.wildcards.experiment, snakemake.wildcards.job
    datasets = tuple(snakemake.params.datasets)
    job = Job(name, job_id, snakemake.params.kind, datasets, dict(snakemake.params.job))
    data = {ds: snakemake.input[f"data_{ds}"] for ds in datasets}
    whitening = {ds: snakemake.input[f"whiten_{ds}"] for ds in datasets}
    log.info("experiment %s job %s on %s with %s", name, job_id, datasets or "generated data", job.params)
    run_job(job, data, whitening, snakemake.output[0], snakemake.params.checkpoint)


run_logged(snakemake, "run_job", main)
