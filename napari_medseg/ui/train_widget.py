"""Train dock: fine-tune or train a U-Net on open (image, labels) pairs or a dataset folder.

The form collects the data and a few choices, then hands a copy of the voxels to
:func:`napari_medseg.training.train` running in a child process (:mod:`napari_medseg.jobs`), so
the viewer stays responsive, GPU memory is freed when training ends and a crash cannot take
napari (or the user's labels) down. Progress arrives as events: a napari progress bar, a live
loss / validation-Dice plot and a status line. The finished model is saved in the models folder
and appears in the Infer dock.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtGui import QFontMetrics
from qtpy.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QRadioButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.events import IGNORE_LABEL, Event
from napari_medseg.jobs import ProcessJob, describe_device
from napari_medseg.ui._controls import (
    ChannelList,
    button,
    double_spin,
    hint,
    layer_key,
    scrollable_layout,
    spin,
)
from napari_medseg.ui._layers import (
    copy_medseg_metadata,
    image_layers,
    labels_for_saving,
    labels_layers,
    layer_classes,
    spatial_shape,
    volume_from_layer,
)
from napari_medseg.ui._models import (
    list_models,
    model_events,
    models_folder,
    set_models_folder,
    unique_model_dir,
)
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._plot import TrainingPlot
from napari_medseg.ui._runner import JobRunner
from napari_medseg.ui._settings import get_setting, last_folder, remember_folder, set_setting

logger = logging.getLogger("napari_medseg")

DEVICES = ("auto", "cpu", "cuda", "mps")
#: Device descriptions probed in this session (probing imports torch in a child process).
_DEVICE_TEXT: dict[str, str] = {}
_PROBING: set[str] = set()
_PROBE_LOCK = threading.Lock()


def device_description(device: str) -> str | None:
    """Text for the processor ``device`` resolves to, or None while it is being probed.

    The first call per device starts the probe: :func:`~napari_medseg.jobs.describe_device`
    in a child process (so the viewer's process never creates a CUDA context), driven by a
    daemon thread that touches no Qt object (so it may outlive any widget safely).
    """
    with _PROBE_LOCK:
        if device in _DEVICE_TEXT:
            return _DEVICE_TEXT[device]
        if device in _PROBING:
            return None
        _PROBING.add(device)

    def probe() -> None:
        text = "unknown (device check failed)"
        try:
            job = ProcessJob(describe_device, device, stop_kwarg=None, what="Device check",
                             nice=0)
            for _ev in job.events():
                pass
            if isinstance(job.result, str):
                text = job.result
        finally:
            with _PROBE_LOCK:
                _DEVICE_TEXT[device] = text
                _PROBING.discard(device)

    threading.Thread(target=probe, name=f"medseg-device-probe-{device}", daemon=True).start()
    return None


def find_training_pairs(viewer: Any) -> list[tuple[Any, Any]]:
    """(image layer, labels layer) pairs open in ``viewer``.

    A Labels layer (of the same shape) is paired with, in this order: the image it was made for
    (``metadata["medseg"]["source"]["image_key"]``, then ``["image_layer"]``, its name); the image whose name starts its name
    (``"case_1 labels"`` -> ``"case_1"``); the image read from a file of the same name
    (``imagesTr/x.nii.gz`` and ``labelsTr/x.nii.gz``); the first image of the same shape.
    """
    images = image_layers(viewer)
    pairs = []
    for labels in labels_layers(viewer):
        same = [im for im in images if spatial_shape(im) == spatial_shape(labels)]
        if not same:
            continue
        source = copy_medseg_metadata(labels).get("source", {})
        by_origin = ([im for im in same if source.get("image_key") == layer_key(im)]
                     or [im for im in same if im.name == source.get("image_layer")])
        by_name = sorted((im for im in same if labels.name.startswith(im.name)),
                         key=lambda im: -len(im.name))
        file_name = Path(str(source.get("path", ""))).name
        by_file = [im for im in same if file_name and Path(str(
            copy_medseg_metadata(im).get("source", {}).get("path", ""))).name == file_name]
        pairs.append(((by_origin or by_name or by_file or same)[0], labels))
    return pairs


def _home_short(path: Path) -> str:
    """``/home/me/x`` -> ``~/x`` (shorter to show)."""
    try:
        return "~/" + str(Path(path).resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


class ElidedLabel(QLabel):
    """One-line label that elides its text in the middle instead of widening the dock."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = text
        self.setMinimumWidth(40)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        metrics = QFontMetrics(self.font())
        super().setText(metrics.elidedText(self._full, Qt.ElideMiddle, max(self.width(), 40)))


class TrainWidget(QWidget):
    """Train or fine-tune a segmentation model from the viewer.

    Parameters
    ----------
    napari_viewer : napari.Viewer

    Attributes
    ----------
    config_overrides : dict
        Extra :class:`~napari_medseg.training.config.TrainConfig` fields (advanced use, tests:
        e.g. a tiny network).
    last_result : object
        The last :class:`~napari_medseg.training.config.TrainResult` (or None).
    """

    #: Emitted with the model folder when a training run saved a model.
    model_saved = Signal(str)

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.config_overrides: dict[str, Any] = {}
        self.last_result: Any = None
        self.last_event: Event | None = None
        self._out_dir: Path | None = None
        self._device_timer = QTimer(self)
        self._device_timer.setInterval(250)
        self._device_timer.timeout.connect(self._poll_device)
        self.runner = JobRunner(self)
        self.runner.event.connect(self._on_event)
        self.runner.done.connect(self._on_done)
        self.runner.running_changed.connect(self._set_running)

        layout = scrollable_layout(self)
        layout.addWidget(self._build_data_box())
        layout.addWidget(self._build_model_box())
        layout.addWidget(self._build_run_box())
        layout.addStretch(1)

        for name in ("inserted", "removed"):
            getattr(self.viewer.layers.events, name).connect(self._on_layers_changed)
        model_events.saved.connect(self._on_any_model_saved)
        self.refresh_pairs()
        self.refresh_models()
        self._update_source()
        self._probe_device()

    # ------------------------------------------------------------------ form
    def _build_data_box(self) -> QGroupBox:
        box = QGroupBox("Training data")
        v = QVBoxLayout(box)
        self.layers_radio = QRadioButton("Open image + labels layers")
        self.layers_radio.setToolTip("Train on the checked (image, labels) pairs open in napari")
        self.folder_radio = QRadioButton("Dataset folder (imagesTr/ + labelsTr/)")
        self.folder_radio.setToolTip("Train on a Medical Segmentation Decathlon / nnU-Net folder")
        group = QButtonGroup(self)
        group.addButton(self.layers_radio)
        group.addButton(self.folder_radio)
        self.layers_radio.setChecked(True)
        self.layers_radio.toggled.connect(self._update_source)
        self.layers_radio.toggled.connect(lambda *_: self._on_init_changed())
        v.addWidget(self.layers_radio)
        self.pair_list = QListWidget()
        self.pair_list.setToolTip(
            "Each line pairs a labels layer with its image. Unchecked pairs are not used. "
            "Slices not marked as annotated are ignored by the loss (sparse annotation)."
        )
        self.pair_list.setMaximumHeight(90)
        self.pair_list.itemChanged.connect(self._on_pairs_checked)
        self.pair_list.setTextElideMode(Qt.ElideMiddle)
        self.pair_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        v.addWidget(self.pair_list)
        self.channels_label = QLabel("Extra channels")
        self.channels_label.setToolTip("Co-registered images fed with each image as further "
                                       "input channels (nnU-Net's channel_names)")
        v.addWidget(self.channels_label)
        self.channel_list = ChannelList(self.viewer, image_layers)
        v.addWidget(self.channel_list)
        v.addWidget(self.folder_radio)
        row = QHBoxLayout()
        self.folder_edit = QLineEdit(get_setting("train/dataset_folder", ""))
        self.folder_edit.setPlaceholderText("folder with dataset.json, imagesTr, labelsTr")
        self.folder_edit.setToolTip("Dataset folder in the MSD / nnU-Net layout")
        self.folder_button = button("Browse…", "Choose the dataset folder", self._choose_folder)
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.folder_button)
        v.addLayout(row)
        return box

    def _build_model_box(self) -> QGroupBox:
        box = QGroupBox("Model")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.name_edit = QLineEdit(get_setting("train/model_name", "my-model"))
        self.name_edit.setToolTip(
            "Name of the new model folder (a number is appended if it exists; models are "
            "never overwritten)"
        )
        form.addRow("Name", self.name_edit)
        self.init_combo = QComboBox()
        self.init_combo.setToolTip(
            "Start from scratch, or fine-tune a saved model (transfer learning: a model trained "
            "for other classes gets a new output layer). The chosen model is not modified."
        )
        form.addRow("Start from", self.init_combo)
        self.dims_combo = QComboBox()
        self.dims_combo.addItem("3D (volumes)", 3)
        self.dims_combo.addItem("2D (slice by slice)", 2)
        self.dims_combo.setToolTip(
            "3D uses context across slices (best for isotropic volumes); 2D trains on single "
            "slices (faster, for thick slices or few annotated slices)"
        )
        self.dims_combo.setCurrentIndex(0 if get_setting("train/dims", 3) == 3 else 1)
        form.addRow("Network", self.dims_combo)
        self.init_combo.currentIndexChanged.connect(self._on_init_changed)
        folder_row = QHBoxLayout()
        self.models_label = ElidedLabel()
        change = button("Change…", "Choose the folder where models are saved and listed",
                        self._choose_models_folder)
        folder_row.addWidget(self.models_label, 1)
        folder_row.addWidget(change)
        form.addRow("Save in", folder_row)
        return box

    def _build_run_box(self) -> QGroupBox:
        box = QGroupBox("Run")
        v = QVBoxLayout(box)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.budget_spin = double_spin(
            get_setting("train/time_budget_min", 10.0), 0.1, 24 * 60.0,
            "Wall-clock limit for training; the learning-rate schedule follows it",
            suffix=" min", decimals=1, step=1.0)
        form.addRow("Time budget", self.budget_spin)
        self.epochs_spin = spin(get_setting("train/max_epochs", 200), 1, 100000,
                                "Stop after this many epochs even if time is left")
        form.addRow("Max epochs", self.epochs_spin)
        self.device_combo = QComboBox()
        for d in DEVICES:
            self.device_combo.addItem(d)
        self.device_combo.setCurrentText(get_setting("device", "auto"))
        self.device_combo.setToolTip(
            "auto = NVIDIA GPU (mixed precision) if present, else Apple GPU, else CPU")
        self.device_combo.currentTextChanged.connect(self._probe_device)
        self.device_label = QLabel("detecting…")
        self.device_label.setToolTip(
            "The processor training will run on. GPUs train in mixed precision; 'bfloat16' means "
            "this CPU has hardware support for the same (about 1.5x faster training)."
        )
        row = QHBoxLayout()
        row.addWidget(self.device_combo)
        row.addWidget(self.device_label, 1)
        form.addRow("Device", row)
        v.addLayout(form)
        buttons = QHBoxLayout()
        self.start_button = button("Start training", "Train with the settings above",
                                   self._on_start)
        self.cancel_button = button(
            "Cancel", "Stop training; the best model so far is kept, earlier models are "
            "untouched", self._on_cancel)
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.start_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        v.addLayout(buttons)
        self.status_label = QLabel("Ready.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        v.addWidget(self.status_label)
        self.plot = TrainingPlot(theme=getattr(self.viewer, "theme", None))
        v.addWidget(self.plot)
        v.addWidget(hint("Training runs in a separate process: keep annotating while it runs. "
                         "Your layers are copied, never changed."))
        return box

    # ------------------------------------------------------------------ state
    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for w in (self.layers_radio, self.folder_radio, self.pair_list, self.channel_list,
                  self.folder_edit,
                  self.folder_button, self.name_edit, self.init_combo, self.dims_combo,
                  self.budget_spin, self.epochs_spin, self.device_combo):
            w.setEnabled(not running)
        if not running:
            self._update_source()
            self._on_init_changed()

    def _update_source(self) -> None:
        use_layers = self.layers_radio.isChecked()
        running = self.runner.running
        self.pair_list.setEnabled(use_layers and not running)
        self.channel_list.setEnabled(use_layers and not running)
        self.folder_edit.setEnabled(not use_layers and not running)
        self.folder_button.setEnabled(not use_layers and not running)

    def _on_layers_changed(self, event: Any = None) -> None:
        try:
            self.refresh_pairs()
        except RuntimeError:  # widget already deleted
            pass

    def refresh_pairs(self) -> None:
        """Rebuild the checklist of (image, labels) pairs, keeping unchecked choices."""
        unchecked = {self.pair_list.item(i).text() for i in range(self.pair_list.count())
                     if self.pair_list.item(i).checkState() != Qt.Checked}
        self.pair_list.clear()
        self._pairs = find_training_pairs(self.viewer)
        for layer in list(self.viewer.layers):
            layer.events.name.connect(self._on_layers_changed)  # napari ignores duplicates
        for image, labels in self._pairs:
            text = (labels.name if labels.name.startswith(image.name)
                    else f"{labels.name}  ←  {image.name}")
            marks = copy_medseg_metadata(labels).get("annotated_slices")
            if marks:
                text += f"  ({len(marks)} slices annotated)"
            item = QListWidgetItem(text)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Unchecked if text in unchecked else Qt.Checked)
            item.setToolTip(f"labels '{labels.name}' on image '{image.name}', "
                            f"shape {tuple(labels.data.shape)}")
            self.pair_list.addItem(item)
        if not self._pairs:
            item = QListWidgetItem("(open an image and its labels)")
            item.setFlags(Qt.NoItemFlags)
            self.pair_list.addItem(item)
        self._on_pairs_checked()

    def _on_pairs_checked(self, *_: Any) -> None:
        """Checked pairs changed: offer their extra channels, force 2D for 2D pictures."""
        try:
            pairs = self.checked_pairs()
        except (AttributeError, RuntimeError):
            return
        self.channel_list.set_images([image for image, _labels in pairs])
        self._on_init_changed()

    def _pictures_2d(self) -> list[str]:
        """Names of the checked training images that are 2D (they need a 2D network)."""
        if not self.layers_radio.isChecked():
            return []
        return [image.name for image, _labels in self.checked_pairs()
                if len(spatial_shape(image)) == 2]

    def checked_pairs(self) -> list[tuple[Any, Any]]:
        """The (image, labels) pairs currently checked."""
        return [pair for i, pair in enumerate(getattr(self, "_pairs", []))
                if i < self.pair_list.count()
                and self.pair_list.item(i).checkState() == Qt.Checked]

    def refresh_models(self) -> None:
        """Refresh the 'Start from' list and the models-folder label."""
        folder = models_folder()
        self.models_label.set_full_text(_home_short(folder))
        self.models_label.setToolTip(f"New models are saved in {folder}")
        current = self.init_combo.currentData()
        self.init_combo.clear()
        self.init_combo.addItem("New model (from scratch)", None)
        for entry in list_models(folder):
            if entry.card is not None:
                self.init_combo.addItem(entry.label(), str(entry.path))
        if current is not None:
            idx = self.init_combo.findData(current)
            if idx >= 0:
                self.init_combo.setCurrentIndex(idx)

    def _on_init_changed(self, *_: Any) -> None:
        """Fine-tuning keeps the chosen model's network: show its 2D/3D and lock the choice."""
        path = self.init_combo.currentData()
        card = None
        if path:
            from napari_medseg.ui._models import read_model_entry

            card = read_model_entry(path).card
        flat = self._pictures_2d() if hasattr(self, "channel_list") else []
        if card is not None:
            self.dims_combo.setCurrentIndex(self.dims_combo.findData(int(card.dims)))
            self.dims_combo.setEnabled(False)
            self.dims_combo.setToolTip("Fixed by the model you fine-tune (its network is reused)")
        elif flat:
            self.dims_combo.setItemText(self.dims_combo.findData(2), "2D")
            self.dims_combo.setCurrentIndex(self.dims_combo.findData(2))
            self.dims_combo.setEnabled(False)
            self.dims_combo.setToolTip(f"'{flat[0]}' is a 2D picture: it trains a 2D network")
        else:
            self.dims_combo.setItemText(self.dims_combo.findData(2), "2D (slice by slice)")
            self.dims_combo.setEnabled(not self.runner.running)
            self.dims_combo.setToolTip(
                "3D uses context across slices (best for isotropic volumes); 2D trains on "
                "single slices (faster, for thick slices or few annotated slices)")

    def _on_any_model_saved(self, path: str) -> None:
        try:
            self.refresh_models()
        except RuntimeError:
            pass

    # ------------------------------------------------------------------ device
    def _probe_device(self, *_: Any) -> None:
        """Show which processor training will use (probed once per session, in a child)."""
        device = self.device_combo.currentText()
        text = device_description(device)
        self.device_label.setText(text or "detecting…")
        if text is None and not self._device_timer.isActive():
            self._device_timer.start()

    def _poll_device(self) -> None:
        device = self.device_combo.currentText()
        text = device_description(device)
        if text is not None:
            self._device_timer.stop()
            self.device_label.setText(text)

    # ------------------------------------------------------------------ actions
    @catch_errors("Choose dataset folder")
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder",
                                                  self.folder_edit.text() or last_folder("dataset"))
        if folder:
            self.folder_edit.setText(folder)
            remember_folder(folder, "dataset")

    @catch_errors("Choose models folder")
    def _choose_models_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Models folder", str(models_folder()))
        if folder:
            set_models_folder(folder)
            self.refresh_models()
            model_events.saved.emit(folder)

    def _collect_cases(self) -> Any:
        """Copy the checked pairs into a :class:`~napari_medseg.dataset.Dataset` (main thread)."""
        from napari_medseg.dataset import Case, Dataset

        pairs = self.checked_pairs()
        if not pairs:
            raise ValueError("check at least one (image, labels) pair, or choose a dataset "
                             "folder")
        cases, names, modality = [], {0: "background"}, None
        channel_names: list[str] | None = None
        for image_layer, labels_layer in pairs:
            image = volume_from_layer(image_layer)
            image = image.with_array(np.array(image.array, dtype=np.float32, copy=True))
            extras = []
            for layer in self.channel_list.checked_layers(image_layer):
                extra = volume_from_layer(layer)
                extra.metadata["channel_name"] = layer.name
                extras.append(extra.with_array(np.array(extra.array, dtype=np.float32,
                                                        copy=True)))
            names_here = (image.channel_names if image.rgb else [image_layer.name]) + [
                e.metadata["channel_name"] for e in extras]
            if channel_names is None:
                channel_names = names_here
            elif len(channel_names) != len(names_here):
                raise ValueError(
                    f"'{image_layer.name}' has {len(names_here)} input channel(s) "
                    f"({', '.join(names_here)}) but the first image has {len(channel_names)} "
                    f"({', '.join(channel_names)}): every case needs the same channels")
            medseg = copy_medseg_metadata(labels_layer)
            labels = np.array(labels_for_saving(np.asarray(labels_layer.data), medseg),
                              copy=True)
            if labels.shape != image.shape:
                raise ValueError(f"labels '{labels_layer.name}' {labels.shape} do not match "
                                 f"image '{image_layer.name}' {image.shape}")
            values = np.unique(labels)
            annotated = values[values != IGNORE_LABEL]
            if annotated.size == 0 or annotated.max() == 0:
                raise ValueError(f"labels '{labels_layer.name}' contain no annotation yet")
            for value, entry in layer_classes(labels_layer).items():
                names.setdefault(int(value), entry["name"])
            for value in annotated:
                if int(value) != 0:
                    names.setdefault(int(value), f"label {int(value)}")
            modality = modality or image.modality
            cases.append(Case(case_id=image_layer.name, image=image, labels=labels,
                              extra_channels=tuple(extras)))
        names = dict(sorted(names.items()))
        if channel_names is not None and len(channel_names) == 1:
            channel_names = ["image"]  # one greyscale channel: the name every model uses
        return Dataset(cases, names, modality=modality or "unknown",
                       channel_names=channel_names or ["image"],
                       name=self.name_edit.text().strip() or "napari")

    def build_config(self) -> Any:
        """The :class:`~napari_medseg.training.config.TrainConfig` the form describes."""
        from napari_medseg.training.config import TrainConfig

        values = {
            "dims": int(self.dims_combo.currentData()),
            "max_epochs": int(self.epochs_spin.value()),
            "time_budget_s": float(self.budget_spin.value()) * 60.0,
            "device": self.device_combo.currentText(),
        }
        values.update(self.config_overrides)
        return TrainConfig(**values)

    @catch_errors("Start training")
    def _on_start(self) -> None:
        if self.runner.running:
            return
        from napari_medseg.training import train

        config = self.build_config()
        if self.layers_radio.isChecked():
            dataset: Any = self._collect_cases()
            source = f"{len(dataset.cases)} open pair(s)"
        else:
            folder = self.folder_edit.text().strip()
            if not folder or not Path(folder).is_dir():
                raise ValueError("choose an existing dataset folder")
            dataset = folder
            source = Path(folder).name
            set_setting("train/dataset_folder", folder)
        name = self.name_edit.text().strip() or "my-model"
        out_dir = unique_model_dir(models_folder(), name)
        init_model = self.init_combo.currentData()
        self._remember_form()
        self._out_dir = out_dir
        self.last_result = None
        self.last_event = None
        self.plot.clear()
        self._steps_per_epoch = max(int(config.steps_per_epoch), 1)
        self._best_dice: float | None = None
        job = ProcessJob(train, config, dataset=dataset, out_dir=str(out_dir),
                         init_model=init_model, what="Training")
        self.status_label.setText(f"Starting training on {source} (loading PyTorch)…")
        self.runner.start(job, f"Training {out_dir.name}")

    def _remember_form(self) -> None:
        set_setting("train/model_name", self.name_edit.text().strip())
        if self.dims_combo.isEnabled():  # not a choice forced by the data or the model
            set_setting("train/dims", int(self.dims_combo.currentData()))
        set_setting("train/time_budget_min", float(self.budget_spin.value()))
        set_setting("train/max_epochs", int(self.epochs_spin.value()))
        set_setting("device", self.device_combo.currentText())

    def _on_cancel(self) -> None:
        if self.runner.running:
            self.runner.cancel()
            self.status_label.setText("Cancelling… (the best model so far is kept)")
            self.cancel_button.setEnabled(False)

    def cancel_and_wait(self, timeout_s: float = 60.0) -> None:
        """Cancel a running training and block until its worker ended (for closing/tests)."""
        import time

        from qtpy.QtWidgets import QApplication

        if not self.runner.running:
            return
        self.runner.cancel()
        t0 = time.monotonic()
        while self.runner.running and time.monotonic() - t0 < timeout_s:
            QApplication.processEvents()
            time.sleep(0.02)

    # ------------------------------------------------------------------ events
    def _on_event(self, ev: Event) -> None:
        if ev.kind == "step":
            if ev.loss is not None and ev.step is not None:
                self.plot.add_step(ev.step / self._steps_per_epoch, ev.loss)
            parts = [f"Step {ev.step}"]
            if ev.epoch is not None:
                parts.append(f"epoch {ev.epoch}")
            if ev.loss is not None:
                parts.append(f"loss {ev.loss:.3f}")
            if self._best_dice is not None:
                parts.append(f"best val Dice {self._best_dice:.3f}")
            if ev.eta_s is not None:
                parts.append(f"~{_format_duration(ev.eta_s)} left")
            self.status_label.setText(" · ".join(parts))
        elif ev.kind == "epoch":
            dice = _mean_dice(ev.metrics)
            if dice is not None:
                self._best_dice = dice if self._best_dice is None else max(self._best_dice, dice)
            if ev.epoch is not None:
                # place it where it was measured on the step axis (a short last epoch ends
                # before its whole number)
                position = (ev.step / self._steps_per_epoch if ev.step and self._steps_per_epoch
                            else ev.epoch)
                self.plot.add_epoch(position, ev.loss, dice)
        elif ev.kind == "message":
            if ev.level == "warning":
                from napari.utils.notifications import show_warning

                show_warning(ev.message)
            elif ev.message:
                self.status_label.setText(ev.message)
        elif ev.kind == "start" and ev.message:
            self.status_label.setText(ev.message)

    def _on_done(self, ev: Event) -> None:
        from napari.utils.notifications import show_error, show_info, show_warning

        self.last_event = ev
        result = self.runner.last_result
        if result is None and ev.kind != "error":
            result = ev.result
        self.last_result = result
        model_dir = getattr(result, "model_dir", None)
        saved = model_dir is not None and Path(model_dir).is_dir()
        if ev.kind == "finished":
            from napari_medseg.training.verdict import training_verdict

            best = getattr(result, "best_metric", None)
            score = f" (best validation Dice {best:.3f})" if best is not None else ""
            verdict = training_verdict(result)
            if not saved:
                text, notify = "Training finished but no model was saved.", show_warning
            elif not verdict.usable:
                text = (f"Model {Path(model_dir).name} is not usable yet. {verdict.message}")
                notify = show_warning
            elif verdict.weak:
                text = (f"Model saved: {Path(model_dir).name}{score}. {verdict.message}")
                notify = show_warning
            else:
                text = f"Model saved: {Path(model_dir).name}{score}. Select it in Infer."
                notify = show_info
            self.status_label.setText(text)
            notify(text)
        elif ev.kind == "cancelled":
            text = "Training cancelled; earlier models are unchanged."
            if saved:
                text += f" The best model so far was saved as {Path(model_dir).name}."
            self.status_label.setText(text)
            show_info(text)
        else:
            tb = ev.result.get("traceback") if isinstance(ev.result, dict) else None
            if tb:
                logger.debug("training failed in the child process:\n%s", tb)
            self.status_label.setText(ev.message)
            show_error(ev.message)
        if saved:
            self.refresh_models()
            self.model_saved.emit(str(model_dir))
            model_events.saved.emit(str(model_dir))

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        if self.runner.running:
            self.runner.cancel()
        super().closeEvent(event)


def _mean_dice(metrics: dict[str, float] | None) -> float | None:
    """Mean validation Dice from an epoch event's metrics (several naming styles accepted)."""
    if not metrics:
        return None
    for key in ("dice_mean", "mean_dice", "dice", "val_dice"):
        if metrics.get(key) is not None:
            return float(metrics[key])
    per_class = [float(v) for k, v in metrics.items() if k.lower().startswith("dice") and
                 v is not None]
    return float(np.mean(per_class)) if per_class else None


def _format_duration(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
