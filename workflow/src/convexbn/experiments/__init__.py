"""The paper's experiments: a light job grid (:mod:`.grid`) and one module per experiment.

Every setting comes from the validated pipeline configuration (``config/*.yaml`` and the defaults
in ``workflow/schemas/config.schema.yaml``); all of them are ours, not the paper's. Importing this
package imports only the grid (standard library), so the Snakefile parses fast; the experiment
modules, :mod:`.runner` (run a job, aggregate, draw) and :mod:`.datasets` load numpy/torch.
"""

from convexbn.experiments.grid import (
    EXPERIMENT_NAMES,
    REAL_DATA_EXPERIMENTS,
    Job,
    Table,
    experiment_config,
    experiment_jobs,
    family_of,
    jobs,
    tables,
)

__all__ = [
    "EXPERIMENT_NAMES",
    "REAL_DATA_EXPERIMENTS",
    "Job",
    "Table",
    "experiment_config",
    "experiment_jobs",
    "family_of",
    "jobs",
    "tables",
]
