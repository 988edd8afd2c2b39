# Stage 6b/7 — figures and rendered tables, registered for `snakemake --report`. Plotting only
# reads results/tables/{table}.csv, so changing a figure (or an experiment's `plot:`
# settings) re-runs only these rules. One rule per table because each has its own stems.


for _table, _t in TABLES.items():

    rule:
        name:
            f"figures_{_table}"
        input:
            table=f"results/tables/{_table}.csv",
        output:
            [reported(f, _t.experiment) for f in figure_files(_table)],
        log:
            f"results/logs/figures/{_table}.log",
        benchmark:
            f"results/benchmarks/figures/{_table}.tsv"
        conda:
            "../../envs/plots.yaml"
        threads: res("figures", "threads")
        resources:
            mem_mb=res("figures", "mem_mb"),
            runtime=res("figures", "runtime"),
        params:
            name=_t.experiment,
            dataset=_t.dataset,
            plot=_t.plot,
        message:
            f"Plotting table {_table}"
        script:
            "../scripts/figures.py"
