"""The package's layout: stages import only the stages below them, no import cycles, small files, a typed public API."""

import ast
import importlib
import os
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autoencoder3d"
# lowest first; a module may import its own stage and the stages listed before it
LAYERS = [
    {"errors", "volume", "box"},
    {"util"},
    {"formats"},
    {"prep", "network", "simulate"},
    {"data"},
    {"runs"},
    {"clustering", "export", "report"},
    {"edss3d", "workflows"},
    {"cli"},
]
RANK = {stage: rank for rank, stages in enumerate(LAYERS) for stage in stages}
SIBLINGS_MAY_IMPORT = {("network", "prep")}  # augmentations reuse pose's flips; prep never imports network
MAX_LINES = 450
MAX_TOP_LEVEL_MODULES = 8


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def _type_checking_blocks(tree):
    return [node for node in ast.walk(tree) if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING"]


def imports_of(name, path, *, type_checking=True):
    """The package modules ``name`` imports (at module level or inside functions; ``type_checking``: also for type hints only)."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    tree = ast.parse(path.read_text())
    skipped = set() if type_checking else {id(n) for block in _type_checking_blocks(tree) for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[: len(base) - node.level + 1]
                target = ".".join(prefix + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "autoencoder3d":
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _is_module(candidate) else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "autoencoder3d")
    return found


def _is_module(name):
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or path.is_dir()


def stage_of(name):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


GRAPH = {name: imports_of(name, path) for name, path in modules()}
RUNTIME_GRAPH = {name: imports_of(name, path, type_checking=False) for name, path in modules()}


def test_each_stage_imports_only_the_stages_below_it():
    wrong = []
    for name, targets in GRAPH.items():
        here = stage_of(name)
        if here is None or here == "__main__":
            continue
        for target in targets:
            there = stage_of(target)
            if there is None or there == here or (here, there) in SIBLINGS_MAY_IMPORT:
                continue
            if RANK[there] > RANK[here] or (RANK[there] == RANK[here] and RANK[here] > 0):
                wrong.append(f"{name} -> {target}")
    assert not wrong, "imports running up or sideways:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    """Cycles of imports that run (a module may name a type of a module that imports it under TYPE_CHECKING)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in RUNTIME_GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in RUNTIME_GRAPH:
        if node not in index:
            visit(node)
    assert not cycles


def test_files_are_small_and_the_top_level_is_short():
    long_files = [f"{p.relative_to(PACKAGE)}: {n}" for _, p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long_files
    top = [p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def _unannotated(path):
    tree = ast.parse(path.read_text())
    missing = []

    def check(function, owner=""):
        arguments = function.args.posonlyargs + function.args.args + function.args.kwonlyargs
        if owner and arguments and arguments[0].arg in ("self", "cls"):
            arguments = arguments[1:]
        arguments += [a for a in (function.args.vararg, function.args.kwarg) if a]
        lacking = [a.arg for a in arguments if a.annotation is None]
        if function.returns is None and function.name != "__init__":
            lacking.append("return")
        if lacking:
            missing.append(f"{path.relative_to(PACKAGE)}:{function.lineno} {owner}{function.name}: {', '.join(lacking)}")

    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            check(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and (not item.name.startswith("_") or item.name == "__init__"):
                    check(item, node.name + ".")
    return missing


def test_every_public_function_is_annotated():
    missing = [line for _, path in modules() for line in _unannotated(path)]
    assert not missing, f"{len(missing)} public functions without type hints:\n" + "\n".join(missing[:40])


def test_the_package_is_typed():
    assert (PACKAGE / "py.typed").is_file()


SUBPACKAGES = sorted(p.parent.name if p.parent.parent == PACKAGE else f"{p.parent.parent.name}.{p.parent.name}"
                     for p in PACKAGE.glob("*/**/__init__.py"))


@pytest.mark.parametrize("subpackage", [s for s in SUBPACKAGES if s != "cli.commands"])
def test_each_subpackage_declares_its_public_names(subpackage):
    module = importlib.import_module(f"autoencoder3d.{subpackage}")
    assert module.__all__, subpackage
    for name in module.__all__:
        assert getattr(module, name) is not None, f"autoencoder3d.{subpackage}.{name}"


def test_tests_mirror_the_package():
    tests = Path(__file__).resolve().parent
    stages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in tests.iterdir() if (p / "__init__.py").is_file()}
    assert folders <= stages, folders - stages
    assert not [p.name for p in tests.glob("test_*.py") if p.name not in ("test_docs.py", "test_house.py")]


def test_nothing_outside_runs_spells_a_run_folder_file():
    names = ('"run.json"', '"clus-center"', '"kmeans.pickle"', '"ccents.pickle"', '"model-seg"', '"pose-normalized.pickle"')
    spelled = []
    for _, path in modules():
        if path.parent.name in ("runs", "cli", "commands"):  # the commands' --help texts name the files
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if any(name in code for name in names) and "help=" not in code:
                spelled.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not spelled, "\n".join(spelled)


def test_cli_help_does_not_import_keras():
    import subprocess
    import sys

    code = ("import sys; from autoencoder3d.cli.main import AUTOENCODER3D_COMMANDS, build_parser; "
            "build_parser('autoencoder3d', AUTOENCODER3D_COMMANDS); print('keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert result.stdout.strip() == "False", result.stderr[-2000:]
