"""A synthetic abdominal CT phantom with exact ground-truth labels, for tests and demos.

The phantom is an axial stack (array ``(Z, Y, X)``, rows running anterior -> posterior and columns
patient right -> left, as a DICOM CT reads) of an elliptical body in air: a subcutaneous fat ring,
soft tissue (10 HU), two lungs in the upper third, a liver on the patient's right, a spleen on the left,
two kidneys in perirenal fat and a vertebral column (bone around a spinal canal) at the back. Each tissue has a
typical Hounsfield value (:data:`PHANTOM_HU`); edges are softened by a small blur (partial volume)
and Gaussian noise is added. Everything is a function of ``shape`` (organs scale with the
array), so small phantoms work for fast tests.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_medseg.io.volume import Volume

#: Label value -> structure name of the phantom's ground truth (0 is background).
PHANTOM_CLASSES: dict[int, str] = {
    1: "liver",
    2: "kidney",
    3: "spleen",
    4: "lung",
    5: "spine",
}

#: Label value -> display colour (hex RGB) for the classes above.
PHANTOM_COLOURS: dict[int, str] = {
    1: "#b5563a",
    2: "#d9a23b",
    3: "#7a4fa3",
    4: "#5aa6d6",
    5: "#f2efe6",
}

#: Mean intensity of each tissue in Hounsfield units.
PHANTOM_HU: dict[str, float] = {
    "air": -1000.0,
    "fat": -100.0,
    "soft tissue": 10.0,
    "lung": -800.0,
    "liver": 60.0,
    "spleen": 45.0,
    "kidney": 30.0,
    "bone": 700.0,
    "spinal canal": 15.0,
}


def _ellipsoid(grids: tuple[np.ndarray, ...], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    """Boolean mask of ``sum(((g - c) / r) ** 2) <= 1`` over normalised coordinate grids."""
    total = np.zeros(np.broadcast_shapes(*(g.shape for g in grids)))
    for g, c, r in zip(grids, centre, radii, strict=True):
        total = total + ((g - c) / r) ** 2
    return total <= 1.0


def _phantom_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """Axial CT geometry in RAS: z -> superior, rows -> posterior, columns -> patient left; centred."""
    affine = np.zeros((4, 4))
    affine[2, 0] = spacing[0]
    affine[1, 1] = -spacing[1]
    affine[0, 2] = -spacing[2]
    affine[3, 3] = 1.0
    centre_index = (np.asarray(shape, dtype=float) - 1) / 2
    affine[:3, 3] = -affine[:3, :3] @ centre_index
    return affine


def make_ct_phantom(
    shape: tuple[int, int, int] = (48, 96, 96),
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.8),
    seed: int = 0,
    noise_hu: float = 20.0,
) -> tuple[Volume, Volume]:
    """Make a CT-like phantom volume (HU) and its ground-truth label map.

    Parameters
    ----------
    shape : (int, int, int)
        Array shape ``(Z, Y, X)``; each axis at least 8 voxels.
    spacing : (float, float, float)
        Voxel size in mm, array order.
    seed : int
        Seed of the noise (the anatomy itself does not depend on it).
    noise_hu : float
        Standard deviation of the Gaussian noise in HU (0 for a clean image).

    Returns
    -------
    image : Volume
        int16 HU values, modality ``"CT"``, ``name="CT phantom"``.
    labels : Volume
        uint8 classes of :data:`PHANTOM_CLASSES` on the same grid, ``metadata["classes"]``
        and ``metadata["colours"]`` set, ``metadata["is_labels"] = True``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"The phantom needs a 3D shape of at least 8 voxels per axis, got {shape}.")
    if noise_hu < 0:
        raise ValueError(f"noise_hu must be >= 0, got {noise_hu}.")
    z, y, x = (np.linspace(-1.0, 1.0, n)[idx] for n, idx in zip(
        shape,
        (np.s_[:, None, None], np.s_[None, :, None], np.s_[None, None, :]),
        strict=True,
    ))
    zyx = (z, y, x)
    # body: elliptic cylinder, a little wider in the middle of the stack
    body_scale = 1.0 - 0.08 * z**2
    body = ((x / (0.88 * body_scale)) ** 2 + (y / (0.66 * body_scale)) ** 2) <= 1.0
    inner = ((x / (0.80 * body_scale)) ** 2 + (y / (0.58 * body_scale)) ** 2) <= 1.0
    hu = np.full(shape, PHANTOM_HU["air"], dtype=np.float32)
    hu[body] = PHANTOM_HU["fat"]
    hu[inner] = PHANTOM_HU["soft tissue"]

    labels = np.zeros(shape, dtype=np.uint8)
    lungs = (
        _ellipsoid(zyx, (0.75, -0.05, -0.42), (0.55, 0.42, 0.30))
        | _ellipsoid(zyx, (0.75, -0.05, 0.42), (0.55, 0.42, 0.28))
    ) & inner
    liver = _ellipsoid(zyx, (0.05, -0.05, -0.38), (0.45, 0.36, 0.34)) & inner & ~lungs
    spleen = _ellipsoid(zyx, (0.15, 0.05, 0.52), (0.28, 0.18, 0.15)) & inner & ~lungs
    kidney_centres = ((-0.30, 0.30, -0.35), (-0.35, 0.30, 0.35))
    kidneys = (
        _ellipsoid(zyx, kidney_centres[0], (0.28, 0.14, 0.11))
        | _ellipsoid(zyx, kidney_centres[1], (0.28, 0.14, 0.11))
    ) & inner
    perirenal_fat = (
        _ellipsoid(zyx, kidney_centres[0], (0.34, 0.20, 0.17))
        | _ellipsoid(zyx, kidney_centres[1], (0.34, 0.20, 0.17))
    ) & inner & ~kidneys & ~spleen & ~liver
    spine_outer = (x / 0.13) ** 2 + ((y - 0.42) / 0.11) ** 2 <= 1.0
    canal = (x / 0.05) ** 2 + ((y - 0.45) / 0.045) ** 2 <= 1.0
    spine = np.broadcast_to(spine_outer & ~canal, shape) & inner

    hu[perirenal_fat] = PHANTOM_HU["fat"]
    for mask, tissue, label in (
        (lungs, "lung", 4),
        (liver, "liver", 1),
        (spleen, "spleen", 3),
        (kidneys, "kidney", 2),
        (spine, "bone", 5),
    ):
        hu[mask] = PHANTOM_HU[tissue]
        labels[mask] = label
    hu[np.broadcast_to(canal, shape) & inner] = PHANTOM_HU["spinal canal"]

    hu = ndimage.gaussian_filter(hu, sigma=0.6)
    if noise_hu > 0:
        rng = np.random.default_rng(seed)
        hu = hu + rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    image_array = np.clip(np.round(hu), -1024, 3071).astype(np.int16)

    affine = _phantom_affine(shape, spacing)
    source = {"format": "phantom", "seed": int(seed), "noise_hu": float(noise_hu), "warnings": []}
    image = Volume(
        image_array, spacing, affine, "CT", dict(source, is_labels=False), "CT phantom"
    )
    label_meta = dict(
        source,
        is_labels=True,
        classes={str(k): v for k, v in PHANTOM_CLASSES.items()},
        colours={str(k): v for k, v in PHANTOM_COLOURS.items()},
    )
    label_volume = Volume(labels, spacing, affine.copy(), "CT", label_meta, "CT phantom labels")
    return image, label_volume
