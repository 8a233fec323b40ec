"""DICOM series grouping: which scanned files form one series, split where they differ.

Step 2 of reading a folder (the overview is in :mod:`napari_medseg.io.dicom`): the headers of
:mod:`napari_medseg.io.dicom_headers` are grouped by SeriesInstanceUID. A series whose slices
differ in orientation, size or pixel spacing is split into parts (``key = "<uid>#1"``,
``"<uid>#2"`` ...); slices at the same position that differ in EchoNumbers /
TemporalPositionIdentifier are split the same way. Files without a SeriesInstanceUID
(anonymised data) are grouped per folder, FrameOfReferenceUID, series number and description
under a made-up key ``"no-uid-<hash>"``. SEG, RTSTRUCT, RTPLAN, RTDOSE, SR, ... are listed with
``is_image=False`` and never read as images. **2D pictures** (projection and ultrasound
modalities CR, DX, MG, XA, RF, US ..., and secondary captures, photographs or colour images
without a patient position) are never stacked: each file is its own image (several X-ray views
of one series become ``"<uid>#1"``, ``"<uid>#2"`` ...).

:class:`DicomSeriesInfo` is what the listing tells about each series (or part).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.dicom_headers import _Header

#: Modality values of DICOM objects that carry no image to segment.
NON_IMAGE_MODALITIES = {
    "SEG": "DICOM Segmentation (SEG) object",
    "RTSTRUCT": "RT Structure Set (contours)",
    "RTPLAN": "RT Plan",
    "RTDOSE": "RT Dose grid",
    "RTRECORD": "RT Treatment Record",
    "RTIMAGE": "RT Image",
    "SR": "Structured Report",
    "PR": "Presentation State",
    "KO": "Key Object Selection",
    "REG": "Spatial Registration",
    "DOC": "encapsulated document",
    "RWV": "Real World Value Mapping",
    "FID": "Fiducials",
    "PLAN": "plan",
}

#: Modalities whose images are projections, photographs or ultrasound: 2D pictures with no
#: patient 3D orientation, never slices of a volume (each file is its own image).
PICTURE_MODALITIES = frozenset(
    {"CR", "DX", "MG", "IO", "PX", "RF", "XA", "US", "ES", "XC", "OP", "GM", "SM", "DG", "BDUS"}
)
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
_VISIBLE_LIGHT = "1.2.840.10008.5.1.4.1.1.77.1"


@dataclass
class DicomSeriesInfo:
    """What a header scan knows about one series (or one part of a split series).

    Attributes
    ----------
    series_uid : str
        SeriesInstanceUID (a made-up ``"no-uid-..."`` when the files have none).
    description : str
        SeriesDescription (may be empty).
    modality : str
        Modality tag (``"CT"``, ``"MR"``, ``"SEG"`` ...), ``"unknown"`` when absent.
    n_slices : int
        Number of slices (frames for a multi-frame file) after removing duplicates.
    spacing : tuple of float or None
        mm per voxel in array order ``(slice, row, column)``, ``None`` for non-images.
    files : list of str
        The files of this series.
    patient_id, study_description : str
        PatientID and StudyDescription (may be empty).
    is_image : bool
        ``False`` for SEG, RTSTRUCT, RTPLAN, RTDOSE, SR, ... (never read as an image).
    transfer_syntax : str
        Transfer syntax name (e.g. ``"JPEG 2000 Image Compression (Lossless Only)"``).
    warnings : list of str
        Problems found in the headers (gaps, uneven spacing, tilt, missing decoder ...).
    key : str
        Unique identifier to pass as ``series_uid=`` (``series_uid`` itself unless split).
    series_number : int or None
        SeriesNumber.
    shape : tuple of int or None
        Array shape the volume will have: ``(Z, Y, X)`` or ``(Y, X)`` for one slice.
    affine : list of list of float or None
        4x4 Volume affine (array index -> RAS mm).
    transfer_syntax_uid : str
        Transfer syntax UID.
    decoder_available : bool or None
        Whether pydicom can decode the pixel data (``None``: unknown).
    kind : str
        Human-readable kind: ``"image"`` or e.g. ``"DICOM Segmentation (SEG) object"``.
    photometric_interpretation : str
        PhotometricInterpretation of the first file (``"MONOCHROME2"``, ``"RGB"``,
        ``"YBR_FULL_422"``, ``"PALETTE COLOR"`` ...).
    rgb : bool
        ``True`` for colour images: they are read as RGB, array ``shape + (3,)``.
    colour : str
        In words: ``"greyscale"``, ``"greyscale (MONOCHROME1, inverted on reading)"``,
        ``"RGB"``, ``"RGB (stored as YBR_FULL_422)"``, ``"RGB (palette colour)"``.
    layout : str
        ``"volume"`` (slices in patient space, or one oriented slice), ``"picture"`` (a 2D
        image without patient orientation: X-ray, mammogram, ultrasound, capture) or
        ``"frames"`` (a multi-frame file whose frames are not slices: cine loop).
    frame_axis : str or None
        For ``"frames"``: ``"time"`` (cine) or ``"unknown"``; ``None`` otherwise.
    spacing_known : bool or None
        ``False`` when no pixel spacing was found (1 mm assumed); ``None`` for non-images.
    spacing_source : str or None
        ``"PixelSpacing"``, ``"ImagerPixelSpacing"`` (at the detector) or
        ``"SequenceOfUltrasoundRegions"``.
    has_orientation : bool
        Whether the affine states the patient orientation (``False`` for pictures and frames).
    """

    series_uid: str
    description: str
    modality: str
    n_slices: int
    spacing: tuple[float, ...] | None
    files: list[str]
    patient_id: str = ""
    study_description: str = ""
    is_image: bool = True
    transfer_syntax: str = ""
    warnings: list[str] = field(default_factory=list)
    key: str = ""
    series_number: int | None = None
    shape: tuple[int, ...] | None = None
    affine: list[list[float]] | None = None
    transfer_syntax_uid: str = ""
    decoder_available: bool | None = None
    kind: str = "image"
    photometric_interpretation: str = ""
    rgb: bool = False
    colour: str = ""
    layout: str = "volume"
    frame_axis: str | None = None
    spacing_known: bool | None = None
    spacing_source: str | None = None
    has_orientation: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (``files`` replaced by ``n_files`` and ``first_file``)."""
        d = asdict(self)
        files = d.pop("files")
        d["n_files"] = len(files)
        d["first_file"] = files[0] if files else None
        d["uid"] = d["series_uid"]
        d["slices"] = d["n_slices"]
        for k in ("spacing", "shape"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d


def _kind(h: _Header) -> str:
    if h.modality in NON_IMAGE_MODALITIES:
        return NON_IMAGE_MODALITIES[h.modality]
    if h.rows is None or h.cols is None:
        return f"DICOM object without pixel data ({h.modality})"
    return "image"


def _is_colour(h: _Header) -> bool:
    """Colour picture: several samples per pixel, or palette colour."""
    return h.samples_per_pixel > 1 or h.photometric == "PALETTE COLOR"


def _is_picture(h: _Header) -> bool:
    """A 2D picture (X-ray, mammogram, ultrasound, photograph, secondary capture ...).

    Projection and ultrasound modalities always are; secondary captures, visible-light
    photographs and colour images are when they carry no patient position/orientation.
    """
    if h.modality in PICTURE_MODALITIES:
        return True
    no_plane = h.iop is None or h.ipp is None
    sop = h.sop_class_uid
    is_capture = sop == _SECONDARY_CAPTURE or sop.startswith(
        (_SECONDARY_CAPTURE + ".", _VISIBLE_LIGHT)
    )
    return no_plane and (is_capture or _is_colour(h))


def _geometry_key(h: _Header) -> tuple[Any, ...]:
    iop = tuple(np.round(h.iop, 3)) if h.iop is not None else None
    ps = tuple(np.round(h.pixel_spacing, 4)) if h.pixel_spacing is not None else None
    return (iop, h.rows, h.cols, ps, h.samples_per_pixel)


def _pseudo_uid(h: _Header) -> str:
    text = "|".join(
        [str(Path(h.path).parent), h.frame_of_reference, str(h.series_number), h.description,
         h.modality]
    )
    return "no-uid-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def _split_duplicates(headers: list[_Header]) -> list[list[_Header]]:
    """Split a same-geometry group by echo / temporal position when positions repeat."""
    positions = [tuple(np.round(h.ipp, 3)) for h in headers if h.ipp is not None]
    if len(positions) == len(set(positions)):
        return [headers]
    for attr in ("echo", "temporal"):
        values = {getattr(h, attr) for h in headers}
        if len(values) > 1:
            groups: dict[str, list[_Header]] = defaultdict(list)
            for h in headers:
                groups[getattr(h, attr)].append(h)
            return [groups[v] for v in sorted(groups)]
    return [headers]


@dataclass
class _Series:
    uid: str
    key: str
    headers: list[_Header]
    kind: str
    warnings: list[str] = field(default_factory=list)


def _group(headers: list[_Header]) -> list[_Series]:
    by_uid: dict[str, list[_Header]] = defaultdict(list)
    no_uid: set[str] = set()
    for h in headers:
        uid = h.series_uid
        if not uid:
            uid = _pseudo_uid(h)
            no_uid.add(uid)
        by_uid[uid].append(h)
    series: list[_Series] = []
    for uid, members in by_uid.items():
        members.sort(key=lambda h: (h.instance, h.path))
        note = (
            ["The files have no SeriesInstanceUID (anonymised?); they were grouped by folder "
             "and series description."] if uid in no_uid else []
        )
        non_image = [h for h in members if _kind(h) != "image"]
        images = [h for h in members if _kind(h) == "image"]
        parts: list[tuple[list[_Header], str]] = []
        kinds: dict[str, list[_Header]] = defaultdict(list)
        for h in non_image:
            kinds[_kind(h)].append(h)
        for kind, hs in kinds.items():
            parts.append((hs, kind))
        by_geometry: dict[tuple[Any, ...], list[_Header]] = defaultdict(list)
        for h in images:
            if h.n_frames > 1:
                by_geometry[("multiframe", h.path)].append(h)
            elif _is_picture(h):
                by_geometry[("picture", h.path)].append(h)  # each picture stands alone
            else:
                by_geometry[_geometry_key(h)].append(h)
        for hs in by_geometry.values():
            for sub in _split_duplicates(hs):
                parts.append((sub, "image"))
        n_pictures = sum(1 for hs, kind in parts if kind == "image" and _is_picture(hs[0]))
        for i, (hs, kind) in enumerate(parts):
            key = uid if len(parts) == 1 else f"{uid}#{i + 1}"
            extra = list(note)
            # several X-ray views or ultrasound images in one series are nothing odd
            if len(parts) > 1 and kind == "image" and n_pictures < len(parts):
                extra.append(
                    f"Series {uid} mixes slices of different orientation, size, echo or time "
                    f"point; this is part {i + 1} of {len(parts)}."
                )
            series.append(_Series(uid, key, hs, kind, extra))
    return series
