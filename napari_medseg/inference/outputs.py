"""Write a :class:`~napari_medseg.inference.predict.PredictionResult` to disk in a chosen format.

One place decides how a prediction is stored: :func:`write_prediction` looks the format up in a
small registry (name -> :class:`OutputFormat`: label writer, optional probability writer, file
suffix, the dimensionalities it can hold). Built in:

``"nifti"``
    ``<stem>.nii.gz``, uint8 (uint16 ... when needed) labels with the input's exact affine;
    probabilities as one float32 ``<stem>_prob_<value>.nii.gz`` per foreground class.
``"png"``, ``"tif"``
    2D only: ``<stem>.png`` / ``<stem>.tif`` with the input's width and height holding the
    integer label values (8-bit when the largest class is <= 255, else 16-bit);
    probabilities as one 16-bit ``<stem>_prob_<value>.png`` per foreground class
    (0..65535 = probability 0..1).

``"auto"`` picks ``"png"`` for a 2D picture (a PNG/JPEG/TIFF/BMP file or a 2D DICOM image such
as an X-ray or ultrasound frame) and ``"nifti"`` for everything else.

Other modules add formats (NRRD, DICOM SEG, RTSTRUCT ...) with :func:`register_output_format`
without touching this logic (listing the module in :data:`FORMAT_MODULES` makes the registry
import it on first use). Every file is first written into a hidden staging folder inside
the output folder and then moved into place with :func:`os.replace`, so a failure leaves no
half-written output behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_medseg.io.atomic import TEMP_PREFIX, remove_stale_temps
from napari_medseg.io.picture import PICTURE_SUFFIXES
from napari_medseg.io.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from napari_medseg.inference.predict import PredictionResult

#: Writes the label map of a result to exactly ``path`` (the caller makes it atomic).
LabelWriter = Callable[["PredictionResult", Volume, Path], None]
#: Writes probability maps into ``folder`` as ``<stem>...`` files; returns the paths written.
ProbabilityWriter = Callable[["PredictionResult", Volume, Path, str], list[Path]]

#: ``volume.metadata["format"]`` values of pictures.
PICTURE_FORMATS = ("png", "jpeg", "jpg", "tiff", "tif", "bmp", "gif", "netpbm", "picture")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


@dataclass(frozen=True)
class OutputFormat:
    """One way of storing a prediction.

    Attributes
    ----------
    name : str
        What users type after ``--format`` (lower case).
    suffix : str
        Suffix of the label file, e.g. ``".nii.gz"``; the label file is ``<stem><suffix>``.
    write_labels : callable
        ``write_labels(result, reference, path)`` writes the label map to ``path``.
    write_probabilities : callable or None
        ``write_probabilities(result, reference, folder, stem) -> list[Path]``; None when the
        format cannot hold probabilities.
    dims : tuple of int
        Spatial dimensionalities it can store (``(2,)`` for pictures).
    description : str
        A few words for ``--help``.
    """

    name: str
    suffix: str
    write_labels: LabelWriter
    write_probabilities: ProbabilityWriter | None = None
    dims: tuple[int, ...] = (2, 3)
    description: str = ""


_FORMATS: dict[str, OutputFormat] = {}
#: Modules that register further formats when imported (e.g. NRRD, DICOM SEG, RTSTRUCT
#: writers); imported on the first look-up. A writer that needs an optional library imports
#: it inside the writer, so a missing extra fails with a clear message when it is used.
FORMAT_MODULES: list[str] = ["napari_medseg.inference.clinical_outputs"]
_loaded_modules: set[str] = set()
#: Other spellings users type for a registered format.
_ALIASES = {"nii": "nifti", "nii.gz": "nifti", "tiff": "tif"}


def register_output_format(fmt: OutputFormat, *, replace: bool = False) -> OutputFormat:
    """Add ``fmt`` to the formats :func:`write_prediction` (and ``predict --format``) know.

    Parameters
    ----------
    fmt : OutputFormat
        The format; its ``name`` must not be ``"auto"``.
    replace : bool
        Allow replacing a format registered under the same name.

    Returns
    -------
    OutputFormat
        ``fmt`` (so it can be used as a one-line registration).

    Raises
    ------
    ValueError
        A reserved name, or the name is taken and ``replace`` is False.
    """
    name = fmt.name.lower()
    if name == "auto" or not name:
        raise ValueError(f"'{fmt.name}' cannot be the name of an output format.")
    if name in _FORMATS and not replace:
        raise ValueError(f"An output format named '{name}' is already registered.")
    if name != fmt.name:
        fmt = OutputFormat(name, fmt.suffix, fmt.write_labels, fmt.write_probabilities,
                           fmt.dims, fmt.description)
    _FORMATS[name] = fmt
    return fmt


def _load_format_modules() -> None:
    import importlib

    for module in list(FORMAT_MODULES):
        if module not in _loaded_modules:
            _loaded_modules.add(module)
            importlib.import_module(module)


def output_formats() -> list[str]:
    """Names of the registered output formats, in registration order (``"auto"`` excluded)."""
    _load_format_modules()
    return list(_FORMATS)


def get_output_format(name: str) -> OutputFormat:
    """The registered format called ``name`` (case-insensitive).

    Raises
    ------
    ValueError
        Unknown name; the message lists the known ones.
    """
    _load_format_modules()
    key = str(name).lower().lstrip(".")
    fmt = _FORMATS.get(_ALIASES.get(key, key))
    if fmt is None:
        raise ValueError(f"Unknown output format '{name}'; choose one of: "
                         f"{', '.join(['auto', *_FORMATS])}.")
    return fmt


def is_picture(reference: Volume, source: str | os.PathLike | None = None) -> bool:
    """Whether ``reference`` is a 2D picture (answered with a PNG by ``"auto"``).

    True for a 2D image whose metadata says ``picture`` or a picture ``format``, that was read
    from a picture file or a 2D DICOM file (``source``), or that is a 2D colour Volume.
    """
    if reference.ndim != 2:
        return False
    meta = reference.metadata or {}
    if meta.get("picture") is True or reference.rgb:
        return True
    if str(meta.get("format", "")).lower() in (*PICTURE_FORMATS, "dicom"):
        return True
    if source is not None:
        return Path(source).name.lower().endswith(PICTURE_SUFFIXES + _DICOM_SUFFIXES)
    return False


def default_output_format(reference: Volume, source: str | os.PathLike | None = None) -> str:
    """``"png"`` for a 2D picture input (see :func:`is_picture`), else ``"nifti"``."""
    return "png" if is_picture(reference, source) else "nifti"


def resolve_output_format(fmt: str, reference: Volume,
                          source: str | os.PathLike | None = None) -> OutputFormat:
    """The format to write ``reference``'s prediction in (``"auto"`` resolved), checked to fit.

    Raises
    ------
    ValueError
        Unknown format, or one that cannot hold an image of this dimensionality
        (e.g. a 3D volume as PNG).
    """
    name = default_output_format(reference, source) if str(fmt).lower() == "auto" else fmt
    out = get_output_format(name)
    if reference.ndim not in out.dims:
        shape = "×".join(str(s) for s in reference.shape)
        able = [n for n, f in _FORMATS.items() if reference.ndim in f.dims]
        raise ValueError(
            f"The {out.name.upper()} format holds {' or '.join(f'{d}D' for d in out.dims)} "
            f"images only; {reference.name} is a {reference.ndim}D image ({shape}). "
            f"Choose one of: {', '.join(able)}."
        )
    return out


def label_path(out_dir: str | os.PathLike, stem: str, fmt: str | OutputFormat) -> Path:
    """Path of the label file :func:`write_prediction` writes for ``stem`` in format ``fmt``."""
    out_format = fmt if isinstance(fmt, OutputFormat) else get_output_format(fmt)
    return Path(out_dir) / f"{stem}{out_format.suffix}"


def is_probability_name(name: str, stem: str) -> bool:
    """Whether ``name`` (a file name, or a stem) is ``<stem>_prob_<class value>``, optionally
    followed by a file suffix: a probability map :func:`write_prediction` writes for ``stem``."""
    return re.fullmatch(re.escape(stem) + r"_prob_\d+(\.[0-9A-Za-z]+)*", name) is not None


def _remove_stale_probabilities(out: Path, stem: str, keep: list[Path]) -> None:
    """Delete ``<stem>_prob_<value>.*`` files in ``out`` that this result did not write: maps
    of an earlier prediction (another series, class table or run with probabilities) must not
    lie beside the new labels as if they were theirs."""
    kept = {p.name for p in keep}
    for path in out.iterdir():
        if path.name not in kept and is_probability_name(path.name, stem) and path.is_file():
            try:
                path.unlink()
            except OSError:
                pass  # a file we may not delete stays; the new files are written


def write_prediction(
    result: PredictionResult,
    reference: Volume,
    out_dir: str | os.PathLike,
    stem: str,
    fmt: str = "auto",
    probabilities: bool | str = False,
    *,
    source: str | os.PathLike | None = None,
) -> list[Path]:
    """Write a prediction (and optionally its probabilities) for ``reference`` into ``out_dir``.

    Parameters
    ----------
    result : PredictionResult
        Labels (and probabilities) on ``reference``'s grid.
    reference : Volume
        The image that was segmented (its geometry and kind choose the output).
    out_dir : path-like
        Output folder (created when missing).
    stem : str
        File name without suffix, usually the input's name.
    fmt : str
        ``"auto"`` (PNG for a 2D picture, else NIfTI) or a name from :func:`output_formats`.
    probabilities : bool or str
        False: labels only. True: also the probabilities, in ``fmt``'s own way (16-bit PNG per
        foreground class for PNG/TIFF, float32 NIfTI per class for NIfTI). A format name
        (e.g. ``"nifti"``) stores them in that format instead.
    source : path-like, optional
        The input file or folder, when known (helps ``"auto"`` recognise a picture).

    Returns
    -------
    list of Path
        The label file first, then any probability files. Probability maps of ``stem``
        that an earlier prediction left in ``out_dir`` (``<stem>_prob_<value>.*``) and that
        this one did not write again are deleted, so none of them lies beside labels they
        do not belong to.

    Raises
    ------
    ValueError
        Unknown format, a format that cannot hold this image (3D as PNG), labels that do not
        match the image, probabilities asked for but absent. Nothing is written then.
    OSError
        The folder cannot be written; nothing is left behind.
    """
    out_format = resolve_output_format(fmt, reference, source)
    labels = np.asarray(result.labels)
    if labels.shape != reference.shape:
        raise ValueError(f"The prediction (shape {labels.shape}) does not match the image "
                         f"{reference.name} (shape {reference.shape}).")
    prob_format = None
    if probabilities:
        prob_format = out_format if probabilities is True else resolve_output_format(
            str(probabilities), reference, source)
        if prob_format.write_probabilities is None:
            raise ValueError(f"The {prob_format.name.upper()} format cannot store "
                             "probabilities; choose another format for them.")
        if result.probabilities is None:
            raise ValueError("This prediction has no probabilities to write (predict with "
                             "return_probabilities=True).")
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # staging folders a killed run left behind
    # a short hidden name: a long input name must not fail because of its temp name
    staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out))
    done = False
    try:
        label_file = staging / f"{stem}{out_format.suffix}"
        out_format.write_labels(result, reference, label_file)
        staged = [label_file]
        if prob_format is not None:
            staged += prob_format.write_probabilities(result, reference, staging, stem)
        for path in staged:
            if not path.is_file() or path.parent != staging:
                raise OSError(f"The {out_format.name} writer did not write {path.name}.")
            if (out / path.name).is_dir():
                raise OSError(f"Cannot write {out / path.name}: a folder has that name.")
        final = []
        for path in staged:
            os.replace(path, out / path.name)
            final.append(out / path.name)
        done = True
        _remove_stale_probabilities(out, stem, final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not done:
            try:
                out.rmdir()  # only when this call made it and nothing else is in it
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# built-in writers


def _label_array(result: PredictionResult) -> np.ndarray:
    """Labels as the smallest unsigned integer type that holds them (uint8 / uint16)."""
    labels = np.asarray(result.labels)
    top = int(labels.max(initial=0))
    if labels.size and int(labels.min()) < 0:
        raise ValueError("Label values must not be negative.")
    if top > np.iinfo(np.uint16).max:
        raise ValueError(f"Label value {top} does not fit a 16-bit picture; use --format nifti.")
    return labels.astype(np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16, copy=False)


def _foreground(result: PredictionResult) -> list[int]:
    """Indices of the probability maps to write: every class but the background (0)."""
    n = int(result.probabilities.shape[0])
    values = sorted({int(c["value"]) for c in result.card.classes if int(c["value"]) != 0})
    return [v for v in values if v < n] or list(range(1, n))


def _write_nifti_labels(result: PredictionResult, reference: Volume, path: Path) -> None:
    from napari_medseg.io.nifti import write_nifti

    write_nifti(result.to_volume(reference), path, labels=True)


def _write_nifti_probabilities(result: PredictionResult, reference: Volume, folder: Path,
                               stem: str) -> list[Path]:
    from napari_medseg.io.nifti import write_nifti

    written = []
    for value in _foreground(result):
        prob = np.asarray(result.probabilities[value], dtype=np.float32)
        path = folder / f"{stem}_prob_{value}.nii.gz"
        write_nifti(reference.with_array(prob, f"{reference.name}_prob_{value}"), path)
        written.append(path)
    return written


def _write_picture_labels(result: PredictionResult, reference: Volume, path: Path) -> None:
    from napari_medseg.io.picture import write_picture

    # a Volume, so a known pixel size is kept in the file (PNG pHYs / TIFF resolution)
    write_picture(reference.with_array(_label_array(result), f"{reference.name}_labels"), path)


def _write_probability_pictures(result: PredictionResult, reference: Volume, folder: Path,
                                stem: str) -> list[Path]:
    from napari_medseg.io.picture import write_probability_png

    written = []
    for value in _foreground(result):
        path = folder / f"{stem}_prob_{value}.png"
        write_probability_png(np.asarray(result.probabilities[value], dtype=np.float32), path)
        written.append(path)
    return written


register_output_format(OutputFormat(
    "nifti", ".nii.gz", _write_nifti_labels, _write_nifti_probabilities, (2, 3),
    "NIfTI label map with the image's affine (any image)"))
register_output_format(OutputFormat(
    "png", ".png", _write_picture_labels, _write_probability_pictures, (2,),
    "8/16-bit PNG of label values (2D pictures)"))
register_output_format(OutputFormat(
    "tif", ".tif", _write_picture_labels, _write_probability_pictures, (2,),
    "8/16-bit TIFF of label values (2D pictures)"))
