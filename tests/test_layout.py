"""The package's layers, read from the source: every import of every module,
parsed with ast (lazy imports inside functions included), against the order
that docs/architecture.md writes down:

    base < detector < io < run < compare < cli

A module imports only from its own layer or one below, never up; detector/
and io/ are side by side (neither imports the other). The module graph has
no cycle, a function-local import of the package carries its reason, nothing
below cli/ imports click, and every module imports on its own. The package
root imports nothing and hands __version__ and the public names on lazily."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "mtcnn_cli"
ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / PACKAGE
SIDE_BY_SIDE = {frozenset({"detector", "io"})}  # neither may import the other


def documented_order() -> list[str]:
    """The layers, lowest first, from the line of docs/architecture.md that
    reads `base < detector < ...`."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    found = re.search(r"^\s*`?(base(?:\s*<\s*\w+)+)`?\s*$", text, re.M)
    assert found, "docs/architecture.md has no line `base < detector < ... < cli`"
    return [name.strip() for name in found.group(1).split("<")]


ORDER = documented_order()


def layer(module: str) -> str:
    """mtcnn_cli.detector.cascade -> "detector"; the package itself -> "root"."""
    parts = module.split(".")
    assert parts[0] == PACKAGE, module
    if len(parts) == 1 or parts[1] == "__main__":
        return "root"
    if parts[1] not in ORDER:
        raise AssertionError(f"{module}: {parts[1]} is in no layer of docs/architecture.md")
    return parts[1]


def allowed(source_layer: str, target_layer: str) -> bool:
    if target_layer == "root" or source_layer == target_layer:
        return True
    if source_layer == "root":
        return True  # the root hands the public names on, lazily (checked below)
    if frozenset({source_layer, target_layer}) in SIDE_BY_SIDE:
        return False
    return ORDER.index(target_layer) < ORDER.index(source_layer)


def is_module(name: str) -> bool:
    """Whether a dotted name in the package is a module or a package (not, say,
    a function a `from` import takes out of one)."""
    path = SOURCE.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_nodes(source: str, top_level_only: bool = False):
    """(node, whether it is inside a function) for each import statement."""
    tree = ast.parse(source)
    if top_level_only:
        return [(node, False) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    found = []

    def visit(node, inside):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, inside))
            visit(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def targets(module: str, node, is_package: bool) -> list[str]:
    """The package's modules one import statement of `module` names."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    if node.level:
        if node.level > len(here):
            raise AssertionError(f"{module}: import beyond the package")
        base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    if base.split(".")[0] != PACKAGE:
        return []
    return [f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base for a in node.names]


def package_imports(module: str, source: str, is_package: bool = False,
                    top_level_only: bool = False) -> list[str]:
    found = [t for node, _ in import_nodes(source, top_level_only) for t in targets(module, node, is_package)]
    return list(dict.fromkeys(found))


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """Each import of `module` that the layer order forbids, as "module -> target"."""
    return [f"{module} -> {target}" for target in package_imports(module, source, is_package)
            if not allowed(layer(module), layer(target))]


def modules():
    """(dotted name, is a package, source) of every module of the package."""
    for path in sorted(SOURCE.rglob("*.py")):
        parts = (PACKAGE,) + path.relative_to(SOURCE).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield ".".join(parts), is_package, path.read_text(encoding="utf-8")


def graph() -> dict:
    return {name: set(package_imports(name, source, is_package)) - {name}
            for name, is_package, source in modules()}


def cycle(edges: dict) -> list[str] | None:
    """One cycle of the graph, as the modules around it, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_documented_order_names_every_layer():
    folders = {path.name for path in SOURCE.iterdir() if (path / "__init__.py").is_file()}
    assert folders == set(ORDER)
    assert ORDER[0] == "base" and ORDER[-1] == "cli"


def test_no_module_imports_upward_or_sideways():
    found = [v for name, is_package, source in modules() for v in violations(name, source, is_package)]
    assert found == []


def test_the_module_graph_has_no_cycle():
    edges = {name: {t for t in targets if t != PACKAGE} for name, targets in graph().items()}
    # a package's __init__ that imports its own submodules, and a submodule that
    # imports its package's __init__, would be a cycle too: it is counted
    assert cycle(edges) is None


def test_the_cycle_finder_finds_one():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_every_lazy_import_of_the_package_says_why():
    """A function-local import of the package is for a slow or optional
    dependency only, with the reason in a comment on its line or the line
    before; never to hide a cycle (the graph above counts it anyway)."""
    bare = []
    for name, is_package, source in modules():
        lines = source.splitlines()
        for node, inside in import_nodes(source):
            if not inside or not targets(name, node, is_package):
                continue  # a top-level import, or an outside library imported late
            said = "#" in lines[node.lineno - 1]
            for k in range(node.lineno - 2, max(-1, node.lineno - 12), -1):
                line = lines[k].strip()  # a block of imports under one comment counts
                if not line.startswith(("from ", "import ")):
                    said = said or line.startswith("#")
                    break
            if not said:
                bare.append(f"{name}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert bare == []


def test_nothing_below_the_command_line_imports_click():
    found = [name for name, is_package, source in modules()
             if layer(name) not in ("cli", "root")
             for node, _ in import_nodes(source)
             if any(alias.name.split(".")[0] == "click" for alias in node.names) and isinstance(node, ast.Import)
             or isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "click"]
    assert found == []


def test_the_package_root_imports_nothing_when_loaded():
    """What lets `import mtcnn_cli` stay light, and leaves a signal no import
    of ours to land in before the program's handler: its body imports
    nothing; __version__, Detector, Face and the rest come lazily."""
    source = (SOURCE / "__init__.py").read_text(encoding="utf-8")
    assert package_imports(PACKAGE, source, is_package=True, top_level_only=True) == []
    assert not [node for node in ast.parse(source).body if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_the_real_imports_are_seen():
    """The walk covers every folder, and reads the imports the rule allows."""
    imports = graph()
    assert {f"{PACKAGE}.{m}" for m in ("detector.cascade", "base.atomic", "run.detect", "io.records",
                                       "compare.readers", "cli.detect", "run.outdir.merge")} <= set(imports)
    assert f"{PACKAGE}.io.images" in imports[f"{PACKAGE}.run.batch"]
    assert f"{PACKAGE}.base.atomic" in imports[f"{PACKAGE}.detector.datfile"]
    assert f"{PACKAGE}.io.images" in imports[f"{PACKAGE}.io.inputs"]  # from .images import
    assert f"{PACKAGE}.io.records" in imports[f"{PACKAGE}.run.outdir.merge"]  # from ...io import records


@pytest.mark.parametrize("module, source", [
    ("mtcnn_cli.detector.models", "from ..io import records"),
    ("mtcnn_cli.detector.cascade", "def f():\n    from ..run import batch\n"),
    ("mtcnn_cli.detector.cascade", "import mtcnn_cli.compare"),
    ("mtcnn_cli.detector.cascade", "from mtcnn_cli.cli.program import fail"),
    ("mtcnn_cli.io.draw", "from ..detector.cascade import Face"),
    ("mtcnn_cli.run.batch", "from .. import compare"),
    ("mtcnn_cli.compare.stats", "from ..cli import main"),
    ("mtcnn_cli.base.defaults", "from ..io import images"),
])
def test_the_checker_flags_a_forbidden_import(module, source):
    assert len(violations(module, source)) == 1


@pytest.mark.parametrize("module, source", [
    ("mtcnn_cli.detector.cascade", "from .cvexact import exp\nfrom ..base.defaults import T1"),
    ("mtcnn_cli.detector.datfile", "from ..base.atomic import write_bytes"),
    ("mtcnn_cli.run.detect", "from ..io import records\nfrom ..detector.datfile import ModelError"),
    ("mtcnn_cli.cli", "from ..run.detect import run_detect"),
    ("mtcnn_cli.detector", "from .datfile import ModelError"),
    ("mtcnn_cli.run.outdir.merge", "from ...io import records"),
])
def test_the_checker_allows_a_permitted_import(module, source):
    is_package = module in ("mtcnn_cli.cli", "mtcnn_cli.detector")
    assert violations(module, source, is_package) == []


def test_every_module_imports_on_its_own():
    """Each module in a fresh interpreter: no module works only because
    another was imported first."""
    names = [name for name, _, _ in modules() if not name.endswith("__main__")]
    program = ("import importlib, subprocess, sys\n"
               "failed = []\n"
               "for name in sys.argv[1:]:\n"
               "    done = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True, text=True)\n"
               "    if done.returncode:\n"
               "        failed.append(name + ': ' + (done.stderr.strip().splitlines() or ['?'])[-1])\n"
               "print('\\n'.join(failed))\n")
    done = subprocess.run([sys.executable, "-c", program, *names], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_public_names_stay_at_the_top():
    """The library's Detector is the port's, with files, PIL images and batches around it."""
    from mtcnn_cli import Detector, Face, ImageError, ModelError, Result, read_image
    from mtcnn_cli.detector import cascade, datfile
    from mtcnn_cli.io import images, records

    assert (Face, ModelError, Result) == (cascade.Face, datfile.ModelError, records.Result)
    assert issubclass(Detector, cascade.Detector) and Detector.__module__ == "mtcnn_cli.run.library"
    assert (read_image, ImageError) == (images.read_image, images.ImageError)


def test_importing_the_package_loads_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", "import sys, mtcnn_cli; print(sorted(m for m in "
                           "('numpy', 'cv2', 'numba', 'rich', 'click') if m in sys.modules))"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_the_benchmark_is_not_part_of_the_installed_package():
    assert not (SOURCE / "bench.py").exists() and (ROOT / "benchmarks" / "bench.py").is_file()
