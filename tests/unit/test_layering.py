"""The methods floor: method modules import the engine, the model and the results, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

import whyllm

SRC = Path(whyllm.__file__).parent
# imports point down this list
LAYERS = ["errors", "_version", "files", "model", "results", "methods", "training", "render", "server", "cli"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("whyllm"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("whyllm")}
    return out


def _family(path: Path) -> str:
    """A method module's family: its file name, or its package's name (attribution)."""
    rel = path.relative_to(SRC / "methods")
    return rel.parts[0].removesuffix(".py")


def test_no_method_module_imports_another():
    bad = []
    for path in (SRC / "methods").rglob("*.py"):
        family = _family(path)
        if family in ("engine", "registry", "__init__"):
            continue
        for module in _imports(path):
            parts = module.split(".")
            if parts[:2] == ["whyllm", "methods"] and len(parts) > 2 and parts[2] not in ("engine", family):
                bad.append(f"{path.relative_to(SRC)} imports {module}")
    assert not bad, bad


def test_the_engine_imports_no_method():
    for path in (SRC / "methods" / "engine").rglob("*.py"):
        for module in _imports(path):
            parts = module.split(".")
            assert parts[:2] != ["whyllm", "methods"] or parts[2] == "engine", f"{path.name} imports {module}"


def test_imports_point_down():
    """A module imports only its own layer and the layers below it (``render`` is imported lazily up)."""
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        layer = rel.parts[0].removesuffix(".py")
        if layer not in LAYERS:
            continue
        for module in _imports(path):
            target = module.split(".")[1] if "." in module else "__init__"
            if target in LAYERS and LAYERS.index(target) > LAYERS.index(layer):
                bad.append(f"{rel} imports {module}")
    # results render themselves on demand (lazy imports inside Result methods): the only upward edge
    assert [b for b in bad if not b.startswith("results/base.py imports whyllm.render")] == [], bad
