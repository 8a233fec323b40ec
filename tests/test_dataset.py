"""MSD / nnU-Net dataset layout, in-memory sparse cases and splits."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.dataset import (
    Case,
    DatasetError,
    label_names_from_json,
    load_msd_dataset,
    read_splits,
    split_case_ids,
    write_msd_dataset,
)
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io import Volume


def _blob_case(case_id: str, seed: int, shape=(16, 16, 16)) -> Case:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    c = rng.integers(5, 11, 3)
    labels = np.zeros(shape, np.uint8)
    labels[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < 16] = 1
    labels[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < 4] = 2
    image = labels * 100.0 + rng.normal(0, 10, shape)
    return Case(case_id, Volume(image.astype(np.float32), (1.0, 1.0, 1.0)), labels)


@pytest.fixture
def msd_dir(tmp_path):
    cases = [_blob_case(f"blob_{i:03d}", i) for i in range(3)]
    return write_msd_dataset(cases, tmp_path / "Task01_Blobs", {0: "background", 1: "outer", 2: "core"},
                             name="Blobs", modality="MRI")


def test_round_trip_msd_layout(msd_dir):
    ds = load_msd_dataset(msd_dir)
    assert ds.case_ids == ["blob_000", "blob_001", "blob_002"]
    assert ds.label_names == {0: "background", 1: "outer", 2: "core"}
    assert ds.num_classes == 3 and ds.modality == "MR" and ds.name == "Blobs"
    case = ds.cases[1]
    assert case.image.shape == (16, 16, 16) and case.labels.dtype == np.uint8
    np.testing.assert_array_equal(case.labels, _blob_case("x", 1).labels)
    only = load_msd_dataset(msd_dir, ["blob_002"])
    assert only.case_ids == ["blob_002"]
    with pytest.raises(DatasetError, match="not in"):
        load_msd_dataset(msd_dir, ["nope"])


def test_missing_dataset_json(msd_dir):
    (msd_dir / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="no dataset.json"):
        load_msd_dataset(msd_dir)


def test_missing_folder_and_labels_table(tmp_path, msd_dir):
    with pytest.raises(DatasetError, match="not found"):
        load_msd_dataset(tmp_path / "nothing")
    meta = json.loads((msd_dir / "dataset.json").read_text())
    del meta["labels"]
    (msd_dir / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="labels"):
        load_msd_dataset(msd_dir)


def test_image_label_shape_mismatch(msd_dir):
    bad = nib.Nifti1Image(np.zeros((16, 16, 15), np.uint8), np.eye(4))
    nib.save(bad, str(msd_dir / "labelsTr" / "blob_001.nii.gz"))
    with pytest.raises(DatasetError, match="blob_001.*differ"):
        load_msd_dataset(msd_dir)


def test_label_without_image(msd_dir):
    (msd_dir / "imagesTr" / "blob_000.nii.gz").unlink()
    with pytest.raises(DatasetError, match="No image"):
        load_msd_dataset(msd_dir)


def test_sparse_case_annotated_mask():
    case = _blob_case("s", 0)
    annotated = np.zeros(case.image.shape, bool)
    annotated[8] = True
    sparse = Case("s", case.image, case.labels, annotated)
    lab = sparse.training_labels()
    assert np.all(lab[:8] == IGNORE_LABEL) and np.array_equal(lab[8], case.labels[8])
    assert sparse.annotated_fraction() == pytest.approx(1 / 16)


def test_case_validation():
    vol = Volume(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(DatasetError, match="label shape"):
        Case("a", vol, np.zeros((4, 4, 3)))
    with pytest.raises(DatasetError, match="whole numbers"):
        Case("a", vol, np.full((4, 4, 4), 0.5))
    with pytest.raises(DatasetError, match="0..255"):
        Case("a", vol, np.full((4, 4, 4), 300))
    ok = Case("a", vol, np.ones((4, 4, 4), np.float32))
    assert ok.labels.dtype == np.uint8


def test_label_names_both_json_styles():
    assert label_names_from_json({"labels": {"0": "background", "1": "liver"}}) == {0: "background", 1: "liver"}
    assert label_names_from_json({"labels": {"background": 0, "liver": 1, "ignore": 255}}) == {
        0: "background", 1: "liver"}


def test_split_case_ids():
    ids = [f"c{i}" for i in range(10)]
    train, val = split_case_ids(ids, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8 and not set(train) & set(val)
    assert split_case_ids(ids, 0.2, seed=3) == (train, val)
    assert split_case_ids(["a"], 0.5) == (["a"], [])
    assert split_case_ids(ids, 0.0)[1] == []
    with pytest.raises(DatasetError):
        split_case_ids(ids, 1.0)


def test_real_hippocampus_cases(hippo_dir, hippo_split):
    ids = hippo_split["train"][:2]
    ds = load_msd_dataset(hippo_dir, ids)
    assert ds.label_names == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert ds.modality == "MR"
    for case in ds.cases:
        assert case.labels.shape == case.image.shape
        assert set(np.unique(case.labels)) == {0, 1, 2}
    train, val = read_splits(hippo_dir / "splits_suggested.json")
    assert len(train) == 180 and len(val) == 40


def test_training_list_in_dataset_json_is_honoured(msd_dir):
    meta = json.loads((msd_dir / "dataset.json").read_text())
    meta["training"] = meta["training"][:2]
    (msd_dir / "dataset.json").write_text(json.dumps(meta))
    assert load_msd_dataset(msd_dir).case_ids == ["blob_000", "blob_001"]
    meta["training"].append({"image": "./imagesTr/gone.nii.gz", "label": "./labelsTr/gone.nii.gz"})
    (msd_dir / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="gone.nii.gz.*does not exist"):
        load_msd_dataset(msd_dir)
    del meta["training"]  # nnU-Net v2 style: every label file in labelsTr
    (msd_dir / "dataset.json").write_text(json.dumps(meta))
    assert len(load_msd_dataset(msd_dir).cases) == 3


def test_negative_label_values_are_refused_by_name(tmp_path):
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    image = np.zeros((6, 7, 8), np.float32)
    labels = np.zeros((6, 7, 8), np.int16)
    labels[2:4, 2:4, 2:4] = 1
    labels[0, 0, 0] = -1
    nib.save(nib.Nifti1Image(image, np.eye(4)), root / "imagesTr" / "c1.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), root / "labelsTr" / "c1.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1},
        "numTraining": 1, "file_ending": ".nii.gz"}))
    with pytest.raises(DatasetError, match=r"Case c1: c1.nii.gz holds negative label value\(s\) "
                                           r"\{-1\}"):
        load_msd_dataset(root)
