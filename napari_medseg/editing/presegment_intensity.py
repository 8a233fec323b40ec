"""Pre-segmentation by intensity rules: thresholds, region growing, marker watershed, and
window-constrained painting.

Concern: label maps computed directly from intensities and the user's seeds, without fitting a
model: a window or (multi-)Otsu threshold (:func:`threshold_segment`, :func:`intensity_mask`),
the region flooded from a seed voxel (:func:`region_grow`), the watershed from brush-stroke
markers (:func:`watershed_segment`), and a brush stroke kept only inside an intensity window
(:func:`constrain_paint`). Part of :mod:`napari_medseg.editing.presegment`, which re-exports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_medseg.editing._presegment_common import check_mask, label_dtype
from napari_medseg.editing._validation import EditingError, check_image, check_labels


def intensity_mask(image: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """Voxels whose intensity lies in ``[low, high]`` (inclusive; None = unbounded)."""
    img = check_image(image)
    if low is not None and high is not None and low > high:
        raise EditingError(f"The intensity window is empty: low {low} is above high {high}.")
    out = np.ones(img.shape, dtype=bool)
    if low is not None:
        out &= img >= low
    if high is not None:
        out &= img <= high
    return out


def threshold_segment(
    image: np.ndarray,
    method: str = "otsu",
    low: float | None = None,
    high: float | None = None,
    *,
    n_classes: int = 3,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Intensity thresholding.

    Parameters
    ----------
    image : np.ndarray
        Intensities, ``(Z, Y, X)`` or ``(Y, X)``.
    method : {"otsu", "window", "multiotsu"}
        ``"otsu"``: label 1 = voxels above Otsu's threshold (computed inside ``mask``);
        ``"window"``: label 1 = voxels with ``low <= intensity <= high`` (either bound may be
        None, not both); ``"multiotsu"``: ``n_classes`` classes 1..n from multi-Otsu thresholds.
    low, high : float, optional
        Window bounds (same units as the image, e.g. HU), for ``"window"``.
    n_classes : int
        Number of classes for ``"multiotsu"``.
    mask : np.ndarray of bool, optional
        Only these voxels are classified (others are 0).

    Returns
    -------
    np.ndarray of uint8
        Label map, same shape as ``image``.
    """
    from skimage import filters

    img = check_image(image)
    m = check_mask(mask, img.shape)
    values = img[m]
    if method == "window":
        if low is None and high is None:
            raise EditingError("Give a low and/or a high intensity for the window threshold.")
        return (intensity_mask(img, low, high) & m).astype(np.uint8)
    if np.all(values == values.flat[0]):
        raise EditingError("The image has a single intensity value; nothing to threshold.")
    if method == "otsu":
        t = filters.threshold_otsu(values)
        return ((img > t) & m).astype(np.uint8)
    if method == "multiotsu":
        if int(n_classes) < 2:
            raise EditingError(f"Multi-Otsu needs at least 2 classes, got {n_classes}.")
        thresholds = filters.threshold_multiotsu(values, classes=int(n_classes))
        out = (np.digitize(img, thresholds) + 1).astype(label_dtype(int(n_classes)))
        out[~m] = 0
        return out
    raise EditingError(f"Unknown threshold method {method!r}; choose 'otsu', 'window' or "
                       f"'multiotsu'.")


def region_grow(
    image: np.ndarray,
    seed: Sequence[int],
    tolerance: float,
    connectivity: int = 1,
) -> np.ndarray:
    """Region growing: the connected region around ``seed`` within ``tolerance`` of its value.

    Parameters
    ----------
    image : np.ndarray
        Intensities, ``(Z, Y, X)`` or ``(Y, X)``.
    seed : sequence of int
        Seed voxel index in array order (``(z, y, x)``).
    tolerance : float
        Voxels with ``|intensity - intensity[seed]| <= tolerance`` join the region (image units).
    connectivity : int
        1 = faces (6 neighbours in 3D) ... ndim = faces, edges and corners.

    Returns
    -------
    np.ndarray of uint8
        1 inside the grown region, 0 elsewhere.
    """
    from skimage.segmentation import flood

    img = check_image(image)
    if len(seed) != img.ndim:
        raise EditingError(f"The seed {tuple(seed)} must have {img.ndim} coordinates "
                           f"(array order) for this {img.ndim}D image.")
    pt = tuple(int(round(float(s))) for s in seed)
    if any(not 0 <= p < n for p, n in zip(pt, img.shape, strict=False)):
        raise EditingError(f"The seed {pt} lies outside the image of shape {img.shape}.")
    tol = float(tolerance)
    if not np.isfinite(tol) or tol < 0:
        raise EditingError(f"The tolerance must be zero or positive, got {tolerance}.")
    if not 1 <= int(connectivity) <= img.ndim:
        raise EditingError(f"Connectivity must be between 1 and {img.ndim}, got {connectivity}.")
    region = flood(img.astype(np.float64, copy=False), pt, tolerance=tol,
                   connectivity=int(connectivity))
    return region.astype(np.uint8)


def watershed_segment(
    image: np.ndarray,
    markers: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    use_gradient: bool = True,
    compactness: float = 0.0,
) -> np.ndarray:
    """Marker-based watershed: every voxel joins the marker region it floods from.

    Parameters
    ----------
    image : np.ndarray
        Intensities, ``(Z, Y, X)`` or ``(Y, X)``.
    markers : np.ndarray
        Integer label map of seeds (0 = unknown), same shape; e.g. a few brush strokes per
        structure. Output labels are the marker values.
    mask : np.ndarray of bool, optional
        Voxels outside are 0.
    use_gradient : bool
        Flood the gradient magnitude (Sobel) of the image, so that regions stop at edges
        (default); False floods the raw intensities.
    compactness : float
        Compact watershed parameter (0 = classic).

    Returns
    -------
    np.ndarray
        Label map with the dtype of ``markers``.
    """
    from skimage import filters
    from skimage.segmentation import watershed

    img = check_image(image)
    mk = check_labels(markers, ndims=(img.ndim,))
    if mk.shape != img.shape:
        raise EditingError(f"The markers have shape {mk.shape} but the image has shape "
                           f"{img.shape}.")
    if not np.any(mk > 0):
        raise EditingError("Place at least one marker (a non-zero label) for the watershed.")
    m = None if mask is None else check_mask(mask, img.shape)
    relief = filters.sobel(img.astype(np.float64)) if use_gradient else img
    out = watershed(relief, markers=mk, mask=m, compactness=float(compactness))
    return out.astype(mk.dtype, copy=False)


def constrain_paint(
    old_labels: np.ndarray,
    new_labels: np.ndarray,
    image: np.ndarray,
    low: float | None,
    high: float | None,
) -> np.ndarray:
    """Keep a brush stroke only where the image intensity lies within ``[low, high]``.

    Parameters
    ----------
    old_labels, new_labels : np.ndarray
        Label map before and after a paint/erase stroke (same shape).
    image : np.ndarray
        Intensities of the same shape.
    low, high : float or None
        Intensity window (image units, e.g. HU); None = unbounded.

    Returns
    -------
    np.ndarray
        ``new_labels`` where it differs from ``old_labels`` and the intensity is inside the window;
        ``old_labels`` everywhere else (a new array).
    """
    old = check_labels(old_labels)
    new = check_labels(new_labels)
    img = check_image(image)
    if not (old.shape == new.shape == img.shape):
        raise EditingError(f"Label maps {old.shape}, {new.shape} and image {img.shape} must have "
                           f"the same shape.")
    window = intensity_mask(img, low, high)
    out = old.copy()
    take = (old != new) & window
    out[take] = new[take]
    return out
