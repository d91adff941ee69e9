"""The package's import graph has no cycles (imports inside functions count): modules import in one direction."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def modules(src: Path = SRC, package: str = "medgan") -> dict[str, Path]:
    found = {}
    for path in (src / package).rglob("*.py"):
        parts = list(path.relative_to(src).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(src: Path = SRC, package: str = "medgan") -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source (``from a import b`` counts a.b
    when b is a module, else a)."""
    known = modules(src, package)

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in known}
    for module, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                    base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in filter(None, map(resolve, targets)):
                # a package's own __init__ is imported on the way to any of its modules: not an edge back
                if target != module and target.startswith(package) and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 30 and graph["medgan.train"], "the graph was not built"
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle_inside_functions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("def thing():\n    from pkg import c\n")
    (package / "c.py").write_text("from . import a\n")
    (package / "d.py").write_text("import pkg.a\n")
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b", "pkg.c"]]


# The pipeline's layers (ARCHITECTURE.md): a module imports only from its own layer or those before it.
LAYERS = [
    ("foundations", ["medgan", "medgan.files", "medgan.device", "medgan.metrics", "medgan.recipes"]),
    ("data", ["medgan.data"]),
    ("models and losses", ["medgan.models", "medgan.losses", "medgan.augment", "medgan.ema", "medgan.progression"]),
    ("config and run directory", ["medgan.config", "medgan.nets", "medgan.rundir", "medgan.runlog"]),
    ("sampling", ["medgan.sample"]),
    ("evaluation", ["medgan.evaluation"]),
    ("training", ["medgan.step", "medgan.train", "medgan.clocks", "medgan.packed"]),
    ("study and report", ["medgan.study"]),
    ("Python API", ["medgan.api"]),
    ("command line", ["medgan.cli", "medgan.__main__"]),
]


def layer(module: str) -> int:
    """The layer of a module: the one whose longest listed prefix it has."""
    matches = [
        (len(prefix), i)
        for i, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer of LAYERS: add it (and to ARCHITECTURE.md)"
    return max(matches)[1]


def test_imports_go_one_way_along_the_pipeline():
    upward = [
        f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
        for m, targets in import_graph().items()
        for t in targets
        if layer(t) > layer(m)
    ]
    assert not upward, "imports against the pipeline: " + "; ".join(sorted(upward))
