"""UI test fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Every UI test reads and writes its own settings file, never the user's."""
    monkeypatch.setenv("NAPARI_MEDSEG_SETTINGS", str(tmp_path / "settings.ini"))


@pytest.fixture(autouse=True)
def _wait_for_background_jobs(make_napari_viewer):
    """Let every Qt background job finish before the test's viewers are closed.

    Depending on ``make_napari_viewer`` makes this fixture's teardown run *before* the viewer
    fixture closes its viewers, so no worker outlives the widgets it reports to (that aborts
    the interpreter with "wrapped C/C++ object ... has been deleted").
    """
    yield
    from qtpy.QtCore import QThreadPool

    QThreadPool.globalInstance().waitForDone(60_000)


@pytest.fixture(autouse=True)
def _fresh_notifications():
    """Start every test with an empty notification history (tests read it to find errors)."""
    from napari.utils.notifications import notification_manager

    notification_manager.records.clear()
    yield


#: Display names of the npe2 widget contributions (napari.yaml), by widget class.
DOCK_NAMES = {
    "MedSegWidget": "MedSeg (all steps)",
    "LoadWidget": "Load",
    "AnnotateWidget": "Annotate",
    "TrainWidget": "Train",
    "InferWidget": "Infer",
    "EditWidget": "Edit",
    "EvaluateWidget": "Evaluate",
    "ProjectWidget": "Project",
}


def dock_plugin_widget(viewer, name: str):
    """Dock a napari-medseg widget the way users do (*Plugins > napari-medseg > name*).

    napari then builds the widget itself and hands it a ``PublicOnlyProxy`` of the viewer,
    which is what every user's dock sees; tests that construct ``Widget(viewer)`` directly
    miss the bugs that proxy causes.
    """
    name = DOCK_NAMES.get(name, name)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", name)
    return widget


@pytest.fixture
def plugin_dock():
    """``plugin_dock(viewer, "Annotate")`` -> the docked widget (see :func:`dock_plugin_widget`)."""
    return dock_plugin_widget
