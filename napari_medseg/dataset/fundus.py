"""Colour fundus photographs: the camera's field of view, and the CHASE_DB1 dataset as nnU-Net v2.

A fundus camera images the retina through a round aperture: the photograph is a bright disc
(sometimes cut flat at the top and bottom) on a black surround. Pixels outside that field of view
(FOV) hold no anatomy; fundus benchmarks (DRIVE, STARE, CHASE_DB1) compute their metrics inside
it. :func:`fundus_fov_mask` finds it by thresholding the dark surround;
:func:`chase_db1_dataset` writes CHASE_DB1 (which ships no FOV masks) as an nnU-Net v2
natural-image dataset with such masks in ``masksTr/``, ready for
:func:`~napari_medseg.dataset.msd.load_msd_dataset`.

Pure core: numpy, scipy and scikit-image; never napari or Qt.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.dataset.msd import ROI_FOLDER, DatasetError
from napari_medseg.io.volume import Volume

#: Fraction of the way from the dark surround to the bright retina where the FOV edge is put.
FOV_EDGE_FRACTION = 0.05
#: A picture whose darkest 1 % is brighter than this fraction of its brightest has no dark
#: surround: the whole picture is the field of view.
NO_BORDER_FRACTION = 0.25

#: CHASE_DB1: children 01-10 train, 11-14 test (the source's CHASE / CHASET folders).
CHASE_TRAIN_CHILDREN = tuple(range(1, 11))
CHASE_TEST_CHILDREN = tuple(range(11, 15))


def _brightness(image: Any) -> np.ndarray:
    """``(Y, X)`` float32 brightness: the largest of the colour channels (the red one, for a
    fundus photograph), or the grey values."""
    if isinstance(image, Volume):
        array = np.asarray(image.array)
        colour = image.rgb
    elif isinstance(image, (list, tuple)):
        planes = [np.asarray(p.array if isinstance(p, Volume) else p) for p in image]
        array, colour = np.stack(planes, axis=-1), True
    else:
        array = np.asarray(image)
        colour = array.ndim == 3 and array.shape[-1] in (3, 4)
    if colour:
        array = array[..., :3].max(axis=-1) if array.shape[-1] >= 3 else array.max(axis=-1)
    if array.ndim != 2:
        raise ValueError(
            f"A fundus photograph must be a 2D greyscale or colour picture, got an array of "
            f"shape {np.shape(array)}."
        )
    return array.astype(np.float32, copy=False)


def fundus_fov_mask(
    image: np.ndarray | Volume | Sequence[np.ndarray | Volume],
    threshold: float | None = None,
    erode_px: int = 2,
) -> np.ndarray:
    """The circular field of view of a colour fundus photograph (True inside).

    The brightest colour channel (red, on a fundus photograph) is smoothed over 3 x 3 pixels (JPEG
    noise) and thresholded just above the dark surround; the largest connected region is kept,
    closed to its convex hull (dark lesions or vignetting at the rim do not bite into it) and
    eroded by ``erode_px`` pixels so the rim of the aperture is left out. On CHASE_DB1 the mask
    covers 65-70 % of each photograph and holds more than 99 % of the annotated vessel pixels
    (observers trace vessels up to the blurred rim, so a wider erosion costs vessels).

    Parameters
    ----------
    image : np.ndarray, Volume or sequence of them
        ``(Y, X, 3|4)`` colour array (channels last), ``(Y, X)`` greyscale array, a Volume
        (colour or grey), or the channels as separate ``(Y, X)`` planes.
    threshold : float, optional
        Brightness (in the picture's units, e.g. 0-255) above which a pixel is inside. By
        default 5 % of the way from the darkest percent of the picture to its brightest
        half-percent; a picture without a dark surround is all field of view.
    erode_px : int
        Pixels removed from the thresholded edge (0 = none; the smoothing moves a sharp edge
        out by one pixel, so the default drops one pixel of the aperture itself). The picture's
        own edges are not eroded: a field of view cut by the frame keeps its straight edges.

    Returns
    -------
    np.ndarray
        ``(Y, X)`` bool mask.

    Raises
    ------
    ValueError
        Not a 2D picture, a black picture, or nothing above ``threshold``.

    Examples
    --------
    >>> y, x = np.mgrid[:100, :120]
    >>> photo = np.zeros((100, 120, 3), np.uint8)
    >>> photo[(y - 50) ** 2 + (x - 60) ** 2 < 40 ** 2] = (180, 90, 40)
    >>> mask = fundus_fov_mask(photo)
    >>> bool(mask[50, 60]), bool(mask[0, 0]), 0.35 < float(mask.mean()) < 0.42
    (True, False, True)
    """
    from scipy import ndimage as ndi

    brightness = ndi.uniform_filter(_brightness(image), size=3)
    low, high = (float(v) for v in np.percentile(brightness, [1.0, 99.5]))
    if not high > 0:
        raise ValueError("The picture is black: it has no field of view.")
    if threshold is None:
        if low > NO_BORDER_FRACTION * high:
            return np.ones(brightness.shape, dtype=bool)
        threshold = low + FOV_EDGE_FRACTION * (high - low)
    inside = brightness > float(threshold)
    regions, count = ndi.label(inside)
    if count == 0:
        raise ValueError(f"No pixel of the picture is brighter than the threshold {threshold:g}.")
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    mask = _convex_hull(regions == int(sizes.argmax()))
    if erode_px > 0:
        r = int(erode_px)
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        mask = ndi.binary_erosion(mask, structure=yy ** 2 + xx ** 2 <= r * r, border_value=1)
    return np.asarray(mask, dtype=bool)


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    """``mask`` filled to its convex hull, row by row between the hull's left and right chains
    (a vectorised fill: pixel-by-pixel polygon tests take seconds on a photograph)."""
    from scipy import ndimage as ndi
    from scipy.spatial import ConvexHull, QhullError

    edge = np.argwhere(mask & ~ndi.binary_erosion(mask, border_value=0)).astype(float)
    try:
        corners = edge[ConvexHull(edge).vertices]  # counter-clockwise, (row, col)
    except (QhullError, ValueError):  # a line or a few pixels: nothing to fill
        return mask
    top, bottom = int(np.argmin(corners[:, 0])), int(np.argmax(corners[:, 0]))
    n = len(corners)
    forward = corners[[(top + i) % n for i in range((bottom - top) % n + 1)]]
    backward = corners[[(top - i) % n for i in range((top - bottom) % n + 1)]]
    rows = np.arange(mask.shape[0], dtype=float)
    a = np.interp(rows, forward[:, 0], forward[:, 1])
    b = np.interp(rows, backward[:, 0], backward[:, 1])
    low, high = np.minimum(a, b), np.maximum(a, b)
    inside_rows = (rows >= corners[top, 0]) & (rows <= corners[bottom, 0])
    cols = np.arange(mask.shape[1], dtype=float)[None, :]
    hull = (cols >= np.ceil(low - 1e-6)[:, None]) & (cols <= np.floor(high + 1e-6)[:, None])
    hull &= inside_rows[:, None]
    return hull | mask


# --------------------------------------------------------------------------------------------
# CHASE_DB1


def default_chase_db1_dir() -> Path:
    """Where the shared data keeps CHASE_DB1: ``$MEDSEG_SHARED_DATA/CHASE_DB1``, else
    ``../shared/data/CHASE_DB1`` beside the source checkout."""
    env = os.environ.get("MEDSEG_SHARED_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return base / "CHASE_DB1"


def _chase_child(case_id: str) -> int:
    """``Image_07L`` -> 7."""
    try:
        return int(case_id.split("_")[1][:2])
    except (IndexError, ValueError):
        raise DatasetError(f"{case_id} is not a CHASE_DB1 image name (Image_NNL / Image_NNR).") \
            from None


def chase_db1_dataset(
    out_dir: str | os.PathLike,
    src: str | os.PathLike | None = None,
    split: str | tuple[Sequence[str], Sequence[str]] = "children",
    fov: bool = True,
    file_ending: str = ".jpg",
) -> Path:
    """Write CHASE_DB1 as an nnU-Net v2 natural-image dataset (with FOV masks and a split).

    Layout written (the photographs and masks are copied byte for byte)::

        OUT_DIR/
          dataset.json        channel_names red/green/blue, labels background 0 / vessel 1,
                              file_ending ".jpg" (or ".png"), numTraining 28
          imagesTr/Image_01L_0000.jpg ...   the 28 colour photographs (999 wide, 960 high)
          labelsTr/Image_01L.png ...        1st human observer's vessels (0/1, 1-bit PNG)
          masksTr/Image_01L.png ...         field of view (0/255) from :func:`fundus_fov_mask`
          splits_final.json   [{"train": [20 ids], "val": [8 ids]}]

    All 28 cases are training cases of the folder; the fixed split says which 8 to hold out.
    Read it with :func:`~napari_medseg.dataset.msd.read_splits` (``val`` = the test cases).

    Parameters
    ----------
    out_dir : path
        New (or empty) folder. It is written in a temporary folder beside it and moved into
        place, so a failure leaves nothing behind.
    src : path, optional
        The CHASE_DB1 copy (``images/Image_NN{L,R}.jpg``, ``masks/*_1stHO.png``); default
        :func:`default_chase_db1_dir`.
    split : "children" or (train_ids, test_ids)
        ``"children"``: the 20 photographs of children 01-10 train, the 8 of children 11-14
        test (as the source's CHASE / CHASET folders), so both eyes of a child stay on one
        side. Or explicit case id lists.
    fov : bool
        Write ``masksTr/`` field-of-view masks (left out of the loss and the metrics).
    file_ending : ".jpg" or ".png"
        ``".jpg"`` copies the photographs as they are (napari-medseg reads JPEG images with
        PNG labels); ``".png"`` stores the decoded pixels as PNG (the same values, about ten
        times larger), images and labels then share one file ending as nnU-Net v2 itself
        requires.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    DatasetError
        Source missing or incomplete, ``out_dir`` not empty, unknown split.
    """
    if file_ending not in (".jpg", ".png"):
        raise DatasetError(f"CHASE_DB1 is written with file_ending '.jpg' or '.png', not "
                           f"{file_ending!r}.")
    source = Path(src) if src is not None else default_chase_db1_dir()
    images_dir, masks_dir = source / "images", source / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DatasetError(f"No CHASE_DB1 copy at {source} (expected images/ and masks/).")
    photos = sorted(p for p in images_dir.iterdir() if p.name.lower().endswith(".jpg"))
    if not photos:
        raise DatasetError(f"{images_dir} holds no CHASE_DB1 photographs (Image_NNL.jpg).")
    ids = [p.name[: -len(".jpg")] for p in photos]
    vessels = {cid: masks_dir / f"{cid}_1stHO.png" for cid in ids}
    missing = [cid for cid, path in vessels.items() if not path.is_file()]
    if missing:
        raise DatasetError(f"CHASE_DB1 vessel masks missing in {masks_dir}: "
                           f"{', '.join(missing[:5])}.")
    if split == "children":
        train = [c for c in ids if _chase_child(c) in CHASE_TRAIN_CHILDREN]
        test = [c for c in ids if _chase_child(c) in CHASE_TEST_CHILDREN]
    elif isinstance(split, (tuple, list)) and len(split) == 2 and not isinstance(split, str):
        train, test = sorted(split[0]), sorted(split[1])
        unknown = sorted(set(train + test) - set(ids))
        if unknown:
            raise DatasetError(f"Split names cases not in CHASE_DB1: {', '.join(unknown[:5])}.")
    else:
        raise DatasetError(f"Unknown CHASE_DB1 split {split!r}: use 'children' or "
                           "(train_ids, test_ids).")

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out} already exists and is not an empty folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _write_chase(tmp, photos, vessels, train, test, fov, file_ending)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_chase(root: Path, photos: list[Path], vessels: dict[str, Path],
                 train: list[str], test: list[str], fov: bool, file_ending: str) -> None:
    from PIL import Image

    from napari_medseg.io.picture import read_picture, write_picture

    for sub in ("imagesTr", "labelsTr") + ((ROI_FOLDER,) if fov else ()):
        (root / sub).mkdir()
    for photo in photos:
        cid = photo.name[: -len(".jpg")]
        image = root / "imagesTr" / f"{cid}_0000{file_ending}"
        if file_ending == ".jpg":
            shutil.copyfile(photo, image)
        else:
            with Image.open(photo) as img:
                img.convert("RGB").save(image, format="PNG")
        shutil.copyfile(vessels[cid], root / "labelsTr" / f"{cid}.png")
        if fov:
            mask = fundus_fov_mask(read_picture(photo))
            write_picture(mask.astype(np.uint8) * 255, root / ROI_FOLDER / f"{cid}.png")
    meta = {
        "name": "CHASE_DB1",
        "description": "Retinal vessels on colour fundus photographs of children (CHASE_DB1, "
                       "1st human observer). Field-of-view masks in masksTr/ derived by "
                       "napari_medseg.dataset.fundus.fundus_fov_mask.",
        "reference": "Fraz et al., IEEE TBME 59(9):2538-2548, 2012. doi:10.1109/TBME.2012.2205687",
        "licence": "CC BY 4.0, Kingston University London / St George's, University of London",
        "channel_names": {"0": "red", "1": "green", "2": "blue"},
        "labels": {"background": 0, "vessel": 1},
        "numTraining": len(photos),
        "file_ending": file_ending,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    (root / "splits_final.json").write_text(json.dumps([{"train": train, "val": test}], indent=2))
