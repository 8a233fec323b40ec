"""The Train dock's *Training data* section: which (image, labels) pairs, extra channels or
dataset folder a model learns from, and the copy of the open layers handed to training.

:func:`find_training_pairs` pairs each open Labels layer with its image; :class:`DataSection`
lists those pairs (checkable), the co-registered images offered as extra input channels, and the
alternative MSD / nnU-Net dataset folder; :meth:`DataSection.collect_cases` copies the checked
pairs into a :class:`~napari_medseg.dataset.Dataset` (the layers themselves are never changed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from napari_medseg.events import IGNORE_LABEL
from napari_medseg.ui._controls import ChannelList, button, layer_key
from napari_medseg.ui._layers import (
    copy_medseg_metadata,
    image_layers,
    labels_for_saving,
    labels_layers,
    labels_on_grid_of,
    layer_classes,
    spatial_shape,
    volume_from_layer,
)
from napari_medseg.ui._notify import catch_errors
from napari_medseg.ui._settings import get_setting, last_folder, remember_folder, set_setting


def _has_annotation(labels: Any) -> bool:
    """Whether a Labels layer holds any label other than background (0) and unannotated.

    Scanned in slabs that stop at the first label found, so the GUI thread spends a few ms
    even on a 512x512x400 layer (an empty one is read once, without temporaries of its size).
    """
    data = np.asarray(labels.data)
    if data.ndim < 3:
        return bool(np.any((data != 0) & (data != IGNORE_LABEL)))
    coarse = data[::8, ::8, ::8]  # an organ shows in a sample of 1 voxel in 512
    if np.any((coarse != 0) & (coarse != IGNORE_LABEL)):
        return True
    for start in range(0, data.shape[0], 16):
        slab = data[start:start + 16]
        if slab.any() and np.any((slab != 0) & (slab != IGNORE_LABEL)):
            return True
    return False


def find_training_pairs(viewer: Any) -> list[tuple[Any, Any]]:
    """(image layer, labels layer) pairs open in ``viewer``.

    A Labels layer (of the same shape) is paired with, in this order: the image it was made for
    (``metadata["medseg"]["source"]["image_key"]``, then ``["image_layer"]``, its name); the image whose name starts its name
    (``"case_1 labels"`` -> ``"case_1"``); the image read from a file of the same name
    (``imagesTr/x.nii.gz`` and ``labelsTr/x.nii.gz``); the first image of the same shape.
    """
    images = image_layers(viewer)
    pairs = []
    for labels in labels_layers(viewer):
        same = [im for im in images if spatial_shape(im) == spatial_shape(labels)]
        if not same:
            continue
        source = copy_medseg_metadata(labels).get("source", {})
        by_origin = ([im for im in same if source.get("image_key") == layer_key(im)]
                     or [im for im in same if im.name == source.get("image_layer")])
        by_name = sorted((im for im in same if labels.name.startswith(im.name)),
                         key=lambda im: -len(im.name))
        file_name = Path(str(source.get("path", ""))).name
        by_file = [im for im in same if file_name and Path(str(
            copy_medseg_metadata(im).get("source", {}).get("path", ""))).name == file_name]
        pairs.append(((by_origin or by_name or by_file or same)[0], labels))
    return pairs


def _name_class(names: dict[int, str], value: int, name: str) -> None:
    """Record ``name`` for label ``value``: a name the user gave (on any pair) wins over the
    placeholder "label N" another pair still has."""
    placeholder = f"label {value}"
    if value not in names or (names[value] in ("", placeholder) and name not in ("", placeholder)):
        names[value] = name

class DataSection(QGroupBox):
    """Group box *Training data*: open pairs (with extra channels) or a dataset folder.

    Signals
    -------
    changed()
        The source or the checked pairs changed (the dock re-checks its 2D/3D choice).
    """

    changed = Signal()

    def __init__(self, viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__("Training data", parent)
        self.viewer = viewer
        self.running = False
        self._pairs: list[tuple[Any, Any]] = []
        v = QVBoxLayout(self)
        self.layers_radio = QRadioButton("Open image + labels layers")
        self.layers_radio.setToolTip("Train on the checked (image, labels) pairs open in napari")
        self.folder_radio = QRadioButton("Dataset folder (imagesTr/ + labelsTr/)")
        self.folder_radio.setToolTip("Train on a Medical Segmentation Decathlon / nnU-Net folder")
        group = QButtonGroup(self)
        group.addButton(self.layers_radio)
        group.addButton(self.folder_radio)
        self.layers_radio.setChecked(True)
        self.layers_radio.toggled.connect(self.update_source)
        self.layers_radio.toggled.connect(lambda *_: self.changed.emit())
        v.addWidget(self.layers_radio)
        self.pair_list = QListWidget()
        self.pair_list.setToolTip(
            "Each line pairs a labels layer with its image. Unchecked pairs are not used. "
            "Slices not marked as annotated are ignored by the loss (sparse annotation)."
        )
        self.pair_list.setMaximumHeight(90)
        self.pair_list.itemChanged.connect(self._on_pairs_checked)
        self.pair_list.itemChanged.connect(self._remember_choice)
        self._choices: dict[str, bool] = {}  # the user's own ticks, by the pair's text
        self._refreshing = False
        # painting changes what is empty: refresh the list once the strokes pause
        self._paint_timer = QTimer(self)
        self._paint_timer.setSingleShot(True)
        self._paint_timer.setInterval(300)
        self._paint_timer.timeout.connect(self._on_layers_changed)
        self.pair_list.setTextElideMode(Qt.ElideMiddle)
        self.pair_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        v.addWidget(self.pair_list)
        self.channels_label = QLabel("Extra channels")
        self.channels_label.setToolTip("Co-registered images fed with each image as further "
                                       "input channels (nnU-Net's channel_names)")
        v.addWidget(self.channels_label)
        self.channel_list = ChannelList(self.viewer, image_layers)
        v.addWidget(self.channel_list)
        v.addWidget(self.folder_radio)
        row = QHBoxLayout()
        self.folder_edit = QLineEdit(get_setting("train/dataset_folder", ""))
        self.folder_edit.setPlaceholderText("folder with dataset.json, imagesTr, labelsTr")
        self.folder_edit.setToolTip("Dataset folder in the MSD / nnU-Net layout")
        self.folder_button = button("Browse…", "Choose the dataset folder", self._choose_folder)
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.folder_button)
        v.addLayout(row)
        self.folder_edit.textChanged.connect(lambda *_: self.changed.emit())
        for name in ("inserted", "removed"):
            getattr(self.viewer.layers.events, name).connect(self._on_layers_changed)

    # ------------------------------------------------------------------ state
    def set_running(self, running: bool) -> None:
        """Lock every choice while training runs."""
        self.running = running
        for w in (self.layers_radio, self.folder_radio, self.pair_list, self.channel_list,
                  self.folder_edit, self.folder_button):
            w.setEnabled(not running)
        if not running:
            self.update_source()

    def update_source(self, *_: Any) -> None:
        """Enable the controls of the chosen source (open pairs or dataset folder)."""
        use_layers = self.layers_radio.isChecked()
        self.pair_list.setEnabled(use_layers and not self.running)
        self.channel_list.setEnabled(use_layers and not self.running)
        self.folder_edit.setEnabled(not use_layers and not self.running)
        self.folder_button.setEnabled(not use_layers and not self.running)

    def missing(self) -> str:
        """Why training cannot start from the chosen source ("" when it can)."""
        if self.layers_radio.isChecked():
            if not self.checked_pairs():
                return ("Tick an image + labels pair above (open an image and paint its "
                        "labels first)")
            return ""
        if not self.folder_edit.text().strip():
            return "Choose a dataset folder above"
        return ""

    # ------------------------------------------------------------------ pairs
    def _on_painted(self, *_: Any) -> None:
        try:
            self._paint_timer.start()
        except RuntimeError:  # widget already deleted
            pass

    def _on_layers_changed(self, event: Any = None) -> None:
        try:
            self.refresh_pairs()
        except RuntimeError:  # widget already deleted
            pass

    def _remember_choice(self, item: QListWidgetItem) -> None:
        if not self._refreshing:
            self._choices[item.text()] = item.checkState() == Qt.Checked

    def refresh_pairs(self) -> None:
        """Rebuild the checklist of (image, labels) pairs, keeping the user's own ticks.

        By default a pair is ticked when its labels hold an annotation and no older labels
        layer of the same image is ticked: one annotation per image, not also the empty layer
        just made or the model's prediction of it.
        """
        self._refreshing = True
        self.pair_list.clear()
        self._pairs = find_training_pairs(self.viewer)
        for layer in list(self.viewer.layers):
            layer.events.name.connect(self._on_layers_changed)  # napari ignores duplicates
            if hasattr(layer.events, "paint"):  # a Labels layer: strokes, or new data
                layer.events.paint.connect(self._on_painted)
                layer.events.data.connect(self._on_painted)
        ticked_images: set[str | None] = set()
        for image, labels in self._pairs:
            text = (labels.name if labels.name.startswith(image.name)
                    else f"{labels.name}  ←  {image.name}")
            marks = copy_medseg_metadata(labels).get("annotated_slices")
            annotated = _has_annotation(labels)
            if marks:
                text += f"  ({len(marks)} slices annotated)"
            elif not annotated:
                text += "  (empty)"
            item = QListWidgetItem(text)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            default = annotated and layer_key(image) not in ticked_images
            checked = self._choices.get(text, default)
            if checked:
                ticked_images.add(layer_key(image))
            item.setCheckState(Qt.Checked if checked else Qt.Unchecked)
            item.setToolTip(f"labels '{labels.name}' on image '{image.name}', "
                            f"shape {tuple(labels.data.shape)}")
            self.pair_list.addItem(item)
        if not self._pairs:
            item = QListWidgetItem("(open an image and its labels)")
            item.setFlags(Qt.NoItemFlags)
            self.pair_list.addItem(item)
        self._refreshing = False
        self._on_pairs_checked()

    def _on_pairs_checked(self, *_: Any) -> None:
        """Checked pairs changed: offer their extra channels (the dock re-checks 2D/3D)."""
        try:
            pairs = self.checked_pairs()
        except (AttributeError, RuntimeError):
            return
        self.channel_list.set_images([image for image, _labels in pairs])
        self.changed.emit()

    def checked_pairs(self) -> list[tuple[Any, Any]]:
        """The (image, labels) pairs currently checked."""
        return [pair for i, pair in enumerate(self._pairs)
                if i < self.pair_list.count()
                and self.pair_list.item(i).checkState() == Qt.Checked]

    def pictures_2d(self) -> list[str]:
        """Names of the checked training images that are 2D (they need a 2D network); in
        folder mode, the folder's name when its ``dataset.json`` says its images are 2D
        pictures (PNG, JPEG, BMP, ...: ``file_ending``)."""
        if not self.layers_radio.isChecked():
            folder = self.folder_edit.text().strip()
            return [Path(folder).name] if folder and _picture_dataset(folder) else []
        return [image.name for image, _labels in self.checked_pairs()
                if len(spatial_shape(image)) == 2]

    # ------------------------------------------------------------------ folder
    @catch_errors("Choose dataset folder")
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Dataset folder",
                                                  self.folder_edit.text() or last_folder("dataset"))
        if folder:
            self.folder_edit.setText(folder)
            remember_folder(folder, "dataset")

    def dataset_folder(self) -> str:
        """The chosen dataset folder (checked to exist, remembered for the next session)."""
        folder = self.folder_edit.text().strip()
        if not folder or not Path(folder).is_dir():
            raise ValueError("choose an existing dataset folder")
        set_setting("train/dataset_folder", folder)
        return folder

    # ------------------------------------------------------------------ copy
    def collect_cases(self, name: str) -> Any:
        """Copy the checked pairs into a :class:`~napari_medseg.dataset.Dataset` (main thread).

        ``name`` names the dataset (the model's name). Raises ``ValueError`` when no pair is
        checked, a labels layer is empty or does not match its image, or the cases' channels
        differ.
        """
        from napari_medseg.dataset import Case, Dataset

        self.refresh_pairs()  # what is empty may have changed since (edits without paint events)
        pairs = self.checked_pairs()
        if not pairs:
            empty = [labels.name for _image, labels in self._pairs if not _has_annotation(labels)]
            if empty and len(empty) == len(self._pairs):
                raise ValueError(f"'{empty[0]}' holds no annotation yet: paint a structure "
                                 "(or open its labels) first")
            raise ValueError("check at least one (image, labels) pair, or choose a dataset "
                             "folder")
        cases, names, modality = [], {0: "background"}, None
        channel_names: list[str] | None = None
        for image_layer, labels_layer in pairs:
            image = volume_from_layer(image_layer)
            image = image.with_array(np.array(image.array, dtype=np.float32, copy=True))
            extras = []
            for layer in self.channel_list.checked_layers(image_layer):
                extra = volume_from_layer(layer)
                extra.metadata["channel_name"] = layer.name
                extras.append(extra.with_array(np.array(extra.array, dtype=np.float32,
                                                        copy=True)))
            names_here = (image.channel_names if image.rgb else [image_layer.name]) + [
                e.metadata["channel_name"] for e in extras]
            if channel_names is None:
                channel_names = names_here
            elif len(channel_names) != len(names_here):
                raise ValueError(
                    f"'{image_layer.name}' has {len(names_here)} input channel(s) "
                    f"({', '.join(names_here)}) but the first image has {len(channel_names)} "
                    f"({', '.join(channel_names)}): every case needs the same channels")
            medseg = copy_medseg_metadata(labels_layer)
            labels = labels_for_saving(np.asarray(labels_layer.data), medseg)
            # in the image's voxel order (a label map saved by another tool for this scan may
            # store its rows the other way); refused when they are not the same voxels
            labels = np.array(labels_on_grid_of(labels_layer, image_layer, labels), copy=True)
            values = np.unique(labels)
            annotated = values[values != IGNORE_LABEL]
            if annotated.size == 0 or annotated.max() == 0:
                raise ValueError(f"labels '{labels_layer.name}' contain no annotation yet")
            for value, entry in layer_classes(labels_layer).items():
                _name_class(names, int(value), str(entry["name"]))
            for value in annotated:
                if int(value) != 0:
                    names.setdefault(int(value), f"label {int(value)}")
            modality = modality or image.modality
            cases.append(Case(case_id=image_layer.name, image=image, labels=labels,
                              extra_channels=tuple(extras)))
        names = dict(sorted(names.items()))
        if channel_names is not None and len(channel_names) == 1:
            channel_names = ["image"]  # one greyscale channel: the name every model uses
        return Dataset(cases, names, modality=modality or "unknown",
                       channel_names=channel_names or ["image"], name=name)


#: ``file_ending`` values of datasets whose images are always 2D pictures (a TIFF may be a
#: stack of slices, so it is left to the user's choice).
_PICTURE_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _picture_dataset(folder: str) -> bool:
    """Whether ``folder/dataset.json`` names a 2D picture ``file_ending`` (False when unread)."""
    import json

    from napari_medseg.dataset.msd import dataset_file_ending

    try:
        meta = json.loads((Path(folder) / "dataset.json").read_text())
        return dataset_file_ending(meta) in _PICTURE_ENDINGS
    except (OSError, ValueError, AttributeError):  # unread or unsupported: Start says why
        return False
