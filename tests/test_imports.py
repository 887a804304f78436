"""The package's import graph, read from the source (imports inside functions included): no
module reaches itself through the modules it imports, and the layers of docs/DESIGN hold:
nn/ and quantize/ never import models/, quantize/ never imports nn/, models/ never imports
train/, the evaluation modules or cli.py, and file coding never imports train/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import codec

PACKAGE = Path(codec.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(name: str, path: Path) -> set[str]:
    """The package modules that module `name` (at `path`) imports, wherever in it."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: a relative import (the package imports absolutely)"
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _reachable(start: str) -> set[str]:
    """Every module `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in GRAPH[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def _path(start: str, end: str) -> str:
    """The shortest chain of imports from `start` to `end`."""
    came_from: dict[str, str] = {}
    todo = [start]
    while todo and end not in came_from:
        name = todo.pop(0)
        for target in sorted(GRAPH[name] - set(came_from)):
            came_from[target] = name
            todo.append(target)
    chain = [end]
    while chain[-1] != start or len(chain) == 1:
        chain.append(came_from[chain[-1]])
    return " -> ".join(reversed(chain))


def test_the_graph_is_read_from_the_whole_package():
    assert {"codec.cli", "codec.models.codec", "codec.quantize.codebook"} <= set(MODULES)
    assert "codec.models.config" in GRAPH["codec.models.codec"]
    assert "codec.quantize.distributed" in GRAPH["codec.losses"]  # `from codec.quantize import`


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_itself_back(name):
    assert name not in _reachable(name), f"import cycle: {_path(name, name)}"


LAYERS = [  # (modules under this prefix, never reach modules under these prefixes)
    ("codec.nn", ("codec.models",)),
    ("codec.quantize", ("codec.models", "codec.nn")),
    (
        "codec.models",
        ("codec.train", "codec.evaluate", "codec.metrics", "codec.quality", "codec.report")
        + ("codec.cli",),
    ),
    *[
        (f"codec.{module}", ("codec.train",))
        for module in ("coding", "codes_file", "shards", "audio", "fileio")
    ],
]


@pytest.mark.parametrize("layer, forbidden", LAYERS)
def test_layers_hold(layer, forbidden):
    for name in MODULES:
        if name != layer and not name.startswith(layer + "."):
            continue
        for target in _reachable(name):
            if any(target == f or target.startswith(f + ".") for f in forbidden):
                pytest.fail(f"{name} imports {target}: {_path(name, target)}")
