"""The Infer dock's *Segment a folder of images* section: input and output folders and the
*Segment folder* button (the run itself uses the model, device and TTA choices above it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLineEdit, QWidget

from napari_medseg.ui._controls import button, hint
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._settings import get_setting, last_folder, remember_folder, set_setting

#: Tooltip of "Segment folder".
FOLDER_TIP = ("Segment every image of the input folder and write label files to the output "
              "folder")

class FolderSection(QGroupBox):
    """Group box *Segment a folder of images*.

    Parameters
    ----------
    on_run : callable
        Slot of the *Segment folder* button.

    Attributes
    ----------
    input_edit, output_edit : QLineEdit
    folder_button : QPushButton
    """

    def __init__(self, on_run: Callable[..., Any], parent: QWidget | None = None) -> None:
        super().__init__("Segment a folder of images", parent)
        self.status: Any = None  # the dock's status line: errors of the pickers show there too
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        self.input_edit = QLineEdit(get_setting("infer/input_folder", ""))
        self.input_edit.setPlaceholderText("folder of volumes or pictures")
        self.input_edit.setToolTip("Every image in this folder is segmented (NIfTI volumes, "
                                   "PNG/JPEG/TIFF pictures)")
        form.addRow("Input", self._with_picker(self.input_edit, "Choose the input folder",
                                               "infer_input"))
        self.output_edit = QLineEdit(get_setting("infer/output_folder", ""))
        self.output_edit.setPlaceholderText("where the label files go")
        self.output_edit.setToolTip("Label files get the input file names, shapes and affines "
                                    "(<name>.nii.gz for volumes, <name>.png for pictures)")
        form.addRow("Output", self._with_picker(self.output_edit, "Choose the output folder",
                                                "infer_output"))
        self.folder_button = button("Segment folder", FOLDER_TIP, on_run)
        form.addRow(self.folder_button)
        form.addRow(hint("Uses the model, device and TTA choices above."))

    def _with_picker(self, edit: QLineEdit, tooltip: str, kind: str) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(button("…", tooltip, lambda: self._pick_folder(edit, kind)))
        return row

    @catch_errors("Choose folder")
    def _pick_folder(self, edit: QLineEdit, kind: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder", edit.text() or last_folder(kind))
        if folder:
            edit.setText(folder)
            remember_folder(folder, kind)

    def folders(self) -> tuple[str, str]:
        """The checked (input, output) folders, remembered for the next session.

        Raises
        ------
        ValueError
            No existing input folder, no output folder, or the same folder for both.
        """
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
        return src, dst
