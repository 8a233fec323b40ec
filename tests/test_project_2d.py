"""A project holds 2D colour photographs as well as volumes (issue 18, item 6)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_medseg.dataset.project import Project, ProjectError
from napari_medseg.io.volume import Volume


def _photo(seed=0, shape=(40, 50)):
    rng = np.random.default_rng(seed)
    return Volume(rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8), spacing=(0.05, 0.05),
                  name="photo", rgb=True)


def test_colour_photos_are_stored_losslessly_as_png(tmp_path):
    project = Project.create(tmp_path / "p", "fundus", {1: "vessel"}, modality="unknown")
    photo = _photo()
    labels = np.zeros(photo.shape, np.uint8)
    labels[10:20, 5:30] = 1
    cid = project.accept_case(photo, labels)
    assert project.image_path(cid).name == f"{cid}.png"
    assert project.label_path(cid).name == f"{cid}.png"
    back = project.load_image(cid)
    assert back.rgb and back.shape == photo.shape
    np.testing.assert_array_equal(back.array, photo.array)
    assert back.spacing == (0.05, 0.05)
    np.testing.assert_array_equal(project.load_labels(cid), labels)
    (case,) = project.training_cases()
    assert len(case.channels) == 3  # red, green, blue
    meta = json.loads((tmp_path / "p" / "dataset.json").read_text())
    assert meta["file_ending"] == ".png" and meta["tensorImageSize"] == "2D"
    assert meta["training"][0]["image"].endswith(".png")
    assert project.annotation_cost() == 1


def test_pool_of_photos_and_drafts(tmp_path):
    project = Project.create(tmp_path / "p", "fundus", {1: "vessel"}, modality="unknown")
    ids = [project.add_unlabelled(_photo(seed=s)) for s in range(3)]
    assert len(set(ids)) == 3 and set(project.unlabelled_ids()) == set(ids)
    draft = np.zeros((40, 50), np.uint8)
    draft[1:4, 1:4] = 1
    project.autosave_labels(ids[0], draft)
    np.testing.assert_array_equal(project.load_labels(ids[0]), draft)
    reopened = Project.open(tmp_path / "p")
    assert set(reopened.unlabelled_ids()) | set(reopened.case_ids("draft")) == set(ids)


def test_a_project_does_not_mix_2d_and_3d_or_colour_and_grey(tmp_path):
    project = Project.create(tmp_path / "p", "t", {1: "x"})
    project.add_unlabelled(_photo())
    with pytest.raises(ProjectError, match="holds 2D images"):
        project.add_unlabelled(Volume(np.zeros((4, 8, 8), np.float32), name="vol"))
    with pytest.raises(ProjectError, match="holds colour images"):
        project.add_unlabelled(Volume(np.zeros((40, 50), np.uint8), name="grey"))
