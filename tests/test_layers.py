"""Data flows one way: a layer imports only the layers above it (DESIGN.md), never one below."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "corral"

# Upstream first. A module may import its own layer and any layer before it.
LAYERS = [
    "errors",
    "policy",
    "events",
    "images",
    "sandbox",
    "egress",
    "monitor",
    "detect",
    "respond",
    "harness",
    "correlate",
    "report",
    "integrations",
    "redteam",
    "demo",
    "cli",
]
RANK = {name: i for i, name in enumerate(LAYERS)}
# Modules outside the layers: the package root re-exports, data holds files only.
UNRANKED = {"__init__", "data", "ray"}


def _layer_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("corral."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("corral."))
    return found


def test_every_layer_imports_only_upstream() -> None:
    bad: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        layer = _layer_of(path)
        if layer in UNRANKED:
            continue
        assert layer in RANK, f"{path}: module outside the known layers; add it to LAYERS"
        for target in _imports(path):
            if target in UNRANKED:
                continue
            if RANK.get(target, 10**6) > RANK[layer]:
                bad.append(f"{path.relative_to(SRC)} imports corral.{target} (downstream of {layer})")
    assert bad == []
