"""Project dock: the correct-and-retrain loop (cases, accept, retrain, versions, what next).

A form over :class:`~napari_medseg.dataset.project.Project` and :func:`napari_medseg.cycle.retrain`,
made of one group box per step, each in its own module:

* **Project** (:mod:`~napari_medseg.ui.project_open`): create / open a project folder (MSD
  layout, usable by ``napari-medseg train``).
* **Current case** (:mod:`~napari_medseg.ui.project_case`): predict the current image with the
  current model, correct the labels with the other tools, **Accept** (image + labels, sparse
  slice marks from the Annotate tab included). The labels being edited are autosaved to the
  project (:mod:`~napari_medseg.ui.project_autosave`); opening the image again restores them.
* **Model** (:mod:`~napari_medseg.ui.project_model`): **Retrain** fine-tunes the current model on
  every accepted case in a child process (the viewer stays responsive; a crash or out-of-memory
  cannot take napari down); the version table shows the metrics of each version and lets the
  user switch back.
* **What next** (:mod:`~napari_medseg.ui.project_next`): **Next case** opens the pool image the
  model is least sure about, **Next slices** jumps to the most uncertain slices of the current
  image (:mod:`napari_medseg.active` decides).

Every model (predict, ranking, retraining) runs in a child process through a
:class:`~napari_medseg.ui._runner.JobRunner`. :class:`ProjectWidget` composes the boxes, shares
their state (:class:`~napari_medseg.ui.project_state.ProjectState`) and keeps the dock's public
attributes (buttons, combos, labels, the last answers) as properties delegating to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QWidget

from napari_medseg.dataset.project import Project
from napari_medseg.ui._controls import Dock, scrollable_layout
from napari_medseg.ui._layers import image_layers, layer_classes, volume_from_layer
from napari_medseg.ui.project_autosave import AUTOSAVE_DELAY_MS, AUTOSAVE_PERIOD_MS
from napari_medseg.ui.project_case import POOL_FILE_FILTER, CaseBox
from napari_medseg.ui.project_model import VERSION_COLUMNS, VERSION_TIPS, ModelBox
from napari_medseg.ui.project_next import NextBox
from napari_medseg.ui.project_open import ProjectBox
from napari_medseg.ui.project_state import ProjectState


def _delegate(section: str, name: str) -> property:
    """A read-only attribute of the dock that is ``self.<section>.<name>``."""
    return property(lambda self: getattr(getattr(self, section), name),
                    doc=f"``{section}.{name}``")


class ProjectWidget(Dock):
    """Dock widget driving the annotate -> accept -> retrain -> predict loop."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent, follow_new_images=True)
        self.state = ProjectState(napari_viewer, self)
        self._announced_model = ""
        self.setMinimumWidth(390)  # room for the version table's columns
        layout = scrollable_layout(self)  # a standalone dock taller than the screen scrolls
        self.project_box = ProjectBox(self.create_project, self.open_project)
        self.case_box = CaseBox(self.state)
        self.model_box = ModelBox(self.state, self.autosave_now)
        self.next_box = NextBox(self.state, self.case_box)
        for box in (self.project_box, self.case_box, self.model_box, self.next_box):
            layout.addWidget(box)
        layout.addStretch(1)
        self.state.changed.connect(self.refresh)
        for combo in (self.case_box.image_combo, self.case_box.labels_combo):
            combo.currentIndexChanged.connect(lambda *_: self._update_enabled())
        self._update_enabled()

    # -- the dock's attributes (tests and other docks use them) ----------------------------
    project_label = _delegate("project_box", "project_label")
    image_combo = _delegate("case_box", "image_combo")
    labels_combo = _delegate("case_box", "labels_combo")
    predict_button = _delegate("case_box", "predict_button")
    accept_button = _delegate("case_box", "accept_button")
    add_pool_button = _delegate("case_box", "add_pool_button")
    case_label = _delegate("case_box", "case_label")
    budget = _delegate("model_box", "budget")
    retrain_button = _delegate("model_box", "retrain_button")
    cancel_button = _delegate("model_box", "cancel_button")
    train_label = _delegate("model_box", "train_label")
    version_table = _delegate("model_box", "version_table")
    use_version_button = _delegate("model_box", "use_version_button")
    #: Worker of the running retraining (None when none runs).
    retrain_worker = _delegate("model_box", "retrain_worker")
    next_case_button = _delegate("next_box", "next_case_button")
    next_slices_button = _delegate("next_box", "next_slices_button")
    next_label = _delegate("next_box", "next_label")
    last_ranking = _delegate("next_box", "last_ranking")
    last_slices = _delegate("next_box", "last_slices")
    #: Worker of the last background task started (tests wait on it).
    worker = _delegate("state", "worker")
    #: Background tasks started and not finished yet (tests wait for 0).
    pending = _delegate("state", "pending")

    @property
    def project(self) -> Project | None:
        """The open project, or None."""
        return self.state.project

    @property
    def train_overrides(self) -> dict[str, Any]:
        """Extra :class:`~napari_medseg.training.TrainConfig` fields for Retrain (advanced
        users, tests), e.g. ``{"dims": 2}``."""
        return self.model_box.train_overrides

    @train_overrides.setter
    def train_overrides(self, value: dict[str, Any]) -> None:
        self.model_box.train_overrides = dict(value)

    # -- project ---------------------------------------------------------------------------
    def create_project(self, folder: str | Path, name: str | None = None,
                       classes: dict | None = None, modality: str | None = None) -> Project:
        """Create a project; classes default to the current labels' class table."""
        labels = self.labels_combo.layer()
        if classes is None:
            classes = (layer_classes(labels) if labels is not None else {}) or {1: "label 1"}
        if modality is None:
            modality = "MR"
            image = self.image_combo.layer()
            if image is not None:
                volume = volume_from_layer(image)
                found = volume.modality
                # a photograph or other 2D picture says nothing of MR: keep "unknown"
                modality = found if found != "unknown" or volume.ndim == 2 else modality
        project = Project.create(folder, name or Path(folder).name, classes, modality)
        self.state.set_project(project)
        return project

    def open_project(self, folder: str | Path) -> Project:
        """Open a project and restore autosaved labels of images already open."""
        project = Project.open(folder)
        self.state.set_project(project)
        for layer in image_layers(self.viewer):
            self.restore_labels(layer)
        return project

    def refresh(self) -> None:
        """Update the labels and the version table from the project."""
        p = self.project
        current = str(p.model_dir()) if p is not None and p.model_dir() is not None else ""
        if current and current != self._announced_model:
            from napari_medseg.ui._models import model_events

            self._announced_model = current
            model_events.current.emit(current)  # Annotate's clicks use it if it has guidance
        self.project_box.show_project(p)
        self.model_box.fill_versions(p)
        self._update_enabled()

    def _update_enabled(self) -> None:
        for box in (self.case_box, self.model_box, self.next_box):
            box.update_enabled()

    # -- current case ----------------------------------------------------------------------
    def accept_current(self) -> str | None:
        """Store the current image + labels (+ slice marks) as a training case; returns its id."""
        return self.case_box.accept_current()

    def add_images(self, paths: list[str | Path]) -> Any:
        """Add image files to the project's pool (read in the background); returns the worker."""
        return self.case_box.add_images(paths)

    def predict_current(self) -> Any:
        """Segment the current image with the current model into a new Labels layer."""
        return self.case_box.predict_current()

    def autosave_now(self) -> Any:
        """Save the watched labels to the project now if they changed (background thread)."""
        return self.case_box.autosave.save_now()

    def restore_labels(self, image_layer: Any) -> bool:
        """Show the autosaved / accepted labels of ``image_layer``'s case, if the project has any.

        Returns True when a Labels layer was added.
        """
        return self.case_box.restore_labels(image_layer)

    # -- model -----------------------------------------------------------------------------
    def retrain(self, config: Any = None, in_process: bool = True) -> Any:
        """Start retraining in a child process; returns the worker (see
        :meth:`~napari_medseg.ui.project_model.ModelBox.retrain`)."""
        return self.model_box.retrain(config, in_process)

    def cancel_retrain(self) -> None:
        """Ask the running retraining to stop (the current model is kept)."""
        self.model_box.cancel_retrain()

    def selected_version(self) -> str | None:
        return self.model_box.selected_version()

    def use_selected_version(self) -> None:
        self.model_box.use_selected_version()

    def use_version(self, version: str) -> None:
        """Make ``version`` the current model."""
        self.model_box.use_version(version)

    # -- what next -------------------------------------------------------------------------
    def next_case(self) -> Any:
        """Rank the pool by uncertainty (current model) and open the most informative image."""
        return self.next_box.next_case()

    def next_slices(self) -> Any:
        """Rank the slices of the current image by uncertainty and jump to the best."""
        return self.next_box.next_slices()

    def jump_to_slice(self, layer: Any, index: int, axis: int = 0) -> None:
        """Show slice ``index`` (along data ``axis``) of ``layer`` in the viewer."""
        self.next_box.jump_to_slice(layer, index, axis)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt name
        self.autosave_now()
        super().closeEvent(event)


__all__ = ["AUTOSAVE_DELAY_MS", "AUTOSAVE_PERIOD_MS", "POOL_FILE_FILTER", "VERSION_COLUMNS",
           "VERSION_TIPS", "ProjectWidget"]
