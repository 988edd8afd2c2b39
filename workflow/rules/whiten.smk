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


# The same, on the training subset of one seed of a repeated run.
use rule whiten_dataset as whiten_seed_subsets with:
    input:
        "results/data/{ds}/seed{seed}.npz",
    output:
        "results/whiten/{ds}/seed{seed}.npz",
    log:
        "results/logs/whiten/{ds}_seed{seed}.log",
    benchmark:
        "results/benchmarks/whiten/{ds}_seed{seed}.tsv"
    message:
        "Whitening dataset {wildcards.ds}, the training subset of seed {wildcards.seed} (centred SVD)"
