"""Normalisation (CT / z-score) and resampling between voxel grids."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg import preprocess as P


def test_zscore_per_volume():
    x = np.random.default_rng(0).normal(500, 80, (10, 12, 14)).astype(np.float32)
    y = P.normalise(x, P.NormalisationParams("zscore"))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert abs(float(y.mean())) < 1e-4 and float(y.std()) == pytest.approx(1.0, abs=1e-3)


def test_ct_clip_and_dataset_statistics():
    rng = np.random.default_rng(0)
    images = [rng.normal(40, 20, (8, 8, 8)) for _ in range(3)]
    images[0][0, 0, 0] = 3000  # metal artefact outside the foreground
    masks = [np.ones((8, 8, 8), bool) for _ in images]
    masks[0][0, 0, 0] = False
    params = P.fit_normalisation(images, "CT", masks)
    assert params.scheme == "ct"
    assert params.clip_high < 200 and params.clip_low > -100
    assert params.mean == pytest.approx(40, abs=3)
    out = P.normalise(images[0], params)
    assert out.max() <= (params.clip_high - params.mean) / params.std + 1e-5
    assert P.NormalisationParams.from_dict(params.to_dict()) == params
    assert P.fit_normalisation(images, "MR").scheme == "zscore"


def test_bad_normalisation_parameters():
    with pytest.raises(ValueError, match="Unknown normalisation"):
        P.NormalisationParams("minmax")
    with pytest.raises(ValueError, match="CT normalisation needs"):
        P.NormalisationParams("ct")


def test_resample_round_trip_shapes_and_labels():
    labels = np.zeros((10, 20, 30), np.uint8)
    labels[2:8, 5:15, 10:20] = 2
    labels[4:6, 8:12, 12:16] = 1
    spacing, target = (3.0, 1.0, 0.5), (1.5, 1.0, 1.0)
    assert P.resampled_shape(labels.shape, spacing, target) == (20, 20, 15)
    res = P.prepare_labels(labels, spacing, target)
    assert res.shape == (20, 20, 15) and set(np.unique(res)) == {0, 1, 2}
    back = P.resample_to_shape(res, labels.shape, order=0)
    assert back.shape == labels.shape
    assert np.mean(back == labels) > 0.95
    assert P.needs_resampling(spacing, target) and not P.needs_resampling(spacing, spacing)
    assert not P.needs_resampling(spacing, None)


def test_prepare_image_channels():
    img = np.random.default_rng(1).random((6, 8, 8)).astype(np.float32)
    out = P.prepare_image([img, img * 3], (2.0, 1.0, 1.0), [P.NormalisationParams()] * 2,
                          (1.0, 1.0, 1.0))
    assert out.shape == (2, 12, 8, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)  # z-score removes the scale
    with pytest.raises(ValueError, match="expects 1 input channel"):
        P.prepare_image([img, img], (1, 1, 1), [P.NormalisationParams()])


def test_median_spacing():
    assert P.median_spacing([(1, 1, 3), (1, 2, 5), (1, 1, 4)]) == (1.0, 1.0, 4.0)


def test_local_contrast_lifts_faint_vessels_on_an_uneven_background():
    """CLAHE before the z-score: faint dark lines on the dim side of an unevenly lit picture
    stand out several times more than after the plain z-score, the bright side's no less."""
    y, x = np.indices((128, 128))
    light = 30 + 170 * x / 127  # lit from the right
    image = light * np.where((y % 32) == 16, 0.85, 1.0)  # a vessel every 32 rows, 15 % darker
    image += np.random.default_rng(0).normal(0, 0.5, image.shape)
    vessel = (y % 32) == 16

    def contrast(out, side):
        return float(out[~vessel & side].mean() - out[vessel & side].mean())

    dim, bright = x < 32, x >= 96
    plain = P.normalise(image, P.NormalisationParams("zscore"))
    local = P.normalise(image, P.NormalisationParams("zscore", local_contrast=True))
    assert contrast(local, dim) > 3 * contrast(plain, dim)  # measured 5.6x
    assert contrast(local, bright) >= contrast(plain, bright)
    assert abs(float(local.mean())) < 1e-3 and abs(float(local.std()) - 1) < 1e-3
    # a volume is left to the plain z-score; old model cards read as without it
    vol = np.stack([image] * 3)
    np.testing.assert_allclose(
        P.normalise(vol, P.NormalisationParams("zscore", local_contrast=True)),
        P.normalise(vol, P.NormalisationParams("zscore")))
    assert P.NormalisationParams.from_dict({"scheme": "zscore"}).local_contrast is False
    params = P.NormalisationParams("zscore", region="fov", local_contrast=True)
    assert P.NormalisationParams.from_dict(params.to_dict()) == params


def test_click_crops_are_normalised_as_the_whole_picture():
    """The click tool normalises only a crop; with local contrast it must still match what
    prediction (and training) see on the whole picture."""
    from napari_medseg.interactive.refine import _normalised_crop

    rng = np.random.default_rng(1)
    y, x = np.indices((80, 90))
    disc = (y - 40) ** 2 + (x - 45) ** 2 < 35**2
    channels = [np.where(disc, 120 + 60 * x / 90, 2) + rng.normal(0, 3, disc.shape)
                for _ in range(3)]
    crop = (slice(10, 50), slice(20, 70))
    for local in (False, True):
        params = [P.NormalisationParams("zscore", region="fov", local_contrast=local)] * 3
        whole = P.prepare_image(channels, (1.0, 1.0), params)
        np.testing.assert_allclose(_normalised_crop(channels, params, crop),
                                   whole[(slice(None), *crop)], atol=1e-5)


def test_prepare_image_takes_a_field_of_view_found_once():
    """Prediction finds the mask once and hands it in: same values as finding it inside;
    ``fov=None`` (no mask) takes the statistics over the whole picture."""
    rng = np.random.default_rng(2)
    y, x = np.indices((80, 90))
    disc = (y - 40) ** 2 + (x - 45) ** 2 < 35**2
    channels = [np.where(disc, 120 + 60 * x / 90, 2) + rng.normal(0, 3, disc.shape)
                for _ in range(3)]
    params = [P.NormalisationParams("zscore", region="fov")] * 3
    fov = P.field_of_view_mask(channels)
    assert fov is not None and 0.8 < fov[disc].mean() and not fov[~disc].any()
    found = P.prepare_image(channels, (1.0, 1.0), params)
    np.testing.assert_array_equal(P.prepare_image(channels, (1.0, 1.0), params, fov=fov), found)
    whole = P.prepare_image(channels, (1.0, 1.0), params, fov=None)
    assert abs(float(whole.mean())) < 1e-4 and abs(float(found.mean())) > 0.1
