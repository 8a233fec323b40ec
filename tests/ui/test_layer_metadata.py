"""The plugin's layer metadata has one reader and one writer, and links survive renaming."""

from __future__ import annotations

import numpy as np

from napari_medseg.ui._controls import image_for
from napari_medseg.ui._layers import (
    add_labels_for_image,
    medseg_metadata,
    save_history_atom,
    set_layer_classes,
    update_medseg_metadata,
)


def test_update_sets_and_removes_keys_without_touching_the_old_dict(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((3, 4, 5), np.uint8), metadata={"other": 1})
    assert medseg_metadata(layer) == {}
    seen = []
    layer.events.metadata.connect(lambda ev: seen.append(1))
    update_medseg_metadata(layer, annotated_slices=[2, 0], project_case="case_01")
    before = medseg_metadata(layer)
    update_medseg_metadata(layer, project_case=None, annotated_axis=1)
    assert before == {"annotated_slices": [2, 0], "project_case": "case_01"}  # not mutated
    assert medseg_metadata(layer) == {"annotated_slices": [2, 0], "annotated_axis": 1}
    assert layer.metadata["other"] == 1  # napari's and other plugins' keys stay
    assert len(seen) == 2  # napari heard of both changes
    set_layer_classes(layer, {1: {"name": "Liver", "color": "#ff0000"}})
    assert medseg_metadata(layer)["annotated_axis"] == 1
    assert medseg_metadata(layer)["classes"][1]["name"] == "Liver"


def test_labels_find_their_image_after_either_is_renamed(make_napari_viewer):
    viewer = make_napari_viewer()
    scan = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="scan")
    twin = viewer.add_image(np.zeros((4, 5, 6), np.float32), name="twin")  # same grid
    labels = add_labels_for_image(viewer, scan, name="scan labels")
    scan.name, labels.name = "renamed scan", "my labels"
    assert image_for(labels, [scan, twin]) is scan
    assert image_for(labels, [twin]) is None  # drawn on another image of the same grid


def test_history_atom_undoes_and_redoes_on_the_pinned_napari(make_napari_viewer):
    """The one private napari call (``Labels._save_history``) behaves as the plugin needs:
    slice atoms and index atoms both undo and redo."""
    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((4, 6, 6), np.uint8))
    box = (slice(1, 3), slice(0, 4), slice(2, 5))
    old = layer.data[box].copy()
    new = np.full_like(old, 3)
    save_history_atom(layer, (box, old, new))
    layer.data[box] = new
    idx = (np.array([0, 3]), np.array([5, 5]), np.array([0, 1]))
    save_history_atom(layer, (idx, layer.data[idx].copy(), np.array([7, 8], np.uint8)))
    layer.data[idx] = [7, 8]
    layer.undo()
    assert layer.data[idx].tolist() == [0, 0] and np.all(layer.data[box] == 3)
    layer.undo()
    assert not layer.data.any()
    layer.redo()
    layer.redo()
    assert np.count_nonzero(layer.data == 3) == new.size and layer.data[idx].tolist() == [7, 8]
