# convexbn — the reproduction pipeline. Thin on purpose: config + schema validation, the stage
# rule files and the target rules. All computation lives in the `convexbn` package (see
# workflow/scripts/, one thin entry script per stage). Usage: config/README.md.
import os

from snakemake.utils import min_version, validate

from convexbn.experiments.grid import non_finite_numbers

min_version("9.0")


configfile: "config/config.yaml"


# Fails before any job starts, naming the bad key or value; also fills in schema defaults.
validate(config, "workflow/schemas/config.schema.yaml")
# JSON Schema bounds let NaN through (every comparison with NaN is false): reject it (and inf) here.
_non_finite = non_finite_numbers(config)
if _non_finite:
    raise WorkflowError(
        f"config keys {', '.join(_non_finite)} are NaN or infinite; give finite numbers"
    )


# MOSEK reads its licence location when first imported; pass it on to cluster jobs when set.
if os.environ.get("MOSEKLM_LICENSE_FILE"):

    envvars:
        "MOSEKLM_LICENSE_FILE",


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/whiten.smk"
include: "workflow/rules/jobs.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/claims.smk"


localrules:
    all,
    data,
    baselines,
    convex,
    tables,
    figures,
    claims,


rule all:
    """Everything: tables and figures of every enabled experiment."""
    input:
        all_tables(),
        all_figures(),
        CLAIMS_OUTPUTS,
    default_target: True


rule data:
    """Downloaded archives, prepared datasets and their whitening caches."""
    input:
        all_data(),


rule baselines:
    """All non-convex baseline trainings (SGD, GD, Adam, ...)."""
    input:
        job_outputs("baselines"),


rule convex:
    """All convex solves (CVXPY and the fast solver)."""
    input:
        job_outputs("convex"),


rule tables:
    """Tidy CSV tables under results/tables/."""
    input:
        all_tables(),


rule figures:
    """Figures (PDF + PNG) and Markdown/LaTeX tables under figures/."""
    input:
        all_figures(),


rule claims:
    """The claims scoreboard (figures/claims.md, .tex) and RESULTS.md."""
    input:
        CLAIMS_OUTPUTS,
