# Shared helpers: the static expansion of the experiment grid and the paths every stage uses.
# Only bookkeeping lives here; the grid (every job with exactly its own parameters) comes from
# convexbn.experiments.grid, which imports nothing heavy, so the Snakefile parses fast.
import copy
from pathlib import Path

from convexbn.experiments import grid as GRID

CIFAR = ("cifar10", "cifar100")


def res(kind, key):
    """One resource value (threads, mem_mb, runtime, gpu) of a kind of rule, from config.resources."""
    return config["resources"][kind][key]


def _grid(build):
    """GRID.jobs/GRID.tables of the config, a config error turned into a WorkflowError."""
    try:
        return build(config)
    except ValueError as exc:
        raise WorkflowError(str(exc))


JOBS = _grid(GRID.jobs)
TABLES = _grid(GRID.tables)


def job_of(wc):
    """The Job behind a run_job output (experiment and job wildcards)."""
    return JOBS[(wc.experiment, wc.job)]


def job_outputs(kind=None):
    """Result JSONs of every enabled job (optionally only those of one kind)."""
    return [f"results/{e}/jobs/{j}.json" for (e, j), job in JOBS.items() if kind is None or job.kind == kind]


def used_datasets():
    """Every prepared data stem (`{ds}` or `{ds}/seed{s}`, see GRID.data_stem) some enabled job reads, in first-use order."""
    return list(dict.fromkeys(GRID.data_stem(job, ds) for job in JOBS.values() for ds in job.datasets))


def raw_input(ds):
    """The downloaded archive a prepared dataset is decoded from ([] when it needs none)."""
    kind = config["datasets"][ds]["kind"]
    return [f"results/raw/{kind}.tar.gz"] if kind in CIFAR else []


def all_data():
    """Prepared datasets and whitening caches of every dataset and seed in use (archives come with them)."""
    dss = used_datasets()
    return [f"results/data/{d}.npz" for d in dss] + [f"results/whiten/{d}.npz" for d in dss]


def table_jobs(table):
    """Job result JSONs aggregated into one table."""
    t = TABLES[table]
    return [f"results/{t.experiment}/jobs/{j.id}.json" for j in t.jobs]


def all_tables():
    """Aggregated CSV tables of every enabled experiment (per dataset for real-data experiments)."""
    return [f"results/tables/{t}.csv" for t in TABLES]


def figure_files(table):
    """Figure (PDF, PNG) and table (Markdown, LaTeX) files drawn from one aggregated table."""
    t = TABLES[table]
    figs = [f"figures/{s}.{ext}" for s in t.figures for ext in ("pdf", "png")]
    return figs + [f"figures/{s}.{ext}" for s in t.tables for ext in ("md", "tex")]


def all_figures():
    """Every figure and rendered table of every enabled experiment."""
    return [f for t in TABLES for f in figure_files(t)]


def synthetic_cfg(source):
    """The synthetic-archive settings of a CIFAR source, or None for real data."""
    return config["data"][source]["synthetic"]


def fetch_input(wildcards):
    """A local archive to copy (generated or user-supplied); nothing when downloading."""
    if synthetic_cfg(wildcards.source):
        stem = f"results/raw/synthetic/{wildcards.source}"
        return {"archive": f"{stem}.tar.gz", "md5": f"{stem}.md5"}
    archive = config["data"][wildcards.source]["archive"]
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
    """Prepared dataset and whitening cache (of the job's seed where it varies the data) of every dataset
    the job reads (named data_*/whiten_*)."""
    out = {}
    job = job_of(wildcards)
    for ds in job.datasets:
        out[f"data_{ds}"] = f"results/data/{GRID.data_stem(job, ds)}.npz"
        out[f"whiten_{ds}"] = f"results/whiten/{GRID.data_stem(job, ds)}.npz"
    return out


def job_checkpoint(wildcards):
    """Epoch checkpoint of a resumable baseline training (None for convex jobs)."""
    if job_of(wildcards).kind != "baselines":
        return None
    return f"results/{wildcards.experiment}/checkpoints/{wildcards.job}.pt"


def job_res(key):
    """A resource of a job, looked up by the job's kind (baselines or convex)."""
    return lambda wc: res(job_of(wc).kind, key)


REPORT_DIR = Path(workflow.basedir) / "workflow" / "report"


def reported(path, experiment):
    """Wrap a figure/table file for the report, with its family's caption workflow/report/{family}.rst."""
    caption = REPORT_DIR / f"{GRID.family_of(Path(path).stem)}.rst"
    kind = "tables" if path.endswith((".md", ".tex")) else "figures"
    return report(
        path,
        caption=str(caption) if caption.is_file() else None,
        category=experiment,
        subcategory=kind,
        labels={"file": Path(path).name, "kind": kind},
    )


wildcard_constraints:
    experiment="|".join(GRID.EXPERIMENT_NAMES),
    table="|".join(TABLES) or "no_table",
    job=r"[A-Za-z0-9_.,=+\-]+",
    ds=r"[A-Za-z0-9_.\-]+",
    seed=r"[0-9]+",
    source="|".join(CIFAR),
