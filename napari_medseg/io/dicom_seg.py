"""DICOM Segmentation (SEG) and RT Structure Set (RTSTRUCT) objects in and out.

Both kinds describe labels *on another series*: the referenced image series (a CT or MR) gives
the voxel grid, so a SEG or RTSTRUCT overlays the image voxel for voxel. The parts:

* :mod:`napari_medseg.io.dicom_reference`: the referenced series (:class:`ReferenceSeries`,
  :func:`load_reference_series`, :func:`find_reference_series`), :func:`dicom_object_kind`, and
  the checks both writers share (UIDs, labels on the grid, class table, saving).
* :mod:`napari_medseg.io.dicom_segmentation`: SEG with highdicom (:func:`write_dicom_seg`,
  :func:`read_dicom_seg`, :func:`describe_dicom_seg`).
* :mod:`napari_medseg.io.dicom_rtstruct`: RTSTRUCT as contours with pydicom and scikit-image
  (:func:`write_rtstruct`, :func:`read_rtstruct`, :func:`describe_rtstruct`).

This module is the one door for ``io.read_volume`` / ``io.describe_path``
(:func:`read_dicom_labels`, :func:`describe_dicom_labels`) and re-exports the names above.
Every problem raises :class:`~napari_medseg.io.errors.MedsegIOError` with one line for the user;
nothing is written unless the whole object could be built (temporary file + rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from napari_medseg.io.dicom_reference import (  # noqa: F401 - re-exported
    MAX_SEARCH_FILES,
    RTSTRUCT_SOP_CLASS,
    SEG_SOP_CLASS,
    ReferenceLike,
    ReferenceSeries,
    dicom_object_kind,
    find_reference_series,
    load_reference_series,
    referenced_series_uid,
)
from napari_medseg.io.dicom_rtstruct import (  # noqa: F401 - re-exported
    describe_rtstruct,
    read_rtstruct,
    write_rtstruct,
)
from napari_medseg.io.dicom_segmentation import (  # noqa: F401 - re-exported
    describe_dicom_seg,
    read_dicom_seg,
    write_dicom_seg,
)
from napari_medseg.io.errors import MedsegIOError
from napari_medseg.io.volume import Volume


def read_dicom_labels(path: str | os.PathLike[str], reference: ReferenceLike | None = None
                      ) -> Volume:
    """A SEG or RTSTRUCT file as a label Volume on its referenced series' grid.

    The series is searched beside the file and in its parent folder when ``reference`` is
    ``None`` (:func:`find_reference_series`); a clear error says which series is missing.
    """
    kind = dicom_object_kind(path)
    if kind == "seg":
        return read_dicom_seg(path, reference if reference is not None
                              else find_reference_series(path))
    if kind == "rtstruct":
        return read_rtstruct(path, reference)
    raise MedsegIOError(f"{Path(path).name} is neither a DICOM SEG nor an RTSTRUCT.")


def describe_dicom_labels(path: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`describe_dicom_seg` or :func:`describe_rtstruct`, whichever ``path`` is."""
    kind = dicom_object_kind(path)
    if kind == "seg":
        return describe_dicom_seg(path)
    if kind == "rtstruct":
        return describe_rtstruct(path)
    raise MedsegIOError(f"{Path(path).name} is neither a DICOM SEG nor an RTSTRUCT.")
