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
from napari_medseg.ui._controls import (
    LayerCombo,
    belongs_to,
    button,
    enable_unless,
    hint,
    image_for,
)
from napari_medseg.ui._layers import (
    add_labels_for_image,
    image_layers,
    labels_layers,
    medseg_metadata,
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


_PREDICT_TIP = "Segment the image with the project's current model; correct the result, then Accept"
_ACCEPT_TIP = ("Store the image and its labels in the project as a training case (only the "
               "slices marked as annotated count when there are marks)")
_POOL_TIP = ("Add unlabelled images (NIfTI volumes, PNG/JPEG/TIFF pictures) for 'Next case' "
             "to choose from")


def predicted_layer(viewer: Any, image_layer: Any, version: str | None) -> Any:
    """The Labels layer of ``image_layer`` that holds model ``version``'s prediction, if one is
    open (from Predict or Next case; corrected or not), else None."""
    if version is None:
        return None
    for layer in labels_layers(viewer):
        if medseg_metadata(layer).get("predicted_with") == version \
                and belongs_to(layer, image_layer):
            return layer
    return None


def add_to_pool(project: Any, paths: list[Path]
                ) -> tuple[list[str], int, list[tuple[str, str]]]:
    """Add each of ``paths`` to ``project``'s pool on its own.

    Returns
    -------
    (list of str, int, list of (str, str))
        The ids of the images added, how many were in the project already, and
        ``(file name, reason)`` of each file skipped (unreadable, a label map, wrong shape).
    """
    from napari_medseg._reader import opens_as_labels
    from napari_medseg.dataset import read_image
    from napari_medseg.ui._notify import error_message

    added: list[str] = []
    known = 0
    skipped: list[tuple[str, str]] = []
    for path in paths:
        try:
            volume = read_image(path)
            if opens_as_labels(volume, path):
                raise ValueError("it holds a label map, not an image")
            before = set(project.case_ids())
            cid = project.add_unlabelled(volume)
        except Exception as exc:  # noqa: BLE001 - one bad file must not drop the others
            skipped.append((path.name, error_message(exc)))
            continue
        if cid in before:
            known += 1
        else:
            added.append(cid)
    return added, known, skipped


def pool_summary(added: list[str], known: int, skipped: list[tuple[str, str]]) -> str:
    """One line for the Current case box after adding images to the pool."""
    from html import escape

    parts = [f"Added {len(added)} image(s) to the pool"]
    if known:
        parts.append(f"{known} already in the project")
    if skipped:
        parts.append(f"skipped {len(skipped)}: " + ", ".join(n for n, _ in skipped[:3])
                     + (" …" if len(skipped) > 3 else ""))
    text = "; ".join(parts) + "."
    for name, reason in skipped[:5]:  # why, file by file (the notification is one line)
        text += f"<br>• {escape(name)}: {escape(reason)}"
    if len(skipped) > 5:
        text += f"<br>• … and {len(skipped) - 5} more"
    return text


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
        self.predict_button = button("Predict", _PREDICT_TIP, self.predict_current)
        self.accept_button = button("Accept case", _ACCEPT_TIP, self._on_accept)
        row.addWidget(self.predict_button)
        row.addWidget(self.accept_button)
        form.addRow(row)
        self.add_pool_button = button("Add images to pool…", _POOL_TIP, self._on_add_images)
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
        no_project = "create or open a project first" if p is None else None
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        no_image = "open the case's image first" if image is None else None
        enable_unless(self.accept_button, no_project or no_image or (
            "predict, or create labels in the Annotate tab, first" if labels is None else None),
            _ACCEPT_TIP)
        enable_unless(self.add_pool_button, no_project, _POOL_TIP)
        enable_unless(self.predict_button, no_project or (
            "the project has no model yet: accept a case and retrain" if p.current_model is None
            else None) or no_image or ("a prediction is running" if self.runner.running
                                       else None), _PREDICT_TIP)

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
    def _on_accept(self, *_: Any) -> None:
        """The Accept button: empty labels without slice marks are stored only when the user
        confirms that the image shows no structure."""
        layer = self.labels_combo.layer()
        if layer is not None and not slice_marks(layer) and not np.asarray(layer.data).any():
            from qtpy.QtWidgets import QMessageBox

            answer = QMessageBox.question(
                self, "Accept empty labels?",
                f"'{layer.name}' holds no label at all. Accept the case as background only "
                "(the image shows none of the structures)?",
                QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
            if answer != QMessageBox.Yes:
                self.case_label.setText("Not accepted: the labels are empty.")
                return
            self.accept_current(allow_empty=True)
            return
        self.accept_current()

    @catch_errors("Accept case")
    def accept_current(self, allow_empty: bool = False) -> str:
        """Store the current image + labels (+ slice marks) as a training case; returns its id.

        Labels with no label at all (and no slice marks) are refused unless ``allow_empty``:
        an empty case teaches the model that the structures are absent.
        """
        project = self.state.require_project()
        image_layer, labels_layer = self.image_layer(), self.labels_layer()
        volume = volume_from_layer(image_layer)
        labels = np.asarray(labels_layer.data)
        marks = slice_marks(labels_layer)
        if not marks and not allow_empty and not labels.any():
            raise ValueError(f"'{labels_layer.name}' is empty: paint or predict the "
                             "structures first")
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
        """Add image files to the project's pool (read in the background); returns the worker.

        Each file is added on its own: one that cannot be read, or that holds a label map
        rather than an image, is skipped and named in the summary; the others are added.
        """
        project = self.state.require_project()
        paths = [Path(p) for p in paths]

        def work() -> tuple[list[str], int, list[tuple[str, str]]]:
            return add_to_pool(project, paths)

        def done(result: tuple[list[str], int, list[tuple[str, str]]]) -> None:
            added, known, skipped = result
            self.case_label.setText(pool_summary(added, known, skipped))
            self.state.changed.emit()
            if len(skipped) == 1:
                show_error_message(ValueError(f"skipped {skipped[0][0]}: {skipped[0][1]}"),
                                   "Add images")
            elif skipped:
                show_error_message(ValueError(f"skipped {len(skipped)} files (why: in the "
                                              "Current case box)"), "Add images")

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
        shown = predicted_layer(self.viewer, image_layer, version)
        if shown is not None:  # predicting again would only add an identical layer
            self.labels_combo.set_layer(shown)
            self.viewer.layers.selection.active = shown
            self.case_label.setText(f"Already predicted with {version}: '{shown.name}' (delete "
                                    "that layer to predict again).")
            return None
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
        update_medseg_metadata(layer, predicted_with=version)
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
