"""The air around the body: its intensity threshold and its mask.

Concern: telling the air outside the patient from tissue, so clustering can leave it at 0 and
the lung search can ignore it. :func:`air_threshold` picks the intensity at or below which a
voxel may be air (fixed HU for CT, near the dark end of the range otherwise);
:func:`outside_air_mask` keeps the dark voxels connected to the image border within each axial
slice. Part of :mod:`napari_medseg.editing.presegment`, which re-exports it.
"""

from __future__ import annotations

import numpy as np

from napari_medseg.editing._presegment_common import border_labels, looks_like_ct, stride_sample
from napari_medseg.editing._validation import check_image

#: CT voxels at or below this value (HU) are air for :func:`outside_air_mask` (air -1000,
#: lung about -800, fat -100: the threshold sits between air and any soft tissue).
CT_AIR_HU = -500.0

#: Other images (MR, unknown): air lies below ``min + AIR_RANGE_FRACTION * (p99 - min)``.
AIR_RANGE_FRACTION = 0.1


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
    if looks_like_ct(img, modality):
        return CT_AIR_HU
    lo = float(img.min())
    hi = float(np.percentile(stride_sample(img), 99))
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
    ct = looks_like_ct(img, modality)
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
    touching = border_labels(regions, n, (img.ndim - 2, img.ndim - 1))  # the in-slice edges
    touching[0] = False
    return touching[regions]
