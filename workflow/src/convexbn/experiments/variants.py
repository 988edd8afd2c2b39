"""Experiment 7 (claim 7): BN after ReLU, a 1-D CNN, the last two layers of a deep network and the
vector-output model: the convex optimum against the best local search. One job per variant ×
random instance; the instance size comes from the variant's own config entry."""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

from convexbn.experiments.common import JobInputs, record_dict, synthetic_data, train


def local_search(
    make_net: Callable[[int], Any],
    objective: Callable[[Any], Any],
    inits: int,
    epochs: int,
    lr: float,
    optimizer: str,
    params_of: Callable[[Any], list] | None = None,
) -> list[float]:
    """Final objectives of full-batch Adam (or L-BFGS) on a torch module from several seeded inits."""
    import torch

    finals = []
    for i in range(inits):
        net = make_net(i)
        params = params_of(net) if params_of else [p for p in net.parameters() if p.requires_grad]
        if optimizer == "lbfgs":
            opt = torch.optim.LBFGS(params, lr=lr, max_iter=20, line_search_fn="strong_wolfe")

            def closure() -> torch.Tensor:
                """Re-evaluate the objective and its gradient for L-BFGS."""
                opt.zero_grad()
                v = objective(net)
                v.backward()
                return v

            for _ in range(max(1, epochs // 20)):
                opt.step(closure)
        else:
            opt = torch.optim.Adam(params, lr=lr)
            for _ in range(epochs):
                opt.zero_grad()
                v = objective(net)
                v.backward()
                opt.step()
        with torch.no_grad():
            finals.append(float(objective(net)))
    return finals


def _seed(p: dict[str, Any]) -> int:
    """Seed of the job's random instance."""
    return int(p["seed"]) * 100 + int(p["instance"])


def _bn_network_finals(X: np.ndarray, Y: np.ndarray, p: dict[str, Any], placement: str, device: str) -> list[float]:
    """Final objectives of the two-layer BN network's local search from every init on targets Y."""
    ls, seed = p["local_search"], _seed(p)
    return [
        float(
            train(
                X,
                Y,
                float(p["beta"]),
                int(ls["width"]),
                optimizer=ls["optimizer"],
                lr=float(ls["lr"]),
                epochs=int(ls["epochs"]),
                seed=seed * 1000 + i,
                placement=placement,
                device=device,
                dtype="float64",
            ).final_objective
        )
        for i in range(int(p["inits"]))
    ]


def _bn_after_relu(p: dict[str, Any], device: str) -> tuple[Any, list[float], float, dict[str, Any]]:
    """BN placed after the ReLU: its own convex program against local search."""
    from convexbn import variants as V

    seed, vc = _seed(p), p["size"]
    X, Y = synthetic_data(int(vc["n"]), int(vc["d"]), seed, "scalar")
    res = V.solve_bn_after_relu(
        X, Y, float(p["beta"]), arrangements=p["arrangements"], seed=seed, solver=p["solver"], loss="squared"
    )
    finals = _bn_network_finals(X, Y, p, "after", device)
    return res, finals, min(finals), {"n": X.shape[0], "d": X.shape[1], "outputs": Y.shape[1]}


def _vector_output(p: dict[str, Any], device: str) -> tuple[Any, list[float], float, dict[str, Any]]:
    """One-hot outputs: the decoupled per-class program (A5) against per-class and shared networks."""
    from convexbn.experiments.equivalence import solve_exact

    vc = p["size"]
    X, Y = synthetic_data(int(vc["n"]), int(vc["d"]), _seed(p), "onehot", classes=int(vc["classes"]))
    res = solve_exact(X, Y, float(p["beta"]), p)  # the experiment seed, as every exact program
    # The decoupled per-class program (A5) lets each neuron feed one class, i.e. C independent
    # scalar problems: its non-convex counterpart is one scalar BN network per class (objectives
    # add up). A free vector-output network (shared neurons) is reported too: it may go below.
    per_class = [_bn_network_finals(X, Y[:, [c]], p, "before", device) for c in range(Y.shape[1])]
    finals = [float(sum(v)) for v in zip(*per_class)]
    info = {
        "n": X.shape[0],
        "d": X.shape[1],
        "outputs": Y.shape[1],
        "form": "decoupled per-class (A5)",
        "best_nonconvex_shared_neurons": min(_bn_network_finals(X, Y, p, "before", device)),
    }
    return res, finals, float(sum(min(v) for v in per_class)), info


def _cnn(p: dict[str, Any], device: str) -> tuple[Any, list[float], float, dict[str, Any]]:
    """A 1-D BN-CNN on random signals: the convex CNN program against local search."""
    import torch

    from convexbn import variants as V

    seed, vc, ls, beta = _seed(p), p["size"], p["local_search"], float(p["beta"])
    rng = np.random.default_rng(seed)
    n, L = int(vc["n"]), int(vc["length"])
    X = rng.standard_normal((n, L))
    y = np.maximum(X[:, :2].sum(1), 0) - 0.5 * np.maximum(-X[:, -2:].sum(1), 0) + 0.1 * rng.standard_normal(n)
    Y = ((y - y.mean()) / (y.std() + 1e-12))[:, None]
    patches = V.extract_patches_1d(X, int(vc["patch"]), int(vc["stride"]))
    res = V.solve_cnn(patches, Y, beta, arrangements=p["arrangements"], seed=seed, solver=p["solver"], loss="squared")
    Pt = torch.as_tensor(patches, dtype=torch.float64, device=device)
    Yt = torch.as_tensor(Y, dtype=torch.float64, device=device)

    def make(i: int) -> Any:
        """A freshly initialised BN-CNN for init i."""
        torch.manual_seed(seed * 1000 + i)
        return V.BNConvNet(patches.shape[2], int(ls["width"]), Y.shape[1]).to(torch.float64).to(device)

    finals = local_search(
        make,
        lambda net: net.objective(Pt, Yt, beta),
        int(p["inits"]),
        int(ls["epochs"]),
        float(ls["lr"]),
        ls["optimizer"],
    )
    return res, finals, min(finals), {"n": n, "K": patches.shape[1], "h": patches.shape[2]}


def _deep(p: dict[str, Any], device: str) -> tuple[Any, list[float], float, dict[str, Any]]:
    """The last two layers of a deep BN network (earlier layers fixed) against local search on them."""
    import torch

    from convexbn import variants as V

    seed, vc, ls, beta = _seed(p), p["size"], p["local_search"], float(p["beta"])
    X, Y = synthetic_data(int(vc["n"]), int(vc["d"]), seed, "scalar")
    widths = [int(h) for h in vc["hidden"]]
    torch.manual_seed(seed)
    base = V.DeepBNNet(X.shape[1], widths + [int(vc["width"])], Y.shape[1]).to(torch.float64)
    res = V.solve_deep_last_two(base, X, Y, beta, arrangements=p["arrangements"], seed=seed, solver=p["solver"])
    Xt = torch.as_tensor(X, dtype=torch.float64, device=device)
    Yt = torch.as_tensor(Y, dtype=torch.float64, device=device)

    def make(i: int) -> Any:
        """Copy of the fixed-earlier-layers net with freshly initialised last two layers."""
        net = copy.deepcopy(base).to(device)
        torch.manual_seed(seed * 1000 + i)
        for mod in (net.linears[-1], net.bns[-1], net.out):
            mod.reset_parameters()
        return net

    def last_two(net: Any) -> list:
        """Parameters of the last hidden layer (Linear + BN) and the output layer; others frozen."""
        ps = [*net.linears[-1].parameters(), *net.bns[-1].parameters(), *net.out.parameters()]
        for q in net.parameters():
            q.requires_grad_(False)
        for q in ps:
            q.requires_grad_(True)
        return ps

    finals = local_search(
        make,
        lambda net: net.objective(Xt, Yt, beta),
        int(p["inits"]),
        int(ls["epochs"]),
        float(ls["lr"]),
        ls["optimizer"],
        last_two,
    )
    return res, finals, min(finals), {"n": X.shape[0], "d": X.shape[1], "hidden": widths}


_VARIANTS = {"bn_after_relu": _bn_after_relu, "vector_output": _vector_output, "cnn": _cnn, "deep": _deep}


def run(p: dict[str, Any], inputs: JobInputs) -> dict[str, Any]:
    """Convex optimum of one variant on one random instance vs the best local-search objective."""
    variant = p["variant"]
    res, finals, best, info = _VARIANTS[variant](p, inputs.device)
    form = info.pop("form", "exact")
    p_star = res.objective
    metrics = {
        "variant": variant,
        "instance": int(p["instance"]),
        "beta": float(p["beta"]),
        **info,
        "method": variant,
        "p_star": p_star,
        "best_nonconvex": best,
        "worst_nonconvex": max(finals),
        "rel_gap": None if p_star is None else (best - p_star) / max(1.0, abs(p_star)),
        "P": res.arrangements,
        "neurons": res.neurons,
        "inits": int(p["inits"]),
        "form": form,
    }
    return {"metrics": metrics, "solver": record_dict(res.record), "trace": [], "status": res.record.status}


def draw(summary: Any, trace: Any, dataset: str | None, out_dir: str) -> None:
    """The ratio figure and the table."""
    from convexbn import plots

    plots.plot_variants(summary, out_dir)
    plots.table_variants(summary, out_dir)
