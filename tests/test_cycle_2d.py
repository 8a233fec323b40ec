"""The simulated-annotator loop on 2D pictures: error units, choice of corrections, one round."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.cycle import (
    choose_corrections,
    correction_errors,
    default_retrain_config,
    retrain,
    run_to_end,
    simulated_annotator_round,
)
from napari_medseg.dataset.project import Project, ProjectError
from napari_medseg.io.volume import Volume
from napari_medseg.phantom import ultrasound_phantom


def test_correction_errors_per_slice_or_per_picture() -> None:
    gt = np.zeros((3, 4, 4), np.uint8)
    pred = gt.copy()
    pred[1, :2, :] = 1
    pred[2, 0, 0] = 1
    assert correction_errors(pred, gt).tolist() == [0.0, 8.0, 1.0]
    assert correction_errors(pred[1], gt[1]).tolist() == [8.0]
    with pytest.raises(ValueError, match="differs"):
        correction_errors(pred[1], gt)


def test_choose_corrections_mixes_pictures_and_slices() -> None:
    errors = {"a": np.array([5.0]), "b": np.array([9.0]), "c": np.array([0.0]),
              "v": np.array([0.0, 7.0, 6.0, 1.0])}
    chosen = choose_corrections(errors, 3, min_gap=2, pictures=["a", "b", "c"])
    assert chosen == {"b": None, "v": [1], "a": None}
    assert choose_corrections(errors, 10, min_gap=2, pictures=["a", "b", "c"]) == {
        "b": None, "v": [1, 3], "a": None}  # slice 2 is too close to 1; c has no error
    assert choose_corrections({"v": np.array([0.0, 7.0, 6.0])}, 2, min_gap=1) == {"v": [1, 2]}


def _picture(seed: int) -> tuple[str, Volume, np.ndarray]:
    image, labels = ultrasound_phantom((48, 48), 1, seed)
    return f"US_{seed:03d}", Volume(image.astype(np.float32), (0.2, 0.2), modality="US",
                                    name=f"US_{seed:03d}"), labels


def test_one_round_on_2d_pictures(tmp_path) -> None:
    """Seed 2 pictures, train, correct the worst 2 of 3 new ones, retrain: cost 4 slices."""
    project = Project.create(tmp_path / "proj", "US", {1: "lesion"}, modality="US")
    with pytest.raises(ProjectError, match="first model"):
        simulated_annotator_round(project, [_picture(9)], 1)
    for seed in (0, 1):
        cid, image, labels = _picture(seed)
        project.accept_case(image, labels, case_id=cid)

    def train_once(note: str) -> str:
        cfg = default_retrain_config(project, 60.0, dims=2, max_epochs=1, steps_per_epoch=3,
                                     batch_size=4, base_channels=8, device="cpu")
        result = run_to_end(retrain(project, config=cfg, note=note))
        assert result.version is not None
        return result.version

    assert train_once("seed") == "v001"
    new = [_picture(seed) for seed in (2, 3, 4)]
    chosen = simulated_annotator_round(project, new, 2, device="cpu")
    assert len(chosen) == 2 and all(v is None for v in chosen.values())
    assert set(chosen) <= {cid for cid, _, _ in new}
    assert project.annotation_cost() == 4
    for cid in chosen:  # accepted whole, with the ground truth
        stored = project.training_cases([cid])[0].training_labels()
        expected = next(lab for c, _, lab in new if c == cid)
        assert np.array_equal(stored, expected)
    assert train_once("round 1") == "v002"
    assert sorted(project.accepted_ids()) == sorted(["US_000", "US_001", *chosen])


def test_a_click_round_corrects_predictions_with_clicks_and_accepts_them(tmp_path) -> None:
    """Click mode of the simulated annotator: every new picture is predicted, corrected with at
    most 2 clicks per structure (grow-from-seeds here: the model has no guidance channels) and
    accepted whole; what is accepted is closer to the ground truth than the prediction."""
    from napari_medseg.cycle import simulated_click_round
    from napari_medseg.inference import load_model, predict_volume
    from napari_medseg.metrics import dice

    project = Project.create(tmp_path / "proj", "US", {1: "lesion"}, modality="US")
    with pytest.raises(ProjectError, match="first model"):
        simulated_click_round(project, [_picture(9)], 2)
    cid, image, labels = _picture(0)
    project.accept_case(image, labels, case_id=cid)
    cfg = default_retrain_config(project, 60.0, dims=2, max_epochs=1, steps_per_epoch=2,
                                 batch_size=4, base_channels=8, device="cpu")
    assert run_to_end(retrain(project, config=cfg)).version == "v001"
    new = [_picture(seed) for seed in (2, 3)]
    model = load_model(project.model_dir())
    before = {c: dice(predict_volume(model, img, device="cpu", return_probabilities=False,
                                     keep_largest=True).labels == 1, lab == 1)
              for c, img, lab in new}
    given = simulated_click_round(project, new, 2, device="cpu")
    assert set(given) == {c for c, _, _ in new} and all(1 <= n <= 2 for n in given.values())
    for c, _, lab in new:
        stored = project.training_cases([c])[0].training_labels()
        assert stored.shape == lab.shape and set(np.unique(stored)) <= {0, 1}
        after = dice(stored == 1, lab == 1)
        assert after > before[c] + 0.1, (before[c], after)  # one barely trained model
    assert project.annotation_cost() == 1 + 2  # whole pictures, one slice each
