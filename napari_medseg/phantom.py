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

import os
from pathlib import Path

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


#: Label value -> structure name of :func:`make_chest_ct_phantom`.
CHEST_PHANTOM_CLASSES: dict[int, str] = {1: "lung_right", 2: "lung_left", 3: "airway"}


def make_chest_ct_phantom(
    shape: tuple[int, int, int] = (80, 128, 128),
    spacing: tuple[float, float, float] = (3.0, 2.5, 2.5),
    seed: int = 0,
    noise_hu: float = 20.0,
    lungs_touch: bool = False,
) -> tuple[Volume, Volume]:
    """A chest CT phantom in real sizes (mm): two lungs with vessels, trachea and main bronchi.

    Geometry as :func:`make_ct_phantom` (``(Z, Y, X)`` axial slices, z upwards, rows anterior
    -> posterior, columns patient right -> left), but anatomy is placed in mm from the centre
    of the field of view, so thresholds in mm and ml behave as on a patient: a 300 x 220 mm body,
    lungs about 11 x 16 x 22 cm (with vessels of +40 HU inside, which belong to the lung), a
    heart between them, an 18 mm trachea from the top slice to the carina, main bronchi that
    open into each lung, and a gas bubble (stomach, -1000 HU) below the left lung.

    Parameters
    ----------
    shape, spacing : (int, int, int), (float, float, float)
        Array shape ``(Z, Y, X)`` and voxel size (mm); the anatomy needs a field of view of
        about 320 x 320 x 240 mm (the defaults).
    seed, noise_hu : int, float
        Gaussian noise (HU) and its seed.
    lungs_touch : bool
        Join the lungs by a thin air bridge in front of the heart (as an anterior junction line
        that the scanner does not resolve): one air component holding both lungs.

    Returns
    -------
    image : Volume
        int16 HU, modality ``"CT"``.
    labels : Volume
        uint8 :data:`CHEST_PHANTOM_CLASSES`: 1 right lung, 2 left lung (vessels included),
        3 airways outside the lungs.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"The phantom needs a 3D shape of at least 8 voxels per axis, got {shape}.")
    if noise_hu < 0:
        raise ValueError(f"noise_hu must be >= 0, got {noise_hu}.")
    z, y, x = ((np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True))
    z, y, x = z[:, None, None], y[None, :, None], x[None, None, :]
    body = (x / 150.0) ** 2 + (y / 110.0) ** 2 <= 1.0
    inner = (x / 140.0) ** 2 + (y / 100.0) ** 2 <= 1.0
    body, inner = np.broadcast_to(body, shape), np.broadcast_to(inner, shape)
    hu = np.full(shape, PHANTOM_HU["air"], dtype=np.float32)
    hu[body] = PHANTOM_HU["fat"]
    hu[inner] = PHANTOM_HU["soft tissue"]

    def ellipsoid(c: tuple[float, float, float], r: tuple[float, float, float]) -> np.ndarray:
        return ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1

    def tube(p0: tuple[float, float, float], p1: tuple[float, float, float],
             radius: float) -> np.ndarray:
        """Voxels within ``radius`` mm of the segment p0-p1 (computed in its bounding box)."""
        a, b = np.asarray(p0, float), np.asarray(p1, float)
        d = b - a
        out = np.zeros(shape, dtype=bool)
        box = []
        for c, lo, hi in zip((z.ravel(), y.ravel(), x.ravel()), np.minimum(a, b) - radius,
                             np.maximum(a, b) + radius, strict=True):
            idx = np.flatnonzero((c >= lo) & (c <= hi))
            if idx.size == 0:
                return out
            box.append(slice(idx[0], idx[-1] + 1))
        zz, yy, xx = z[box[0]], y[:, box[1]], x[:, :, box[2]]
        t = np.clip(((zz - a[0]) * d[0] + (yy - a[1]) * d[1] + (xx - a[2]) * d[2]) / (d @ d),
                    0, 1)
        out[tuple(box)] = ((zz - a[0] - t * d[0]) ** 2 + (yy - a[1] - t * d[1]) ** 2
                           + (xx - a[2] - t * d[2]) ** 2) <= radius**2
        return out

    heart = ellipsoid((-40.0, -35.0, 15.0), (55.0, 50.0, 50.0))
    spine = np.broadcast_to((x / 22.0) ** 2 + ((y - 70.0) / 20.0) ** 2 <= 1.0, shape)
    right = ellipsoid((5.0, 5.0, -78.0), (105.0, 82.0, 52.0)) & inner & ~heart & ~spine
    left = ellipsoid((5.0, 5.0, 78.0), (100.0, 82.0, 50.0)) & inner & ~heart & ~spine
    if lungs_touch:
        bridge = (np.abs(x) <= 80.0) & (np.abs(y + 68.0) <= 3.0) & (np.abs(z - 10.0) <= 20.0)
        bridge = bridge & inner & ~spine
        heart = heart & ~bridge
        right |= bridge & (x < 0)
        left |= bridge & (x >= 0)
    carina = (45.0, 0.0, 0.0)
    trachea = tube((float(z.max()) + 10.0, 0.0, 0.0), carina, 9.0)
    bronchi = tube(carina, (10.0, 5.0, -42.0), 6.5) | tube(carina, (5.0, 5.0, 40.0), 6.0)
    airway = (trachea | bronchi) & ~right & ~left
    wall = (tube((float(z.max()) + 10.0, 0.0, 0.0), carina, 11.5)
            | tube(carina, (10.0, 5.0, -42.0), 9.0) | tube(carina, (5.0, 5.0, 40.0), 8.5))
    stomach = ellipsoid((-108.0, -10.0, 60.0), (10.0, 30.0, 30.0)) & inner

    lungs = right | left
    hu[lungs] = PHANTOM_HU["lung"]
    hu[wall & ~lungs] = PHANTOM_HU["soft tissue"]
    hu[airway] = PHANTOM_HU["air"]
    hu[heart & inner] = 40.0
    hu[spine & inner] = PHANTOM_HU["bone"]
    hu[stomach] = PHANTOM_HU["air"]
    # vessels inside the lungs, away from their borders (the lung mask includes them)
    core = ndimage.binary_erosion(lungs, iterations=3)
    for c0, c1, r in (((70.0, -10.0, -80.0), (-40.0, 20.0, -70.0), 4.0),
                      ((0.0, -20.0, -95.0), (-60.0, 30.0, -85.0), 3.0),
                      ((60.0, -10.0, 80.0), (-40.0, 25.0, 75.0), 4.0),
                      ((10.0, 30.0, 95.0), (-50.0, -15.0, 85.0), 3.0)):
        hu[tube(c0, c1, r) & core] = 40.0

    labels = np.zeros(shape, dtype=np.uint8)
    labels[right] = 1
    labels[left] = 2
    labels[airway] = 3
    hu = ndimage.gaussian_filter(hu, sigma=0.6)
    if noise_hu > 0:
        hu = hu + np.random.default_rng(seed).normal(0.0, noise_hu, size=shape).astype(np.float32)
    image_array = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    affine = _phantom_affine(shape, spacing)
    source = {"format": "phantom", "seed": int(seed), "noise_hu": float(noise_hu), "warnings": []}
    image = Volume(image_array, spacing, affine, "CT", dict(source, is_labels=False),
                   "chest CT phantom")
    label_meta = dict(source, is_labels=True,
                      classes={str(k): v for k, v in CHEST_PHANTOM_CLASSES.items()})
    return image, Volume(labels, spacing, affine.copy(), "CT", label_meta,
                         "chest CT phantom labels")


# ---------------------------------------------------------------------------------------------
# Synthetic breast ultrasound

#: Label value -> name of :func:`ultrasound_phantom`'s labels.
ULTRASOUND_CLASSES: dict[int, str] = {1: "lesion"}

#: Share of the image that the lesions of one picture cover (drawn per picture).
ULTRASOUND_LESION_FRACTION = (0.03, 0.22)


def _wavy(rng: np.random.Generator, x: np.ndarray, base: float, amplitude: float) -> np.ndarray:
    """A smooth random boundary depth (fraction of the height) across the columns ``x`` (0..1)."""
    depth = np.full_like(x, base)
    for k in (1, 2, 3):
        depth += amplitude / k * np.sin(2 * np.pi * k * x + rng.uniform(0, 2 * np.pi))
    return depth


def _lesion_mask(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, centre: tuple[float, float],
                 radius: float, aspect: float, irregular: bool) -> np.ndarray:
    """A lobulated (benign-looking) or irregular, spiculated (malignant-looking) blob (pixels)."""
    dy, dx = yy - centre[0], (xx - centre[1]) / aspect
    theta = np.arctan2(dy, dx)
    r = np.hypot(dy, dx)
    bumps = np.ones_like(theta)
    for k in range(2, 6):  # gentle lobulation
        bumps += rng.uniform(0.02, 0.08) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    if irregular:  # angular, spiculated margin
        for k in range(7, 15):
            bumps += rng.uniform(0.0, 0.05) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r <= radius * bumps


def ultrasound_phantom(
    shape: tuple[int, int] = (256, 256),
    n_lesions: int = 1,
    seed: int = 0,
    *,
    sector: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """A B-mode breast-ultrasound-like picture with dark lesions and its exact lesion mask.

    Rows are depth (the transducer at the top), columns the lateral direction. Tissue layers
    with wavy borders (bright skin line, dark subcutaneous fat, bright glandular tissue, striated
    pectoral muscle), hypoechoic lesions (lobulated or irregular, wider than tall or not) with
    posterior acoustic enhancement (cyst-like) or shadowing (solid), depth attenuation with
    incomplete gain compensation, speckle (Rayleigh-distributed amplitude of smoothed complex
    Gaussian scatterers: multiplicative, spatially correlated) and log compression to 8 bits.
    The lesions cover 2-30 % of the picture (:data:`ULTRASOUND_LESION_FRACTION` is drawn).
    Everything is a function of ``seed``.

    Parameters
    ----------
    shape : (int, int)
        ``(rows, columns)``, each at least 32.
    n_lesions : int
        Number of lesions (0 for a normal picture; they may touch).
    seed : int
        Seed of every random choice.
    sector : bool
        Keep only a fan-shaped field of view (curved/phased array); outside it the picture is 0.

    Returns
    -------
    image : np.ndarray of uint8
        ``(Y, X)`` grey values.
    labels : np.ndarray of uint8
        1 = lesion, 0 = background (and outside the fan).
    """
    from scipy import ndimage as ndi

    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 32:
        raise ValueError(f"The ultrasound phantom needs a 2D shape of at least 32 x 32, got {shape}.")
    if int(n_lesions) < 0:
        raise ValueError(f"n_lesions must be 0 or more, got {n_lesions}.")
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    depth, lateral = yy / (h - 1), xx[0] / (w - 1)

    # echogenicity of the tissue layers
    skin = _wavy(rng, lateral, 0.04, 0.01)
    fat = _wavy(rng, lateral, rng.uniform(0.15, 0.25), 0.04)
    gland = _wavy(rng, lateral, rng.uniform(0.62, 0.72), 0.05)
    muscle = _wavy(rng, lateral, rng.uniform(0.82, 0.9), 0.03)
    echo = np.where(depth < skin, 1.0, np.where(depth < fat, 0.35, np.where(
        depth < gland, 0.75, np.where(depth < muscle, 0.5, 0.25))))
    echo = np.where(np.abs(depth - skin) < 0.012, 1.3, echo)  # bright skin line
    fibres = 1.0 + 0.35 * np.sin(2 * np.pi * (depth * 28 + 0.3 * np.sin(2 * np.pi * lateral)))
    echo = np.where((depth >= gland) & (depth < muscle), echo * fibres, echo)
    echo *= 1.0 + 0.25 * ndi.gaussian_filter(rng.normal(size=shape), (h / 24, w / 24)) * 8
    echo = np.clip(echo, 0.05, None)

    # lesions: hypoechoic, in the glandular layer, with a posterior enhancement or shadow
    labels = np.zeros(shape, dtype=np.uint8)
    n = int(n_lesions)
    if n:
        total = rng.uniform(*ULTRASOUND_LESION_FRACTION) * h * w
        areas = total * rng.dirichlet(np.full(n, 3.0))
        for area in areas:
            aspect = rng.uniform(0.8, 1.8)  # wider than tall is typical of benign lesions
            radius = np.sqrt(area / (np.pi * aspect))
            cy = rng.uniform(max(0.3 * h, radius + 0.12 * h), max(0.3 * h, 0.68 * h))
            half = radius * aspect
            cx = rng.uniform(min(half + 2, w / 2), max(w - half - 2, w / 2))
            irregular = bool(rng.random() < 0.5)
            blob = _lesion_mask(rng, yy, xx, (cy, cx), radius, aspect, irregular)
            labels[blob] = 1
            inside = rng.uniform(0.06, 0.18)
            echo = np.where(blob, inside * (1 + 0.3 * rng.random()), echo)
            # posterior acoustic enhancement (cyst-like) or shadowing (solid): columns below
            columns = blob.any(axis=0).astype(float)
            columns = ndi.gaussian_filter1d(columns, max(radius * 0.15, 1.0))
            below = (yy > cy + 0.5 * radius) & ~blob
            fade = np.exp(-np.clip(yy - cy - radius, 0, None) / (1.5 * h))
            factor = rng.uniform(1.3, 1.7) if not irregular else rng.uniform(0.3, 0.55)
            echo = np.where(below, echo * (1 + (factor - 1) * columns[None, :] * fade), echo)

    # speckle: Rayleigh amplitude of a smoothed complex Gaussian field (axial > lateral size)
    sigma = (rng.uniform(0.8, 1.4), rng.uniform(1.5, 2.5))
    field = (ndi.gaussian_filter(rng.normal(size=shape), sigma)
             + 1j * ndi.gaussian_filter(rng.normal(size=shape), sigma))
    speckle = np.abs(field)
    speckle /= np.sqrt(np.mean(speckle**2))
    attenuation = np.exp(-rng.uniform(0.6, 1.4) * depth)  # after incomplete gain compensation
    intensity = echo * speckle * attenuation
    # log compression to 8 bits (dynamic range ~ 40 dB)
    db = 20 * np.log10(np.clip(intensity, 1e-4, None) / np.percentile(intensity, 99.5))
    image = np.clip((db + 40.0) / 40.0, 0, 1) * 255.0

    if sector:
        apex_y = -0.25 * h
        angle = np.arctan2(xx - w / 2, yy - apex_y)
        radial = np.hypot(xx - w / 2, yy - apex_y)
        fan = (np.abs(angle) <= np.deg2rad(rng.uniform(30, 38))) & (radial >= 0.25 * h)
        image = np.where(fan, image, 0.0)
        labels[~fan] = 0
    return np.round(image).astype(np.uint8), labels


def ultrasound_dataset(
    folder: str | os.PathLike[str],
    n_cases: int = 20,
    seed: int = 0,
    *,
    shape: tuple[int, int] = (256, 256),
    sector: bool = False,
) -> Path:
    """Write an nnU-Net v2 style 2D dataset of :func:`ultrasound_phantom` pictures.

    Layout: ``imagesTr/US_000_0000.png`` (8-bit grey), ``labelsTr/US_000.png`` (0/1) and a
    ``dataset.json`` with ``"file_ending": ".png"``, ``"channel_names": {"0": "US"}`` and
    ``"labels": {"background": 0, "lesion": 1}``. Case ``i`` is ``ultrasound_phantom(shape,
    n_lesions, seed + i)`` with 1 lesion (2 in every fourth case).

    Parameters
    ----------
    folder : path-like
        Dataset folder (created; must not hold a dataset.json yet).
    n_cases : int
        Number of cases (at least 1).
    seed : int
        Seed of the first case.
    shape, sector
        As :func:`ultrasound_phantom`.

    Returns
    -------
    Path
        The dataset folder.
    """
    import json

    root = Path(folder)
    if int(n_cases) < 1:
        raise ValueError(f"n_cases must be at least 1, got {n_cases}.")
    if (root / "dataset.json").exists():
        raise ValueError(f"{root} already holds a dataset.json; choose an empty folder.")
    try:
        from napari_medseg.io.picture import write_picture
    except ImportError:  # pragma: no cover - the package's writer is preferred
        write_picture = None
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(int(n_cases)):
        image, labels = ultrasound_phantom(shape, 2 if i % 4 == 3 else 1, seed + i, sector=sector)
        case = f"US_{i:03d}"
        for array, path in ((image, root / "imagesTr" / f"{case}_0000.png"),
                            (labels, root / "labelsTr" / f"{case}.png")):
            if write_picture is not None:
                write_picture(array, path)
            else:  # pragma: no cover
                from PIL import Image

                Image.fromarray(array).save(path)
    meta = {
        "name": "SyntheticBreastUS",
        "description": "Synthetic B-mode breast ultrasound (napari_medseg.phantom)",
        "channel_names": {"0": "US"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": int(n_cases),
        "file_ending": ".png",
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root
