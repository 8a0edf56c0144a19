"""The import rules of the package layout (pyproject.toml's [tool.importlinter]) hold, and a
broken rule is caught: `lint-imports` in CI is only worth something if it can fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("importlinter")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the package under ``root`` with the project's contracts."""
    code = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(
        REPO_ROOT / "mbv3_lightning",
        root / "mbv3_lightning",
        ignore=shutil.ignore_patterns("__pycache__", "_resources"),
    )
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_package_keeps_its_import_contracts(tmp_path):
    result = _lint_imports(_copy_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_model_module_importing_a_command_breaks_the_layers(tmp_path):
    root = _copy_project(tmp_path)
    complexity = root / "mbv3_lightning" / "models" / "complexity.py"
    complexity.write_text(
        complexity.read_text() + "\n\nfrom mbv3_lightning.cli import train  # noqa: E402\n"
    )
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "mbv3_lightning.models.complexity -> mbv3_lightning.cli" in result.stdout


def test_training_importing_deploy_breaks_the_independence_of_siblings(tmp_path):
    root = _copy_project(tmp_path)
    module = root / "mbv3_lightning" / "training" / "optim.py"
    module.write_text(module.read_text() + "\n\nimport mbv3_lightning.deploy.export  # noqa\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "mbv3_lightning.training.optim -> mbv3_lightning.deploy.export" in result.stdout


def test_data_modules_use_no_lightning_callbacks():
    """import-linter only forbids whole external packages (models import no Lightning at
    all); DataModules need Lightning itself, but callbacks belong to training/."""
    import ast

    offenders = []
    for path in (REPO_ROOT / "mbv3_lightning" / "data").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if "callbacks" in n.split(".")]
    assert offenders == []
