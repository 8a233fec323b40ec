"""The lungs of a CT (:func:`lungs_ct`): a usable lung mask in seconds, to correct and train on.

Concern: one pipeline on a chest CT in HU: lung-density air inside the body, gas pockets and
small pieces left out, the trachea and main bronchi followed and removed, the two lungs kept
(optionally split into right 1 / left 2), smoothed and filled on a coarse analysis grid, then
refined on the full grid. The constants below are its tuning; the private helpers are its
steps. Part of :mod:`napari_medseg.editing.presegment`, which re-exports it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_medseg.editing._presegment_common import border_labels, stride_sample
from napari_medseg.editing._validation import EditingError, check_image
from napari_medseg.editing.presegment_air import outside_air_mask

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


def _indices_along(mask: np.ndarray, axis: int) -> np.ndarray:
    """Indices along ``axis`` of the planes (perpendicular to it) that hold any of ``mask``."""
    return np.nonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))[0]


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
        border = border_labels(bg, n, (1, 2) if structure is _NO_Z else (0, 1, 2))
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
    sample = stride_sample(img)
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

    body_extent = _indices_along(~outside, lr3)
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
    centre_index = [float(np.mean(_indices_along(pieces == i, lr3))) for i in order]
    lab_small = np.zeros(small.shape, dtype=np.uint8)
    if len(order) == 1:
        one = pieces == order[0]
        coords = _indices_along(one, lr3)
        merged = coords.min() < body_centre < coords.max()
        split = _split_merged(one, ssp) if (separate_sides and merged) else None
        if split is not None:
            lab_small = split
            centre_index = [float(np.mean(_indices_along(split == v, lr3))) for v in (1, 2)]
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
