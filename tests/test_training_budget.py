"""Time budgets are kept and explained: a budget that preparation uses up says so (never
"about None steps"), and the first validation's cost over large pictures is counted before it
runs (the run ends within its budget, or says it skipped validation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_medseg.dataset import Case, Dataset
from napari_medseg.io import Volume
from napari_medseg.training import TrainConfig, train
from napari_medseg.training.loop import budget_used_by_preparation
from napari_medseg.training.validation import estimate_validation_s, validation_pixels


def _spots(shape: tuple[int, int], seed: int) -> Case:
    """A greyscale picture with bright round spots (label 1)."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape)
    labels = np.zeros(shape, np.uint8)
    for _ in range(max(1, shape[0] * shape[1] // 2000)):
        cy, cx = rng.integers(5, shape[0] - 5), rng.integers(5, shape[1] - 5)
        labels[(y - cy) ** 2 + (x - cx) ** 2 < 16] = 1
    image = rng.normal(0, 1, shape).astype(np.float32) + 2.0 * labels
    return Case(case_id=f"c{seed}", image=Volume(image, (1.0, 1.0), name=f"c{seed}"),
                labels=labels)


def _run(config: TrainConfig, dataset: Dataset, out) -> tuple[list, object]:
    events = list(train(config, dataset, out))
    return events, events[-1].result


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_budget_used_up_by_preparation_says_so(tmp_path):
    data = Dataset([_spots((64, 64), i) for i in range(3)], {0: "background", 1: "spot"},
                   name="Spots")
    config = TrainConfig(dims=2, time_budget_s=0.05, device="cpu", augmentation="none",
                         base_channels=4, max_channels=8, seed=0)
    events, result = _run(config, data, tmp_path / "model")
    assert result.steps == 0 and result.model_dir is None
    assert not (tmp_path / "model" / "model.pt").exists()
    plan_lines = [e.message for e in events if e.message.startswith("2D plan for")]
    assert len(plan_lines) == 1 and "None" not in plan_lines[0]
    assert "the budget is used up by preparation" in plan_lines[0]
    end = events[-1]
    assert end.kind == "finished"
    assert end.message.startswith("No model was saved: the 0 s time budget ran out while "
                                  "preparing the data and the plan (")
    assert "before any training step. Give a budget of at least" in end.message


def test_budget_hint_grows_with_the_preparation_time():
    assert budget_used_by_preparation(30, 32).endswith("at least 2 min.")
    assert "(32 s on this machine)" in budget_used_by_preparation(30, 32)
    assert budget_used_by_preparation(30, 5).endswith("at least 1 min.")
    assert budget_used_by_preparation(60, 300).endswith("at least 11 min.")


def test_validation_cost_is_estimated_from_window_count_and_step_time():
    small = [np.zeros((1, 32, 32), np.float32)]
    large = [np.zeros((1, 1024, 1024), np.float32)]
    assert validation_pixels(small, (32, 32), 2) == 32 * 32  # one window
    assert validation_pixels(large, (32, 32), 2) > 1024 * 1024  # overlapping windows
    slices = [np.zeros((1, 5, 32, 32), np.float32)]  # a volume scored slice by slice
    assert validation_pixels(slices, (32, 32), 2) == 5 * 32 * 32
    cost = estimate_validation_s(validation_pixels(large, (32, 32), 2), (32, 32), 0.01, 4)
    assert cost > 100 * estimate_validation_s(32 * 32, (32, 32), 0.01, 4) > 0
    assert estimate_validation_s(1e6, (32, 32), 0.0, 4) == 0.0  # no step timed yet


def test_first_validation_over_a_large_picture_stays_within_the_budget(tmp_path):
    # small training pictures, one large validation picture, an epoch longer than the budget:
    # the only validation is the last one, and nothing has measured its cost before it runs
    cases = [_spots((64, 64), i) for i in range(4)] + [_spots((1400, 1400), 9)]
    data = Dataset(cases, {0: "background", 1: "spot"}, name="Spots")
    budget = 16.0
    config = TrainConfig(dims=2, patch_size=(32, 32), batch_size=4, base_channels=8,
                         max_channels=32, time_budget_s=budget, val_case_ids=["c9"],
                         device="cpu", augmentation="none", seed=0, max_epochs=1,
                         steps_per_epoch=100_000)
    events, result = _run(config, data, tmp_path / "model")
    assert result.steps > 0 and result.model_dir is not None
    assert result.elapsed_s <= budget * 1.05 + 0.5, (result.elapsed_s, result.history)
    skipped = [e.message for e in events if e.message.startswith("Validation skipped")]
    if result.best_metric is None:  # too dear to validate: said once, the weights kept
        assert len(skipped) == 1 and "the latest weights are saved" in skipped[0]
    else:
        assert not skipped
