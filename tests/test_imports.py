"""The package's import graph: no cycles, and lower layers never import the ones above them."""

import ast
import subprocess
import sys
from pathlib import Path

import omnigen

PACKAGE = Path(omnigen.__file__).parent
# Layers from the bottom; a module may import its own layer and the ones below, never above.
LAYERS = [
    ("base", ["omnigen.model", "omnigen.flow", "omnigen.data", "omnigen.metrics", "omnigen.processor",
              "omnigen.utils", "omnigen.config", "omnigen.checkpoints.format", "omnigen.checkpoints.atomic_io",
              "omnigen.checkpoints.sharded"]),
    ("training", ["omnigen.checkpoints.release_layout", "omnigen.training", "omnigen.module"]),
    ("inference", ["omnigen.pipeline", "omnigen.evaluation", "omnigen.rl", "omnigen.callbacks", "omnigen.checkpoints"]),
    ("commands", ["omnigen"]),  # fit, generate, evaluate, convert, report, speedrun, pretrain_lm, bench
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The omnigen modules `path` imports, at the top or inside functions; `if TYPE_CHECKING:` blocks
    are annotations only, so they are not counted."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}  # fmt: skip
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for name in names:
            while name not in modules and "." in name:
                name = name.rpartition(".")[0]
            if name in modules and name != this and name.startswith("omnigen"):
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def layer_of(module: str) -> int:
    """The layer of the longest prefix that names `module` (a package or the module itself); the bare
    `omnigen` package (an empty __init__) is in the base layer."""
    if module == "omnigen":
        return 0
    best, level = -1, 0
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    return level


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 100 and "omnigen.training.finetune" in graph["omnigen.module"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_importing_the_data_package_does_not_load_the_module_or_training():
    data_modules = sorted(m for m in import_graph() if m.startswith("omnigen.data"))
    code = (
        f"import importlib, sys\nfor m in {data_modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.startswith('omnigen')))"
    )
    loaded = eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert "omnigen.data.modules.shapes" in loaded
    above = [m for m in loaded if layer_of(m) > 0]
    assert above == [], above
