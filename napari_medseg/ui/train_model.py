"""The Train dock's *Model* section: the new model's name, what it starts from (scratch or a
saved model to fine-tune), its network (2D or 3D) and the models folder it is saved in.

The 2D/3D choice follows the data and the starting model (:meth:`ModelSection.sync_dims`):
fine-tuning reuses the saved model's network, 2D pictures need a 2D network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QFontMetrics
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QWidget,
)

from napari_medseg.ui._controls import button
from napari_medseg.ui._models import list_models, model_events, models_folder, set_models_folder
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._settings import get_setting, set_setting

DIMS_TOOLTIP = ("3D uses context across slices (best for isotropic volumes); 2D trains on "
                "single slices (faster, for thick slices or few annotated slices)")


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


class ModelSection(QGroupBox):
    """Group box *Model*: ``name_edit``, ``init_combo`` (data: a model folder or None),
    ``dims_combo`` (data: 3 or 2) and ``models_label`` with its *Change…* button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        form = QFormLayout(self)
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
        self.dims_combo.setToolTip(DIMS_TOOLTIP)
        self.dims_combo.setCurrentIndex(0 if get_setting("train/dims", 3) == 3 else 1)
        form.addRow("Network", self.dims_combo)
        folder_row = QHBoxLayout()
        self.models_label = ElidedLabel()
        self.change_button = button("Change…", "Choose the folder where models are saved and "
                                    "listed", self._choose_models_folder)
        folder_row.addWidget(self.models_label, 1)
        folder_row.addWidget(self.change_button)
        form.addRow("Save in", folder_row)

    def model_name(self) -> str:
        """The name typed for the new model ('my-model' when empty)."""
        return self.name_edit.text().strip() or "my-model"

    def remember(self) -> None:
        """Store the name and (unless forced by the data or the model) the network."""
        set_setting("train/model_name", self.name_edit.text().strip())
        if self.dims_combo.isEnabled():  # not a choice forced by the data or the model
            set_setting("train/dims", int(self.dims_combo.currentData()))

    def set_running(self, running: bool) -> None:
        for w in (self.name_edit, self.init_combo, self.dims_combo):
            w.setEnabled(not running)

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

    @catch_errors("Choose models folder")
    def _choose_models_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Models folder", str(models_folder()))
        if folder:
            set_models_folder(folder)
            self.refresh_models()
            model_events.saved.emit(folder)

    def sync_dims(self, pictures_2d: list[str], running: bool) -> None:
        """Fine-tuning keeps the chosen model's network: show its 2D/3D and lock the choice;
        checked 2D pictures (``pictures_2d``, their names) force a 2D network."""
        path = self.init_combo.currentData()
        card = None
        if path:
            from napari_medseg.ui._models import read_model_entry

            card = read_model_entry(path).card
        dims = self.dims_combo
        if card is not None:
            dims.setCurrentIndex(dims.findData(int(card.dims)))
            dims.setEnabled(False)
            dims.setToolTip("Fixed by the model you fine-tune (its network is reused)")
        elif pictures_2d:
            dims.setItemText(dims.findData(2), "2D")
            dims.setCurrentIndex(dims.findData(2))
            dims.setEnabled(False)
            dims.setToolTip(f"'{pictures_2d[0]}' holds 2D pictures: they train a 2D network")
        else:
            dims.setItemText(dims.findData(2), "2D (slice by slice)")
            dims.setEnabled(not running)
            dims.setToolTip(DIMS_TOOLTIP)
