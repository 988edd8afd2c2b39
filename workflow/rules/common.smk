# Shared helpers: the static expansion of the experiment grid and the paths every stage uses.
# Only bookkeeping lives here; the experiments themselves are in convexbn.experiments.
import copy
from pathlib import Path

from convexbn import experiments as EXP

CIFAR = ("cifar10", "cifar100")


def res(kind, key):
    """One resource value (threads, mem_mb, runtime, gpu) of a kind of rule, from config.resources."""
    return config["resources"][kind][key]


def exp_cfg(name):
    """The configuration an experiment sees: the defaults overlaid by its own entry."""
    return {**copy.deepcopy(config["defaults"]), **copy.deepcopy(config["experiments"][name])}


#: Sub-key of an experiment read only by its figure rule: changing it re-plots, nothing else.
PLOT_KEY = "plot"


def job_cfg(name):
    """What jobs and aggregation of an experiment read: its config without the plot-only settings."""
    cfg = exp_cfg(name)
    cfg.pop(PLOT_KEY, None)
    return cfg


def enabled_experiments():
    """Names of the experiments switched on in config (in config order)."""
    return [n for n, e in config["experiments"].items() if e.get("enabled", True)]


def _expand_jobs():
    """{experiment: [(job id, kind), ...]} for every enabled experiment, from convexbn.experiments."""
    out = {}
    for name in enabled_experiments():
        cfg = exp_cfg(name)
        jobs = list(EXP.list_jobs(name, cfg))
        if len(set(jobs)) != len(jobs):
            raise WorkflowError(f"experiment {name!r}: list_jobs returned duplicate job ids {jobs}")
        out[name] = [(j, EXP.job_kind(name, cfg, j)) for j in jobs]
    return out


JOBS = _expand_jobs()


def job_kind(experiment, job):
    """'baselines' or 'convex' for one job (as the experiments module groups it)."""
    return dict(JOBS[experiment])[job]


def job_datasets(experiment, job):
    """Names of the prepared datasets one job reads."""
    return list(EXP.job_datasets(experiment, exp_cfg(experiment), job))


def job_outputs(kind=None):
    """Result JSONs of every enabled job (optionally only those of one kind)."""
    return [
        f"results/{e}/jobs/{j}.json"
        for e, jobs in JOBS.items()
        for j, k in jobs
        if kind is None or k == kind
    ]


def used_datasets():
    """Every dataset some enabled job reads, in first-use order."""
    seen = {}
    for e, jobs in JOBS.items():
        for j, _ in jobs:
            for ds in job_datasets(e, j):
                if ds not in config["datasets"]:
                    raise WorkflowError(
                        f"experiment {e!r} job {j!r} reads dataset {ds!r}, which is not defined "
                        f"under 'datasets:' in the config (defined: {sorted(config['datasets'])})"
                    )
                seen[ds] = True
    return list(seen)


def raw_input(ds):
    """The downloaded archive a prepared dataset is decoded from ([] when it needs none)."""
    kind = config["datasets"][ds]["kind"]
    return [f"results/raw/{kind}.tar.gz"] if kind in CIFAR else []


def all_data():
    """Prepared datasets and whitening caches of every dataset in use (archives come with them)."""
    dss = used_datasets()
    return [f"results/data/{d}.npz" for d in dss] + [f"results/whiten/{d}.npz" for d in dss]


def _table_units():
    """{table: (experiment, dataset or None)}: one table per synthetic experiment and one per
    (experiment, dataset) for real-data experiments, so that a dataset missing offline (CIFAR without
    internet) never blocks the tables and figures of the others under --keep-going."""
    units = {}
    for e in JOBS:
        if e in EXP.REAL_DATA_EXPERIMENTS:
            for ds in exp_cfg(e).get("datasets", []):
                units[f"{e}_{ds}"] = (e, ds)
        else:
            units[e] = (e, None)
    return units


TABLES = _table_units()


def table_cfg(table, plot=False):
    """Config of one table's experiment, restricted to the table's dataset (plot settings on request)."""
    name, ds = TABLES[table]
    cfg = exp_cfg(name) if plot else job_cfg(name)
    if ds is not None:
        cfg["datasets"] = [ds]
    return cfg


def table_jobs(table):
    """Job result JSONs aggregated into one table."""
    name, ds = TABLES[table]
    return [
        f"results/{name}/jobs/{j}.json"
        for j, _ in JOBS[name]
        if ds is None or ds in job_datasets(name, j)
    ]


def all_tables():
    """Aggregated CSV tables of every enabled experiment (per dataset for real-data experiments)."""
    return [f"results/tables/{t}.csv" for t in TABLES]


def figure_files(table):
    """Figure (PDF, PNG) and table (Markdown, LaTeX) files drawn from one aggregated table."""
    name, _ = TABLES[table]
    cfg = table_cfg(table)
    figs = [f"figures/{s}.{ext}" for s in EXP.figure_stems(name, cfg) for ext in ("pdf", "png")]
    tabs = [f"figures/{s}.{ext}" for s in EXP.table_stems(name, cfg) for ext in ("md", "tex")]
    return figs + tabs


def all_figures():
    """Every figure and rendered table of every enabled experiment."""
    return [f for t in TABLES for f in figure_files(t)]


def synthetic_cfg(source):
    """The synthetic-archive settings of a CIFAR source, or None for real data."""
    return config["data"][source].get("synthetic")


def fetch_input(wildcards):
    """A local archive to copy (generated or user-supplied); nothing when downloading."""
    if synthetic_cfg(wildcards.source):
        stem = f"results/raw/synthetic/{wildcards.source}"
        return {"archive": f"{stem}.tar.gz", "md5": f"{stem}.md5"}
    archive = config["data"][wildcards.source].get("archive")
    return {"archive": archive} if archive else {}


def data_source_cfg(ds):
    """The `data:` entry behind a dataset's kind (download settings / local folder), or {}."""
    return config["data"].get(config["datasets"][ds]["kind"], {})


def dataset_cfg(ds):
    """A dataset's config, marked synthetic when its CIFAR source is a generated archive."""
    cfg = copy.deepcopy(config["datasets"][ds])
    if data_source_cfg(ds).get("synthetic"):
        cfg["synthetic"] = True
    return cfg


def job_inputs(wildcards):
    """Prepared dataset and whitening cache of every dataset the job reads (named data_*/whiten_*)."""
    out = {}
    for ds in job_datasets(wildcards.experiment, wildcards.job):
        out[f"data_{ds}"] = f"results/data/{ds}.npz"
        out[f"whiten_{ds}"] = f"results/whiten/{ds}.npz"
    return out


def job_res(key):
    """A resource of a job, looked up by the job's kind (baselines or convex)."""
    return lambda wc: res(job_kind(wc.experiment, wc.job), key)


REPORT_DIR = Path(workflow.basedir) / "workflow" / "report"


def reported(path, experiment):
    """Wrap a figure/table file for the report, with its caption workflow/report/{stem}.rst."""
    stem = Path(path).stem
    caption = REPORT_DIR / f"{stem}.rst"
    kind = "tables" if path.endswith((".md", ".tex")) else "figures"
    return report(
        path,
        caption=str(caption) if caption.is_file() else None,
        category=experiment,
        subcategory=kind,
        labels={"file": Path(path).name, "kind": kind},
    )


wildcard_constraints:
    experiment=r"[A-Za-z0-9_.\-]+",
    table="|".join(TABLES),
    job=r"[A-Za-z0-9_.,=+\-]+",
    ds=r"[A-Za-z0-9_.\-]+",
    source="|".join(CIFAR),
