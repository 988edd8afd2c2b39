"""Shared set-up of the thin entry scripts: logging to the rule's log file, thread limits."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# In a `--sdm conda` environment convexbn is not installed: use the copy next to the workflow.
_SRC = Path(__file__).resolve().parents[1] / "src"
if importlib.util.find_spec("convexbn") is None and (_SRC / "convexbn").is_dir():
    sys.path.insert(0, str(_SRC))

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Cap BLAS/OpenMP/torch threads at the rule's `threads` (read by numpy and torch at import)."""
    n = str(max(1, int(threads)))
    for var in _THREAD_VARS:
        os.environ[var] = n
    if "torch" in sys.modules:  # already imported: tell it directly
        sys.modules["torch"].set_num_threads(int(n))


def setup_logging(log_path: str | None, name: str) -> logging.Logger:
    """Log INFO and above to the rule's log file (warnings also to stderr); return the script's logger."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)  # the full story goes to the log file
    handlers: list[logging.Handler] = [console]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO, handlers=handlers, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.captureWarnings(True)
    return logging.getLogger(name)


def run_logged(snakemake: Any, name: str, main: Callable[[logging.Logger], None], *, threads: bool = True) -> None:
    """Set up logging (and thread limits), run `main(log)`, log any traceback and exit 1 on error."""
    log = setup_logging(snakemake.log[0] if snakemake.log else None, name)
    if threads:
        limit_threads(snakemake.threads)
    log.info("rule %s, threads %s, wildcards %s", snakemake.rule, snakemake.threads, dict(snakemake.wildcards.items()))
    try:
        main(log)
    except Exception as exc:  # noqa: BLE001 - the traceback goes to the rule log, then we fail
        log.error("%s failed: %s: %s\n%s", snakemake.rule, type(exc).__name__, exc, traceback.format_exc())
        logging.shutdown()
        sys.exit(1)
    log.info("done")
