"""Intensity normalisation and resampling, shared by training and inference.

Normalisation follows nnU-Net's rule per modality:

* **CT** (Hounsfield units mean the same in every scan): clip to the dataset's 0.5 / 99.5
  intensity percentiles inside the labelled foreground, then z-score with the dataset's mean/std.
* **everything else** (MR, unknown): z-score per volume (intensity scales differ between scans).
* **2D pictures** (photographs, ultrasound, X-ray): z-score per picture and per channel, with
  the statistics taken inside the picture's field of view (the bright region within a dark
  border, :func:`field_of_view_mask`) when it has one: a fundus camera's black surround or an
  ultrasound sector's blank corners would otherwise set the scale, and differently for every
  camera.

Resampling maps arrays between a volume's own voxel grid and a model's target spacing. Both
directions use the same centre-aligned convention (``align_corners=False``), so resampling to the
target spacing and back returns the original grid exactly in shape and physical extent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Intensity percentiles (%) used to clip CT images.
CT_CLIP_PERCENTILES = (0.5, 99.5)


@dataclass
class NormalisationParams:
    """How to normalise one image channel.

    Attributes
    ----------
    scheme : str
        ``"ct"`` (clip to fixed HU range + dataset z-score), ``"zscore"`` (per-volume z-score)
        or ``"none"``.
    clip_low, clip_high : float or None
        Intensity clip range (CT only), in image units (HU).
    mean, std : float or None
        Dataset statistics (CT only) after clipping.
    region : str
        Where per-image z-score statistics come from: ``"all"`` voxels, or ``"fov"``, the
        picture's field of view (:func:`field_of_view_mask`, found jointly over all channels
        of the picture; the whole picture when it has no dark border).
    local_contrast : bool
        2D pictures only: equalise each channel's contrast locally (CLAHE, scikit-image's
        ``equalize_adapthist``, on the channel scaled to [0, 1] between its 0.5 / 99.5 %
        percentiles inside the region) before the z-score. Thin dark structures on an uneven
        background (retinal vessels) stand out the same way on every camera.
    """

    scheme: str = "zscore"
    clip_low: float | None = None
    clip_high: float | None = None
    mean: float | None = None
    std: float | None = None
    region: str = "all"
    local_contrast: bool = False

    def __post_init__(self) -> None:
        if self.scheme not in ("ct", "zscore", "none"):
            raise ValueError(f"Unknown normalisation scheme {self.scheme!r}.")
        if self.region not in ("all", "fov"):
            raise ValueError(f"Unknown normalisation region {self.region!r}.")
        if self.scheme == "ct" and None in (self.clip_low, self.clip_high, self.mean, self.std):
            raise ValueError("CT normalisation needs clip_low, clip_high, mean and std.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> NormalisationParams:
        return cls(**{k: d.get(k) for k in ("scheme", "clip_low", "clip_high", "mean", "std")},
                   region=d.get("region") or "all",  # cards written before: whole image
                   local_contrast=bool(d.get("local_contrast", False)))


def fit_normalisation(
    images: Sequence[np.ndarray],
    modality: str,
    foreground_masks: Sequence[np.ndarray] | None = None,
    max_samples_per_case: int = 20000,
    seed: int = 0,
    field_of_view: bool = False,
    local_contrast: bool = False,
) -> NormalisationParams:
    """Choose normalisation parameters for one channel from the training images.

    Each channel of a multi-channel (e.g. colour) image is fitted, and later normalised, on
    its own.

    Parameters
    ----------
    images : sequence of np.ndarray
        Raw training images of this channel (any shape).
    modality : str
        ``"CT"`` gives the CT scheme, anything else per-volume z-score.
    foreground_masks : sequence of np.ndarray, optional
        Boolean masks of labelled foreground; CT statistics use these voxels (all voxels if
        omitted or empty).
    field_of_view : bool
        Non-CT 2D pictures: take each picture's z-score statistics inside its field of view
        (``region="fov"``) rather than over every pixel.
    local_contrast : bool
        Non-CT 2D pictures: equalise local contrast first (see :class:`NormalisationParams`).
    """
    if modality.upper() != "CT":
        return NormalisationParams("zscore", region="fov" if field_of_view else "all",
                                   local_contrast=local_contrast)
    rng = np.random.default_rng(seed)
    samples = []
    for i, image in enumerate(images):
        values = np.asarray(image, dtype=np.float32)
        if foreground_masks is not None and np.any(foreground_masks[i]):
            values = values[np.asarray(foreground_masks[i], dtype=bool)]
        values = values.ravel()
        if values.size > max_samples_per_case:
            values = rng.choice(values, max_samples_per_case, replace=False)
        samples.append(values)
    if not samples or sum(s.size for s in samples) == 0:
        raise ValueError("No image voxels to compute CT normalisation statistics from.")
    allv = np.concatenate(samples).astype(np.float64)
    low, high = np.percentile(allv, CT_CLIP_PERCENTILES)
    clipped = np.clip(allv, low, high)
    std = float(clipped.std())
    return NormalisationParams("ct", float(low), float(high), float(clipped.mean()), max(std, 1e-6))


def field_of_view_mask(
    channels: Sequence[np.ndarray],
    threshold: float = 0.1,
    min_fraction: float = 0.05,
    max_fraction: float = 0.98,
) -> np.ndarray | None:
    """The bright field of view of a 2D picture inside a dark border, or None if it has none.

    A fundus photo's disc, an ultrasound sector, an endoscope's circle: the picture less its
    dark border (pixels whose brightest channel stays below ``threshold`` of the way from the
    darkest value to the 99th percentile, cleaned by a small opening, in regions touching the
    picture's edge), the largest remaining region with its holes filled (dark structures
    inside, such as a cyst, stay in).

    Parameters
    ----------
    channels : sequence of np.ndarray
        The picture's channels, each ``(Y, X)`` (raw intensities).
    threshold : float
        Dark-border level as a fraction of the 99th percentile of the brightest channel.
    min_fraction, max_fraction : float
        A region covering less (nothing recognisable) or more (no border) than this share of
        the picture gives None.

    Returns
    -------
    np.ndarray or None
        Boolean ``(Y, X)`` mask.
    """
    from scipy import ndimage

    brightest = np.max(np.stack([np.asarray(c, dtype=np.float32) for c in channels]), axis=0)
    if brightest.ndim != 2 or brightest.size == 0:
        return None
    # a coarse grid keeps the percentile and the morphology cheap on 4000x3000 photos
    step = max(1, int(np.ceil(max(brightest.shape) / 1024)))
    small = brightest[::step, ::step]
    low, top = float(small.min()), float(np.percentile(small, 99))
    if not np.isfinite(top) or top <= low:
        return None
    # the dark border: dark regions (cleaned of speckle) that touch the picture's edge
    dark = ndimage.binary_opening(small <= low + threshold * (top - low), iterations=2)
    lab, n = ndimage.label(dark)
    edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    edge = edge[edge > 0]
    if edge.size == 0:
        return None
    mask = ~np.isin(lab, edge)
    lab, n = ndimage.label(mask)
    if n == 0:
        return None
    if n > 1:
        sizes = ndimage.sum_labels(mask, lab, range(1, n + 1))
        mask = lab == (int(np.argmax(sizes)) + 1)
    mask = ndimage.binary_fill_holes(mask)
    if not min_fraction <= float(mask.mean()) <= max_fraction:
        return None
    if step > 1:
        mask = np.repeat(np.repeat(mask, step, 0), step, 1)[: brightest.shape[0], : brightest.shape[1]]
    return mask


def normalise(image: np.ndarray, params: NormalisationParams,
              region: np.ndarray | None = None) -> np.ndarray:
    """Normalise an image channel; returns float32 of the same shape.

    ``region`` (boolean, same shape) restricts the per-image z-score statistics to those
    pixels (every pixel is still normalised); CT normalisation ignores it.
    """
    x = np.asarray(image, dtype=np.float32)
    if params.scheme == "none":
        return x.copy()
    if params.scheme == "ct":
        x = np.clip(x, params.clip_low, params.clip_high)
        return ((x - params.mean) / params.std).astype(np.float32)
    inside = region is not None and np.any(region)
    if params.local_contrast and x.ndim == 2:
        x = _equalised(x, region if inside else None)
    values = x[region] if inside else x
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    return ((x - mean) / max(std, 1e-8)).astype(np.float32)


#: CLAHE settings of ``local_contrast``: contrast limit and tile size (share of the picture).
CLAHE_CLIP_LIMIT = 0.02
CLAHE_TILE_SHARE = 1 / 8


def _equalised(x: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """CLAHE of a 2D channel scaled to [0, 1] by its 0.5 / 99.5 % percentiles (in ``region``)."""
    from skimage.exposure import equalize_adapthist

    values = x[region] if region is not None else x
    low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    if high <= low:
        return x
    unit = np.clip((x - low) / (high - low), 0.0, 1.0)
    tile = [max(8, round(n * CLAHE_TILE_SHARE)) for n in x.shape]
    out = equalize_adapthist(unit, kernel_size=tile, clip_limit=CLAHE_CLIP_LIMIT)
    return np.asarray(out, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# resampling


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]
) -> tuple[int, ...]:
    """Grid shape after resampling ``shape`` from ``spacing`` to ``target_spacing`` (mm)."""
    return tuple(
        max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing, strict=True)
    )


def needs_resampling(
    spacing: Sequence[float], target_spacing: Sequence[float] | None, rtol: float = 1e-3
) -> bool:
    """True when the spacings differ by more than ``rtol`` (relative) on any axis."""
    if target_spacing is None:
        return False
    return not np.allclose(np.asarray(spacing), np.asarray(target_spacing), rtol=rtol, atol=0)


def resample_to_shape(array: np.ndarray | torch.Tensor, shape: Sequence[int], order: int = 1):
    """Resample the last ``len(shape)`` axes of an array to ``shape``.

    Parameters
    ----------
    array : np.ndarray or torch.Tensor
        ``(..., *spatial)``; leading axes (channels) are kept.
    shape : sequence of int
        Target spatial shape (2 or 3 axes).
    order : int
        0 = nearest (labels), 1 = linear (images, probabilities).

    Returns
    -------
    Same type as the input (numpy in -> numpy out), float32 unless ``order == 0``.
    """
    is_numpy = isinstance(array, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(array)) if is_numpy else array
    spatial = len(shape)
    if tuple(t.shape[-spatial:]) == tuple(shape):
        return array
    lead = t.shape[:-spatial]
    x = t.reshape(1, -1, *t.shape[-spatial:])
    if order == 0:
        y = F.interpolate(x.float(), size=tuple(shape), mode="nearest-exact").to(t.dtype)
    else:
        mode = "trilinear" if spatial == 3 else "bilinear"
        y = F.interpolate(x.float(), size=tuple(shape), mode=mode, align_corners=False)
    y = y.reshape(*lead, *shape)
    return y.numpy() if is_numpy else y


def resample_to_spacing(
    array: np.ndarray, spacing: Sequence[float], target_spacing: Sequence[float], order: int = 1
) -> np.ndarray:
    """Resample the last axes of ``array`` from ``spacing`` to ``target_spacing`` (mm)."""
    spatial = len(spacing)
    shape = resampled_shape(array.shape[-spatial:], spacing, target_spacing)
    return resample_to_shape(array, shape, order)


def prepare_image(
    channels: Sequence[np.ndarray],
    spacing: Sequence[float],
    params: Sequence[NormalisationParams],
    target_spacing: Sequence[float] | None = None,
    fov: np.ndarray | None | bool = True,  # True: find it here
) -> np.ndarray:
    """Normalise every channel and resample to the target spacing.

    Channels whose parameters say ``region="fov"`` take their z-score statistics inside the
    picture's field of view (:func:`field_of_view_mask`, one mask for all channels; ``fov``:
    True = find it here, else the mask the caller already found, None when there is none).

    Returns
    -------
    np.ndarray
        float32 ``(C, *spatial)`` on the target grid.
    """
    if len(channels) != len(params):
        raise ValueError(
            f"The model expects {len(params)} input channel(s) but the image has {len(channels)}."
        )
    if fov is True:
        fov = None
        if any(p.region == "fov" and p.scheme == "zscore" for p in params) and \
                np.ndim(channels[0]) == 2:
            fov = field_of_view_mask(channels)
    stacked = np.stack([normalise(c, p, fov if p.region == "fov" else None)
                        for c, p in zip(channels, params, strict=True)])
    if needs_resampling(spacing, target_spacing):
        stacked = resample_to_spacing(stacked, spacing, target_spacing, order=1)
    return np.ascontiguousarray(stacked, dtype=np.float32)


def prepare_labels(
    labels: np.ndarray, spacing: Sequence[float], target_spacing: Sequence[float] | None = None
) -> np.ndarray:
    """Resample a label array (nearest neighbour) to the target spacing; uint8."""
    labels = np.asarray(labels, dtype=np.uint8)
    if needs_resampling(spacing, target_spacing):
        labels = resample_to_spacing(labels, spacing, target_spacing, order=0)
    return np.ascontiguousarray(labels)


def median_spacing(spacings: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """Per-axis median voxel spacing (mm): the default target spacing of a dataset."""
    return tuple(float(v) for v in np.median(np.asarray(spacings, dtype=float), axis=0))
