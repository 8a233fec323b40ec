"""Convert a label map from one file format to another, optionally onto a reference image.

The clinic's case: segmentations made elsewhere (nnU-Net, TotalSegmentator, another viewer)
saved as NIfTI, NRRD or PNG must go to PACS or a planning system as DICOM SEG or RTSTRUCT
referencing the series they were drawn on, or to 3D Slicer as a ``.seg.nrrd``. The labels are
placed on the reference's grid where their voxels lie in the patient
(:meth:`Volume.on_grid_of`: axes transposed or flipped, never resampled), so a NIfTI label map
whose rows run the other way still lands on the right voxels of the DICOM series.

Class names and colours come from, in this order: the ``classes`` given, the labels file itself
(DICOM SEG / RTSTRUCT / Slicer NRRD segments), its ``.classes.json`` sidecar or the
``dataset.json`` of its dataset; values without a name are called ``label N``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from napari_medseg.io.errors import MedsegIOError
from napari_medseg.io.volume import Volume
from napari_medseg.labels import (
    classes_for_labels_file,
    hex_to_rgb,
    normalise_classes,
    write_classes_sidecar,
)

#: Output kinds by file ending (longest endings first).
CONVERT_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".seg.dcm", "dicom-seg"), (".rtstruct.dcm", "rtstruct"), (".seg.nrrd", "nrrd"),
    (".nii.gz", "nifti"), (".nii", "nifti"), (".nrrd", "nrrd"), (".mha", "mha"),
    (".png", "picture"), (".tif", "picture"), (".tiff", "picture"),
)

#: ROI / segment algorithm types DICOM knows.
ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")


def output_kind(path: str | os.PathLike[str]) -> str:
    """``"dicom-seg"``, ``"rtstruct"``, ``"nrrd"``, ``"mha"``, ``"nifti"`` or ``"picture"``.

    Raises
    ------
    MedsegIOError
        For another file ending.
    """
    name = Path(path).name.lower()
    for suffix, kind in CONVERT_SUFFIXES:
        if name.endswith(suffix):
            return kind
    raise MedsegIOError(
        f"Cannot tell the output format from {Path(path).name!r}: end it with "
        + ", ".join(s for s, _ in CONVERT_SUFFIXES) + ".")


def _class_table(labels_path: Path, volume: Volume,
                 classes: str | os.PathLike[str] | dict | None) -> dict[int, dict[str, str]]:
    if isinstance(classes, dict):
        return normalise_classes(classes)
    if classes is not None:
        p = Path(classes).expanduser()
        try:
            payload = json.loads(p.read_text())
        except OSError as exc:
            raise MedsegIOError(f"Cannot read the class table {p}: "
                                f"{(exc.strerror or str(exc)).lower()}.") from exc
        except ValueError as exc:
            raise MedsegIOError(f"The class table {p.name} is not valid JSON.") from exc
        table = payload.get("labels", payload) if isinstance(payload, dict) else None
        if not isinstance(table, dict):
            raise MedsegIOError(f"The class table {p.name} holds no {{value: name}} table.")
        if table and not all(str(k).lstrip("-").isdigit() for k in table):
            table = {v: k for k, v in table.items()}  # nnU-Net v2: {"background": 0, ...}
        try:
            return normalise_classes(table)
        except ValueError as exc:
            raise MedsegIOError(f"The class table {p.name}: {exc}.") from exc
    names = (volume.metadata or {}).get("label_names")
    if names:
        colours = (volume.metadata or {}).get("label_colours") or {}
        table = normalise_classes(names)
        for key, rgb in colours.items():
            if int(key) in table and rgb is not None:
                table[int(key)]["color"] = "#" + "".join(f"{int(c):02x}" for c in list(rgb)[:3])
        return table
    return classes_for_labels_file(labels_path) or {}


def _integer_labels(volume: Volume, name: str) -> np.ndarray:
    array = np.asarray(volume.array)
    if volume.rgb or array.ndim not in (2, 3):
        raise MedsegIOError(f"{name} is not a label map (shape {array.shape}).")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise MedsegIOError(f"{name} holds non-integer values: it is an image, not labels.")
    elif array.dtype.kind not in "iub":
        raise MedsegIOError(f"{name} holds {array.dtype} values, not labels.")
    if array.size and array.min() < 0:
        raise MedsegIOError(f"{name} holds negative values ({int(array.min())}): it looks like "
                            "an image, not a label map (label values are 0 and up).")
    if array.size and array.max() > 65535:
        raise MedsegIOError(f"{name} holds values above 65535 ({int(array.max())}).")
    return array.astype(np.uint8 if array.max(initial=0) <= 255 else np.uint16, copy=False)


def _refuse_intensities(array: np.ndarray, name: str, table: dict) -> None:
    """An image (an MR scan's whole numbers) given as the label map: refused in one line,
    unless its classes are named (a class table for that many values says it is labels)."""
    from napari_medseg.io.nifti import looks_like_label_map

    if looks_like_label_map(array, name):
        return
    values = np.unique(array)
    values = values[values != 0]
    if values.size > len(table or {}):
        raise MedsegIOError(
            f"{name} holds {values.size} different values (up to {int(values.max())}): it "
            "looks like an image, not a label map; name its classes with --classes if it "
            "is one.")


def _read_labels(path: Path, reference: Volume | None) -> Volume:
    """The label file as a Volume; a DICOM SEG / RTSTRUCT on the reference series when one is
    given (else on the series found beside it)."""
    from napari_medseg.io.info import read_volume

    if reference is not None and path.is_file():
        from napari_medseg.io.dicom_seg import dicom_object_kind, read_dicom_labels

        if dicom_object_kind(path) is not None:
            return read_dicom_labels(path, reference)
    return read_volume(path)


def convert_labels(
    labels_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    reference: str | os.PathLike[str] | None = None,
    *,
    series_uid: str | None = None,
    classes: str | os.PathLike[str] | dict | None = None,
    algorithm_type: str = "AUTOMATIC",
) -> list[Path]:
    """Write the label map ``labels_path`` as ``out_path`` (format from its ending).

    Parameters
    ----------
    labels_path : path-like
        Any label file napari-medseg reads (NIfTI, NRRD, MetaImage, PNG/TIFF, DICOM SEG or
        RTSTRUCT).
    out_path : path-like
        ``.seg.dcm`` (DICOM SEG), ``.rtstruct.dcm`` (RTSTRUCT), ``.nrrd`` / ``.seg.nrrd``,
        ``.mha``, ``.nii.gz`` / ``.nii`` or ``.png`` / ``.tif``.
    reference : path-like, optional
        The image the labels belong to: the DICOM series (file or folder) for SEG and RTSTRUCT
        (required), any image otherwise (its geometry is written; default: the labels' own).
    series_uid : str, optional
        The series to use when the reference folder holds several.
    classes : path-like or dict, optional
        A class table (``{value: name}``, ``{value: {"name", "color"}}``, a ``.classes.json``
        or a ``dataset.json``).
    algorithm_type : str
        How the labels were made, recorded in DICOM SEG / RTSTRUCT: ``AUTOMATIC`` (a model),
        ``SEMIAUTOMATIC`` or ``MANUAL`` (drawn by hand).

    Returns
    -------
    list of Path
        The files written (a NIfTI or picture also gets its ``.classes.json`` when the labels
        have names).

    Raises
    ------
    MedsegIOError
        Unreadable input, an unknown ending, labels on another grid than the reference, a
        reference that is not DICOM for SEG/RTSTRUCT, non-integer or negative values. Nothing
        is written then.
    """
    from napari_medseg.io.info import read_volume

    labels_path, out_path = Path(labels_path).expanduser(), Path(out_path).expanduser()
    kind = output_kind(out_path)
    algorithm = str(algorithm_type).upper()
    if algorithm not in ALGORITHM_TYPES:
        raise MedsegIOError(f"Unknown algorithm type {algorithm_type!r}; use "
                            + ", ".join(t.lower() for t in ALGORITHM_TYPES) + ".")
    if not out_path.parent.is_dir():
        raise MedsegIOError(f"Cannot write {out_path.name}: folder {out_path.parent} does not "
                            "exist.")
    if kind in ("dicom-seg", "rtstruct") and reference is None:
        raise MedsegIOError(f"A {'DICOM SEG' if kind == 'dicom-seg' else 'RTSTRUCT'} references "
                            "the DICOM series the labels were drawn on: give it with "
                            "--reference.")
    grid = None
    if reference is not None:
        grid = read_volume(Path(reference).expanduser(), series_uid=series_uid)
    labels = _read_labels(labels_path, grid)
    table = _class_table(labels_path, labels, classes)
    array = _integer_labels(labels, labels_path.name)
    if kind not in ("dicom-seg", "rtstruct"):
        _refuse_intensities(array, labels_path.name, table)
    if grid is None:
        grid = labels
    else:
        if kind in ("dicom-seg", "rtstruct") and (grid.metadata or {}).get("format") != "dicom":
            raise MedsegIOError(f"{Path(reference).name} is not a DICOM series; a "
                                f"{'DICOM SEG' if kind == 'dicom-seg' else 'RTSTRUCT'} must "
                                "reference one.")
        if labels.has_orientation and grid.has_orientation:
            try:
                array = labels.with_array(array).on_grid_of(
                    grid, f"the labels {labels_path.name}", f"the reference {Path(reference).name}")
            except ValueError as exc:
                raise MedsegIOError(str(exc)) from exc
        elif array.shape != grid.shape[:array.ndim] or grid.rgb and array.ndim != 2:
            raise MedsegIOError(
                f"The labels {labels_path.name} (shape {array.shape}) do not match the "
                f"reference {Path(reference).name} (shape {grid.shape}).")
    array = np.ascontiguousarray(array)
    names = {v: c["name"] for v, c in table.items()}
    colours = {v: hex_to_rgb(c["color"]) for v, c in table.items()}
    present = {int(v) for v in np.unique(array) if v != 0}
    written: list[Path] = []
    if kind == "dicom-seg":
        from napari_medseg.io.dicom_seg import write_dicom_seg

        written.append(write_dicom_seg(array, grid, out_path, names, colours,
                                       algorithm_type=algorithm))
    elif kind == "rtstruct":
        from napari_medseg.io.dicom_seg import write_rtstruct

        written.append(write_rtstruct(array, grid, out_path, names, colours,
                                      algorithm_type=algorithm))
    else:
        # the reference's geometry; a colour picture's pixel grid is the labels' own
        target = (labels if grid.rgb else grid).with_array(array, name=out_path.name)
        if kind in ("nrrd", "mha"):
            from napari_medseg.io.itk_formats import save_labels_itk

            named = names or {v: f"label {v}" for v in present}
            written.append(save_labels_itk(array, target, out_path, named, colours))
        elif kind == "nifti":
            from napari_medseg.io.nifti import save_labels

            written.append(save_labels(array, target, out_path))
        else:
            from napari_medseg.io.picture import write_picture

            if array.ndim != 2:
                raise MedsegIOError(f"{out_path.name}: PNG/TIFF hold 2D labels; these are 3D "
                                    f"(shape {array.shape}), write .nii.gz or .nrrd.")
            written.append(write_picture(target, out_path))
        if table and kind in ("nifti", "picture"):
            written.append(write_classes_sidecar(written[0], table))
    return written
