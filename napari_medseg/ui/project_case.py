"""Project dock, "Current case" box: the image and labels of one case, predict, accept.

* **Predict** segments the chosen image with the project's current model, in a child process
  (:class:`~napari_medseg.jobs.ProcessJob` through a
  :class:`~napari_medseg.ui._runner.JobRunner`); the result becomes the labels to correct.
* **Accept case** stores image + labels (+ the slice marks of the Annotate tab) as a training
  case.
* **Add images to pool…** adds unlabelled images for "Next case" to choose from.
* The labels being edited are autosaved (:mod:`~napari_medseg.ui.project_autosave`); an image
  opened again gets its saved labels back (:meth:`CaseBox.restore_labels`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QWidget

from napari_medseg.events import Event
from napari_medseg.io.picture import file_dialog_patterns
from napari_medseg.ui._controls import LayerCombo, belongs_to, button, hint, image_for
from napari_medseg.ui._layers import (
    add_labels_for_image,
    image_layers,
    labels_layers,
    update_medseg_metadata,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors, show_error_message
from napari_medseg.ui._runner import JobRunner
from napari_medseg.ui._settings import last_folder, remember_folder
from napari_medseg.ui.project_autosave import LabelsAutosave
from napari_medseg.ui.project_jobs import predict_case
from napari_medseg.ui.project_state import (
    ProjectState,
    case_id_hint,
    job_failed,
    marks_axis,
    model_job,
    set_case_id,
    slice_marks,
)

#: Files the "Add images to pool" dialog offers: volumes and 2D pictures.
POOL_FILE_FILTER = (f"Images ({file_dialog_patterns(('.nii', '.nii.gz'))});;"
                    "NIfTI (*.nii *.nii.gz);;All files (*)")


class CaseBox(QGroupBox):
    """The case being worked on: its image and labels, Predict, Accept, pool, autosave."""

    def __init__(self, state: ProjectState, parent: QWidget | None = None) -> None:
        super().__init__("Current case", parent)
        self.state = state
        self.viewer = state.viewer
        form = QFormLayout(self)
        self.image_combo = LayerCombo(self.viewer, image_layers, "(no image open)")
        self.image_combo.setToolTip("The image of the case")
        form.addRow("Image", self.image_combo)
        self.labels_combo = LayerCombo(self.viewer, labels_layers, "(no labels)",
                                       follow_new=True)
        self.labels_combo.setToolTip("Its (corrected) labels: what Accept stores and what is "
                                     "autosaved to the project")
        self.autosave = LabelsAutosave(state, self.labels_combo, self.image_for, self._autosaved,
                                       parent=self)
        form.addRow("Labels", self.labels_combo)
        row = QHBoxLayout()
        self.predict_button = button("Predict", "Segment the image with the project's current "
                                     "model; correct the result, then Accept", self.predict_current)
        self.accept_button = button("Accept case", "Store the image and its labels in the "
                                    "project as a training case (only the slices marked as "
                                    "annotated count when there are marks)", self.accept_current)
        row.addWidget(self.predict_button)
        row.addWidget(self.accept_button)
        form.addRow(row)
        self.add_pool_button = button(
            "Add images to pool…", "Add unlabelled images (NIfTI volumes, PNG/JPEG/TIFF "
            "pictures) for 'Next case' to choose from", self._on_add_images)
        form.addRow(self.add_pool_button)
        self.case_label = hint("")
        form.addRow(self.case_label)

        self.runner = JobRunner(self)  # Predict
        self.runner.done.connect(self._on_predicted)
        state.track(self.runner)
        self.runner.running_changed.connect(lambda *_: self.update_enabled())
        self._pending: dict[str, Any] = {}
        self.labels_combo.pair_with(self.image_combo)  # labels of the chosen image only
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)

    def update_enabled(self) -> None:
        p = self.state.project
        self.accept_button.setEnabled(p is not None)
        self.add_pool_button.setEnabled(p is not None)
        self.predict_button.setEnabled(p is not None and p.current_model is not None
                                       and not self.runner.running)

    # -- the chosen layers -----------------------------------------------------------------
    def image_layer(self) -> Any:
        layer = self.image_combo.layer()
        if layer is None:
            raise ValueError("open an image first")
        return layer

    def labels_layer(self) -> Any:
        layer = self.labels_combo.layer()
        if layer is None:
            raise ValueError("no labels layer: predict, or create labels in the Annotate tab")
        return layer

    def image_for(self, labels_layer: Any) -> Any:
        """The image the labels were made for (by its recorded layer id, so renaming either
        layer keeps the link; else the chosen image)."""
        return image_for(labels_layer, image_layers(self.viewer)) or self.image_combo.layer()

    # -- accept / pool ---------------------------------------------------------------------
    @catch_errors("Accept case")
    def accept_current(self) -> str:
        """Store the current image + labels (+ slice marks) as a training case; returns its id."""
        project = self.state.require_project()
        image_layer, labels_layer = self.image_layer(), self.labels_layer()
        volume = volume_from_layer(image_layer)
        labels = np.asarray(labels_layer.data)
        marks = slice_marks(labels_layer)
        cid = project.accept_case(volume, labels, marks, case_id=case_id_hint(image_layer),
                                  slice_axis=marks_axis(labels_layer) if marks else None)
        self.autosave.mark_clean()
        set_case_id(image_layer, cid)
        what = f"{len(marks)} annotated slice(s)" if marks else "all slices"
        self.case_label.setText(f"Accepted case <b>{cid}</b> ({what}).")
        self.state.changed.emit()
        return cid

    @catch_errors("Add images")
    def _on_add_images(self) -> None:
        self.state.require_project()
        files, _ = QFileDialog.getOpenFileNames(self, "Add images to the pool",
                                                last_folder("open"), POOL_FILE_FILTER)
        if files:
            self.add_images(files)
            remember_folder(files[0], "open")

    def add_images(self, paths: list[str | Path]) -> Any:
        """Add image files to the project's pool (read in the background); returns the worker."""
        project = self.state.require_project()

        def work() -> list[str]:
            return [project.add_unlabelled(p) for p in paths]

        def done(ids: list[str]) -> None:
            self.case_label.setText(f"Added {len(ids)} image(s) to the pool.")
            self.state.changed.emit()

        return self.state.run(work, done, "Add images")

    # -- predict ---------------------------------------------------------------------------
    @catch_errors("Predict")
    def predict_current(self) -> Any:
        """Segment the current image with the current model into a new Labels layer (in a
        child process); returns the job's worker."""
        project = self.state.require_project()
        image_layer = self.image_layer()
        model_dir, version = project.model_dir(), project.current_model
        if model_dir is None:
            raise ValueError("the project has no model yet: accept a case and retrain")
        if self.runner.running:
            raise ValueError("a prediction is already running")
        volume = volume_from_layer(image_layer)
        job = model_job(predict_case, str(model_dir), volume, what="Prediction",
                        return_probabilities=False, return_entropy=True)
        self._pending = {"project": project, "image_layer": image_layer, "version": version}
        self.case_label.setText(f"Predicting with {version} …")
        return self.state.start_job(self.runner, job, f"Predicting {image_layer.name}")

    @catch_errors("Predict")
    def _on_predicted(self, ev: Event) -> None:
        pending, self._pending = self._pending, {}
        failed = job_failed(ev, "Prediction cancelled.")
        result = self.runner.last_result
        if failed is None and getattr(result, "labels", None) is None:
            failed = "The prediction returned no labels."
        if failed is not None or not pending:
            self.case_label.setText(failed or "")
            return
        project, image_layer, version = (pending["project"], pending["image_layer"],
                                         pending["version"])
        self.state.entropy[(image_layer.name, version)] = result.entropy
        layer = add_labels_for_image(self.viewer, image_layer, result.labels.copy(),
                                     name=f"{image_layer.name} {version}",
                                     classes=project.classes)
        self.labels_combo.set_layer(layer)
        self.case_label.setText(f"Predicted with {version} in {result.elapsed_s:.1f} s: "
                                "correct it, then Accept.")

    # -- autosave / restore ----------------------------------------------------------------
    def _autosaved(self, image_layer: Any, cid: str) -> None:
        set_case_id(image_layer, cid)
        self.case_label.setText(f"Autosaved labels of case {cid}.")

    def _on_layer_inserted(self, event: Any) -> None:
        layer = getattr(event, "value", None)
        if self.state.project is None or layer is None or layer not in image_layers(self.viewer):
            return
        try:
            self.restore_labels(layer)
        except Exception as exc:  # noqa: BLE001 - never break opening an image
            show_error_message(exc, "Restore labels")

    def restore_labels(self, image_layer: Any) -> bool:
        """Show the autosaved / accepted labels of ``image_layer``'s case, if the project has any.

        Returns True when a Labels layer was added.
        """
        project = self.state.project
        if project is None:
            return False
        volume = volume_from_layer(image_layer)
        cid = case_id_hint(image_layer) or project.find_case(volume)
        if cid is None or cid not in project.case_ids():
            return False
        set_case_id(image_layer, cid)
        if any(belongs_to(layer, image_layer) for layer in labels_layers(self.viewer)):
            return False  # the user already has labels for it
        labels = project.load_labels(cid)
        if labels is None or labels.shape != volume.shape:
            return False
        layer = add_labels_for_image(self.viewer, image_layer, labels,
                                     name=f"{image_layer.name} labels", classes=project.classes)
        marks = project.annotated_slices(cid)
        if marks:
            update_medseg_metadata(layer, annotated_slices=list(marks), annotated_axis=int(
                project.case_info(cid).get("slice_axis", project.slice_axis)))
        self.labels_combo.set_layer(layer)
        self.case_label.setText(f"Restored the saved labels of case <b>{cid}</b>.")
        return True


__all__ = ["POOL_FILE_FILTER", "CaseBox"]
