"""`convexbn solve | path | train`: parsers, sub-commands and one-line errors (input checks: cli_inputs).

Exit codes: 0 success; 2 bad input (one line `convexbn: error: ...` on stderr, no output file);
1 the computation itself failed (e.g. the solver returned no solution; the result file records why).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from typing import Any, Sequence

import numpy as np

from convexbn.cli_inputs import (
    MAX_WIDTH,
    CLIError,
    arrangement_spec,
    check_out,
    join_negative_values,
    load_data,
    nonneg_float,
    one_line,
    pos_float,
    pos_int,
    positive_list,
    seed_type,
)

log = logging.getLogger("convexbn.cli")

VARIANTS = ("bn-before-relu", "bn-after-relu", "cnn", "closed-form")
LOSS_CHOICES = ("squared", "cross_entropy", "hinge")
OPTIMIZERS = ("gd", "sgd", "adam", "lbfgs")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become a single-line CLIError instead of usage + exit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise a CLIError naming the problem and where to read the options."""
        raise CLIError(f"{message} (see '{self.prog} --help')")


class _StderrHandler(logging.StreamHandler):
    """Log handler that always writes to the *current* sys.stderr (robust to redirection in tests)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        """The current standard error stream."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignore attempts to bind a fixed stream."""


def _setup_logging() -> None:
    """Send convexbn log records (INFO and up) to stderr as 'convexbn: message', once per process."""
    pkg = logging.getLogger("convexbn")
    if not any(isinstance(h, _StderrHandler) for h in pkg.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("convexbn: %(message)s"))
        pkg.addHandler(handler)
    pkg.setLevel(logging.INFO)


def _add_instance_args(p: argparse.ArgumentParser) -> None:
    """--data, --arrangements, --truncate and --seed: what defines a convex instance, shared by solve and path."""
    p.add_argument("--data", required=True, help=".npz file with X (n, d) and y (n,) scalar target or (n, C)")
    p.add_argument(
        "--arrangements",
        default="exact",
        type=arrangement_spec,
        help="'exact' (enumerate all patterns) or N sampled Gaussian patterns",
    )
    p.add_argument(
        "--truncate",
        type=pos_int("--truncate"),
        default=None,
        help="keep the top-K singular directions of the whitening (explicit regulariser)",
    )
    p.add_argument("--seed", type=seed_type("--seed"), default=0, help="seed of sampled arrangements")


def build_parser() -> argparse.ArgumentParser:
    """The `convexbn` argument parser with the `solve` and `train` sub-commands."""
    parser = _Parser(
        prog="convexbn",
        description="Exact convex programs for BatchNorm ReLU networks "
        "(Ergen, Sahiner et al., ICLR 2022) and non-convex baselines.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{solve,train,path}")

    s = sub.add_parser(
        "solve",
        help="solve a convex BN program and reconstruct the network",
        description="Solve the convex program of a BN ReLU network on FILE.npz (arrays X, y), "
        "reconstruct the network and certify it by a real forward pass.",
    )
    _add_instance_args(s)
    s.add_argument("--beta", required=True, type=nonneg_float("--beta"), help="weight decay β >= 0")
    s.add_argument("--variant", default="bn-before-relu", choices=VARIANTS, help="network/program variant")
    s.add_argument(
        "--solver",
        default="auto",
        help="auto (MOSEK if licensed, else CLARABEL), fast, MOSEK, CLARABEL, ECOS, SCS or QOCO",
    )
    s.add_argument("--loss", default="squared", choices=LOSS_CHOICES, help="data loss")
    s.add_argument(
        "--bias",
        default="unit",
        choices=("unit", "ones"),
        help="BN shift column c: 'unit' = 1/sqrt(n) (default) or 'ones' (ambiguity A1)",
    )
    s.add_argument("--patch-size", type=pos_int("--patch-size"), default=None, help="cnn: patch length H")
    s.add_argument("--patch-stride", type=pos_int("--patch-stride"), default=1, help="cnn: patch stride")
    s.add_argument(
        "--tol", type=pos_float("--tol"), default=1e-6, help="relative duality-gap target of the fast solver"
    )
    s.add_argument("--out", required=True, help="result JSON (written atomically at the end)")
    s.set_defaults(func=_cmd_solve)

    t = sub.add_parser(
        "train",
        help="train a non-convex BN network (GD/SGD/Adam/L-BFGS)",
        description="Train a two-layer BN ReLU network on the paper's objective.",
    )
    t.add_argument("--data", required=True, help=".npz file with X (n, d) and y (n,) or (n, C)")
    t.add_argument("--beta", required=True, type=nonneg_float("--beta"), help="weight decay β >= 0")
    t.add_argument(
        "--width",
        required=True,
        help=f"hidden neurons, 1 <= m <= {MAX_WIDTH:,}",
        type=pos_int("--width", MAX_WIDTH, " (parameters and activations grow with the width)"),
    )
    t.add_argument("--optimizer", default="gd", choices=OPTIMIZERS, help="optimiser")
    t.add_argument("--lr", type=pos_float("--lr"), default=None, help="learning rate (default: per optimiser)")
    t.add_argument("--epochs", type=pos_int("--epochs"), default=100, help="epochs (GD: steps)")
    t.add_argument("--batch-size", type=pos_int("--batch-size"), default=None, help="mini-batch size (sgd/adam)")
    t.add_argument("--seed", type=seed_type("--seed"), default=0, help="initialisation/batching seed")
    t.add_argument("--placement", default="before", choices=("before", "after"), help="BN before or after ReLU")
    t.add_argument("--loss", default="squared", choices=("squared", "cross_entropy"), help="data loss")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="torch device")
    t.add_argument("--out", required=True, help="result JSON (written atomically at the end)")
    t.set_defaults(func=_cmd_train)
    _add_path_parser(sub)
    return parser


def _rel_gap(a: float | None, b: float | None) -> float | None:
    """|a − b| / max(|a|, 1e-12), or None when either is missing."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return abs(a - b) / max(abs(a), 1e-12)


# ------------------------------------------------------------------------------------ solve


def _solve_variant(
    args: argparse.Namespace, X: np.ndarray, Y: np.ndarray, solver: str
) -> tuple[Any, float | None, int]:
    """Run the requested variant → (ConvexResult, network objective from a real forward pass, rank)."""
    from convexbn import programs
    from convexbn.networks import bn_mlp_from_params, evaluate_objective
    from convexbn.whitening import Whitening, whiten

    def mlp_objective(params: Any, placement: str, bias_value: float | None) -> float:
        """Forward-pass objective of the reconstructed BN MLP (zero output when it has no neuron)."""
        if params.width == 0:
            return programs.loss_value(np.zeros_like(Y), Y, args.loss)
        net = bn_mlp_from_params(params, X, placement=placement, bias_value=bias_value)
        return evaluate_objective(net, X, Y, args.beta, loss=args.loss)

    variant = args.variant
    if variant == "closed-form":
        res = programs.closed_form(X, Y, args.beta, bias=args.bias)
        net_obj = mlp_objective(res.params, "before", res.extra["whitening"].bias_value)
    elif variant == "bn-before-relu":
        res = programs.solve_two_layer(
            X,
            Y,
            args.beta,
            arrangements=args.arrangements,
            truncate=args.truncate,
            solver=solver,
            seed=args.seed,
            loss=args.loss,
            bias=args.bias,
            tol=args.tol,
        )
        wh = res.extra["whitening"]
        net_obj = None if res.params is None else mlp_objective(res.params, "before", wh.bias_value)
    elif variant == "bn-after-relu":
        from convexbn import variants

        res = variants.solve_bn_after_relu(
            X,
            Y,
            args.beta,
            arrangements=args.arrangements,
            seed=args.seed,
            solver=solver,
            loss=args.loss,
            bias=args.bias,
        )
        bias_value = None if args.bias == "unit" else 1.0
        net_obj = None if res.params is None else mlp_objective(res.params, "after", bias_value)
    else:  # cnn
        from convexbn import variants

        patches = variants.extract_patches_1d(X, args.patch_size, args.patch_stride)
        res = variants.solve_cnn(
            patches,
            Y,
            args.beta,
            arrangements=args.arrangements,
            seed=args.seed,
            solver=solver,
            loss=args.loss,
            bias=args.bias,
            truncate=args.truncate,
        )
        net = res.extra.get("network")
        net_obj = None if net is None else evaluate_objective(net, patches, Y, args.beta, loss=args.loss)
    wh = res.extra.get("whitening")
    rank = wh.rank if isinstance(wh, Whitening) else whiten(X.reshape(X.shape[0], -1)).rank
    return res, net_obj, rank


def _precheck_solve(args: argparse.Namespace, X: np.ndarray, Y: np.ndarray) -> None:
    """Reject option combinations and sizes that cannot work, before any heavy computation."""
    from convexbn.programs import check_loss_targets

    if args.variant == "cnn":
        if args.patch_size is None:
            raise CLIError("--variant cnn needs --patch-size H (and optionally --patch-stride S)")
    elif X.ndim != 2:
        raise CLIError(f"X must be an (n, d) matrix for --variant {args.variant}, got shape {X.shape}")
    if args.truncate is not None and args.variant in ("bn-after-relu", "closed-form"):
        raise CLIError(f"--truncate applies to bn-before-relu and cnn only, not to --variant {args.variant}")
    if args.variant == "closed-form" and args.loss != "squared":
        raise CLIError("the closed form holds for the squared loss only; drop --loss or use --variant bn-before-relu")
    try:
        check_loss_targets(Y if Y.ndim == 2 else Y[:, None], args.loss)
    except ValueError as exc:
        raise CLIError(one_line(exc)) from None
    _check_truncate(args, X)
    # "exact" with astronomically many patterns is refused by convexbn.arrangements (a ValueError
    # naming --arrangements N / --truncate K), before any program is built.


def _check_truncate(args: argparse.Namespace, X: np.ndarray) -> None:
    """Refuse --truncate K above the rank r of the centred data: it would silently mean 'full rank'."""
    from convexbn.whitening import whiten

    if args.truncate is None:
        return
    if getattr(args, "variant", None) == "cnn":
        from convexbn.variants import cnn_whitening, extract_patches_1d

        rank = cnn_whitening(extract_patches_1d(X, args.patch_size, args.patch_stride)).rank
    else:
        rank = whiten(X).rank
    if args.truncate > rank:
        raise CLIError(
            f"--truncate {args.truncate} exceeds the rank {rank} of the centred data, so nothing would "
            f"be truncated; give --truncate between 1 and {rank}, or leave it out for the full rank"
        )


#: CVXPY solvers that cannot handle the programs' second-order cones (kept out of the offered choices).
UNSUITABLE_SOLVERS = ("OSQP", "HIGHS")


def _check_solver_name(name: str) -> None:
    """Refuse solvers that are installed but cannot solve these conic programs."""
    if name.strip().upper() in UNSUITABLE_SOLVERS:
        raise CLIError(
            f"--solver {name} cannot solve these programs (they need second-order cones); "
            "choose auto, fast, CLARABEL, ECOS, SCS or MOSEK"
        )


def failure_advice(solver: str) -> str:
    """What to try after `solver` returned no solution: other installed conic solvers, never `solver`."""
    import cvxpy as cp

    installed = set(cp.installed_solvers())
    others = [s for s in ("CLARABEL", "SCS", "ECOS") if s in installed and s != str(solver).upper()]
    if not others:
        return "try fewer --arrangements"
    return f"try {' or '.join(f'--solver {s}' for s in others[:2])}, or fewer --arrangements"


def _cmd_solve(args: argparse.Namespace) -> int:
    """`convexbn solve`: solve, certify by a forward pass, write RESULT.json."""
    t0 = time.perf_counter()
    out = check_out(args.out, (args.data,))
    X, y = load_data(args.data, allow_3d=args.variant == "cnn")
    _precheck_solve(args, X, y)
    from convexbn.conic import SolverError, resolve_solver

    if args.variant == "closed-form":
        solver, reason = "closed-form", "closed form (rank(JX) = n-1), no numerical solver"
        log.info("solver %s (%s)", solver, reason)
    else:  # validate here for a one-line error; the library logs the solver it uses and why
        _check_solver_name(args.solver)
        try:
            solver, reason = resolve_solver(args.solver)
        except SolverError as exc:
            raise CLIError(one_line(exc)) from None
        if solver == "fast" and args.variant != "bn-before-relu":
            raise CLIError(f"--solver fast supports --variant bn-before-relu only; choose CLARABEL for {args.variant}")
    try:
        res, net_obj, rank = _solve_variant(args, X, y, args.solver)
    except ValueError as exc:  # includes SolverError: bad sizes, rank-deficient closed form, ...
        raise CLIError(one_line(exc)) from None
    rec = res.record
    Y2 = y if y.ndim == 2 else y[:, None]
    result: dict[str, Any] = {
        "objective": res.objective if math.isfinite(res.objective) else None,
        "network_objective": net_obj,
        "relative_gap": _rel_gap(res.objective, net_obj),
        "solver": rec.solver,
        "solver_reason": rec.reason or reason,
        "status": rec.status,
        "certified": rec.status == "optimal",
        "seconds": rec.seconds,
        "iterations": rec.iterations,
        "arrangements": res.arrangements,
        "neurons": res.neurons,
        "variant": args.variant,
        "loss": args.loss,
        "beta": args.beta,
        "n": int(X.shape[0]),
        "d": int(np.prod(X.shape[1:])),
        "C": int(Y2.shape[1]),
        "rank": int(rank),
        "truncate": args.truncate,
        "seed": args.seed,
        "cone_violation": rec.extra.get("cone_violation"),
        "gap": rec.extra.get("gap"),
        "warning": res.extra.get("warning"),
    }
    config = {k: v for k, v in vars(args).items() if k != "func"}
    from convexbn.io import provenance, write_json

    result["provenance"] = provenance(config=config, seed=args.seed, device="cpu", seconds=time.perf_counter() - t0)
    write_json(out, result)
    if net_obj is None:  # the solver returned no point: nothing to reconstruct
        print(
            f"convexbn: error: solver {rec.solver} ended with status {rec.status} and returned no solution; "
            f"see {out}; {failure_advice(rec.solver)}",
            file=sys.stderr,
        )
        return 1
    if rec.status != "optimal":
        log.warning("status %s: the solution is not certified optimal (recorded in %s)", rec.status, out)
    log.info(
        "objective %.10g, network objective %.10g, %d neurons, %d patterns, %.2f s -> %s",
        res.objective,
        net_obj,
        res.neurons,
        res.arrangements,
        rec.seconds,
        out,
    )
    return 0


# ------------------------------------------------------------------------------------ train


def _check_width_memory(width: int, X: np.ndarray, y: np.ndarray) -> None:
    """Refuse a width whose weights and (n, width) activations would not fit in half the memory."""
    from convexbn.io import physical_memory_bytes

    n, d = X.shape[0], int(np.prod(X.shape[1:]))
    classes = 1 if y.ndim == 1 else y.shape[1]
    need = 8 * width * (d + classes + 2 + 6 * n)  # weights + a few (n, width) activations and gradients
    budget = physical_memory_bytes() // 2
    if need > budget:
        fit = max(1, budget // (8 * (d + classes + 2 + 6 * n)))
        raise CLIError(
            f"--width {width} needs about {need / 2**30:,.1f} GiB for n={n}, d={d}, more than half of "
            f"this machine's memory ({budget / 2**30:.1f} GiB); give --width at most {fit:,}"
        )


def _cmd_train(args: argparse.Namespace) -> int:
    """`convexbn train`: train the non-convex BN network, write final objective, history, provenance."""
    t0 = time.perf_counter()
    out = check_out(args.out, (args.data,))
    X, y = load_data(args.data)
    if args.loss == "cross_entropy":
        from convexbn.programs import check_loss_targets

        try:
            check_loss_targets(y if y.ndim == 2 else y[:, None], "cross_entropy")
        except ValueError as exc:
            raise CLIError(one_line(exc)) from None
    _check_width_memory(args.width, X, y)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda requested but CUDA is not available here; use --device auto or cpu")
    from convexbn.training import train_bn_network

    log.info(
        "training width-%d BN network (%s, BN %s ReLU) on n=%d, d=%d",
        args.width,
        args.optimizer,
        args.placement,
        X.shape[0],
        X.shape[1],
    )
    try:
        res = train_bn_network(
            X,
            y,
            args.beta,
            args.width,
            optimizer=args.optimizer,
            lr=args.lr,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            placement=args.placement,
            loss=args.loss,
            device=None if args.device == "auto" else args.device,
        )
    except FloatingPointError as exc:
        print(f"convexbn: error: training diverged ({one_line(exc)}); lower --lr", file=sys.stderr)
        return 1
    except ValueError as exc:
        raise CLIError(one_line(exc)) from None
    config = {k: v for k, v in vars(args).items() if k != "func"}
    from convexbn.io import provenance, write_json

    result = {
        "final_objective": res.final_objective,
        "history": res.history,
        "device": res.device,
        "seconds": res.seconds,
        "width": args.width,
        "optimizer": args.optimizer,
        "beta": args.beta,
        "n": int(X.shape[0]),
        "d": int(X.shape[1]),
        "training_config": res.config,
        "provenance": provenance(config=config, seed=args.seed, device=res.device, seconds=time.perf_counter() - t0),
    }
    write_json(out, result)
    log.info(
        "final objective %.10g after %d epochs on %s (%.2f s) -> %s",
        res.final_objective,
        args.epochs,
        res.device,
        res.seconds,
        out,
    )
    return 0


# ------------------------------------------------------------------------------------ path


def _add_path_parser(sub: Any) -> None:
    """The `path` sub-command: a certified regularisation path of (C2)."""
    p = sub.add_parser(
        "path",
        help="solve (C2) along a decreasing path of β with certificates",
        description="Solve the BN-before-ReLU program (C2) on FILE.npz for a decreasing sequence of β "
        "(absolute, or ratios of β_max, the smallest β whose optimum is the zero network), "
        "certify every point and reconstruct each network by a real forward pass.",
    )
    _add_instance_args(p)
    grid = p.add_mutually_exclusive_group(required=True)
    grid.add_argument("--ratios", type=positive_list("--ratios"), help="β / β_max values, e.g. 0.3,0.1,0.03")
    grid.add_argument("--betas", type=positive_list("--betas"), help="absolute β values, e.g. 1,0.5,0.1")
    p.add_argument("--tol", type=pos_float("--tol"), default=1e-6, help="relative duality-gap target (fast)")
    p.add_argument(
        "--workers",
        type=pos_int("--workers"),
        default=1,
        help="processes solving the classes of each point side by side (fast solver, CPU; classes are independent)",
    )
    p.add_argument(
        "--solver",
        default="fast",
        help="fast (warm-started, screened path) or a conic solver run cold point by point: "
        "auto, MOSEK, CLARABEL, SCS, ECOS, ...",
    )
    p.add_argument("--out", required=True, help="result JSON (written atomically at the end)")
    p.set_defaults(func=_cmd_path)


def _path_instance(args: argparse.Namespace, X: np.ndarray, Y: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray]:
    """(whitening, U', masks) of the path, with one-line errors for sizes that cannot work."""
    from convexbn.arrangements import arrangements_for
    from convexbn.whitening import whiten

    try:
        wh = whiten(X, k=args.truncate)
        Ut = wh.features(X)
        arr = arrangements_for(Ut, args.arrangements, seed=args.seed)
    except ValueError as exc:
        raise CLIError(one_line(exc)) from None
    return wh, Ut, arr.masks


def _path_point(
    wh: Any,
    X: np.ndarray,
    Y: np.ndarray,
    Ut: np.ndarray,
    masks: np.ndarray,
    beta: float,
    bmax: float,
    u: np.ndarray | None,
    up: np.ndarray | None,
    status: str,
    gap: float | None,
    seconds: float,
) -> dict[str, Any]:
    """One RESULT.json point: convex objective, forward-pass objective of the reconstructed network, certificate."""
    from convexbn import programs
    from convexbn.networks import bn_mlp_from_params, evaluate_objective
    from convexbn.solver import c2_primal

    rec: dict[str, Any] = {
        "beta": beta,
        "ratio": beta / bmax,
        "objective": None,
        "network_objective": None,
        "gap": gap,
        "cone_violation": None,
        "status": status,
        "seconds": seconds,
        "neurons": 0,
    }
    if u is None or up is None:
        return rec
    obj, viol = c2_primal(Ut, Y, beta, masks, u, up)
    params = programs.reconstruct_before(wh, u, up)
    if params.width == 0:
        net_obj = programs.loss_value(np.zeros_like(Y), Y, "squared")
    else:
        net = bn_mlp_from_params(params, X, placement="before", bias_value=wh.bias_value)
        net_obj = evaluate_objective(net, X, Y, beta, loss="squared")
    rec.update(objective=obj, network_objective=net_obj, cone_violation=viol, neurons=int(params.width))
    return rec


def _run_path(
    args: argparse.Namespace, solver: str, wh: Any, X: np.ndarray, Y: np.ndarray, Ut: np.ndarray, masks: np.ndarray
) -> tuple[float, list[dict[str, Any]]]:
    """β_max and the points: the fast path (warm starts, screening) or a conic solver cold at every β."""
    from convexbn import programs
    from convexbn.solver import beta_max, solve_path

    bmax = beta_max(Ut, Y, masks)
    betas = args.betas if args.betas is not None else [r * bmax for r in args.ratios]
    points = []
    if solver == "fast":
        for beta, sol in zip(betas, solve_path(Ut, Y, betas, masks, tol=args.tol, bmax=bmax, workers=args.workers)):
            gap = float(sol.gap) if math.isfinite(sol.gap) else None
            points.append(_path_point(wh, X, Y, Ut, masks, beta, bmax, sol.u, sol.up, sol.status, gap, sol.seconds))
            log.info(
                "beta %.6g (%.4g beta_max): %s, gap %s, %d neurons, %.2f s",
                beta,
                beta / bmax,
                sol.status,
                gap,
                points[-1]["neurons"],
                sol.seconds,
            )
        return bmax, points
    for beta in betas:
        u, up, rec = programs.solve_c2(Ut, Y, beta, masks, solver=solver)
        points.append(_path_point(wh, X, Y, Ut, masks, beta, bmax, u, up, rec.status, None, rec.seconds))
        log.info("beta %.6g (%.4g beta_max): %s with %s, %.2f s", beta, beta / bmax, rec.status, solver, rec.seconds)
    return bmax, points


def _cmd_path(args: argparse.Namespace) -> int:
    """`convexbn path`: solve (C2) along a decreasing β path, write RESULT.json (beta_max, seconds, points)."""
    t0 = time.perf_counter()
    out = check_out(args.out, (args.data,))
    X, y = load_data(args.data)
    Y = y if y.ndim == 2 else y[:, None]
    _check_truncate(args, X)
    from convexbn.conic import SolverError, resolve_solver
    from convexbn.programs import check_loss_targets

    _check_solver_name(args.solver)
    try:
        check_loss_targets(Y, "squared")
        solver, reason = resolve_solver(args.solver)
    except (SolverError, ValueError) as exc:
        raise CLIError(one_line(exc)) from None
    log.info("path with solver %s (%s)", solver, reason)
    wh, Ut, masks = _path_instance(args, X, Y)
    bmax, points = _run_path(args, solver, wh, X, Y, Ut, masks)
    from convexbn.io import provenance, write_json

    seconds = time.perf_counter() - t0
    config = {k: v for k, v in vars(args).items() if k != "func"}
    result = {
        "beta_max": bmax,
        "seconds": seconds,
        "solver": solver,
        "solver_reason": reason,
        "tol": args.tol,
        "n": int(X.shape[0]),
        "d": int(X.shape[1]),
        "C": int(Y.shape[1]),
        "q": int(Ut.shape[1]),
        "arrangements": int(masks.shape[1]),
        "truncate": args.truncate,
        "seed": args.seed,
        "points": points,
        "provenance": provenance(config=config, seed=args.seed, device="cpu", seconds=seconds),
    }
    write_json(out, result)
    bad = [p["beta"] for p in points if p["status"] != "optimal"]
    if bad:
        log.warning("%d of %d points not certified optimal (recorded in %s)", len(bad), len(points), out)
    log.info("%d points, beta_max %.6g, %.2f s -> %s", len(points), bmax, seconds, out)
    return 0


# ------------------------------------------------------------------------------------ entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: parse, run the sub-command, map input errors to one line and exit code 2."""
    _setup_logging()
    parser = build_parser()
    try:
        args = parser.parse_args(join_negative_values(list(argv) if argv is not None else sys.argv[1:]))
        return int(args.func(args))
    except CLIError as exc:
        print(f"convexbn: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
