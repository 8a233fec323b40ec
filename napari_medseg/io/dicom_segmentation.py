"""DICOM Segmentation (SEG) objects in and out, with highdicom.

A SEG is written as a BINARY segmentation, one segment per class; segment labels, colours and
algorithm type come from the class table, with a coded category and type (SCT "Tissue" /
"Organ" by default). highdicom copies from the source series exactly what the SEG standard
requires (patient, study, frame of reference, references to each source image) and validates
the object as it builds it. Reading gives the segment numbers as labels, on the referenced
series' grid (:mod:`napari_medseg.io.dicom_reference`) or on the SEG's own frame geometry.

Every problem raises :class:`~napari_medseg.io.errors.MedsegIOError` with one line for the user;
nothing is written unless the whole object could be built (temporary file + rename).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.dicom_reference import (
    _LPS_TO_RAS,
    SEG_SOP_CLASS,
    ReferenceLike,
    ReferenceSeries,
    _atomic_save,
    _check_labels,
    _check_uids,
    _classes,
    _colours,
    _read_object,
    _referenced_uid,
    load_reference_series,
)
from napari_medseg.io.errors import MedsegIOError, MedsegIOWarning, check_readable, one_line
from napari_medseg.io.volume import Volume, spacing_from_affine

#: Type 2 patient and study attributes a SEG must carry (empty when unknown) and highdicom
#: copies from the source images: anonymised series often lack some of them.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                 "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _present_type2(datasets: list[Any]) -> None:
    """Tidy the source datasets (in memory) for highdicom, inventing nothing.

    Type 2 attributes they lack are given empty (the SEG then says "unknown", as the standard
    asks, instead of failing); an empty Specific Character Set, which means the default
    repertoire (PS3.3 C.12.1.1.2; GE scanners write it so), is removed. Other character sets
    are left as they are (pydicom decodes the source's text with them): the SEG's own comes
    from :func:`seg_character_set`.
    """
    for ds in datasets:
        for keyword in _TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
        if "SpecificCharacterSet" in ds and not _charset_values(ds.SpecificCharacterSet):
            del ds.SpecificCharacterSet


#: The character set a SEG is written in when the source's cannot be used: UTF-8 holds
#: every letter pydicom decoded from the source, whatever it was read as.
_FALLBACK_CHARSET = "ISO_IR 192"
_ISO_IR = re.compile(r"^ISO[\s_-]*IR[\s_-]*(\d+)$")
_ISO_2022 = re.compile(r"^ISO[\s_-]*2022[\s_-]*IR[\s_-]*(\d+)$")


def _quiet_charset_names() -> None:
    """Inside ``warnings.catch_warnings()``: leave out pydicom's remarks on a misspelt or
    unknown character-set name (:func:`seg_character_set` says what the SEG does about it)."""
    warnings.filterwarnings("ignore", message=r"(Incorrect value for Specific Character Set|"
                                              r"Unknown encoding)")


def _charset_values(value: Any) -> list[str]:
    """Specific Character Set as a list of strings ('' kept: the default repertoire)."""
    if value is None:
        return []
    values = [value] if isinstance(value, str) else [str(v) for v in value]
    return [] if not any(v.strip() for v in values) else [v.strip() for v in values]


def _spelt(term: str) -> str:
    """One defined term as DICOM spells it (``ISO-IR 100`` -> ``ISO_IR 100``)."""
    upper = term.upper()
    found = _ISO_2022.match(upper)
    if found:
        return f"ISO 2022 IR {int(found.group(1))}"
    found = _ISO_IR.match(upper)
    return f"ISO_IR {int(found.group(1))}" if found else upper


def seg_character_set(value: Any) -> tuple[str | list[str] | None, str | None]:
    """The Specific Character Set a SEG can be written in, from its source series' value.

    A misspelt term is corrected (``ISO-IR 100``, ``ISO_IR100`` -> ``ISO_IR 100``), a single
    code-extension term becomes its plain form (``ISO 2022 IR 100`` -> ``ISO_IR 100``), an
    empty first value of several becomes ``ISO 2022 IR 6``; a set highdicom still refuses
    (an unknown term such as ``ISO_IR 999``) falls back to UTF-8 (``ISO_IR 192``).

    Returns
    -------
    (value, warning)
        The value for the SEG (None: the default repertoire) and one line for the user when
        the source's value had to be changed in meaning or spelling (else None).

    Examples
    --------
    >>> seg_character_set("ISO-IR 100")[0], seg_character_set(["", "ISO 2022 IR 87"])
    ('ISO_IR 100', (['ISO 2022 IR 6', 'ISO 2022 IR 87'], None))
    >>> seg_character_set("ISO_IR 999")[0], seg_character_set("")
    ('ISO_IR 192', (None, None))
    """
    from highdicom.enum import SpecificCharacterSetValues

    given = _charset_values(value)
    if not given:
        return None, None
    shown = "\\".join(given)
    same = list(given)  # the source's value, only made explicit
    if len(same) > 1 and not same[0]:
        same[0] = "ISO 2022 IR 6"  # an empty first value: the default repertoire
    terms = [_spelt(v) or "ISO 2022 IR 6" for v in same]
    if len(terms) == 1 and _ISO_2022.match(terms[0]):  # one term needs no code extensions
        number = int(_ISO_2022.match(terms[0]).group(1))
        terms = [f"ISO_IR {number}"] if number != 6 else ["ISO_IR 6"]
    result: str | list[str] | None = terms[0] if len(terms) == 1 else terms
    if terms == ["ISO_IR 6"]:  # the default repertoire, by the name pydicom also accepts
        result = None
    else:
        try:
            for term in terms:
                SpecificCharacterSetValues(term)
            try:  # highdicom's own rules for combining terms, where it has them
                from highdicom.valuerep import _check_specific_character_set
            except ImportError:  # pragma: no cover - another highdicom
                pass
            else:
                _check_specific_character_set(result)
        except ValueError:
            return _FALLBACK_CHARSET, (
                f"the DICOM series gives its character set as '{shown}', which a DICOM SEG "
                f"cannot use; the SEG is written in UTF-8 ({_FALLBACK_CHARSET})")
    if terms == same:
        return result, None
    return result, (f"the DICOM series gives its character set as '{shown}', which is not a "
                    f"valid DICOM value; the SEG is written with '{chr(92).join(terms)}'")


def write_dicom_seg(
    labels: np.ndarray,
    reference: ReferenceLike,
    out_path: str | os.PathLike[str],
    label_names: dict[int, str] | None = None,
    colours: dict[int, Sequence[float]] | None = None,
    *,
    algorithm_type: str = "AUTOMATIC",
    algorithm_name: str = "napari-medseg",
    series_description: str = "Segmentation",
    category: Any = None,
    property_type: Any = None,
) -> Path:
    """Save a label map as a DICOM SEG that references its source series.

    Parameters
    ----------
    labels : np.ndarray
        ``(Z, Y, X)`` integer class indices on the reference series' grid (array order of
        :func:`~napari_medseg.io.dicom.read_dicom_series`); 0 is background.
    reference : path, list of paths or datasets, or Volume
        The source image series (see :func:`load_reference_series`).
    out_path : path-like
        Destination file (``.dcm``).
    label_names : dict, optional
        ``{value: name}`` class table; every class in it becomes a segment (even if empty), and
        values present but unnamed are called ``"label N"``.
    colours : dict, optional
        ``{value: (r, g, b)}`` (0-255 or 0-1); default: the package palette.
    algorithm_type : str
        ``"AUTOMATIC"`` (a model's prediction), ``"SEMIAUTOMATIC"`` or ``"MANUAL"``.
    algorithm_name : str
        Recorded for automatic / semi-automatic segments.
    series_description : str
    category, property_type : pydicom Code, optional
        Segmented property category and type for every segment (default SCT Tissue / Organ).

    Returns
    -------
    Path
        The file written.

    Notes
    -----
    DICOM numbers segments 1, 2, 3 ...: class values that already are 1..N are kept; other
    sets (e.g. {1, 4}) are numbered in increasing order and read back as 1..N.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from napari_medseg import __version__

    with warnings.catch_warnings():
        _quiet_charset_names()  # said once by this writer (seg_character_set), in its words
        ref = load_reference_series(reference)
    _check_uids(ref, "a DICOM SEG")
    data = _check_labels(labels, ref)
    names = _classes(data, label_names)
    if not names:
        raise MedsegIOError("The label map is empty and has no classes: nothing to save.")
    rgb = _colours(names, colours)
    numbers = {value: i + 1 for i, value in enumerate(names)}
    if any(v != n for v, n in numbers.items()):
        lut = np.zeros(int(data.max()) + 1, dtype=np.uint16)
        for v, n in numbers.items():
            if v < lut.size:
                lut[v] = n
        data = lut[data]
    kind = algorithm_type.upper()
    try:
        algo_type = hd.seg.SegmentAlgorithmTypeValues[kind]
    except KeyError as exc:
        raise MedsegIOError(
            f"Unknown algorithm type {algorithm_type!r}; use AUTOMATIC, SEMIAUTOMATIC or MANUAL."
        ) from exc
    algorithm = None
    if kind != "MANUAL":
        algorithm = hd.AlgorithmIdentificationSequence(
            name=algorithm_name, family=codes.DCM.ArtificialIntelligence, version=__version__)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=numbers[value],
            segment_label=name[:64],
            segmented_property_category=category or codes.SCT.Tissue,
            segmented_property_type=property_type or codes.SCT.Organ,
            algorithm_type=algo_type,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*rgb[value]),
        )
        for value, name in names.items()
    ]
    _present_type2(ref.datasets)
    charset, charset_warning = seg_character_set(
        ref.datasets[0].get("SpecificCharacterSet"))
    try:
        with warnings.catch_warnings():
            _quiet_charset_names()
            seg = hd.seg.Segmentation(
                source_images=ref.datasets,
                pixel_array=data.astype(np.uint16 if data.max() > 255 else np.uint8),
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=hd.UID(),
                series_number=int(ref.datasets[0].get("SeriesNumber", 0) or 0) + 1000,
                sop_instance_uid=hd.UID(),
                instance_number=1,
                manufacturer="napari-medseg",
                manufacturer_model_name="napari-medseg",
                software_versions=__version__,
                device_serial_number="none",
                series_description=series_description[:64],
                content_label="SEGMENTATION",
                content_description=f"{len(names)} classes"[:64],
                omit_empty_frames=bool(data.any()),  # an empty map keeps its frames, unwarned
                specific_character_set=charset,
            )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise MedsegIOError(f"Cannot build a DICOM SEG from this series: {one_line(exc)}") from exc
    if charset_warning:
        warnings.warn(charset_warning[0].upper() + charset_warning[1:] + ".", MedsegIOWarning,
                      stacklevel=2)
    if "ContentCreatorName" not in seg:  # Type 2 (Content Identification Macro): empty
        seg.ContentCreatorName = ""
    return _atomic_save(seg, Path(out_path).expanduser())


def _segment_table(seg: Any) -> tuple[dict[int, str], dict[int, list[int]], list[dict[str, Any]]]:
    import highdicom as hd

    names: dict[int, str] = {}
    colours: dict[int, list[int]] = {}
    rows = []
    for number in seg.get_segment_numbers():
        desc = seg.get_segment_description(number)
        names[int(number)] = str(desc.segment_label)
        entry: dict[str, Any] = {"number": int(number), "label": str(desc.segment_label),
                                 "algorithm_type": desc.algorithm_type.value}
        if "RecommendedDisplayCIELabValue" in desc:
            lab = hd.color.CIELabColor.from_dicom_value(desc.RecommendedDisplayCIELabValue)
            colours[int(number)] = [int(c) for c in lab.to_rgb()]
            entry["colour"] = colours[int(number)]
        for key, attr in (("category", "segmented_property_category"),
                          ("type", "segmented_property_type")):
            code = getattr(desc, attr, None)
            if code is not None:
                entry[key] = str(code.meaning)
        rows.append(entry)
    return names, colours, rows


def _segread(path: str | os.PathLike[str]) -> Any:
    import highdicom as hd

    p = check_readable(path)
    ds = _read_object(p)
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise MedsegIOError(f"{p.name} is not a DICOM Segmentation (SEG) object.")
    try:
        return hd.seg.segread(str(p))
    except Exception as exc:  # noqa: BLE001 - highdicom / pydicom raise several kinds
        raise MedsegIOError(f"{p.name} is a DICOM SEG that cannot be read: {one_line(exc)}") from exc


def describe_dicom_seg(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``napari-medseg info`` prints for a SEG: segments and the series it references."""
    seg = _segread(path)
    _, _, rows = _segment_table(seg)
    shape = spacing = affine = None
    try:  # the SEG's own frame grid, from its headers
        geometry = seg.get_volume_geometry()
        ras = _LPS_TO_RAS @ np.asarray(geometry.affine, dtype=float)
        shape, affine = list(geometry.spatial_shape), ras.tolist()
        spacing = list(spacing_from_affine(ras, 3))
    except Exception:  # noqa: BLE001 - frames that do not form a regular volume
        pass
    return {
        "path": str(path), "format": "dicom-seg", "modality": "SEG",
        "shape": shape, "spacing": spacing, "affine": affine, "dtype": "uint8",
        "segmentation_type": str(seg.SegmentationType),
        "segments": rows,
        "referenced_series_uid": _referenced_uid(seg),
        "frame_of_reference_uid": str(seg.get("FrameOfReferenceUID", "")),
        "frames": int(seg.get("NumberOfFrames", 0) or 0),
        "rows": int(seg.Rows), "columns": int(seg.Columns),
        "series": [], "warnings": [],
    }


def _seg_volume(seg: Any, warn: list[str]) -> Any:
    """The SEG as one highdicom Volume of segment numbers (overlaps: highest number wins)."""
    seg_type = str(seg.SegmentationType)
    try:
        if seg_type == "FRACTIONAL":
            vol = seg.get_volume(combine_segments=False, rescale_fractional=True)
            lab = np.zeros(vol.array.shape[:-1], np.uint16)
            for i, n in enumerate(seg.get_segment_numbers()):
                lab[vol.array[..., i] >= 0.5] = n  # a voxel belongs where it is at least half
            return vol.with_array(lab)
        try:
            return seg.get_volume(combine_segments=True)
        except RuntimeError as exc:
            if "overlap" not in str(exc).lower():
                raise
            vol = seg.get_volume(combine_segments=False)
            lab = np.zeros(vol.array.shape[:-1], np.uint16)
            for i, n in enumerate(seg.get_segment_numbers()):
                lab[vol.array[..., i] > 0] = n
            warn.append("Segments overlap; where they do, the higher segment number was kept.")
            return vol.with_array(lab)
    except (RuntimeError, ValueError) as exc:
        raise MedsegIOError(
            f"The frames of this DICOM SEG do not form a regular volume: {one_line(exc)}"
        ) from exc


def read_dicom_seg(path: str | os.PathLike[str], reference: ReferenceLike | None = None) -> Volume:
    """Read a DICOM SEG as an integer label map (segment numbers).

    Parameters
    ----------
    path : path-like
        The SEG file.
    reference : path, list of paths or datasets, or Volume, optional
        The referenced image series: the labels are then on its grid (same shape and affine as
        the image Volume). ``None``: on the SEG's own frame geometry. Use
        :func:`find_reference_series` to look for it beside the file.

    Returns
    -------
    Volume
        uint8/uint16 labels; ``metadata`` has ``format="dicom-seg"``, ``is_labels=True``,
        ``orientation_known=True``, ``label_names`` and ``label_colours`` (RGB 0-255) keyed by
        ``str(value)``, ``segments`` (descriptions), ``referenced_series_uid``.

    Raises
    ------
    MedsegIOError
        Not a SEG, unreadable, frames that do not form a volume, or a reference series on
        another frame of reference.
    """
    import highdicom as hd

    seg = _segread(path)
    names, colours, rows = _segment_table(seg)
    warn: list[str] = []
    hvol = _seg_volume(seg, warn)
    arr = np.asarray(hvol.array)
    arr = arr.astype(np.uint8 if arr.size == 0 or arr.max() <= 255 else np.uint16, copy=False)
    metadata: dict[str, Any] = {
        "path": str(path), "format": "dicom-seg", "is_labels": True, "orientation_known": True,
        "label_names": {str(k): v for k, v in names.items()},
        "label_colours": {str(k): v for k, v in colours.items()},
        "segments": rows, "referenced_series_uid": _referenced_uid(seg),
        "frame_of_reference_uid": str(seg.get("FrameOfReferenceUID", "")), "warnings": warn,
    }
    name = Path(path).stem
    if reference is None:
        affine = _LPS_TO_RAS @ np.asarray(hvol.affine, dtype=float)
        return Volume(arr, spacing_from_affine(affine, 3), affine, "unknown", metadata, name)
    ref = load_reference_series(reference, _referenced_uid(seg) if not isinstance(
        reference, Volume) else None)
    if (ref.frame_of_reference_uid and metadata["frame_of_reference_uid"]
            and ref.frame_of_reference_uid != metadata["frame_of_reference_uid"]):
        raise MedsegIOError(
            f"{Path(path).name} and the chosen series are in different frames of reference "
            "(different patient positioning); choose the series the SEG was made on."
        )
    geometry = hd.VolumeGeometry(ref.affine_lps, ref.shape, "PATIENT")
    try:
        on_grid = np.asarray(hvol.with_array(arr).match_geometry(geometry, tol=1e-3).array)
    except RuntimeError:
        on_grid = _resample_nearest(arr, np.asarray(hvol.affine, float), ref)
        warn.append("The SEG frames are not on the series' voxel grid; they were resampled "
                    "(nearest neighbour).")
    metadata["reference_series_uid"] = ref.series_uid
    for msg in warn:
        warnings.warn(msg, MedsegIOWarning, stacklevel=2)
    return ref.volume(on_grid.astype(arr.dtype, copy=False), metadata, name)


def _resample_nearest(arr: np.ndarray, src_affine_lps: np.ndarray, ref: ReferenceSeries
                      ) -> np.ndarray:
    from scipy.ndimage import affine_transform

    matrix = np.linalg.inv(src_affine_lps) @ ref.affine_lps
    return affine_transform(arr, matrix[:3, :3], matrix[:3, 3], output_shape=ref.shape,
                            order=0, mode="constant", cval=0)
