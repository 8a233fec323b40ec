"""The Infer dock's result layers: a finished segmentation becomes napari layers.

:func:`prepare_prediction` makes the arrays off the GUI thread (in the job's worker);
:func:`add_result_layers` adds the Labels layer, named after the model, coloured with its
classes and placed exactly on the image (same scale, translate and geometry metadata), with a
volume / area summary; the optional foreground-probability and uncertainty (entropy) maps follow
one per event-loop turn (:func:`add_maps_later`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_medseg.ui._controls import layer_key
from napari_medseg.ui._layers import labels_layer_kwargs, layer_kwargs_for_volume
from napari_medseg.ui._models import ModelEntry
from napari_medseg.ui.infer_models import card_classes


def prepare_prediction(result: Any, probability: bool, entropy: bool) -> dict[str, Any]:
    """The arrays the Infer dock shows, made off the GUI thread (runs in the job's worker).

    Returns ``{"result", "labels" (uint8), "counts" {class value: voxels}, "foreground"
    (float32 1 - P(background) or None), "entropy" (float32 or None)}``.
    """
    labels = np.ascontiguousarray(result.labels, dtype=np.uint8)
    counts = {v: int(np.count_nonzero(labels == v)) for v in card_classes(result.card)}
    foreground = None
    if probability and result.probabilities is not None:
        foreground = np.subtract(1.0, result.probabilities[0], dtype=np.float32)
    uncertainty = None
    if entropy and result.entropy is not None:
        uncertainty = np.asarray(result.entropy, dtype=np.float32)
    return {"result": result, "labels": labels, "counts": counts, "foreground": foreground,
            "entropy": uncertainty}


def _summary(prepared: dict[str, Any], card: Any, volume: Any) -> str:
    """Per class: volume in mL (3D), area in mm² (2D with a known pixel size) or pixels."""
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0 if volume.ndim == 3 else None
    names = {v: c["name"] for v, c in card_classes(card).items()}
    pixel_mm2 = (float(np.prod(volume.spacing)) if volume.ndim == 2 and
                 (volume.metadata or {}).get("spacing_known") is not False else None)
    return ", ".join(
        f"{names[v]} {c * voxel_ml:.2f} mL" if voxel_ml else
        f"{names[v]} {c} px ({c * pixel_mm2:.1f} mm²)" if pixel_mm2 else f"{names[v]} {c} px"
        for v, c in prepared["counts"].items())


def add_result_layers(viewer: Any, result: Any, pending: dict[str, Any], prepared: Any,
                      layers: list[Any], report: Callable[[str], None]) -> None:
    """Add the labels now, each optional map on a later event-loop turn.

    The arrays were prepared in the job's worker thread (:func:`prepare_prediction`; made here
    when ``prepared`` does not belong to ``result``); adding a layer still costs napari a few
    hundred ms on a software-rendered display, so the maps do not pile onto the same turn.

    Parameters
    ----------
    viewer : napari.Viewer
    result : PredictionResult
    pending : dict
        The run: ``model`` (ModelEntry), ``image_layer``, ``volume`` (its snapshot),
        ``entropy`` / ``probability`` (bools).
    prepared : dict or None
    layers : list
        Receives the new layers, labels first (the maps as they are added).
    report : callable
        Receives the status text (the classes' volumes, the maps added).
    """
    from napari.utils.notifications import show_info

    if result is None or not hasattr(result, "labels"):
        raise ValueError("the segmentation returned no labels")
    if not isinstance(prepared, dict) or prepared.get("result") is not result:
        prepared = prepare_prediction(result, bool(pending.get("probability")),
                                      bool(pending.get("entropy")))
    entry: ModelEntry = pending["model"]
    image_layer = pending["image_layer"]
    volume = pending["volume"]
    card = result.card
    name = f"{image_layer.name} – {entry.name}"
    labels_volume = volume.with_array(prepared["labels"], name=name)
    kwargs = labels_layer_kwargs(labels_volume, classes=card_classes(card))
    medseg = kwargs["metadata"]["medseg"]
    medseg.setdefault("source", {})["image_layer"] = image_layer.name
    medseg["source"]["image_key"] = layer_key(image_layer)
    medseg["prediction"] = {"model": str(entry.path), "model_id": card.model_id,
                            "version": card.version, "task": card.task}
    labels = viewer.add_labels(labels_volume.array, **kwargs)
    layers.append(labels)
    viewer.layers.selection.active = labels
    maps = []
    if prepared.get("foreground") is not None:
        maps.append((f"{name} probability", prepared["foreground"], "viridis", 0.6))
    if prepared.get("entropy") is not None:
        maps.append((f"{name} uncertainty", prepared["entropy"], "inferno", 0.7))
    kinds = [m[0].rsplit(" ", 1)[-1] for m in maps]
    extra = (f" {' and '.join(kinds).capitalize()} map{'s' if len(kinds) > 1 else ''} added "
             "(hidden: click its eye in the layer list)." if kinds else "")
    report(f"Added '{labels.name}' ({result.elapsed_s:.1f} s): "
           f"{_summary(prepared, card, volume)}.{extra}")
    show_info(f"Segmentation added: {labels.name}")
    add_maps_later(viewer, volume, maps, labels, layers)


def add_maps_later(viewer: Any, volume: Any, maps: list[tuple[str, np.ndarray, str, float]],
                   labels: Any, layers: list[Any]) -> None:
    """Add the probability / uncertainty images one per event-loop turn (hidden, appended to
    ``layers``), then make the labels the active layer again (the docks follow the active
    layer)."""
    from qtpy.QtCore import QTimer

    def add_next() -> None:
        if not maps:
            return
        map_name, array, colormap, opacity = maps.pop(0)
        layer_volume = volume.with_array(array, name=map_name)
        # a map of the prediction, not an image to segment: no dock offers it as one
        kwargs = layer_kwargs_for_volume(
            layer_volume, metadata={"medseg": {"role": map_name.rsplit(" ", 1)[-1]}})
        try:
            layers.append(viewer.add_image(
                array, **kwargs, colormap=colormap,
                contrast_limits=(0, 1), blending="additive", opacity=opacity,
                visible=False))
        except RuntimeError:  # the widget or viewer was closed meanwhile
            return
        if maps:
            QTimer.singleShot(0, add_next)
            return
        with contextlib.suppress(KeyError, ValueError, RuntimeError):  # labels removed
            viewer.layers.selection.active = labels

    if maps:
        QTimer.singleShot(0, add_next)
