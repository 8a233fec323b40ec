"""Training never loses or mixes models and never finishes silently wrong (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.dataset import Case
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io import Volume
from napari_medseg.models.card import ModelFolderBusyError, model_folder_lock, read_card
from napari_medseg.training import TrainConfig, train


def _blob(case_id, seed, shape=(16, 16, 16)):
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    c = rng.integers(5, 11, 3)
    labels = (((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) < 20).astype(np.uint8)
    image = labels + rng.normal(0, 0.3, shape)
    return Case(case_id, Volume(image.astype(np.float32), modality="MR"), labels)


def _config(**kw):
    base = dict(patch_size=(16, 16, 16), batch_size=2, steps_per_epoch=3, max_epochs=2,
                base_channels=4, max_channels=8, device="cpu", seed=0,
                label_names={0: "background", 1: "blob"}, task_name="Blob")
    base.update(kw)
    return TrainConfig(**base)


def _drain(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_a_second_training_into_the_same_folder_is_refused(tmp_path):
    with model_folder_lock(tmp_path / "m"):  # another training holds the folder
        gen = train(_config(), [_blob(f"b{i}", i) for i in range(3)], tmp_path / "m")
        with pytest.raises(ModelFolderBusyError):
            _drain(gen)
    events, result = _drain(train(_config(), [_blob(f"b{i}", i) for i in range(3)],
                                  tmp_path / "m"))
    assert result.status == "finished"


def test_unannotated_validation_case_does_not_count(tmp_path):
    cases = [_blob(f"b{i}", i) for i in range(3)]
    empty = cases[2]
    cases[2] = Case(empty.case_id, empty.image, np.full(empty.labels.shape, IGNORE_LABEL,
                                                         np.uint8))
    events, result = _drain(train(_config(val_case_ids=["b2"]), cases, tmp_path / "m"))
    assert any("no annotated voxels" in (e.message or "") for e in events)
    card = read_card(tmp_path / "m")
    assert "b2" not in card.validation_cases
    # no validation Dice of 1.0 from an empty case
    assert all(h.get("dice_mean", 0.0) < 1.0 for h in result.history)


def test_a_loss_that_is_never_finite_stops_with_an_error(tmp_path, monkeypatch):
    import importlib

    loop = importlib.import_module("napari_medseg.training.loop")
    real = loop.SegmentationLoss

    class NaNLoss(real):
        def forward(self, logits, target):
            return super().forward(logits, target) * float("nan")

    monkeypatch.setattr(loop, "SegmentationLoss", NaNLoss)
    cases = [_blob(f"b{i}", i) for i in range(3)]
    gen = train(_config(max_epochs=50, steps_per_epoch=10), cases, tmp_path / "m")
    with pytest.raises(ValueError, match="diverged"):
        _drain(gen)
    assert not (tmp_path / "m" / "model.pt").exists()  # no NaN model saved as "finished"


@pytest.mark.parametrize("kw", [dict(base_channels=0), dict(base_channels=1),
                                dict(patch_size=(4096, 4096, 4096)), dict(patch_size=(2, 2))])
def test_impossible_options_are_refused(kw):
    with pytest.raises(ValueError):
        _config(**kw)


def test_only_background_or_mixed_2d_3d_cases_are_refused_in_one_line(tmp_path):
    from napari_medseg.dataset import DatasetError

    cases = [_blob(f"b{i}", i) for i in range(3)]
    background = [Case(c.case_id, c.image, np.zeros_like(c.labels)) for c in cases]
    with pytest.raises(DatasetError, match=r"Every annotated voxel of the 3 case\(s\) is "
                                           "background"):
        _drain(train(_config(), background, tmp_path / "m"))
    flat = Case("flat", Volume(np.zeros((16, 16), np.float32)), np.ones((16, 16), np.uint8))
    with pytest.raises(DatasetError, match="Case flat is 2D .* but case b0 is 3D"):
        _drain(train(_config(), [*cases, flat], tmp_path / "m2"))
    assert not (tmp_path / "m").exists() and not (tmp_path / "m2").exists()
