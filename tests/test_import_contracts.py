"""The import contracts of ``.importlinter`` (the layering in docs/architecture.md) hold, and catch a breach."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # import-linter analyses the packages found from its working directory, so a copy can be checked too.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_training_module_importing_django_breaks_the_contract(tmp_path: Path) -> None:
    # Given a copy of the code in which a training module imports the Django side
    for name in ("annotator", "training", ".importlinter"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    heads = tmp_path / "training" / "heads.py"
    heads.write_text(heads.read_text() + "\nfrom annotator.models import Project  # noqa: E402,F401\n")

    # When the contracts are checked
    result = _lint_imports(tmp_path)

    # Then the framework-free contract is reported broken, naming the import
    assert result.returncode == 1, result.stdout + result.stderr
    assert "training imports nothing of annotator, Django, DRF or Celery BROKEN" in result.stdout
    assert "training.heads -> annotator.models" in result.stdout
