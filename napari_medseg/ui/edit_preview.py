"""The Edit dock's preview: show what an operation would change, then Apply or Discard it.

With *Preview before applying* ticked, an operation is computed on a snapshot of the labels and
its effect is shown in an ``edit preview`` labels layer (green: would be added, red: would be
removed); the labels stay unchanged until *Apply preview* writes the previewed voxels as one
undo step (brush strokes made meanwhile are kept) or *Discard* drops it. Snapshots above
``BACKGROUND_VOXELS`` are computed in a worker, and applying goes through
:func:`~napari_medseg.ui._controls.edit_labels` (a worker and slab writes for large volumes).

The row is a horizontal magicgui :class:`~magicgui.widgets.Container` of a ``CheckBox`` and two
``PushButton`` s, embedded through ``.native``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_medseg.ui._controls import BACKGROUND_VOXELS, edit_labels, run_in_worker
from napari_medseg.ui._layers import cells

#: Classes of the preview layer.
PREVIEW_CLASSES = {
    1: {"name": "would be added", "color": "#39ff14"},
    2: {"name": "would be removed", "color": "#ff3b30"},
}


def preview_form() -> Container:
    """The magicgui row: *Preview before applying*, *Apply preview* and *Discard*."""
    form = Container(layout="horizontal", labels=False, widgets=[
        CheckBox(name="preview", text="Preview before applying", value=False,
                 tooltip="Show what an operation would add (green) and remove (red) in a "
                         "preview layer; then Apply or Discard"),
        PushButton(name="apply", text="Apply preview",
                   tooltip="Apply the previewed operation (one undo step)"),
        PushButton(name="discard", text="Discard",
                   tooltip="Drop the preview; the labels stay unchanged"),
    ])
    form.margins = (0, 0, 0, 0)
    form.native.layout().setStretch(0, 1)  # the check box takes the free width
    return form


def preview_difference(snapshot: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]
                       ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(result, diff, added, removed) of ``compute`` on ``snapshot``; ``diff`` is 1 where a
    voxel would be added to a label, 2 where one would become background. Scans the whole
    volume: runs in the worker for large volumes."""
    result = np.asarray(compute(snapshot))
    changed = result != snapshot
    diff = np.zeros(snapshot.shape, dtype=np.uint8)
    diff[changed & (result != 0)] = 1
    diff[changed & (result == 0)] = 2
    added = int(np.count_nonzero(changed & (result != 0)))
    return result, diff, added, int(np.count_nonzero(changed)) - added


class PreviewRow(QWidget):
    """The preview controls of the Operations box and the pending preview.

    Parameters
    ----------
    dock : EditWidget
        The dock whose viewer, status line, worker, busy state and change report it uses.

    Attributes
    ----------
    form : magicgui.widgets.Container
        The row; ``preview_check``, ``apply_button`` and ``discard_button`` are its natives.
    layer : napari.layers.Labels or None
        The preview layer while a preview is shown.
    pending : tuple or None
        (labels layer, snapshot, result, description) of the previewed operation.
    """

    def __init__(self, dock: Any) -> None:
        super().__init__()
        self.dock = dock
        self.layer: Any = None
        self.pending: tuple[Any, np.ndarray, np.ndarray, str] | None = None
        self.form = preview_form()
        self.preview_check = self.form.preview.native
        self.apply_button = self.form.apply.native
        self.discard_button = self.form.discard.native
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.form.native)
        self.discard_button.clicked.connect(self.discard)
        self.update_buttons()

    @property
    def wanted(self) -> bool:
        """Whether operations are previewed first."""
        return bool(self.form.preview.value)

    def start(self, layer: Any, compute: Callable[[np.ndarray], np.ndarray], what: str,
              action: str) -> Any:
        """Compute the operation on a snapshot and show its effect without changing labels.

        Returns the worker for large volumes, else ``None`` (the preview is shown).
        """
        snapshot = np.array(layer.data, copy=True)
        dock = self.dock

        def show(out: tuple[np.ndarray, np.ndarray, int, int]) -> None:
            result, diff, added, removed = out
            self._show(layer, diff)
            self.pending = (layer, snapshot, result, what)
            dock.status.setText(f"Preview of {what}: +{added} / -{removed} "
                                f"{cells(snapshot.ndim)}. Apply or Discard.")
            self.update_buttons()

        if snapshot.size <= BACKGROUND_VOXELS:
            show(preview_difference(snapshot, compute))
            return None
        dock._set_busy(True)
        dock.worker = run_in_worker(preview_difference, snapshot, compute, on_returned=show,
                                    action=action, on_finished=lambda: dock._set_busy(False))
        return dock.worker

    def _show(self, layer: Any, diff: np.ndarray) -> None:
        from napari_medseg.ui._layers import add_labels_for_image

        viewer = self.dock.viewer
        if self.layer is not None and self.layer in viewer.layers \
                and self.layer.data.shape == diff.shape:
            self.layer.data = diff
        else:
            self._remove_layer()
            self.layer = add_labels_for_image(viewer, layer, data=diff, name="edit preview",
                                              classes=PREVIEW_CLASSES, role="preview")
        self.layer.opacity = 0.9
        viewer.layers.selection.active = layer

    def _remove_layer(self) -> None:
        viewer = self.dock.viewer
        if self.layer is not None and self.layer in viewer.layers:
            viewer.layers.remove(self.layer)
        self.layer = None

    def update_buttons(self) -> None:
        self.apply_button.setEnabled(self.pending is not None)
        self.discard_button.setEnabled(self.pending is not None)

    def apply(self) -> Any:
        """Write the previewed voxels as one undo step; returns the worker for a large volume,
        else ``None``. Raises ``ValueError`` when nothing is previewed."""
        if self.pending is None:
            raise ValueError("nothing to apply: run an operation with 'Preview' ticked first")
        layer, snapshot, result, what = self.pending

        def merge(current: np.ndarray) -> np.ndarray:
            # only the voxels the previewed operation changed: strokes made since are kept
            changed = snapshot != result
            merged = np.array(current, copy=True)
            merged[changed] = result[changed]
            return merged

        self.discard()
        dock = self.dock
        dock.worker = edit_labels(layer, merge, lambda n: dock._report(what, n),
                                  "Apply preview", dock._set_busy, on_error=dock._report_error)
        return dock.worker

    def discard(self, *_: Any) -> None:
        """Drop the preview and its layer; the labels stay unchanged."""
        self.pending = None
        self._remove_layer()
        self.update_buttons()
