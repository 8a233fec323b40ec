"""Train dock and short budgets: the budget box offers no budget that can never train, and a
run whose budget preparation used up says why no model was saved (the core's sentence)."""

from __future__ import annotations

from napari_medseg.events import Event
from napari_medseg.training.config import TrainResult
from napari_medseg.ui.train_progress import outcome


def test_budget_box_starts_at_one_minute(make_napari_viewer, monkeypatch, tmp_path):
    from napari_medseg.ui._settings import set_setting

    set_setting("train/time_budget_min", 0.5)  # saved by an older version
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Train")
    spin = widget.budget_spin
    assert spin.minimum() == 1.0 and spin.value() == 1.0
    spin.setValue(0.5)
    assert spin.value() == 1.0
    assert widget.options.values()["time_budget_s"] == 60.0
    assert "at least 1 min" in spin.toolTip()
    spin.setValue(2.5)
    assert widget.options.values()["time_budget_s"] == 150.0


def test_no_step_ran_shows_the_reason_not_a_bare_no_model():
    message = ("No model was saved: the 30 s time budget ran out while preparing the data "
               "and the plan (32 s on this machine), before any training step. Give a budget "
               "of at least 2 min.")
    result = TrainResult(status="finished", model_dir=None, best_metric=None, best_epoch=None,
                         epochs=0, steps=0, elapsed_s=32.0, stop_reason="time_budget",
                         history=[])
    assert outcome(Event("finished", result=result, message=message), result) == (
        message, "warning")
    ran = TrainResult(status="finished", model_dir=None, best_metric=None, best_epoch=None,
                      epochs=1, steps=5, elapsed_s=32.0, stop_reason="time_budget", history=[])
    assert outcome(Event("finished", result=ran, message="x"), ran)[0] == (
        "Training finished but no model was saved.")
