"""UI test fixtures."""

from __future__ import annotations

import pytest


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
