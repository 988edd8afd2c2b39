# Stages 4 and 5 — baselines and convex solves. One rule runs any job of the static grid that
# convexbn.experiments.grid expands from config; each job receives only its own parameters, so a
# new k, seed or dataset adds jobs without re-running the others. The job's kind (baselines or
# convex) picks the target and the resources. Baseline trainings checkpoint every epoch at the
# path this rule passes them, so a killed job resumes.


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
    conda:
        "../../envs/compute.yaml"
    threads: lambda wc: int(job_of(wc).params["threads"])
    resources:
        mem_mb=job_res("mem_mb"),
        runtime=job_res("runtime"),
        gpu=job_res("gpu"),
    params:
        job=lambda wc: job_of(wc).params,
        kind=lambda wc: job_of(wc).kind,
        datasets=lambda wc: list(job_of(wc).datasets),
        checkpoint=job_checkpoint,
    message:
        "Experiment {wildcards.experiment}: job {wildcards.job}"
    script:
        "../scripts/run_job.py"
