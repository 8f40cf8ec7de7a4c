"""Each DVC stage depends on every project module its step imports.

A stage that misses one of them is not rerun when that code changes, and its
results go stale without a word. The imports are read from the source (every
``import`` statement, at the top or inside a function), not by importing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from captcha_ocr.cli import MODULES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SRC = PROJECT_ROOT / "src"
STAGES = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    path = SRC / Path(*name.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def imported_modules(path: Path) -> set[str]:
    """captcha_ocr modules named by import statements in ``path``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from captcha_ocr import paths` names a module, not an attribute.
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] == "captcha_ocr" and module_file(n)}


def project_files_used_by(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        # Importing a.b.c runs a/__init__ and a/b/__init__ too.
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += imported_modules(module_file(name))
    files = {module_file(n) for n in seen}
    return {str(f.relative_to(PROJECT_ROOT)) for f in files if not only_a_docstring(f)}


def only_a_docstring(path: Path) -> bool:
    """A package's __init__ that holds nothing but its docstring changes no result."""
    body = ast.parse(path.read_text()).body
    return len(body) == 1 and isinstance(body[0], ast.Expr)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_depends_on_every_module_its_step_imports(stage):
    command = STAGES[stage]["cmd"].split()
    assert command[:2] == ["captcha-ocr", stage], "each stage runs its own step"
    needed = project_files_used_by(f"captcha_ocr.{MODULES[stage]}")
    missing = needed - set(STAGES[stage]["deps"])
    assert not missing, f"dvc.yaml stage {stage} misses deps: {sorted(missing)}"


def test_the_import_reader_follows_imports_inside_functions(tmp_path):
    # The export step loads its registry code lazily; a top-level-only reader would miss it.
    used = project_files_used_by("captcha_ocr.steps.export")
    assert "src/captcha_ocr/registry.py" in used
    assert "src/captcha_ocr/core/vocabulary.py" in used
