"""Project dock, "Project" box: create or open a project folder and show what it holds.

The folder dialogs live here; what creating or opening means (the class table and modality
taken from the layers, labels restored afterwards) is the dock's
(:meth:`~napari_medseg.ui.project_widget.ProjectWidget.create_project`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QInputDialog, QVBoxLayout, QWidget

from napari_medseg.dataset.project import Project
from napari_medseg.ui._controls import button, hint
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._settings import last_folder


class ProjectBox(QGroupBox):
    """New / Open buttons and a summary of the open project.

    Parameters
    ----------
    create : callable
        ``create(folder, name)`` once the user chose a folder and a task name.
    open_ : callable
        ``open_(folder)`` once the user chose a project folder.
    """

    def __init__(self, create: Callable[[str, str], Any], open_: Callable[[str], Any],
                 parent: QWidget | None = None) -> None:
        super().__init__("Project", parent)
        self._create = create
        self._open = open_
        col = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(button("New project…", "Create a project folder (MSD layout) for the "
                             "cases and models of one task", self._on_new))
        row.addWidget(button("Open project…", "Open an existing project folder", self._on_open))
        col.addLayout(row)
        self.project_label = hint("No project open.")
        col.addWidget(self.project_label)

    @catch_errors("New project")
    def _on_new(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "New project: choose an empty folder",
                                                  last_folder("project"))
        if not folder:
            return
        name, ok = QInputDialog.getText(self, "Project name", "Name of the task:",
                                        text=Path(folder).name)
        if ok:
            self._create(folder, name or Path(folder).name)

    @catch_errors("Open project")
    def _on_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open project folder",
                                                  last_folder("project"))
        if folder:
            self._open(folder)

    def show_project(self, p: Project | None) -> None:
        """Summarise ``p`` (name, classes, cases, pool, current model)."""
        if p is None:
            self.project_label.setText("No project open.")
            return
        classes = ", ".join(c["name"] for c in p.classes.values())
        modality = "" if p.modality == "unknown" else f"{p.modality}: "
        self.project_label.setText(
            f"<b>{p.name}</b> ({modality}{classes})<br>folder <i>{p.root.name}</i><br>"
            f"{len(p.accepted_ids())} accepted case(s), {p.annotation_cost()} annotated "
            f"slices<br>{len(p.unlabelled_ids())} image(s) in the pool; model "
            f"<b>{p.current_model or 'none yet'}</b>")
        self.project_label.setToolTip(str(p.root))


__all__ = ["ProjectBox"]
