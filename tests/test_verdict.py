"""The verdict on a trained model: a model that learnt nothing is never called ready."""

from __future__ import annotations

from types import SimpleNamespace

from napari_medseg.training.verdict import MIN_STEPS, format_duration, training_verdict


def _result(steps, elapsed, best):
    return SimpleNamespace(steps=steps, elapsed_s=elapsed, best_metric=best)


def test_too_few_steps_is_not_usable_and_says_how_long_it_needs():
    v = training_verdict(_result(17, 84.0, 0.004))  # the run from the issue
    assert not v.usable
    assert "only 17 training steps" in v.message and "validation Dice 0.004" in v.message
    # 84 s / 17 steps = 4.9 s per step; MIN_STEPS of them
    assert abs(v.needed_s - MIN_STEPS * 84.0 / 17) < 1e-6
    assert format_duration(v.needed_s) in v.message


def test_no_validation_and_few_steps():
    v = training_verdict(_result(4, 60.0, None))
    assert not v.usable and "no validation Dice" in v.message


def test_many_steps_but_no_learning_is_not_usable():
    v = training_verdict(_result(3000, 300.0, 0.03))
    assert not v.usable and "has not learnt the task" in v.message
    assert abs(v.needed_s - 6000 * 0.1) < 1e-6  # twice the steps done


def test_weak_and_good_models():
    weak = training_verdict(_result(1500, 300.0, 0.35))
    assert weak.usable and weak.weak and "still weak" in weak.message
    good = training_verdict(_result(3000, 300.0, 0.83))
    assert good.usable and not good.weak and good.message == ""


def test_durations():
    assert format_duration(75) == "75 s"
    assert format_duration(400) == "7 min"
    assert format_duration(5400) == "1.5 h"
