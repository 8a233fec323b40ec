"""Helpers shared by the UI tests (importable from any test module in tests/ui)."""

from __future__ import annotations

#: The plugin name napari knows us by (``viewer.open(..., plugin=PLUGIN)``, docks).
PLUGIN = "napari-medseg"


def error_messages(start: int = 0) -> list[str]:
    """Messages of the error notifications napari recorded (from record ``start`` on)."""
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records[start:]
            if str(n.severity).lower().endswith("error")]
