# Stage 6a — aggregate: one tidy CSV per experiment (per experiment and dataset for the real-data
# experiments) under results/tables/, one row per job plus trace rows.


rule aggregate:
    """Collect the job JSONs of one table into a tidy CSV."""
    input:
        lambda wc: table_jobs(wc.table),
    output:
        "results/tables/{table}.csv",
    log:
        "results/logs/aggregate/{table}.log",
    benchmark:
        "results/benchmarks/aggregate/{table}.tsv"
    conda:
        "../../envs/compute.yaml"
    threads: res("aggregate", "threads")
    resources:
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
    params:
        name=lambda wc: TABLES[wc.table].experiment,
    message:
        "Aggregating table {wildcards.table} into {output}"
    script:
        "../scripts/aggregate.py"
