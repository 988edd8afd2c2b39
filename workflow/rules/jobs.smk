# Stages 4 and 5 — baselines and convex solves. One rule runs any job of the static grid that
# convexbn.experiments.list_jobs() expands from config; convexbn.experiments.job_kind() sorts the
# jobs into the `baselines` and `convex` targets and picks their resources. Baseline trainings
# checkpoint every epoch under results/{experiment}/checkpoints/ (convexbn.experiments derives the
# path from the output path) so a killed job resumes.


rule run_job:
    """One training run or convex solve; writes its metrics and provenance as JSON."""
    input:
        unpack(job_inputs),
    output:
        "results/{experiment}/jobs/{job}.json",
    log:
        "results/logs/{experiment}/{job}.log",
    benchmark:
        "results/benchmarks/{experiment}/{job}.tsv"
    message:
        "Experiment {wildcards.experiment}: job {wildcards.job}"
    params:
        experiment=lambda wc: job_cfg(wc.experiment),
        datasets=lambda wc: job_datasets(wc.experiment, wc.job),
    threads: lambda wc: int(exp_cfg(wc.experiment)["threads"])
    resources:
        mem_mb=job_res("mem_mb"),
        runtime=job_res("runtime"),
        gpu=job_res("gpu"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/run_job.py"
