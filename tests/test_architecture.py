"""The package's shape: no import cycles, layers that no import climbs, thin HTTP views, one home for errors."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import barkserve

PACKAGE_DIR = Path(barkserve.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def imported(node: ast.AST, module: str) -> Iterator[str]:
    """Names of barkserve modules that an import statement loads."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        for alias in node.names:
            yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def all_imports(module: str) -> set[str]:
    """Every barkserve module named by any import statement of `module`, wherever it stands."""
    tree = ast.parse(MODULES[module].read_text())
    return {name for node in ast.walk(tree) for name in imported(node, module) if name in MODULES}


def graph() -> dict[str, set[str]]:
    """module -> barkserve modules it imports anywhere (lazy imports too), with the packages around them."""
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        targets = set()
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for name in all_imports(module):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
                target = ".".join(parts[:i])
                if target in MODULES and target != module and target not in own_packages:
                    targets.add(target)
        edges[module] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_is_read_correctly() -> None:
    edges = graph()
    assert "barkserve.server.state" in edges["barkserve.server.routes_jobs"]
    assert "barkserve.jobs.submit" in edges["barkserve.server.routes_jobs"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package() -> None:
    assert find_cycle(graph()) is None


def test_views_import_no_other_view_and_not_the_app_factory() -> None:
    views = [m for m in MODULES if m.startswith("barkserve.server.routes_")]
    assert len(views) >= 5
    for view in views:
        bad = {m for m in all_imports(view) if m in views or m == "barkserve.server.app"}
        assert not bad, f"{view} imports {sorted(bad)}"


def test_only_the_edge_knows_http_statuses() -> None:
    # Library errors carry codes; `server/errors.py` alone maps them to statuses.
    for module, path in MODULES.items():
        if module.startswith("barkserve.server"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                assigned = {t.id for stmt in node.body if isinstance(stmt, ast.Assign) for t in stmt.targets
                            if isinstance(t, ast.Name)}  # fmt: skip
                assert "status" not in assigned, f"{module}.{node.name} sets an HTTP status"


def test_every_error_class_lives_in_the_error_module() -> None:
    for module, path in MODULES.items():
        if module in ("barkserve.errors",):
            continue
        tree = ast.parse(path.read_text())
        classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
        bases = {n.name: [ast.unparse(b) for b in n.bases] for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
        for name in classes:
            assert not any(b.endswith(("Error", "Exception")) for b in bases[name]), f"{module}.{name} is an error"


# The layers of the package, top down: a module may import its own unit (a subpackage, or a top-level
# module) and units of lower layers only, never one of its own layer or above (lazy imports too).
LAYERS: list[set[str]] = [
    {"cli"},
    {"scale"},  # Ray wraps the server, the synthesizer and the job runner for more than one machine
    {"server"},  # the HTTP edge: auth, tenancy, limits, metrics, OpenAPI
    {"finetune"},  # recordings -> training -> a model folder; uses cloning, engine, models (and may use evaluation)
    {"evaluation"},  # the offline harness: nothing in the library calls it
    {"jobs"},
    {"books", "cloning", "synthesizer", "testing"},
    {"captions", "engine", "quality"},
    {"models"},
    {"config"},
    {"options"},
    {"markup"},  # pause tags, SSML, lexicons, normalization: text -> what Bark is given
    {"auth", "audio", "text", "voices", "qc"},
    {"db", "errors", "bark"},
]
LAYER_OF = {unit: depth for depth, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """`barkserve.jobs.runner` -> `jobs`; `barkserve.synthesizer` -> `synthesizer`; the package -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def climbs(edges: dict[str, set[str]]) -> list[str]:
    """Every import that goes to a unit of the same layer or a higher one, as 'module -> module'."""
    found = []
    for module, targets in edges.items():
        source = unit_of(module)
        for target in targets:
            unit = unit_of(target)
            if unit and source and unit != source and LAYER_OF[unit] <= LAYER_OF[source]:
                found.append(f"{module} -> {target}")
    return sorted(found)


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(m) for m in MODULES} - {""}
    assert units == set(LAYER_OF), f"place these in LAYERS: {sorted(units - set(LAYER_OF))}"


def test_no_import_climbs_the_layers() -> None:
    assert climbs(graph()) == []


def test_the_layer_rule_catches_a_climb() -> None:
    edges = graph()
    edges["barkserve.captions.align"] = {*edges["barkserve.captions.align"], "barkserve.synthesizer"}
    edges["barkserve.auth.keys"] = {"barkserve.jobs.store"}
    assert climbs(edges) == [
        "barkserve.auth.keys -> barkserve.jobs.store",
        "barkserve.captions.align -> barkserve.synthesizer",
    ]


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        # library code never reaches for the edges that wrap it
        *[
            (lib, edge)
            for lib in ("jobs", "synthesizer", "books", "engine", "captions", "quality")
            for edge in ("server", "cli", "scale")
        ],
        ("auth", "jobs"),  # keys share the database, not the job store
        ("captions", "synthesizer"),
        ("quality", "synthesizer"),  # the scorers are called by the synthesizer's quality control
        ("quality", "evaluation"),
    ],
)
def test_named_rules_hold(lower: str, upper: str) -> None:
    assert LAYER_OF[lower] > LAYER_OF[upper], f"{lower} must stay below {upper}"


def test_test_modules_have_unique_names() -> None:
    """The test folders have no __init__.py, so pytest imports each test module by its file name: two
    `test_eval.py` in two folders stop the whole run at collection."""
    tests = Path(__file__).parent
    names = [p.name for p in tests.rglob("*.py") if p.name != "conftest.py" and "fixtures" not in p.parts]
    assert sorted({n for n in names if names.count(n) > 1}) == []
