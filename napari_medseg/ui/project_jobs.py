"""Project dock: entry points of its child-process jobs (no napari or Qt here).

A :class:`~napari_medseg.jobs.ProcessJob` needs an importable function with picklable
arguments; the child imports this module, so it must stay free of GUI imports. Each function
only adapts a core job (:mod:`napari_medseg.cycle`, :mod:`napari_medseg.inference`); the
ranking jobs are :func:`napari_medseg.active.suggest_cases` / ``suggest_slices`` themselves.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from napari_medseg.events import Event


def retrain_project(project_dir: str, **kwargs: Any) -> Generator[Event, None, Any]:
    """:func:`napari_medseg.cycle.retrain_folder` (the whole round in the child)."""
    from napari_medseg.cycle import retrain_folder

    return (yield from retrain_folder(project_dir, **kwargs))


def predict_case(model_dir: str, volume: Any, **kwargs: Any) -> Generator[Event, None, Any]:
    """:func:`napari_medseg.inference.predict` (torch is imported in the child only)."""
    from napari_medseg.inference.predict import predict

    return (yield from predict(model_dir, volume, **kwargs))


__all__ = ["predict_case", "retrain_project"]
