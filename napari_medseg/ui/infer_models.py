"""The Infer dock's *Model* section: which trained model segments, and what its card says.

:class:`ModelSection` is the group box with the model list (the models folder, watched, plus
model folders opened from elsewhere), *Browse…* / *Export…* and the model card summary (classes
with their colours, 2D/3D, patch, channels, spacing, validation Dice). :func:`card_classes` and
:func:`check_model_fits` read a model card for the rest of the dock.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtCore import QFileSystemWatcher, Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.ui._controls import button
from napari_medseg.ui._models import (
    ModelEntry,
    list_models,
    model_events,
    models_folder,
    read_model_entry,
)
from napari_medseg.ui._notify import catch_errors


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
    from napari_medseg.inference.predict import check_fits, is_colour_model

    if not extra_channels:
        volume = volume.for_channels(card.in_channels)  # a greyscale picture stored as RGB
    given = int(volume.n_channels) + int(extra_channels)
    if card.in_channels != given:
        model = f"'{card.task}' v{card.version}"
        wanted = ", ".join(str(n) for n in card.channel_names)
        colour_model = is_colour_model(card)
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
    channels = volume.channel_volumes()
    return check_fits(card, channels + [channels[0]] * int(extra_channels))


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
            self.addItem("(no models yet)", None)  # short: a narrow dock cuts longer text
            self.setItemData(0, "Train one in the Train tab, or Browse… for a model folder",
                             Qt.ToolTipRole)
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


def describe_card(card: Any) -> str:
    """The model card as two lines of rich text: class swatches, then the network's facts."""
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
    return f"{swatches}<br>{' · '.join(parts)}"


class ModelSection(QGroupBox):
    """Group box *Model*: the model list, *Browse…*, *Export…* and the card summary.

    Parameters
    ----------
    on_export : callable
        Slot of the *Export…* button.
    busy : callable
        Returns True while the dock is segmenting (a newly saved model is then listed but not
        selected).

    Signals: ``model_combo.currentIndexChanged`` whenever the choice (or the list) changes.
    ``status`` (set by the dock) is the label where errors of *Browse…* show.
    """

    def __init__(self, on_export: Callable[..., Any], busy: Callable[[], bool],
                 parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self._busy = busy
        self.status: Any = None  # the dock's status line: errors of Browse… show there too
        v = QVBoxLayout(self)
        row = QHBoxLayout()
        self.model_combo = ModelCombo()
        self.model_combo.setToolTip("Trained models in the models folder (newest first)")
        self.browse_model_button = button("Browse…", "Use a model folder from elsewhere "
                                          "(a folder with model.pt and model_card.json)",
                                          self._choose_model)
        self.export_button = button("Export…", "Save the chosen model for use without napari: "
                                    "TorchScript (.pt), ONNX (.onnx) or a MONAI bundle folder, "
                                    "with its model card beside it", on_export)
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.browse_model_button)
        row.addWidget(self.export_button)
        v.addLayout(row)
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.model_info.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.model_info.setStyleSheet("font-size: small;")
        v.addWidget(self.model_info)

        self._watcher = QFileSystemWatcher(self)
        self._watch_models_folder()
        self._watcher.directoryChanged.connect(lambda *_: self._safe_refresh())
        model_events.saved.connect(self._on_model_saved)

    # ------------------------------------------------------------------ list
    def refresh(self) -> None:
        """Re-read the models folder into the model list."""
        self.model_combo.refresh()

    def selected_model(self) -> ModelEntry | None:
        """The chosen model directory and its card (None when there is none)."""
        path = self.model_combo.currentData()
        return read_model_entry(path) if path else None

    def _watch_models_folder(self) -> None:
        folder = models_folder()
        dirs = self._watcher.directories()
        if dirs:
            self._watcher.removePaths(dirs)
        if folder.is_dir():
            self._watcher.addPath(str(folder))

    def _safe_refresh(self) -> None:
        try:
            self.refresh()
        except RuntimeError:  # widget deleted
            pass

    def _on_model_saved(self, path: str) -> None:
        try:
            self._watch_models_folder()
            self.refresh()
            if Path(path).is_dir() and self.model_combo.findData(path) >= 0 \
                    and not self._busy():
                self.model_combo.setCurrentIndex(self.model_combo.findData(path))
        except RuntimeError:
            pass

    @catch_errors("Choose model")
    def _choose_model(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Model folder (model.pt + "
                                                  "model_card.json)", str(models_folder()))
        if folder:
            entry = read_model_entry(folder)
            if entry.card is None:
                raise ValueError(entry.error)
            self.model_combo.select_path(folder)

    # ------------------------------------------------------------------ card
    def show_entry(self, entry: ModelEntry | None) -> None:
        """Summarise ``entry``'s model card (or name the models folder / the card's error)."""
        if entry is None:
            self.model_info.setText(f"Models folder: {models_folder()}")
            return
        if entry.card is None:
            self.model_info.setText(f"<span style='color:#e0605a'>{entry.error}</span>")
            return
        card = entry.card
        self.model_info.setText(describe_card(card))
        self.model_info.setToolTip(f"{entry.path}\ntask '{card.task}', modality {card.modality}, "
                                   f"created {card.created}")
