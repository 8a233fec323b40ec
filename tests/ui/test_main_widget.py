"""The tabbed MedSeg dock and the launcher."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from napari_medseg.ui import main_widget
from napari_medseg.ui.main_widget import TABS, MedSegWidget, UnavailableTab


@pytest.fixture(autouse=True)
def _workers_done(make_napari_viewer, qtbot):
    """Let background jobs that tabs start (autosave, scans) finish before the viewer closes:
    a worker outliving its widget aborts the whole test process."""
    yield
    from qtpy.QtCore import QThreadPool

    QThreadPool.globalInstance().waitForDone(20000)
    qtbot.wait(50)


def test_tabs_in_workflow_order(make_napari_viewer, qtbot, plugin_dock):
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "MedSegWidget")
    titles = [widget.tabs.tabText(i) for i in range(widget.tabs.count())]
    assert titles == ["Load", "Annotate", "Train", "Infer", "Edit", "Evaluate", "Project"]
    for title in ("Load", "Annotate", "Edit", "Evaluate"):
        assert not isinstance(widget.page(title), UnavailableTab), title
    for i in range(widget.tabs.count()):
        assert widget.tabs.tabToolTip(i)
    widget.show_tab("Edit")
    assert widget.tabs.tabText(widget.tabs.currentIndex()) == "Edit"


def test_broken_tab_becomes_placeholder(make_napari_viewer, qtbot, monkeypatch, plugin_dock):
    broken = types.ModuleType("napari_medseg.ui._broken_for_test")

    class Exploding:
        def __init__(self, viewer):
            raise RuntimeError("GPU driver missing")

    broken.Exploding = Exploding
    monkeypatch.setitem(sys.modules, "napari_medseg.ui._broken_for_test", broken)
    monkeypatch.setattr(main_widget, "TABS", TABS[:1] + (
        ("Train", "napari_medseg.ui._broken_for_test", "Exploding", "boom"),
        ("Infer", "napari_medseg.ui._not_a_module", "Nope", "missing"),
    ))
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "MedSegWidget")
    assert widget.tabs.count() == 3
    train = widget.page("Train")
    assert isinstance(train, UnavailableTab) and not train.isEnabled()
    assert "GPU driver missing" in train.text()
    assert "_not_a_module" in widget.page("Infer").text()


def test_dock_through_plugin_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "MedSeg (all steps)")
    assert isinstance(widget, MedSegWidget)


def test_launcher_help():
    out = subprocess.run([sys.executable, "-m", "napari_medseg.ui.launch", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "--screenshot" in out.stdout


def test_open_viewer_with_sample(make_napari_viewer, monkeypatch):
    import napari

    from napari_medseg.ui import launch

    made = []

    def fake_viewer(*args, **kwargs):
        kwargs.pop("title", None)
        kwargs.pop("show", None)
        v = make_napari_viewer()
        made.append(v)
        return v

    monkeypatch.setattr(napari, "Viewer", fake_viewer)
    viewer, widget = launch.open_viewer(None, "hippocampus", tab="Annotate")
    assert [type(ly).__name__ for ly in viewer.layers] == ["Image", "Labels"]
    assert widget.tabs.tabText(widget.tabs.currentIndex()) == "Annotate"


def test_launcher_screenshot_smoke(tmp_path):
    """``napari-medseg-gui --screenshot`` starts napari with the dock and the sample, saves a
    picture of the whole window and quits (needs a display: Xvfb in CI)."""
    import os

    if not os.environ.get("DISPLAY"):
        pytest.skip("no X display (run under xvfb-run)")
    out = tmp_path / "launch.png"
    env = {**os.environ, "NAPARI_MEDSEG_SETTINGS": str(tmp_path / "s.ini")}
    proc = subprocess.run([sys.executable, "-m", "napari_medseg.ui.launch", "--screenshot",
                           str(out), "--size", "1200x800"], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file()
    from PIL import Image

    pixels = np.asarray(Image.open(out))
    assert pixels.shape[0] >= 700 and pixels.shape[1] >= 1100
    assert pixels[..., :3].std() > 10


@pytest.mark.parametrize("title", ["Load", "Annotate", "Edit", "Evaluate"])
def test_every_control_explains_itself(make_napari_viewer, qtbot, title, plugin_dock):
    """Buttons, boxes, sliders and tables all carry a tooltip (checked, not hoped for)."""
    from qtpy.QtWidgets import (
        QAbstractButton,
        QAbstractSpinBox,
        QComboBox,
        QLineEdit,
        QSlider,
        QTableWidget,
    )

    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "MedSegWidget")
    page = widget.page(title)
    missing = []
    for kind in (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QSlider, QTableWidget):
        for child in page.findChildren(kind):
            if isinstance(child, QLineEdit) and isinstance(
                    child.parent(), (QAbstractSpinBox, QComboBox)):
                continue  # the text field inside a spin box / combo box
            if isinstance(child, QAbstractButton) and isinstance(child.parent(), QTableWidget):
                continue  # the table's corner button
            if not child.toolTip().strip():
                missing.append(f"{type(child).__name__} {getattr(child, 'text', lambda: '')()!r}")
    assert missing == [], missing


def test_settings_persist_between_sessions(make_napari_viewer, qtbot, plugin_dock):

    viewer = make_napari_viewer()
    edit, evaluate = plugin_dock(viewer, "EditWidget"), plugin_dock(viewer, "EvaluateWidget")
    edit.radius_spin.setValue(4.5)
    evaluate.surface_check.setChecked(False)
    again, evaluate_again = plugin_dock(viewer, "EditWidget"), plugin_dock(viewer, "EvaluateWidget")  # a "new session"
    assert again.radius_spin.value() == 4.5
    assert not evaluate_again.surface_check.isChecked()
