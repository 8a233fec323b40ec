"""Interactive segmentation (pure core): grow from seeds, simulated clicks, click guidance.

No Qt, no napari: the Annotate dock calls these functions from a background worker and applies
the returned patches to its Labels layer as one undoable edit.

The names below are loaded on first use (PEP 562), so that the GUI thread can import a light
module of this package (e.g. :mod:`~napari_medseg.interactive.clicks`) without importing torch,
which the click-guided model needs and a first import takes seconds to load.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it.
_WHERE = {
    "refine_with_box": "box",
    "Click": "clicks", "default_crop_margin": "clicks", "next_click": "clicks", "noc": "clicks",
    "simulate_session": "clicks",
    "GUIDANCE_TYPE": "guidance", "ZeroGuidance": "guidance", "add_guidance_channels": "guidance",
    "click_maps": "guidance", "guidance_channels": "guidance", "guidance_of": "guidance",
    "crop_around": "refine", "refine_with_clicks": "refine",
    "BACKGROUND_SEED": "seeds", "grow_from_seeds": "seeds", "seed_box": "seeds",
    "seed_labels_to_classes": "seeds",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
