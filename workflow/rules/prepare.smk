# Stage 2 — prepare: decode once to compact arrays (class/sample subsets, flattening,
# normalisation as configured), cached as results/data/{ds}.npz.


rule prepare_dataset:
    """Decode and subset one named dataset into a compact .npz."""
    input:
        lambda wc: raw_input(wc.ds),
    output:
        "results/data/{ds}.npz",
    log:
        "results/logs/prepare/{ds}.log",
    benchmark:
        "results/benchmarks/prepare/{ds}.tsv"
    conda:
        "../../envs/compute.yaml"
    threads: res("prepare", "threads")
    resources:
        mem_mb=res("prepare", "mem_mb"),
        runtime=res("prepare", "runtime"),
    params:
        dataset=lambda wc: dataset_cfg(wc.ds),
        source=lambda wc: data_source_cfg(wc.ds),
        replicate=None,
    message:
        "Preparing dataset {wildcards.ds}"
    script:
        "../scripts/prepare.py"


# The training/validation subsets of one seed of a repeated run (the test subset is the dataset's):
# convexbn.experiments.grid.data_stem names the seeds each job reads.
use rule prepare_dataset as prepare_seed_subsets with:
    output:
        "results/data/{ds}/seed{seed}.npz",
    log:
        "results/logs/prepare/{ds}_seed{seed}.log",
    benchmark:
        "results/benchmarks/prepare/{ds}_seed{seed}.tsv"
    params:
        dataset=lambda wc: dataset_cfg(wc.ds),
        source=lambda wc: data_source_cfg(wc.ds),
        replicate=lambda wc: int(wc.seed),
    message:
        "Preparing dataset {wildcards.ds}, the subsets of seed {wildcards.seed}"
