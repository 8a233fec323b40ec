"""Classical pre-segmentation: thresholds, region growing, k-means / EM clustering, watershed,
and the lungs of a CT (:func:`lungs_ct`).

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
    "lungs_ct",
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



# ---------------------------------------------------------------------------------------------
# Lungs on CT

#: Lung air threshold (HU): lung parenchyma (about -850) and air lie below, every soft tissue
#: (fat -100, vessels and walls > -100) above; partial-volume lung borders sit near -400.
LUNG_AIR_HU = -320.0

#: A candidate whose *interior* (its voxels one voxel in from the border) has a median below this
#: is gas (bowel, stomach, a hollow table), not lung parenchyma (normal about -850, severe
#: emphysema about -920).
GAS_INTERIOR_HU = -950.0

#: The lung analysis runs on a grid of about this spacing (mm) (stride sampling), then the mask
#: is brought back to the full grid and its border refined there.
LUNG_ANALYSIS_MM = 2.0

#: Smallest lung: in a volume (ml) and in a single slice (cm^2); the second lung must also be at
#: least this fraction of the first (3D, 2D) or it is something else (an air pocket, the trachea).
MIN_LUNG_ML = 10.0
MIN_LUNG_CM2 = 4.0
SECOND_LUNG_FRACTION = (0.05, 0.1)

#: Airways: a tube of at most this cross-section (mm^2) is followed down from the top of the
#: lungs (trachea and main bronchi; an adult trachea is 15-25 mm wide).
MAX_AIRWAY_MM2 = 800.0

#: Face connectivity within axial slices only (no link between slices).
_NO_Z = np.zeros((3, 3, 3), dtype=bool)
_NO_Z[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]


def _patient_axes(affine: np.ndarray | None, ndim: int) -> tuple[int, float, int | None, float]:
    """Array axis running patient right-left, +1 when its index grows to the patient's left, and
    the axis running inferior-superior (3D only) with +1 when its index grows upwards.

    Without an affine: the DICOM axial convention (columns run right -> left, slices upwards).
    """
    if affine is None:
        return ndim - 1, 1.0, (0 if ndim == 3 else None), 1.0
    a = np.asarray(affine, dtype=float)[:3, 3 - ndim:3]  # RAS x array axes (2D: padded index)
    lr = int(np.argmax(np.abs(a[0])))
    to_left = -float(np.sign(a[0, lr]) or -1.0)  # RAS +x is the patient's right
    si = None
    up = 1.0
    if ndim == 3:
        si = int(np.argmax(np.abs(a[2])))
        up = float(np.sign(a[2, si]) or 1.0)
    return lr, to_left, si, up


def _fill_holes_slices(mask: np.ndarray, three_d: bool = True) -> np.ndarray:
    """Fill holes of a (Z, Y, X) mask in every axial slice, then (``three_d``) in 3D
    (labelling, no dilation loops: cheap on large volumes)."""
    from scipy import ndimage as ndi

    out = mask.copy()
    for structure in (_NO_Z, None):
        if structure is None and (out.shape[0] == 1 or not three_d):
            break
        bg, n = ndi.label(~out, structure=structure)
        if n == 0:
            continue
        border = np.zeros(n + 1, dtype=bool)
        axes = (1, 2) if structure is _NO_Z else (0, 1, 2)
        for ax in axes:
            for end in (0, -1):
                border[np.unique(np.take(bg, end, axis=ax))] = True
        border[0] = True
        out |= ~border[bg]
    return out


def _airway_mask(mask: np.ndarray, spacing: tuple[float, float, float], lr_axis: int,
                 up: float, body_centre: float, body_width: float) -> np.ndarray:
    """Trachea and main bronchi in a (Z, Y, X) lung-air mask: small central tubes followed
    downwards from the top of the lungs until they open into a lung (or end), and upwards.

    Axis 0 must be the inferior-superior axis; ``up`` is +1 when index grows upwards;
    ``body_centre`` and ``body_width`` (voxels along ``lr_axis``) place the midline. Airways
    larger than a tenth of the lungs are not believed (nothing is removed).
    """
    from scipy import ndimage as ndi

    airway = np.zeros_like(mask)
    zs = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if zs.size < 3:
        return airway
    order = zs[::-1] if up > 0 else zs  # from the top down
    order = np.arange(order[0], order[-1] + (-1 if up > 0 else 1), -1 if up > 0 else 1)
    pixel_mm2 = spacing[1] * spacing[2]
    max_px = MAX_AIRWAY_MM2 / pixel_mm2
    lr_mm = spacing[lr_axis]
    central_mm = min(20.0, 0.08 * body_width * lr_mm)
    search_mm = 60.0  # the trachea is looked for in the top 6 cm, or above the lungs

    def follow(slices, current: np.ndarray, limit: float) -> None:
        """Extend the airway slice by slice while the overlapping pieces stay tubes."""
        for z in slices:
            comps, n = ndi.label(mask[z])
            if n == 0:
                return
            areas = np.bincount(comps.ravel(), minlength=n + 1)
            touching = np.unique(comps[ndi.binary_dilation(current) & (comps > 0)])
            keep = [int(i) for i in touching if 0 < areas[i] <= limit]
            if not keep:
                return
            current = np.isin(comps, keep)
            airway[z] = current

    for k, z in enumerate(order):
        comps, n = ndi.label(mask[z])
        areas = np.bincount(comps.ravel(), minlength=n + 1)
        if k * spacing[0] > search_mm and areas[1:].sum() > 3 * max_px:
            break  # well into the lungs: no trachea found
        if n == 0:
            continue
        # the trachea: a small component near the midline
        centres = ndi.center_of_mass(np.ones_like(comps), comps, range(1, n + 1))
        seeds = [i + 1 for i, c in enumerate(centres)
                 if areas[i + 1] <= max_px and areas[i + 1] * pixel_mm2 >= 20.0
                 and abs(c[lr_axis - 1] - body_centre) * lr_mm <= central_mm]
        if seeds:
            seed = np.isin(comps, seeds)
            airway[z] = seed
            follow(order[k + 1:], seed, max_px)  # trachea and main bronchi, downwards
            follow(order[:k][::-1], seed, 3 * max_px)  # larynx / trachea above the seed
            break
    if np.count_nonzero(airway) > 0.1 * np.count_nonzero(mask):
        airway[:] = False
    return airway


def _split_merged(component: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray | None:
    """Split one air component holding both lungs (touching at a thin junction) into two
    labels (1, 2) by eroding until it separates and letting the pieces grow back (watershed);
    None when it does not separate within 12 mm."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    total = int(component.sum())
    eroded = component
    step = max(1, int(round(2.0 / min(spacing[1:]))))
    for _ in range(max(1, int(12.0 / (step * min(spacing[1:]))))):
        eroded = ndi.binary_erosion(eroded, structure=_NO_Z if component.shape[0] > 1 else None,
                                    iterations=step)
        pieces, n = ndi.label(eroded)
        if n < 2:
            if not eroded.any():
                return None
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        big = np.argsort(sizes)[::-1][:2]
        if sizes[big[1]] < 0.1 * total * (sizes.sum() / max(total, 1)):
            continue
        markers = np.zeros(component.shape, dtype=np.int32)
        markers[pieces == big[0] + 1] = 1
        markers[pieces == big[1] + 1] = 2
        distance = ndi.distance_transform_edt(component, sampling=spacing)
        return watershed(-distance, markers, mask=component).astype(np.uint8)
    return None


def lungs_ct(
    image: np.ndarray,
    spacing: Sequence[float] | None = None,
    modality: str | None = "CT",
    exclude_airways: bool = True,
    *,
    separate_sides: bool = False,
    affine: np.ndarray | None = None,
    threshold_hu: float = LUNG_AIR_HU,
    closing_mm: float = 3.0,
) -> np.ndarray:
    """Pre-segment the lungs of a CT (HU): a usable lung mask in seconds, to correct and train on.

    Steps: air below ``threshold_hu``; air around the body removed (:func:`outside_air_mask`);
    3D components of the rest, gas pockets (bowel, stomach, table: an interior median below
    :data:`GAS_INTERIOR_HU`) and small ones left out; the trachea and main bronchi removed
    (followed down from the top of the lungs as small tubes near the midline); the two largest
    components kept (one when the lungs touch, or only one is in the image); a closing of
    ``closing_mm`` and hole filling (vessels, in every slice and in 3D). The analysis runs on a
    grid of about :data:`LUNG_ANALYSIS_MM` mm and the border is refined on the full grid (a
    512 x 512 x 400 CT takes a few seconds).

    Parameters
    ----------
    image : np.ndarray
        CT in Hounsfield units, ``(Z, Y, X)`` axial slices or one slice ``(Y, X)``.
    spacing : sequence of float, optional
        mm per voxel, array order (default 1 mm).
    modality : str, optional
        ``"CT"`` (default). Another modality is refused; None/"unknown" accepts an image that
        holds air near -1000 HU.
    exclude_airways : bool
        Leave the trachea and main bronchi out (3D only).
    separate_sides : bool
        Label the patient's right lung 1 and left lung 2 (lungs that touch are split at their
        junction); default: every lung voxel is 1.
    affine : np.ndarray, optional
        4x4 array-index -> RAS matrix (:attr:`Volume.affine`): tells which array direction is
        the patient's left and which is up. Default: the DICOM axial convention (columns run
        from the patient's right to left, slice index grows upwards).
    threshold_hu : float
        Air threshold (HU).
    closing_mm : float
        Radius (mm) of the closing that smooths the lung outline (0: none).

    Returns
    -------
    np.ndarray of uint8
        Label map, same shape as ``image``: 1 = lung (or 1 = right, 2 = left), 0 elsewhere.

    Raises
    ------
    EditingError
        (a ``ValueError``) for an image that is not a CT in HU, or when no lungs are found.

    Notes
    -----
    Lungs that touch (an anterior junction the scanner does not resolve) form one component;
    it is kept whole, and with ``separate_sides`` split where an erosion of up to 12 mm
    separates it. The airway search needs axial slices along array axis 0 (with an affine, an
    array whose axis 0 is not the body's long axis is segmented without it).

    Examples
    --------
    >>> from napari_medseg.phantom import make_chest_ct_phantom
    >>> image, truth = make_chest_ct_phantom()
    >>> lungs = lungs_ct(image.array, image.spacing, separate_sides=True, affine=image.affine)
    >>> sorted(np.unique(lungs).tolist())
    [0, 1, 2]
    """
    from scipy import ndimage as ndi

    from napari_medseg.editing._structuring import close_mask
    from napari_medseg.editing._validation import check_spacing

    img = check_image(image)
    sp = check_spacing(spacing, img.ndim)
    name = str(modality).upper() if modality else "UNKNOWN"
    if name not in ("CT", "UNKNOWN", "OT"):
        raise EditingError(f"Lungs (CT) needs a CT image; this image is {modality}.")
    sample = _sample(img)
    if not (float(np.percentile(sample, 0.5)) <= -700.0 and float(sample.max()) >= -200.0):
        raise EditingError("Lungs (CT) needs a CT image in Hounsfield units (air near -1000 HU); "
                           "this image has no such values.")
    two_d = img.ndim == 2
    lr_axis, to_left, si_axis, up = _patient_axes(affine, img.ndim)
    vol = img[None] if two_d else img
    sp3 = (1.0,) + tuple(sp) if two_d else tuple(sp)
    lr3 = lr_axis + 1 if two_d else lr_axis

    # ---- analysis grid
    step = tuple(1 if (two_d and a == 0) else max(1, int(round(LUNG_ANALYSIS_MM / s)))
                 for a, s in enumerate(sp3))
    small = vol[::step[0], ::step[1], ::step[2]]
    ssp = tuple(s * f for s, f in zip(sp3, step, strict=True))
    voxel_ml = float(np.prod(ssp)) / 1000.0
    air = small < threshold_hu
    outside = outside_air_mask(small, "CT", threshold=threshold_hu)
    candidates = air & ~outside
    comps, n = ndi.label(candidates)
    if n == 0:
        raise EditingError("No lungs found: there is no air inside the body in this image.")
    sizes = np.bincount(comps.ravel(), minlength=n + 1)
    sizes[0] = 0
    objects = ndi.find_objects(comps)
    min_voxels = (MIN_LUNG_CM2 * 100.0 / (ssp[1] * ssp[2]) if two_d
                  else MIN_LUNG_ML / voxel_ml)
    lung_like = []
    for i in np.argsort(sizes)[::-1][:12]:
        if sizes[i] < min_voxels:
            break
        box = objects[i - 1]
        piece = comps[box] == i
        inner = ndi.binary_erosion(piece, structure=_NO_Z)
        values = small[box][inner if inner.sum() >= 10 else piece]
        if float(np.median(values)) >= GAS_INTERIOR_HU:
            lung_like.append(int(i))
    if not lung_like:
        raise EditingError("No lungs found: no large air region with lung density inside the "
                           "body (is the chest in the image?).")
    first = sizes[lung_like[0]]
    fraction = SECOND_LUNG_FRACTION[1 if two_d else 0]
    lung_like = [i for i in lung_like if sizes[i] >= fraction * first]
    lungs = np.isin(comps, lung_like)
    del comps

    body_extent = np.nonzero((~outside).any(axis=tuple(a for a in range(3) if a != lr3)))[0]
    if body_extent.size == 0:
        body_extent = np.array([0, small.shape[lr3] - 1])
    body_centre = (float(body_extent.min()) + float(body_extent.max())) / 2.0
    body_width = float(body_extent.max() - body_extent.min() + 1)

    # ---- airways, then the two largest pieces
    airway = np.zeros_like(lungs)
    if exclude_airways and not two_d and si_axis == 0 and lr3 != 0:
        airway = _airway_mask(lungs, ssp, lr3, up, body_centre, body_width)
        lungs &= ~airway
    pieces, n = ndi.label(lungs)
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)
    sizes[0] = 0
    order = [int(i) for i in np.argsort(sizes)[::-1][:2] if sizes[i] > 0]
    if not order:
        raise EditingError("No lungs found in this image.")
    if len(order) == 2 and sizes[order[1]] < fraction * sizes[order[0]]:
        order = order[:1]
    centre_index = [float(np.mean(np.nonzero((pieces == i).any(axis=tuple(
        a for a in range(3) if a != lr3)))[0])) for i in order]
    lab_small = np.zeros(small.shape, dtype=np.uint8)
    if len(order) == 1:
        one = pieces == order[0]
        coords = np.nonzero(one.any(axis=tuple(a for a in range(3) if a != lr3)))[0]
        merged = coords.min() < body_centre < coords.max()
        split = _split_merged(one, ssp) if (separate_sides and merged) else None
        if split is not None:
            lab_small = split
            centre_index = [float(np.mean(np.nonzero((split == v).any(axis=tuple(
                a for a in range(3) if a != lr3)))[0])) for v in (1, 2)]
            order_values = [1, 2]
        else:
            lab_small[one] = 1
            order_values = [1]
    else:
        for v, i in enumerate(order, start=1):
            lab_small[pieces == i] = v
        order_values = [1, 2]
    del pieces
    if separate_sides:  # right = 1, left = 2
        sides = {}
        for v, c in zip(order_values, centre_index, strict=True):
            if len(order_values) == 2:
                other = centre_index[1 - order_values.index(v)]
                left = (c - other) * to_left > 0
            else:
                left = (c - body_centre) * to_left > 0
            sides[v] = 2 if left else 1
        if len(sides) == 2 and len(set(sides.values())) == 1:
            sides = {1: 1, 2: 2}
        table = np.zeros(256, dtype=np.uint8)
        for v, s in sides.items():
            table[v] = s
        lab_small = table[lab_small]
    else:
        lab_small = (lab_small > 0).astype(np.uint8)

    # ---- smooth and fill at the analysis grid (per lung, so they do not merge)
    radius = float(closing_mm)
    for v in [int(v) for v in np.unique(lab_small) if v]:
        m = lab_small == v
        if radius > 0:
            margin = [0 if (two_d and a == 0) else int(np.ceil(radius / s)) + 1
                      for a, s in enumerate(ssp)]
            box = ndi.find_objects(m.astype(np.uint8))[0]
            pad = tuple((mg, mg) for mg in margin)
            crop = np.pad(m[box], pad)
            if two_d:
                closed = close_mask(crop[0], radius, ssp[1:])[None]
            else:
                closed = close_mask(crop, radius, ssp)
            inner = tuple(slice(mg, mg + s.stop - s.start) for mg, s in zip(margin, box,
                                                                              strict=True))
            grown = np.zeros_like(m)
            grown[box] = closed[inner]
            m = m | grown
        m = _fill_holes_slices(m)
        lab_small[m & (lab_small == 0) & ~airway] = v

    # ---- back to the full grid: keep the interior, refine the border by the threshold
    mask_small = lab_small > 0
    if not mask_small.any():
        raise EditingError("No lungs found in this image.")
    core_small = ndi.binary_erosion(mask_small, structure=_NO_Z if two_d else None)
    box = ndi.find_objects(mask_small.astype(np.uint8))[0]
    box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n_))
                for b, n_ in zip(box, small.shape, strict=True))
    full_box = tuple(slice(b.start * f, min(b.stop * f, n_))
                     for b, f, n_ in zip(box, step, vol.shape, strict=True))

    def up_sample(a: np.ndarray) -> np.ndarray:
        for ax, f in enumerate(step):
            if f > 1:
                a = np.repeat(a, f, axis=ax)
        return a[tuple(slice(0, fb.stop - fb.start) for fb in full_box)]

    lab_full = up_sample(lab_small[box])
    core = up_sample(core_small[box])
    refined = (lab_full > 0) & ((vol[full_box] < threshold_hu) | core)
    # vessels inside the lungs (3D cavities were filled on the analysis grid)
    refined = _fill_holes_slices(refined, three_d=False) & (lab_full > 0)
    out = np.zeros(vol.shape, dtype=np.uint8)
    out[full_box][refined] = lab_full[refined]
    return out[0] if two_d else out
