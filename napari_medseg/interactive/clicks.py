"""The standard click simulator of interactive-segmentation benchmarks.

Protocol (binary, one structure at a time): the first click goes to the interior point farthest
from the boundary of the largest missed region; every next click to the centre (the point
farthest from its boundary, distances in mm) of the largest error region, positive for a missed
region (false negative), negative for a false one (false positive). Dice is recorded after
0, 1, ... ``max_clicks`` clicks; NoC@t is the number of clicks needed to reach Dice ``t``
(:data:`NOC_NEVER` = 20 when it is never reached).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from napari_medseg.metrics import dice

#: NoC when the threshold is never reached (the literature's convention: 20 clicks).
NOC_NEVER = 20

__all__ = ["DEFAULT_CROP_MARGIN_MM", "DEFAULT_CROP_SHARE", "NOC_NEVER", "Click",
           "default_crop_margin", "error_regions", "next_click", "noc", "simulate_session"]


#: Default reach of a click (mm) beyond the clicks and the label.
DEFAULT_CROP_MARGIN_MM = 15.0
#: Pictures without a pixel size: the default margin is this share of the picture's longer
#: in-plane side, in pixels (15 "mm" read as 15 px reaches a tenth of a 100-px lesion).
DEFAULT_CROP_SHARE = 0.2


def default_crop_margin(shape: Sequence[int], spacing_known: bool = True) -> float:
    """Default reach of a click: how far beyond the clicks and the label a click may change.

    Parameters
    ----------
    shape : sequence of int
        The image grid, ``(Z, Y, X)`` or ``(Y, X)`` (a colour axis excluded).
    spacing_known : bool
        Whether the file gave the pixel size. False: the grid's spacing 1 is a placeholder.

    Returns
    -------
    float
        :data:`DEFAULT_CROP_MARGIN_MM` (mm) when the spacing is known; otherwise a share
        (:data:`DEFAULT_CROP_SHARE`) of the longer in-plane side, in pixels (at least 2).

    Examples
    --------
    >>> default_crop_margin((300, 420), spacing_known=False)
    84.0
    >>> default_crop_margin((300, 420))
    15.0
    """
    if spacing_known:
        return DEFAULT_CROP_MARGIN_MM
    in_plane = [int(n) for n in tuple(shape)[-2:]]
    return float(max(2, round(DEFAULT_CROP_SHARE * max(in_plane, default=8))))


class Click(NamedTuple):
    """One click: a voxel index in array order and whether it is positive (object)."""

    coord: tuple[int, ...]
    is_positive: bool


def _spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    sp = tuple(float(s) for s in spacing)[-ndim:]
    if len(sp) != ndim or not all(s > 0 for s in sp):
        raise ValueError(f"The spacing {tuple(spacing)} does not fit a {ndim}D mask.")
    return sp


def _interior_distance(region: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) of every voxel of ``region`` to its boundary; the array edge counts as
    boundary (the region is padded with background)."""
    padded = np.pad(region, 1)
    dist = ndimage.distance_transform_edt(padded, sampling=spacing)
    return dist[tuple(slice(1, -1) for _ in region.shape)]


def error_regions(pred: np.ndarray, gt: np.ndarray) -> list[tuple[int, bool, np.ndarray]]:
    """Connected error regions, largest first: ``[(voxel count, is_missed, mask)]``.

    ``is_missed`` is True for a false-negative region (``gt & ~pred``), False for a false
    positive one; face connectivity.
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    out = []
    for missed, err in ((True, gt & ~pred), (False, pred & ~gt)):
        comp, n = ndimage.label(err)
        if n == 0:
            continue
        sizes = np.bincount(comp.ravel())[1:]
        for i in np.argsort(-sizes, kind="stable"):
            out.append((int(sizes[i]), missed, comp == i + 1))
    out.sort(key=lambda r: -r[0])  # stable: missed regions win ties
    return out


def next_click(
    pred: np.ndarray,
    gt: np.ndarray,
    spacing: Sequence[float] | None = None,
    prev_clicks: Sequence[Click | tuple] = (),
) -> Click | None:
    """Where a simulated annotator clicks next.

    Parameters
    ----------
    pred, gt : np.ndarray of bool
        Current prediction and ground truth of ONE structure, ``(Z, Y, X)`` or ``(Y, X)``
        (an empty ``pred`` gives the first click).
    spacing : sequence of float, optional
        Voxel size in mm (array order); distances to the boundary are measured in mm.
    prev_clicks : sequence of Click
        Clicks already given; the simulator never clicks the same voxel twice (it takes the
        next farthest point of the region, or the next region).

    Returns
    -------
    Click or None
        ``(coord, is_positive)`` at the voxel of the largest error region farthest from that
        region's boundary: positive in a missed region, negative in a false-positive one. None
        when the prediction equals the ground truth.
    """
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"Prediction {pred.shape} and ground truth {gt.shape} differ in shape.")
    sp = _spacing(spacing, gt.ndim)
    used = {tuple(int(c) for c in click[0]) for click in prev_clicks}
    for _, missed, region in error_regions(pred, gt):
        dist = _interior_distance(region, sp)
        for idx in used:
            if len(idx) == dist.ndim and all(0 <= i < n for i, n in zip(idx, dist.shape,
                                                                         strict=True)):
                dist[idx] = 0.0
        if dist.max() <= 0:
            continue
        coord = np.unravel_index(int(np.argmax(dist)), dist.shape)
        return Click(tuple(int(c) for c in coord), bool(missed))
    return None


def simulate_session(
    predict_fn: Callable[[np.ndarray, list[Click]], np.ndarray],
    image: np.ndarray,
    gt: np.ndarray,
    label: int,
    max_clicks: int = NOC_NEVER,
    spacing: Sequence[float] | None = None,
) -> Generator[float, None, list[Click]]:
    """Run the click protocol for one structure; yields Dice after 0, 1, ... clicks.

    Parameters
    ----------
    predict_fn : callable
        ``predict_fn(image, clicks) -> mask``: the segmentation of structure ``label`` (bool or
        0/1 array on the grid of ``gt``) given the clicks so far (an empty list = automatic).
    image : np.ndarray
        Passed to ``predict_fn`` unchanged.
    gt : np.ndarray of int
        Ground-truth label map.
    label : int
        Structure to segment (``gt == label``).
    max_clicks : int
        Clicks after the automatic result; ``max_clicks + 1`` values are yielded. When the
        prediction is perfect no further click is possible and the last Dice repeats.
    spacing : sequence of float, optional
        Voxel size in mm.

    Yields
    ------
    float
        Dice of ``predict_fn``'s mask against ``gt == label``.

    Returns
    -------
    list of Click
        The clicks given.
    """
    target = np.asarray(gt) == int(label)
    clicks: list[Click] = []
    pred = np.asarray(predict_fn(image, []), dtype=bool)
    score = dice(pred, target)
    yield score
    for _ in range(int(max_clicks)):
        click = next_click(pred, target, spacing, clicks)
        if click is not None:
            clicks.append(click)
            pred = np.asarray(predict_fn(image, list(clicks)), dtype=bool)
            score = dice(pred, target)
        yield score
    return clicks


def noc(dices: Sequence[float], threshold: float, never: int = NOC_NEVER) -> int:
    """Number of clicks needed to reach Dice ``threshold`` (NoC@threshold).

    Parameters
    ----------
    dices : sequence of float
        Dice after 0, 1, 2, ... clicks (``dices[0]`` = the automatic result, so a structure the
        model already segments well needs 0 clicks).
    threshold : float
        E.g. 0.85 or 0.90.
    never : int
        Value when the threshold is never reached (20, as the protocol defines).

    Examples
    --------
    >>> noc([0.5, 0.8, 0.91], 0.9), noc([0.5, 0.8], 0.9)
    (2, 20)
    """
    for k, d in enumerate(dices):
        if d >= threshold:
            return k
    return int(never)
