"""Segmentation metrics per class and per case, spacing-aware (mm, mL).

Empty-mask rule (no NaN in per-case values)
-------------------------------------------
For a class absent from **both** prediction and ground truth every overlap score is 1.0 and both
surface distances are 0.0 mm (nothing to find, nothing found). When the class is present in
**only one** of them: Dice, Jaccard = 0.0; Hausdorff 95 and average surface distance = ``inf``
(there is no surface to measure to). Ratios with a zero denominator follow the same idea:
sensitivity = 1.0 if the ground truth is empty and the prediction is empty too, else 0.0;
precision = 1.0 if both are empty, else 0.0; specificity = 1.0 when there are no true-negative
candidates and no false positives. These per-case values are what the CSV and JSON hold.

Summaries over cases (:func:`summarise`) leave out the values that are not defined: an ``inf``
distance (the class is in only one of the two masks: a normal picture with a false-positive
prediction, or a class missed completely) and the sensitivity of a case whose ground truth is
empty (no positives to find). Each such metric gets ``<metric>_n_undefined``, the cases left
out of its mean and standard deviation (:func:`undefined_cases` names them); a mean with no
defined case at all is ``inf`` for a distance and NaN for sensitivity.

Surface distances use the boundary voxels (mask minus its erosion) and a Euclidean distance
transform with the voxel spacing (``scipy.ndimage.distance_transform_edt(sampling=spacing)``);
Hausdorff 95 = max of the two directed 95th percentiles (as MONAI's ``compute_hausdorff_distance``),
average surface distance = mean over both directed distance sets (symmetric).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

METRIC_NAMES = ("dice", "jaccard", "sensitivity", "specificity", "precision", "hd95", "assd",
                "volume_pred_ml", "volume_gt_ml")


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    return pred, gt


def _counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int, int]:
    pred, gt = _pair(pred, gt)
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(gt)) - tp
    tn = pred.size - tp - fp - fn
    return tp, fp, fn, tn


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A|+|B|) of two binary masks; 1.0 when both are empty."""
    tp, fp, fn, _ = _counts(pred, gt)
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2.0 * tp / denom


def annotated_dice(pred: np.ndarray, ref: np.ndarray, classes: Sequence[int]
                   ) -> dict[int, float] | None:
    """Dice of each class in ``classes`` on the annotated voxels of one case (reference voxels
    equal to IGNORE_LABEL are left out); None when nothing is annotated (no evidence)."""
    from napari_medseg.events import IGNORE_LABEL

    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    valid = ref != IGNORE_LABEL
    if not valid.any():
        return None
    pred, ref = pred[valid], ref[valid]
    return {int(v): dice(pred == v, ref == v) for v in classes}


def mean_dice_metrics(per_case: Sequence[dict[int, float] | None],
                      label_names: dict[int, str] | Any) -> dict[str, float]:
    """``{"dice/<name>": mean over cases, "dice_mean": mean over classes}`` from
    :func:`annotated_dice` results (cases without annotation left out; 0.0 without any)."""
    classes = {int(v): str(n) for v, n in label_names.items() if int(v) != 0}
    scored = [c for c in per_case if c is not None]
    out = {f"dice/{name}": float(np.mean([c[v] for c in scored])) if scored else 0.0
           for v, name in classes.items()}
    out["dice_mean"] = float(np.mean([out[f"dice/{n}"] for n in classes.values()])) \
        if classes else 0.0
    return out


def dice_metrics(predictions: Sequence[np.ndarray], references: Sequence[np.ndarray],
                 label_names: dict[int, str] | Any) -> dict[str, float]:
    """Mean Dice per foreground class over cases, on annotated voxels only: the one Dice
    aggregation of training's validation and the correct-and-retrain cycle.

    Parameters
    ----------
    predictions, references : sequence of np.ndarray
        Integer labels per case (same shapes pairwise); reference voxels equal to IGNORE_LABEL
        are left out, and a case with nothing annotated is not scored.
    label_names : mapping
        ``{value: name}``; background (0) is not scored.

    Returns
    -------
    dict
        ``{"dice_mean": ..., "dice/<name>": ...}`` (means over cases; 1.0 for a class absent
        from both prediction and reference, as in :func:`dice`); ``{}`` without cases.
    """
    if not predictions:
        return {}
    classes = [int(v) for v in label_names if int(v) != 0]
    return mean_dice_metrics([annotated_dice(p, r, classes)
                              for p, r in zip(predictions, references, strict=True)],
                             label_names)


def jaccard(pred: np.ndarray, gt: np.ndarray) -> float:
    """Jaccard index |A∩B| / |A∪B|; 1.0 when both masks are empty."""
    tp, fp, fn, _ = _counts(pred, gt)
    denom = tp + fp + fn
    return 1.0 if denom == 0 else tp / denom


def sensitivity(pred: np.ndarray, gt: np.ndarray) -> float:
    """True-positive rate TP / (TP+FN); empty ground truth: 1.0 if the prediction is empty too."""
    tp, fp, fn, _ = _counts(pred, gt)
    if tp + fn == 0:
        return 1.0 if fp == 0 else 0.0
    return tp / (tp + fn)


def specificity(pred: np.ndarray, gt: np.ndarray) -> float:
    """True-negative rate TN / (TN+FP); 1.0 when there are no negatives at all."""
    _, fp, _, tn = _counts(pred, gt)
    return 1.0 if tn + fp == 0 else tn / (tn + fp)


def precision(pred: np.ndarray, gt: np.ndarray) -> float:
    """Positive predictive value TP / (TP+FP); empty prediction: 1.0 if the truth is empty too."""
    tp, fp, fn, _ = _counts(pred, gt)
    if tp + fp == 0:
        return 1.0 if fn == 0 else 0.0
    return tp / (tp + fp)


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a binary mask in millilitres (spacing in mm; 1 mL = 1000 mm³)."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


def _surface_distances(
    pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Directed distances (mm) pred-surface -> gt-surface and back; None if a mask is empty."""
    pred, gt = _pair(pred, gt)
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match a {pred.ndim}D mask")
    if not pred.any() or not gt.any():
        return None
    # crop to the union's bounding box (+1 voxel): exact, and fast for small structures
    union = pred | gt
    slices = ndimage.find_objects(union.astype(np.uint8))[0]
    slices = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n))
                   for s, n in zip(slices, pred.shape, strict=True))
    pred, gt = np.pad(pred[slices], 1), np.pad(gt[slices], 1)
    pred_border = pred & ~ndimage.binary_erosion(pred)
    gt_border = gt & ~ndimage.binary_erosion(gt)
    dist_to_gt = ndimage.distance_transform_edt(~gt_border, sampling=spacing)
    dist_to_pred = ndimage.distance_transform_edt(~pred_border, sampling=spacing)
    return dist_to_gt[pred_border], dist_to_pred[gt_border]


def hausdorff95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm (0 if both empty, inf if one is)."""
    pred_b, gt_b = _pair(pred, gt)
    if not pred_b.any() and not gt_b.any():
        return 0.0
    d = _surface_distances(pred_b, gt_b, spacing)
    if d is None:
        return float("inf")
    return float(max(np.percentile(d[0], 95), np.percentile(d[1], 95)))


def average_surface_distance(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> float:
    """Average symmetric surface distance in mm (0 if both empty, inf if only one is)."""
    pred_b, gt_b = _pair(pred, gt)
    if not pred_b.any() and not gt_b.any():
        return 0.0
    d = _surface_distances(pred_b, gt_b, spacing)
    if d is None:
        return float("inf")
    return float(np.concatenate(d).mean())


def evaluate_case(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float],
    labels: Sequence[int] | dict[int, str] | None = None,
    surface: bool = True,
    roi: np.ndarray | None = None,
    spacing_known: bool = True,
) -> dict[str, dict[str, float]]:
    """All metrics for every foreground class of one case.

    A volume gets distances in mm and volumes in mL. A 2D label map (a picture) gets areas
    and distances in pixels (``area_pred_px``, ``area_gt_px``, ``hd95_px``, ``assd_px``),
    plus in mm² and mm (``area_pred_mm2``, ``area_gt_mm2``, ``hd95``, ``assd``) only when its
    pixel size is known; never millilitres.

    Parameters
    ----------
    pred, gt : np.ndarray
        Integer label arrays of the same shape.
    spacing : sequence of float
        Voxel size in mm, array axis order.
    labels : list of int or dict, optional
        Classes to score (``{value: name}`` names the result keys); default: every non-zero
        value present in either array. Background (0) is never scored.
    surface : bool
        Also compute HD95 / ASSD (the slowest part).
    roi : np.ndarray of bool, optional
        Region of interest (e.g. a fundus camera's field of view): only voxels inside count,
        in every metric (specificity's true negatives included).
    spacing_known : bool
        False when the file gave no pixel size (``spacing`` is a placeholder of 1 per
        pixel): a 2D map then gets no mm or mm² values.

    Returns
    -------
    dict
        ``{class name: {"label": value, "dice": ..., "jaccard": ..., "sensitivity": ...,
        "specificity": ..., "precision": ..., "hd95": mm, "assd": mm, "volume_pred_ml": ...,
        "volume_gt_ml": ...}}``; 2D maps have the picture keys above instead of the volumes.

    Examples
    --------
    >>> gt = np.zeros((4, 5), np.uint8); gt[1:3, 1:4] = 1
    >>> row = evaluate_case(gt, gt, (1.0, 1.0), surface=False, spacing_known=False)["1"]
    >>> row["area_gt_px"], "area_gt_mm2" in row, "volume_gt_ml" in row
    (6, False, False)
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    inside = None
    if roi is not None:
        inside = np.asarray(roi, dtype=bool)
        if inside.shape != gt.shape:
            raise ValueError(f"region-of-interest shape {inside.shape} differs from ground truth "
                             f"shape {gt.shape}")
        pred, gt = np.where(inside, pred, 0), np.where(inside, gt, 0)
    if labels is None:
        values = sorted(int(v) for v in np.union1d(np.unique(pred), np.unique(gt)) if v != 0)
        names = {v: str(v) for v in values}
    elif isinstance(labels, dict):
        names = {int(k): str(v) for k, v in labels.items() if int(k) != 0}
    else:
        names = {int(v): str(v) for v in labels if int(v) != 0}
    out: dict[str, dict[str, float]] = {}
    for value, name in names.items():
        p, g = pred == value, gt == value
        pi, gi = (p, g) if inside is None else (p[inside], g[inside])
        row = {
            "label": value,
            "dice": dice(pi, gi),
            "jaccard": jaccard(pi, gi),
            "sensitivity": sensitivity(pi, gi),
            "specificity": specificity(pi, gi),
            "precision": precision(pi, gi),
        }
        if pred.ndim == 2:
            row.update(_picture_metrics(p, g, spacing, surface, spacing_known))
        else:
            row.update(volume_pred_ml=volume_ml(p, spacing), volume_gt_ml=volume_ml(g, spacing))
            if surface:
                row["hd95"] = hausdorff95(p, g, spacing)
                row["assd"] = average_surface_distance(p, g, spacing)
        out[name] = row
    return out


def _picture_metrics(p: np.ndarray, g: np.ndarray, spacing: Sequence[float], surface: bool,
                     spacing_known: bool) -> dict[str, float]:
    """Areas (px, and mm² when the pixel size is known) and surface distances (px, and mm)
    of one class of a 2D map."""
    n_p, n_g = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    row: dict[str, float] = {"area_pred_px": n_p, "area_gt_px": n_g}
    if surface:
        row["hd95_px"] = hausdorff95(p, g, (1.0, 1.0))
        row["assd_px"] = average_surface_distance(p, g, (1.0, 1.0))
    if spacing_known:
        pixel_mm2 = float(np.prod(spacing))
        row.update(area_pred_mm2=n_p * pixel_mm2, area_gt_mm2=n_g * pixel_mm2)
        if surface:
            row["hd95"] = hausdorff95(p, g, spacing)
            row["assd"] = average_surface_distance(p, g, spacing)
    return row


#: Metrics whose summary counts the cases where they are undefined (``<metric>_n_undefined``).
UNDEFINED_COUNTED = ("sensitivity", "hd95", "assd", "hd95_px", "assd_px")


def is_defined(metric: str, row: dict[str, float]) -> bool:
    """Whether ``row[metric]`` (one class of one case) enters a mean over cases.

    Not defined: a non-finite value (HD95 / ASSD are ``inf`` when the class is in only one of
    the two masks) and the sensitivity of a case whose ground truth lacks the class (its
    per-case value, 1.0 or 0.0, only says whether anything was predicted).

    Examples
    --------
    >>> is_defined("hd95", {"hd95": float("inf")}), is_defined("dice", {"dice": 0.0})
    (False, True)
    >>> is_defined("sensitivity", {"sensitivity": 0.0, "area_gt_px": 0})
    False
    """
    value = float(row[metric])
    if not np.isfinite(value):
        return False
    if metric == "sensitivity":
        truth = row.get("volume_gt_ml", row.get("area_gt_px"))
        return truth is None or float(truth) > 0
    return True


def undefined_cases(per_case: dict[str, dict[str, dict[str, float]]], class_name: str,
                    metric: str) -> list[str]:
    """The cases :func:`summarise` leaves out of ``metric``'s mean for ``class_name``."""
    return [case for case, rows in per_case.items()
            if class_name in rows and metric in rows[class_name]
            and not is_defined(metric, rows[class_name])]


def summarise(per_case: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of every metric per class over the cases where it is defined.

    Returns
    -------
    dict
        ``{class name: {"dice_mean": ..., "dice_std": ..., ..., "n": cases}}``, and for
        sensitivity, HD95 and ASSD ``"<metric>_n_undefined"``: the cases left out of that
        metric's mean and std (:func:`is_defined`: a distance that is ``inf``, a sensitivity
        with empty ground truth). A distance defined in no case has mean and std ``inf``; a
        sensitivity defined in no case (the class is in no ground truth) NaN.

    Examples
    --------
    >>> rows = {"a": {"1": {"label": 1, "hd95": 2.0}}, "b": {"1": {"label": 1, "hd95": 4.0}},
    ...         "normal": {"1": {"label": 1, "hd95": float("inf")}}}
    >>> s = summarise(rows)["1"]
    >>> s["hd95_mean"], s["hd95_std"], s["hd95_n_undefined"], s["n"]
    (3.0, 1.0, 1, 3)
    """
    classes: dict[str, dict[str, list[tuple[float, bool]]]] = {}
    for case in per_case.values():
        for name, row in case.items():
            for metric, value in row.items():
                if metric != "label":
                    classes.setdefault(name, {}).setdefault(metric, []).append(
                        (float(value), is_defined(metric, row)))
    summary: dict[str, dict[str, float]] = {}
    for name, metrics in classes.items():
        entry: dict[str, float] = {}
        for metric, values in metrics.items():
            defined = np.asarray([v for v, ok in values if ok], dtype=float)
            if defined.size:
                entry[f"{metric}_mean"] = float(defined.mean())
                entry[f"{metric}_std"] = float(defined.std())
            else:  # a distance never measurable stays visible as inf
                missing = float("nan") if metric == "sensitivity" else float("inf")
                entry[f"{metric}_mean"] = entry[f"{metric}_std"] = missing
            n_undefined = len(values) - int(defined.size)
            if metric in UNDEFINED_COUNTED or n_undefined:
                entry[f"{metric}_n_undefined"] = n_undefined
            entry["n"] = len(values)
        summary[name] = entry
    return summary


def write_csv(per_case: dict[str, dict[str, dict[str, float]]], csv_path: str | os.PathLike) -> Path:
    """One row per case and class (atomic write); a column per metric present in the rows."""
    import io

    from napari_medseg.io.atomic import atomic_write_bytes

    csv_path = Path(csv_path)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    present = {k for classes in per_case.values() for row in classes.values() for k in row}
    extra = sorted(present - set(METRIC_NAMES) - {"label"})  # e.g. pixel areas of pictures
    # only the metrics computed: a picture has no mL column, one without pixel size no mm
    columns = [*(m for m in METRIC_NAMES if m in present), *extra]
    writer.writerow(["case", "class", "label", *columns])
    for case, classes in per_case.items():
        for name, row in classes.items():
            writer.writerow([case, name, row["label"], *[row.get(m, "") for m in columns]])
    atomic_write_bytes(csv_path, text.getvalue().encode())
    return csv_path
