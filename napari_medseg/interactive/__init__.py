"""Interactive segmentation (pure core): grow from seeds, simulated clicks, click guidance.

No Qt, no napari: the Annotate dock calls these functions from a background worker and applies
the returned patches to its Labels layer as one undoable edit.
"""

from napari_medseg.interactive.box import refine_with_box
from napari_medseg.interactive.clicks import Click, next_click, noc, simulate_session
from napari_medseg.interactive.guidance import (
    GUIDANCE_TYPE,
    ZeroGuidance,
    add_guidance_channels,
    click_maps,
    guidance_channels,
    guidance_of,
)
from napari_medseg.interactive.refine import crop_around, refine_with_clicks
from napari_medseg.interactive.seeds import (
    BACKGROUND_SEED,
    grow_from_seeds,
    seed_box,
    seed_labels_to_classes,
)

__all__ = [
    "BACKGROUND_SEED",
    "GUIDANCE_TYPE",
    "Click",
    "ZeroGuidance",
    "add_guidance_channels",
    "click_maps",
    "crop_around",
    "grow_from_seeds",
    "guidance_channels",
    "guidance_of",
    "next_click",
    "noc",
    "refine_with_box",
    "refine_with_clicks",
    "seed_box",
    "seed_labels_to_classes",
    "simulate_session",
]
