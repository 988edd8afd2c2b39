"""The static job grid: every job of every enabled experiment with exactly the parameters it reads.

Light on purpose (standard library only, no numpy/torch) so the Snakefile parses fast. The
configuration it reads has been validated against ``workflow/schemas/config.schema.yaml``, which
also filled in every default: nothing here supplies a default value.

A :class:`Job` carries its own slice of the configuration (``params``), so adding one k to
``truncation.ks`` adds jobs without changing the parameters, and therefore the outputs, of any
existing job. A :class:`Table` is one aggregated CSV (one per synthetic experiment, one per
experiment and dataset for the real-data experiments) with the figure and table stems drawn from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

#: The seven experiments, in the order of the paper's claims.
EXPERIMENT_NAMES: tuple[str, ...] = (
    "equivalence",
    "closed_form",
    "whitening_invariance",
    "implicit_bias",
    "truncation",
    "main_comparison",
    "variants",
)

#: Experiments that read prepared real datasets (one table per dataset); the others generate data.
REAL_DATA_EXPERIMENTS: frozenset[str] = frozenset({"implicit_bias", "truncation", "main_comparison"})

#: Real-data experiments whose seed also draws the training/validation subsets (`data_stem`); the
#: others read the dataset's own subsets.
SEEDED_DATA_EXPERIMENTS: frozenset[str] = frozenset({"truncation", "main_comparison"})

#: Settings every job of an experiment reads (inherited from ``defaults``, overridable per experiment).
_COMMON = ("seed", "device", "threads")


@dataclass
class Job:
    """One job: its id (the output file stem), kind, the datasets it reads and its own parameters."""

    experiment: str
    id: str
    kind: str  # "baselines" (non-convex training) or "convex" (a convex solve at its core)
    datasets: tuple[str, ...]
    params: dict[str, Any]


@dataclass
class Table:
    """One aggregated CSV: the jobs it collects and the figure/table stems plotted from it."""

    id: str
    experiment: str
    dataset: str | None
    jobs: list[Job]
    figures: list[str]  # stems of figures/{stem}.pdf|png
    tables: list[str]  # stems of figures/{stem}.md|tex
    plot: dict[str, Any] = field(default_factory=dict)


def experiment_config(config: dict[str, Any], name: str) -> dict[str, Any]:
    """{**config['defaults'], **config['experiments'][name]}: what an experiment's jobs choose from."""
    if name not in EXPERIMENT_NAMES:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENT_NAMES)}")
    if name not in config.get("experiments", {}):
        raise ValueError(f"config has no experiments.{name} entry; add it (see config/config.yaml)")
    return {**config["defaults"], **config["experiments"][name]}


def _pick(cfg: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The named keys of an experiment config plus the common ones (seed, device, threads)."""
    return {k: cfg[k] for k in (*_COMMON, *keys)}


def data_stem(job: Job, ds: str) -> str:
    """Stem of the prepared data and whitening a job reads: `{ds}` or, for a seeded experiment, `{ds}/seed{s}`.

    The files are results/data/{stem}.npz and results/whiten/{stem}.npz.
    """
    return f"{ds}/seed{int(job.params['seed'])}" if job.experiment in SEEDED_DATA_EXPERIMENTS else ds


def k_label(k: int | str) -> str:
    """Job-id label of a truncation value ('full' for no truncation)."""
    return "full" if k == "full" else str(int(k))


def _equivalence(cfg: dict[str, Any]) -> list[Job]:
    """One convex reference job and one job per optimiser × width factor."""
    ref = _pick(cfg, "n", "d", "noise", "beta", "solver", "arrangements")
    jobs = [Job("equivalence", "convex", "convex", (), ref)]
    for opt in cfg["optimizers"]:
        if opt not in cfg["epochs"]:
            raise ValueError(
                f"config key experiments.equivalence.epochs has no entry for optimizer {opt!r}; "
                f"add epochs.{opt} or drop {opt!r} from optimizers"
            )
        for f in cfg["width_factors"]:
            p = {
                **ref,
                "optimizer": opt,
                "width_factor": float(f),
                "inits": cfg["inits"],
                "epochs": cfg["epochs"][opt],
                "lr": cfg["lr"].get(opt),
                "tol": cfg["tol"],
                "trace_points": cfg["trace_points"],
            }
            if opt == "sgd":
                p["batch_size"] = cfg["batch_size"]
            jobs.append(Job("equivalence", f"{opt}_m{float(f):g}x", "baselines", (), p))
    return jobs


def _closed_form(cfg: dict[str, Any]) -> list[Job]:
    """One job per output kind × β."""
    base = _pick(cfg, "n", "d", "noise", "classes", "solver", "gd")
    return [
        Job("closed_form", f"{out}_b{i}", "convex", (), {**base, "output": out, "beta": float(b)})
        for out in cfg["outputs"]
        for i, b in enumerate(cfg["betas"])
    ]


def _whitening_invariance(cfg: dict[str, Any]) -> list[Job]:
    """One job per data transform."""
    base = _pick(cfg, "n", "d", "noise", "beta", "solver", "arrangements", "width", "inits", "epochs", "lr")
    return [Job("whitening_invariance", t, "convex", (), {**base, "transform": t}) for t in cfg["transforms"]]


def _implicit_bias(cfg: dict[str, Any]) -> list[Job]:
    """A GD job and a convex job per dataset, both at β = beta_ratio · β_max on the arrangements of the convex job."""
    base = {**_pick(cfg, "n_train", "beta_ratio", "top_fraction"), "arrangements": cfg["convex"]["arrangements"]}
    jobs = []
    for ds in cfg["datasets"]:
        jobs.append(
            Job(
                "implicit_bias",
                f"gd_{ds}",
                "baselines",
                (ds,),
                {**base, "dataset": ds, "method": "gd", "width": cfg["width"], "gd": cfg["gd"]},
            )
        )
        jobs.append(
            Job(
                "implicit_bias",
                f"convex_{ds}",
                "convex",
                (ds,),
                {**base, "dataset": ds, "method": "convex", "convex": cfg["convex"]},
            )
        )
    return jobs


def _truncation(cfg: dict[str, Any]) -> list[Job]:
    """Per dataset: the validated SGD grid and one convex path (β/β_max on validation) per k."""
    jobs = []
    for ds in cfg["datasets"]:
        jobs.append(
            Job("truncation", f"sgd_{ds}", "baselines", (ds,), {**_pick(cfg, "sgd"), "dataset": ds, "method": "sgd"})
        )
        for k in cfg["ks"]:
            p = {
                **_pick(cfg, "arrangements", "beta_ratios", "convex", "predictor"),
                "dataset": ds,
                "method": "convex",
                "k": None if k == "full" else int(k),
            }
            jobs.append(Job("truncation", f"k{k_label(k)}_{ds}", "convex", (ds,), p))
    return jobs


#: Settings each main-comparison method reads (besides the common ones).
_MAIN_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": ("sgd",),
    "convex_full": ("arrangements", "beta_ratios", "predictor", "convex"),
    "convex_truncated": ("arrangements", "beta_ratios", "predictor", "convex"),
}


def _truncated_jobs(cfg: dict[str, Any], ds: str, seed: int, P: int | None = None) -> list[Job]:
    """One job per k of the truncated convex model (at P when given, as method convex_P): each solves its own
    β/β_max path; the choice across k is made on validation when the jobs are aggregated."""
    jobs = []
    for k in cfg["ks"]:
        p = {
            **_pick(cfg, *_MAIN_KEYS["convex_truncated"]),
            "dataset": ds,
            "method": "convex_truncated" if P is None else "convex_P",
            "seed": seed,
            "k": None if k == "full" else int(k),
        }
        stem = "convex_truncated" if P is None else f"convex_P{P}"
        if P is not None:
            p["P"] = P
        jobs.append(Job("main_comparison", f"{stem}_k{k_label(k)}_{ds}_s{seed}", "convex", (ds,), p))
    return jobs


def _main_comparison(cfg: dict[str, Any]) -> list[Job]:
    """Per dataset × method × seed: each method's validated grid, the truncated model one job per k; plus the
    truncated model at each P of p_sweep (first seed)."""
    jobs = []
    for ds in cfg["datasets"]:
        for method in cfg["methods"]:
            for s in cfg["seeds"]:
                if method == "convex_truncated":
                    jobs.extend(_truncated_jobs(cfg, ds, int(s)))
                    continue
                p = {**_pick(cfg, *_MAIN_KEYS[method]), "dataset": ds, "method": method, "seed": int(s)}
                kind = "baselines" if method == "sgd" else "convex"
                jobs.append(Job("main_comparison", f"{method}_{ds}_s{int(s)}", kind, (ds,), p))
        for P in cfg["p_sweep"]:
            if int(P) == int(cfg["arrangements"]) and "convex_truncated" in cfg["methods"]:
                continue  # the convex_truncated jobs of the first seed are this point
            jobs.extend(_truncated_jobs(cfg, ds, int(cfg["seeds"][0]), int(P)))
    return jobs


def _variants(cfg: dict[str, Any]) -> list[Job]:
    """One job per variant × random instance."""
    base = _pick(cfg, "beta", "inits", "local_search", "arrangements", "solver")
    return [
        Job("variants", f"{v}_i{i}", "convex", (), {**base, "variant": v, "instance": i, "size": cfg[v]})
        for v in cfg["variants"]
        for i in range(int(cfg["instances"]))
    ]


#: How each experiment expands its configuration into jobs.
JOB_LISTS: dict[str, Callable[[dict[str, Any]], list[Job]]] = {
    "equivalence": _equivalence,
    "closed_form": _closed_form,
    "whitening_invariance": _whitening_invariance,
    "implicit_bias": _implicit_bias,
    "truncation": _truncation,
    "main_comparison": _main_comparison,
    "variants": _variants,
}

#: (figure families, table families) per experiment; real-data stems get a `_{dataset}` suffix.
#: Report captions live in workflow/report/{family}.rst, one per family.
OUTPUT_FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "equivalence": (("equivalence_objective_vs_iteration",), ("equivalence_table",)),
    "closed_form": (("closed_form_objective_vs_beta",), ("closed_form_table",)),
    "whitening_invariance": (("whitening_invariance_objectives",), ("whitening_invariance_table",)),
    "implicit_bias": (("implicit_bias_energy",), ("implicit_bias_table",)),
    "truncation": (("truncation_accuracy_vs_k",), ("truncation_table", "truncation_grid_table")),
    "main_comparison": (
        ("main_test_accuracy_vs_epoch", "main_test_accuracy_vs_time"),
        ("main_accuracy_table", "main_grid_table", "main_knobs_table"),
    ),
    "variants": (("variants_objectives",), ("variants_table",)),
}


def family_of(stem: str) -> str:
    """The figure/table family of an output stem (its dataset suffix removed)."""
    for figs, tabs in OUTPUT_FAMILIES.values():
        for fam in (*figs, *tabs):
            if stem == fam or stem.startswith(fam + "_"):
                return fam
    raise ValueError(f"{stem!r} is not an output stem of any experiment")


def experiment_jobs(config: dict[str, Any], name: str) -> list[Job]:
    """Every job of one experiment, with duplicate ids rejected."""
    jobs = JOB_LISTS[name](experiment_config(config, name))
    ids = [j.id for j in jobs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"experiments.{name} expands to duplicate jobs {dup}; remove the repeated list entries")
    for job in jobs:
        for ds in job.datasets:
            if ds not in config["datasets"]:
                raise ValueError(
                    f"experiments.{name} reads dataset {ds!r}, which is not defined under 'datasets:' "
                    f"(defined: {sorted(config['datasets'])}); define it or drop it from "
                    f"experiments.{name}.datasets"
                )
    return jobs


def enabled_experiments(config: dict[str, Any]) -> list[str]:
    """Experiments present and enabled in the config, in the paper's order."""
    exps = config.get("experiments", {})
    return [n for n in EXPERIMENT_NAMES if n in exps and exps[n]["enabled"]]


def tables(config: dict[str, Any]) -> dict[str, Table]:
    """{table id: Table} of every enabled experiment (per dataset for the real-data experiments)."""
    out: dict[str, Table] = {}
    for name in enabled_experiments(config):
        jobs = experiment_jobs(config, name)
        figs, tabs = OUTPUT_FAMILIES[name]
        plot = config["experiments"][name]["plot"]
        if name not in REAL_DATA_EXPERIMENTS:
            out[name] = Table(name, name, None, jobs, list(figs), list(tabs), plot)
            continue
        for ds in config["experiments"][name]["datasets"]:
            mine = [j for j in jobs if ds in j.datasets]
            out[f"{name}_{ds}"] = Table(
                f"{name}_{ds}", name, ds, mine, [f"{f}_{ds}" for f in figs], [f"{t}_{ds}" for t in tabs], plot
            )
    return out


def jobs(config: dict[str, Any]) -> dict[tuple[str, str], Job]:
    """{(experiment, job id): Job} of every enabled experiment."""
    return {(j.experiment, j.id): j for name in enabled_experiments(config) for j in experiment_jobs(config, name)}


def find_job(config: dict[str, Any], experiment: str, job_id: str) -> Job:
    """One job of an enabled experiment by id; an error listing the experiment's jobs otherwise."""
    mine = {j.id: j for j in experiment_jobs(config, experiment)}
    if job_id not in mine:
        raise ValueError(
            f"experiment {experiment}: job {job_id!r} is not one of its jobs "
            f"({', '.join(list(mine)[:8])}, ...); check the config"
        )
    return mine[job_id]


def non_finite_numbers(node: Any, where: str = "config") -> list[str]:
    """Dotted keys of every NaN or infinite number in a config (JSON Schema bounds let NaN through)."""
    if isinstance(node, dict):
        return [w for k, v in node.items() for w in non_finite_numbers(v, f"{where}.{k}")]
    if isinstance(node, list):
        return [w for i, v in enumerate(node) for w in non_finite_numbers(v, f"{where}[{i}]")]
    return [where] if isinstance(node, float) and not math.isfinite(node) else []
