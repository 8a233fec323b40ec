"""Grow from seeds: scribbles per class become a segmentation, without any trained model.

The user paints short strokes for two or more classes (background included) on a few slices;
:func:`grow_from_seeds` labels every voxel of a box around the strokes (plus a margin in mm)
with the class whose strokes it is best connected to. The work is done by scikit-image
(``random_walker`` with the Jacobi-preconditioned conjugate gradient, or a marker ``watershed``
on the gradient magnitude); this module is glue: the seed convention, the box, spacing and
colour handling.

Seed convention (one integer map on the image grid, e.g. a napari Labels layer)::

    0            no stroke (to be decided)
    background   (default 1, :data:`BACKGROUND_SEED`) strokes on the background
    any other    strokes on the object of that label value (2, 3, ...)
    negative     voxels excluded from the computation (left 0 in the result)

The result keeps each object's value and gives background voxels 0, so it can be merged into a
label map directly (see :func:`seed_labels_to_classes` for a layer painted with other values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Seed value of background strokes (the default of ``grow_from_seeds(background=...)``).
BACKGROUND_SEED = 1
#: Default margin (mm) around the strokes' bounding box that is segmented.
DEFAULT_MARGIN_MM = 10.0
METHODS = ("random_walker", "watershed")
#: Largest box (voxels) the random walker solves at full resolution (see ``max_voxels``).
DEFAULT_MAX_VOXELS = 400_000

__all__ = ["BACKGROUND_SEED", "DEFAULT_MARGIN_MM", "METHODS", "grow_from_seeds", "seed_box",
           "seed_labels_to_classes"]


def _spatial(image: np.ndarray, channel_axis: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """The image with channels last (or none) and its spatial shape."""
    img = np.asarray(image)
    if channel_axis is None:
        return img, img.shape
    img = np.moveaxis(img, channel_axis, -1)
    return img, img.shape[:-1]


def _check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    sp = tuple(float(s) for s in spacing)[-ndim:]
    if len(sp) != ndim or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"The voxel spacing {tuple(spacing)} does not fit a {ndim}D image: "
                         f"it needs {ndim} positive values in mm.")
    return sp


def seed_box(seeds: np.ndarray, spacing: Sequence[float] | None = None,
             margin_mm: float = DEFAULT_MARGIN_MM) -> tuple[slice, ...] | None:
    """Bounding box of all strokes (``seeds > 0``) grown by ``margin_mm`` on every side.

    Parameters
    ----------
    seeds : np.ndarray of int
        Seed map ``(Z, Y, X)`` or ``(Y, X)``.
    spacing : sequence of float, optional
        Voxel size in mm, array order (default 1 mm).
    margin_mm : float
        Margin in mm (rounded up to whole voxels per axis), clipped to the array.

    Returns
    -------
    tuple of slice or None
        None when there is no stroke.
    """
    seeds = np.asarray(seeds)
    sp = _check_spacing(spacing, seeds.ndim)
    idx = np.nonzero(seeds > 0)
    if not idx[0].size:
        return None
    out = []
    for ax, n in enumerate(seeds.shape):
        m = int(np.ceil(max(float(margin_mm), 0.0) / sp[ax]))
        out.append(slice(max(int(idx[ax].min()) - m, 0), min(int(idx[ax].max()) + 1 + m, n)))
    return tuple(out)


def _normalised(img: np.ndarray, multichannel: bool) -> np.ndarray:
    """float32 image scaled to about [0, 1] per channel (1st-99th percentile, clipped)."""
    img = img.astype(np.float32, copy=False)
    chans = [img[..., c] for c in range(img.shape[-1])] if multichannel else [img]
    out = []
    for ch in chans:
        lo, hi = np.percentile(ch, [1.0, 99.0])
        if hi <= lo:
            lo, hi = float(ch.min()), float(ch.max())
        out.append(np.clip((ch - lo) / max(hi - lo, 1e-12), 0.0, 1.0))
    return np.stack(out, -1) if multichannel else out[0]


def _luminance(img: np.ndarray) -> np.ndarray:
    """Grey image of a channels-last image: Rec. 601 luma for RGB(A), else the channel mean."""
    if img.shape[-1] in (3, 4):
        return img[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return img.mean(-1)


def grow_from_seeds(
    image: np.ndarray,
    seeds: np.ndarray,
    spacing: Sequence[float] | None = None,
    roi: tuple[slice, ...] | None = None,
    *,
    method: str = "random_walker",
    beta: float = 1000.0,
    margin_mm: float = DEFAULT_MARGIN_MM,
    background: int = BACKGROUND_SEED,
    channel_axis: int | None = None,
    tol: float = 1e-2,
    smoothing_mm: float = 1.0,
    max_voxels: int | None = DEFAULT_MAX_VOXELS,
) -> np.ndarray:
    """Segment the region around scribbles by growing every class from its strokes.

    Parameters
    ----------
    image : np.ndarray
        Intensities ``(Z, Y, X)`` or ``(Y, X)``; a colour or multi-channel image has one more
        axis, named by ``channel_axis`` (e.g. ``-1`` for an RGB picture ``(Y, X, 3)``).
    seeds : np.ndarray of int
        Strokes on the spatial grid (see the module docstring): 0 = no stroke,
        ``background`` = background strokes, other positive values = object strokes,
        negative = excluded voxels.
    spacing : sequence of float, optional
        Voxel size in mm, spatial array order (anisotropic voxels are honoured by the
        margin and the watershed's smoothing). Default 1 mm.
    roi : tuple of slice, optional
        Region to segment; default: :func:`seed_box` of the strokes with ``margin_mm``. Pass
        ``tuple(slice(None) for _ in shape)`` for the whole image. Voxels outside are 0.
    method : {"random_walker", "watershed"}
        ``"random_walker"`` (scikit-image, mode ``"cg_mg"`` when pyamg is installed, else
        ``"cg_j"``; colour channels are used jointly), or ``"watershed"`` (marker watershed on
        the Gaussian gradient magnitude of the luminance; much faster, leakier).
    beta : float
        Random-walker edge penalty (greater = stops more sharply at intensity edges); the
        image is scaled to [0, 1] first (1st-99th percentile); 1000 beat 130 (scikit-image's
        default) and 5000 on hippocampus MRI scribbles.
    margin_mm : float
        Margin around the strokes when ``roi`` is None.
    background : int
        Seed value of background strokes (default 1); becomes 0 in the result.
    channel_axis : int, optional
        Axis of ``image`` holding channels (None = greyscale).
    tol : float
        Conjugate-gradient tolerance of the random walker (1e-2: same Dice as 1e-3 on
        hippocampus scribbles, 3x faster without pyamg).
    smoothing_mm : float
        Gaussian scale (mm) of the watershed's gradient.
    max_voxels : int or None
        A random walker over a larger box is solved on a grid coarsened by a whole factor per
        axis (block means of the image; every stroke kept) and the result is brought back by
        nearest neighbour, strokes exact: seconds instead of minutes on a CT crop. None = never.

    Returns
    -------
    np.ndarray
        Labels on the spatial grid (uint8, or int32 beyond 255): each voxel of ``roi`` gets the
        value of the object it is grown into, background 0; 0 outside ``roi``.

    Raises
    ------
    ValueError
        Shapes that do not match, unknown method, or strokes of fewer than two classes.

    Examples
    --------
    >>> img = np.zeros((20, 20), np.float32); img[5:15, 5:15] = 1
    >>> seeds = np.zeros((20, 20), np.int32); seeds[1, 1] = 1; seeds[10, 10] = 2
    >>> out = grow_from_seeds(img, seeds, roi=(slice(None), slice(None)))
    >>> int(out[7, 12]), int(out[2, 18])
    (2, 0)
    """
    if method not in METHODS:
        raise ValueError(f"Unknown grow-from-seeds method {method!r}; use one of {METHODS}.")
    img, shape = _spatial(image, channel_axis)
    seeds = np.asarray(seeds)
    if seeds.shape != shape:
        raise ValueError(f"The scribbles {seeds.shape} and the image {shape} differ in shape.")
    if len(shape) not in (2, 3):
        raise ValueError(f"Grow from seeds works on 2D and 3D images, not {len(shape)}D.")
    if not np.issubdtype(seeds.dtype, np.integer):
        if not np.all(np.isfinite(seeds)) or np.any(seeds != np.round(seeds)):
            raise ValueError("Scribbles must be whole label values.")
        seeds = seeds.astype(np.int64)
    background = int(background)
    if background <= 0:
        raise ValueError("The background seed value must be positive (0 means no stroke).")
    sp = _check_spacing(spacing, len(shape))
    values = [int(v) for v in np.unique(seeds) if v > 0]
    if len(values) < 2:
        raise ValueError("Paint strokes of at least two classes (background and an object) "
                         "before growing from seeds.")
    box = roi if roi is not None else seed_box(seeds, sp, margin_mm)
    box = tuple(slice(*s.indices(n)[:2]) for s, n in zip(box, shape, strict=True))
    sub_seeds = seeds[box].astype(np.int32)
    multichannel = channel_axis is not None
    sub_img = _normalised(img[box], multichannel)
    out_dtype = np.uint8 if max(values) <= 255 else np.int32
    result = np.zeros(shape, dtype=out_dtype)
    if not np.any(sub_seeds > 0):
        return result
    present = [int(v) for v in np.unique(sub_seeds) if v > 0]
    if len(present) == 1:  # one class inside the box: it takes every voxel
        grown = np.where(sub_seeds >= 0, present[0], 0)
    elif method == "random_walker":
        grown = _coarse_random_walker(sub_img, sub_seeds, sp, beta, tol, multichannel,
                                      max_voxels)
    else:
        grown = _watershed(sub_img, sub_seeds, sp, smoothing_mm, multichannel)
    grown = np.where(grown == background, 0, grown)
    grown[sub_seeds < 0] = 0
    result[box] = grown.astype(out_dtype)
    return result


def _random_walker(img: np.ndarray, seeds: np.ndarray, spacing: tuple[float, ...], beta: float,
                   tol: float, multichannel: bool) -> np.ndarray:
    import warnings

    from skimage.segmentation import random_walker

    try:
        import pyamg  # noqa: F401

        mode = "cg_mg"
    except ImportError:
        mode = "cg_j"
    # scikit-image numbers the classes 1..n when the values have gaps: map them back
    values = np.array(sorted(int(v) for v in np.unique(seeds) if v > 0))
    sequential = np.where(seeds > 0, np.searchsorted(values, seeds) + 1, np.minimum(seeds, 0))
    with warnings.catch_warnings():
        # "the probability range is outside [0, 1]" for tiny negative round-off
        warnings.simplefilter("ignore", UserWarning)
        # no ``spacing=``: scikit-image only divides the intensity steps by it, which lets
        # strokes on a few thick slices spread far too little in-plane (measured on blobs);
        # the box and margin are in mm, the edge weights per voxel step
        out = random_walker(img, sequential.astype(np.int32), beta=beta, mode=mode, tol=tol,
                            channel_axis=-1 if multichannel else None)
    out = np.asarray(out)
    return np.where(out > 0, values[np.clip(out - 1, 0, len(values) - 1)], 0)


def _coarse_random_walker(img: np.ndarray, seeds: np.ndarray, spacing: tuple[float, ...],
                          beta: float, tol: float, multichannel: bool,
                          max_voxels: int | None) -> np.ndarray:
    """Random walker, on a coarser grid when the box has more than ``max_voxels`` voxels."""
    from skimage.measure import block_reduce

    n = seeds.size
    if not max_voxels or n <= max_voxels:
        return _random_walker(img, seeds, spacing, beta, tol, multichannel)
    # coarsen fine axes more than thick ones (voxels closer to cubes), then grow the factors
    # of every axis still longer than 8 coarse voxels until the grid is small enough
    ratio = (n / max_voxels) ** (1.0 / seeds.ndim)
    mean_sp = float(np.exp(np.mean(np.log(spacing))))
    factors = tuple(max(1, int(round(ratio * mean_sp / s))) if seeds.shape[ax] > 8 else 1
                    for ax, s in enumerate(spacing))
    while int(np.prod([np.ceil(m / f) for m, f in zip(seeds.shape, factors, strict=True)])) \
            > max_voxels:
        factors = tuple(f + 1 if m > 8 * f else f for m, f in zip(seeds.shape, factors,
                                                                     strict=True))
        if all(m <= 8 * f for m, f in zip(seeds.shape, factors, strict=True)):
            break
    block = factors + ((1,) if multichannel else ())
    coarse_img = block_reduce(img, block, np.mean, cval=float(img.mean()))
    coarse_seeds = np.zeros(coarse_img.shape[:seeds.ndim], np.int32)
    excluded = block_reduce(seeds < 0, factors, np.min, cval=True)
    coarse_seeds[excluded] = -1
    for v in sorted(int(v) for v in np.unique(seeds) if v > 0):
        hit = block_reduce(seeds == v, factors, np.max, cval=False)
        coarse_seeds[hit & (coarse_seeds == 0)] = v
    coarse_sp = tuple(s * f for s, f in zip(spacing, factors, strict=True))
    grown = _random_walker(coarse_img, coarse_seeds, coarse_sp, beta, tol, multichannel)
    for ax, f in enumerate(factors):
        grown = np.repeat(grown, f, axis=ax)
    grown = grown[tuple(slice(0, m) for m in seeds.shape)]
    grown = np.where(seeds > 0, seeds, grown)
    return grown


def _watershed(img: np.ndarray, seeds: np.ndarray, spacing: tuple[float, ...],
               smoothing_mm: float, multichannel: bool) -> np.ndarray:
    from scipy import ndimage
    from skimage.segmentation import watershed

    grey = _luminance(img) if multichannel else img
    sigma = [max(float(smoothing_mm) / s, 0.3) for s in spacing]
    gradient = ndimage.gaussian_gradient_magnitude(grey.astype(np.float32), sigma)
    markers = np.where(seeds > 0, seeds, 0)
    return watershed(gradient, markers, mask=seeds >= 0)


def seed_labels_to_classes(seeds: np.ndarray, mapping: Mapping[int, int],
                           background: int = BACKGROUND_SEED) -> np.ndarray:
    """Re-number a scribble layer painted with other values into the seed convention.

    Parameters
    ----------
    seeds : np.ndarray of int
        Strokes as painted.
    mapping : mapping of int to int
        Painted value -> label value of the object (0 = background strokes).
    background : int
        Seed value given to background strokes.

    Returns
    -------
    np.ndarray of int32
        Seeds in the convention of :func:`grow_from_seeds`; unmapped strokes are dropped (0).
    """
    seeds = np.asarray(seeds)
    out = np.zeros(seeds.shape, dtype=np.int32)
    for painted, value in mapping.items():
        out[seeds == painted] = background if int(value) == 0 else int(value)
    return out
