"""Fast checks of the Snakemake workflow: schema, dry runs, lint, profiles, conda envs, docs."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import REPO, copy_workflow, merge_config, run_snakemake, workflow_env, write_overlay

SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
CONFIGS = ("config.yaml", "ci.yaml", "demo.yaml")


def load_yaml(path: Path) -> Any:
    """Parse one YAML file."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def merged(*names: str) -> dict[str, Any]:
    """config/config.yaml overlaid by further config files, merged the way snakemake does (no defaults)."""
    out = load_yaml(REPO / "config" / "config.yaml")
    for name in names:
        merge_config(out, load_yaml(REPO / "config" / name))
    return copy.deepcopy(out)


def schema_errors(config: dict[str, Any]) -> list[str]:
    """Messages of every schema violation of a config."""
    validator = jsonschema.Draft202012Validator(load_yaml(SCHEMA_PATH))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)]


def schema_keys(node: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of every property the schema defines (following local $refs)."""
    if "$ref" in node:
        node = {**schema["$defs"][node["$ref"].split("/")[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    keys = []
    for key, sub in node.get("properties", {}).items():
        keys.append(prefix + key)
        keys.extend(schema_keys(sub, schema, prefix + key + "."))
    return keys


def test_schema_is_valid_draft_2020_12_with_descriptions() -> None:
    """The schema is a valid draft 2020-12 schema and every property has a description."""
    schema = load_yaml(SCHEMA_PATH)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")

    def walk(node: dict[str, Any], where: str) -> None:
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub or "$ref" in sub, f"{where}.{key} has no description"
            walk(sub, f"{where}.{key}")

    walk(schema, "config")
    for name, sub in schema["$defs"].items():
        walk(sub, f"$defs.{name}")


@pytest.mark.parametrize(
    "overlays",
    [(), ("ci.yaml",), ("ci.yaml", "demo.yaml"), ("digits.yaml",), ("full.yaml",), ("cifar10_generated.yaml",)],
)
def test_shipped_configs_pass_the_schema(overlays: tuple[str, ...]) -> None:
    """config.yaml alone and with each shipped overlay validates."""
    assert schema_errors(merged(*overlays)) == []


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["defaults"].update(solvr="auto"), "solvr"),
        (lambda c: c["defaults"].update(solver="MOSK"), "MOSK"),
        (lambda c: c["experiments"]["truncation"].update(kss=[4]), "kss"),
        (lambda c: c["experiments"]["truncation"].update(ks=[0]), "ks"),
        (lambda c: c["datasets"]["digits"].update(normalize="zscore"), "zscore"),
        (lambda c: c["data"]["cifar10"].update(md5="nothex"), "nothex"),
        (lambda c: c["experiments"].update(not_an_experiment={}), "not_an_experiment"),
        (lambda c: c["resources"]["convex"].update(mem_mb=-5), "mem_mb"),
        (lambda c: c["experiments"]["variants"].update(variants=["mlp"]), "mlp"),
        (lambda c: c["experiments"]["truncation"].update(ks=["zero"]), "zero"),
        (lambda c: c["experiments"]["equivalence"].update(n=1), "1 is less than the minimum of 2"),
        (lambda c: c["experiments"]["variants"]["cnn"].update(n=1), "1 is less than the minimum of 2"),
        (lambda c: c["experiments"]["variants"].update(beta=float("nan")), "nan"),
        (lambda c: c["experiments"]["variants"].update(beta=-0.1), "-0.1"),
        (lambda c: c["experiments"]["variants"].update(beta=float("inf")), "inf"),
        (lambda c: c["experiments"]["closed_form"].update(betas=[0.1, float("nan")]), "nan"),
        (lambda c: c["experiments"]["equivalence"].update(inits=0), "0 is less than the minimum of 1"),
        (lambda c: c["experiments"]["whitening_invariance"].update(lr=0), "lr"),
        (lambda c: c["experiments"]["truncation"]["sgd"].update(lr_factors=[0.0]), "0.0"),
        (lambda c: c["experiments"]["truncation"]["convex"].update(tol=0), "tol"),
        (lambda c: c["experiments"]["truncation"]["convex"].update(max_iter=0), "max_iter"),
        (lambda c: c["experiments"]["main_comparison"]["convex"].update(max_seconds=0), "max_seconds"),
        (lambda c: c["experiments"]["equivalence"].update(width_factors=[1.0, 0.0]), "0.0"),
        (lambda c: c["experiments"]["truncation"].update(arrangements=2_000_000), "2000000"),
        (lambda c: c["experiments"]["implicit_bias"]["convex"].update(arrangements=1_000_001), "1000001"),
        (lambda c: c["datasets"].update({"Digits-Copy": c["datasets"]["digits"]}), "Digits-Copy"),
        (lambda c: c["experiments"]["truncation"].update(datasets=["../etc"]), "../etc"),
        (lambda c: c["experiments"]["closed_form"].update(plot={"colour": "red"}), "colour"),
    ],
)
def test_schema_rejects_bad_keys_and_values(mutate: Any, expected: str) -> None:
    """Unknown keys and bad values are schema errors that name the key or the value."""
    cfg = merged("ci.yaml")
    mutate(cfg)
    errors = schema_errors(cfg)
    assert errors and any(expected in e for e in errors), errors


def test_bad_config_stops_snakemake_before_any_job(tmp_path: Path) -> None:
    """A typo in a config key stops `snakemake` at validation, naming the key; nothing runs."""
    wf = copy_workflow(tmp_path / "wf")
    bad = write_overlay(tmp_path / "bad.yaml", {"defaults": {"solvr": "CLARABEL"}})
    proc = run_snakemake(wf, "--cores", "1", "--configfile", "config/ci.yaml", str(bad), timeout=120)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "solvr" in out and "Error validating config" in out, out[-3000:]
    assert not (wf / "results").exists()

    bad = write_overlay(tmp_path / "bad2.yaml", {"experiments": {"closed_form": {"betas": "many"}}})
    proc = run_snakemake(wf, "--cores", "1", "--configfile", "config/ci.yaml", str(bad), timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "'many' is not of type 'array'" in out and "betas" in out, out[-3000:]
    assert not (wf / "results").exists()

    bad = write_overlay(tmp_path / "bad3.yaml", {"fetch": {"backoff": float("nan")}})  # no schema bound catches NaN
    proc = run_snakemake(wf, "--cores", "1", "--configfile", "config/ci.yaml", str(bad), timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "config.fetch.backoff are NaN or infinite" in out, out[-3000:]
    assert not (wf / "results").exists()


@pytest.mark.parametrize("overlays", [(), ("config/ci.yaml",), ("config/ci.yaml", "config/demo.yaml")])
def test_dry_run_shows_the_plan(workflow_copy: Path, overlays: tuple[str, ...]) -> None:
    """`snakemake -n` plans every stage for the full config and the overlays."""
    overlay = bool(overlays)
    args = ["-n", "--cores", "2"] + (["--configfile", *overlays] if overlays else [])
    proc = run_snakemake(workflow_copy, *args, timeout=180, check=True)
    for rule in ("fetch_cifar", "prepare_dataset", "whiten_dataset", "run_job", "aggregate", "figures_"):
        assert rule in proc.stdout, f"{rule} missing from the plan"
    if overlay:
        assert "synthesize_cifar" in proc.stdout  # CI and demo never download


def test_named_targets_plan(workflow_copy: Path) -> None:
    """The named targets data, baselines, convex, tables and figures exist and plan (CI config)."""
    targets = ["data", "baselines", "convex", "tables", "figures"]
    proc = run_snakemake(
        workflow_copy, *targets, "-n", "--cores", "2", "--configfile", "config/ci.yaml", timeout=180, check=True
    )
    for target in targets:
        assert re.search(rf"^{target}\s+1$", proc.stdout, re.M), f"target rule {target} not planned"


def test_each_seed_prepares_and_whitens_its_own_subsets(workflow_copy: Path, tmp_path: Path) -> None:
    """Two seeds of main_comparison plan one prepared subset and one whitening per (dataset, seed), shared by
    truncation's seed; implicit_bias reads the dataset's own file."""
    seeds = write_overlay(tmp_path / "seeds.yaml", {"experiments": {"main_comparison": {"seeds": [0, 1]}}})
    args = ["data", "-n", "--cores", "2", "--configfile", "config/ci.yaml", str(seeds)]
    proc = run_snakemake(workflow_copy, *args, timeout=180, check=True)
    datasets = {"digits", "cifar10"}
    assert set(load_yaml(REPO / "config" / "ci.yaml")["experiments"]["main_comparison"]["datasets"]) == datasets
    for rule in ("prepare_seed_subsets", "whiten_seed_subsets"):
        assert re.search(rf"^{rule}\s+4$", proc.stdout, re.M), f"{rule}: not one job per (dataset, seed)"
    for ds in datasets:
        assert f"results/whiten/{ds}/seed1.npz" in proc.stdout
    assert re.search(r"^prepare_dataset\s+1$", proc.stdout, re.M)  # implicit_bias on digits


def test_lint_is_clean(workflow_copy: Path) -> None:
    """`snakemake --lint` reports nothing."""
    proc = run_snakemake(workflow_copy, "--lint", "--configfile", "config/ci.yaml", timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_every_rule_has_log_benchmark_message_params() -> None:
    """Every non-target rule declares log, benchmark, message, params, resources and a conda env."""
    rules_dir = REPO / "workflow" / "rules"
    for path in sorted(rules_dir.glob("*.smk")):
        text = path.read_text()
        blocks = re.split(r"\n(?=[ \t]*rule\b)", text)
        for block in blocks[1:]:
            for directive in ("log:", "benchmark:", "message:", "params:", "resources:", "conda:", "script:"):
                assert directive in block, f"{path.name}: a rule lacks {directive}\n{block[:300]}"


def requirement_pins() -> dict[str, str]:
    """{lower-case package: version} from requirements.txt."""
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_conda_envs_parse_and_match_requirements() -> None:
    """envs/*.yaml parse, pin every package exactly, and agree with requirements.txt."""
    pins = requirement_pins()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert {p.stem for p in envs} >= {"fetch", "compute", "plots"}
    for path in envs:
        env = load_yaml(path)
        assert env["name"] and "conda-forge" in env["channels"]
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        assert pip, f"{path.name} pins nothing"
        for spec in pip:
            name, version = spec.split("==")
            assert pins.get(name.lower()) == version, f"{path.name}: {spec} disagrees with requirements.txt"
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    for ref in re.findall(r'"\.\./\.\./(envs/[^"]+)"', rules):
        assert (REPO / ref).is_file(), ref


def test_profiles_are_commented_and_slurm_reads_partition_from_env(workflow_copy: Path) -> None:
    """Profiles: every entry commented; the SLURM one takes partition/account from the environment."""
    for name in ("local", "slurm"):
        lines = (REPO / "workflow" / "profiles" / name / "config.yaml").read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^\s*[a-z_-]+:", line) and not line.lstrip().startswith("#"):
                above = lines[i - 1].strip() if i else ""
                assert above.startswith("#") or "#" in line, f"{name} profile: `{line.strip()}` has no comment"
    prof = (REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text()
    assert "executor: slurm" in prof and "cluster:" not in prof.replace("# ", "")
    env = workflow_env(SLURM_PARTITION="gpu-short", SLURM_ACCOUNT="proj42")
    proc = run_snakemake(
        workflow_copy,
        "tables",
        "--workflow-profile",
        "workflow/profiles/slurm",
        "-n",
        "--configfile",
        "config/ci.yaml",
        env=env,
        timeout=180,
        check=True,
    )
    assert "slurm_partition=gpu-short" in proc.stdout and "slurm_account=proj42" in proc.stdout


def test_readme_explains_every_config_key() -> None:
    """config/README.md names every key the schema defines."""
    readme = (REPO / "config" / "README.md").read_text()
    schema = load_yaml(SCHEMA_PATH)
    missing = [k for k in schema_keys(schema, schema) if f"`{k}`" not in readme]
    assert not missing, f"config/README.md does not explain: {missing[:20]}"
    for cmd in (
        "snakemake --cores all",
        "--workflow-profile workflow/profiles/slurm",
        "--report",
        "--configfile config/ci.yaml config/demo.yaml",
    ):
        assert cmd in readme
    assert "/work/" not in readme and "paper.md" not in readme  # no machine paths


def test_readme_key_tables_are_generated_from_the_schema() -> None:
    """config/README.md's "Every key" section is exactly what workflow/scripts/config_keys.py prints."""
    import subprocess
    import sys

    script = REPO / "workflow" / "scripts" / "config_keys.py"
    keys = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert keys in (REPO / "config" / "README.md").read_text(), "regenerate: python workflow/scripts/config_keys.py"


def test_overlays_only_override() -> None:
    """ci.yaml repeats no value of config.yaml, and demo.yaml no value of config.yaml + ci.yaml."""

    def repeated(base: dict[str, Any], over: dict[str, Any], where: str = "") -> list[str]:
        out = []
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                out += repeated(base[key], value, f"{where}{key}.")
            elif key in base and base[key] == value:
                out.append(where + key)
        return out

    assert repeated(merged(), load_yaml(REPO / "config" / "ci.yaml")) == []
    assert repeated(merged("ci.yaml"), load_yaml(REPO / "config" / "demo.yaml")) == []


def test_every_number_in_the_schema_is_bounded() -> None:
    """Every numeric property (and numeric list item) has a lower bound; β-like ones also exclude NaN."""
    schema = load_yaml(SCHEMA_PATH)
    unbounded = []

    def walk(node: dict[str, Any], where: str) -> None:
        types = node.get("type", [])
        types = types if isinstance(types, list) else [types]
        if {"number", "integer"} & set(types) and not {"minimum", "exclusiveMinimum"} & set(node):
            unbounded.append(where)
        if where.rsplit(".", 1)[-1] in ("beta", "beta_per_sample", "noise"):
            number = node["items"] if node.get("type") == "array" else node  # a grid: each of its values
            assert number.get("not") == {"maximum": -1}, f"{where} lets NaN through"
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{where}.{key}")
        for i, sub in enumerate(node.get("oneOf", [])):
            walk(sub, f"{where}|{i}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(schema, "config")
    for name, sub in schema["$defs"].items():
        walk(sub, f"$defs.{name}")
    assert unbounded == [], unbounded
