"""The whole correct-and-retrain cycle through the dock users open from *Plugins > napari-medseg >
MedSeg (all steps)*: load -> new labels -> classes -> paint -> train -> infer -> edit -> evaluate
-> accept -> retrain, checking every drop-down's choice after every step.

napari hands the dock a viewer proxy (as for every user); files are opened through the Load tab
and ``viewer.open(..., plugin="napari-medseg")``. Training uses a tiny network so the test runs
in a minute or two on 2 CPU cores; what is checked is the wiring and the choices, not accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from ui_helpers import PLUGIN, error_messages

from napari_medseg.ui._models import set_models_folder

TINY = dict(base_channels=4, max_channels=16, steps_per_epoch=3, batch_size=1,
            patch_size=(16, 32, 16), augmentation="none", val_fraction=0.5, max_epochs=1,
            seed=0, device="cpu")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSEG_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the training child
    set_models_folder(tmp_path / "models")



def _click(qtbot, btn):
    assert btn.isEnabled(), f"'{btn.text()}' is disabled"
    qtbot.mouseClick(btn, Qt.LeftButton)


def _name(combo) -> str | None:
    layer = combo.layer()
    return None if layer is None else layer.name


@pytest.mark.slow
def test_whole_cycle_through_the_plugins_menu_dock(make_napari_viewer, qtbot, hippo_cases,
                                                    tmp_path):
    (img1, lab1), (img2, lab2) = hippo_cases(2)
    viewer = make_napari_viewer()
    _dock, main = viewer.window.add_plugin_dock_widget(PLUGIN, "MedSeg (all steps)")
    load, annotate, train = main.page("Load"), main.page("Annotate"), main.page("Train")
    infer, edit, evaluate = main.page("Infer"), main.page("Edit"), main.page("Evaluate")
    project = main.page("Project")
    qtbot.waitUntil(lambda: "detecting" not in train.device_label.text(), timeout=60000)

    def choices() -> dict[str, str | None]:
        return {
            "load.image": _name(load.image_combo),
            "annotate.image": _name(annotate.image_combo),
            "annotate.labels": _name(annotate.labels_combo),
            "infer.image": _name(infer.image_combo),
            "edit.labels": _name(edit.labels_combo),
            "evaluate.pred": _name(evaluate.pred_combo),
            "evaluate.gt": _name(evaluate.gt_combo),
            "project.image": _name(project.image_combo),
            "project.labels": _name(project.labels_combo),
        }

    # 1. load (Load tab)
    load.labels_check.setChecked(False)
    load.open_path(img1)
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=30000)
    qtbot.wait(50)
    image = viewer.layers[0]
    assert choices() == {"load.image": image.name, "annotate.image": image.name,
                         "annotate.labels": None, "infer.image": image.name,
                         "edit.labels": None, "evaluate.pred": None, "evaluate.gt": None,
                         "project.image": image.name, "project.labels": None}
    assert image.metadata["medseg"]["modality"] == "MR"  # from the dataset's dataset.json

    # 2. new labels, classes, paint (Annotate tab)
    _click(qtbot, annotate.new_button)
    labels = viewer.layers[-1]
    annotate.set_class_name(1, "Anterior")
    annotate._on_add_class()
    annotate.set_class_name(2, "Posterior")
    assert annotate.class_table.rowCount() == 2
    truth = np.asarray(viewer.open(str(lab1), plugin=PLUGIN)[0].data).copy()
    viewer.layers.remove(viewer.layers[-1])  # used only as the annotator's hand
    viewer.layers.selection.active = labels
    labels.selected_label = 1
    labels.paint((10, 20, 15), 1)  # a real brush dab
    assert labels.data[10, 20, 15] == 1
    labels.data = truth.astype(labels.data.dtype)  # ... and the rest of the strokes
    c = choices()
    assert c["annotate.labels"] == labels.name and c["edit.labels"] == labels.name
    assert c["project.labels"] == labels.name and c["infer.image"] == image.name

    # 3. train a few steps (Train tab): the annotation pair is offered and trained on
    assert train.pair_list.count() == 1 and labels.name in train.pair_list.item(0).text()
    # the pair is ticked once the strokes pause (it was listed as empty before them)
    qtbot.waitUntil(train.start_button.isEnabled, timeout=3000)
    train.config_overrides = dict(TINY)
    train.name_edit.setText("walkthrough")
    _click(qtbot, train.start_button)
    qtbot.waitUntil(lambda: not train.runner.running, timeout=240000)
    qtbot.wait(100)
    assert train.last_event.kind == "finished", train.last_event.message
    assert "not usable yet" in train.status_label.text()  # 3 steps teach nothing: said so
    assert np.array_equal(np.asarray(labels.data), truth)  # annotations untouched
    assert choices()["annotate.labels"] == labels.name

    # 4. infer (Infer tab): the new model is offered; the result becomes the target
    infer.refresh_models()
    index = next(i for i in range(infer.model_combo.count())
                 if str(infer.model_combo.itemData(i)).endswith("walkthrough"))
    infer.model_combo.setCurrentIndex(index)
    _click(qtbot, infer.run_button)
    qtbot.waitUntil(lambda: not infer.runner.running, timeout=120000)
    qtbot.wait(100)
    assert infer.last_event.kind == "finished", infer.last_event.message
    prediction = infer.last_layers[0]
    c = choices()
    assert c["infer.image"] == image.name
    assert c["edit.labels"] == prediction.name  # Grow edits the prediction, not the truth
    assert c["evaluate.pred"] == prediction.name and c["evaluate.gt"] == labels.name
    assert c["project.image"] == image.name and c["project.labels"] == prediction.name

    # 5. edit (Edit tab): the "correction" - here the annotator pastes the truth and grows it
    prediction.data = truth.astype(prediction.data.dtype)
    edit.set_label(1)
    edit.radius_spin.setValue(1.0)
    edit.volume_radio.setChecked(True)
    before = np.asarray(prediction.data).copy()
    edit.run_operation("grow_label")
    qtbot.waitUntil(lambda: edit.worker is None or not edit.worker.is_running, timeout=30000)
    qtbot.wait(100)
    assert (np.asarray(prediction.data) == 1).sum() > (before == 1).sum()
    assert np.array_equal(np.asarray(labels.data), truth)  # ground truth untouched
    prediction.undo()
    assert np.array_equal(np.asarray(prediction.data), before)

    # 6. evaluate (Evaluate tab) against the annotation
    assert choices()["evaluate.pred"] == prediction.name
    _click(qtbot, evaluate.compute_button)
    qtbot.waitUntil(lambda: evaluate.table.columnCount() == 2, timeout=60000)
    assert float(evaluate.metric("Anterior", "dice")) == pytest.approx(1.0)
    _click(qtbot, evaluate.diff_button)
    assert choices()["evaluate.pred"] == prediction.name  # not the error map

    # 7. accept into a project and retrain (Project tab)
    p = project.create_project(tmp_path / "proj", "Hippocampus")
    assert p.modality == "MR"
    project.train_overrides = {**TINY, "dims": 3, "max_epochs": 1}
    viewer.layers.selection.active = prediction
    c = choices()
    assert c["project.image"] == image.name and c["project.labels"] == prediction.name
    _click(qtbot, project.accept_button)
    assert p.accepted_ids() and not error_messages(), error_messages()
    _click(qtbot, project.retrain_button)
    qtbot.waitUntil(lambda: project.retrain_worker is None, timeout=240000)
    qtbot.wait(100)
    assert p.__class__.open(p.root).current_model == "v001", error_messages()[-3:]

    # 8. the next case: every dock moves to it
    viewer.open(str(img2), plugin=PLUGIN)
    image2 = viewer.layers[-1]
    c = choices()
    assert c["infer.image"] == image2.name and c["annotate.image"] == image2.name
    assert c["project.image"] == image2.name and c["load.image"] == image2.name
    assert c["annotate.labels"] is None and c["project.labels"] is None  # none on case 2 yet
    assert not error_messages(), error_messages()
