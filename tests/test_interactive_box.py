"""Box prompts: the object inside a drawn box becomes one label, nothing outside the box changes."""

from __future__ import annotations

import numpy as np
import pytest
from test_interactive_seeds import _blob_image, _guided_model, _labels_with_two_objects

from napari_medseg.interactive.box import box_slices, refine_with_box
from napari_medseg.metrics import dice


def test_box_around_a_2d_blob_segments_it():
    image, truth = _blob_image((64, 64), (0.5, 0.5), (30, 34), 7.0, noise=0.25)
    labels = np.zeros(image.shape, np.uint8)
    labels[:4, :4] = 3  # another label far away
    patch = refine_with_box(None, None, image, labels, 1, [(14, 18), (46, 50)],
                            spacing=(0.5, 0.5))
    out = labels.copy()
    patch.apply(out)
    assert dice(out == 1, truth) > 0.9
    assert (out[:4, :4] == 3).all()
    changed = np.argwhere(out != labels)
    assert changed[:, 0].min() >= 14 and changed[:, 0].max() <= 46
    assert changed[:, 1].min() >= 18 and changed[:, 1].max() <= 50
    patch.revert(out)
    np.testing.assert_array_equal(out, labels)


def test_box_on_one_slice_of_a_volume_edits_that_slice_only():
    image, labels, truth = _labels_with_two_objects()
    before = labels.copy()
    # the blob is missed right of x=16 on every slice; a box on slice 8 around the blob
    patch = refine_with_box(None, None, image, labels, 1, [(8, 12, 6), (8, 28, 22)])
    out = labels.copy()
    patch.apply(out)
    changed = np.argwhere(out != before)
    assert set(changed[:, 0]) == {8}
    assert dice(out[8] == 1, truth[8]) > dice(before[8] == 1, truth[8]) + 0.05
    assert ((out == 2) == (before == 2)).all()  # the neighbour (inside the box too) stays
    np.testing.assert_array_equal(labels, before)  # the input is not modified


def test_box_with_a_guided_model_changes_nothing_outside_the_box():
    image, labels, _ = _labels_with_two_objects()
    net, card = _guided_model()
    corners = [(6, 14, 10), (10, 26, 20)]
    patch = refine_with_box(net, card, image, labels, 1, corners)
    if patch is None:
        return  # an untrained net may change nothing
    out = labels.copy()
    patch.apply(out)
    changed = np.argwhere(out != labels)
    for axis, (lo, hi) in enumerate(zip(*corners, strict=True)):
        assert changed[:, axis].min() >= lo and changed[:, axis].max() <= hi
    assert ((out == 2) == (labels == 2)).all()


def test_bad_boxes():
    with pytest.raises(ValueError, match="larger box"):
        box_slices([(5, 5), (6, 30)], (64, 64))
    with pytest.raises(ValueError, match="outside the image"):
        box_slices([(70, 70), (90, 90)], (64, 64))
    assert box_slices([(40, 30), (-5, 10)], (64, 64)) == (slice(0, 41), slice(10, 31))
    image = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="not background"):
        refine_with_box(None, None, image, np.zeros((8, 8), np.uint8), 0, [(0, 0), (7, 7)])
