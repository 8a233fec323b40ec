"""CT window presets and robust auto-contrast."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.io import (
    CT_WINDOW_PRESETS,
    Volume,
    auto_contrast_limits,
    default_contrast_limits,
    preset_contrast_limits,
    window_to_contrast_limits,
)
from napari_medseg.io.windowing import contrast_limits_to_window


def test_presets_are_the_clinical_windows() -> None:
    assert CT_WINDOW_PRESETS == {
        "soft tissue": (40, 400),
        "lung": (-600, 1500),
        "bone": (400, 1800),
        "brain": (40, 80),
    }


@pytest.mark.parametrize(
    ("name", "limits"),
    [
        ("soft tissue", (-160.0, 240.0)),
        ("lung", (-1350.0, 150.0)),
        ("bone", (-500.0, 1300.0)),
        ("Brain", (0.0, 80.0)),
    ],
)
def test_preset_contrast_limits(name: str, limits: tuple[float, float]) -> None:
    assert preset_contrast_limits(name) == limits
    level, width = CT_WINDOW_PRESETS[name.lower()]
    assert contrast_limits_to_window(*limits) == (level, width)


@pytest.mark.parametrize("bad", [(40, 0), (40, -10), (np.nan, 400), (40, np.inf)])
def test_window_rejects_bad_values(bad) -> None:
    with pytest.raises(ValueError):
        window_to_contrast_limits(*bad)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="soft tissue, lung, bone, brain"):
        preset_contrast_limits("liver")


def test_auto_contrast_uses_percentiles_and_ignores_outliers() -> None:
    a = np.arange(1001, dtype=np.float32)
    lo, hi = auto_contrast_limits(a)
    assert lo == pytest.approx(5.0) and hi == pytest.approx(995.0)
    a[0] = -1e9  # one hot/cold pixel does not ruin the display
    lo, hi = auto_contrast_limits(a, percentiles=(1, 99))
    assert lo > 0 and hi == pytest.approx(990.0)


def test_auto_contrast_is_nan_safe() -> None:
    a = np.linspace(0, 100, 1000)
    a[::3] = np.nan
    a[1] = np.inf
    lo, hi = auto_contrast_limits(a)
    assert np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi <= 100


@pytest.mark.parametrize(
    "array",
    [np.full((4, 4), 7.0), np.full((3,), np.nan), np.zeros((0,)), np.ones((2, 2), dtype=bool)],
)
def test_auto_contrast_degenerate_images(array) -> None:
    lo, hi = auto_contrast_limits(array)
    assert np.isfinite(lo) and np.isfinite(hi) and hi > lo


def test_auto_contrast_sparse_bright_spots_fall_back_to_range() -> None:
    a = np.zeros(10000, np.uint8)
    a[:3] = 255  # percentiles both 0: use min/max instead of an empty window
    assert auto_contrast_limits(a) == (0.0, 255.0)


def test_large_arrays_are_subsampled_but_stay_close() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(100, 10, size=3_000_000).astype(np.float32)
    lo, hi = auto_contrast_limits(a)
    assert lo == pytest.approx(100 - 2.576 * 10, abs=1.0)
    assert hi == pytest.approx(100 + 2.576 * 10, abs=1.0)


def test_default_contrast_limits_by_modality() -> None:
    ct = Volume(np.full((2, 3, 4), -1000, np.int16), modality="CT")
    assert default_contrast_limits(ct) == (-160.0, 240.0)
    mr = Volume(np.arange(24, dtype=np.float32).reshape(2, 3, 4), modality="MR")
    lo, hi = default_contrast_limits(mr)
    assert 0 <= lo < 1 and 22 < hi <= 23


def test_a_window_stated_by_the_file_is_the_default():
    from napari_medseg.io import Volume
    from napari_medseg.io.windowing import default_contrast_limits

    xray = Volume(np.arange(100, dtype=np.uint16).reshape(10, 10), modality="unknown",
                  metadata={"window_center": 2048.0, "window_width": 1000.0})
    assert default_contrast_limits(xray) == (1548.0, 2548.0)
    plain = Volume(np.arange(100, dtype=np.uint16).reshape(10, 10))
    assert default_contrast_limits(plain) != (1548.0, 2548.0)
