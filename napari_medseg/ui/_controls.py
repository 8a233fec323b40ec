"""Small Qt building blocks shared by the MedSeg dock widgets.

* :class:`LayerCombo` - a combo box of the viewer's Image or Labels layers that follows the
  layer list (added, removed, renamed layers).
* :func:`run_in_worker` - run a blocking core call in napari's ``thread_worker`` so the viewer
  stays responsive; the result arrives on the main thread, errors become notifications.
* :func:`button`, :func:`spin`, :func:`double_spin`, :func:`hint` - labelled controls with
  tooltips, so every control explains itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.ui._layers import medseg_metadata, spatial_shape
from napari_medseg.ui._notify import show_error_message


def layer_key(layer: Any) -> str | None:
    """A stable identity for a napari layer: its ``unique_id``.

    Docks opened from *Plugins* get a ``PublicOnlyProxy`` of the viewer, and every layer reached
    through it (``viewer.add_labels(...)``'s return value, ``viewer.layers[-1]``) is a new proxy
    object: ``is``/``id()`` and Qt's item-data lookup do not match it with the same layer seen
    another way. Compare layers with this key (or :func:`same_layer`) instead.
    """
    if layer is None:
        return None
    key = getattr(layer, "unique_id", None)
    return str(key) if key is not None else f"id:{id(layer)}"


def same_layer(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same napari layer (proxies included)."""
    return a is not None and b is not None and layer_key(a) == layer_key(b)


def belongs_to(labels: Any, image: Any) -> bool:
    """Whether the Labels layer ``labels`` was drawn on (or lies on the grid of) ``image``.

    The plugin records the image's :func:`layer_key` and name when it makes a Labels layer:
    such labels belong to that image only (2D pictures of one size all share a placeholder
    grid). Otherwise (a label map opened from a file next to its image, labels saved and
    reopened) labels belong to an image of the same shape and affine.
    """
    if labels is None or image is None:
        return False
    source = medseg_metadata(labels).get("source") or {}
    if source.get("image_key") is not None and source.get("image_key") == layer_key(image):
        return True
    if source.get("image_layer") and source.get("image_layer") == image.name:
        return True
    other = medseg_metadata(image).get("source") or {}
    if source.get("image_key") is not None and other.get("image_key") == source["image_key"]:
        return True  # two layers (annotation, prediction) drawn on the same image
    from napari.layers import Labels

    if source.get("image_key") is not None and not isinstance(image, Labels):
        # drawn on another image: pictures of one size share a placeholder grid, but
        # photo_a's labels are not photo_b's
        return False
    try:
        if spatial_shape(labels) != spatial_shape(image):
            return False
    except AttributeError:
        return False
    if _placeholder_grid(labels) or _placeholder_grid(image):
        # 2D pictures share a pixel grid with every picture of their size: a mask opened from
        # a file belongs to the picture its name says (Image_07L_1stHO.png -> Image_07L.jpg)
        a_name, b_name = case_stem(labels), case_stem(image)
        if a_name is not None and b_name is not None:
            return stems_match(a_name, b_name)
    a, b = medseg_metadata(labels).get("affine"), medseg_metadata(image).get("affine")
    if a is not None and b is not None:
        return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), atol=1e-3))
    return all(abs(float(x) - float(y)) < 1e-6 for x, y in
               zip(list(labels.scale) + list(labels.translate),
                   list(image.scale) + list(image.translate), strict=False))


#: Characters that may follow a case name in a file name of the same case
#: (``case_0000.png``, ``Image_07L_1stHO.png``, ``us_03-mask.png``).
_STEM_SEPARATORS = "_-. "
_SUFFIXES = (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".mha", ".png", ".jpg", ".jpeg", ".tif",
             ".tiff", ".bmp", ".gif", ".dcm")


def _placeholder_grid(layer: Any) -> bool:
    """A 2D picture: its grid (pixel size or 1, no position) says nothing of which case it is."""
    meta = medseg_metadata(layer)
    source = meta.get("source") or {}
    try:
        return bool(source.get("picture")) or len(spatial_shape(layer)) == 2
    except AttributeError:
        return False


def case_stem(layer: Any) -> str | None:
    """The case a layer shows, by name: the image a Labels layer was drawn on, else its file's
    name without extensions, else None (a layer made elsewhere, e.g. in the console)."""
    meta = medseg_metadata(layer)
    source = meta.get("source") or {}
    if source.get("image_layer"):
        return str(source["image_layer"]).lower()
    path = source.get("path")
    if not path:
        return None
    name = Path(str(path)).name.lower()
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def stems_match(a: str, b: str) -> bool:
    """Whether two case names name the same case: equal, or one is the other followed by a
    separator and more (``image_07l`` and ``image_07l_1stho``; not ``us_1`` and ``us_10``)."""
    short, long = sorted((a, b), key=len)
    return long == short or (long.startswith(short) and long[len(short)] in _STEM_SEPARATORS)


def image_for(layer: Any, images: list[Any]) -> Any | None:
    """The image among ``images`` that ``layer`` (a Labels layer) belongs to, newest first."""
    if layer is None:
        return None
    return next((im for im in reversed(images) if belongs_to(layer, im)), None)


def labels_for(image: Any, labels: list[Any]) -> Any | None:
    """The newest Labels layer among ``labels`` that belongs to ``image``."""
    if image is None:
        return None
    return next((lb for lb in reversed(labels) if belongs_to(lb, image)), None)


class LayerCombo(QComboBox):
    """Combo box listing layers chosen by ``layers_of(viewer)``; keeps itself up to date.

    Items carry the layer's :func:`layer_key`, not the layer object, so a layer the plugin just
    added through a viewer proxy is found again.

    Parameters
    ----------
    viewer : napari.Viewer
    layers_of : callable
        ``layers_of(viewer) -> list[Layer]``, e.g. :func:`~napari_medseg.ui._layers.image_layers`.
    placeholder : str
        Text shown when no layer qualifies.
    default : {"newest", "oldest"}
        Layer chosen when nothing is chosen yet.
    follow_new : bool
        Select a qualifying layer as soon as it is added (e.g. a fresh prediction).
    follow_active : bool
        Follow what the user is looking at: when the viewer's active layer is one this combo
        offers, select it; when it is another kind (an image for a labels combo, or labels
        for an image combo), select the layer of the same image (see :func:`belongs_to`).
    """

    def __init__(
        self,
        viewer: Any,
        layers_of: Callable[[Any], list[Any]],
        placeholder: str = "(no layer)",
        parent: QWidget | None = None,
        *,
        default: str = "newest",
        follow_new: bool = False,
        follow_active: bool = True,
    ) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._layers_of = layers_of
        self._placeholder = placeholder
        self._default = default
        self._follow_new = follow_new
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        events = viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            emitter = getattr(events, name, None)
            if emitter is not None:
                emitter.connect(self._on_layers_changed)
        if follow_active:
            viewer.layers.selection.events.active.connect(self._on_active_changed)
        self.refresh()

    def _on_active_changed(self, event: Any = None) -> None:
        """Select the active layer, or the offered layer that belongs with it."""
        try:
            active = getattr(event, "value", None)
            if active is None:
                return
            if self._find(active) is not None:
                self.set_layer(active)
                return
            from napari.layers import Image, Labels

            offered = self.layers()
            if not offered:
                return
            current = self.layer()
            if isinstance(active, Labels) and isinstance(offered[0], Image):
                if current is None or not belongs_to(active, current):
                    related = image_for(active, offered)
                    if related is not None:
                        self.set_layer(related)
            elif isinstance(active, Image) and isinstance(offered[0], Labels):
                if current is None or not belongs_to(current, active):
                    related = labels_for(active, offered)
                    if related is not None:
                        self.set_layer(related)
        except RuntimeError:  # the widget was deleted while napari still holds the callback
            pass

    def _on_layers_changed(self, event: Any = None) -> None:
        try:
            self.refresh()
            layer = getattr(event, "value", None)
            if (self._follow_new and getattr(event, "type", "") == "inserted"
                    and self._find(layer) is not None):
                self.set_layer(layer)
        except RuntimeError:  # the widget was deleted while napari still holds the callback
            pass

    def layers(self) -> list[Any]:
        """The layers currently offered (only those of the partner's image when paired)."""
        layers = list(self._layers_of(self._viewer))
        partner = getattr(self, "_partner", None)
        image = partner.layer() if partner is not None else None
        if image is not None:
            layers = [ly for ly in layers if belongs_to(ly, image)]
        return layers

    def pair_with(self, image_combo: LayerCombo) -> None:
        """Offer only the Labels layers that belong to ``image_combo``'s image.

        A form's labels then always lie on its image's grid: choosing another image switches
        to that image's newest labels (or none), never silently to another patient's.
        """
        self._partner = image_combo
        image_combo.currentIndexChanged.connect(lambda *_: self._on_partner_changed())
        self.refresh()

    def _on_partner_changed(self) -> None:
        try:
            current = self.currentData()
            self.refresh()
            if current is not None and self.currentData() != current:
                return
            if self.currentData() is None and self.layers():
                self.setCurrentIndex(len(self.layers()) - 1)
        except RuntimeError:
            pass

    def _find(self, layer: Any) -> Any | None:
        """The offered layer that is ``layer`` (by :func:`layer_key`), or ``None``."""
        key = layer_key(layer)
        if key is None:
            return None
        return next((ly for ly in self.layers() if layer_key(ly) == key), None)

    def refresh(self) -> None:
        """Rebuild the list, keeping the current choice when it still exists."""
        current = self.currentData()
        layers = self.layers()
        keys = [layer_key(ly) for ly in layers]
        self.blockSignals(True)
        self.clear()
        for layer, key in zip(layers, keys, strict=True):
            self.addItem(layer.name, key)
            layer.events.name.connect(self._on_layers_changed)  # napari ignores duplicates
        if not layers:
            self.addItem(self._placeholder, None)
        self.setEnabled(bool(layers))
        if current is not None and current in keys:
            self.setCurrentIndex(keys.index(current))
        elif layers:
            self.setCurrentIndex(0 if self._default == "oldest" else len(layers) - 1)
        self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())

    def layer(self) -> Any | None:
        """The chosen layer, or ``None``."""
        key = self.currentData()
        if key is None:
            return None
        return next((ly for ly in self.layers() if layer_key(ly) == key), None)

    def set_layer(self, layer: Any) -> None:
        """Select ``layer`` (refreshing first if it is new); any proxy of it will do."""
        if self._find(layer) is None:
            return
        key = layer_key(layer)
        if self.findData(key) < 0:
            self.refresh()
        self.setCurrentIndex(self.findData(key))

    def require(self, what: str = "layer") -> Any:
        """The chosen layer; raises ``ValueError`` with a clear message when there is none."""
        layer = self.layer()
        if layer is None:
            raise ValueError(f"no {what} chosen: open or create one first")
        return layer


class ChannelList(QListWidget):
    """Checklist of greyscale images on the grid of an image: extra input channels.

    nnU-Net's ``channel_names`` idea: co-registered images of one patient (T1 + T2, CT + PET)
    are one multi-channel input. The list offers every other greyscale Image layer whose grid
    (shape and geometry, see :func:`belongs_to`) is that of :meth:`set_image`'s image; the
    checked ones follow the image, in layer-list order, as channels 1, 2, ...

    Parameters
    ----------
    viewer : napari.Viewer
    layers_of : callable
        ``layers_of(viewer) -> list[Image]`` (the plugin's image layers).
    """

    def __init__(self, viewer: Any, layers_of: Callable[[Any], list[Any]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._layers_of = layers_of
        self._images: list[Any] = []
        self._offered: list[Any] = []
        self.setMaximumHeight(70)
        self.setTextElideMode(Qt.ElideMiddle)
        self.setToolTip(
            "Other images of the same patient on the same grid (e.g. T2 next to T1): checked "
            "ones are fed to the model as extra input channels, in this order. A model trained "
            "with extra channels needs the same ones to segment.")
        self.refresh()

    def set_images(self, images: list[Any]) -> None:
        """Offer the images on the grid of every one of ``images`` (the main inputs)."""
        self._images = [im for im in images if im is not None]
        self.refresh()

    def _candidates(self) -> list[Any]:
        if not self._images:
            return []
        main = {layer_key(im) for im in self._images}
        out = []
        for layer in self._layers_of(self._viewer):
            if layer_key(layer) in main or getattr(layer, "rgb", False):
                continue
            if any(belongs_to(layer, im) for im in self._images):
                out.append(layer)
        return out

    def refresh(self) -> None:
        """Rebuild the list, keeping checked choices (by layer id)."""
        checked = set(self.checked_keys())
        self.blockSignals(True)
        self.clear()
        self._offered = self._candidates()
        for layer in self._offered:
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if layer_key(layer) in checked else Qt.Unchecked)
            item.setData(Qt.UserRole, layer_key(layer))
            self.addItem(item)
        if not self._offered:
            item = QListWidgetItem("(none: no other image on this grid)")
            item.setFlags(Qt.NoItemFlags)
            self.addItem(item)
        rows = max(1, min(len(self._offered), 3))
        self.setMaximumHeight(self.sizeHintForRow(0) * rows + 2 * self.frameWidth() + 4)
        self.blockSignals(False)

    def checked_keys(self) -> list[str]:
        return [str(self.item(i).data(Qt.UserRole)) for i in range(self.count())
                if self.item(i).data(Qt.UserRole) is not None
                and self.item(i).checkState() == Qt.Checked]

    def set_checked(self, names_or_layers: list[Any]) -> None:
        """Check the offered layers given by name or layer (others are unchecked)."""
        wanted = {n if isinstance(n, str) else layer_key(n) for n in names_or_layers}
        for i, layer in enumerate(self._offered):
            on = layer.name in wanted or layer_key(layer) in wanted
            self.item(i).setCheckState(Qt.Checked if on else Qt.Unchecked)

    def checked_layers(self, image: Any = None) -> list[Any]:
        """Checked layers (on ``image``'s grid only, when given), in list order."""
        keys = set(self.checked_keys())
        return [ly for ly in self._offered if layer_key(ly) in keys
                and (image is None or belongs_to(ly, image))]


_SLICE_FOLLOWERS: set[int] = set()


def keep_new_images_in_view(viewer: Any) -> None:
    """When an image opens outside the slice being shown, jump to its middle slice.

    Opening case 007 after case 001 would otherwise keep 001's slice position: a black canvas
    when 007 does not reach it. Installed once per viewer (every dock may ask).
    """
    real = getattr(viewer, "__wrapped__", viewer)
    if id(real) in _SLICE_FOLLOWERS:
        return
    _SLICE_FOLLOWERS.add(id(real))

    def on_inserted(event: Any) -> None:
        try:
            show_middle_if_outside(viewer, event.value)
        except Exception:  # noqa: BLE001 - a view nicety must never break opening a file
            pass

    viewer.layers.events.inserted.connect(on_inserted)


class Dock(QWidget):
    """Base of the plugin's docks (Load, Annotate, Train, Infer, Edit, Evaluate, Project and the
    tabbed MedSeg dock).

    Parameters
    ----------
    napari_viewer : napari.Viewer
        What napari passes: the viewer, or a proxy of it when the dock is opened from the
        Plugins menu (compare layers with :func:`same_layer`, never by identity).
    parent : QWidget, optional
    follow_new_images : bool
        Keep newly opened images in view (:func:`keep_new_images_in_view`).
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None,
                 follow_new_images: bool = False) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        if follow_new_images:
            keep_new_images_in_view(napari_viewer)


def show_middle_if_outside(viewer: Any, layer: Any) -> bool:
    """Move the slider to the middle of ``layer`` when the current point misses it.

    Returns ``True`` when the view moved.
    """
    from napari.layers import Image

    if not isinstance(layer, Image) or layer.ndim < 3:
        return False
    extent = np.asarray(layer.extent.world, dtype=float)  # (2, layer.ndim): min, max
    point = list(viewer.dims.point)
    offset = len(point) - layer.ndim
    low, high = np.minimum(extent[0], extent[1]), np.maximum(extent[0], extent[1])
    outside = [ax for ax in viewer.dims.not_displayed if ax - offset >= 0
               and not low[ax - offset] - 1e-6 <= point[ax] <= high[ax - offset] + 1e-6]
    if not outside:
        return False
    for ax in outside:
        viewer.dims.set_point(ax, float((low[ax - offset] + high[ax - offset]) / 2))
    viewer.reset_view()
    return True


def run_in_worker(
    func: Callable[..., Any],
    *args: Any,
    on_returned: Callable[[Any], None] | None = None,
    action: str | None = None,
    on_errored: Callable[[BaseException], bool | None] | None = None,
    on_finished: Callable[[], None] | None = None,
    progress: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``func(*args, **kwargs)`` in a napari ``thread_worker`` and start it.

    Parameters
    ----------
    on_returned : callable, optional
        Called on the main thread with the result.
    action : str, optional
        Prefix of the error notification (e.g. ``"Open image"``).
    on_errored : callable, optional
        Called first with the exception; return ``True`` when it was handled (no notification).
    on_finished : callable, optional
        Called on the main thread after success or failure (connected before the start, so a
        fast job cannot finish unseen).
    progress : str, optional
        Show an indeterminate napari progress bar with this text while the job runs.

    Returns
    -------
    napari.qt.threading.FunctionWorker
        Already started; tests can wait for ``worker.finished``.
    """
    from napari.qt.threading import create_worker

    worker = create_worker(func, *args, _start_thread=False, _ignore_errors=True, **kwargs)

    def _errored(exc: BaseException) -> None:
        if on_errored is not None and on_errored(exc):
            return
        show_error_message(exc, action)

    def _returned(value: Any) -> None:
        if on_returned is None:
            return
        try:
            on_returned(value)
        except Exception as exc:  # noqa: BLE001 - surface as a notification, not a traceback
            show_error_message(exc, action)

    worker.returned.connect(_returned)
    worker.errored.connect(_errored)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    if progress:
        from napari.utils import progress as napari_progress

        bar = napari_progress(total=0, desc=progress)
        worker.finished.connect(bar.close)
    worker.start()
    return worker


class VerticalScrollArea(QScrollArea):
    """A frameless scroll area that scrolls up and down only and asks for its content's width,
    so a dock opens wide enough for its form and never hides half a button sideways."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QScrollArea.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)

    def _width_for(self, content_width: int) -> int:
        return content_width + self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().minimumSizeHint()
        content = self.widget()
        if content is None:
            return hint
        return QSize(self._width_for(content.minimumSizeHint().width()), hint.height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().sizeHint()
        content = self.widget()
        if content is None:
            return hint
        return QSize(self._width_for(content.sizeHint().width()), hint.height())


def scrollable_layout(widget: QWidget) -> QVBoxLayout:
    """Give ``widget`` a :class:`VerticalScrollArea` and return the layout inside it.

    Docks can be short; scrolling keeps every form row readable instead of squeezing it.
    """
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    scroll = VerticalScrollArea()
    content = QWidget()
    scroll.setWidget(content)
    outer.addWidget(scroll)
    return QVBoxLayout(content)


def button(text: str, tooltip: str, slot: Callable[..., Any] | None = None) -> QPushButton:
    """A push button with a tooltip, optionally connected to ``slot``."""
    b = QPushButton(text)
    b.setToolTip(tooltip)
    if slot is not None:
        b.clicked.connect(slot)
    return b


def enable_unless(b: Any, why_not: str | None, tooltip: str) -> None:
    """Enable ``b`` when ``why_not`` is None; else disable it and let its tooltip say why."""
    b.setEnabled(why_not is None)
    b.setToolTip(tooltip if why_not is None else f"{why_not[0].upper()}{why_not[1:]}.")


def spin(value: int, lo: int, hi: int, tooltip: str, suffix: str = "") -> QSpinBox:
    """An integer spin box with range, tooltip and unit suffix."""
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setToolTip(tooltip)
    if suffix:
        s.setSuffix(suffix)
    _fit_width(s, f"{hi}{suffix}")
    return s


def _fit_width(box: QSpinBox | QDoubleSpinBox, longest: str) -> None:
    """Never cut a spin box's value or unit ("12.0 mr"): room for its longest text + arrows."""
    text_width = box.fontMetrics().horizontalAdvance(longest + " ")
    box.setMinimumWidth(text_width + 36)


def double_spin(
    value: float, lo: float, hi: float, tooltip: str, suffix: str = "", decimals: int = 1,
    step: float = 0.5,
) -> QDoubleSpinBox:
    """A float spin box with range, tooltip, unit suffix and step."""
    s = QDoubleSpinBox()
    s.setDecimals(decimals)
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setValue(value)
    s.setToolTip(tooltip)
    if suffix:
        s.setSuffix(suffix)
    _fit_width(s, f"{hi:.{decimals}f}{suffix}")
    return s


def hint(text: str) -> QLabel:
    """A small grey, word-wrapped explanation label."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    label.setStyleSheet("color: gray; font-size: small;")
    return label


#: Label edits on label maps up to this many voxels (64**3) run at once on the GUI thread:
#: every morphology or component operation takes a few milliseconds there. Larger ones, and
#: calls that are slow whatever the size (clustering: seconds to import and fit), run in a
#: worker thread; their result comes back as a patch written in slabs (see ``_edit_apply``).
BACKGROUND_VOXELS = 64**3


def edit_labels(
    layer: Any,
    compute: Callable[[Any], Any],
    on_done: Callable[[int], None],
    action: str,
    busy: Callable[[bool], None] | None = None,
    *,
    background: bool | None = None,
    on_error: Callable[[str], None] | None = None,
) -> Any:
    """Run ``compute(labels_array) -> new_array`` and write the result as one undo step.

    Small volumes are edited immediately. Large ones (and any with ``background=True``) are
    computed in a ``thread_worker`` on a snapshot taken there; the worker returns only the
    difference (a bounding-box patch or the changed voxels), which the GUI thread writes in
    slabs over several event-loop turns, so the viewer keeps repainting. Only the voxels the
    operation changed are written: brush strokes made meanwhile elsewhere are kept.

    Parameters
    ----------
    layer : napari.layers.Labels
    compute : callable
        Core call, e.g. ``lambda a: grow_label(a, 1, 2.0, spacing)``. In the background it
        runs in a worker thread: it must not touch layers or widgets.
    on_done : callable
        Receives the number of changed voxels (main thread).
    action : str
        Prefix of error notifications.
    busy : callable, optional
        ``busy(True)`` while a background edit runs, ``busy(False)`` once it is written (or
        failed).
    background : bool, optional
        True: always in a worker (slow whatever the size); None: by size
        (:data:`BACKGROUND_VOXELS`).
    on_error : callable, optional
        Receives the one-line message of a background failure (also notified), e.g. for the
        dock's status line, which would otherwise still say it is working.

    Returns
    -------
    napari.qt.threading.FunctionWorker or None
        The worker for background edits, ``None`` when the edit was done at once.
    """
    import numpy as np

    from napari_medseg.ui._edit_apply import EditWriter, compute_edit
    from napari_medseg.ui._layers import apply_labels_edit

    data = layer.data
    if not background and np.asarray(data).size <= BACKGROUND_VOXELS:
        on_done(apply_labels_edit(layer, compute(np.asarray(data))))
        return None

    def idle() -> None:
        if busy is not None:
            busy(False)

    def failed(exc: BaseException) -> None:
        idle()
        message = show_error_message(exc, action)
        if on_error is not None:
            on_error(message)

    def returned(edit: Any) -> None:
        def done(n: int) -> None:
            idle()
            on_done(n)

        EditWriter(layer, edit, done, failed).start()

    def errored(exc: BaseException) -> bool:
        failed(exc)
        return True  # notified

    if busy is not None:
        busy(True)
    # no napari progress bar: its activity spinner repaints the whole window many times a
    # second (15-35 ms each on a software-rendered display); the dock says it is working
    return run_in_worker(compute_edit, compute, data, on_returned=returned, action=action,
                         on_errored=errored)
