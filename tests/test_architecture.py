"""The layers of the package import only downwards (docs/design.md, "Where things live").

Every ``import``/``from ... import`` of ``darec`` modules is read from the source, including
imports inside functions (which hide cycles from the interpreter, not from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "darec"

# lower layers first; a module may import its own layer and any layer listed before it
LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths", "config", "config_docs", "devices"),
    ("data",),
    ("models",),
    ("evaluation",),
    ("run",),
    ("training",),
    ("experiment",),
    ("search", "serving"),
    ("cli",),
]


def _layer(module: str) -> int:
    """Layer index of ``darec.<top>...``."""
    top = module.split(".")[1] if module.count(".") else module
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"darec.{top} is in no layer of LAYERS; add it")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.startswith("darec.")]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    own = _layer("darec." + ".".join(path.relative_to(SRC).with_suffix("").parts))
    wrong = [f"line {line}: {name}" for line, name in _imports(path) if _layer(name) > own]
    assert not wrong, f"{path.relative_to(SRC)} imports a higher layer: {wrong}"


def test_serving_and_models_never_name_the_trainer() -> None:
    for folder in ("models", "serving", "run"):
        for path in (SRC / folder).rglob("*.py"):
            names = [n for _, n in _imports(path)]
            assert not [n for n in names if n.startswith("darec.training")], path
