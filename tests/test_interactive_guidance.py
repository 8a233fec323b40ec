"""Click guidance channels: maps in mm (anisotropic voxels), training-time click simulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.interactive.guidance import (
    add_guidance_channels,
    click_maps,
    guidance_channels,
    guidance_of,
    guidance_spec,
    simulate_training_clicks,
)


def test_gaussian_maps_are_in_mm_on_anisotropic_spacing():
    spacing = (3.0, 0.5, 1.0)
    r = 2.0
    pos, neg = click_maps((11, 41, 21), [((5, 20, 10), True), ((1, 2, 3), False)], spacing, r)
    assert pos.dtype == np.float32 and pos.shape == (11, 41, 21)
    assert pos[5, 20, 10] == pytest.approx(1.0)
    # one voxel along z is 3 mm, along y 0.5 mm, along x 1 mm
    assert pos[6, 20, 10] == pytest.approx(np.exp(-0.5 * (3.0 / r) ** 2), rel=1e-5)
    assert pos[5, 21, 10] == pytest.approx(np.exp(-0.5 * (0.5 / r) ** 2), rel=1e-5)
    assert pos[5, 20, 12] == pytest.approx(np.exp(-0.5 * (2.0 / r) ** 2), rel=1e-5)
    d = np.sqrt(3.0**2 + (4 * 0.5) ** 2 + 1.0**2)
    assert pos[6, 24, 11] == pytest.approx(np.exp(-0.5 * (d / r) ** 2), rel=1e-5)
    assert pos[5, 20, 20] == 0.0  # 10 mm away: beyond 3 sigma
    assert neg[1, 2, 3] == pytest.approx(1.0) and pos[1, 2, 3] == 0.0
    assert neg[5, 20, 10] == 0.0


def test_disc_maps_and_the_max_of_overlapping_clicks():
    pos, _ = click_maps((1, 20), [((0, 5), True), ((0, 7), True)], (1.0, 2.0), 3.0, "disc")
    # 3 mm disc: columns within 1 voxel (2 mm) of a click
    np.testing.assert_array_equal(np.nonzero(pos[0])[0], [4, 5, 6, 7, 8])
    assert pos.max() == 1.0
    g, _ = click_maps((20,), [((5,), True), ((7,), True)], (1.0,), 3.0)
    assert g[6] == pytest.approx(np.exp(-0.5 / 9.0), rel=1e-5)  # max, not sum


def test_bad_click_maps_raise():
    with pytest.raises(ValueError):
        click_maps((5, 5), [((1, 2, 3), True)])
    with pytest.raises(ValueError):
        click_maps((5, 5), [], radius_mm=0)


def test_training_clicks_inside_the_structure_and_negatives_near_it():
    lab = np.zeros((20, 40, 40), np.uint8)
    lab[5:15, 10:25, 10:25] = 1
    lab[5:15, 25:30, 10:25] = 2
    lab[0, 0, 0] = 255
    rng = np.random.default_rng(0)
    for _ in range(20):
        clicks = simulate_training_clicks(lab, 1, rng, max_clicks=4, spacing=(2.0, 1.0, 1.0))
        pos = [c for c, p in clicks if p]
        neg = [c for c, p in clicks if not p]
        assert 1 <= len(pos) <= 4 and len(neg) <= 4
        assert all(lab[c] == 1 for c in pos)
        assert all(lab[c] in (0, 2) for c in neg)
    assert simulate_training_clicks(lab, 3, rng) == []


def test_training_clicks_from_a_prediction_go_to_its_errors():
    lab = np.zeros((30, 30), np.uint8)
    lab[5:25, 5:25] = 1
    pred = np.zeros_like(lab)
    pred[5:25, 5:15] = 1  # right half missed
    clicks = simulate_training_clicks(lab, 1, np.random.default_rng(1), 3, prediction=pred)
    assert clicks and all(p and lab[c] == 1 and pred[c] == 0 for c, p in clicks)
    # each click counts as fixing the error near it: the next goes at least 5 mm away
    many = simulate_training_clicks(lab, 1, np.random.default_rng(0), 8, prediction=pred)
    assert len(many) >= 2
    for i, (a, _) in enumerate(many):
        for b, _ in many[:i]:
            assert np.hypot(a[0] - b[0], a[1] - b[1]) > 5


def test_add_guidance_channels_shapes_and_no_click_share():
    torch.manual_seed(0)
    images = torch.randn(40, 1, 8, 16, 16)
    labels = torch.zeros(40, 1, 8, 16, 16, dtype=torch.long)
    labels[:, :, 2:6, 4:12, 4:8] = 1
    labels[:, :, 2:6, 4:12, 8:12] = 2
    out = add_guidance_channels(images, labels, np.random.default_rng(0), num_classes=3,
                                p_no_click=0.3, max_clicks=3)
    assert out.shape == (40, 5, 8, 16, 16) and out.dtype == images.dtype
    torch.testing.assert_close(out[:, :1], images)
    guided = out[:, 1:].flatten(1).amax(1) > 0
    assert 3 <= int((~guided).sum()) <= 22  # about 30 % of 40 without any click
    # every guided sample has a positive click of at least one class, at a voxel of that
    # class; some samples correct one structure only, some both
    n_clicked = []
    for b in np.nonzero(guided.numpy())[0]:
        clicked = 0
        for k in (1, 2):
            pos = out[b, 1 + 2 * (k - 1)]
            if pos.max() == 0:
                assert out[b, 2 + 2 * (k - 1)].max() == 0  # no negative click either
                continue
            clicked += 1
            assert pos.max() == pytest.approx(1.0)
            peak = np.unravel_index(int(pos.argmax()), pos.shape)
            assert labels[b, 0][peak] == k
        n_clicked.append(clicked)
    assert min(n_clicked) == 1 and max(n_clicked) == 2
    none = add_guidance_channels(images[:2], labels[:2, 0], np.random.default_rng(0), 3,
                                 p_no_click=1.0)
    assert none[:, 1:].abs().max() == 0


def test_guidance_entry_of_a_card():
    class Card:
        num_classes = 3
        train_config: dict = {}
        guidance = None

    card = Card()
    assert guidance_of(card) is None and guidance_channels(card) == 0
    card.train_config = {"guidance": guidance_spec(4.0)}
    assert guidance_of(card)["radius_mm"] == 4.0 and guidance_channels(card) == 4
    card.guidance = {"type": "clicks", "channels_per_class": 2, "radius_mm": 2.0}
    assert guidance_of(card)["radius_mm"] == 2.0


def test_zero_guidance_feeds_zero_click_channels():
    from napari_medseg.interactive.guidance import ZeroGuidance

    seen = []

    class Net(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x[:, :1]

    x = torch.randn(2, 1, 4, 4)
    ZeroGuidance(Net(), 4)(x)
    assert seen[0].shape == (2, 5, 4, 4)
    torch.testing.assert_close(seen[0][:, :1], x)
    assert seen[0][:, 1:].abs().max() == 0


def test_training_clicks_in_the_networks_own_errors_and_a_second_round():
    """With ``predict`` the clicks go to the errors of the network's own output, and a second
    round runs the network again with the first clicks' maps."""
    lab = torch.zeros(6, 1, 24, 24, dtype=torch.long)
    lab[:, :, 4:20, 4:20] = 1
    images = torch.randn(6, 1, 24, 24)
    calls = []

    def predict(x):
        calls.append(x.clone())
        pred = torch.zeros(x.shape[0], 24, 24, dtype=torch.long)
        pred[:, 4:20, 4:12] = 1  # misses the right half of the square
        pred[:, 0:3, 0:3] = 1  # and a false positive in the corner
        return pred

    out = add_guidance_channels(images, lab, np.random.default_rng(3), 2, p_no_click=0.0,
                                max_clicks=4, predict=predict, p_own_errors=1.0,
                                p_second_round=1.0)
    assert len(calls) == 2
    first, second = calls
    assert first.shape == (6, 3, 24, 24) and first[:, 1:].abs().max() == 0  # no click yet
    assert second[:, 1:].amax() > 0  # the second round sees the first clicks
    for b in range(6):
        pos = out[b, 1].numpy()
        peak = np.unravel_index(int(pos.argmax()), pos.shape)
        assert lab[b, 0][peak] == 1 and 12 <= peak[1] < 20  # in the missed half
    # the false positive (9 pixels) is the second error region: some sample got a "no" click
    assert out[:, 2].amax() > 0
    neg = out[:, 2].amax(0).numpy()
    assert neg[1, 1] == pytest.approx(neg.max())


def test_previous_mask_channel_holds_the_mask_the_clicks_correct():
    from napari_medseg.interactive.guidance import channels_per_class, class_click_maps

    spec = guidance_spec(3.0, previous_mask=True)
    assert spec["channels_per_class"] == 3 and channels_per_class(spec) == 3
    assert channels_per_class(guidance_spec(3.0, previous_mask=False)) == 2

    class Card:
        num_classes = 3
        guidance = spec

    assert guidance_channels(Card()) == 6
    prev = np.zeros((10, 10), bool)
    prev[2:5, 2:5] = True
    maps = class_click_maps((10, 10), {2: [((7, 7), True)]}, 3, previous={2: prev},
                            per_class=3)
    assert maps.shape == (6, 10, 10)
    np.testing.assert_array_equal(maps[5], prev)  # class 2's third channel
    assert maps[3].argmax() == 77 and maps[:3].max() == 0 and maps[4].max() == 0

    # in training, the third channel is the network's own prediction that the clicks correct
    lab = torch.zeros(4, 1, 24, 24, dtype=torch.long)
    lab[:, :, 4:20, 4:20] = 1

    def predict(x):
        pred = torch.zeros(x.shape[0], 24, 24, dtype=torch.long)
        pred[:, 4:20, 4:12] = 1
        return pred

    out = add_guidance_channels(torch.zeros(4, 1, 24, 24), lab, np.random.default_rng(0), 2,
                                p_no_click=0.0, predict=predict, p_own_errors=1.0,
                                p_second_round=0.0, per_class=3)
    assert out.shape == (4, 4, 24, 24)
    np.testing.assert_array_equal(out[:, 3].numpy(), predict(out)[:, None].numpy()[:, 0] == 1)
