"""Project store: create/open, accept (sparse), autosave crash safety, model versions, history."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from napari_medseg.dataset import load_msd_dataset
from napari_medseg.dataset.project import (
    Project,
    ProjectError,
    atomic_write_volume,
    sparse_labels,
)
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.volume import Volume

CLASSES = {1: {"name": "Anterior", "color": "#ff0000"}, 2: {"name": "Posterior", "color": "#00ff00"}}


def _volume(shape=(6, 8, 10), seed=0, name="case a", path=None) -> Volume:
    rng = np.random.default_rng(seed)
    affine = np.diag([2.0, 0.5, 0.7, 1.0])
    affine[:3, 3] = (10.0, -5.0, 3.0)
    meta = {"path": str(path)} if path else {}
    return Volume(rng.normal(size=shape).astype(np.float32), (2.0, 0.5, 0.7), affine, "MR",
                  meta, name)


def _labels(shape=(6, 8, 10)) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    lab[:, 2:4, 2:5] = 1
    lab[:, 5:7, 6:9] = 2
    return lab


@pytest.fixture
def project(tmp_path) -> Project:
    return Project.create(tmp_path / "proj", "Hippo", CLASSES, modality="MR")


def test_create_open_round_trip(tmp_path, project):
    again = Project.open(tmp_path / "proj")
    assert again.name == "Hippo"
    assert again.classes == CLASSES
    assert again.label_names == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert again.current_model is None
    assert [h["action"] for h in again.history()] == ["create"]
    for sub in ("imagesTr", "labelsTr", "imagesTs", "drafts", "models"):
        assert (tmp_path / "proj" / sub).is_dir()
    meta = json.loads((tmp_path / "proj" / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "Anterior", "2": "Posterior"}


def test_create_refuses_existing_and_bad_input(tmp_path, project):
    with pytest.raises(ProjectError, match="already a project"):
        Project.create(tmp_path / "proj", "x", CLASSES)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something.txt").write_text("x")
    with pytest.raises(ProjectError, match="not empty"):
        Project.create(tmp_path / "full", "x", CLASSES)
    with pytest.raises(ProjectError, match="at least one label class"):
        Project.create(tmp_path / "empty", "x", {})
    with pytest.raises(ProjectError, match="between 1 and 254"):
        Project.create(tmp_path / "bad", "x", {255: "x"})
    with pytest.raises(ProjectError, match="not a napari-medseg project"):
        Project.open(tmp_path / "nowhere")


def test_accept_full_case_is_valid_msd(project):
    vol, lab = _volume(), _labels()
    cid = project.accept_case(vol, lab)
    assert cid == "case_a"
    assert project.accepted_ids() == ["case_a"]
    np.testing.assert_array_equal(project.load_labels(cid), lab)
    # the project folder is a valid MSD dataset with the exact geometry
    ds = load_msd_dataset(project.root)
    assert ds.case_ids == ["case_a"]
    assert ds.label_names == {0: "background", 1: "Anterior", 2: "Posterior"}
    np.testing.assert_array_equal(ds.cases[0].labels, lab)
    np.testing.assert_allclose(ds.cases[0].image.affine, vol.affine)
    np.testing.assert_allclose(ds.cases[0].image.array, vol.array)
    assert project.history()[-1]["action"] == "accept"


def test_sparse_case_stores_ignore_outside_annotated_slices(project):
    vol, lab = _volume(), _labels()
    cid = project.accept_case(vol, lab, annotated_slices=[1, 4])
    stored = project.load_labels(cid, keep_ignore=True)
    assert np.all(stored[[0, 2, 3, 5]] == IGNORE_LABEL)
    np.testing.assert_array_equal(stored[[1, 4]], lab[[1, 4]])
    assert project.annotated_slices(cid) == [1, 4]
    assert project.annotation_cost() == 2
    shown = project.load_labels(cid)
    assert not np.any(shown == IGNORE_LABEL)
    assert np.all(shown[0] == 0)
    # the label file itself holds 255 (what any MSD reader / training sees)
    ds = load_msd_dataset(project.root)
    assert np.all(ds.cases[0].labels[0] == IGNORE_LABEL)
    # along another axis
    cid2 = project.accept_case(_volume(seed=3, name="b"), lab, annotated_slices=[0], slice_axis=2)
    stored2 = project.load_labels(cid2, keep_ignore=True)
    assert np.all(stored2[:, :, 1:] == IGNORE_LABEL)
    np.testing.assert_array_equal(stored2[:, :, 0], lab[:, :, 0])


def test_accept_rejects_bad_labels(project):
    vol = _volume()
    with pytest.raises(ProjectError, match="do not match"):
        project.accept_case(vol, np.zeros((6, 8, 9), np.uint8))
    bad = _labels()
    bad[0, 0, 0] = 7
    with pytest.raises(ProjectError, match=r"value\(s\) \[7\]"):
        project.accept_case(vol, bad)
    with pytest.raises(ProjectError, match="does not exist"):
        project.accept_case(vol, _labels(), annotated_slices=[6])
    with pytest.raises(ProjectError, match="Nothing is annotated"):
        project.accept_case(vol, _labels(), annotated_slices=[])
    assert project.accepted_ids() == []


def test_sparse_labels_function():
    lab = np.ones((3, 2, 2), np.uint8)
    out = sparse_labels(lab, [2], slice_axis=0)
    assert out[2].tolist() == [[1, 1], [1, 1]]
    assert np.all(out[:2] == IGNORE_LABEL)
    np.testing.assert_array_equal(sparse_labels(lab, None), lab)


def test_reaccept_same_image_updates_case(project, tmp_path):
    src = tmp_path / "src" / "scan.nii.gz"
    vol = _volume(path=src, name="scan")
    cid = project.accept_case(vol, _labels(), annotated_slices=[2])
    lab2 = _labels()
    lab2[3] = 0
    assert project.accept_case(vol, lab2, annotated_slices=[2, 3]) == cid
    assert project.accepted_ids() == [cid]
    assert project.annotated_slices(cid) == [2, 3]
    np.testing.assert_array_equal(project.load_labels(cid)[3], 0)


def test_autosave_restores_labels_on_reopen(tmp_path, project):
    src = tmp_path / "src" / "scan.nii.gz"
    vol = _volume(path=src, name="scan")
    lab = _labels()
    cid = project.autosave_labels(None, lab, annotated_slices=[0, 3], image=vol)
    assert project.case_info(cid)["status"] == "draft"
    assert cid in project.unlabelled_ids()
    # a new session opens the same image again: found by source path, labels restored
    again = Project.open(tmp_path / "proj")
    reopened = _volume(path=src, name="scan")
    found = again.find_case(reopened)
    assert found == cid
    np.testing.assert_array_equal(again.load_labels(found), lab)
    assert again.annotated_slices(found) == [0, 3]
    # moved file, same voxels: found by content
    moved = _volume(path=tmp_path / "elsewhere.nii.gz", name="other")
    assert again.find_case(moved) == cid
    # accept moves it out of the pool and drops the draft
    again.accept_case(reopened, lab, annotated_slices=[0, 3])
    assert again.unlabelled_ids() == []
    assert not again.has_draft(cid)
    # a later edit autosaves a new draft that wins over the accepted labels
    lab3 = lab.copy()
    lab3[1] = 1
    again.autosave_labels(cid, lab3, annotated_slices=[0, 1, 3])
    np.testing.assert_array_equal(again.load_labels(cid), lab3)
    assert again.annotated_slices(cid) == [0, 1, 3]


def test_autosave_rejects_values_a_project_cannot_store(project):
    vol = _volume()
    big = _labels().astype(np.uint16)
    big[0, 0, 0] = 300
    with pytest.raises(ProjectError, match="0..254"):
        project.autosave_labels(None, big, image=vol)
    assert project.case_ids() == []


def test_failed_replace_leaves_previous_labels(project, monkeypatch):
    vol = _volume()
    cid = project.autosave_labels(None, _labels(), image=vol)
    target = project.draft_path(cid)
    real_replace = os.replace

    def crash(src, dst):
        if Path(dst) == target:
            raise OSError("simulated power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        project.autosave_labels(cid, np.zeros_like(_labels()))
    monkeypatch.setattr(os, "replace", real_replace)
    np.testing.assert_array_equal(project.load_labels(cid), _labels())
    leftovers = [p for p in target.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_partial_temp_file_is_ignored_and_cleaned(tmp_path, project):
    vol = _volume()
    cid = project.autosave_labels(None, _labels(), image=vol)
    # what a process killed while writing leaves behind: a truncated hidden temp file
    good = project.draft_path(cid).read_bytes()
    partial = project.draft_path(cid).with_name(f".{cid}.deadbeef.partial.nii.gz")
    partial.write_bytes(good[: len(good) // 2])
    os.utime(partial, (0, 0))
    again = Project.open(tmp_path / "proj")
    assert not partial.exists()
    np.testing.assert_array_equal(again.load_labels(cid), _labels())


def test_killed_process_mid_autosave_leaves_readable_labels(tmp_path, project):
    """SIGKILL a process that autosaves in a loop; the draft is always a complete file."""
    vol = _volume(shape=(20, 40, 40))
    cid = project.autosave_labels(None, np.zeros((20, 40, 40), np.uint8), image=vol)
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from napari_medseg.dataset.project import Project
        p = Project.open({str(project.root)!r})
        i = 0
        while True:
            i += 1
            lab = np.full((20, 40, 40), i % 3, np.uint8)
            p.autosave_labels({cid!r}, lab)
            if i == 3:
                print("saving", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saving"
    finally:
        proc.kill()
        proc.wait(10)
    again = Project.open(project.root)
    restored = again.load_labels(cid)
    assert restored.shape == (20, 40, 40)
    values = np.unique(restored)
    assert len(values) == 1 and values[0] in (0, 1, 2)


def test_atomic_write_volume_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "lab.nii.gz"
    vol = _volume()
    atomic_write_volume(vol.with_array(_labels()), path, labels=True)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        atomic_write_volume(vol.with_array(np.full(vol.shape, 0.5)), path, labels=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["lab.nii.gz"]


def _fake_model(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(tag.encode())
    (folder / "card.json").write_text(json.dumps({"classes": {}, "dims": 2, "version": None}))
    return folder


def test_model_versions_advance_and_switch_back(tmp_path, project):
    v1 = project.register_model(_fake_model(tmp_path / "m1", "one"), {"dice_mean": 0.5})
    v2 = project.register_model(_fake_model(tmp_path / "m2", "two"), {"dice_mean": 0.7})
    assert (v1, v2) == ("v001", "v002")
    assert project.current_model == "v002"
    models = project.models()
    assert [m["version"] for m in models] == ["v001", "v002"]
    assert models[1]["parent"] == "v001" and models[0]["parent"] is None
    assert models[1]["metrics"] == {"dice_mean": 0.7}
    assert (project.model_dir("v002") / "model.pt").read_bytes() == b"two"
    card = json.loads((project.model_dir("v002") / "card.json").read_text())
    assert card["project_version"] == "v002" and card["project_parent_version"] == "v001"
    assert card["version"] is None  # the card's own field is left alone
    assert (tmp_path / "m1").exists()  # copied, not moved
    project.set_current_model("v001")
    again = Project.open(project.root)
    assert again.current_model == "v001"
    assert (again.model_dir() / "model.pt").read_bytes() == b"one"
    # retraining from v001 makes v003 with parent v001
    v3 = again.register_model(_fake_model(tmp_path / "m3", "three"), move=True)
    assert v3 == "v003" and again.models()[-1]["parent"] == "v001"
    assert not (tmp_path / "m3").exists()
    with pytest.raises(ProjectError, match="does not exist"):
        again.set_current_model("v009")
    actions = [h["action"] for h in again.history()]
    assert actions.count("register_model") == 3 and "set_current_model" in actions


def test_two_handles_do_not_lose_entries(tmp_path, project):
    other = Project.open(project.root)
    project.accept_case(_volume(name="one"), _labels())
    other.accept_case(_volume(seed=5, name="two"), _labels())
    final = Project.open(project.root)
    assert final.accepted_ids() == ["one", "two"]
    assert len(load_msd_dataset(project.root).cases) == 2


def test_add_unlabelled_pool(tmp_path, project):
    vol = _volume(name="pool img")
    cid = project.add_unlabelled(vol)
    assert project.add_unlabelled(vol) == cid  # not added twice
    assert project.unlabelled_ids() == [cid]
    img = project.load_image(cid)
    np.testing.assert_allclose(img.array, vol.array)
    np.testing.assert_allclose(img.affine, vol.affine)
    meta = json.loads((project.root / "dataset.json").read_text())
    assert meta["test"] == [f"./imagesTs/{cid}.nii.gz"] and meta["numTraining"] == 0
    with pytest.raises(ProjectError, match="This project holds 3D images"):
        project.add_unlabelled(Volume(np.zeros((4, 4)), name="flat"))


def test_a_read_only_project_folder_is_one_clear_error_and_no_stuck_lock(tmp_path, monkeypatch):
    import errno
    import threading

    from napari_medseg.dataset.project import Project, ProjectError

    project = Project.create(tmp_path / "proj", "P", {1: "organ"}, "CT")
    lock = project._lock
    file_lock = type(lock._file_lock)

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "proj/.project.lock"))

    monkeypatch.setattr(file_lock, "acquire", read_only)
    with pytest.raises(ProjectError, match=r"Cannot write to the project folder .*read-only"):
        project.set_current_model(None)
    monkeypatch.undo()
    # the thread lock was released: another thread (an autosave worker) gets it at once
    got = []

    def other_thread():
        got.append(lock._thread_lock.acquire(timeout=2))
        if got[-1]:
            lock._thread_lock.release()

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join(5)
    assert got == [True]
    project.set_current_model(None)  # and the folder works again once writable
