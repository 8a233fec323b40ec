"""Box prompts: the object inside a box the user drew becomes one label.

A box (two opposite corners in voxel indices, drawn on a slice of a volume or on a 2D image)
says two things: the object lies inside it, and it fills the box's middle. With a click-guided
model the box becomes a positive click at its centre; without one, the training-free
:func:`~napari_medseg.interactive.seeds.grow_from_seeds` grows the object from the box's middle
against a background seed ring just outside the box (the GrabCut idea). Either way nothing
outside the box changes, and only voxels of the edited label and background do.

Pure core: no Qt, no napari.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from napari_medseg.editing.patches import EditPatch
from napari_medseg.interactive.guidance import guidance_of
from napari_medseg.interactive.refine import (
    DEFAULT_CLICK_PRIOR,
    _checked_prompt_inputs,
    refine_with_clicks,
)
from napari_medseg.interactive.seeds import grow_from_seeds
from napari_medseg.io.volume import Volume

#: Share of the box's half-extent (per axis) seeded as the object around its centre.
CENTRE_SHARE = 0.25
#: Width of the background ring outside the box: this share of its extent, at least 2 voxels.
RING_SHARE = 0.15
#: A box must span at least this many voxels along its two largest axes.
MIN_BOX_VOXELS = 4


def box_slices(corners: Sequence[Sequence[float]], shape: Sequence[int]) -> tuple[slice, ...]:
    """The box spanned by two opposite corners (voxel indices, any order, inclusive), clipped
    to ``shape``.

    Raises
    ------
    ValueError
        When the box lies outside the image or is too small to segment anything in.
    """
    a, b = (np.asarray(c, float) for c in corners)
    if a.shape != (len(shape),) or b.shape != (len(shape),):
        raise ValueError(f"A box needs two corners of {len(shape)} coordinates.")
    lo = np.clip(np.floor(np.minimum(a, b) + 0.5), 0, np.asarray(shape) - 1).astype(int)
    hi = np.clip(np.floor(np.maximum(a, b) + 0.5), 0, np.asarray(shape) - 1).astype(int)
    if np.any(np.maximum(a, b) < 0) or np.any(np.minimum(a, b) > np.asarray(shape) - 1):
        raise ValueError("The box lies outside the image.")
    extent = hi - lo + 1
    if np.sort(extent)[-2:].min() < MIN_BOX_VOXELS:
        raise ValueError(f"Draw a larger box (at least {MIN_BOX_VOXELS} pixels each way) "
                         "around the whole object.")
    return tuple(slice(int(lo_), int(hi_) + 1) for lo_, hi_ in zip(lo, hi, strict=True))


def _seeded_box_mask(channels: list[np.ndarray], labels: np.ndarray, label: int,
                     box: tuple[slice, ...], spacing: Sequence[float], method: str
                     ) -> tuple[tuple[slice, ...], np.ndarray]:
    """(crop, the label's new mask on it) from seeds: the box's middle = object, a ring just
    outside the box and other labels = background."""
    shape = labels.shape
    ring = [max(2, int(np.ceil(RING_SHARE * (s.stop - s.start)))) if s.stop - s.start > 1
            else 0 for s in box]
    crop = tuple(slice(max(0, s.start - r), min(n, s.stop + r))
                 for s, r, n in zip(box, ring, shape, strict=True))
    local_box = tuple(slice(s.start - c.start, s.stop - c.start)
                      for s, c in zip(box, crop, strict=True))
    old = labels[crop]
    seeds = np.ones(old.shape, np.int32)  # 1 = background (outside the box), 2 = object
    seeds[local_box] = 0
    grid = np.indices(old.shape, dtype=np.float32)
    inner = np.ones(old.shape, bool)
    for axis, s in enumerate(local_box):
        half = (s.stop - s.start) / 2.0
        if s.stop - s.start > 1:
            centre = s.start + half - 0.5
            inner &= np.abs(grid[axis] - centre) <= max(CENTRE_SHARE * half, 0.5)
    seeds[inner] = 2
    seeds[(old != 0) & (old != label)] = 1  # other labels stay what they are
    keep = [i for i, s in enumerate(crop) if s.stop - s.start > 1]  # a box on one slice: 2D
    squeeze = tuple(slice(None) if i in keep else 0 for i in range(len(shape)))
    arrays = [np.asarray(c[crop], np.float32)[squeeze] for c in channels]
    arr = arrays[0] if len(arrays) == 1 else np.stack(arrays, -1)
    grown = grow_from_seeds(arr, seeds[squeeze], tuple(spacing[i] for i in keep),
                            roi=tuple(slice(None) for _ in keep), method=method,
                            channel_axis=None if len(arrays) == 1 else -1)
    mask = np.zeros(old.shape, bool)
    mask[squeeze] = grown == 2
    inside = np.zeros(old.shape, bool)
    inside[local_box] = True
    return crop, mask & inside


def refine_with_box(
    model: torch.nn.Module | None,
    card: Any,
    image_volume: Volume | np.ndarray,
    current_labels: np.ndarray,
    label: int,
    corners: Sequence[Sequence[float]],
    spacing: Sequence[float] | None = None,
    device: str | torch.device = "cpu",
    fallback: str = "random_walker",
    click_prior: float = DEFAULT_CLICK_PRIOR,
) -> EditPatch | None:
    """Segment the object inside a box into ``label``.

    Parameters
    ----------
    model, card :
        A click-guided network and its card (see :func:`refine_with_clicks`), or None for the
        training-free method.
    image_volume : Volume or np.ndarray
        ``(Z, Y, X)`` or ``(Y, X)``; a colour Volume gives its three channels.
    current_labels : np.ndarray of int
        The label map as it is now (not modified).
    label : int
        The label to draw (> 0).
    corners : two sequences of float
        Opposite corners of the box in voxel indices (array order); a box drawn on one slice
        of a volume has the same slice index in both.
    spacing : sequence of float, optional
        Voxel size in mm when ``image_volume`` is an array (default: the Volume's, else 1 mm).
    device, fallback, click_prior :
        As in :func:`refine_with_clicks`.

    Returns
    -------
    EditPatch or None
        The changed region (inside the box only: voxels of ``label`` or background); None when
        nothing changes.

    Raises
    ------
    ValueError
        Background chosen as label, shapes that differ, or a box too small or outside the image.
    """
    label, channels, labels, sp = _checked_prompt_inputs(image_volume, current_labels, label,
                                                         spacing, "to draw with a box")
    box = box_slices(corners, labels.shape)
    if model is not None and card is not None and guidance_of(card) is not None:
        centre = tuple((s.start + s.stop - 1) // 2 for s in box)
        patch = refine_with_clicks(model, card, image_volume, labels, label, [(centre, True)],
                                   spacing=sp, device=device, click_prior=click_prior)
        if patch is None:
            return None
        crop, old, new = patch.bbox, patch.old, patch.new.copy()
        inside = np.zeros(old.shape, bool)
        inside[tuple(slice(max(b.start - c.start, 0), max(b.stop - c.start, 0))
                     for b, c in zip(box, crop, strict=True))] = True
        new[~inside] = old[~inside]
    else:
        crop, mask = _seeded_box_mask(channels, labels, label, box, sp, fallback)
        old = labels[crop]
        inside = np.zeros(old.shape, bool)
        inside[tuple(slice(b.start - c.start, b.stop - c.start)
                     for b, c in zip(box, crop, strict=True))] = True
        new = old.copy()
        new[inside & (old == label) & ~mask] = 0
        new[mask & (old == 0)] = label
    if np.array_equal(new, old):
        return None
    return EditPatch(bbox=crop, old=old.copy(), new=new)
