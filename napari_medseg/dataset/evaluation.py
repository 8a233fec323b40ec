"""Scoring a folder of predictions against a folder of ground truth files.

The metrics themselves (:mod:`napari_medseg.metrics`) work on arrays and know nothing of files;
this module pairs files by name, reads them with the dataset readers (label names and 0/255
picture masks from ``dataset.json``, field-of-view masks from ``masksTr``) and hands the
arrays to :func:`napari_medseg.metrics.evaluate_case`. It is what ``napari-medseg evaluate``
runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.dataset.msd import label_names_from_json, read_label_image, read_roi_mask
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.picture import PICTURE_SUFFIXES
from napari_medseg.metrics import evaluate_case, summarise, write_csv


def _label_files(folder: Path) -> dict[str, Path]:
    out = {}
    for p in sorted(folder.iterdir()):
        for suffix in LABEL_FILE_SUFFIXES:
            if p.name.lower().endswith(suffix) and not p.name.startswith("."):
                out[p.name[: -len(suffix)]] = p
                break
    return out


#: Label files :func:`evaluate_folders` pairs by name (NIfTI, NRRD, MetaImage, pictures).
LABEL_FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha",
                       *(s for s in PICTURE_SUFFIXES if s not in (".jpg", ".jpeg")))


def _binary_mask(volume: Any) -> Any:
    """A mask picture holding 0 and 255 only, as the 0/1 label map it means."""
    if not (volume.metadata or {}).get("picture"):
        return volume
    values = np.unique(volume.array)
    if 255 in values and set(values.tolist()) <= {0, 255}:
        return volume.with_array((np.asarray(volume.array) == 255).astype(np.uint8))
    return volume


def _check_named(case: str, what: str, array: np.ndarray, labels: dict[int, str]) -> None:
    """Refuse label values the label table does not name: they would be left out silently."""
    values = [int(v) for v in np.unique(np.rint(np.asarray(array)))]
    unknown = [v for v in values if v not in labels and v not in (0, IGNORE_LABEL)]
    if unknown:
        shown = ", ".join(map(str, unknown[:8])) + (", ..." if len(unknown) > 8 else "")
        raise ValueError(f"{case}: the {what} holds label value(s) {{{shown}}}, which the label "
                         f"table ({', '.join(f'{v} {n}' for v, n in sorted(labels.items()))}) "
                         "does not name.")


def evaluate_folders(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    labels: dict[int, str] | None = None,
    csv_path: str | os.PathLike | None = None,
    surface: bool = True,
    roi_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Score every prediction in ``pred_dir`` against the same-named file in ``gt_dir``.

    Label names come from ``labels`` or, if ``gt_dir`` sits in an MSD dataset, from its
    ``dataset.json`` (picture masks stored as 0/255 then read as class 1). Geometry (shape and
    spacing) is taken from the ground truth files; files that state the patient orientation
    are compared where their voxels lie in the patient (:meth:`Volume.on_grid_of`). Regions of
    interest (field-of-view masks) come from ``roi_dir``, by default the dataset's ``masksTr``
    folder beside ``gt_dir`` when there is one: only pixels inside count.

    Returns
    -------
    dict
        ``{"cases": {case: evaluate_case(...)}, "summary": summarise(...),
        "missing_predictions": [...], "distance_unit": "mm" | "px"}``. Pictures whose files
        give no pixel size are scored in pixels (areas ``area_*_px``, distances
        ``hd95_px``/``assd_px``; no mm, mm² or mL); the summary's ``hd95_*``/``assd_*`` are
        then in pixels too (``distance_unit``). The summary's means leave out undefined
        values (an ``inf`` distance, the sensitivity of an empty ground truth) and count them
        (``hd95_n_undefined`` ..., :func:`~napari_medseg.metrics.summarise`); the per-case
        values keep them. The CSV has a column per metric computed.

    Raises
    ------
    ValueError
        Missing folders, no matching files, a ground truth without prediction, or grids that
        differ.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for folder in (pred_dir, gt_dir):
        if not folder.is_dir():
            raise ValueError(f"{folder} is a file; give two folders (predictions, ground truth)"
                             if folder.is_file() else f"Folder not found: {folder}")
    preds, gts = _label_files(pred_dir), _label_files(gt_dir)
    if not preds:
        raise ValueError(f"No NIfTI predictions (nor NRRD, PNG or TIFF label files) in {pred_dir}.")
    common = sorted(set(preds) & set(gts))
    if not common:
        raise ValueError(f"No file in {pred_dir} has a same-named ground truth in {gt_dir}.")
    if labels is None:
        meta = gt_dir.parent / "dataset.json"
        if meta.is_file():
            try:
                labels = label_names_from_json(json.loads(meta.read_text()))
            except (ValueError, KeyError):
                labels = None
    rois = {}
    roi_folder = Path(roi_dir) if roi_dir is not None else gt_dir.parent / "masksTr"
    if roi_folder.is_dir():
        rois = _label_files(roi_folder)
    per_case: dict[str, dict[str, dict[str, float]]] = {}
    spacing_known = True
    for case in common:
        pred = read_label_image(preds[case], labels, case)
        gt = read_label_image(gts[case], labels, case)
        if labels is None:
            # without a label table a mask picture holding 0 and 255 is one class, as a
            # prediction writes it (0 / 1)
            pred, gt = (_binary_mask(v) for v in (pred, gt))
        else:
            for what, volume in (("prediction", pred), ("ground truth", gt)):
                _check_named(case, what, volume.array, labels)
        if pred.has_orientation and gt.has_orientation:
            # files that place their voxels in the patient: compared where the voxels lie (a
            # ground truth saved by another tool may store the rows the other way)
            pred_arr = pred.on_grid_of(gt, f"{case}: the prediction", "the ground truth")
        elif pred.shape != gt.shape:
            raise ValueError(f"{case}: prediction shape {pred.shape} differs from ground truth {gt.shape}.")
        else:
            pred_arr = pred.array
        roi = read_roi_mask(rois[case], case) if case in rois else None
        known = bool((gt.metadata or {}).get("spacing_known", True))
        spacing_known &= known
        gt_arr = np.rint(gt.array).astype(np.int32)
        per_case[case] = evaluate_case(np.rint(pred_arr).astype(np.int32), gt_arr, gt.spacing,
                                       labels, surface, roi=roi, spacing_known=known)
    summary = summarise(per_case)
    if not spacing_known:
        # the summary's hd95 / assd are in ``distance_unit``: pixels, for every picture
        for entry in summary.values():
            for key in ("hd95", "assd"):
                for stat in ("mean", "std", "n_undefined"):
                    if f"{key}_px_{stat}" in entry:
                        entry[f"{key}_{stat}"] = entry[f"{key}_px_{stat}"]
    result = {"cases": per_case, "summary": summary,
              "missing_predictions": sorted(set(gts) - set(preds)),
              # pictures without a stated pixel size: distances are in pixels
              "distance_unit": "mm" if spacing_known else "px"}
    if csv_path is not None:
        write_csv(per_case, csv_path)
    return result
