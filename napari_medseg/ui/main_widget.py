"""The "MedSeg (all steps)" dock: one tab per step of the human-in-the-loop cycle."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from napari_medseg.ui._controls import Dock, VerticalScrollArea

logger = logging.getLogger("napari_medseg")

#: (tab title, module, class, tooltip) in the order of the workflow.
TABS: tuple[tuple[str, str, str, str], ...] = (
    ("Load", "napari_medseg.ui.load_widget", "LoadWidget",
     "Open NIfTI / DICOM images and set the display window"),
    ("Annotate", "napari_medseg.ui.annotate_widget", "AnnotateWidget",
     "Create labels, classes, brush in mm, pre-segmentation, save"),
    ("Train", "napari_medseg.ui.train_widget", "TrainWidget",
     "Fine-tune a U-Net on your labels"),
    ("Infer", "napari_medseg.ui.infer_widget", "InferWidget",
     "Run a model on the image"),
    ("Edit", "napari_medseg.ui.edit_widget", "EditWidget",
     "Correct labels: morphology in mm, holes, islands, undo"),
    ("Evaluate", "napari_medseg.ui.evaluate_widget", "EvaluateWidget",
     "Dice, HD95 ... against ground truth; error overlay"),
    ("Project", "napari_medseg.ui.project_widget", "ProjectWidget",
     "Cases, models and the annotate-train-correct loop"),
)


class UnavailableTab(QLabel):
    """Disabled placeholder shown when a tab's widget cannot be created (with the reason)."""

    def __init__(self, title: str, error: BaseException) -> None:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        super().__init__(f"The {title} tools could not be loaded:\n{reason}\n\n"
                         "The other tabs work normally.")
        self.error = error
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.setEnabled(False)
        self.setToolTip(f"{type(error).__name__}: {reason}")


class MedSegWidget(Dock):
    """Tabbed dock holding the Load, Annotate, Train, Infer, Edit, Evaluate and Project tools."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        self.tabs = QTabWidget()
        self.tabs.setUsesScrollButtons(True)
        self.pages: dict[str, QWidget] = {}
        for title, module, cls, tip in TABS:
            page = self._make_page(title, module, cls)
            self.pages[title] = page
            scroll = VerticalScrollArea()
            scroll.setWidget(page)
            index = self.tabs.addTab(scroll, title)
            self.tabs.setTabToolTip(index, tip)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(380)

    def _make_page(self, title: str, module: str, cls: str) -> QWidget:
        try:
            widget_cls = getattr(importlib.import_module(module), cls)
            return widget_cls(self.viewer)
        except Exception as exc:  # noqa: BLE001 - one broken tab must not take the dock down
            logger.debug("MedSeg tab %s failed to load", title, exc_info=exc)
            return UnavailableTab(title, exc)

    def page(self, title: str) -> QWidget:
        """The widget of tab ``title`` (e.g. ``"Load"``)."""
        return self.pages[title]

    def show_tab(self, title: str) -> None:
        """Bring tab ``title`` to the front."""
        titles = [t[0] for t in TABS]
        self.tabs.setCurrentIndex(titles.index(title))
