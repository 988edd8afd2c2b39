# Stage 6a — aggregate: one tidy CSV per experiment (one row per job) under results/tables/.


rule aggregate:
    """Collect the job JSONs of one experiment into a tidy CSV table."""
    input:
        lambda wc: [f"results/{wc.experiment}/jobs/{j}.json" for j, _ in JOBS[wc.experiment]],
    output:
        "results/tables/{experiment}.csv",
    log:
        "results/logs/aggregate/{experiment}.log",
    benchmark:
        "results/benchmarks/aggregate/{experiment}.tsv"
    message:
        "Aggregating experiment {wildcards.experiment} into {output}"
    params:
        experiment=lambda wc: job_cfg(wc.experiment),
    threads: res("aggregate", "threads")
    resources:
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    conda:
        "../../envs/compute.yaml"
    script:
        "../scripts/aggregate.py"
