"""Print the "Every key" section of config/README.md from workflow/schemas/config.schema.yaml.

    python workflow/scripts/config_keys.py > /tmp/keys.md

The schema is the single source of every key's default, bounds and meaning; tests check that
config/README.md carries exactly this output, so the documentation cannot drift from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
_BOUNDS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("pattern", "matches `{}`"),
    ("minItems", "at least {} items"),
)


def _resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A property with its local $ref merged in (the property's own keys win)."""
    if "$ref" not in node:
        return node
    target = schema["$defs"][node["$ref"].split("/")[-1]]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _bounds(node: dict[str, Any]) -> str:
    """The numeric/string bounds of a property (and of its items or integer branch), in words."""
    parts = []
    for sub, prefix in (
        (node, ""),
        (node.get("items", {}), "each "),
        *((b, "") for b in node.get("oneOf", []) if isinstance(b, dict)),
    ):
        for key, fmt in _BOUNDS:
            if isinstance(sub, dict) and key in sub and not (key == "maximum" and sub[key] == 1e12):
                parts.append(prefix + fmt.format(sub[key]))
    if node.get("not") == {"maximum": -1} or node.get("items", {}).get("not") == {"maximum": -1}:
        parts.append("finite")
    return ", ".join(dict.fromkeys(parts))


def _default(node: dict[str, Any], required: bool) -> str:
    """How the default of a property reads in the table."""
    if "default" in node:
        return (
            json.dumps(node["default"], ensure_ascii=False)
            if isinstance(node["default"], (dict, list))
            else "null"
            if node["default"] is None
            else str(node["default"]).lower()
            if isinstance(node["default"], bool)
            else str(node["default"])
        )
    return "required" if required else "inherited"


def rows(node: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(dotted key, default, bounds, description) of every property under `node`, depth first."""
    required = set(node.get("required", []))
    for key, sub in node.get("properties", {}).items():
        sub = _resolve(sub, schema)
        yield (
            prefix + key,
            _default(sub, key in required),
            _bounds(sub),
            " ".join(str(sub.get("description", "")).split()),
        )
        yield from rows(sub, schema, prefix + key + ".")
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict):
            yield from rows(_resolve(extra, schema), schema, prefix + key + ".<name>.")


def section(schema: dict[str, Any]) -> str:
    """The Markdown section: one table per top-level key."""
    out = [
        "## Every key",
        "",
        "Generated from `workflow/schemas/config.schema.yaml` by `python workflow/scripts/config_keys.py`.",
        "",
    ]
    for top in schema["properties"]:
        out += [f"### `{top}`", "", "| key | default | bounds | meaning |", "|---|---|---|---|"]
        out += [f"| `{k}` | {d} | {b} | {m} |" for k, d, b, m in rows(schema, schema) if k.split(".")[0] == top]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(section(yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))))
