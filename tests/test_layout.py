"""The package's layers, read from the source: every import of every module,
parsed with ast (lazy imports inside functions included), against the rule

    cli, bench  ->  compare  ->  run/  ->  detector/, io/  ->  defaults, atomic_file

where an arrow means "may import". detector/ (the port of OpenFace) imports
nothing from io/, run/, compare or cli, and io/ nothing from detector/ or
above. The package root holds __version__ and hands Face and ModelError on
from detector/, and the library's Detector and read_image from run/library,
lazily: any module may import it, since its body imports nothing."""
import ast
from pathlib import Path

import pytest

PACKAGE = "mtcnn_cli"
SOURCE = Path(__file__).resolve().parent.parent / PACKAGE

# the layer of each top-level name in the package
LAYERS = {
    "defaults": "base", "atomic_file": "base",
    "detector": "detector", "io": "io", "run": "run",
    "compare": "compare", "cli": "cli", "bench": "bench",
}
BELOW = {  # what each layer may import, besides the package root
    "base": {"base"},
    "detector": {"base", "detector"},
    "io": {"base", "io"},
    "run": {"base", "detector", "io", "run"},
    "compare": {"base", "detector", "io", "run", "compare"},
    "cli": {"base", "detector", "io", "run", "compare", "cli"},
    "bench": {"base", "detector", "io", "run", "compare", "cli", "bench"},
    "root": {"detector", "run"},
}


def layer(module: str) -> str:
    """mtcnn_cli.detector.cascade -> "detector"; the package itself -> "root"."""
    parts = module.split(".")
    assert parts[0] == PACKAGE, module
    if len(parts) == 1:
        return "root"
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module}: {parts[1]} is in no layer; add it to LAYERS")
    return LAYERS[parts[1]]


def is_module(name: str) -> bool:
    """Whether a dotted name in the package is a module or a package (not, say,
    a function a `from` import takes out of one)."""
    path = SOURCE.joinpath(*name.split(".")[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def package_imports(module: str, source: str, is_package: bool = False,
                    top_level_only: bool = False) -> list[str]:
    """The modules of the package that `source` (the text of `module`) imports:
    `import mtcnn_cli.x`, `from mtcnn_cli.x import y`, `from ..x import y`,
    `from . import x`, anywhere in the file unless top_level_only."""
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else ast.walk(tree)
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level > len(here):
                    raise AssertionError(f"{module}: import beyond the package")
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.append(name if is_module(name) else base)
    return list(dict.fromkeys(found))


def violations(module: str, source: str, is_package: bool = False) -> list[str]:
    """Each import of `module` that the rule forbids, as "module -> target"."""
    allowed = BELOW[layer(module)]
    return [f"{module} -> {target}" for target in package_imports(module, source, is_package)
            if layer(target) != "root" and layer(target) not in allowed]


def modules():
    """(dotted name, is a package, source) of every module of the package."""
    for path in sorted(SOURCE.rglob("*.py")):
        parts = (PACKAGE,) + path.relative_to(SOURCE).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield ".".join(parts), is_package, path.read_text(encoding="utf-8")


def test_no_module_imports_upward():
    found = [v for name, is_package, source in modules()
             for v in violations(name, source, is_package)]
    assert found == []


def test_the_detector_imports_nothing_from_io_run_compare_or_cli():
    edges = [(name, target) for name, is_package, source in modules() if layer(name) == "detector"
             for target in package_imports(name, source, is_package)]
    assert edges, "no imports found in detector/: the parser is broken"
    outside = [f"{name} -> {target}" for name, target in edges
               if layer(target) in ("io", "run", "compare", "cli")]
    assert outside == []


def test_the_package_root_imports_nothing_when_loaded():
    """What lets every module import __version__ from the root: its body
    imports nothing of the package (Detector, Face, ModelError come lazily)."""
    source = (SOURCE / "__init__.py").read_text(encoding="utf-8")
    assert package_imports(PACKAGE, source, is_package=True, top_level_only=True) == []
    assert package_imports(PACKAGE, source, is_package=True) == [f"{PACKAGE}.detector", f"{PACKAGE}.run.library"]


def test_the_real_imports_are_seen():
    """The walk covers every folder, and reads the imports the rule allows."""
    names = {name for name, _, _ in modules()}
    assert {f"{PACKAGE}.{m}" for m in ("detector.cascade", "io.atomic", "run.detect",
                                       "compare", "cli.detect")} <= names
    imports = {name: set(package_imports(name, source, is_package))
               for name, is_package, source in modules()}
    assert f"{PACKAGE}.io.images" in imports[f"{PACKAGE}.run.batch"]
    assert f"{PACKAGE}.atomic_file" in imports[f"{PACKAGE}.detector.datfile"]
    assert f"{PACKAGE}.io.images" in imports[f"{PACKAGE}.io.inputs"]  # from .images import
    assert PACKAGE in imports[f"{PACKAGE}.io.output"]  # from .. import __version__


@pytest.mark.parametrize("module, source", [
    ("mtcnn_cli.detector.models", "from ..io.atomic import write_bytes"),
    ("mtcnn_cli.detector.models", "from ..io import atomic"),
    ("mtcnn_cli.detector.cascade", "def f():\n    from ..run import batch\n"),
    ("mtcnn_cli.detector.cascade", "import mtcnn_cli.compare"),
    ("mtcnn_cli.detector.cascade", "from mtcnn_cli.cli.common import fail"),
    ("mtcnn_cli.io.draw", "from ..detector.cascade import Face"),
    ("mtcnn_cli.run.batch", "from .. import compare"),
    ("mtcnn_cli.compare", "from .cli import main"),
    ("mtcnn_cli.defaults", "from .io import images"),
])
def test_the_checker_flags_a_forbidden_import(module, source):
    assert len(violations(module, source)) == 1


@pytest.mark.parametrize("module, source", [
    ("mtcnn_cli.detector.cascade", "from .cvexact import exp\nfrom ..defaults import T1"),
    ("mtcnn_cli.detector.datfile", "from ..atomic_file import write_bytes"),
    ("mtcnn_cli.io.output", "from .. import __version__"),
    ("mtcnn_cli.run.detect", "from ..io import atomic\nfrom ..detector.datfile import ModelError"),
    ("mtcnn_cli.cli", "from ..run.detect import run_detect"),
    ("mtcnn_cli.detector", "from .datfile import ModelError"),
])
def test_the_checker_allows_a_permitted_import(module, source):
    is_package = module in ("mtcnn_cli.cli", "mtcnn_cli.detector")
    assert violations(module, source, is_package) == []


def test_the_public_names_stay_at_the_top():
    """The library's Detector is the port's, with files, PIL images and batches around it."""
    from mtcnn_cli import Detector, Face, ImageError, ModelError, read_image
    from mtcnn_cli.detector import cascade, datfile
    from mtcnn_cli.io import images

    assert (Face, ModelError) == (cascade.Face, datfile.ModelError)
    assert issubclass(Detector, cascade.Detector) and Detector.__module__ == "mtcnn_cli.run.library"
    assert (read_image, ImageError) == (images.read_image, images.ImageError)
