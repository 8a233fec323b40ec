"""Load dock: open NIfTI / DICOM images (choosing a DICOM series), their labels, and set the
display window (CT presets with level/width, MR auto-contrast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.io.picture import file_dialog_patterns
from napari_medseg.ui._controls import (
    Dock,
    LayerCombo,
    button,
    double_spin,
    hint,
    run_in_worker,
    scrollable_layout,
)
from napari_medseg.ui._layers import cells, image_layers, medseg_metadata, volume_from_layer
from napari_medseg.ui._notify import catch_errors, show_error_message
from napari_medseg.ui._settings import get_setting, last_folder, remember_folder, set_setting

FILE_FILTER = ("Medical images (" + file_dialog_patterns((
    ".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".DCM", ".ima", ".IMA"))
    + ");;All files (*)")
SERIES_COLUMNS = ("Description", "Patient", "Folder", "Modality", "Slices", "Spacing (mm)")
_LEVEL_RANGE = (-1500.0, 3000.0)
_WIDTH_RANGE = (1.0, 5000.0)


def _format_spacing(spacing: Any) -> str:
    try:
        return " x ".join(f"{float(s):.3g}" for s in spacing)
    except TypeError:
        return str(spacing)


def _series_folder(root: Path, info: Any) -> str:
    """Folder of a series' first file, relative to the folder the user opened."""
    files = list(getattr(info, "files", None) or [])
    if not files:
        return ""
    parent = Path(files[0]).parent
    try:
        rel = parent.resolve().relative_to(Path(root).resolve())
    except ValueError:
        return parent.name
    return str(rel) if str(rel) != "." else "."


class LoadWidget(Dock):
    """Open images and labels; DICOM series chooser; CT window / MR contrast controls."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent, follow_new_images=True)
        self.worker: Any = None  # last background read (tests wait on it)
        self._series_folder: Path | None = None
        self._series: list[Any] = []

        layout = scrollable_layout(self)  # a standalone dock taller than the screen scrolls

        # --- open ---------------------------------------------------------------------
        open_box = QGroupBox("Open image")
        open_layout = QVBoxLayout(open_box)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("NIfTI, NRRD, DICOM file or folder, or a picture")
        self.path_edit.setToolTip("Path of the image to open; type or paste it, or use the buttons")
        self.path_edit.returnPressed.connect(self._on_open_clicked)
        open_layout.addWidget(self.path_edit)
        row = QHBoxLayout()
        self.file_button = button("File…", "Choose a NIfTI (.nii, .nii.gz) or DICOM file",
                                  self._choose_file)
        self.folder_button = button("DICOM folder…", "Choose a folder with DICOM series",
                                    self._choose_folder)
        self.open_button = button("Open", "Open the path above", self._on_open_clicked)
        for b in (self.file_button, self.folder_button, self.open_button):
            row.addWidget(b)
        open_layout.addLayout(row)
        self.labels_check = QCheckBox("Also open matching labels")
        self.labels_check.setToolTip(
            "Open the labels file that belongs to the image when one lies next to it:\n"
            "imagesTr/x.nii.gz -> labelsTr/x.nii.gz, or x_labels / x_seg .nii.gz"
        )
        self.labels_check.setChecked(get_setting("load/open_labels", True))
        self.labels_check.toggled.connect(lambda on: set_setting("load/open_labels", on))
        open_layout.addWidget(self.labels_check)
        self.status = QLabel("Tip: you can also drag files or DICOM folders onto the viewer.")
        self.status.setWordWrap(True)
        open_layout.addWidget(self.status)
        layout.addWidget(open_box)

        # --- DICOM series chooser -------------------------------------------------------
        self.series_box = QGroupBox("DICOM series in folder")
        series_layout = QVBoxLayout(self.series_box)
        series_layout.addWidget(hint("This folder holds several image series: pick one."))
        self.series_table = QTableWidget(0, len(SERIES_COLUMNS))
        self.series_table.setHorizontalHeaderLabels(SERIES_COLUMNS)
        self.series_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.series_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.series_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.series_table.verticalHeader().setVisible(False)
        header = self.series_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for c in range(1, len(SERIES_COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeToContents)
        self.series_table.setToolTip("Double-click a series to open it")
        self.series_table.cellDoubleClicked.connect(lambda *_: self._open_selected_series())
        self.series_table.setMaximumHeight(160)
        series_layout.addWidget(self.series_table)
        self.series_button = button("Open selected series", "Open the highlighted DICOM series",
                                    self._open_selected_series)
        series_layout.addWidget(self.series_button)
        self.series_box.setVisible(False)
        layout.addWidget(self.series_box)

        # --- display window ---------------------------------------------------------------
        window_box = QGroupBox("Display window")
        form = QFormLayout(window_box)
        self.image_combo = LayerCombo(self.viewer, image_layers, "(no image open)")
        self.image_combo.setToolTip("Image layer whose contrast the controls below change")
        self.image_combo.currentIndexChanged.connect(self._sync_window_from_layer)
        form.addRow("Image", self.image_combo)
        self.preset_combo = QComboBox()
        self.preset_combo.setToolTip("CT window presets (level / width in HU)")
        self._fill_presets()
        self.preset_combo.activated.connect(self._on_preset)
        form.addRow("CT preset", self.preset_combo)
        self.level_spin = double_spin(40.0, *_LEVEL_RANGE, "Window level (centre), in image "
                                      "units (HU for CT)", decimals=0, step=10)
        self.width_spin = double_spin(400.0, *_WIDTH_RANGE, "Window width, in image units "
                                      "(HU for CT)", decimals=0, step=10)
        self.level_slider = self._slider(_LEVEL_RANGE, "Drag to change the window level")
        self.width_slider = self._slider(_WIDTH_RANGE, "Drag to change the window width")
        form.addRow("Level", self._pair(self.level_slider, self.level_spin))
        form.addRow("Width", self._pair(self.width_slider, self.width_spin))
        self.level_spin.valueChanged.connect(self._on_window_spin)
        self.width_spin.valueChanged.connect(self._on_window_spin)
        self.level_slider.valueChanged.connect(lambda v: self.level_spin.setValue(v))
        self.width_slider.valueChanged.connect(lambda v: self.width_spin.setValue(v))
        self.auto_button = button("Auto contrast", "Robust contrast from the 0.5-99.5 % "
                                  "intensity percentiles (best for MR)", self._on_auto_contrast)
        form.addRow(self.auto_button)
        layout.addWidget(window_box)
        layout.addStretch(1)
        self._sync_window_from_layer()

    # ---------------------------------------------------------------- small builders
    @staticmethod
    def _slider(value_range: tuple[float, float], tooltip: str) -> QSlider:
        s = QSlider(Qt.Horizontal)
        s.setRange(int(value_range[0]), int(value_range[1]))
        s.setToolTip(tooltip)
        return s

    @staticmethod
    def _pair(slider: QSlider, spin: Any) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(slider, 1)
        row.addWidget(spin)
        return w

    def _fill_presets(self) -> None:
        from napari_medseg.io.windowing import CT_WINDOW_PRESETS

        self.preset_combo.addItem("(custom)", None)
        for name, (level, width) in CT_WINDOW_PRESETS.items():
            self.preset_combo.addItem(f"{name} (L {level:g} / W {width:g})", name)

    # ---------------------------------------------------------------- opening
    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open medical image", last_folder("open"),
                                              FILE_FILTER)
        if path:
            self.path_edit.setText(path)
            self.open_path(path)

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder", last_folder("open"))
        if path:
            self.path_edit.setText(path)
            self.open_path(path)

    @catch_errors("Open")
    def _on_open_clicked(self) -> None:
        text = self.path_edit.text().strip()
        if not text:
            raise ValueError("type a file or folder path, or use File… / DICOM folder…")
        self.open_path(text)

    def open_path(self, path: str | Path) -> Any:
        """Open a file or DICOM folder in the background; returns the worker."""
        from napari_medseg.io import MultipleSeriesError, read_volume

        p = Path(path).expanduser()
        self.series_box.setVisible(False)
        self.status.setText(f"Reading {p.name} …")
        remember_folder(p, "open")

        def errored(exc: BaseException) -> bool:
            self.status.setText("")
            if isinstance(exc, MultipleSeriesError):
                self._show_series(p, exc.series)
                return True
            return False

        self.worker = run_in_worker(read_volume, p, on_returned=lambda v: self._add_image(v, p),
                                    action=f"Open {p.name}", on_errored=errored,
                                    progress=f"Reading {p.name}")
        return self.worker

    def _show_series(self, folder: Path, series: list[Any]) -> None:
        images = [s for s in series if getattr(s, "is_image", True)]
        self._series_folder = folder
        self._series = images
        self.series_table.setRowCount(len(images))
        for row, info in enumerate(images):
            number = getattr(info, "series_number", None)
            description = getattr(info, "description", "") or "(no description)"
            if number is not None:
                description = f"{description} (#{number})"
            cells = (
                description,
                getattr(info, "patient_id", "") or "–",
                _series_folder(folder, info),
                getattr(info, "modality", ""),
                str(getattr(info, "n_slices", "")),
                _format_spacing(getattr(info, "spacing", "")),
            )
            for col, text in enumerate(cells):
                item = QTableWidgetItem(str(text))
                item.setToolTip(f"Series UID {getattr(info, 'series_uid', '')}")
                self.series_table.setItem(row, col, item)
        if images:
            self.series_table.selectRow(0)
        self.series_box.setVisible(True)
        self.status.setText(f"{len(images)} image series found in {folder.name}: choose one below.")

    def _open_selected_series(self) -> Any:
        from napari_medseg.io import read_volume

        rows = self.series_table.selectionModel().selectedRows()
        if not rows or self._series_folder is None:
            show_error_message(ValueError("select a series in the table first"), "Open series")
            return None
        info = self._series[rows[0].row()]
        folder = self._series_folder
        self.status.setText(f"Reading series {getattr(info, 'description', '')} …")
        uid = getattr(info, "key", None) or info.series_uid
        self.worker = run_in_worker(read_volume, folder, series_uid=uid,
                                    on_returned=lambda v: self._add_image(v, None),
                                    action="Open series", progress="Reading DICOM series")
        return self.worker

    def _add_image(self, volume: Any, path: Path | None) -> None:
        from napari_medseg._reader import find_matching_labels, read_path, volume_to_layer_data

        # the same decision as File > Open: a label map opens as a Labels layer
        data, kwargs, layer_type = volume_to_layer_data(volume, path)
        layer = getattr(self.viewer, f"add_{layer_type}")(data, **kwargs)
        kind = "labels" if layer_type == "labels" else volume.modality
        self.status.setText(
            f"Opened {volume.name}: {' x '.join(map(str, volume.shape))} {cells(volume.ndim)}, "
            f"spacing {_format_spacing(volume.spacing)} mm, {kind}"
        )
        if layer_type == "labels":
            for warning in volume.metadata.get("warnings", []) or []:
                from napari.utils.notifications import show_warning

                show_warning(str(warning))
            self.viewer.layers.selection.active = layer
            return
        for warning in volume.metadata.get("warnings", []) or []:
            from napari.utils.notifications import show_warning

            show_warning(str(warning))
        if path is not None and path.is_file() and self.labels_check.isChecked():
            labels_path = find_matching_labels(path)
            if labels_path is not None:
                for data, kwargs, layer_type in read_path(labels_path):
                    if layer_type == "labels" and data.shape == volume.shape:
                        self.viewer.add_labels(data, **kwargs)
                        self.status.setText(self.status.text() + f"; labels {labels_path.name}")
        self.image_combo.set_layer(layer)
        self.viewer.layers.selection.active = layer
        self._sync_window_from_layer()

    # ---------------------------------------------------------------- window / contrast
    def _sync_window_from_layer(self, *_: Any) -> None:
        from napari_medseg.io.windowing import contrast_limits_to_window

        layer = self.image_combo.layer()
        enabled = layer is not None
        for w in (self.level_spin, self.width_spin, self.level_slider, self.width_slider,
                  self.auto_button, self.preset_combo):
            w.setEnabled(enabled)
        if layer is None:
            return
        is_ct = volume_modality(layer) == "CT"
        self.preset_combo.setEnabled(is_ct)
        self.preset_combo.setToolTip("CT window presets (level / width in HU)" if is_ct else
                                     "Presets are for CT images (Hounsfield units)")
        level, width = contrast_limits_to_window(*layer.contrast_limits)
        self._set_window_controls(level, max(width, _WIDTH_RANGE[0]))
        self._show_matching_preset(level, width if is_ct else None)

    def _show_matching_preset(self, level: float, width: float | None) -> None:
        """Show the CT preset whose window the layer has (the soft-tissue window a CT opens
        with), else "(custom)"."""
        from napari_medseg.io.windowing import CT_WINDOW_PRESETS

        name = None if width is None else next(
            (n for n, (lv, wd) in CT_WINDOW_PRESETS.items()
             if abs(lv - level) < 0.5 and abs(wd - width) < 0.5), None)
        self.preset_combo.setCurrentIndex(max(self.preset_combo.findData(name), 0)
                                          if name else 0)

    def _set_window_controls(self, level: float, width: float) -> None:
        for w in (self.level_spin, self.width_spin, self.level_slider, self.width_slider):
            w.blockSignals(True)
        self.level_spin.setValue(level)
        self.width_spin.setValue(width)
        self.level_slider.setValue(int(round(level)))
        self.width_slider.setValue(int(round(width)))
        for w in (self.level_spin, self.width_spin, self.level_slider, self.width_slider):
            w.blockSignals(False)

    @catch_errors("Set window")
    def _on_window_spin(self) -> None:
        from napari_medseg.io.windowing import window_to_contrast_limits

        layer = self.image_combo.layer()
        if layer is None:
            return
        level, width = self.level_spin.value(), self.width_spin.value()
        self._set_window_controls(level, width)
        self._apply_limits(layer, window_to_contrast_limits(level, width))
        self.preset_combo.setCurrentIndex(0)

    @catch_errors("Window preset")
    def _on_preset(self) -> None:
        name = self.preset_combo.currentData()
        if name:
            self.apply_preset(name)

    def apply_preset(self, name: str) -> None:
        """Apply the CT window preset ``name`` to the chosen image layer."""
        from napari_medseg.io.windowing import CT_WINDOW_PRESETS, window_to_contrast_limits

        layer = self.image_combo.require("image")
        level, width = CT_WINDOW_PRESETS[name]
        self._apply_limits(layer, window_to_contrast_limits(level, width))
        self._set_window_controls(level, width)
        index = self.preset_combo.findData(name)
        self.preset_combo.setCurrentIndex(max(index, 0))

    @catch_errors("Auto contrast")
    def _on_auto_contrast(self) -> None:
        from napari_medseg.io.windowing import auto_contrast_limits

        layer = self.image_combo.require("image")
        self._apply_limits(layer, auto_contrast_limits(volume_from_layer(layer).array))
        self._sync_window_from_layer()
        self.preset_combo.setCurrentIndex(0)

    @staticmethod
    def _apply_limits(layer: Any, limits: tuple[float, float]) -> None:
        lo, hi = float(limits[0]), float(limits[1])
        rng = list(layer.contrast_limits_range)
        if lo < rng[0] or hi > rng[1]:
            layer.contrast_limits_range = [min(lo, rng[0]), max(hi, rng[1])]
        layer.contrast_limits = [lo, hi]


def volume_modality(layer: Any) -> str:
    """Modality stored with a layer (``"unknown"`` when it was not opened by this plugin)."""
    return str(medseg_metadata(layer).get("modality", "unknown"))
