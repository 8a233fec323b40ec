"""Write a label edit computed in a worker into a napari Labels layer without stalling the viewer.

A background edit (k-means on a 512 x 512 x 400 CT, a 2 mm grow of a large organ) comes back
from its worker as the core's difference object (:func:`~napari_medseg.editing.make_edit`): a
bounding-box :class:`~napari_medseg.editing.EditPatch` or the changed voxels'
:class:`~napari_medseg.editing.IndexedEdit`. Writing a whole-volume patch at once would hold the
GUI thread for a few hundred milliseconds, so :class:`EditWriter` writes it in slabs of about
:data:`SLAB_VOXELS` voxels, one group per event-loop turn (at most :data:`TURN_BUDGET_S` each),
and records the whole edit as ONE step of the layer's undo history at the end.

Brush strokes made while the edit was computed are kept: only voxels the operation changed
(snapshot != result) are written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_medseg.editing import EditPatch, IndexedEdit, make_edit
from napari_medseg.ui._layers import save_history_atom

#: Voxels written per slab when a large edit is applied.
SLAB_VOXELS = 2 * 2**20

#: Seconds of writing per event-loop turn; the viewer repaints and handles input in between.
TURN_BUDGET_S = 0.015

#: Writers in progress (kept alive until they finish).
_RUNNING: set[EditWriter] = set()


def compute_edit(compute: Callable[[np.ndarray], Any], source: Any
                 ) -> EditPatch | IndexedEdit | None:
    """Worker body: snapshot ``source``, run ``compute`` on it, return only the difference.

    The snapshot is copied here, in the worker (numpy copies release the GIL), not on the GUI
    thread; a stroke painted during the copy is kept either way, since only voxels the
    operation changes are written back.
    """
    snapshot = np.array(source, copy=True)
    return make_edit(snapshot, np.asarray(compute(snapshot)))


class EditWriter:
    """Apply an edit to ``layer.data`` slab by slab; one undo step; ``on_done(n_changed)``.

    Parameters
    ----------
    layer : napari.layers.Labels
    edit : EditPatch or IndexedEdit or None
        The difference computed on a snapshot (None: nothing changed).
    on_done : callable
        Called on the main thread with the number of voxels changed, after the last slab.
    on_error : callable, optional
        Called with the exception if writing fails (e.g. the layer's data were replaced by an
        array of another shape meanwhile).
    """

    def __init__(self, layer: Any, edit: EditPatch | IndexedEdit | None,
                 on_done: Callable[[int], None],
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.layer = layer
        self.edit = edit
        self.on_done = on_done
        self.on_error = on_error
        self.changed = 0
        self.finished = False
        self._parts = self._slabs()
        self._before: np.ndarray | None = None
        self._after: np.ndarray | None = None

    # -- plan ---------------------------------------------------------------------------
    def _slabs(self) -> list[Any]:
        edit = self.edit
        if edit is None:
            return []
        if isinstance(edit, IndexedEdit):
            n = edit.count
            return [slice(i, min(i + SLAB_VOXELS, n)) for i in range(0, n, SLAB_VOXELS)]
        box = edit.bbox
        plane = int(np.prod([b.stop - b.start for b in box[1:]])) or 1
        step = max(SLAB_VOXELS // plane, 1)
        depth = box[0].stop - box[0].start
        return [slice(i, min(i + step, depth)) for i in range(0, depth, step)]

    # -- run ----------------------------------------------------------------------------
    def start(self) -> EditWriter:
        """Write the first slabs now and the rest on later event-loop turns."""
        data = self.layer.data
        if self.edit is not None and isinstance(self.edit, EditPatch):
            if any(b.stop > n for b, n in zip(self.edit.bbox, data.shape, strict=True)) or \
                    len(self.edit.bbox) != data.ndim:
                return self._fail(ValueError("the labels changed size while the edit was "
                                             "computed; nothing was written"))
        if isinstance(self.edit, IndexedEdit):
            self._before = np.empty_like(self.edit.new)
            self._after = self.edit.new
        _RUNNING.add(self)
        self._turn()
        return self

    def _turn(self) -> None:
        t0 = time.perf_counter()
        try:
            while self._parts:  # at least one slab per turn, then as many as the budget allows
                self._write(self._parts.pop(0))
                if time.perf_counter() - t0 >= TURN_BUDGET_S:
                    break
        except Exception as exc:  # noqa: BLE001 - reported, never a traceback in the viewer
            self._fail(exc)
            return
        if self._parts:
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self._turn)
        else:
            self._commit()

    def _write(self, part: slice) -> None:
        data = self.layer.data
        edit = self.edit
        if isinstance(edit, IndexedEdit):
            idx = tuple(i[part] for i in edit.indices)
            self._before[part] = data[idx]
            data[idx] = edit.new[part]
            self.changed += int(np.count_nonzero(self._before[part] != edit.new[part]))
            return
        box = (slice(edit.bbox[0].start + part.start, edit.bbox[0].start + part.stop),
               *edit.bbox[1:])
        current = data[box]  # a view: written in place
        old, new = edit.old[part], edit.new[part]
        changed = old != new
        np.copyto(old, current)  # the patch now holds the layer's values before ...
        np.copyto(current, new, where=changed)  # ... the edit's voxels written ...
        np.copyto(new, current)  # ... and after, for undo / redo
        self.changed += int(np.count_nonzero(old != new))

    def _commit(self) -> None:
        _RUNNING.discard(self)
        self.finished = True
        edit = self.edit
        if edit is not None and self.changed:
            if isinstance(edit, IndexedEdit):
                atom = (edit.indices, self._before, self._after)
            else:
                atom = (edit.bbox, edit.old, edit.new)
            save_history_atom(self.layer, atom)
            self.layer.refresh()
        self.on_done(self.changed)

    def _fail(self, exc: BaseException) -> EditWriter:
        _RUNNING.discard(self)
        self.finished = True
        if self.on_error is not None:
            self.on_error(exc)
        else:
            raise exc
        return self
