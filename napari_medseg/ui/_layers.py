"""Conversion between napari layers and :class:`~napari_medseg.io.volume.Volume` objects.

Every layer this plugin creates keeps the volume geometry (spacing, affine, modality, source)
in ``layer.metadata["medseg"]`` (from :meth:`Volume.geometry_metadata`) and shows it with a
physical ``scale``/``translate`` (from :meth:`Volume.napari_geometry`, the package's one
placement rule: patient world, radiological display, a negative scale where an axis is flipped).
A Labels layer made for an image copies the image's geometry, so it saves with the image's
affine; any other layer derived from a layer (shapes, points, previews) takes
:func:`layer_transform_kwargs` so it lands on its source in world coordinates. Code that turns
world positions (``viewer.dims.point``, mouse events) into voxel indices uses
``layer.world_to_data``, never a division by ``layer.scale`` (scales may be negative).

Labels layers also carry a class table in ``layer.metadata["medseg"]["classes"]``::

    {1: {"name": "Anterior", "color": "#e6194b"}, 2: {"name": "Posterior", "color": "#3cb44b"}}

(label value -> name and ``#rrggbb`` colour). The napari colormap is built from it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_medseg.io.volume import Volume
from napari_medseg.labels import (  # the class table's file forms live in the core
    PALETTE,
    class_colour_hex,
    normalise_classes,
)

#: The package's one palette (:data:`napari_medseg.labels.PALETTE`) for classes without a colour.
DEFAULT_CLASS_COLORS = PALETTE


def default_class_color(value: int) -> str:
    """A ``#rrggbb`` colour for label ``value`` (>= 1) from the package's one palette."""
    return class_colour_hex(value)


def default_classes(n: int = 1) -> dict[int, dict[str, str]]:
    """Class table with ``n`` classes named "label 1" ... "label n"."""
    return {v: {"name": f"label {v}", "color": default_class_color(v)} for v in range(1, n + 1)}


def classes_colormap(classes: Mapping[int, Mapping[str, str]]) -> Any:
    """napari ``DirectLabelColormap`` with the class colours (other values: default colours)."""
    from napari.utils.colormaps import DirectLabelColormap

    table = normalise_classes(classes)
    color_dict: dict[int | None, Any] = {0: "transparent", None: "#ff00ff"}
    for value, entry in table.items():
        color_dict[value] = entry["color"]
    # values outside the table still show, in a distinct colour per value
    for value in range(1, 21):
        color_dict.setdefault(value, default_class_color(value))
    return DirectLabelColormap(color_dict=color_dict)


def medseg_metadata(layer: Any) -> dict[str, Any]:
    """The plugin's part of a layer's metadata, ``layer.metadata["medseg"]`` (``{}`` when absent).

    The one reader of that dictionary: read it, do not change it in place (change it with
    :func:`update_medseg_metadata`; keep a copy with :func:`copy_medseg_metadata`).
    """
    meta = getattr(layer, "metadata", None) or {}
    medseg = meta.get("medseg")
    return medseg if isinstance(medseg, dict) else {}


def update_medseg_metadata(layer: Any, **changes: Any) -> None:
    """Set keys of ``layer.metadata["medseg"]`` (a value of None removes the key).

    The one writer of that dictionary: it assigns a new ``metadata`` dict, so napari emits the
    layer's metadata event and nothing else holding the old dict sees it change.
    """
    meta = dict(getattr(layer, "metadata", None) or {})
    medseg = dict(meta.get("medseg") or {})
    for key, value in changes.items():
        if value is None:
            medseg.pop(key, None)
        else:
            medseg[key] = value
    meta["medseg"] = medseg
    layer.metadata = meta



def layer_classes(layer: Any) -> dict[int, dict[str, str]]:
    """The class table of a Labels layer (empty dict when it has none)."""
    return normalise_classes(medseg_metadata(layer).get("classes"))


def set_layer_classes(layer: Any, classes: Mapping[Any, Any]) -> None:
    """Store a class table in ``layer.metadata["medseg"]["classes"]`` and recolour the layer."""
    table = normalise_classes(classes)
    update_medseg_metadata(layer, classes=table)
    layer.colormap = classes_colormap(table)


def volume_from_parts(
    array: np.ndarray,
    medseg: Mapping[str, Any] | None,
    scale: Any = None,
    translate: Any = None,
    name: str = "volume",
    rgb: bool = False,
) -> Volume:
    """Build a :class:`Volume` from layer pieces (used by layers and by the npe2 writer).

    Parameters
    ----------
    array : np.ndarray
        ``(Z, Y, X)`` or ``(Y, X)`` voxels; with ``rgb``, a colour picture ``(Y, X, 3|4)``
        (or ``(Z, Y, X, 3|4)``), channels last.
    medseg : mapping or None
        ``layer.metadata["medseg"]``; its geometry is used when its shape matches ``array``'s
        spatial shape.
    scale, translate : sequence of float, optional
        napari layer scale (mm per voxel, may be negative) and translate (mm), the fallback
        geometry: an axis-aligned affine without orientation whose
        :meth:`Volume.napari_geometry` gives these values back (spatial axes only: an RGB
        layer has no scale for its colour axis).
    name : str
        Volume name.
    rgb : bool
        ``array`` is a colour picture (napari's ``Image(rgb=True)``); also inferred from
        ``medseg["rgb"]`` when the array has one axis more than the stored spacing.

    Raises
    ------
    ValueError
        If ``array`` is not 2D or 3D (colour axis not counted).
    """
    array = np.asarray(array)
    meta = dict(medseg or {})
    # a colour picture says so in its geometry metadata (Volume.geometry_metadata) too
    rgb = bool(rgb) or (bool(meta.get("rgb")) and array.ndim == len(meta.get("spacing", ())) + 1)
    rgb = rgb and array.ndim in (3, 4) and array.shape[-1] in (3, 4)
    spatial = array.shape[:-1] if rgb else array.shape
    if {"spacing", "affine"} <= meta.keys() and list(meta.get("shape", spatial)) == list(
        spatial
    ) and len(meta["spacing"]) == len(spatial):
        volume = Volume.from_geometry_metadata(array, {**meta, "rgb": rgb})
        volume.name = name
        return volume
    ndim = len(spatial)
    if ndim not in (2, 3):
        raise ValueError(
            f"'{name}' has {ndim} dimensions; only 2D and 3D images are supported"
        )
    scale = (1.0,) * ndim if scale is None else scale
    translate = (0.0,) * ndim if translate is None else translate
    scale = tuple(float(s) for s in list(scale)[-ndim:])
    translate = tuple(float(t) for t in list(translate)[-ndim:])
    affine = np.eye(4)
    offset = 3 - ndim
    for i in range(ndim):
        affine[offset + i, offset + i] = scale[i]
        affine[offset + i, 3] = translate[i]
    source = dict(meta.get("source")) if isinstance(meta.get("source"), dict) else {}
    if ndim == 3 and any(s < 0 for s in scale):
        # A signed scale is how napari-medseg places a scan of known orientation in napari's
        # patient world (Volume.napari_geometry): a plain layer drawn on it (no plugin
        # metadata) lies in that world too, so its patient affine follows from the placement.
        from napari_medseg.io.volume import NAPARI_WORLD_FROM_RAS

        ras_from_world = NAPARI_WORLD_FROM_RAS.T  # a signed permutation: inverse = transpose
        affine[:3, :3] = ras_from_world @ np.diag(scale)
        affine[:3, 3] = ras_from_world @ np.asarray(translate)
        source["orientation_known"] = True
    return Volume(array, tuple(abs(s) for s in scale), affine,
                  modality=meta.get("modality", "unknown"), metadata=source, name=name,
                  rgb=rgb)


def is_rgb_layer(layer: Any) -> bool:
    """Whether ``layer`` is a colour picture (napari Image with ``rgb=True``)."""
    return bool(getattr(layer, "rgb", False))


def spatial_shape(layer: Any) -> tuple[int, ...]:
    """The voxel grid of ``layer``: its data shape without a colour axis (RGB layers)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(n) for n in data.shape)
    return shape[:-1] if is_rgb_layer(layer) else shape


def spacing_known(layer: Any) -> bool:
    """False when the layer's file gave no pixel size (2D pictures: spacing 1 is a placeholder).

    Readers say so with ``metadata["medseg"]["source"]["spacing_known"] = False`` (or the same
    key directly in ``metadata["medseg"]``); a layer made for an image copies its source.
    """
    medseg = medseg_metadata(layer)
    source = medseg.get("source") if isinstance(medseg.get("source"), dict) else {}
    for where in (medseg, source):
        if where.get("spacing_known") is False:
            return False
    return True


def length_unit(layer: Any) -> str:
    """``"mm"``, or ``"px"`` for a layer whose spacing is unknown (see :func:`spacing_known`)."""
    return "mm" if spacing_known(layer) else "px"


def volume_from_layer(layer: Any) -> Volume:
    """The layer's data as a :class:`Volume` with the geometry it was opened with.

    Uses ``layer.metadata["medseg"]`` when present and matching the data shape; otherwise
    builds an axis-aligned affine from the layer's ``scale`` and ``translate`` (mm). An RGB
    layer (napari ``rgb=True``, ``(Y, X, 3|4)``) gives a colour Volume (``rgb=True``) whose
    spacing is the layer's spatial scale; training and prediction split it into red, green
    and blue channels (:meth:`Volume.channel_volumes`).

    Parameters
    ----------
    layer : napari.layers.Image or napari.layers.Labels
        A 2D ``(Y, X)`` or 3D ``(Z, Y, X)`` layer, or a colour picture.

    Raises
    ------
    ValueError
        If the layer is not 2D/3D (e.g. a time series).
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return volume_from_parts(
        np.asarray(data), medseg_metadata(layer), layer.scale, layer.translate, layer.name,
        rgb=is_rgb_layer(layer),
    )


def labels_on_grid_of(labels_layer: Any, reference: Any, array: np.ndarray | None = None,
                      ) -> np.ndarray:
    """The voxels of ``labels_layer`` (or ``array``, on its grid) in the voxel order of
    ``reference`` (an image or Labels layer).

    When both layers carry the geometry of the files they came from (or were made on by the
    plugin), the voxels are matched where they lie in the patient
    (:meth:`~napari_medseg.io.volume.Volume.on_grid_of`): a label map saved by another tool for
    a DICOM series may store its rows the other way. A plain napari layer (no plugin geometry)
    is taken voxel for voxel, as it is drawn on the image's grid.

    Raises
    ------
    ValueError
        Not the same voxels (or, for plain layers, another shape), in one line.
    """
    data = np.asarray(labels_layer.data if array is None else array)
    what, onto = f"'{labels_layer.name}'", f"'{reference.name}'"
    if "affine" in medseg_metadata(labels_layer) and "affine" in medseg_metadata(reference):
        return volume_from_layer(labels_layer).with_array(data).on_grid_of(
            volume_from_layer(reference), what, onto)
    if data.shape != spatial_shape(reference):
        raise ValueError(f"{what} is not on the same grid as {onto} ({_size(data.shape)} vs "
                         f"{_size(spatial_shape(reference))}).")
    return data


def _size(shape: tuple[int, ...]) -> str:
    """``(300, 420)`` as "300 x 420"."""
    return " x ".join(str(int(n)) for n in shape)


def cells(layer_or_ndim: Any) -> str:
    """What a layer's grid is made of, for messages: ``"pixels"`` (2D) or ``"voxels"``."""
    ndim = layer_or_ndim if isinstance(layer_or_ndim, int) else len(spatial_shape(layer_or_ndim))
    return "pixels" if ndim == 2 else "voxels"


def luminance(array: np.ndarray) -> np.ndarray:
    """Greyscale version of a colour picture ``(..., 3|4)`` (ITU-R BT.601 luma), float32.

    Intensity tools that need one value per pixel (intensity window, thresholds, region
    growing) use it on colour pictures; alpha is ignored.
    """
    array = np.asarray(array)
    rgb = array[..., :3].astype(np.float32, copy=False)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def intensity_array(layer: Any) -> np.ndarray:
    """One intensity per voxel of ``layer``: the data, or the luminance of a colour picture."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return luminance(data) if is_rgb_layer(layer) else np.asarray(data)


def layer_transform_kwargs(layer: Any) -> dict[str, Any]:
    """``scale``, ``translate`` and ``affine`` to give a layer derived from ``layer``.

    A Shapes, Points or Labels layer built with these (same number of dimensions, data in
    ``layer``'s voxel indices) overlays ``layer`` in world coordinates, flips included.

    Parameters
    ----------
    layer : napari.layers.Layer

    Returns
    -------
    dict
        Keyword arguments for ``viewer.add_*``.
    """
    return {
        "scale": tuple(float(s) for s in layer.scale),
        "translate": tuple(float(t) for t in layer.translate),
        "affine": np.asarray(layer.affine.affine_matrix, dtype=float).copy(),
    }


def labels_for_saving(labels: np.ndarray, medseg: Mapping[str, Any] | None) -> np.ndarray:
    """Label voxels as they go to disk: unannotated slices become ``IGNORE_LABEL``.

    When ``medseg["annotated_slices"]`` lists slice indices along axis 0 (sparse annotation),
    every other slice is filled with :data:`~napari_medseg.events.IGNORE_LABEL` (255) so
    training ignores it; without marks the labels are returned unchanged.
    """
    from napari_medseg.events import IGNORE_LABEL

    labels = np.asarray(labels)
    marks = (medseg or {}).get("annotated_slices")
    if not marks or labels.ndim != 3:
        return labels
    out = labels.astype(np.uint8 if labels.max(initial=0) < IGNORE_LABEL else labels.dtype,
                        copy=True)
    keep = np.zeros(labels.shape[0], dtype=bool)
    keep[[int(i) for i in marks if 0 <= int(i) < labels.shape[0]]] = True
    out[~keep] = IGNORE_LABEL
    return out


def layer_kwargs_for_volume(volume: Volume, **extra: Any) -> dict[str, Any]:
    """napari layer keyword arguments (name, scale, translate, metadata) for ``volume``.

    ``extra`` entries override or extend them; an ``extra["metadata"]["medseg"]`` dict is merged
    into the geometry metadata (e.g. ``classes``).
    """
    geometry = volume.napari_geometry()
    medseg = volume.geometry_metadata()
    extra = dict(extra)
    extra_meta = dict(extra.pop("metadata", None) or {})
    medseg.update(extra_meta.pop("medseg", None) or {})
    kwargs: dict[str, Any] = {
        "name": volume.name,
        "scale": geometry["scale"],
        "translate": geometry["translate"],
        "metadata": {**extra_meta, "medseg": medseg},
    }
    kwargs.update(extra)
    return kwargs


def image_layer_kwargs(volume: Volume, **extra: Any) -> dict[str, Any]:
    """Layer kwargs for showing ``volume`` as an Image (grey colormap, modality contrast).

    A colour picture (``volume.rgb``) is shown as napari shows photographs: ``rgb=True``,
    its own colours, no colormap.
    """
    from napari_medseg.io.windowing import default_contrast_limits

    kwargs = layer_kwargs_for_volume(volume)
    if volume.rgb:
        kwargs["rgb"] = True
        kwargs.update(extra)
        return kwargs
    kwargs["colormap"] = "gray"
    limits = default_contrast_limits(volume)
    if limits is not None and float(limits[1]) > float(limits[0]):
        kwargs["contrast_limits"] = [float(limits[0]), float(limits[1])]
    kwargs.update(extra)
    return kwargs


def labels_layer_kwargs(
    volume: Volume, classes: Mapping[Any, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """Layer kwargs for showing ``volume`` (integer label map) as a Labels layer with classes."""
    if classes is None:
        classes = volume.metadata.get("classes")
    if classes is None:
        values = np.unique(np.asarray(volume.array))
        n = int(values.max()) if values.size and values.max() < 256 else 1
        classes = default_classes(max(n, 1))
    table = normalise_classes(classes)
    kwargs = layer_kwargs_for_volume(volume, metadata={"medseg": {"classes": table}})
    kwargs["colormap"] = classes_colormap(table)
    kwargs.update(extra)
    return kwargs


def add_volume_as_image(viewer: Any, volume: Volume, **extra: Any) -> Any:
    """Add ``volume`` to ``viewer`` as an Image layer with geometry and default contrast.

    Returns
    -------
    napari.layers.Image
    """
    return viewer.add_image(volume.array, **image_layer_kwargs(volume, **extra))


def labels_dtype(n_max: int = 255) -> np.dtype:
    """Smallest unsigned dtype for label values up to ``n_max``."""
    return np.dtype(np.uint8) if n_max < 256 else np.dtype(np.uint16)


def add_labels_for_image(
    viewer: Any,
    image_layer: Any,
    data: np.ndarray | None = None,
    name: str | None = None,
    classes: Mapping[Any, Any] | None = None,
    role: str | None = None,
) -> Any:
    """Add a Labels layer with the geometry of ``image_layer``.

    Parameters
    ----------
    viewer : napari.Viewer
    image_layer : napari.layers.Image (or Labels)
        The layer whose grid (shape, spacing, affine) the labels use.
    data : np.ndarray, optional
        Label voxels, same shape as the image; zeros (``uint8``) when omitted.
    name : str, optional
        Layer name; default ``"<image> labels"``.
    classes : mapping, optional
        Class table ``{value: {"name", "color"}}``; default one class "label 1".
    role : str, optional
        ``metadata["medseg"]["role"]``: ``"difference"`` for an error map, ``"preview"`` for
        a temporary preview; docks do not offer such layers as annotations.

    Raises
    ------
    ValueError
        If ``data`` does not have the image's shape.
    """
    volume = volume_from_layer(image_layer)
    if data is None:
        data = np.zeros(volume.shape, dtype=np.uint8)
    data = np.asarray(data)
    if data.shape != volume.shape:
        raise ValueError(
            f"labels of shape {data.shape} do not match image '{image_layer.name}' {volume.shape}"
        )
    if not np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.uint16 if data.max(initial=0) > 255 else np.uint8)
    table = normalise_classes(classes if classes is not None else default_classes(1))
    labels_volume = volume.with_array(data, name=name or f"{image_layer.name} labels")
    kwargs = layer_kwargs_for_volume(labels_volume, metadata={"medseg": {"classes": table}})
    meta_source = kwargs["metadata"]["medseg"].setdefault("source", {})
    meta_source["image_layer"] = image_layer.name
    meta_source["image_key"] = str(getattr(image_layer, "unique_id", "") or "") or None
    if role:
        kwargs["metadata"]["medseg"]["role"] = role
    layer = viewer.add_labels(data, colormap=classes_colormap(table), **kwargs)
    layer.selected_label = next(iter(table), 1)
    return layer


def image_layers(viewer: Any) -> list[Any]:
    """Image layers of ``viewer`` (greyscale and colour pictures), in layer-list order."""
    from napari.layers import Image

    return [ly for ly in viewer.layers if isinstance(ly, Image)
            and medseg_metadata(ly).get("role") not in DERIVED_ROLES]


#: Roles of layers that are views of a result, not images or annotations to work on
#: (``metadata["medseg"]["role"]``: see :func:`add_labels_for_image` and the Infer dock's maps).
DERIVED_ROLES = ("difference", "preview", "probability", "uncertainty", "seeds")


def labels_layers(viewer: Any) -> list[Any]:
    """Labels layers of ``viewer`` that hold annotations or predictions, in layer-list order.

    Difference overlays and edit previews are left out: no dock offers them as a target.
    """
    from napari.layers import Labels

    return [ly for ly in viewer.layers if isinstance(ly, Labels)
            and medseg_metadata(ly).get("role") not in DERIVED_ROLES]


def copy_medseg_metadata(layer: Any) -> dict[str, Any]:
    """Deep copy of ``layer.metadata["medseg"]`` (empty dict when absent)."""
    return copy.deepcopy(medseg_metadata(layer))


#: Edits changing more voxels than this are recorded as one bounding-box patch (memory:
#: 2 bytes per voxel of the box) instead of per-voxel indices (25 bytes per changed voxel).
LARGE_EDIT_VOXELS = 1_000_000


def save_history_atom(layer: Any, atom: tuple[Any, np.ndarray, np.ndarray]) -> None:
    """Record one ``(where, old, new)`` step in a Labels layer's own undo history.

    The one place the plugin uses a private napari API: napari (0.9, pinned in setup.cfg) has
    no public call to add an undo step for data written outside its painting tools, so this
    wraps ``Labels._save_history``, whose atom napari replays as ``data[where] = old`` on undo
    and ``data[where] = new`` on redo (``where``: a tuple of slices or of index arrays). Checked
    against the pinned napari by ``tests/ui/test_layer_metadata.py``.
    """
    with layer.block_history():
        layer._save_history(atom)


def apply_labels_edit(
    layer: Any, new: np.ndarray, where: tuple[slice, ...] | None = None
) -> int:
    """Write an edit into a Labels layer as ONE step of the layer's own undo history.

    napari's Ctrl+Z / Ctrl+Shift+Z (``layer.undo()`` / ``layer.redo()``) then undo brush
    strokes and these edits alike. Small edits go through ``Labels.data_setitem`` (only the
    changed region of the canvas is refreshed); large ones (> :data:`LARGE_EDIT_VOXELS`) are
    stored as the core's :class:`~napari_medseg.editing.EditPatch` (bounding box with old and
    new values) in napari's history format ``(slices, old, new)``, which napari replays with
    plain slicing.

    Parameters
    ----------
    layer : napari.layers.Labels
    new : np.ndarray
        New label values for ``layer.data[where]`` (the whole array when ``where`` is None).
    where : tuple of slice, optional
        Region (bounding box) that ``new`` replaces.

    Returns
    -------
    int
        Number of voxels changed (0: nothing recorded).
    """
    from napari_medseg.editing import make_patch

    data = layer.data
    where = where if where is not None else tuple(slice(0, n) for n in data.shape)
    old = np.asarray(data[where])
    new = np.asarray(new)
    if new.shape != old.shape:
        raise ValueError(f"edit of shape {new.shape} does not fit region of shape {old.shape}")
    changed = old != new
    n = int(np.count_nonzero(changed))
    if n == 0:
        return 0
    offsets = [s.start or 0 for s in where]
    new = new.astype(data.dtype, copy=False)
    if n <= LARGE_EDIT_VOXELS:
        indices = tuple(idx + off for idx, off in zip(np.nonzero(changed), offsets, strict=True))
        with layer.block_history():
            layer.data_setitem(indices, new[changed])
        return n
    patch = make_patch(old, new)
    bbox = tuple(slice(b.start + off, b.stop + off) for b, off in zip(patch.bbox, offsets,
                                                                         strict=True))
    save_history_atom(layer, (bbox, patch.old.copy(), patch.new.copy()))
    data[bbox] = patch.new
    layer.refresh()
    return n
