"""Evaluate dock: compare a prediction with ground truth (metrics table, CSV, error overlay)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_medseg.ui._controls import (
    BACKGROUND_VOXELS,
    Dock,
    LayerCombo,
    belongs_to,
    button,
    hint,
    image_for,
    run_in_worker,
    same_layer,
    scrollable_layout,
)
from napari_medseg.ui._layers import (
    add_labels_for_image,
    cells,
    image_layers,
    labels_layers,
    labels_on_grid_of,
    layer_classes,
    spacing_known,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors, clear_error_on_change
from napari_medseg.ui._settings import get_setting, last_folder, remember_folder, set_setting

COMPUTE_TIP = "Score the prediction against the ground truth, per class"
DIFF_TIP = ("Add a Labels layer with false positives (red), false negatives (blue), wrong class "
            "(yellow)")
#: (result key, column title, format) of the metrics table.
METRIC_COLUMNS = (
    ("dice", "Dice", "{:.3f}"),
    ("jaccard", "Jaccard", "{:.3f}"),
    ("sensitivity", "Sensitivity", "{:.3f}"),
    ("specificity", "Specificity", "{:.4f}"),
    ("precision", "Precision", "{:.3f}"),
    ("hd95", "HD95 (mm)", "{:.2f}"),
    ("assd", "ASSD (mm)", "{:.2f}"),
    ("volume_pred_ml", "Vol. pred (mL)", "{:.3f}"),
    ("volume_gt_ml", "Vol. truth (mL)", "{:.3f}"),
)

#: Rows of the table for a 2D picture: distances and areas in pixels, and in mm / mm² when
#: the pixel size is known (:func:`planar_columns`).
_OVERLAP_COLUMNS = METRIC_COLUMNS[:5]


def planar_columns(spacing_known: bool) -> tuple[tuple[str, str, str], ...]:
    """Table rows for 2D label maps: overlap, then distances and areas (px, and mm when known)."""
    rows = list(_OVERLAP_COLUMNS)
    rows += [("hd95_px", "HD95 (px)", "{:.2f}"), ("assd_px", "ASSD (px)", "{:.2f}")]
    if spacing_known:
        rows += [("hd95", "HD95 (mm)", "{:.2f}"), ("assd", "ASSD (mm)", "{:.2f}")]
    rows += [("area_pred_px", "Area pred (px)", "{:.0f}"),
             ("area_gt_px", "Area truth (px)", "{:.0f}")]
    if spacing_known:
        rows += [("area_pred_mm2", "Area pred (mm²)", "{:.1f}"),
                 ("area_gt_mm2", "Area truth (mm²)", "{:.1f}")]
    return tuple(rows)


def _columns_for(layer: Any) -> tuple[tuple[str, str, str], ...]:
    """Table rows for a Labels layer: 2D pictures in px (and mm when the pixel size is
    known), volumes in mm and mL."""
    if layer is None or np.ndim(layer.data) != 2:
        return METRIC_COLUMNS
    return planar_columns(spacing_known(layer))


#: Difference overlay classes: value -> name and colour.
DIFFERENCE_CLASSES = {
    1: {"name": "false positive (predicted, not in truth)", "color": "#ff3b30"},
    2: {"name": "false negative (in truth, missed)", "color": "#1e90ff"},
    3: {"name": "wrong class", "color": "#ffcc00"},
}


def difference_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Voxel-wise error map: 1 = false positive, 2 = false negative, 3 = wrong class, 0 = agree.

    Parameters
    ----------
    pred, gt : np.ndarray
        Integer label maps of the same shape.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    out = np.zeros(pred.shape, dtype=np.uint8)
    out[(pred > 0) & (gt == 0)] = 1
    out[(gt > 0) & (pred == 0)] = 2
    out[(pred > 0) & (gt > 0) & (pred != gt)] = 3
    return out


#: Tooltip of a distance that cannot be measured (the class is in only one of the two maps).
INF_TIP = ("∞: one of the two masks is empty (the class is only in the prediction or only in "
           "the ground truth): there is no surface to measure to")
#: Tooltip of a sensitivity whose ground truth lacks the class.
NO_TRUTH_TIP = ("n/a: the ground truth has no voxel of this class, so sensitivity (found / "
                "to find) is undefined; the CSV keeps 0 when something was predicted, 1 when "
                "nothing was")


def _cell(key: str, row: dict[str, Any], pattern: str) -> tuple[str, str]:
    """Text and tooltip of metric ``key`` of one class (``evaluate_case`` row)."""
    from napari_medseg.metrics import is_defined

    value = row.get(key, "")
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value), ""
    if np.isinf(v):
        return "∞", INF_TIP
    if np.isnan(v):
        return "n/a", ""
    if not is_defined(key, row):
        return "n/a", NO_TRUTH_TIP
    return pattern.format(v), ""


class EvaluateWidget(Dock):
    """Metrics of a prediction against ground truth, CSV export and a difference overlay."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, parent)
        self.results: dict[str, dict[str, float]] = {}
        self.columns: tuple[tuple[str, str, str], ...] = METRIC_COLUMNS
        self.worker: Any = None
        layout = scrollable_layout(self)  # a standalone dock taller than the screen scrolls

        box = QGroupBox("Compare")
        form = QFormLayout(box)
        self.pred_combo = LayerCombo(self.viewer, labels_layers, "(no labels layer)",
                                     follow_new=True)
        self.pred_combo.setToolTip("Labels layer to score (e.g. a model prediction)")
        form.addRow("Prediction", self.pred_combo)
        self.gt_combo = LayerCombo(self.viewer, labels_layers, "(no labels layer)",
                                   default="oldest", follow_active=False)
        self.pred_combo.currentIndexChanged.connect(self._match_ground_truth)
        self.gt_combo.setToolTip("Reference labels (manual ground truth)")
        form.addRow("Ground truth", self.gt_combo)
        self.surface_check = QCheckBox("Surface distances (HD95, ASSD)")
        self.surface_check.setToolTip("Hausdorff 95 % and average surface distance in mm; "
                                      "slower on large volumes")
        self.surface_check.setChecked(get_setting("evaluate/surface", True))
        self.surface_check.toggled.connect(lambda on: set_setting("evaluate/surface", on))
        form.addRow(self.surface_check)
        row = QHBoxLayout()
        self.compute_button = button("Compute metrics", COMPUTE_TIP, self._on_compute)
        self.diff_button = button("Difference overlay", DIFF_TIP, self._on_difference)
        row.addWidget(self.compute_button)
        row.addWidget(self.diff_button)
        form.addRow(row)
        layout.addWidget(box)

        # one row per metric, one column per class: fits a narrow dock without scrolling
        self.table = QTableWidget(len(METRIC_COLUMNS), 0)
        self.table.setVerticalHeaderLabels([c[1] for c in METRIC_COLUMNS])
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setToolTip("Metrics per class (columns); ∞ = a distance to an empty mask "
                              "(the class is in only one layer), n/a = sensitivity of a class "
                              "the ground truth lacks. HD95/ASSD in mm, volumes in mL")
        self._fit_table_height()
        layout.addWidget(self.table)
        self.export_button = button("Export CSV…", "Save the table as a CSV file",
                                    self._on_export)
        layout.addWidget(self.export_button)
        self.status = hint("Pick two Labels layers on the same grid.")
        layout.addWidget(self.status)
        clear_error_on_change(self.status, self.pred_combo, self.gt_combo)
        self._computing = False
        for combo in (self.pred_combo, self.gt_combo):
            combo.currentIndexChanged.connect(self._update_buttons)
        self._update_buttons()
        layout.addStretch(1)

    def _update_buttons(self, *_: Any) -> None:
        """Compute and Difference need two different Labels layers (the tooltip says so)."""
        pred, gt = self.pred_combo.layer(), self.gt_combo.layer()
        if self.table.columnCount() == 0:  # nothing computed yet: rows in the layers' units
            rows = _columns_for(gt if gt is not None else pred)
            if rows != self.columns:
                self.columns = rows
                self.table.setRowCount(len(rows))
                self.table.setVerticalHeaderLabels([c[1] for c in rows])
                self._fit_table_height()
        ready = pred is not None and gt is not None and not same_layer(pred, gt)
        why = "" if ready else " (choose a prediction and a different ground-truth layer)"
        self.compute_button.setEnabled(ready and not self._computing)
        self.diff_button.setEnabled(ready)
        self.compute_button.setToolTip(COMPUTE_TIP + why)
        self.diff_button.setToolTip(DIFF_TIP + why)

    # ------------------------------------------------------------------ metrics
    def _match_ground_truth(self, *_: Any) -> None:
        """Keep the ground truth on the prediction's image and distinct from it.

        When the prediction changes to a layer of another image (or to the ground-truth layer
        itself), the oldest other Labels layer of that image becomes the ground truth; a
        dock never compares layers of two different images silently.
        """
        pred, gt = self.pred_combo.layer(), self.gt_combo.layer()
        if pred is None:
            return
        if gt is not None and not same_layer(gt, pred) and tuple(gt.data.shape) == tuple(
                pred.data.shape) and self._related(gt, pred):
            return
        candidates = [ly for ly in self.gt_combo.layers() if not same_layer(ly, pred)
                      and tuple(ly.data.shape) == tuple(pred.data.shape)
                      and self._related(ly, pred)]
        if candidates:
            self.gt_combo.set_layer(candidates[0])

    def _images_of(self, a: Any, b: Any) -> tuple[Any, Any]:
        images = image_layers(self.viewer)
        return image_for(a, images), image_for(b, images)

    def _related(self, a: Any, b: Any) -> bool:
        """Whether two Labels layers are of the same image: the images they were drawn on (or
        whose names they carry) when both are known, else their grids (and names)."""
        image_a, image_b = self._images_of(a, b)
        if image_a is not None and image_b is not None:
            return same_layer(image_a, image_b)
        return belongs_to(a, b) or belongs_to(b, a)

    def _other_images_warning(self, pred: Any, gt: Any) -> str:
        """A warning when the two layers chosen belong to two different images (else "")."""
        image_a, image_b = self._images_of(pred, gt)
        if image_a is None or image_b is None or same_layer(image_a, image_b):
            return ""
        return (f"'{pred.name}' is of {image_a.name} and '{gt.name}' of {image_b.name}: "
                "two different images")

    def _pair(self) -> tuple[Any, Any, np.ndarray, np.ndarray]:
        """The prediction and ground-truth layers, and both label maps in the ground truth's
        voxel order (a label map saved by another tool for the same scan may store its rows
        the other way: the voxels are compared where they lie in the patient)."""
        pred = self.pred_combo.require("prediction layer")
        gt = self.gt_combo.require("ground-truth layer")
        if same_layer(pred, gt):
            raise ValueError("prediction and ground truth are the same layer: choose two layers")
        return pred, gt, labels_on_grid_of(pred, gt), np.asarray(gt.data)

    @catch_errors("Compute metrics")
    def _on_compute(self) -> Any:
        from napari_medseg.metrics import evaluate_case

        pred, gt, pred_array, gt_array = self._pair()
        volume = volume_from_layer(gt)
        classes = layer_classes(gt) or layer_classes(pred)
        surface = self.surface_check.isChecked()
        known = spacing_known(gt)

        def job() -> dict[str, dict[str, float]]:
            # in the worker: the labels present (a full pass over both maps) and the metrics
            present = np.union1d(np.unique(pred_array), np.unique(gt_array))
            names = {int(v): classes.get(int(v), {}).get("name", f"label {int(v)}")
                     for v in present if v != 0}
            return evaluate_case(pred_array, gt_array, volume.spacing, labels=names or None,
                                 surface=surface, spacing_known=known)

        self.status.setText("Computing …")
        self._computing = True
        self._update_buttons()
        columns = _columns_for(gt)

        other = self._other_images_warning(pred, gt)
        if other:
            from napari.utils.notifications import show_warning

            show_warning(f"Compute metrics: {other}.")

        def done(results: dict[str, dict[str, float]]) -> None:
            self.show_results(results, columns)
            self.status.setText((f"⚠ {other}. " if other else "")
                                + f"'{pred.name}' vs '{gt.name}': {len(results)} classes.")

        def finished() -> None:
            self._computing = False
            self._update_buttons()

        self.worker = run_in_worker(job, on_returned=done, action="Compute metrics",
                                    on_finished=finished, progress="Computing metrics")
        return self.worker

    def show_results(self, results: dict[str, dict[str, float]],
                     columns: tuple[tuple[str, str, str], ...] | None = None) -> None:
        """Fill the table with ``evaluate_case`` output (rows: ``columns``' metrics)."""
        self.results = dict(results)
        self.columns = tuple(columns or METRIC_COLUMNS)
        self.table.setRowCount(len(self.columns))
        self.table.setVerticalHeaderLabels([c[1] for c in self.columns])
        self.table.setColumnCount(len(results))
        self.table.setHorizontalHeaderLabels(list(results))
        # a few classes share the dock's width; many (a whole-body CT) keep readable columns
        # and scroll sideways
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.Stretch if len(results) <= 4 else QHeaderView.ResizeToContents)
        for c, (name, row) in enumerate(results.items()):
            self.table.horizontalHeaderItem(c).setToolTip(f"{name}: label value "
                                                          f"{row.get('label', '')}")
            for r, (key, _title, pattern) in enumerate(self.columns):
                text, tip = _cell(key, row, pattern)
                item = QTableWidgetItem(text)
                if tip:
                    item.setToolTip(tip)
                self.table.setItem(r, c, item)
        self._fit_table_height()

    def _fit_table_height(self) -> None:
        """Show every metric row without a vertical scroll bar."""
        self.table.resizeRowsToContents()
        rows = sum(max(self.table.rowHeight(r), self.table.verticalHeader().sectionSizeHint(r))
                   for r in range(self.table.rowCount()))
        header = max(self.table.horizontalHeader().sizeHint().height(),
                     self.table.fontMetrics().height() + 8)
        scroll = self.table.horizontalScrollBar().sizeHint().height()
        self.table.setFixedHeight(rows + header + scroll + 2 * self.table.frameWidth() + 4)

    def metric(self, class_name: str, key: str) -> str:
        """Text shown for metric ``key`` (e.g. ``"dice"``) of ``class_name``."""
        names = [self.table.horizontalHeaderItem(c).text() for c in range(self.table.columnCount())]
        keys = [k for k, _t, _p in self.columns]
        return self.table.item(keys.index(key), names.index(class_name)).text()

    def export_csv(self, path: str | Path) -> Path:
        """Write the shown metrics to ``path`` (one row per class)."""
        from napari_medseg.metrics import write_csv

        if not self.results:
            raise ValueError("compute the metrics first")
        pred = self.pred_combo.layer()
        case = pred.name if pred is not None else "case"
        out = write_csv({case: self.results}, path)
        remember_folder(out, "csv")
        self.status.setText(f"Saved {Path(out).name}")
        return Path(out)

    @catch_errors("Export CSV")
    def _on_export(self) -> None:
        if not self.results:
            raise ValueError("compute the metrics first")
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics",
                                              str(Path(last_folder("csv")) / "metrics.csv"),
                                              "CSV (*.csv)")
        if path:
            self.export_csv(path)

    # ------------------------------------------------------------------ overlay
    @catch_errors("Difference overlay")
    def _on_difference(self) -> Any:
        """Add the error map: at once for a small image (returns the layer), in a worker for
        a large one (returns the worker; a full-size CT takes about half a second)."""
        pred, gt, pred_array, gt_array = self._pair()

        def compute() -> tuple[np.ndarray, tuple[int, ...]]:
            diff = difference_map(pred_array, gt_array)
            return diff, tuple(int(n) for n in np.bincount(diff.ravel(), minlength=4)[1:4])

        def show(result: tuple[np.ndarray, tuple[int, ...]]) -> Any:
            diff, (n_fp, n_fn, n_wrong) = result
            layer = add_labels_for_image(self.viewer, gt, data=diff,
                                         name=f"errors of {pred.name}",
                                         classes=DIFFERENCE_CLASSES, role="difference")
            layer.opacity = 0.8
            self.status.setText(f"False positives: {n_fp} {cells(gt)} (red); false negatives: "
                                f"{n_fn} (blue); wrong class: {n_wrong} (yellow).")
            return layer

        if gt_array.size <= BACKGROUND_VOXELS:
            return show(compute())
        self.status.setText("Computing the difference …")
        return run_in_worker(compute, on_returned=show, action="Difference overlay",
                             progress="Difference overlay")
