"""Pre-segmentation by clustering intensities: k-means and Gaussian mixture (EM).

Concern: fitting a model of ``n`` intensity classes on a random subset of the voxels
(:data:`MAX_FIT_SAMPLES`), then labelling every voxel with it cheaply, without whole-volume
calls that hold Python's GIL for long (these run in GUI worker threads). Classes are numbered
1..n by increasing mean intensity; 0 is "not classified" (outside ``mask``, and by default the
air around the body, :func:`~napari_medseg.editing.presegment_air.outside_air_mask`). Also
:func:`import_clustering`, to pay scikit-learn's import ahead of time. Part of
:mod:`napari_medseg.editing.presegment`, which re-exports it.
"""

from __future__ import annotations

import numpy as np

from napari_medseg.editing._presegment_common import check_mask, label_dtype
from napari_medseg.editing._validation import EditingError, check_image
from napari_medseg.editing.presegment_air import outside_air_mask

#: Clustering fits on at most this many voxels (a random subset), then labels every voxel.
MAX_FIT_SAMPLES = 200_000

#: Voxels per chunk when a whole volume is classified piece by piece (GMM on float images).
_CHUNK_VOXELS = 1 << 20


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


def _classified_voxels(img: np.ndarray, mask: np.ndarray | None, exclude_air: bool,
                       modality: str | None) -> np.ndarray:
    """Voxels to cluster: ``mask`` (default all) without the outside air when asked."""
    m = check_mask(mask, img.shape)
    if exclude_air:
        m = m & ~outside_air_mask(img, modality)
        if not m.any():
            raise EditingError("The image holds only air around the body: there are no tissue "
                               "voxels to classify.")
    return m


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
    out = m.astype(label_dtype(int(n_classes)))
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
    dtype = label_dtype(int(n_classes))
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
