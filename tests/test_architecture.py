"""The layering of `nerf_edit` is checked, not hoped for: import-linter's contracts (pyproject.toml) hold, they do
fail on a back-import, and no module of the three packages imports itself through others (no import circle)."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import HANG_GUARD

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"nerf_edit": "nerf_edit", "nerf_edit_methods": "methods", "nerf_edit_scripts": "scripts"}

# Runs import-linter on the copy in sys.argv[1] (also its cwd), not on what the editable install finds.
LINT = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, sys.argv[1])
from importlinter.cli import lint_imports
sys.exit(lint_imports(config_filename=sys.argv[2], no_cache=True, no_logo=True))
"""


def copy_packages(root: Path) -> Path:
    for name, folder in PACKAGES.items():
        shutil.copytree(REPO / folder, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LINT, str(root), str(REPO / "pyproject.toml")], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ""}, cwd=root, timeout=HANG_GUARD)  # it reads the cwd first


def test_the_contracts_hold_and_fail_on_a_back_import(tmp_path):
    clean = lint(copy_packages(tmp_path / "clean"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "8 kept, 0 broken" in clean.stdout


@pytest.mark.parametrize("module, planted, arrow", [
    ("nerf_edit/core/masks.py", "from nerf_edit.zone import ops as _zone", "nerf_edit.core.masks -> nerf_edit.zone.ops"),
    ("nerf_edit/editing/editor.py", "import nerf_edit.wys.ops as _wys", "nerf_edit.editing.editor -> nerf_edit.wys.ops"),
    ("methods/controls.py", "from nerf_edit_methods.pipeline import WYSPipeline as _P",
     "nerf_edit_methods.controls -> nerf_edit_methods.pipeline"),
    ("methods/splat/ops.py", "from nerf_edit_methods.splat.strategy import FrozenBackgroundStrategy as _S",
     "nerf_edit_methods.splat.ops -> nerf_edit_methods.splat.strategy"),
    ("scripts/edit_image.py", "from nerf_edit_scripts.evaluate import load_frames as _f",
     "nerf_edit_scripts.edit_image -> nerf_edit_scripts.evaluate"),
    ("scripts/benchmarks/bench_2d.py", "from nerf_edit_scripts.benchmarks import bench_3d as _b",
     "nerf_edit_scripts.benchmarks.bench_2d -> nerf_edit_scripts.benchmarks.bench_3d"),
])
def test_a_planted_back_import_breaks_a_contract(tmp_path, module, planted, arrow):
    root = copy_packages(tmp_path / "broken")
    path = root / package_path(module)
    path.write_text(path.read_text() + f"\n{planted}  # a back-arrow\n")
    broken = lint(root)
    assert broken.returncode != 0
    assert arrow in broken.stdout


def test_a_new_system_folder_not_in_the_contract_breaks_it(tmp_path):
    """The layers contracts are exhaustive: a system added under nerf_edit/ without its place fails the lint."""
    root = copy_packages(tmp_path / "new_system")
    (root / "nerf_edit" / "newsystem").mkdir()
    (root / "nerf_edit" / "newsystem" / "__init__.py").write_text("")
    broken = lint(root)
    assert broken.returncode != 0 and "nerf_edit.newsystem" in broken.stdout


def package_path(path: str) -> Path:
    """A repository path as it lies in the copied packages (methods/ -> nerf_edit_methods/, scripts/ -> ...)."""
    folder, _, rest = path.partition("/")
    return Path({folder_: name for name, folder_ in PACKAGES.items()}[folder]) / rest


# ----------------------------------------------------------------------------- complexity and length
LONG_FUNCTION = "def long_function(x):\n" + "".join(f"    x = x + {i}\n" for i in range(100)) + "    return x\n"


def test_a_100_line_function_fails_the_lint(tmp_path):
    """ruff's complexity rules (C901, PLR0915, pyproject.toml) stop a long function in `make lint`."""
    source = tmp_path / "long.py"
    source.write_text(LONG_FUNCTION)
    ruff = [str(Path(sys.executable).parent / "ruff"), "check", "--no-cache", "--config", str(REPO / "pyproject.toml")]
    result = subprocess.run([*ruff, str(source)], capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode != 0 and "PLR0915" in result.stdout
    assert subprocess.run([*ruff, str(REPO / "nerf_edit")], capture_output=True, timeout=HANG_GUARD).returncode == 0


MAX_FUNCTION_LINES = 60  # a function's body, its docstring left out


def function_lengths(root: Path):
    """(body lines, file, name) of every function under `root`."""
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0]
                docstring = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)
                start = first.end_lineno + 1 if docstring and len(node.body) > 1 else first.lineno
                yield node.end_lineno - start + 1, path, node.name


def test_no_function_is_longer_than_60_lines(tmp_path):
    long = [(lines, str(path.relative_to(REPO)), name) for folder in PACKAGES.values()
            for lines, path, name in function_lengths(REPO / folder) if lines > MAX_FUNCTION_LINES]
    assert long == []
    (tmp_path / "planted.py").write_text(LONG_FUNCTION)
    assert [name for lines, _, name in function_lengths(tmp_path) if lines > MAX_FUNCTION_LINES] == ["long_function"]


# ----------------------------------------------------------------------------- one place lists the systems
def pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_ships_in_the_wheel():
    """pyproject.toml's `packages` is every folder with an __init__.py under the three packages (a system or
    sub-package forgotten there would be left out of the wheel while the tests, run from the tree, pass)."""
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    found = {".".join([name, *path.parent.relative_to(REPO / folder).parts])
             for name, folder in PACKAGES.items() for path in (REPO / folder).rglob("__init__.py")}
    assert listed == found


def test_the_systems_are_the_registry_s_and_the_contract_s():
    """nerf_edit.registry.SYSTEMS is the one list: it is the contract's top layer, each is a package, and every
    editor, localiser and step hook registered by name lies in a system or in the editing layer."""
    from nerf_edit.registry import EDITORS, LOCALIZERS, STEP_HOOKS, SYSTEMS

    contract = next(c for c in pyproject()["tool"]["importlinter"]["contracts"] if c.get("containers") == ["nerf_edit"])
    assert sorted(name.strip() for name in contract["layers"][0].split("|")) == sorted(SYSTEMS)
    assert all((REPO / "nerf_edit" / name / "__init__.py").is_file() for name in SYSTEMS)
    for path in [*EDITORS.values(), *LOCALIZERS.values(), *STEP_HOOKS.values()]:
        assert path.split(".")[1] in (*SYSTEMS, "editing"), path


def test_every_public_name_resolves():
    import nerf_edit

    for name in nerf_edit.__all__:
        assert getattr(nerf_edit, name) is not None, name


def test_no_import_circle():
    """Tarjan's strongly connected components of the module import graph (grimp, import-linter's graph): none has
    more than one module."""
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(module):  # iterative enough for this graph's depth
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert circles == []
