"""npe2 reader/writer/sample data through a real napari viewer (run under Xvfb)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from ui_helpers import PLUGIN
from ui_helpers import error_messages as _errors_since

from napari_medseg._reader import find_matching_labels, get_reader
from napari_medseg.events import IGNORE_LABEL


def _n_records() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def test_get_reader_answers_from_path_only(tmp_path, hippo_cases):
    image, _ = hippo_cases(1)[0]
    assert callable(get_reader(str(image)))
    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    other = tmp_path / "pngs"
    other.mkdir()
    (other / "a.png").write_bytes(b"\x89PNG....")
    assert get_reader(str(other)) is None  # folder without DICOM/NIfTI: not ours
    empty = tmp_path / "empty"
    empty.mkdir()
    assert callable(get_reader(str(empty)))  # we answer, to say it is empty


def test_open_nifti_gets_physical_geometry(make_napari_viewer, hippo_cases):
    image, labels = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    layers = viewer.open(str(image), plugin=PLUGIN)
    assert len(layers) == 1
    layer = layers[0]
    img = nib.load(str(image))
    zooms = img.header.get_zooms()[:3]
    assert layer.data.shape == img.shape[::-1]  # (z, y, x) from nibabel's (x, y, z)
    # mm per voxel; the sign flips RAS+ axes into napari's (inferior, posterior, left) world
    np.testing.assert_allclose(np.abs(layer.scale), zooms[::-1])
    np.testing.assert_allclose(layer.scale, -np.asarray(zooms[::-1]))
    assert "medseg" in layer.metadata
    np.testing.assert_allclose(
        np.asarray(layer.metadata["medseg"]["affine"])[:3, 3], img.affine[:3, 3]
    )
    # the labels file opens as a Labels layer with the dataset's class names
    (lab,) = viewer.open(str(labels), plugin=PLUGIN)
    assert type(lab).__name__ == "Labels"
    names = {v["name"] for v in lab.metadata["medseg"]["classes"].values()}
    assert {"Anterior", "Posterior"} <= names
    np.testing.assert_allclose(lab.scale, layer.scale)


def test_open_dicom_folder_scale(make_napari_viewer, samples_dir):
    folder = samples_dir / "mr_dicom_hippocrop" / "PGBM-002_HippoCrop"
    viewer = make_napari_viewer()
    layers = viewer.open(str(folder), plugin=PLUGIN)
    assert len(layers) == 1
    layer = layers[0]
    assert type(layer).__name__ == "Image"
    assert layer.data.shape == (32, 35, 51) or sorted(layer.data.shape) == [32, 35, 51]
    # slices stacked toward the head: world axis 0 runs to the feet, so that scale is negative
    np.testing.assert_allclose(layer.scale, (-1.0, 1.0, 1.0), atol=1e-3)
    assert layer.metadata["medseg"]["modality"] == "MR"


def test_dicom_tree_with_several_series_gives_one_layer_each(make_napari_viewer, samples_dir,
                                                             tmp_path):
    root = tmp_path / "study"
    for name in ("PGBM-002_HippoCrop", "PGBM-006_HippoCrop"):
        shutil.copytree(samples_dir / "mr_dicom_hippocrop" / name, root / name)
    viewer = make_napari_viewer()
    layers = viewer.open(str(root), plugin=PLUGIN)
    assert sorted(ly.data.shape[0] for ly in layers) == [32, 35]


def test_labels_round_trip_through_writer(make_napari_viewer, hippo_cases, tmp_path):
    image, labels = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    (img_layer,) = viewer.open(str(image), plugin=PLUGIN)
    from napari_medseg.ui._layers import add_labels_for_image

    rng = np.random.default_rng(0)
    data = rng.integers(0, 3, size=img_layer.data.shape).astype(np.uint8)
    lab = add_labels_for_image(viewer, img_layer, data=data, name="drawn")
    out = tmp_path / "drawn.nii.gz"
    from napari.plugins.io import save_layers

    written = save_layers(str(out), [lab], plugin=PLUGIN)
    assert str(out) in written
    back = nib.load(str(out))
    np.testing.assert_array_equal(np.asarray(back.dataobj), data.transpose(2, 1, 0))
    np.testing.assert_array_equal(back.affine, nib.load(str(image)).affine)
    # and back into napari: identical voxels and geometry
    (again,) = viewer.open(str(out), plugin=PLUGIN)
    np.testing.assert_array_equal(again.data, data)
    np.testing.assert_array_equal(np.asarray(again.metadata["medseg"]["affine"]),
                                  np.asarray(lab.metadata["medseg"]["affine"]))
    assert (tmp_path / "drawn.classes.json").is_file()


def test_sparse_marks_save_as_ignore_and_reopen(make_napari_viewer, hippo_cases, tmp_path):
    image, _ = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    (img_layer,) = viewer.open(str(image), plugin=PLUGIN)
    from napari.plugins.io import save_layers

    from napari_medseg.ui._layers import add_labels_for_image

    data = np.zeros(img_layer.data.shape, np.uint8)
    data[3, 10:20, 10:20] = 1
    lab = add_labels_for_image(viewer, img_layer, data=data, name="sparse")
    lab.metadata = {**lab.metadata, "medseg": {**lab.metadata["medseg"],
                                               "annotated_slices": [3, 5]}}
    out = tmp_path / "sparse.nii.gz"
    save_layers(str(out), [lab], plugin=PLUGIN)
    disk = np.asarray(nib.load(str(out)).dataobj).transpose(2, 1, 0)
    assert (disk[0] == IGNORE_LABEL).all() and (disk[4] == IGNORE_LABEL).all()
    np.testing.assert_array_equal(disk[3], data[3])
    assert (disk[5] == 0).all()
    (again,) = viewer.open(str(out), plugin=PLUGIN)
    np.testing.assert_array_equal(again.data, data)
    assert again.metadata["medseg"]["annotated_slices"] == [3, 5]


def test_image_writer_round_trip(make_napari_viewer, hippo_cases, tmp_path):
    image, _ = hippo_cases(1)[0]
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(image), plugin=PLUGIN)
    from napari.plugins.io import save_layers

    out = tmp_path / "copy.nii.gz"
    save_layers(str(out), [layer], plugin=PLUGIN)
    np.testing.assert_array_equal(nib.load(str(out)).affine, nib.load(str(image)).affine)
    np.testing.assert_array_equal(np.asarray(nib.load(str(out)).dataobj).transpose(2, 1, 0),
                                  layer.data)


@pytest.mark.parametrize("kind", ["truncated_nifti", "random_dcm", "empty_folder"])
def test_bad_input_is_a_notification_not_an_exception(make_napari_viewer, tmp_path, kind,
                                                      hippo_cases):
    if kind == "truncated_nifti":
        image, _ = hippo_cases(1)[0]
        path = tmp_path / "broken.nii.gz"
        path.write_bytes(Path(image).read_bytes()[:400])
    elif kind == "random_dcm":
        path = tmp_path / "noise.dcm"
        path.write_bytes(np.random.default_rng(1).bytes(2048))
    else:
        path = tmp_path / "nothing_here"
        path.mkdir()
    viewer = make_napari_viewer()
    start = _n_records()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert layers == []
    errors = _errors_since(start)
    assert len(errors) == 1, errors
    assert "Traceback" not in errors[0] and "\n" not in errors[0]
    assert path.name in errors[0]


def test_truncated_gzip_detected(tmp_path):
    # a gzip stream cut in the middle is what a half-copied .nii.gz looks like
    raw = gzip.compress(b"x" * 10000)
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    from napari_medseg._reader import read_path

    with pytest.raises(ValueError):
        read_path(tmp_path / "cut.nii.gz")


def test_find_matching_labels(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    img = tmp_path / "imagesTr" / "case_001_0000.nii.gz"
    img.write_bytes(b"")
    assert find_matching_labels(img) is None
    (tmp_path / "labelsTr" / "case_001.nii.gz").write_bytes(b"")
    assert find_matching_labels(img) == tmp_path / "labelsTr" / "case_001.nii.gz"
    flat = tmp_path / "ct.nii.gz"
    flat.write_bytes(b"")
    (tmp_path / "ct_seg.nii.gz").write_bytes(b"")
    assert find_matching_labels(flat) == tmp_path / "ct_seg.nii.gz"


def test_sample_data(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "hippocampus")
    kinds = sorted(type(ly).__name__ for ly in viewer.layers)
    assert kinds == ["Image", "Labels"]
    image, labels = (viewer.layers[0], viewer.layers[1])
    assert image.data.shape == labels.data.shape
    assert set(np.unique(labels.data)) <= {0, 1, 2}
    viewer.layers.clear()
    viewer.open_sample(PLUGIN, "ct_phantom")
    image = [ly for ly in viewer.layers if type(ly).__name__ == "Image"][0]
    assert image.metadata["medseg"]["modality"] == "CT"
    assert tuple(image.contrast_limits) == (-160.0, 240.0)  # soft-tissue window
    labels = [ly for ly in viewer.layers if type(ly).__name__ == "Labels"][0]
    assert labels.data.max() >= 2


def test_writer_uses_scale_for_plain_napari_labels(make_napari_viewer, tmp_path):
    """A Labels layer made with napari's own button (no MedSeg metadata) still saves in mm."""
    from napari.plugins.io import save_layers

    viewer = make_napari_viewer()
    data = np.zeros((4, 5, 6), np.uint8)
    data[1, 2, 3] = 2
    layer = viewer.add_labels(data, scale=(2.5, 0.8, 0.7), translate=(10, 20, 30))
    out = tmp_path / "plain.nii.gz"
    save_layers(str(out), [layer], plugin=PLUGIN)
    img = nib.load(str(out))
    np.testing.assert_allclose(img.header.get_zooms()[:3], (0.7, 0.8, 2.5))
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), data)
    (again,) = viewer.open(str(out), plugin=PLUGIN)
    np.testing.assert_allclose(again.scale, (2.5, 0.8, 0.7))
    np.testing.assert_allclose(again.translate, (10, 20, 30))
