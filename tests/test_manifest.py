"""The npe2 manifest is valid and every python_name it lists imports (a broken manifest fails CI)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

MANIFEST = Path(__file__).resolve().parents[1] / "napari_medseg" / "napari.yaml"
npe2 = pytest.importorskip("npe2")


def _manifest():
    return npe2.PluginManifest.from_file(str(MANIFEST))


def test_manifest_is_valid():
    manifest = _manifest()
    assert manifest.name == "napari-medseg"
    contributions = manifest.contributions
    assert contributions.readers and contributions.writers
    reader = contributions.readers[0]
    assert reader.accepts_directories
    assert {"*.nii", "*.nii.gz", "*.dcm"} <= set(reader.filename_patterns)
    writer_types = {t for w in contributions.writers for t in w.layer_types}
    assert "labels" in writer_types
    assert {s.key for s in contributions.sample_data} >= {"hippocampus", "ct_phantom"}
    widgets = {w.display_name for w in contributions.widgets}
    assert "MedSeg (all steps)" in widgets


def _python_names() -> list[str]:
    return [c.python_name for c in _manifest().contributions.commands]


@pytest.mark.parametrize("python_name", _python_names())
def test_python_name_imports(python_name):
    module_name, _, attr = python_name.partition(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr)), python_name


def test_installed_manifest_is_this_one():
    """The package's entry point points at the manifest in this checkout."""
    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-medseg")
    assert manifest.contributions.commands is not None
    assert len(manifest.contributions.commands) == len(_manifest().contributions.commands)
