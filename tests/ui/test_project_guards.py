"""Project dock: what a user meets off the happy path (found by using it on real data).

A read-only project folder, a batch of pool files with a bad one, a label map or a duplicate in
it, empty labels, predicting a case twice, a 2D picture, and buttons that cannot work yet: each
is one clear line and a button that says why it is disabled, never a traceback, a hang or a
silent wrong result.
"""

from __future__ import annotations

import errno
import shutil

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QMessageBox
from test_project_widget import CLASSES, _make_project, _open, _wait, _widget
from ui_helpers import error_messages

from napari_medseg.dataset.project import Project


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_MEDSEG_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_buttons_say_why_they_cannot_work_yet(make_napari_viewer, qtbot, hippo_cases, tmp_path):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    assert "project" in widget.accept_button.toolTip().lower()
    widget.create_project(tmp_path / "proj", "Hippocampus", CLASSES, "MR")
    (img, lab), = hippo_cases(1)
    image, = _open(viewer, [img])
    # no labels yet: Accept cannot work; nothing accepted: Retrain neither; empty pool
    assert not widget.accept_button.isEnabled()
    assert "labels" in widget.accept_button.toolTip()
    assert not widget.retrain_button.isEnabled()
    assert "accept at least one case" in widget.retrain_button.toolTip().lower()
    assert not widget.next_case_button.isEnabled()
    assert "pool is empty" in widget.next_case_button.toolTip()
    assert not widget.predict_button.isEnabled()
    assert "no model yet" in widget.predict_button.toolTip()
    _open(viewer, [lab])
    qtbot.waitUntil(lambda: widget.accept_button.isEnabled(), timeout=5000)
    qtbot.mouseClick(widget.accept_button, Qt.LeftButton)
    assert widget.project.accepted_ids(), error_messages()[-3:]
    assert widget.retrain_button.isEnabled()


def test_empty_labels_are_accepted_only_when_confirmed(make_napari_viewer, qtbot, hippo_cases,
                                                       tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    project = widget.create_project(tmp_path / "proj", "Hippocampus", CLASSES, "MR")
    (img, lab), = hippo_cases(1)
    image, labels = _open(viewer, [img, lab])
    labels.data = np.zeros_like(labels.data)
    widget.labels_combo.set_layer(labels)
    assert widget.accept_current() is None  # called directly: refused, said why
    assert "is empty" in error_messages()[-1]
    asked = []

    def answer(button):
        def question(*args, **kwargs):
            asked.append(args[2])
            return button
        return question

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.No))
    qtbot.mouseClick(widget.accept_button, Qt.LeftButton)
    assert asked and "no label at all" in asked[-1]
    assert project.accepted_ids() == [] and "Not accepted" in widget.case_label.text()
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.Yes))
    qtbot.mouseClick(widget.accept_button, Qt.LeftButton)
    assert len(project.accepted_ids()) == 1, error_messages()[-3:]


def test_read_only_project_folder_is_one_line_and_nothing_hangs(
        make_napari_viewer, qtbot, hippo_cases, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    project = widget.create_project(tmp_path / "proj", "Hippocampus", CLASSES, "MR")
    (img, lab), = hippo_cases(1)
    _open(viewer, [img, lab])
    file_lock = type(project._lock._file_lock)

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(project.root / ".project.lock"))

    monkeypatch.setattr(file_lock, "acquire", read_only)
    before = len(error_messages())
    qtbot.mouseClick(widget.accept_button, Qt.LeftButton)
    message = error_messages()[-1]
    assert len(error_messages()) == before + 1
    assert "Accept case failed: Cannot write to the project folder" in message
    assert "read-only" in message and "Errno" not in message and len(message) <= 140
    # an autosave in a worker thread meets the same folder: one message, and it returns
    labels = widget.labels_combo.layer()
    labels.data = labels.data.copy()  # an edit
    worker = widget.autosave_now()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.pending == 0, timeout=10000)
    assert "Cannot write to the project folder" in error_messages()[-1]
    n = len(error_messages())
    labels.data = labels.data.copy()
    widget.autosave_now()
    qtbot.waitUntil(lambda: widget.pending == 0, timeout=10000)
    assert len(error_messages()) == n  # the same failure is not repeated after every stroke
    monkeypatch.undo()  # writable again: the next save works and nothing was lost
    widget.autosave_now()
    qtbot.waitUntil(lambda: widget.pending == 0, timeout=10000)
    assert Project.open(project.root).case_ids(), error_messages()[-3:]


def test_add_images_keeps_the_good_files_and_names_the_skipped(make_napari_viewer, qtbot,
                                                               hippo_cases, tmp_path):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    project = widget.create_project(tmp_path / "proj", "Hippocampus", CLASSES, "MR")
    (img1, lab1), (img2, _lab2) = hippo_cases(2)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(img1.read_bytes()[:300])  # truncated
    label_map = tmp_path / "labelsTr" / "hippocampus_001.nii.gz"
    label_map.parent.mkdir()
    shutil.copy(lab1, label_map)
    widget.add_images([img1, broken, label_map, img2, img1])
    _wait(qtbot, widget)
    assert len(project.unlabelled_ids()) == 2  # both good images, each once
    text = widget.case_label.text()
    assert text.startswith("Added 2 image(s) to the pool; 1 already in the project; skipped 2")
    assert "broken.nii.gz" in text and "hippocampus_001.nii.gz" in text
    assert "• hippocampus_001.nii.gz: it holds a label map, not an image" in text  # each why
    assert "• broken.nii.gz: " in text
    assert "Add images failed: skipped 2 files (why: in the Current case box)" in \
        error_messages()[-1]
    assert widget.next_case_button.isEnabled()  # the pool is no longer empty
    assert "2 image(s) in the pool" in widget.project_label.text()


@pytest.mark.slow
def test_predict_twice_and_a_2d_picture(make_napari_viewer, qtbot, hippo_cases, tmp_path):
    import imageio.v3 as iio

    project = _make_project(tmp_path / "proj", hippo_cases)
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    widget.open_project(project.root)
    image, = _open(viewer, [hippo_cases(4)[3][0]])
    widget.image_combo.set_layer(image)
    assert widget.predict_button.isEnabled() and widget.next_slices_button.isEnabled()
    qtbot.mouseClick(widget.predict_button, Qt.LeftButton)
    _wait(qtbot, widget)
    n_layers = len(viewer.layers)
    assert f"{image.name} v001" in [ly.name for ly in viewer.layers], error_messages()[-3:]
    qtbot.mouseClick(widget.predict_button, Qt.LeftButton)  # the same model, the same image
    _wait(qtbot, widget)
    assert len(viewer.layers) == n_layers  # no duplicate prediction layer
    assert "Already predicted with v001" in widget.case_label.text()
    assert widget.labels_combo.layer().name == f"{image.name} v001"

    photo = tmp_path / "photo.png"
    iio.imwrite(photo, (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8))
    viewer.open(str(photo), plugin="napari-medseg")
    qtbot.waitUntil(lambda: widget.image_combo.layer() is not None
                    and widget.image_combo.layer().ndim == 2, timeout=5000)
    assert not widget.next_slices_button.isEnabled()
    assert "2D picture" in widget.next_slices_button.toolTip()
    widget.image_combo.set_layer(image)
    assert widget.next_slices_button.isEnabled()
