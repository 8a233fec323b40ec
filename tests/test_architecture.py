"""The core never pulls in napari or Qt (checked in a fresh interpreter and with import-linter)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt",
             "vispy")


def _core_modules() -> list[str]:
    """Every module of the package outside the napari shell, plus the CLI."""
    pkg = REPO / "napari_medseg"
    shell = {"ui", "_reader", "_writer", "_sample_data"}
    names = ["napari_medseg"]
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg).with_suffix("")
        parts = list(rel.parts)
        if parts[0] in shell or parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            names.append("napari_medseg." + ".".join(parts))
    return names


def test_core_and_cli_import_without_napari_or_qt():
    modules = _core_modules()
    assert "napari_medseg.io" in modules and "napari_medseg.editing" in modules
    code = (
        "import importlib, json, sys\n"
        f"mods = {modules!r}\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        f"bad = sorted(k for k in sys.modules if k.split('.')[0] in {FORBIDDEN!r})\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    leaked = json.loads(out.stdout.strip().splitlines()[-1])
    assert leaked == [], f"core imports pulled in GUI modules: {leaked}"


def test_import_linter_contract():
    # the venv's script next to this interpreter first (the venv may not be activated)
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
        "lint-imports")
    if exe is None:
        pytest.skip("import-linter not installed (pip install 'napari-medseg[testing]')")
    out = subprocess.run([exe], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


@pytest.mark.parametrize(("module", "probe"), [
    ("metrics.py", "napari_medseg.dataset.msd"),          # metrics work on arrays only
    ("training/validation.py", "napari_medseg.inference"),  # training and inference independent
    ("io/atomic.py", "napari_medseg.dataset"),             # io is the bottom layer
])
def test_layers_contract_catches_an_upward_import(tmp_path, module, probe):
    """The layers contract is not vacuous: one upward import added to a copy breaks it."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
        "lint-imports")
    if exe is None:
        pytest.skip("import-linter not installed (pip install 'napari-medseg[testing]')")
    shutil.copytree(REPO / "napari_medseg", tmp_path / "napari_medseg",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "napari_medseg" / module
    target.write_text(target.read_text() + f"\nimport {probe}  # probe\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path)
    out = subprocess.run([exe], capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
    assert out.returncode != 0, out.stdout[-2000:]
    assert "BROKEN" in out.stdout and probe in out.stdout
