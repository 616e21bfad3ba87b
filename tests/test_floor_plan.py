"""The floor plan (docs/architecture.md): every import inside ``talkface`` runs downward, and no two
modules import each other, directly or through others.

The imports are read from the source with ``ast`` (those inside functions and ``TYPE_CHECKING`` blocks
too), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import talkface

PACKAGE = Path(talkface.__file__).resolve().parent

#: Each part and the layer it stands on; a module may import its own part and any lower layer.
LAYERS: dict[str, int] = {
    "": -1, "utils": 0, "registry": 0,
    "core": 1,
    "store": 2,
    "prepare": 3, "models": 3, "evaluate": 3,
    "generation": 4,
    "train": 5,
    "leaderboard": 6, "study": 6, "demo": 6,
    "cli": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The talkface modules ``name`` imports (``from pkg import submodule`` names the submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m == "talkface" or m.startswith("talkface.")}


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) - {name} for name, path in mods.items()}


def test_every_part_has_a_layer():
    missing = sorted({part_of(m) for m in modules()} - set(LAYERS))
    assert not missing, f"parts with no layer in LAYERS (add them to the floor plan): {missing}"


def test_no_import_runs_upward():
    upward = sorted(f"{src} -> {dst}" for src, targets in import_graph().items() for dst in targets
                    if LAYERS[part_of(dst)] > LAYERS[part_of(src)]
                    or (LAYERS[part_of(dst)] == LAYERS[part_of(src)] and part_of(dst) != part_of(src)))
    assert not upward, "imports that run upward or sideways:\n" + "\n".join(upward)


def test_no_import_circle():
    graph = import_graph()
    # the package __init__ files that only re-export are part of their modules' import, not a circle
    circles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_checker_sees_lazy_imports(tmp_path):
    """A hand-made case: an import inside a function is found, and a sibling part is flagged."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from talkface.generation import generator\n"
                      "    import talkface.core.media\n")
    known = {"talkface.generation.generator", "talkface.core.media", "talkface.generation"}
    assert imports_of("talkface.models.x", source, known) == {"talkface.generation.generator",
                                                               "talkface.core.media"}
