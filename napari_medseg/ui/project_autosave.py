"""Project dock: autosave of the labels being edited into the open project.

The Labels layer chosen in the "Current case" box is watched; after each change (a brush
stroke, a fill, new data) it is saved as the case's draft once the user paused for
:data:`AUTOSAVE_DELAY_MS`, and anything unsaved at least every :data:`AUTOSAVE_PERIOD_MS`.
The write is atomic and happens in a thread worker
(:meth:`~napari_medseg.dataset.project.Project.autosave_labels`); switching to other labels or
closing the dock saves first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer

from napari_medseg.ui._controls import LayerCombo
from napari_medseg.ui._layers import volume_from_layer
from napari_medseg.ui.project_state import ProjectState, case_id_hint, slice_marks

#: Milliseconds of quiet after a labels change before it is autosaved.
AUTOSAVE_DELAY_MS = 1500
#: Autosave anything unsaved at least this often (ms).
AUTOSAVE_PERIOD_MS = 60_000

#: Events of a Labels layer that mean its data changed.
_EDIT_EVENTS = ("paint", "data", "labels_update")


class LabelsAutosave(QObject):
    """Watches the labels chosen in ``labels_combo`` and saves them as the case's draft.

    Parameters
    ----------
    state : ProjectState
    labels_combo : LayerCombo
    image_of : callable
        ``image_of(labels_layer)``: the image layer the labels belong to (or None).
    saved : callable
        ``saved(image_layer, case_id)`` on the main thread after a save.
    """

    def __init__(self, state: ProjectState, labels_combo: LayerCombo,
                 image_of: Callable[[Any], Any], saved: Callable[[Any, str], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self._combo = labels_combo
        self._image_of = image_of
        self._saved = saved
        self._watched: Any = None
        self._dirty = False
        self._last_error = ""
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(AUTOSAVE_DELAY_MS)
        self._timer.timeout.connect(self.save_now)
        self._periodic = QTimer(self)
        self._periodic.setInterval(AUTOSAVE_PERIOD_MS)
        self._periodic.timeout.connect(self.save_now)
        self._periodic.start()
        labels_combo.currentIndexChanged.connect(self.watch_current)

    def mark_clean(self) -> None:
        """The watched labels were just stored another way (accepted): nothing to save."""
        self._dirty = False

    def watch_current(self, *_: Any) -> None:
        """Follow the combo's labels (saving the previous ones first)."""
        layer = self._combo.layer()
        if layer is self._watched:
            return
        if self._watched is not None:
            self.save_now()
            for name in _EDIT_EVENTS:
                try:
                    getattr(self._watched.events, name).disconnect(self._on_edited)
                except (AttributeError, TypeError, ValueError, RuntimeError):
                    pass
        self._watched = layer
        self._dirty = False
        if layer is not None:
            for name in _EDIT_EVENTS:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(self._on_edited)

    def _on_edited(self, *_: Any) -> None:
        self._dirty = True
        try:
            self._timer.start()
        except RuntimeError:  # widget deleted
            pass

    def save_now(self) -> Any:
        """Save the watched labels to the project now if they changed (background thread);
        returns the worker, or None when there was nothing to save."""
        project, labels_layer = self.state.project, self._watched
        if not self._dirty or project is None or labels_layer is None:
            return None
        image_layer = self._image_of(labels_layer)
        if image_layer is None:
            return None
        try:
            volume = volume_from_layer(image_layer)
        except ValueError:
            return None
        if np.asarray(labels_layer.data).shape != volume.shape:
            return None
        data = np.array(labels_layer.data, copy=True)
        marks = slice_marks(labels_layer)
        case_hint = case_id_hint(image_layer)
        self._dirty = False

        def work() -> str:
            return project.autosave_labels(case_hint, data, marks, image=volume)

        def done(cid: str) -> None:
            self._last_error = ""
            try:
                self._saved(image_layer, cid)
            except RuntimeError:
                pass

        def failed(exc: BaseException) -> bool:
            self._dirty = True
            message = str(exc)
            repeated = message == self._last_error  # a read-only folder fails every time:
            self._last_error = message              # say so once, not after every stroke
            return repeated

        return self.state.run(work, done, "Autosave", on_errored=failed)


__all__ = ["AUTOSAVE_DELAY_MS", "AUTOSAVE_PERIOD_MS", "LabelsAutosave"]
