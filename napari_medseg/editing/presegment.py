"""Classical pre-segmentation: thresholds, region growing, k-means / EM clustering, watershed.

Each function takes an image (``(Z, Y, X)`` or ``(Y, X)``, intensities such as HU) and returns a
label map (``np.uint8`` unless more than 255 classes/markers) that the annotator then corrects.
Clustering classes are numbered 1..n by increasing mean intensity; 0 is "not classified" (outside
``mask``, and by default the air around the body: see :func:`outside_air_mask`).

Large volumes (a 512 x 512 x 400 CT) are handled without whole-volume calls that hold Python's
GIL for long (``np.bincount``, ``np.unique`` with inverse): these functions run in GUI worker
threads, and such a call would freeze the viewer although it runs in the background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_medseg.editing._validation import EditingError, check_image, check_labels

__all__ = [
    "threshold_segment",
    "region_grow",
    "kmeans_segment",
    "gmm_segment",
    "watershed_segment",
    "intensity_mask",
    "constrain_paint",
    "outside_air_mask",
    "air_threshold",
    "import_clustering",
]

#: Clustering fits on at most this many voxels (a random subset), then labels every voxel.
MAX_FIT_SAMPLES = 200_000

#: CT voxels at or below this value (HU) are air for :func:`outside_air_mask` (air -1000,
#: lung about -800, fat -100: the threshold sits between air and any soft tissue).
CT_AIR_HU = -500.0

#: Other images (MR, unknown): air lies below ``min + AIR_RANGE_FRACTION * (p99 - min)``.
AIR_RANGE_FRACTION = 0.1

#: Voxels per chunk when a whole volume is classified piece by piece (GMM on float images).
_CHUNK_VOXELS = 1 << 20


def _label_dtype(n: int) -> type:
    return np.uint8 if n <= 255 else np.int32


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise EditingError(f"The mask has shape {m.shape} but the image has shape {shape}.")
    if not m.any():
        raise EditingError("The mask is empty: there are no voxels to classify.")
    return m


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
    m = _check_mask(mask, img.shape)
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
        out = (np.digitize(img, thresholds) + 1).astype(_label_dtype(int(n_classes)))
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


def _looks_like_ct(img: np.ndarray, modality: str | None) -> bool:
    """True for CT (by ``modality``, or, when it is unknown, by air at about -1000 HU)."""
    if modality:
        name = str(modality).upper()
        if name == "CT":
            return True
        if name not in ("UNKNOWN", "OT"):
            return False
    return float(img.min()) <= -900.0 and float(img.max()) >= -200.0


def _sample(img: np.ndarray, n: int = 1_000_000) -> np.ndarray:
    """About ``n`` voxels of ``img`` on a regular stride (cheap percentiles of big volumes)."""
    flat = img.reshape(-1)
    return flat[:: max(flat.size // n, 1)]


def air_threshold(image: np.ndarray, modality: str | None = None) -> float:
    """Intensity at or below which a voxel may be air (image units).

    CT: :data:`CT_AIR_HU` (-500 HU). Other images: ``min + AIR_RANGE_FRACTION * (p99 - min)``,
    i.e. near the dark end of the intensity range, where MR background noise lies.

    Parameters
    ----------
    image : np.ndarray
        Intensities, ``(Z, Y, X)`` or ``(Y, X)``.
    modality : str, optional
        ``"CT"``, ``"MR"`` ...; unknown: CT is recognised by air near -1000 HU.
    """
    img = check_image(image)
    if _looks_like_ct(img, modality):
        return CT_AIR_HU
    lo = float(img.min())
    hi = float(np.percentile(_sample(img), 99))
    return lo + AIR_RANGE_FRACTION * (hi - lo)


def outside_air_mask(
    image: np.ndarray,
    modality: str | None = None,
    threshold: float | None = None,
) -> np.ndarray:
    """The air around the body: dark voxels connected to the image border within their slice.

    Each axial slice (axis 0 of a ``(Z, Y, X)`` volume) is examined on its own, so air inside
    the body (lungs, bowel gas, a trachea cut by the first slice) is enclosed by tissue in that
    slice and is *not* part of the result. Images of other than CT are smoothed over 3 x 3
    pixels first, so background noise does not break the air into islands.

    Parameters
    ----------
    image : np.ndarray
        Intensities, ``(Z, Y, X)`` or ``(Y, X)``.
    modality : str, optional
        Chooses the air threshold (see :func:`air_threshold`).
    threshold : float, optional
        Explicit air threshold (image units, e.g. HU); overrides ``modality``.

    Returns
    -------
    np.ndarray of bool
        True on outside air; same shape as ``image``. A cropped image with no air around the
        body gives (almost) all False.
    """
    from scipy import ndimage as ndi

    img = check_image(image)
    ct = _looks_like_ct(img, modality)
    t = float(threshold) if threshold is not None else air_threshold(img, modality)
    if ct:
        dark = img <= t
    else:
        size = (1, 3, 3) if img.ndim == 3 else (3, 3)
        dark = ndi.uniform_filter(img.astype(np.float32), size=size) <= t
    cross = ndi.generate_binary_structure(2, 1)
    structure = cross[None] if img.ndim == 3 else cross
    if img.ndim == 3:  # no connection between slices
        structure = np.concatenate([np.zeros_like(structure), structure,
                                    np.zeros_like(structure)])
    regions, n = ndi.label(dark, structure=structure)
    if n == 0:
        return np.zeros(img.shape, dtype=bool)
    border = np.concatenate([regions[..., 0, :].ravel(), regions[..., -1, :].ravel(),
                             regions[..., :, 0].ravel(), regions[..., :, -1].ravel()])
    touching = np.zeros(n + 1, dtype=bool)
    touching[np.unique(border)] = True
    touching[0] = False
    return touching[regions]


def _classified_voxels(img: np.ndarray, mask: np.ndarray | None, exclude_air: bool,
                       modality: str | None) -> np.ndarray:
    """Voxels to cluster: ``mask`` (default all) without the outside air when asked."""
    m = _check_mask(mask, img.shape)
    if exclude_air:
        m = m & ~outside_air_mask(img, modality)
        if not m.any():
            raise EditingError("The image holds only air around the body: there are no tissue "
                               "voxels to classify.")
    return m


def import_clustering() -> None:
    """Import scikit-learn's clustering now (about 2 s), e.g. in a background thread.

    A module import holds Python's GIL for up to ~0.2 s at a time; done while the user is
    still choosing options, the first k-means / GMM run does not pay for it.
    """
    import sklearn.cluster  # noqa: F401
    import sklearn.mixture  # noqa: F401
    import threadpoolctl  # noqa: F401


def _one_thread():
    """Fit with one BLAS/OpenMP thread: a few hundred thousand 1D samples gain nothing from
    more, and a free core keeps the viewer responsive while this runs in the background."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _fit_values(img: np.ndarray, m: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """At most :data:`MAX_FIT_SAMPLES` random intensities from inside ``m``, as ``(N, 1)``."""
    n = int(n_classes)
    if n < 2:
        raise EditingError(f"Choose at least 2 classes, got {n_classes}.")
    rng = np.random.default_rng(seed)
    inside = int(np.count_nonzero(m))
    stride = max(img.size // (4 * MAX_FIT_SAMPLES), 1) if inside * 2 > img.size else 1
    values = img.reshape(-1)[::stride][m.reshape(-1)[::stride]]
    if values.size < min(inside, MAX_FIT_SAMPLES):  # a thin mask: take all of it
        values = img[m]
    if values.size > MAX_FIT_SAMPLES:
        values = values[rng.choice(values.size, MAX_FIT_SAMPLES, replace=False)]
    values = values.astype(np.float64)
    if np.unique(values).size < n and np.unique(img[m]).size < n:
        raise EditingError(f"The image has fewer distinct intensities than the {n} classes asked.")
    return values.reshape(-1, 1)


def kmeans_segment(
    image: np.ndarray,
    n_classes: int,
    mask: np.ndarray | None = None,
    seed: int = 0,
    *,
    exclude_air: bool = True,
    modality: str | None = None,
) -> np.ndarray:
    """k-means clustering of intensities into ``n_classes`` classes (1..n, darkest first).

    Fits ``sklearn.cluster.KMeans`` on up to :data:`MAX_FIT_SAMPLES` voxels inside ``mask``
    (without the air around the body) and gives every voxel the class of the nearest centre.
    Deterministic for a given ``seed``.

    Parameters
    ----------
    image : np.ndarray
        Intensities, ``(Z, Y, X)`` or ``(Y, X)``.
    n_classes : int
        Number of tissue classes (at least 2).
    mask : np.ndarray of bool, optional
        Only these voxels are classified.
    seed : int
        Seed of the sampling and of k-means.
    exclude_air : bool
        Leave the air around the body (:func:`outside_air_mask`) at 0 instead of letting it
        become the darkest class.
    modality : str, optional
        ``"CT"``, ``"MR"`` ...; chooses the air threshold.

    Returns
    -------
    np.ndarray
        Label map (uint8 up to 255 classes): 0 outside ``mask`` and on outside air.
    """
    from sklearn.cluster import KMeans

    img = check_image(image)
    m = _classified_voxels(img, mask, exclude_air, modality)
    x = _fit_values(img, m, n_classes, seed)
    with _one_thread():
        km = KMeans(n_clusters=int(n_classes), n_init=4, random_state=seed).fit(x)
    centres = np.sort(km.cluster_centers_.ravel())
    cuts = (centres[:-1] + centres[1:]) / 2.0
    # class = 1 + number of cuts at or below the intensity (searchsorted side="right"), summed
    # as uint8 comparisons: no int64 volume, and every step releases the GIL
    out = m.astype(_label_dtype(int(n_classes)))
    for cut in cuts:
        out += (img >= cut) & m
    return out


def gmm_segment(
    image: np.ndarray,
    n_classes: int,
    mask: np.ndarray | None = None,
    seed: int = 0,
    *,
    max_iter: int = 200,
    exclude_air: bool = True,
    modality: str | None = None,
) -> np.ndarray:
    """Gaussian-mixture (EM) clustering of intensities into ``n_classes`` classes (1..n).

    Fits ``sklearn.mixture.GaussianMixture`` by expectation-maximisation on up to
    :data:`MAX_FIT_SAMPLES` voxels inside ``mask`` (without the air around the body) and gives
    every voxel its most probable component; classes are numbered by increasing component mean.
    Parameters as :func:`kmeans_segment`, plus ``max_iter`` (EM iterations).

    Returns
    -------
    np.ndarray
        Label map: 0 outside ``mask`` and on outside air.
    """
    from sklearn.mixture import GaussianMixture

    img = check_image(image)
    m = _classified_voxels(img, mask, exclude_air, modality)
    x = _fit_values(img, m, n_classes, seed)
    with _one_thread():
        gmm = GaussianMixture(n_components=int(n_classes), max_iter=int(max_iter),
                              random_state=seed).fit(x)
    dtype = _label_dtype(int(n_classes))
    rank = np.empty(int(n_classes), dtype=dtype)
    rank[np.argsort(gmm.means_.ravel())] = np.arange(1, int(n_classes) + 1)
    out = _classify_intensities(img, lambda v: rank[gmm.predict(v.reshape(-1, 1))], dtype)
    out[~m] = 0
    return out


def _classify_intensities(img: np.ndarray, classify, dtype: type) -> np.ndarray:
    """``classify(values) -> classes`` applied to every voxel, cheaply for large volumes.

    Integer images (CT in HU, most MR) have few distinct values: each value of their range is
    classified once and the volume is looked up (a gather, which releases the GIL). Other images
    are classified in chunks of :data:`_CHUNK_VOXELS`.
    """
    if np.issubdtype(img.dtype, np.integer):
        lo, hi = int(img.min()), int(img.max())
        if hi - lo <= 1 << 20:
            table = np.asarray(classify(np.arange(lo, hi + 1, dtype=np.float64)), dtype=dtype)
            wide = np.int32 if img.itemsize <= 2 else np.int64  # no overflow below lo
            return table[np.subtract(img, lo, dtype=wide, casting="unsafe")]
    flat = img.reshape(-1)
    out = np.empty(flat.size, dtype=dtype)
    for start in range(0, flat.size, _CHUNK_VOXELS):
        chunk = flat[start:start + _CHUNK_VOXELS].astype(np.float64)
        out[start:start + chunk.size] = classify(chunk)
    return out.reshape(img.shape)


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
    m = None if mask is None else _check_mask(mask, img.shape)
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

