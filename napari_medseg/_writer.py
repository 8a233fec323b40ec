"""npe2 writers: a Labels (or Image) layer -> NIfTI with the geometry it was opened with;
a 2D Labels layer -> PNG / TIFF label picture.

The geometry comes from ``layer.metadata["medseg"]`` (written when the image was opened), so
a Labels layer painted on an image saves with that image's affine: reading it back gives the
same voxels and affine. Sparse-annotation marks turn unannotated slices into
``IGNORE_LABEL`` (255), and the class table goes to a ``.classes.json`` sidecar.

:func:`write_labels_picture` saves a 2D Labels layer (on a photograph, an X-ray ...) as a PNG
(8-bit, or 16-bit above 255) or TIFF with the exact label values, and the pixel size when the
image stated one; 3D labels are refused with a pointer to NIfTI.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _medseg(meta: dict[str, Any]) -> dict[str, Any]:
    medseg = (meta.get("metadata") or {}).get("medseg")
    return medseg if isinstance(medseg, dict) else {}


def _algorithm_type(medseg: dict[str, Any]) -> str:
    """How a Labels layer was made, as DICOM records it: a model's prediction (which the user
    may have corrected since) is SEMIAUTOMATIC, anything else was drawn by hand (MANUAL)."""
    return "SEMIAUTOMATIC" if medseg.get("prediction") else "MANUAL"


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a Labels layer as ``.nii.gz`` / ``.nii``.

    Parameters
    ----------
    path : str
        Destination file.
    data : array-like
        Label voxels ``(Z, Y, X)`` or ``(Y, X)``.
    meta : dict
        napari layer attributes (``metadata``, ``scale``, ``translate``, ``name``).

    Returns
    -------
    list of str
        The files written (NIfTI, plus the class-table sidecar when the layer has classes).
    """
    from napari_medseg.io import save_labels
    from napari_medseg.labels import write_classes_sidecar
    from napari_medseg.ui._layers import labels_for_saving, volume_from_parts

    medseg = _medseg(meta)
    array = np.asarray(data)
    reference = volume_from_parts(
        array, medseg, meta.get("scale"), meta.get("translate"), meta.get("name", "labels")
    )
    written = save_labels(labels_for_saving(array, medseg), reference, path)
    out = [str(written)]
    if medseg.get("classes"):
        out.append(str(write_classes_sidecar(written, medseg["classes"])))
    return out


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save an Image layer as ``.nii.gz`` / ``.nii`` with its geometry (see :func:`write_labels`)."""
    from napari_medseg.io import write_nifti
    from napari_medseg.ui._layers import volume_from_parts

    medseg = _medseg(meta)
    volume = volume_from_parts(
        np.asarray(data), medseg, meta.get("scale"), meta.get("translate"), meta.get("name", "image")
    )
    return [str(write_nifti(volume, path, labels=False))]


def write_labels_picture(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a 2D Labels layer as ``.png`` / ``.tif`` / ``.tiff`` (exact integer values).

    Parameters
    ----------
    path : str
        Destination file.
    data : array-like
        Label values ``(Y, X)``.
    meta : dict
        napari layer attributes (``metadata``, ``scale``, ``translate``, ``name``).

    Returns
    -------
    list of str
        The files written (the picture, plus the class-table sidecar when the layer has
        classes).

    Raises
    ------
    MedsegIOError
        3D labels (save them as NIfTI), negative or non-integer values, values above 65535
        for PNG, bad folder; nothing is written then.
    """
    from napari_medseg.io import MedsegIOError, write_picture
    from napari_medseg.labels import write_classes_sidecar
    from napari_medseg.ui._layers import volume_from_parts

    medseg = _medseg(meta)
    array = np.asarray(data)
    name = meta.get("name", "labels")
    if array.ndim != 2:
        raise MedsegIOError(
            f"Cannot save '{name}' as {path.rsplit('.', 1)[-1].upper()}: it is "
            f"{array.ndim}D (shape {array.shape}); PNG/TIFF hold 2D labels, save 3D labels "
            "as .nii.gz."
        )
    reference = volume_from_parts(array, medseg, meta.get("scale"), meta.get("translate"), name)
    written = write_picture(reference, path)
    out = [str(written)]
    if medseg.get("classes"):
        out.append(str(write_classes_sidecar(written, medseg["classes"])))
    return out


def write_labels_itk(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a Labels layer as NRRD (``.nrrd``, ``.seg.nrrd``: 3D Slicer reads the segment
    names and colours) or MetaImage (``.mha``), with the geometry of its image.

    These files go to other software: the labels are written as painted (no ignore value on
    slices not marked as annotated, unlike the NIfTI the trainer reads).
    """
    from napari_medseg.io.itk_formats import save_labels_itk
    from napari_medseg.ui._layers import volume_from_parts

    medseg = _medseg(meta)
    array = np.asarray(data)
    reference = volume_from_parts(
        array, medseg, meta.get("scale"), meta.get("translate"), meta.get("name", "labels"))
    names, colours = _classes_of(medseg, array)
    return [str(save_labels_itk(array, reference, path, names, colours))]


def _dicom_reference(medseg: dict[str, Any], name: str) -> Any:
    """The DICOM series a Labels layer was drawn on (from the geometry it was opened with)."""
    from napari_medseg.io import MedsegIOError, read_dicom_series

    source = medseg.get("source") if isinstance(medseg.get("source"), dict) else {}
    path = source.get("path")
    if source.get("format") != "dicom" or not path:
        raise MedsegIOError(
            f"Cannot save '{name}' as DICOM SEG/RTSTRUCT: it was not drawn on a DICOM series "
            "(open the series with napari-medseg and make the labels on it, or save them as "
            "NIfTI and run `napari-medseg convert LABELS OUT.seg.dcm --reference SERIES`).")
    return read_dicom_series(path, source.get("series_uid"))


def _classes_of(medseg: dict[str, Any], data: np.ndarray) -> tuple[dict[int, str], dict]:
    classes = medseg.get("classes") or {}
    names = {int(k): str(v.get("name", f"label {k}")) for k, v in classes.items()
             if isinstance(v, dict)}
    colours = {int(k): v["color"] for k, v in classes.items()
               if isinstance(v, dict) and v.get("color")}
    for value in np.unique(data):
        if int(value) != 0:
            names.setdefault(int(value), f"label {int(value)}")
    from napari_medseg.labels import hex_to_rgb

    colours = {k: hex_to_rgb(c) if isinstance(c, str) else c for k, c in colours.items()}
    return names, colours


def write_labels_dicom_seg(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a Labels layer drawn on a DICOM series as a DICOM SEG referencing that series."""
    from napari_medseg.io.dicom_seg import write_dicom_seg

    medseg = _medseg(meta)
    array = np.asarray(data)
    reference = _dicom_reference(medseg, meta.get("name", "labels"))
    names, colours = _classes_of(medseg, array)
    return [str(write_dicom_seg(array, reference, path, names, colours,
                                algorithm_type=_algorithm_type(medseg)))]


def write_labels_rtstruct(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Save a Labels layer drawn on a DICOM series as an RT Structure Set (one ROI per class)."""
    from napari_medseg.io.dicom_seg import write_rtstruct

    medseg = _medseg(meta)
    array = np.asarray(data)
    reference = _dicom_reference(medseg, meta.get("name", "labels"))
    names, colours = _classes_of(medseg, array)
    return [str(write_rtstruct(array, reference, path, names, colours,
                               algorithm_type=_algorithm_type(medseg)))]
