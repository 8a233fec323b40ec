"""``napari-medseg-gui``: open napari with the MedSeg dock and an image (default: the sample).

Usage::

    napari-medseg-gui                      # hippocampus sample MRI with its labels
    napari-medseg-gui scan.nii.gz          # any NIfTI file or DICOM file / folder
    napari-medseg-gui --screenshot out.png # save a window screenshot and quit (docs, smoke test)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PLUGIN = "napari-medseg"
MAIN_WIDGET = "MedSeg (all steps)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-medseg-gui",
        description="Open napari with the MedSeg tools docked and an image loaded.",
    )
    parser.add_argument("path", nargs="?", help="NIfTI, NRRD or DICOM file, DICOM folder or picture "
                        "(default: the hippocampus sample)")
    parser.add_argument("--sample", choices=("hippocampus", "ct_phantom"), default="hippocampus",
                        help="sample to open when no path is given (default: %(default)s)")
    parser.add_argument("--tab", default="Load", help="tab to show first (default: %(default)s)")
    parser.add_argument("--screenshot", metavar="FILE",
                        help="save a screenshot of the whole window to FILE, then quit")
    parser.add_argument("--size", default="1400x900", help="window size WxH (default: %(default)s)")
    return parser


def open_viewer(path: str | None = None, sample: str = "hippocampus", tab: str = "Load",
                show: bool = True) -> tuple[Any, Any]:
    """Create a napari viewer with the MedSeg dock and an image open.

    Returns
    -------
    (napari.Viewer, MedSegWidget)
    """
    import napari

    from napari_medseg.ui._notify import notify_errors

    viewer = napari.Viewer(title="napari-medseg", show=show)
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, MAIN_WIDGET)
    with notify_errors("Open image"):
        if path:
            viewer.open(str(Path(path).expanduser()), plugin=PLUGIN)
        else:
            viewer.open_sample(PLUGIN, sample)
    if hasattr(widget, "show_tab"):
        widget.show_tab(tab)
    return viewer, widget


def _close_toasts(viewer: Any) -> None:
    """Close napari's transient notification pop-ups (they would cover the screenshot)."""
    from qtpy.QtWidgets import QWidget

    window = viewer.window._qt_window
    for child in window.findChildren(QWidget):
        if type(child).__name__ == "NapariQtNotification":
            child.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    import napari
    from qtpy.QtCore import QTimer

    viewer, _widget = open_viewer(args.path, args.sample, args.tab)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        viewer.window._qt_window.resize(w, h)
    except (ValueError, AttributeError):
        print(f"napari-medseg-gui: ignoring bad --size {args.size!r}", file=sys.stderr)
    QTimer.singleShot(300, viewer.reset_view)  # fit the image to the canvas beside the dock
    if args.screenshot:
        out = Path(args.screenshot).expanduser()

        def shoot() -> None:
            _close_toasts(viewer)
            out.parent.mkdir(parents=True, exist_ok=True)
            viewer.window.screenshot(str(out), canvas_only=False)
            print(f"screenshot saved to {out}")
            viewer.close()

        QTimer.singleShot(1500, shoot)
    napari.run()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
