"""Click-driven refinement of one label on a crop: the core of the Interactive section.

:func:`refine_with_clicks` runs a click-guided model (its card has a ``guidance`` entry, see
:mod:`napari_medseg.interactive.guidance`) on a crop around the object and the clicks, with the
guidance channels of the edited class filled, and returns an
:class:`~napari_medseg.editing.patches.EditPatch` for that crop in which only voxels of the
edited label changed (added on background, removed from the label) - other labels are never
touched, so the GUI applies it as one undoable edit. A model without guidance channels (or no
model) falls back to :func:`~napari_medseg.interactive.seeds.grow_from_seeds` with the clicks
as seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from napari_medseg.editing.patches import EditPatch
from napari_medseg.interactive.clicks import (
    DEFAULT_CROP_MARGIN_MM,
    DEFAULT_CROP_SHARE,
    Click,
    default_crop_margin,
)
from napari_medseg.interactive.guidance import (
    DEFAULT_RADIUS_MM,
    channels_per_class,
    class_click_maps,
    click_maps,
    guidance_of,
)
from napari_medseg.interactive.seeds import grow_from_seeds
from napari_medseg.io.volume import Volume

#: Logit head start of the clicked answer at a click (see :func:`refine_with_clicks`).
DEFAULT_CLICK_PRIOR = 8.0

__all__ = ["DEFAULT_CLICK_PRIOR", "DEFAULT_CROP_MARGIN_MM", "DEFAULT_CROP_SHARE", "MAX_CROP_VOXELS",
           "MAX_CROP_WINDOWS", "crop_around", "default_crop_margin", "refine_with_clicks"]


def _spacing_known(image: Any) -> bool:
    """False for a Volume whose file gave no pixel size (``metadata["spacing_known"]``)."""
    return not (isinstance(image, Volume) and
                (image.metadata or {}).get("spacing_known") is False)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of a boolean mask (None when empty), from its projections on the axes:
    a few passes over the mask instead of listing the indices of every voxel (a lung on a
    512x512x300 CT has six million)."""
    out = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        if hit.size == 0:
            return None
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def crop_around(shape: Sequence[int], mask: np.ndarray | None, points: Sequence[Sequence[int]],
                spacing: Sequence[float], margin_mm: float,
                min_size: Sequence[int] | None = None) -> tuple[slice, ...] | None:
    """Bounding box of ``mask`` and ``points`` grown by ``margin_mm`` (and to ``min_size``
    voxels when given), clipped to ``shape``; None when both are empty."""
    lo = np.full(len(shape), np.iinfo(np.int64).max)
    hi = np.full(len(shape), -1)
    box = _bounding_box(mask) if mask is not None else None
    if box is not None:
        lo = np.minimum(lo, [b.start for b in box])
        hi = np.maximum(hi, [b.stop - 1 for b in box])
    for p in points:
        lo = np.minimum(lo, [int(round(c)) for c in p])
        hi = np.maximum(hi, [int(round(c)) for c in p])
    if (hi < 0).any():
        return None
    out = []
    for ax, n in enumerate(shape):
        m = int(np.ceil(margin_mm / float(spacing[ax])))
        a, b = int(lo[ax]) - m, int(hi[ax]) + 1 + m
        if min_size is not None and b - a < min_size[ax]:
            grow = int(min_size[ax]) - (b - a)
            a -= grow // 2
            b += grow - grow // 2
        if a < 0:
            b, a = min(b - a, n), 0
        if b > n:
            a, b = max(a - (b - n), 0), n
        out.append(slice(max(a, 0), min(b, n)))
    return tuple(out)


def _image_channels(image: Volume | np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(image, Volume):
        return [c.array for c in image.channel_volumes()]
    if isinstance(image, np.ndarray):
        return [image]
    return [np.asarray(c) for c in image]


def _checked_prompt_inputs(image_volume: Volume | np.ndarray, current_labels: np.ndarray,
                           label: int, spacing: Sequence[float] | None, what: str
                           ) -> tuple[int, list[np.ndarray], np.ndarray, tuple[float, ...]]:
    """(label, image channels, labels, spacing in mm) of a click or box prompt, checked:
    a foreground label and an image on the labels' grid (``what`` ends the label message)."""
    label = int(label)
    if label <= 0:
        raise ValueError(f"Choose a label (not background) {what}.")
    channels = _image_channels(image_volume)
    labels = np.asarray(current_labels)
    if channels[0].shape != labels.shape:
        raise ValueError(f"The labels {labels.shape} and the image {channels[0].shape} differ "
                         "in shape.")
    if spacing is None:
        spacing = image_volume.spacing if isinstance(image_volume, Volume) else \
            (1.0,) * labels.ndim
    return label, channels, labels, tuple(float(s) for s in spacing)[-labels.ndim:]


def _merge(old: np.ndarray, mask: np.ndarray, label: int, clicks: Sequence[Click],
           origin: Sequence[int]) -> np.ndarray:
    """The crop with ``label`` set to ``mask`` where that touches only background or ``label``.

    Clicks are honoured exactly: a positive click's voxel ends in ``label`` (when it is
    background or ``label``), a negative one's leaves it. Only the clicked object changes:
    a part of ``label`` that neither touches the new mask nor holds (or borders) a click is
    another object (painted elsewhere, say) and is kept as it is.
    """
    mask = mask.copy()
    at_clicks = np.zeros(mask.shape, bool)
    for coord, positive in clicks:
        local = tuple(int(round(c)) - o for c, o in zip(coord, origin, strict=True))
        if all(0 <= i < n for i, n in zip(local, mask.shape, strict=True)):
            mask[local] = bool(positive)
            at_clicks[local] = True
    current = old == label
    if current.any():
        full = ndimage.generate_binary_structure(old.ndim, old.ndim)
        parts, _n = ndimage.label(current, structure=full)
        near = ndimage.binary_dilation(mask | at_clicks, structure=full)
        edited = np.unique(parts[near & current])
        mask |= current & ~np.isin(parts, edited)  # the other objects of the label stay
    new = old.copy()
    new[current & ~mask] = 0
    new[mask & (old == 0)] = label
    return new


def _seeded_mask(image: list[np.ndarray], old: np.ndarray, label: int, clicks: Sequence[Click],
                 origin: Sequence[int], spacing: Sequence[float], radius_mm: float,
                 method: str) -> np.ndarray:
    """Fallback without a guidance model: grow from the clicks (and the confident parts of the
    current label) with :func:`grow_from_seeds`; returns the label's new mask on the crop."""
    shape = old.shape
    sp = tuple(float(s) for s in spacing)
    pos = np.zeros(shape, bool)
    neg = np.zeros(shape, bool)
    for coord, positive in clicks:
        local = tuple(int(round(c)) - o for c, o in zip(coord, origin, strict=True))
        if all(0 <= i < n for i, n in zip(local, shape, strict=True)):
            (pos if positive else neg)[local] = True
    far = 3.0 * radius_mm

    def distance_to(points: np.ndarray) -> np.ndarray:
        if not points.any():
            return np.full(shape, np.inf)
        return ndimage.distance_transform_edt(~points, sampling=sp)

    d_pos, d_neg = distance_to(pos), distance_to(neg)
    current = old == label
    seeds = np.zeros(shape, np.int32)  # 1 = background, 2 = object
    border = np.ones(shape, bool)
    border[tuple(slice(1, -1) for _ in shape)] = False
    seeds[border & ~current] = 1
    if current.any():
        inside = ndimage.distance_transform_edt(current, sampling=sp)
        outside = ndimage.distance_transform_edt(~current, sampling=sp)
        seeds[(inside > 2.0) & (d_neg > far)] = 2  # the label's interior, away from "no" clicks
        seeds[(outside > 2.0) & (d_pos > far)] = 1  # clear background, away from "yes" clicks
    seeds[d_pos <= radius_mm / 2] = 2
    seeds[d_neg <= radius_mm / 2] = 1
    seeds[(old != 0) & ~current] = 1  # other labels are background here
    if not (seeds == 2).any():
        return np.zeros(shape, bool)
    if not (seeds == 1).any():
        return np.ones(shape, bool)
    arr = image[0] if len(image) == 1 else np.stack(image, -1)
    grown = grow_from_seeds(arr, seeds, sp, roi=tuple(slice(None) for _ in shape), method=method,
                            channel_axis=None if len(image) == 1 else -1)
    return grown == 2


def _guided_mask(model: torch.nn.Module, card: Any, image: np.ndarray, label: int,
                 clicks: Sequence[Click], origin: Sequence[int], spacing: Sequence[float],
                 guidance: dict[str, Any], device: torch.device,
                 click_prior: float = 0.0, previous: np.ndarray | None = None,
                 prior_radius_mm: float | None = None) -> np.ndarray:
    """Run the click-guided network on the crop (``image``: normalised ``(C, *crop)``;
    ``previous``: the label's current mask there, for models that take it); the label's mask
    on the crop grid. The click prior fades with the guidance maps, or with Gaussians of
    ``prior_radius_mm`` when given."""
    from monai.inferers import sliding_window_inference

    from napari_medseg.preprocess import resample_to_shape

    shape = image.shape[1:]
    target = None
    x = image
    if card.spacing is not None:
        t = list(card.spacing)[-len(shape):]
        target = tuple(float(s if v is None else v) for s, v in zip(spacing, t, strict=True))
        grid = tuple(max(int(round(n * s / v)), 1) for n, s, v in zip(shape, spacing, target,
                                                                       strict=True))
        x = resample_to_shape(image, grid, order=1)
    grid = x.shape[1:]
    scale = [g / n for g, n in zip(grid, shape, strict=True)]
    local = [Click(tuple((int(round(c)) - o + 0.5) * s - 0.5
                         for c, o, s in zip(coord, origin, scale, strict=True)), bool(p))
             for coord, p in clicks]
    grid_spacing = target if target is not None else tuple(spacing)
    per_class = channels_per_class(guidance)
    prior = None
    if per_class == 3 and previous is not None:  # the mask the clicks correct, on the grid
        prior = {label: resample_to_shape(previous.astype(np.float32)[None], grid,
                                          order=1)[0] >= 0.5}
    maps = class_click_maps(grid, {label: local}, card.num_classes, grid_spacing,
                            float(guidance.get("radius_mm", DEFAULT_RADIUS_MM)),
                            str(guidance.get("kind", "gaussian")), prior, per_class)
    x = np.concatenate([x, maps], 0)
    t = torch.from_numpy(x)
    if card.dims == 3:
        t = t[None]
    else:
        t = t[None] if len(shape) == 2 else t.permute(1, 0, 2, 3)
    # MONAI directly (as the inference engine does), so that training and inference, which
    # import the guidance channels from this package, never import back from it
    with torch.inference_mode():
        logits = sliding_window_inference(t.contiguous().to(device), card.patch_size[-card.dims:],
                                          4, model, overlap=0.25, mode="gaussian",
                                          padding_mode="constant", cval=0.0)
    if click_prior > 0:
        # a click is the annotator's word: near it the clicked answer gets a head start that
        # fades with the click map (decisive at the click, a nudge 2 radii away), so that the
        # voxels the network is unsure about follow the click and confident ones need more
        first = per_class * (label - 1)
        if prior_radius_mm is None:
            pos, neg = maps[first], maps[first + 1]
        else:
            pos, neg = click_maps(grid, local, grid_spacing, float(prior_radius_mm), "gaussian")
        bias = torch.from_numpy(click_prior * (pos - neg))
        if not (card.dims == 2 and len(shape) == 3):  # else slices are the batch already
            bias = bias[None]
        logits = logits.float().clone()  # an inference-mode tensor cannot be changed in place
        logits[:, label] += bias.to(logits.device)
    probs = torch.softmax(logits.float(), dim=1)
    probs = probs[0] if card.dims == 3 else (probs.permute(1, 0, 2, 3) if len(shape) == 3
                                              else probs[0])
    # the label wins where its probability beats every other class: that margin alone is
    # resampled back to the crop (one channel instead of all; exact for two classes)
    others = [k for k in range(probs.shape[0]) if k != int(label)]
    margin = probs[int(label)] - probs[others].amax(0)
    margin = resample_to_shape(margin[None].float().cpu(), shape, order=1)[0]
    return np.asarray(margin > 0)


#: Crops above this many voxels are replaced by a box of this size around the newest click.
MAX_CROP_VOXELS = 128 ** 3
#: Guided models: a crop of more than this many network windows becomes one window.
MAX_CROP_WINDOWS = 2.0


def _local_size(crop: tuple[slice, ...], window: Sequence[int] | None) -> list[int] | None:
    """Box size (voxels per axis) to use instead of ``crop`` when it is too large, else None."""
    sizes = [s.stop - s.start for s in crop]
    if window is not None:
        if np.prod(sizes, dtype=np.float64) > MAX_CROP_WINDOWS * np.prod(window,
                                                                          dtype=np.float64):
            return [int(w) for w in window]
        return None
    if np.prod(sizes, dtype=np.float64) <= MAX_CROP_VOXELS:
        return None
    side = int(round(MAX_CROP_VOXELS ** (1.0 / len(sizes))))
    return [min(side, n) for n in sizes]


_STATS_CACHE: dict[tuple, tuple[float, float]] = {}


def _zscore_stats(channel: np.ndarray, fov: np.ndarray | None) -> tuple[float, float]:
    """Mean and standard deviation of a whole channel (inside ``fov`` when given), cached per
    image array, so that every click on a 512x512x300 CT does not recompute them."""
    key = (channel.__array_interface__["data"][0], channel.shape, channel.dtype.str,
           channel.strides, None if fov is None else int(fov.sum()),
           float(channel.ravel()[:: max(channel.size // 101, 1)].sum()))
    if key not in _STATS_CACHE:
        values = channel if fov is None or not fov.any() else channel[fov]
        mean = float(values.mean(dtype=np.float64))
        std = float(values.std(dtype=np.float64))
        if len(_STATS_CACHE) > 16:
            _STATS_CACHE.clear()
        _STATS_CACHE[key] = (mean, std)
    return _STATS_CACHE[key]


def _normalised_crop(channels: list[np.ndarray], params: Sequence[Any],
                     crop: tuple[slice, ...]) -> np.ndarray:
    """The crop of every channel normalised as :func:`~napari_medseg.preprocess.prepare_image`
    normalises the whole image (``(C, *crop)`` float32), computing only the crop."""
    from napari_medseg.preprocess import field_of_view_mask, normalise

    fov = None
    if any(p.region == "fov" and p.scheme == "zscore" for p in params) and channels[0].ndim == 2:
        fov = field_of_view_mask(channels)
    out = []
    for channel, p in zip(channels, params, strict=True):
        part = np.asarray(channel[crop], dtype=np.float32)
        if getattr(p, "local_contrast", False) and np.ndim(channel) == 2:
            # local equalisation depends on the surroundings: the whole picture (2D, small)
            out.append(normalise(channel, p, fov if p.region == "fov" else None)[crop])
        elif p.scheme == "zscore":
            mean, std = _zscore_stats(np.asarray(channel), fov if p.region == "fov" else None)
            out.append((part - mean) / max(std, 1e-8))
        else:
            out.append(normalise(part, p))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def refine_with_clicks(
    model: torch.nn.Module | None,
    card: Any,
    image_volume: Volume | np.ndarray,
    current_labels: np.ndarray,
    label: int,
    clicks: Sequence[Click | tuple],
    crop_margin_mm: float | None = None,
    spacing: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
    fallback: str = "random_walker",
    click_prior: float = DEFAULT_CLICK_PRIOR,
    click_prior_radius_mm: float | None = None,
) -> EditPatch | None:
    """Update one label from positive and negative clicks, inside a crop around it.

    Parameters
    ----------
    model : torch.nn.Module or None
        Loaded network (eval mode); None = training-free fallback.
    card : ModelCard or None
        Its card; guidance channels are used when ``card`` has a click ``guidance`` entry (see
        :func:`~napari_medseg.interactive.guidance.guidance_of`), otherwise the clicks seed
        :func:`~napari_medseg.interactive.seeds.grow_from_seeds`.
    image_volume : Volume or np.ndarray
        The image (a colour Volume gives its three channels); ``(Z, Y, X)`` or ``(Y, X)``.
    current_labels : np.ndarray of int
        The label map as it is now (not modified).
    label : int
        The label being edited (> 0).
    clicks : sequence of (coord, is_positive)
        All clicks of this interaction so far, voxel indices in array order.
    crop_margin_mm : float, optional
        Margin around the label's current extent and the clicks, in mm (in pixels on a
        picture whose file gives no pixel size); default :func:`default_crop_margin` (15 mm,
        or a fifth of such a picture's longer side). With a guided model the crop
        is at least one network window, and exactly one (centred on the object) when the
        object and the clicks fit in it: one forward pass per click.
    spacing : sequence of float, optional
        Voxel size in mm when ``image_volume`` is an array (default: the Volume's, else 1 mm).
    device : str or torch.device
    fallback : {"random_walker", "watershed"}
        Method of the training-free fallback.
    click_prior : float
        Guided models: logit added to the edited class in proportion to the positive click
        map (subtracted for negative clicks), so that a click always has an effect around it
        (0 = the network's output alone).
    click_prior_radius_mm : float, optional
        Radius (mm) of the Gaussians the click prior fades with (default: the model's
        guidance radius, i.e. its own click maps).

    Returns
    -------
    EditPatch or None
        ``bbox`` = the crop, ``old``/``new`` = its labels before/after (only ``label`` and
        background voxels differ); None when nothing changes. ``patch.apply(labels)`` applies
        it, ``patch.revert(labels)`` undoes it.

    Raises
    ------
    ValueError
        Mismatched shapes, a label that is not a class of the model, or no click.
    """
    if card is not None and isinstance(image_volume, Volume):
        image_volume = image_volume.for_channels(card.in_channels)  # grey stored as RGB
    label, channels, labels, sp = _checked_prompt_inputs(image_volume, current_labels, label,
                                                         spacing, "to edit with clicks")
    if crop_margin_mm is None:
        crop_margin_mm = default_crop_margin(labels.shape, _spacing_known(image_volume))
    clicks = [Click(tuple(int(round(c)) for c in coord), bool(p)) for coord, p in clicks]
    if not clicks:
        raise ValueError("Click on the image first (a positive click inside the object).")
    outside = [c for c in clicks if not all(0 <= i < n for i, n in zip(c.coord, labels.shape,
                                                                          strict=True))]
    if outside:
        raise ValueError(f"A click at {outside[-1].coord} is outside the image "
                         f"{labels.shape}: click on the image (remove that point).")
    guidance = guidance_of(card) if card is not None and model is not None else None
    if guidance is not None and not label < card.num_classes:
        raise ValueError(f"Label {label} is not one of the classes of {card.describe()}.")
    min_size = None
    if guidance is not None and card.dims == labels.ndim:
        tgt = card.spacing or [None] * labels.ndim
        tgt = list(tgt)[-labels.ndim:]
        min_size = [int(np.ceil(p * (s if t is None else t) / s0)) for p, t, s, s0 in
                    zip(card.patch_size[-labels.ndim:], tgt, sp, sp, strict=True)]
    points = [c.coord for c in clicks]
    current = labels == label
    crop = crop_around(labels.shape, current, points, sp, crop_margin_mm, min_size)
    if min_size is not None and any(s.stop - s.start > m for s, m in zip(crop, min_size,
                                                                         strict=True)):
        # the object and its clicks fit in one network window: one window, no sliding
        tight = crop_around(labels.shape, current, points, sp, 0.0, min_size)
        if all(s.stop - s.start <= m for s, m in zip(tight, min_size, strict=True)):
            crop = tight
    local = _local_size(crop, min_size)
    if local is not None:
        # a large object (a lung, a liver): the click edits the region around it, one network
        # window (or a bounded box for the training-free method) centred on the newest click,
        # so that a click costs the same on any organ
        crop = crop_around(labels.shape, None, points[-1:], sp, 0.0, local)
    origin = [s.start for s in crop]
    old = labels[crop]
    if guidance is not None:
        from napari_medseg.preprocess import NormalisationParams

        params = [NormalisationParams.from_dict(d) for d in card.normalisation]
        if len(params) != len(channels):
            raise ValueError(f"The model {card.describe()} expects {len(params)} image "
                             f"channel(s); this image has {len(channels)}.")
        # normalised with the whole image's statistics (per-volume z-score, as in training)
        normed = _normalised_crop(channels, params, crop)
        mask = _guided_mask(model, card, normed, label, clicks, origin, sp, guidance,
                            torch.device(device), float(click_prior), old == label,
                            click_prior_radius_mm)
    else:
        mask = _seeded_mask([c[crop] for c in channels], old, label, clicks, origin, sp,
                            DEFAULT_RADIUS_MM, fallback)
    new = _merge(old, mask, label, clicks, origin)
    if np.array_equal(new, old):
        return None
    return EditPatch(bbox=crop, old=old.copy(), new=new)
