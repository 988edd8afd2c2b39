# Stage 8 — the claims scoreboard (figures/claims.md, .tex; in the report) and RESULTS.md, both from
# results/tables/ only. A table whose data cannot be had when the run is planned (CIFAR with neither a
# local nor an earlier-downloaded archive, Fashion-MNIST not installed) is not an input: the scoreboard
# says "not run" for it and why, so an offline run still gets its scoreboard. After a run that
# downloaded CIFAR, the next `snakemake` call sees the archive and rewrites both files with it.
include: "claims_common.smk"


rule claims_scoreboard:
    """One row per claim of the paper with statistic, criterion, measured value and verdict."""
    input:
        tables=lambda wc: [f"results/tables/{t}.csv" for t in claims_tables()],
    output:
        md=report(
            "figures/claims.md",
            caption=str(REPORT_DIR / "claims.rst"),
            category="claims",
            subcategory="tables",
            labels={"file": "claims.md", "kind": "tables"},
        ),
        tex="figures/claims.tex",
    log:
        "results/logs/claims/scoreboard.log",
    benchmark:
        "results/benchmarks/claims/scoreboard.tsv"
    localrule: True
    conda:
        "../../envs/compute.yaml"
    threads: res("figures", "threads")
    resources:
        mem_mb=res("figures", "mem_mb"),
        runtime=res("figures", "runtime"),
    params:
        expected=list(TABLES),
        missing=claims_missing(),
    message:
        "Scoring the paper's claims from results/tables/"
    script:
        "../scripts/claims.py"


rule results_md:
    """RESULTS.md: scoreboard, experiment tables, commit, date, machine, config and compute time."""
    input:
        scoreboard="figures/claims.md",
        tables=lambda wc: [f"results/tables/{t}.csv" for t in claims_tables()],
        jobs=lambda wc: [j for t in claims_tables() for j in table_jobs(t)],
    output:
        "RESULTS.md",
    log:
        "results/logs/claims/results_md.log",
    benchmark:
        "results/benchmarks/claims/results_md.tsv"
    localrule: True
    conda:
        "../../envs/compute.yaml"
    threads: res("figures", "threads")
    resources:
        mem_mb=res("figures", "mem_mb"),
        runtime=res("figures", "runtime"),
    params:
        missing=claims_missing(),
        benchmarks=claims_benchmarks(),
        stages=stage_benchmarks(),
        configfiles_key=CONFIGFILES_KEY,
    message:
        "Writing RESULTS.md"
    script:
        "../scripts/results_md.py"
