"""Project dock, "What next" box: which image, and which slices, to correct next.

The choice is the core's (:func:`napari_medseg.active.suggest_cases`,
:func:`napari_medseg.active.suggest_slices`); this box only starts them and shows the answer:

* **Next case** ranks the pool by the current model's uncertainty in a child process and opens
  the most informative image with its prediction (without a model: the first pool image).
* **Next slices** jumps to the most uncertain slices of the current image; the model runs in a
  child process unless its entropy map for this image is already known (then only the cheap
  ranking runs, in a thread).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QVBoxLayout, QWidget

from napari_medseg.active import suggest_cases, suggest_slices
from napari_medseg.dataset.project import Project
from napari_medseg.events import Event
from napari_medseg.ui._controls import button, enable_unless, hint
from napari_medseg.ui._layers import (
    add_labels_for_image,
    add_volume_as_image,
    update_medseg_metadata,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors, notify_errors
from napari_medseg.ui._runner import JobRunner
from napari_medseg.ui.project_case import CaseBox
from napari_medseg.ui.project_state import (
    ProjectState,
    job_failed,
    marks_axis,
    model_job,
    run_to_value,
    set_case_id,
    slice_marks,
)

#: How many slices Next slices suggests, and how far apart they are at least.
N_SLICES, SLICE_GAP = 5, 2


_NEXT_CASE_TIP = "Open the pool image the current model is least sure about (mean entropy)"
_NEXT_SLICES_TIP = "Jump to the slices of the current image the model is least sure about"


def _is_2d(layer: Any) -> bool:
    """A 2D picture (greyscale or colour: napari's ``ndim`` leaves out RGB channels)."""
    return layer.ndim < 3


class NextBox(QGroupBox):
    """Next case / Next slices; the answers stay in :attr:`last_ranking` / :attr:`last_slices`.

    Parameters
    ----------
    state : ProjectState
    case : CaseBox
        Where the chosen image and its labels are shown.
    """

    def __init__(self, state: ProjectState, case: CaseBox, parent: QWidget | None = None) -> None:
        super().__init__("What next", parent)
        self.state = state
        self.case = case
        self.viewer = state.viewer
        #: (case id, score) of the last pool ranking, most informative first.
        self.last_ranking: list[tuple[str, float]] = []
        #: The last suggested slices, most uncertain first.
        self.last_slices: list[int] = []
        col = QVBoxLayout(self)
        row = QHBoxLayout()
        self.next_case_button = button("Next case", _NEXT_CASE_TIP, self.next_case)
        self.next_slices_button = button("Next slices", _NEXT_SLICES_TIP, self.next_slices)
        row.addWidget(self.next_case_button)
        row.addWidget(self.next_slices_button)
        col.addLayout(row)
        self.next_label = hint("")
        col.addWidget(self.next_label)

        self.runner = JobRunner(self)  # the ranking jobs
        self.runner.done.connect(self._on_done)
        state.track(self.runner)
        self.runner.running_changed.connect(lambda *_: self.update_enabled())
        self._pending: dict[str, Any] = {}

    def update_enabled(self) -> None:
        p = self.state.project
        busy = "a ranking is running" if self.runner.running else None
        no_project = "create or open a project first" if p is None else None
        enable_unless(self.next_case_button, no_project or (
            "the pool is empty: add images to the pool first" if not p.unlabelled_ids()
            else None) or busy, _NEXT_CASE_TIP)
        image = self.case.image_combo.layer()
        enable_unless(self.next_slices_button, no_project or (
            "the project has no model yet" if p.current_model is None else None) or (
            "open the case's image first" if image is None else None) or (
            "a 2D picture has no slices to choose" if image is not None
            and _is_2d(image) else None) or busy, _NEXT_SLICES_TIP)

    # -- next case -------------------------------------------------------------------------
    @catch_errors("Next case")
    def next_case(self) -> Any:
        """Rank the pool by uncertainty (current model) and open the most informative image;
        returns the worker."""
        project = self.state.require_project()
        pool = project.unlabelled_ids()
        if not pool:
            raise ValueError("the pool is empty: add images to the project first")
        if self.runner.running:
            raise ValueError("a ranking is already running")
        self.next_label.setText(f"Ranking {len(pool)} pool image(s) …")
        root = str(project.root)

        def load_top(out: dict[str, Any]) -> Any:
            return project.load_image(out["ranking"][0][0])

        if project.model_dir() is None:  # the core answers at once: no model runs
            def work() -> tuple[dict[str, Any], Any]:
                out = run_to_value(suggest_cases(root))
                return out, load_top(out)

            return self.state.run(work, lambda r: self._show_case(project, *r), "Next case")
        self._pending = {"kind": "case", "project": project, "load": load_top}
        job = model_job(suggest_cases, root, what="Ranking")
        return self.state.start_job(self.runner, job, f"Ranking {len(pool)} pool image(s)",
                                    prepare=load_top)

    def _show_case(self, project: Project, out: dict[str, Any], volume: Any) -> None:
        ranking = out["ranking"]
        top = ranking[0][0]
        version = out.get("model") or project.current_model
        prediction = (out.get("predictions") or {}).get(top)
        self.last_ranking = ranking
        shown = ", ".join(f"{c} ({s:.3f})" for c, s in ranking[:5])
        self.next_label.setText(f"Most informative: {shown}" if prediction is not None else
                                f"No model yet: opening {top}")
        image_layer = add_volume_as_image(self.viewer, volume, name=top)
        set_case_id(image_layer, top)
        self.case.image_combo.set_layer(image_layer)
        if not self.case.restore_labels(image_layer) and prediction is not None:
            labels, entropy = prediction
            layer = add_labels_for_image(self.viewer, image_layer, labels.copy(),
                                         name=f"{top} {version}", classes=project.classes)
            update_medseg_metadata(layer, predicted_with=version)
            self.case.labels_combo.set_layer(layer)
            self.state.entropy[(image_layer.name, version)] = entropy

    # -- next slices -----------------------------------------------------------------------
    @catch_errors("Next slices")
    def next_slices(self) -> Any:
        """Rank the slices (along the project's slice axis) of the current image by uncertainty
        and jump to the best; returns the worker."""
        project = self.state.require_project()
        image_layer = self.case.image_layer()
        version = project.current_model
        if version is None:
            raise ValueError("the project has no model yet")
        if self.runner.running:
            raise ValueError("a ranking is already running")
        labels_layer = self.case.labels_combo.layer()
        done_marks = slice_marks(labels_layer) if labels_layer is not None else None
        key = (image_layer.name, version)
        cached = self.state.entropy.get(key)
        volume = volume_from_layer(image_layer)
        model_dir = str(project.model_dir())
        axis = project.slice_axis if volume.ndim == 3 else 0
        options = dict(axis=axis, n=N_SLICES, exclude=list(done_marks or ()), min_gap=SLICE_GAP,
                       exclude_axis=marks_axis(labels_layer) if done_marks else None)
        pending = {"kind": "slices", "layer": image_layer, "axis": axis, "key": key}
        if cached is not None:  # only the cheap ranking on the known entropy map
            def work() -> dict[str, Any]:
                return run_to_value(suggest_slices(model_dir, volume, entropy=cached, **options))

            return self.state.run(work, lambda out: self._show_slices(pending, out),
                                  "Next slices")
        self._pending = pending
        job = model_job(suggest_slices, model_dir, volume, what="Prediction", **options)
        return self.state.start_job(self.runner, job,
                                    f"Finding uncertain slices of {image_layer.name}")

    def _show_slices(self, pending: dict[str, Any], out: dict[str, Any] | None) -> None:
        if out is None:
            raise ValueError("the prediction was cancelled")
        self.state.entropy[pending["key"]] = out["entropy"]
        slices = list(out["slices"])
        self.last_slices = slices
        if not slices:
            self.next_label.setText("The model is sure about every slice.")
            return
        self.jump_to_slice(pending["layer"], slices[0], pending["axis"])
        # numbered as the viewer's slider shows them (a flipped axis counts the other way)
        shown = [self.slider_index(pending["layer"], i, pending["axis"]) for i in slices]
        self.next_label.setText("Most uncertain slices: " + ", ".join(map(str, shown))
                                + f" (showing {shown[0]})")

    def _world_of_slice(self, layer: Any, index: int, axis: int) -> tuple[int, float]:
        coords = np.zeros(layer.ndim)
        coords[axis] = index
        world = layer.data_to_world(coords)
        return self.viewer.dims.ndim - layer.ndim + axis, float(world[axis])

    def jump_to_slice(self, layer: Any, index: int, axis: int = 0) -> None:
        """Show slice ``index`` (along data ``axis``) of ``layer`` in the viewer."""
        dim, world = self._world_of_slice(layer, index, axis)
        self.viewer.dims.set_point(dim, world)

    def slider_index(self, layer: Any, index: int, axis: int = 0) -> int:
        """The number napari's slider shows for slice ``index`` (along data ``axis``)."""
        dim, world = self._world_of_slice(layer, index, axis)
        start, _stop, step = self.viewer.dims.range[dim]
        return int(round((world - start) / step)) if step else int(index)

    # -- a ranking job ended ---------------------------------------------------------------
    def _on_done(self, ev: Event) -> None:
        pending, self._pending = self._pending, {}
        kind = pending.get("kind")
        action = "Next case" if kind == "case" else "Next slices"
        failed = job_failed(ev, "Ranking cancelled." if kind == "case" else "Cancelled.")
        out = self.runner.last_result
        if failed is not None or not isinstance(out, dict):
            self.next_label.setText(failed or f"{action}: the job returned nothing.")
            return
        with notify_errors(action):
            if kind == "case":
                volume = self.runner.last_prepared
                if volume is None:  # preparing it in the worker thread failed: once more here
                    volume = pending["load"](out)
                self._show_case(pending["project"], out, volume)
            elif kind == "slices":
                self._show_slices(pending, out)


__all__ = ["NextBox"]
