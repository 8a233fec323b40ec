"""Grow from seeds (training-free) and click refinement that touches only the edited label."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.interactive.guidance import guidance_spec
from napari_medseg.interactive.refine import refine_with_clicks
from napari_medseg.interactive.seeds import grow_from_seeds, seed_box, seed_labels_to_classes
from napari_medseg.metrics import dice


def _blob_image(shape, spacing, centre, radius, seed=0, noise=0.15):
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in
                          zip(shape, centre, spacing, strict=True)],
                        indexing="ij")
    inside = sum(g * g for g in grids) <= radius**2
    rng = np.random.default_rng(seed)
    image = 100.0 + 80.0 * inside + noise * 80.0 * rng.standard_normal(shape)
    return image.astype(np.float32), inside


def test_grow_from_seeds_2d_blob_from_two_strokes():
    image, truth = _blob_image((64, 64), (1.0, 1.0), (32, 30), 14)
    seeds = np.zeros(image.shape, np.int32)
    seeds[30:34, 24:36] = 2  # a short stroke inside
    seeds[4, 4:60] = 1  # background strokes
    seeds[58:60, 10:50] = 1
    out = grow_from_seeds(image, seeds, roi=(slice(None), slice(None)))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 2}
    assert dice(out == 2, truth) > 0.9
    ws = grow_from_seeds(image, seeds, roi=(slice(None), slice(None)), method="watershed")
    assert dice(ws == 2, truth) > 0.9


def test_grow_from_seeds_3d_anisotropic_blob_in_a_box_from_strokes_on_3_slices():
    spacing = (3.0, 1.0, 1.0)
    image, truth = _blob_image((24, 64, 64), spacing, (12, 30, 34), 15, seed=1)
    seeds = np.zeros(image.shape, np.int32)
    for z in (8, 12, 16):
        seeds[z, 28:33, 30:38] = 2
        seeds[z, 8, 15:50] = 1
        seeds[z, 52, 15:50] = 1
        seeds[z, 15:45, 14] = 1
        seeds[z, 15:45, 54] = 1
    box = seed_box(seeds, spacing, margin_mm=10.0)
    assert box[0] == slice(4, 21) and box[1] == slice(0, 63)  # 10 mm: 4 slices of 3 mm
    out = grow_from_seeds(image, seeds, spacing, margin_mm=10.0)
    assert dice(out == 2, truth) > 0.9
    assert not out[:box[0].start].any() and not out[box[0].stop:].any()


def test_grow_from_seeds_colour_picture_uses_the_colour():
    # red disc on a green background of the SAME luminance-ish brightness
    yy, xx = np.mgrid[:60, :60]
    truth = (yy - 30) ** 2 + (xx - 28) ** 2 <= 15**2
    rgb = np.zeros((60, 60, 3), np.float32)
    rgb[..., 0] = np.where(truth, 200, 40)
    rgb[..., 1] = np.where(truth, 40, 160)
    rgb += np.random.default_rng(2).normal(0, 8, rgb.shape)
    seeds = np.zeros((60, 60), np.int32)
    seeds[29:32, 22:34] = 3
    seeds[3, :] = 1
    seeds[:, 56] = 1
    out = grow_from_seeds(rgb, seeds, roi=(slice(None), slice(None)), channel_axis=-1)
    assert dice(out == 3, truth) > 0.9
    out_ws = grow_from_seeds(rgb, seeds, roi=(slice(None), slice(None)), channel_axis=-1,
                             method="watershed")
    assert dice(out_ws == 3, truth) > 0.9


def test_grow_from_seeds_large_box_is_solved_coarse_and_keeps_strokes():
    image, truth = _blob_image((40, 80, 80), (1.0, 1.0, 1.0), (20, 40, 40), 16, seed=3)
    seeds = np.zeros(image.shape, np.int32)
    seeds[20, 38:43, 36:44] = 2
    seeds[20, 2, :] = 1
    seeds[20, 77, :] = 1
    seeds[[2, 37], 40, 10:70] = 1
    out = grow_from_seeds(image, seeds, roi=tuple(slice(None) for _ in range(3)),
                          max_voxels=30_000)
    assert dice(out == 2, truth) > 0.85
    assert (out[seeds == 2] == 2).all() and (out[seeds == 1] == 0).all()


def test_grow_from_seeds_bad_input():
    image = np.zeros((10, 10), np.float32)
    one_class = np.zeros((10, 10), np.int32)
    one_class[2, 2] = 2
    with pytest.raises(ValueError, match="two classes"):
        grow_from_seeds(image, one_class)
    with pytest.raises(ValueError, match="shape"):
        grow_from_seeds(image, np.zeros((9, 10), np.int32))
    with pytest.raises(ValueError, match="method"):
        grow_from_seeds(image, one_class, method="magic")


def test_seed_labels_to_classes():
    painted = np.array([[0, 5, 6, 7]])
    np.testing.assert_array_equal(seed_labels_to_classes(painted, {5: 0, 6: 3}),
                                  [[0, 1, 3, 0]])


def _labels_with_two_objects():
    image, truth = _blob_image((16, 40, 40), (1.0, 1.0, 1.0), (8, 20, 14), 6, seed=4)
    labels = np.zeros(image.shape, np.uint8)
    labels[truth] = 1
    labels[:, :, 16:] = 0  # the right part of the blob is missed
    labels[4:12, 14:26, 22:30] = 2  # a neighbour that must never change
    return image, labels, truth


def test_refine_fallback_touches_only_the_given_label():
    image, labels, truth = _labels_with_two_objects()
    before = labels.copy()
    clicks = [((8, 20, 18), True), ((8, 20, 24), True), ((8, 5, 5), False)]
    patch = refine_with_clicks(None, None, image, labels, 1, clicks, crop_margin_mm=6.0)
    np.testing.assert_array_equal(labels, before)  # the input is not modified
    assert patch is not None
    out = labels.copy()
    patch.apply(out)
    assert dice(out == 1, truth) > dice(before == 1, truth) + 0.05  # the missed part is added
    assert ((out == 2) == (before == 2)).all()  # label 2 untouched, also under a "yes" click
    changed = out != before
    assert set(np.unique(before[changed])) <= {0, 1} and set(np.unique(out[changed])) <= {0, 1}
    patch.revert(out)
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize("net", ["training-free", "confident background"])
def test_a_click_changes_only_the_clicked_object_of_its_label(net):
    # painted elsewhere with the same label: a click on another object keeps it, even when
    # the method (or a network sure it is background) does not see it as part of its object
    image, truth = _blob_image((16, 40, 40), (1.0, 1.0, 1.0), (8, 20, 14), 6, seed=4)
    labels = np.zeros(image.shape, np.uint8)
    labels[8, 30:34, 30:34] = 1  # a few painted voxels, 12+ voxels from the blob
    labels[8, 18:21, 10:13] = 1  # a scrap inside the blob
    net_card = (None, None) if net == "training-free" else (
        _ConfidentNet(), _guided_model()[1])
    patch = refine_with_clicks(*net_card, image, labels, 1, [((8, 20, 14), True)],
                               crop_margin_mm=20.0)
    out = labels.copy()
    if patch is not None:
        patch.apply(out)
    assert (out[8, 30:34, 30:34] == 1).all()  # the other object is kept
    assert out[8, 20, 14] == 1
    # a "no" click inside the painted square does remove it (it is the clicked object)
    patch = refine_with_clicks(None, None, image, out, 1, [((8, 31, 31), False)],
                               crop_margin_mm=6.0)
    assert patch is not None
    patch.apply(out)
    assert out[8, 31, 31] == 0 and not (out[8, 30:34, 30:34] == 1).all()


def test_a_click_outside_the_image_is_refused_and_changes_nothing():
    image, labels, _truth = _labels_with_two_objects()
    with pytest.raises(ValueError, match=r"click at \(8, -20, -20\) is outside the image"):
        refine_with_clicks(None, None, image, labels, 1, [((8, -20, -20), True)])


def _guided_model(num_classes=3):
    from napari_medseg.models.card import ModelCard
    from napari_medseg.models.factory import build_network, plan_network

    spec = plan_network(3, 1 + 2 * (num_classes - 1), num_classes, [(2, 2, 2), (2, 2, 2)],
                        base_channels=4, max_channels=8)
    torch.manual_seed(0)
    net = build_network(spec).eval()
    card = ModelCard(task="blobs", classes=[{"value": v, "name": f"c{v}", "color": [v, v, v]}
                                            for v in range(num_classes)],
                     dims=3, in_channels=1, patch_size=[16, 16, 16], network=spec,
                     normalisation=[{"scheme": "zscore"}], spacing=[1.0, 1.0, 1.0],
                     train_config={"guidance": guidance_spec(3.0)})
    return net, card


def test_refine_with_a_guided_model_changes_only_that_label_inside_the_crop():
    image, labels, truth = _labels_with_two_objects()
    net, card = _guided_model()
    seen = []

    def spy(module, inputs, output):
        seen.append(inputs[0].shape)

    handle = next(net.modules()).register_forward_hook(spy)
    try:
        patch = refine_with_clicks(net, card, image, labels, 1, [((8, 20, 17), True)],
                                   crop_margin_mm=4.0)
    finally:
        handle.remove()
    assert seen and seen[0][1] == 5  # 1 image channel + 2 per foreground class
    if patch is None:
        return  # an untrained net may leave everything as it is: nothing else to check
    out = labels.copy()
    patch.apply(out)
    assert ((out == 2) == (labels == 2)).all()
    changed = np.argwhere(out != labels)
    for ax, s in enumerate(patch.bbox):
        assert (changed[:, ax] >= s.start).all() and (changed[:, ax] < s.stop).all()
    assert out[8, 20, 17] == 1  # the positive click's voxel is in the label


def test_refine_needs_a_click_and_a_label():
    image, labels, truth = _labels_with_two_objects()
    with pytest.raises(ValueError):
        refine_with_clicks(None, None, image, labels, 1, [])
    with pytest.raises(ValueError):
        refine_with_clicks(None, None, image, labels, 0, [((1, 1, 1), True)])


class _ConfidentNet(torch.nn.Module):
    """Always 'background' with a logit margin of 4 (ignores its guidance channels)."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        out = torch.zeros((x.shape[0], self.num_classes, *x.shape[2:]))
        out[:, 0] = 4.0
        return out


def test_click_prior_gives_a_click_its_effect_where_the_network_is_not_confident():
    from napari_medseg.interactive.refine import DEFAULT_CLICK_PRIOR

    _, card = _guided_model()  # radius 3 mm on a 1 mm grid
    labels = np.zeros((24, 24, 24), np.uint8)
    image = np.random.default_rng(0).normal(size=labels.shape).astype(np.float32)
    click = [((12, 12, 12), True)]
    without = refine_with_clicks(_ConfidentNet(), card, image, labels, 1, click, click_prior=0)
    out = labels.copy()
    without.apply(out)
    assert np.argwhere(out == 1).tolist() == [[12, 12, 12]]  # only the clicked voxel itself
    patch = refine_with_clicks(_ConfidentNet(), card, image, labels, 1, click, click_prior=8.0)
    out = labels.copy()
    patch.apply(out)
    # 8 exp(-d^2 / 18) > 4 within d < 3.53 mm of the click: a ball of that radius
    grid = np.indices(labels.shape) - 12
    ball = (grid ** 2).sum(0) < 3.53 ** 2
    np.testing.assert_array_equal(out == 1, ball)
    # a negative click removes the label around it the same way (label 2 is never touched)
    labels = np.zeros_like(labels)
    labels[4:20, 4:20, 4:20] = 1
    labels[4:20, 4:20, 20:22] = 2

    class _LabelNet(_ConfidentNet):
        def forward(self, x):
            out = super().forward(x)
            return out[:, [1, 0, 2]]  # 'label 1' everywhere with margin 4

    patch = refine_with_clicks(_LabelNet(), card, image, labels, 1, [((12, 12, 12), False)],
                               click_prior=8.0)
    out = labels.copy()
    patch.apply(out)
    assert out[12, 12, 12] == 0 and out[12, 12, 16] == 1 and out[12, 12, 9] == 0
    assert ((out == 2) == (labels == 2)).all()
    assert (out[ball] == 0).all() and (out[~ball & (labels == 1)] == 1).all()
    assert DEFAULT_CLICK_PRIOR > 0


def test_click_prior_radius_sets_how_far_the_prior_reaches():
    _, card = _guided_model()  # guidance radius 3 mm: the default prior reaches 3.53 mm
    labels = np.zeros((24, 24, 24), np.uint8)
    image = np.random.default_rng(0).normal(size=labels.shape).astype(np.float32)
    patch = refine_with_clicks(_ConfidentNet(), card, image, labels, 1, [((12, 12, 12), True)],
                               click_prior=8.0, click_prior_radius_mm=1.0)
    out = labels.copy()
    patch.apply(out)
    # 8 exp(-d^2 / 2) > 4 within d < 1.18 mm: the click and its six face neighbours
    expected = np.zeros_like(out, dtype=bool)
    expected[11:14, 12, 12] = expected[12, 11:14, 12] = expected[12, 12, 11:14] = True
    np.testing.assert_array_equal(out == 1, expected)


def test_simulated_scribbles_are_strokes_inside_objects_and_a_ring_outside():
    from scipy import ndimage

    from napari_medseg.interactive.scribbles import scribble_slices, simulated_scribbles

    labels = np.zeros((30, 40, 40), np.uint8)
    labels[5:25, 10:30, 8:20] = 1
    labels[5:25, 10:30, 20:32] = 2
    assert scribble_slices(labels, 3) == [15, 10, 19]  # the middle first, then the quartiles
    assert len(set(scribble_slices(labels, 50))) == 20  # never more than the objects' slices
    spacing = (2.0, 1.0, 1.0)
    seeds = simulated_scribbles(labels, 3, spacing=spacing, ring_mm=3.0)
    scribbled = np.flatnonzero(seeds.reshape(30, -1).any(axis=1))
    assert list(scribbled) == [10, 15, 19]
    for value in (1, 2):  # object strokes: value + 1, strictly inside the object, thin
        stroke = seeds == value + 1
        assert stroke.any() and np.all(labels[stroke] == value)
        assert stroke.sum() < 0.2 * (labels[scribbled] == value).sum()
    ring = seeds == 1
    assert np.all(labels[ring] == 0)
    distance = ndimage.distance_transform_edt(labels[15] == 0)
    assert np.all((distance[ring[15]] > 3.0) & (distance[ring[15]] <= 4.0))
    # the scribbles grow back into the objects
    image = np.where(labels == 1, 180.0, np.where(labels == 2, 120.0, 60.0)).astype(np.float32)
    image += np.random.default_rng(0).normal(0, 5, image.shape).astype(np.float32)
    grown = grow_from_seeds(image, seeds, spacing)
    for value in (1, 2):
        assert dice(grown == value + 1, labels == value) > 0.9
    flat = simulated_scribbles(labels[15], spacing=(1.0, 1.0))  # 2D: the image itself
    assert set(np.unique(flat)) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="above the background"):
        simulated_scribbles(labels, offset=0)
