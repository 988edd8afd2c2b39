# Stage 3 — whiten: one centred SVD per prepared dataset, cached and reused by every convex job.


rule whiten_dataset:
    """Centred SVD (whitening) of one prepared dataset."""
    input:
        "results/data/{ds}.npz",
    output:
        "results/whiten/{ds}.npz",
    log:
        "results/logs/whiten/{ds}.log",
    benchmark:
        "results/benchmarks/whiten/{ds}.tsv"
    conda:
        "../../envs/compute.yaml"
    threads: res("whiten", "threads")
    resources:
        mem_mb=res("whiten", "mem_mb"),
        runtime=res("whiten", "runtime"),
    params:
        dataset=lambda wc: dataset_cfg(wc.ds),
    message:
        "Whitening dataset {wildcards.ds} (centred SVD)"
    script:
        "../scripts/whiten.py"
