"""The layering of `nerf_edit` is checked, not hoped for: import-linter's contracts (pyproject.toml) hold, they do
fail on a back-import, and no module of the three packages imports itself through others (no import circle)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    assert "3 kept, 0 broken" in clean.stdout
    broken_root = copy_packages(tmp_path / "broken")
    masks = broken_root / "nerf_edit" / "core" / "masks.py"
    masks.write_text(masks.read_text() + "\nfrom nerf_edit.zone import ops as _zone  # a back-arrow: core -> a system\n")
    broken = lint(broken_root)
    assert broken.returncode != 0
    assert "nerf_edit.core.masks -> nerf_edit.zone.ops" in broken.stdout


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
