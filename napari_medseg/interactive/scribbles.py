"""Simulated scribbles: the strokes an annotator paints for grow-from-seeds, made from a label map.

Used by ``benchmarks/seeds.py`` to measure :func:`~napari_medseg.interactive.grow_from_seeds`
the way it is used: a few strokes on a few slices, not a dense mask. On each chosen slice

* every object gets one stroke along its middle (the slice's skeleton of that object: a line
  drawn through it, never touching its boundary), and
* the background gets one closed stroke around all objects, ``ring_mm`` outside them (the
  "circle around it" annotators draw).

Slices are taken through the objects' extent along ``axis``, the middle one first, then the
quartiles, then halfway between those..., so the strokes of the first ``k`` slices are what an
annotator who scribbles on ``k`` slices would give. 2D images have one "slice", the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_medseg.interactive.seeds import BACKGROUND_SEED

__all__ = ["scribble_slices", "simulated_scribbles"]


def scribble_slices(labels: np.ndarray, n_slices: int, axis: int = 0) -> list[int]:
    """Indices of ``n_slices`` slices through the objects (``labels > 0``) along ``axis``.

    The middle slice of the objects' extent first, then the quartiles, then the eighths...
    (distinct slices that hold an object; fewer when the objects span fewer slices).
    """
    labels = np.asarray(labels)
    present = np.flatnonzero(np.moveaxis(labels > 0, axis, 0)
                             .reshape(labels.shape[axis], -1).any(axis=1))
    wanted = min(max(int(n_slices), 0), present.size)
    order: list[int] = []
    depth = 1
    while len(order) < wanted:
        if 2 ** depth > 4 * present.size:  # finer than the slices: take those left, in order
            order += [int(i) for i in present if int(i) not in order][: wanted - len(order)]
            break
        for k in range(1, 2 ** depth, 2):  # 1/2; 1/4, 3/4; 1/8, 3/8 ...
            index = int(present[int(round(k / 2 ** depth * (present.size - 1)))])
            if index not in order and len(order) < wanted:
                order.append(index)
        depth += 1
    return order


def _object_stroke(mask: np.ndarray) -> np.ndarray:
    """A line through the middle of a 2D object: its skeleton (the object itself when tiny)."""
    from skimage.morphology import skeletonize

    line = skeletonize(mask)
    return line if line.any() else mask


def _ring(objects: np.ndarray, spacing: tuple[float, float], ring_mm: float) -> np.ndarray:
    """A one-pixel closed line ``ring_mm`` outside the 2D ``objects`` mask (clipped to the
    image)."""
    from scipy import ndimage

    outside = ndimage.distance_transform_edt(~objects, sampling=spacing)
    step = max(min(spacing), 1e-6)
    ring = (outside > ring_mm) & (outside <= ring_mm + step)
    if not ring.any():  # the objects fill the image: the farthest pixels are background
        ring = outside >= outside.max() - step / 2 if outside.max() > 0 else ring
    return ring


def simulated_scribbles(
    labels: np.ndarray,
    n_slices: int = 3,
    axis: int = 0,
    spacing: Sequence[float] | None = None,
    ring_mm: float = 3.0,
    background: int = BACKGROUND_SEED,
    offset: int = 1,
) -> np.ndarray:
    """Seeds for :func:`~napari_medseg.interactive.grow_from_seeds` on ``n_slices`` slices.

    Parameters
    ----------
    labels : np.ndarray of int
        Ground truth ``(Z, Y, X)`` or ``(Y, X)``: 0 background, objects 1, 2, ...
    n_slices : int
        Slices that get strokes (see :func:`scribble_slices`); ignored for 2D labels.
    axis : int
        Axis the slices are taken along (3D).
    spacing : sequence of float, optional
        Voxel size in mm (array order) for the background ring's distance; default 1 mm.
    ring_mm : float
        Distance of the background stroke outside the objects.
    background : int
        Seed value of background strokes.
    offset : int
        Object ``v`` gets seed value ``v + offset`` (the Annotate dock's seeds layer uses 1:
        seed 1 = background, 2 = class 1 ...); map the grown result back with
        ``result - offset`` where it is positive.

    Returns
    -------
    np.ndarray of int32
        Strokes on the grid of ``labels``, 0 where there is none.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"Scribbles are simulated on 2D or 3D labels, not {labels.ndim}D.")
    if offset < 1 or background > offset:
        raise ValueError("The object seed values (label + offset) must lie above the "
                         "background seed value.")
    seeds = np.zeros(labels.shape, dtype=np.int32)
    sp = tuple(float(s) for s in (spacing or (1.0,) * labels.ndim))[-labels.ndim:]
    if labels.ndim == 2:
        planes = [(None, labels, seeds)]
        plane_spacing = sp
    else:
        moved_labels = np.moveaxis(labels, axis, 0)
        moved_seeds = np.moveaxis(seeds, axis, 0)  # a view: writing it writes ``seeds``
        planes = [(i, moved_labels[i], moved_seeds[i])
                  for i in scribble_slices(labels, n_slices, axis)]
        plane_spacing = tuple(s for k, s in enumerate(sp) if k != axis % 3)
    for _index, plane, out in planes:
        objects = plane > 0
        if not objects.any():
            continue
        for value in np.unique(plane[objects]):
            out[_object_stroke(plane == value)] = int(value) + offset
        out[_ring(objects, plane_spacing, ring_mm)] = background
    return seeds
