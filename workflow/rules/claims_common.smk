# Helpers of the claims stage (workflow/rules/claims.smk): which tables the scoreboard and RESULTS.md
# read, why the others are absent, and the run's config files. Bookkeeping only.
from convexbn.data import find_fashion_mnist

CLAIMS_OUTPUTS = ["figures/claims.md", "figures/claims.tex", "RESULTS.md"]


def table_unavailable(table):
    """Why a table's data cannot be had at planning time (None when it can)."""
    ds = TABLES[table].dataset
    if ds is None:
        return None
    kind = config["datasets"][ds]["kind"]
    src = config["data"].get(kind, {})
    if kind in CIFAR:
        archive = src.get("archive")
        if src.get("synthetic") or Path(f"results/raw/{kind}.tar.gz").is_file():
            return None
        if archive:
            return None if Path(archive).is_file() else f"the configured archive {archive} does not exist"
        return (
            f"no {kind} archive: results/raw/{kind}.tar.gz absent when the run was planned "
            f"(set data.{kind}.archive; after a download run snakemake again)"
        )
    if kind == "fashion_mnist":
        folder = src.get("dir")
        if Path(folder).is_dir() if folder else find_fashion_mnist() is not None:
            return None
        return "Fashion-MNIST files not found (apt-get install dataset-fashion-mnist, or set data.fashion_mnist.dir)"
    return None


def claims_tables():
    """Tables the scoreboard and RESULTS.md read: every configured table whose data is available."""
    return [t for t in TABLES if table_unavailable(t) is None]


def claims_missing():
    """{table: why} for the configured tables left out (they appear as 'not run')."""
    return {t: why for t in TABLES if (why := table_unavailable(t)) is not None}


def claims_benchmarks():
    """{table: Snakemake benchmark files of its jobs} (read when present)."""
    return {
        t: [f"results/benchmarks/{TABLES[t].experiment}/{Path(p).stem}.tsv" for p in table_jobs(t)]
        for t in claims_tables()
    }


def stage_benchmarks():
    """{stage: Snakemake benchmark files of every step RESULTS.md depends on}, from the archive to the scoreboard."""
    jobs = [j for t in claims_tables() for j in TABLES[t].jobs]
    stems = list(dict.fromkeys(GRID.data_stem(j, ds) for j in jobs for ds in j.datasets))
    kinds = list(dict.fromkeys(config["datasets"][Path(s).parts[0]]["kind"] for s in stems))
    fetch = [
        f"results/benchmarks/fetch/{step}_{kind}.tsv"
        for kind in kinds
        if kind in CIFAR
        for step in (("synthesize", "fetch") if synthetic_cfg(kind) else ("fetch",))
    ]
    out = {
        "fetch": fetch,
        "prepare": [f"results/benchmarks/prepare/{'_'.join(Path(s).parts)}.tsv" for s in stems],
        "whiten": [f"results/benchmarks/whiten/{'_'.join(Path(s).parts)}.tsv" for s in stems],
    }
    for t, files in claims_benchmarks().items():
        out.setdefault(TABLES[t].experiment, []).extend(files)
    out["aggregate"] = [f"results/benchmarks/aggregate/{t}.tsv" for t in claims_tables()]
    out["claims"] = ["results/benchmarks/claims/scoreboard.tsv"]
    return {stage: files for stage, files in out.items() if files}


def config_files():
    """Config files in merge order (the Snakefile's default, then each --configfile), relative when inside."""
    overlays = [str(c) for c in workflow.overwrite_configfiles]
    ordered = [str(c) for c in workflow.configfiles if str(c) not in overlays] + overlays
    base = Path(workflow.basedir).resolve()
    out = []
    for c in ordered:
        path = Path(c).resolve()
        out.append(str(path.relative_to(base)) if path.is_relative_to(base) else c)
    return out


#: Config key (not in the schema, set here after validation) carrying this invocation's config files to the
#: results_md script. Not a param, so an overlay that changes no result (a plot setting) does not rewrite
#: RESULTS.md; when RESULTS.md is rewritten, it names the files of the invocation that rewrote it.
CONFIGFILES_KEY = "_configfiles_of_this_run"
config[CONFIGFILES_KEY] = config_files()
