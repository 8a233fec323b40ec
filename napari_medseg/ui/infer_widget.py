"""Infer dock: segment the current image (or a folder of NIfTI files) with a trained model.

Inference runs through :func:`napari_medseg.inference.predict` in a child process
(:mod:`napari_medseg.jobs`): the viewer stays responsive, GPU memory is returned when it ends,
and a failure becomes one notification. The result is a Labels layer named after the model,
coloured with the model's classes and placed exactly on the image (same scale, translate and
geometry metadata); optionally an uncertainty (entropy) and a foreground-probability map.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QFileSystemWatcher, Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.events import Event
from napari_medseg.jobs import ProcessJob
from napari_medseg.ui._controls import (
    ChannelList,
    LayerCombo,
    button,
    hint,
    keep_new_images_in_view,
    layer_key,
    run_in_worker,
    scrollable_layout,
)
from napari_medseg.ui._layers import (
    image_layers,
    labels_layer_kwargs,
    layer_kwargs_for_volume,
    volume_from_layer,
)
from napari_medseg.ui._models import (
    ModelEntry,
    list_models,
    model_events,
    models_folder,
    read_model_entry,
)
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._runner import JobRunner
from napari_medseg.ui._settings import get_setting, last_folder, remember_folder, set_setting

logger = logging.getLogger("napari_medseg")

DEVICES = ("auto", "cpu", "cuda", "mps")


def card_classes(card: Any) -> dict[int, dict[str, str]]:
    """The model card's classes as a layer class table ``{value: {"name", "color"}}``."""
    table: dict[int, dict[str, str]] = {}
    for entry in card.classes:
        value = int(entry["value"])
        if value == 0:
            continue
        color = entry.get("color")
        if isinstance(color, (list, tuple)) and len(color) >= 3:
            rgb = [float(c) for c in color[:3]]
            scale = 1.0 if max(rgb) <= 1.0 else 255.0
            color = "#" + "".join(f"{int(round(c / scale * 255)):02x}" for c in rgb)
        table[value] = {"name": str(entry.get("name", f"label {value}")),
                        **({"color": color} if isinstance(color, str) else {})}
    return table


def check_model_fits(card: Any, volume: Any, extra_channels: int = 0) -> list[str]:
    """Raise ``ValueError`` if ``card``'s model cannot segment ``volume``; return warnings.

    Parameters
    ----------
    card : ModelCard
    volume : Volume
        The image (a colour picture counts as its 3 colour channels).
    extra_channels : int
        Further greyscale channels fed with it (the dock's "Extra channels").

    Returns
    -------
    list of str
        Non-blocking concerns (e.g. modality differs from the training data).
    """
    given = int(volume.n_channels) + int(extra_channels)
    if card.in_channels != given:
        model = f"'{card.task}' v{card.version}"
        wanted = ", ".join(str(n) for n in card.channel_names)
        colour_model = [str(n).lower() for n in card.channel_names] == ["red", "green", "blue"]
        if colour_model and not volume.rgb:
            raise ValueError(f"'{volume.name}' is greyscale; the model {model} segments colour "
                             "pictures (red, green, blue).")
        if volume.rgb and not colour_model:
            raise ValueError(f"'{volume.name}' is a colour picture; the model {model} segments "
                             f"greyscale images ({wanted}).")
        if card.in_channels > given:
            raise ValueError(f"Tick the other channels under Extra channels: the model {model} "
                             f"needs {card.in_channels} ({wanted}).")
        raise ValueError(f"The model {model} needs {card.in_channels} image channel(s) "
                         f"({wanted}); '{volume.name}' gives {given}.")
    # the core's one policy (dimensionality, modality), as predict applies it
    from napari_medseg.inference.predict import check_fits

    channels = volume.channel_volumes()
    return check_fits(card, channels + [channels[0]] * int(extra_channels))


#: Seconds a cancelled segmentation gets to stop by itself before its process is ended.
CANCEL_GRACE_S = 1.5


def prepare_prediction(result: Any, probability: bool, entropy: bool) -> dict[str, Any]:
    """The arrays the Infer dock shows, made off the GUI thread (runs in the job's worker).

    Returns ``{"result", "labels" (uint8), "counts" {class value: voxels}, "foreground"
    (float32 1 - P(background) or None), "entropy" (float32 or None)}``.
    """
    labels = np.ascontiguousarray(result.labels, dtype=np.uint8)
    counts = {v: int(np.count_nonzero(labels == v)) for v in card_classes(result.card)}
    foreground = None
    if probability and result.probabilities is not None:
        foreground = np.subtract(1.0, result.probabilities[0], dtype=np.float32)
    uncertainty = None
    if entropy and result.entropy is not None:
        uncertainty = np.asarray(result.entropy, dtype=np.float32)
    return {"result": result, "labels": labels, "counts": counts, "foreground": foreground,
            "entropy": uncertainty}


def _format_eta(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


class ModelCombo(QComboBox):
    """Models in the models folder (plus models opened from elsewhere); refreshed on opening."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.extra: list[str] = []
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(14)

    def showPopup(self) -> None:  # noqa: N802 - Qt API
        self.refresh()
        super().showPopup()

    def refresh(self) -> None:
        """Re-read the models folder, keeping the current choice."""
        current = self.currentData()
        entries = list_models(models_folder())
        known = {str(e.path) for e in entries}
        entries += [read_model_entry(p) for p in self.extra
                    if p not in known and Path(p).is_dir()]
        self.blockSignals(True)
        self.clear()
        for entry in entries:
            self.addItem(entry.label(), str(entry.path))
            self.setItemData(self.count() - 1, entry.error or str(entry.path), Qt.ToolTipRole)
        if not entries:
            self.addItem("(no models yet: train one, or Browse…)", None)
        self.setEnabled(bool(entries))
        idx = self.findData(current) if current is not None else -1
        self.setCurrentIndex(idx if idx >= 0 else 0)
        self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())

    def select_path(self, path: str) -> None:
        """Select the model directory ``path`` (adding it when outside the models folder)."""
        if self.findData(path) < 0 and path not in self.extra:
            self.extra.append(path)
        self.refresh()
        idx = self.findData(path)
        if idx >= 0:
            self.setCurrentIndex(idx)


TTA_TOOLTIP = ("Average predictions over mirrored copies (along the axes the model was trained "
               "with: left-right only for 3D models trained on oriented scans, 2x slower; every "
               "axis otherwise, 4x (2D) or 8x (3D) slower)")


class InferWidget(QWidget):
    """Segment images with a trained model.

    Parameters
    ----------
    napari_viewer : napari.Viewer

    Attributes
    ----------
    last_layers : list
        Layers added by the last run (labels first).
    last_event : Event or None
        Terminal event of the last run.
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        keep_new_images_in_view(napari_viewer)
        self.last_layers: list[Any] = []
        self.last_event: Event | None = None
        self.last_written: list[str] = []
        self._pending: dict[str, Any] = {}
        self.runner = JobRunner(self)
        self.runner.event.connect(self._on_event)
        self.runner.done.connect(self._on_done)
        self.runner.running_changed.connect(self._set_running)

        layout = scrollable_layout(self)
        layout.addWidget(self._build_model_box())
        layout.addWidget(self._build_image_box())
        layout.addWidget(self._build_folder_box())
        self.status_label = QLabel("Ready.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.status = self.status_label  # errors of the buttons show here too (catch_errors)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self._watcher = QFileSystemWatcher(self)
        self._watch_models_folder()
        self._watcher.directoryChanged.connect(lambda *_: self._safe_refresh())
        model_events.saved.connect(self._on_model_saved)
        self.model_combo.currentIndexChanged.connect(self._show_model_info)
        last = get_setting("infer/model", "")
        self.refresh_models()
        if last and Path(last).is_dir():
            self.model_combo.select_path(last)
        self._show_model_info()

    # ------------------------------------------------------------------ form
    def _build_model_box(self) -> QGroupBox:
        box = QGroupBox("Model")
        v = QVBoxLayout(box)
        row = QHBoxLayout()
        self.model_combo = ModelCombo()
        self.model_combo.setToolTip("Trained models in the models folder (newest first)")
        self.browse_model_button = button("Browse…", "Use a model folder from elsewhere "
                                          "(a folder with model.pt and model_card.json)",
                                          self._choose_model)
        self.export_button = button("Export…", "Save the chosen model for use without napari: "
                                    "TorchScript (.pt), ONNX (.onnx) or a MONAI bundle folder, "
                                    "with its model card beside it", self._choose_export)
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.browse_model_button)
        row.addWidget(self.export_button)
        v.addLayout(row)
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.model_info.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.model_info.setStyleSheet("font-size: small;")
        v.addWidget(self.model_info)
        return box

    def _build_image_box(self) -> QGroupBox:
        box = QGroupBox("Segment an open image")
        v = QVBoxLayout(box)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.image_combo = LayerCombo(self.viewer, image_layers, "(open an image first)")
        self.image_combo.setToolTip("The image to segment; the result is placed on its grid")
        form.addRow("Image", self.image_combo)
        self.channel_list = ChannelList(self.viewer, image_layers)
        self.channels_label = QLabel("Extra channels")
        form.addRow(self.channels_label, self.channel_list)
        self.image_combo.currentIndexChanged.connect(lambda *_: self._update_channels())
        for name in ("inserted", "removed"):
            getattr(self.viewer.layers.events, name).connect(
                lambda *_: self._update_channels())
        self.device_combo = QComboBox()
        for d in DEVICES:
            self.device_combo.addItem(d)
        self.device_combo.setCurrentText(get_setting("device", "auto"))
        self.device_combo.setToolTip(
            "auto = NVIDIA GPU if present, else Apple GPU, else CPU")
        form.addRow("Device", self.device_combo)
        v.addLayout(form)
        self.tta_check = QCheckBox("Test-time augmentation (mirroring)")
        self.tta_check.setToolTip(TTA_TOOLTIP)
        self.tta_check.setChecked(get_setting("infer/tta", False))
        self.uncertainty_check = QCheckBox("Add uncertainty map (entropy)")
        self.uncertainty_check.setToolTip(
            "Bright where the model is unsure between classes: check those regions first")
        self.uncertainty_check.setChecked(get_setting("infer/uncertainty", True))
        self.probability_check = QCheckBox("Add foreground probability map")
        self.probability_check.setToolTip("Probability (0-1) that a voxel is any labelled class")
        self.probability_check.setChecked(get_setting("infer/probability", False))
        for c in (self.tta_check, self.uncertainty_check, self.probability_check):
            v.addWidget(c)
        row = QHBoxLayout()
        self.run_button = button("Segment image", "Segment the chosen image with the model",
                                 self._on_run)
        self.cancel_button = button("Cancel", "Stop the running segmentation", self._on_cancel)
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button, 2)
        row.addWidget(self.cancel_button, 1)
        v.addLayout(row)
        return box

    def _build_folder_box(self) -> QGroupBox:
        box = QGroupBox("Segment a folder of images")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.input_edit = QLineEdit(get_setting("infer/input_folder", ""))
        self.input_edit.setPlaceholderText("folder of volumes or pictures")
        self.input_edit.setToolTip("Every image in this folder is segmented (NIfTI volumes, "
                                   "PNG/JPEG/TIFF pictures)")
        row = QHBoxLayout()
        row.addWidget(self.input_edit, 1)
        row.addWidget(button("…", "Choose the input folder",
                             lambda: self._pick_folder(self.input_edit, "infer_input")))
        form.addRow("Input", row)
        self.output_edit = QLineEdit(get_setting("infer/output_folder", ""))
        self.output_edit.setPlaceholderText("where the label files go")
        self.output_edit.setToolTip("Label files get the input file names, shapes and affines "
                                    "(<name>.nii.gz for volumes, <name>.png for pictures)")
        row = QHBoxLayout()
        row.addWidget(self.output_edit, 1)
        row.addWidget(button("…", "Choose the output folder",
                             lambda: self._pick_folder(self.output_edit, "infer_output")))
        form.addRow("Output", row)
        self.folder_button = button("Segment folder", "Segment every image of the input folder "
                                    "and write label files to the output folder",
                                    self._on_run_folder)
        form.addRow(self.folder_button)
        form.addRow(hint("Uses the model, device and TTA choices above."))
        return box

    # ------------------------------------------------------------------ models
    def _watch_models_folder(self) -> None:
        folder = models_folder()
        dirs = self._watcher.directories()
        if dirs:
            self._watcher.removePaths(dirs)
        if folder.is_dir():
            self._watcher.addPath(str(folder))

    def _safe_refresh(self) -> None:
        try:
            self.refresh_models()
        except RuntimeError:  # widget deleted
            pass

    def _on_model_saved(self, path: str) -> None:
        try:
            self._watch_models_folder()
            self.refresh_models()
            if Path(path).is_dir() and self.model_combo.findData(path) >= 0 \
                    and not self.runner.running:
                self.model_combo.setCurrentIndex(self.model_combo.findData(path))
        except RuntimeError:
            pass

    def refresh_models(self) -> None:
        """Re-read the models folder into the model list."""
        self.model_combo.refresh()

    def selected_model(self) -> ModelEntry | None:
        """The chosen model directory and its card (None when there is none)."""
        path = self.model_combo.currentData()
        return read_model_entry(path) if path else None

    def _update_channels(self) -> None:
        """Offer the extra channels a multi-channel model needs (hidden for one-image models)."""
        try:
            self.channel_list.set_images([self.image_combo.layer()])
            entry = self.selected_model()
            card = entry.card if entry is not None else None
            image = self.image_combo.layer()
            own = 3 if image is not None and getattr(image, "rgb", False) else 1
            wanted = card is not None and card.in_channels > own
            self.channel_list.setVisible(wanted)
            self.channels_label.setVisible(wanted)
            if wanted and not self.channel_list.checked_keys():
                self.channel_list.set_checked(list(card.channel_names[own:]))
        except RuntimeError:  # widget deleted
            pass

    def _show_model_info(self, *_: Any) -> None:
        self._update_channels()
        entry = self.selected_model()
        self._describe_tta(entry.card if entry is not None else None)
        if entry is None:
            self.model_info.setText(f"Models folder: {models_folder()}")
            return
        if entry.card is None:
            self.model_info.setText(f"<span style='color:#e0605a'>{entry.error}</span>")
            return
        card = entry.card
        swatches = " ".join(
            f"<span style='color:{c.get('color', '#ffffff')}'>■</span> {c['name']}"
            for c in card_classes(card).values())
        parts = [f"{card.dims}D", f"patch {'×'.join(str(p) for p in card.patch_size)}"]
        if int(card.in_channels) > 1:
            names = [str(n) for n in card.channel_names]
            parts.append("colour (red, green, blue)" if names == ["red", "green", "blue"]
                         else f"{card.in_channels} channels ({', '.join(names)})")
        spacing = [s for s in (card.spacing or []) if s is not None]
        if spacing:
            parts.append(f"spacing {' × '.join(f'{float(s):g}' for s in spacing)} mm")
        if card.best_metric is not None:
            parts.append(f"validation Dice {card.best_metric:.3f}")
        parts.append(f"version {card.version}")
        if card.training_cases:
            parts.append(f"{len(card.training_cases)} training case(s)")
        self.model_info.setText(f"{swatches}<br>{' · '.join(parts)}")
        self.model_info.setToolTip(f"{entry.path}\ntask '{card.task}', modality {card.modality}, "
                                   f"created {card.created}")

    def _describe_tta(self, card: Any) -> None:
        """Name the mirroring this model's test-time augmentation will use (its card's axes)."""
        if card is None:  # no model, or one whose card cannot be read: the generic option
            self.tta_check.setText("Test-time augmentation (mirroring)")
            self.tta_check.setToolTip(TTA_TOOLTIP)
            self.tta_check.setEnabled(True)
            return
        axes = card.mirror_axes
        if axes is None:
            text, why = f"all axes, {2 ** int(card.dims)}×", "along every axis"
        elif len(axes) == 0:
            text, why = "off for this model", "not at all (trained without mirroring)"
        elif len(axes) == 1:
            text, why = "left-right, 2×", "left-right only"
        else:
            text, why = f"{len(axes)} axes, {2 ** len(axes)}×", f"along {len(axes)} axes"
        self.tta_check.setToolTip(
            "Average the predictions over mirrored copies of the image, as the model saw them in "
            f"training: this model was mirrored {why}."
            + (" Slower by the factor shown; usually a little more accurate." if axes != [] else ""))
        self.tta_check.setText(f"Test-time augmentation ({text})")
        self.tta_check.setEnabled(axes is None or len(axes) > 0)

    @catch_errors("Choose model")
    def _choose_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (model.pt + "
                                                  "model_card.json)", str(models_folder()))
        if folder:
            entry = read_model_entry(folder)
            if entry.card is None:
                raise ValueError(entry.error)
            self.model_combo.select_path(folder)

    #: Export formats offered by Export…: label -> (format name, file suffix or "" = folder).
    EXPORT_FORMATS = {"TorchScript (.pt)": ("torchscript", ".pt"), "ONNX (.onnx)": ("onnx", ".onnx"),
                      "MONAI bundle (folder)": ("monai-bundle", "")}

    @catch_errors("Export model")
    def _choose_export(self) -> None:
        from qtpy.QtWidgets import QInputDialog

        entry = self._require_model()
        label, ok = QInputDialog.getItem(self, "Export model", "Format:",
                                         list(self.EXPORT_FORMATS), 0, False)
        if not ok:
            return
        fmt, suffix = self.EXPORT_FORMATS[label]
        start = str(Path(last_folder("export")) / f"{entry.path.name}{suffix}")
        if suffix:
            out, _ = QFileDialog.getSaveFileName(self, "Export model as", start,
                                                 f"{label} (*{suffix})")
        else:
            out = QFileDialog.getExistingDirectory(self, "Folder for the MONAI bundle",
                                                   last_folder("export"))
            out = str(Path(out) / entry.path.name) if out else ""
        if out:
            remember_folder(str(Path(out).parent), "export")
            self.export_model_to(out, fmt)

    def export_model_to(self, out: str | Path, fmt: str) -> Any:
        """Export the chosen model as ``fmt`` to ``out`` in a child process; returns the worker."""
        from napari_medseg.export import export_model

        entry = self._require_model()
        self.status_label.setText(f"Exporting {entry.path.name} as {fmt}…")

        def work() -> Any:
            job = ProcessJob(export_model, str(entry.path), fmt, str(out), stop_kwarg=None,
                             what="Export")
            last = None
            for event in job.events():
                last = event
            if last is not None and last.kind == "error":
                raise ValueError(last.message)
            return job.result

        def done(path: Any) -> None:
            from napari.utils.notifications import show_info

            text = f"Exported {entry.path.name} as {fmt}: {path}"
            self.status_label.setText(text)
            show_info(text)

        def failed(exc: BaseException) -> None:
            self.status_label.setText(f"Export failed: {exc}")

        self.export_worker = run_in_worker(work, on_returned=done, on_errored=failed,
                                           action="Export model")
        return self.export_worker

    @catch_errors("Choose folder")
    def _pick_folder(self, edit: QLineEdit, kind: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder", edit.text() or last_folder(kind))
        if folder:
            edit.setText(folder)
            remember_folder(folder, kind)

    # ------------------------------------------------------------------ runs
    def _set_running(self, running: bool) -> None:
        for w in (self.run_button, self.folder_button, self.model_combo,
                  self.browse_model_button, self.image_combo, self.device_combo,
                  self.tta_check, self.uncertainty_check, self.probability_check):
            w.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if not running:
            self.image_combo.setEnabled(bool(self.image_combo.layers()))
            self.model_combo.setEnabled(self.model_combo.currentData() is not None)
            self._show_model_info()  # the TTA option follows the selected model again

    def _require_model(self) -> ModelEntry:
        entry = self.selected_model()
        if entry is None:
            raise ValueError("no model chosen: train one in the Train dock or Browse… for a "
                             "model folder")
        if entry.card is None:
            raise ValueError(entry.error)
        set_setting("infer/model", str(entry.path))
        set_setting("device", self.device_combo.currentText())
        set_setting("infer/tta", self.tta_check.isChecked())
        return entry

    @catch_errors("Segment image")
    def _on_run(self) -> None:
        if self.runner.running:
            return
        from napari.utils.notifications import show_warning

        from napari_medseg.inference import predict

        entry = self._require_model()
        image_layer = self.image_combo.require("image")
        volume = volume_from_layer(image_layer)
        extras = self.channel_list.checked_layers(image_layer) \
            if self.channel_list.isVisibleTo(self) else []
        for warning in check_model_fits(entry.card, volume, len(extras)):
            show_warning(warning)
        volume = volume.with_array(np.array(volume.array, copy=True))  # a snapshot for the child
        inputs: Any = volume
        if extras:
            inputs = [volume] + [(lambda v: v.with_array(np.array(v.array, copy=True)))(
                volume_from_layer(layer)) for layer in extras]
        want_entropy = self.uncertainty_check.isChecked()
        want_probability = self.probability_check.isChecked()
        set_setting("infer/uncertainty", want_entropy)
        set_setting("infer/probability", want_probability)
        self._pending = {"kind": "image", "model": entry, "image_layer": image_layer,
                         "volume": volume, "entropy": want_entropy,
                         "probability": want_probability}
        job = ProcessJob(predict, str(entry.path), inputs, tta=self.tta_check.isChecked(),
                         device=self.device_combo.currentText(),
                         return_probabilities=want_probability, return_entropy=want_entropy,
                         what="Segmentation")
        self.last_layers = []
        self.status_label.setText(f"Segmenting '{image_layer.name}' with {entry.name}…")
        self.runner.start(job, f"Segmenting {image_layer.name}",
                          prepare=lambda r: prepare_prediction(r, want_probability, want_entropy))

    @catch_errors("Segment folder")
    def _on_run_folder(self) -> None:
        if self.runner.running:
            return
        from napari_medseg.inference import predict_folder

        entry = self._require_model()
        src, dst = self.input_edit.text().strip(), self.output_edit.text().strip()
        if not src or not Path(src).is_dir():
            raise ValueError("choose an existing input folder with images")
        if not dst:
            raise ValueError("choose an output folder for the label files")
        if Path(dst).resolve() == Path(src).resolve():
            raise ValueError("the output folder must differ from the input folder (inputs "
                             "would be overwritten)")
        set_setting("infer/input_folder", src)
        set_setting("infer/output_folder", dst)
        self._pending = {"kind": "folder", "model": entry, "out": dst}
        job = ProcessJob(predict_folder, str(entry.path), src, dst,
                         tta=self.tta_check.isChecked(), device=self.device_combo.currentText(),
                         what="Segmentation")
        self.last_written = []
        self.status_label.setText(f"Segmenting the images in {src}…")
        self.runner.start(job, f"Segmenting folder {Path(src).name}")

    def _on_cancel(self) -> None:
        """Stop the segmentation: it keeps nothing, so a child that does not stop by itself
        within :data:`CANCEL_GRACE_S` is ended."""
        if self.runner.running:
            self.runner.cancel(grace_s=CANCEL_GRACE_S)
            self.status_label.setText("Cancelling…")

    def _on_event(self, ev: Event) -> None:
        """Status line and progress bar: windows done / total and the time left."""
        if ev.kind == "step" and ev.total:
            if self._pending.get("kind") == "image":
                text = f"{ev.step}/{ev.total} windows"
            else:
                text = f"Image {ev.step}/{ev.total}"
                if ev.message:
                    text += f": {ev.message}"
            if ev.eta_s is not None and ev.step < ev.total:
                text += f" · ~{_format_eta(ev.eta_s)} left"
            self.status_label.setText(text)
            self.runner.describe(text)
        elif ev.kind in ("start", "message") and ev.message:
            self.status_label.setText(ev.message)

    def _on_done(self, ev: Event) -> None:
        from napari.utils.notifications import show_error, show_info

        self.last_event = ev
        pending, self._pending = self._pending, {}
        if ev.kind == "error":
            tb = ev.result.get("traceback") if isinstance(ev.result, dict) else None
            if tb:
                logger.debug("inference failed in the child process:\n%s", tb)
            self.status_label.setText(ev.message)
            show_error(ev.message)
            return
        if ev.kind == "cancelled":
            self.status_label.setText("Segmentation cancelled.")
            return
        result = self.runner.last_result
        if result is None:
            result = ev.result
        try:
            if pending.get("kind") == "image":
                self._add_result_layers(result, pending)
            else:
                self.last_written = [str(p) for p in (result or [])]
                text = f"Wrote {len(self.last_written)} label file(s) to {pending.get('out')}."
                self.status_label.setText(text)
                show_info(text)
        except Exception as exc:  # noqa: BLE001 - one notification, never a traceback wall
            from napari_medseg.ui._notify import show_error_message

            show_error_message(exc, "Show segmentation")

    def _add_result_layers(self, result: Any, pending: dict[str, Any]) -> None:
        """Add the labels now, each optional map on a later event-loop turn.

        The arrays were prepared in the job's worker thread (:func:`prepare_prediction`);
        adding a layer still costs napari a few hundred ms on a software-rendered display, so
        the maps do not pile onto the same turn.
        """
        from napari.utils.notifications import show_info

        if result is None or not hasattr(result, "labels"):
            raise ValueError("the segmentation returned no labels")
        prepared = self.runner.last_prepared
        if not isinstance(prepared, dict) or prepared.get("result") is not result:
            prepared = prepare_prediction(result, bool(pending.get("probability")),
                                          bool(pending.get("entropy")))
        entry: ModelEntry = pending["model"]
        image_layer = pending["image_layer"]
        volume = pending["volume"]
        card = result.card
        name = f"{image_layer.name} – {entry.name}"
        labels_volume = volume.with_array(prepared["labels"], name=name)
        kwargs = labels_layer_kwargs(labels_volume, classes=card_classes(card))
        medseg = kwargs["metadata"]["medseg"]
        medseg.setdefault("source", {})["image_layer"] = image_layer.name
        medseg["source"]["image_key"] = layer_key(image_layer)
        medseg["prediction"] = {"model": str(entry.path), "model_id": card.model_id,
                                "version": card.version, "task": card.task}
        labels = self.viewer.add_labels(labels_volume.array, **kwargs)
        self.last_layers = [labels]
        self.viewer.layers.selection.active = labels
        maps = []
        if prepared.get("foreground") is not None:
            maps.append((f"{name} probability", prepared["foreground"], "viridis", 0.6))
        if prepared.get("entropy") is not None:
            maps.append((f"{name} uncertainty", prepared["entropy"], "inferno", 0.7))
        voxel_ml = float(np.prod(volume.spacing)) / 1000.0 if volume.ndim == 3 else None
        names = {v: c["name"] for v, c in card_classes(card).items()}
        pixel_mm2 = (float(np.prod(volume.spacing)) if volume.ndim == 2 and
                     (volume.metadata or {}).get("spacing_known") is not False else None)
        summary = ", ".join(
            f"{names[v]} {c * voxel_ml:.2f} mL" if voxel_ml else
            f"{names[v]} {c} px ({c * pixel_mm2:.1f} mm²)" if pixel_mm2 else f"{names[v]} {c} px"
            for v, c in prepared["counts"].items())
        kinds = [m[0].rsplit(" ", 1)[-1] for m in maps]
        extra = (f" {' and '.join(kinds).capitalize()} map{'s' if len(kinds) > 1 else ''} added "
                 "(hidden: click its eye in the layer list)." if kinds else "")
        self.status_label.setText(
            f"Added '{labels.name}' ({result.elapsed_s:.1f} s): {summary}.{extra}")
        show_info(f"Segmentation added: {labels.name}")
        self._add_maps_later(volume, maps, labels)

    def _add_maps_later(self, volume: Any, maps: list[tuple[str, np.ndarray, str, float]],
                        labels: Any) -> None:
        """Add the probability / uncertainty images one per event-loop turn (hidden), then
        make the labels the active layer again (the docks follow the active layer)."""
        from qtpy.QtCore import QTimer

        def add_next() -> None:
            if not maps:
                return
            map_name, array, colormap, opacity = maps.pop(0)
            layer_volume = volume.with_array(array, name=map_name)
            # a map of the prediction, not an image to segment: no dock offers it as one
            kwargs = layer_kwargs_for_volume(
                layer_volume, metadata={"medseg": {"role": map_name.rsplit(" ", 1)[-1]}})
            try:
                self.last_layers.append(self.viewer.add_image(
                    array, **kwargs, colormap=colormap,
                    contrast_limits=(0, 1), blending="additive", opacity=opacity,
                    visible=False))
            except RuntimeError:  # the widget or viewer was closed meanwhile
                return
            if maps:
                QTimer.singleShot(0, add_next)
                return
            with contextlib.suppress(KeyError, ValueError, RuntimeError):  # labels removed
                self.viewer.layers.selection.active = labels

        if maps:
            QTimer.singleShot(0, add_next)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        if self.runner.running:
            self.runner.cancel()
        super().closeEvent(event)
