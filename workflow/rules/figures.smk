# Stage 6b/7 — figures and rendered tables, registered for `snakemake --report`. Plotting only
# reads results/tables/{experiment}.csv, so changing a figure (or an experiment's `plot:`
# settings) re-runs only these rules. One rule per experiment because each has its own stems.


for _exp in JOBS:

    rule:
        name:
            f"figures_{_exp}"
        input:
            table=f"results/tables/{_exp}.csv",
        output:
            [reported(f, _exp) for f in figure_files(_exp)],
        log:
            f"results/logs/figures/{_exp}.log",
        benchmark:
            f"results/benchmarks/figures/{_exp}.tsv"
        message:
            f"Plotting experiment {_exp}"
        params:
            name=_exp,
            experiment=exp_cfg(_exp),
        threads: res("figures", "threads")
        resources:
            mem_mb=res("figures", "mem_mb"),
            runtime=res("figures", "runtime"),
        conda:
            "../../envs/plots.yaml"
        script:
            "../scripts/figures.py"
