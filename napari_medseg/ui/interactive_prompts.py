"""Click and box prompts of the Interactive section: the 'clicks' Points and 'box' Shapes layers.

:class:`PromptsMixin` holds the prompt logic of
:class:`~napari_medseg.ui.interactive_section.InteractiveSection`: creating the clicks layer,
press handling (Shift = remove), 3D depth placement of a click, click undo/redo, clearing,
:meth:`~PromptsMixin.request_refine`, and the box layer with
:meth:`~PromptsMixin.request_box`. Jobs go through the section's ``_submit``/``_run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_medseg.ui._controls import layer_key, same_layer
from napari_medseg.ui._layers import (
    cells,
    is_rgb_layer,
    layer_transform_kwargs,
    length_unit,
    medseg_metadata,
    spatial_shape,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors, show_error_message
from napari_medseg.ui.interactive_helpers import BOX_COLOUR, CLICK_COLOURS, depth_along_ray


class PromptsMixin:
    """Clicks and box prompts of :class:`InteractiveSection` (uses its widgets, ``dock``,
    ``viewer``, ``status`` and job plumbing)."""

    dock: Any
    viewer: Any
    status: Any
    generation: int
    reach_spin: Any
    _press: dict[str, Any]
    _models: dict[str, Any]
    #: Reach bookkeeping: the default last set, its unit and the image it was set for.
    _reach_default: float
    _reach_unit: str
    _reach_for: Any

    # ------------------------------------------------------------------ clicks layer
    def _image(self) -> Any:
        return self.dock.image_combo.require("image")

    def _labels(self) -> Any:
        return self.dock.labels_combo.require("Labels layer")

    def _layer_alive(self, layer: Any) -> bool:
        return layer is not None and any(same_layer(layer, ly) for ly in self.viewer.layers)

    @catch_errors("Start clicking")
    def _on_start_clicks(self) -> Any:
        return self.start_clicks()

    def start_clicks(self) -> Any:
        """Create (or reuse) the 'clicks' Points layer on the image and select add mode."""
        import pandas as pd

        image = self._image()
        self._labels()  # a target is needed before clicking
        layer = self.clicks_layer
        if not self._layer_alive(layer) or layer.ndim != len(spatial_shape(image)) or \
                medseg_metadata(layer).get("image_key") != layer_key(image):
            ndim = len(spatial_shape(image))
            features = pd.DataFrame({"positive": pd.Series([], dtype=bool),
                                     "label": pd.Series([], dtype=int)})
            size = max(3.0, min(spatial_shape(image)[-2:]) / 40.0)  # voxels
            layer = self.viewer.add_points(
                np.empty((0, ndim)), ndim=ndim, name="clicks", features=features,
                face_color="positive", face_color_cycle=CLICK_COLOURS, border_color="white",
                border_width=0.1, size=size,
                metadata={"medseg": {"role": "prompts", "image_key": layer_key(image)}},
                **layer_transform_kwargs(image))
            layer.mouse_drag_callbacks.insert(0, self._on_press)
            layer.events.data.connect(self._on_points_changed)
            # the clicks layer is active while clicking: its Ctrl+Z undoes the labels' last
            # step (and forgets the last click), as on the Labels layer itself
            from napari.utils.key_bindings import KeyCode, KeyMod

            layer.bind_key(KeyMod.CtrlCmd | KeyCode.KeyZ, self._undo_click, overwrite=True)
            layer.bind_key(KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ, self._redo_click,
                           overwrite=True)
            self.clicks_layer = layer
        self._update_defaults()
        self.update_reach(image)
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.status.setText("Click on the image (Shift+click removes).")
        return layer

    def update_reach(self, image: Any) -> None:
        """Reach in the image's unit: mm, or pixels on a picture whose file gives no pixel size.

        A new image gets the default reach for it
        (:func:`~napari_medseg.interactive.refine.default_crop_margin`: 15 mm, or a fifth of
        the picture's longer side in pixels) unless the user changed the reach and the unit is
        the same; a value in mm is never kept as pixels or the other way round.
        """
        unit = length_unit(image)
        key = (layer_key(image), unit, spatial_shape(image))
        if key == self._reach_for:
            return
        from napari_medseg.interactive.clicks import default_crop_margin

        default = default_crop_margin(spatial_shape(image), unit == "mm")
        spin = self.reach_spin
        edited = abs(spin.value() - self._reach_default) > 1e-9
        if unit != self._reach_unit or not edited:
            spin.setMaximum(max(500.0, 4.0 * default))
            spin.setValue(default)
            self._reach_default = default
        spin.setSuffix(f" {unit}")
        where = "pixels (the file gives no pixel size)" if unit == "px" else "mm"
        spin.setToolTip(f"How far ({where}) beyond the clicks and the class's current extent "
                        "a click may change labels (the crop that is computed)")
        self._reach_unit, self._reach_for = unit, key

    def _update_defaults(self) -> None:
        """New points take the current polarity and class."""
        layer = self.clicks_layer
        if not self._layer_alive(layer):
            return
        try:
            layer.feature_defaults = {"positive": not self.negative_check.isChecked(),
                                      "label": int(self.dock.selected_class())}
        except RuntimeError:
            pass

    def _on_press(self, layer: Any, event: Any) -> None:
        """Before napari adds the point: its polarity (Shift) and, in 3D, the ray."""
        shift = "Shift" in {str(getattr(m, "name", m)) for m in (event.modifiers or [])}
        negative = shift or self.negative_check.isChecked()
        self._press = {"position": tuple(event.position),
                       "view_direction": getattr(event, "view_direction", None),
                       "dims_displayed": list(getattr(event, "dims_displayed", []) or []),
                       "positive": not negative}
        layer.feature_defaults = {"positive": not negative,
                                  "label": int(self.dock.selected_class())}

    def clicks(self, label: int | None = None) -> list[tuple[tuple[float, ...], bool]]:
        """Clicks of class ``label`` (default: the selected class): ``(voxel, positive)``."""
        layer = self.clicks_layer
        if not self._layer_alive(layer) or not len(layer.data):
            return []
        label = int(self.dock.selected_class()) if label is None else int(label)
        feats = layer.features
        out = []
        for coord, positive, value in zip(np.asarray(layer.data), feats["positive"],
                                          feats["label"], strict=True):
            if int(value) == label:
                out.append((tuple(float(c) for c in coord), bool(positive)))
        return out

    def _undo_click(self, layer: Any = None) -> None:
        """Ctrl+Z on the clicks layer: undo the labels' last step and drop the last click."""
        labels = self.dock.labels_combo.layer()
        if labels is None:
            return
        self.generation += 1  # a result still computing would redo what was undone
        labels.undo()
        points = self.clicks_layer
        if self._layer_alive(points) and len(points.data):
            points.remove([len(points.data) - 1])
        self.status.setText("Undone (the last click was removed).")

    def _redo_click(self, layer: Any = None) -> None:
        """Ctrl+Shift+Z on the clicks layer: redo the labels' last undone step."""
        labels = self.dock.labels_combo.layer()
        if labels is not None:
            labels.redo()

    def _on_points_changed(self, event: Any) -> None:
        action = str(getattr(event, "action", ""))
        if not action.lower().endswith("added") or \
                not same_layer(getattr(event, "source", None), self.clicks_layer):
            return
        try:
            if self.viewer.dims.ndisplay == 3 and self._press.get("view_direction") is not None:
                self._place_in_depth()
            self.request_refine()
        except Exception as exc:  # noqa: BLE001 - a notification, never a traceback
            self.status.setText(f"⚠ {show_error_message(exc, 'Click')}")

    def _place_in_depth(self) -> None:
        """Move the last point (3D view) to where its ray meets the object."""
        image, labels = self._image(), self._labels()
        press = self._press
        start, end = image.get_ray_intersections(press["position"], press["view_direction"],
                                                 press["dims_displayed"], world=True)
        if start is None or end is None:
            return
        n = int(np.ceil(np.linalg.norm(np.asarray(end) - np.asarray(start)))) * 2 + 2
        samples = np.linspace(start, end, n)
        shape = spatial_shape(image)
        idx = np.clip(np.round(samples).astype(int), 0, np.asarray(shape) - 1)
        where = tuple(idx.T)
        data = np.asarray(image.data[where], float)
        intensities = data[..., :3].mean(-1) if is_rgb_layer(image) else data
        values = np.asarray(labels.data)[where]
        point = depth_along_ray(samples, intensities, values, int(self.dock.selected_class()),
                                bool(press["positive"]))
        layer = self.clicks_layer
        data_pts = np.asarray(layer.data).copy()
        data_pts[-1] = point
        with layer.events.data.blocker():
            layer.data = data_pts

    @catch_errors("Clear clicks")
    def _on_clear_clicks(self) -> None:
        layer = self.clicks_layer
        if self._layer_alive(layer):
            with layer.events.data.blocker():
                layer.data = np.empty((0, layer.ndim))
        self.generation += 1  # a result still computing is dropped
        self.status.setText("Clicks cleared.")

    def request_refine(self) -> int:
        """Update the selected class from its clicks (in a worker); the request's generation."""
        return self._submit(self._start_refine)

    def _start_refine(self) -> Any:
        image, labels = self._image(), self._labels()
        label = int(self.dock.selected_class())
        clicks = self.clicks(label)
        if not clicks:
            raise ValueError("click on the image first")
        volume = volume_from_layer(image)
        data = labels.data
        path = self.model_path()
        refine = self.refine
        self.update_reach(image)
        reach = float(self.reach_spin.value())
        if refine is None:
            from napari_medseg.interactive import refine_with_clicks as refine

        def work() -> Any:
            model, card = self._load_model(path)
            device = self._models[path][2] if path is not None else "cpu"
            snapshot = np.array(data, copy=True)
            return refine(model, card, volume, snapshot, label, clicks, crop_margin_mm=reach,
                          device=device)

        n_clicks = len(clicks)
        snapshot_ndim = np.ndim(data)

        def describe(n: int, seconds: float) -> str:
            how = "model" if path else "training-free"
            return (f"Click {n_clicks} ({how}): {n} {cells(snapshot_ndim)} of class {label} "
                    "changed, "
                    f"{seconds * 1000:.0f} ms (Ctrl+Z undoes it).")

        return self._run(work, describe, "Click")

    # ------------------------------------------------------------------ box
    @catch_errors("Draw a box")
    def _on_start_box(self) -> Any:
        return self.start_box()

    def start_box(self) -> Any:
        """Create (or reuse) the 'box' Shapes layer on the image, in rectangle mode."""
        image = self._image()
        self._labels()  # a target is needed before drawing
        ndim = len(spatial_shape(image))
        layer = self.box_layer
        if not self._layer_alive(layer) or layer.ndim != ndim or \
                medseg_metadata(layer).get("image_key") != layer_key(image):
            layer = self.viewer.add_shapes(
                ndim=ndim, name="box", edge_color=BOX_COLOUR, face_color="transparent",
                edge_width=max(1.0, min(spatial_shape(image)[-2:]) / 200.0),
                metadata={"medseg": {"role": "prompts", "image_key": layer_key(image)}},
                **layer_transform_kwargs(image))
            layer.events.data.connect(self._on_box_drawn)
            self.box_layer = layer
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        self.status.setText("Drag a box around one object: it becomes the selected class.")
        return layer

    def _on_box_drawn(self, event: Any) -> None:
        action = str(getattr(event, "action", ""))
        if not action.lower().endswith("added") or not self._layer_alive(self.box_layer) \
                or not len(self.box_layer.data):
            return
        try:
            corners = np.asarray(self.box_layer.data[-1], float)
            self.request_box(corners.min(0), corners.max(0))
        except Exception as exc:  # noqa: BLE001 - a notification, never a traceback
            self.status.setText(f"⚠ {show_error_message(exc, 'Box')}")

    def request_box(self, low: Sequence[float], high: Sequence[float]) -> int:
        """Segment the object in the box from ``low`` to ``high`` (voxel indices of the image,
        array order) into the selected class, in a worker; the request's generation."""
        corners = (tuple(float(v) for v in low), tuple(float(v) for v in high))
        return self._submit(lambda: self._start_box(corners))

    def _start_box(self, corners: tuple[tuple[float, ...], tuple[float, ...]]) -> Any:
        from napari_medseg.interactive import refine_with_box

        image, labels = self._image(), self._labels()
        label = int(self.dock.selected_class())
        volume = volume_from_layer(image)
        data = labels.data
        path = self.model_path()

        def work() -> Any:
            model, card = self._load_model(path)
            device = self._models[path][2] if path is not None else "cpu"
            return refine_with_box(model, card, volume, np.array(data, copy=True), label,
                                   corners, device=device)

        def describe(n: int, seconds: float) -> str:
            how = "model" if path else "training-free"
            return (f"Box ({how}): {n} {cells(np.ndim(data))} of class {label} changed, "
                    f"{seconds * 1000:.0f} ms (Ctrl+Z undoes it).")

        return self._run(work, describe, "Box")
