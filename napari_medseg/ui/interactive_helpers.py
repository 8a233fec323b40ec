"""Pure helpers and constants of the Interactive section (no Qt, no napari).

The constants (seed values, colours, help texts, delays) and the functions the section's
modules share: :func:`depth_along_ray` (where a 3D click lands on its ray) and
:func:`_guidance_of` (a model card's click guidance, imported late).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Seed value of background strokes (``napari_medseg.interactive.BACKGROUND_SEED``; the core
#: is imported lazily: it pulls in torch, which would slow the dock's start by seconds).
BACKGROUND_SEED = 1

#: Default crop margin of a click (``interactive.refine.DEFAULT_CROP_MARGIN_MM``); pictures
#: without a pixel size get one in pixels (``interactive.refine.default_crop_margin``).
DEFAULT_REACH_MM = 15.0

#: Combo entry of the training-free method (no model).
TRAINING_FREE = ""
TRAINING_FREE_TEXT = "Training-free (grow from clicks)"
CLICK_COLOURS = {True: "#33dd55", False: "#ff3344"}
SEED_BACKGROUND = {"name": "background (scribble)", "color": "#8c8c8c"}
#: Seconds after a stroke before *Auto-update* grows (strokes in quick succession: one run).
AUTO_UPDATE_DELAY_S = 0.3
SECTION_HELP = ("Click adds to the class · Shift+click removes · a box takes the object inside "
                "· Ctrl+Z undoes")
#: Edge colour of the box prompt.
BOX_COLOUR = "#ffd700"
SEEDS_HELP = "Scribble 1 on the background, k+1 on class k; then Grow"


def depth_along_ray(samples: np.ndarray, intensities: np.ndarray, labels: np.ndarray,
                    label: int, positive: bool) -> np.ndarray:
    """Pick where a click in the 3D view lands on its ray through the volume.

    Parameters
    ----------
    samples : np.ndarray
        ``(N, ndim)`` voxel coordinates along the ray, nearest the camera first.
    intensities, labels : np.ndarray
        ``(N,)`` image intensity (luminance) and label value at each sample.
    label : int
        The class being edited.
    positive : bool
        Polarity of the click.

    Returns
    -------
    np.ndarray
        The chosen coordinate: a negative click lands on the first voxel of ``label`` it
        meets (what the user sees of the labels); a positive click on the brightest sample
        that is not inside another class (what a maximum-intensity rendering shows).
    """
    samples = np.asarray(samples, float)
    if not positive:
        hit = np.flatnonzero(np.asarray(labels) == label)
        if hit.size:
            return samples[hit[0]]
    values = np.asarray(intensities, float).copy()
    values[(np.asarray(labels) != 0) & (np.asarray(labels) != label)] = -np.inf
    if not np.isfinite(values).any():
        return samples[len(samples) // 2]
    return samples[int(np.nanargmax(values))]


def _guidance_of(card: Any) -> dict[str, Any] | None:
    """The card's click guidance (:func:`napari_medseg.interactive.guidance_of`), imported late.

    Cards that record no guidance anywhere are answered without importing the core (torch).
    """
    if not getattr(card, "guidance", None) and \
            not (getattr(card, "train_config", None) or {}).get("guidance"):
        return None
    from napari_medseg.interactive import guidance_of

    return guidance_of(card)
