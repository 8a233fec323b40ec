"""The docks as users meet them: opened from *Plugins > napari-medseg*, files opened with
``viewer.open(..., plugin="napari-medseg")``. napari then hands every widget a
``PublicOnlyProxy`` of the viewer, and each layer reached through it is a new proxy object:
drop-downs must find the layer the plugin itself just added, and follow what the user looks at.
"""

from __future__ import annotations

import json
import shutil

import napari
import numpy as np
import pytest
from ui_helpers import PLUGIN, error_messages


def _open(viewer, path):
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert layers, f"nothing opened from {path}"
    return layers[0]


def test_dock_gets_a_viewer_proxy(make_napari_viewer, plugin_dock):
    from napari.utils._proxies import PublicOnlyProxy

    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "Annotate")
    assert isinstance(widget.viewer, PublicOnlyProxy)  # what makes this file's tests matter


def test_new_labels_from_the_plugins_menu_dock(make_napari_viewer, plugin_dock, hippo_cases):
    """The issue's first report: New labels left the drop-down blank and the class table empty."""
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "Annotate")
    image = _open(viewer, hippo_cases(1)[0][0])
    assert widget.image_combo.layer() is image
    widget.new_button.click()
    labels = viewer.layers[-1]
    assert isinstance(labels, napari.layers.Labels)
    assert widget.labels_combo.currentText() == labels.name
    assert widget.labels_combo.layer() is labels
    assert widget.class_table.rowCount() == 1
    add = [b for b in widget.findChildren(type(widget.new_button)) if b.text() == "Add class"][0]
    add.click()
    assert widget.class_table.rowCount() == 2 and labels.selected_label == 2
    labels.data[5, 10:14, 10:14] = 1
    widget.mark_all_button.click()
    assert labels.metadata["medseg"]["annotated_slices"] == [5]
    assert not error_messages(), error_messages()


def test_class_row_follows_napari_label_spinner(make_napari_viewer, plugin_dock, hippo_cases):
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "Annotate")
    _open(viewer, hippo_cases(1)[0][0])
    widget.new_button.click()
    labels = viewer.layers[-1]
    widget.set_class_name(1, "Anterior")
    widget._on_add_class()
    labels.selected_label = 1  # napari's own spinner
    assert widget.class_table.selectionModel().selectedRows()[0].row() == 0
    labels.selected_label = 2
    assert widget.class_table.selectionModel().selectedRows()[0].row() == 1


def test_load_tab_selects_what_it_opened_and_opens_label_maps_as_labels(
        make_napari_viewer, plugin_dock, qtbot, samples_dir, hippo_cases):
    viewer = make_napari_viewer()
    widget = plugin_dock(viewer, "Load")
    ct = samples_dir / "ct_abdomen_totalsegmentator" / "example_ct_sm.nii.gz"
    widget.open_path(ct)
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=30000)
    qtbot.wait(50)
    assert widget.image_combo.currentText() == viewer.layers[0].name
    assert widget.preset_combo.isEnabled()  # a CT: presets on
    # a label map opened from the Load tab is a Labels layer, as with File > Open
    widget.labels_check.setChecked(False)
    widget.open_path(hippo_cases(1)[0][1])
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=30000)
    qtbot.wait(50)
    assert isinstance(viewer.layers[-1], napari.layers.Labels)
    assert "labels" in widget.status.text()


def test_picture_files_point_to_what_opens_them(tmp_path):
    from napari_medseg.io import MedsegIOError, read_volume

    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    with pytest.raises(MedsegIOError, match=r"Cannot read photo.png"):
        read_volume(png)  # pictures are read by napari-medseg now; a damaged one is one line


def test_msd_image_gets_its_modality_from_dataset_json(make_napari_viewer, hippo_dir):
    viewer = make_napari_viewer()
    image = _open(viewer, hippo_dir / "imagesTr" / "hippocampus_001.nii.gz")
    assert json.loads((hippo_dir / "dataset.json").read_text())["modality"]["0"] == "MRI"
    assert image.metadata["medseg"]["modality"] == "MR"


def test_drop_downs_follow_the_case_being_looked_at(make_napari_viewer, plugin_dock, qtbot,
                                                    hippo_cases, tmp_path):
    (img1, lab1), (img2, lab2) = hippo_cases(2)
    viewer = make_napari_viewer()
    infer = plugin_dock(viewer, "Infer")
    edit = plugin_dock(viewer, "Edit")
    project = plugin_dock(viewer, "Project")
    evaluate = plugin_dock(viewer, "Evaluate")
    image1, gt1 = _open(viewer, img1), _open(viewer, lab1)
    image2, gt2 = _open(viewer, img2), _open(viewer, lab2)
    # the newest case is the one looked at
    assert infer.image_combo.layer() is image2
    assert project.image_combo.layer() is image2
    assert project.labels_combo.layer() is gt2
    assert edit.labels_combo.layer() is gt2
    # clicking case 1's image in the layer list moves every dock to case 1
    viewer.layers.selection.active = image1
    assert infer.image_combo.layer() is image1
    assert project.image_combo.layer() is image1
    assert project.labels_combo.layer() is gt1  # never another case's labels
    assert [ly.name for ly in project.labels_combo.layers()] == [gt1.name]
    assert edit.labels_combo.layer() is gt1
    # a prediction for case 1 (made on its grid) becomes Edit's target and Evaluate's
    # prediction; ground truth stays case 1's
    from napari_medseg.ui._layers import add_labels_for_image

    pred = add_labels_for_image(viewer, image1, data=np.asarray(gt1.data), name="pred 1")
    assert edit.labels_combo.layer() is not None
    assert edit.labels_combo.layer().name == "pred 1"
    assert evaluate.pred_combo.layer().name == "pred 1"
    assert evaluate.gt_combo.layer() is gt1
    # the difference overlay is shown but never becomes the prediction or a target
    evaluate.diff_button.click()
    assert viewer.layers[-1].name.startswith("errors of")
    assert evaluate.pred_combo.layer().name == "pred 1"
    assert all(not ly.name.startswith("errors of") for ly in evaluate.pred_combo.layers())
    assert all(not ly.name.startswith("errors of") for ly in edit.labels_combo.layers())
    del pred


def test_new_project_takes_the_modality_of_the_image_looked_at(
        make_napari_viewer, plugin_dock, samples_dir, hippo_cases, tmp_path):
    viewer = make_napari_viewer()
    project = plugin_dock(viewer, "Project")
    _open(viewer, samples_dir / "ct_abdomen_totalsegmentator" / "example_ct_sm.nii.gz")
    hippo = hippo_cases(1)[0][0]
    folder = tmp_path / "ds" / "imagesTr"
    folder.mkdir(parents=True)
    shutil.copy(hippo, folder / hippo.name)
    shutil.copy(hippo.parent.parent / "dataset.json", folder.parent / "dataset.json")
    _open(viewer, folder / hippo.name)  # an MSD MRI: the newest, active layer
    p = project.create_project(tmp_path / "proj")
    assert p.modality == "MR"


def test_project_buttons_need_a_project(make_napari_viewer, plugin_dock):
    viewer = make_napari_viewer()
    project = plugin_dock(viewer, "Project")
    assert not project.add_pool_button.isEnabled()
    assert not project.use_version_button.isEnabled()


def test_opening_another_case_shows_its_middle_slice(make_napari_viewer, plugin_dock,
                                                     samples_dir, hippo_cases):
    viewer = make_napari_viewer()
    plugin_dock(viewer, "Load")
    ct = _open(viewer, samples_dir / "ct_abdomen_totalsegmentator" / "example_ct_sm.nii.gz")
    axis = viewer.dims.not_displayed[0]
    low, high = sorted(np.asarray(ct.extent.world)[:, axis])
    viewer.dims.set_point(axis, low)
    hippo = _open(viewer, hippo_cases(1)[0][0])  # far away from the CT in world space
    h_low, h_high = sorted(np.asarray(hippo.extent.world)[:, axis])
    assert h_low - 1e-6 <= viewer.dims.point[axis] <= h_high + 1e-6


def test_edit_status_shows_the_failure_and_2d_scope(make_napari_viewer, plugin_dock):
    viewer = make_napari_viewer()
    edit = plugin_dock(viewer, "Edit")
    data = np.zeros((40, 50), np.uint8)
    data[10:20, 10:20] = 1
    viewer.add_labels(data, name="mask 2d")
    assert edit.volume_radio.text() == "Whole image (2D)"
    assert edit.slice_radio.isHidden()
    edit.status.setText("Grow: 10 voxels changed.")
    edit._on_combine()  # one label only: nothing to combine it with
    assert edit.status.text().startswith("⚠"), edit.status.text()
    assert "second, different label" in edit.status.text()
    edit.status.setText("Grow: 10 voxels changed.")
    edit.run_operation("no_such_operation")
    assert edit.status.text().startswith("⚠"), edit.status.text()


def test_train_pairs_follow_a_rename(make_napari_viewer, plugin_dock, qtbot, hippo_cases):
    viewer = make_napari_viewer()
    _dock, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    qtbot.waitUntil(lambda: "detecting" not in train.device_label.text(), timeout=60000)
    image_path, labels_path = hippo_cases(1)[0]
    _open(viewer, image_path)
    labels = _open(viewer, labels_path)
    labels.name = "renamed ground truth"
    texts = [train.pair_list.item(i).text() for i in range(train.pair_list.count())]
    assert any("renamed ground truth" in t for t in texts), texts


def test_empty_training_plot_shows_no_axes(make_napari_viewer, qtbot):
    from napari_medseg.ui._plot import TrainingPlot

    plot = TrainingPlot()
    qtbot.addWidget(plot)
    assert not plot.loss_axes.xaxis.get_visible() and plot._text.get_visible()
    plot.add_step(0.5, 1.2)
    plot.add_epoch(0.8, 1.1, 0.4)  # a short epoch: validated at 0.8 of the step axis
    assert plot.loss_axes.xaxis.get_visible() and not plot._text.get_visible()
    assert plot.dice_x == [0.8]


def test_spin_boxes_never_cut_their_unit(qtbot):
    from napari_medseg.ui._controls import double_spin

    box = double_spin(12.0, 0.1, 200.0, "brush", " mm")
    qtbot.addWidget(box)
    needed = box.fontMetrics().horizontalAdvance("200.0 mm")
    assert box.minimumWidth() > needed


def test_long_errors_are_cut_at_a_boundary_not_mid_word():
    from napari_medseg.ui._notify import MAX_NOTIFICATION_CHARS, short_message

    long = ("model_card.json in /tmp/a/b/c/d/models/broken is not valid JSON: Expecting "
            "property name enclosed in double quotes: line 1 column 2 (char 1). " * 3)
    short = short_message(long)
    assert len(short) <= MAX_NOTIFICATION_CHARS
    assert "…/models/broken" in short and "not valid JSON" in short
    assert short_message("short one") == "short one"
