"""One patient world for every reader, shown the radiological way (run under Xvfb).

napari world axes are (inferior, posterior, patient left) in mm (``Volume`` module docstring):
a DICOM series and a NIfTI file of the same patient overlay voxel for voxel, whatever order each
file stores its voxels in, and the default axial view has the spine at the bottom.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from qtpy.QtCore import Qt
from ui_helpers import PLUGIN

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dicom_factory import write_nifti_flipped  # noqa: E402

CT = "ct_abdomen_totalsegmentator"
#: TotalSegmentator "total" label values used as anatomical landmarks.
SPLEEN, LIVER, AORTA, VERTEBRA_T12, SPINAL_CORD = 1, 5, 52, 32, 79



def _open(viewer, path: Path):
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == 1, layers
    return layers[0]


def _affine(layer) -> np.ndarray:
    return np.asarray(layer.metadata["medseg"]["affine"], dtype=float)


def _corners_and_middle(shape) -> list[tuple[int, ...]]:
    return [*itertools.product(*((0, n - 1) for n in shape)), tuple(n // 2 for n in shape)]


def _centroid_world(layer, value: int) -> np.ndarray:
    """World position (mm) of the centroid of label ``value``."""
    index = np.argwhere(np.asarray(layer.data) == value).mean(axis=0)
    return np.asarray(layer.data_to_world(index), dtype=float)


def _values_through_world(target, source, value: int, every: int = 97) -> np.ndarray:
    """``target`` voxels at the world positions of (every ``every``-th) voxel of label
    ``value`` in ``source``: what a user sees of ``target`` under that label."""
    voxels = np.argwhere(np.asarray(source.data) == value)[::every]
    data = np.asarray(target.data)
    return np.array([data[tuple(np.round(target.world_to_data(source.data_to_world(v)))
                                .astype(int))] for v in voxels])


def _bone_labels_written_flipped(samples_dir: Path, tmp_path: Path):
    """(DICOM folder, its Volume, bone labels on its grid, those labels as a NIfTI with axes
    i and k reversed)."""
    from napari_medseg.io import read_volume

    folder = samples_dir / CT / "example_ct_dicom"
    volume = read_volume(folder)
    labels = (volume.array > 200).astype(np.uint8)  # bone
    labels[:4, :60, :120] = 2  # a block in one corner: any flip moves it
    path = write_nifti_flipped(volume, labels, tmp_path / "bone_labels.nii.gz")
    return folder, volume, labels, path


def test_dicom_series_and_its_nifti_label_map_overlay(make_napari_viewer, samples_dir):
    """The TotalSegmentator pair: the NIfTI stores the DICOM rows in reverse order."""
    viewer = make_napari_viewer()
    ct = _open(viewer, samples_dir / CT / "example_ct_dicom")
    seg = _open(viewer, samples_dir / CT / "example_seg_dicom.nii.gz")
    assert type(seg).__name__ == "Labels" and ct.data.shape == seg.data.shape
    to_seg = np.linalg.solve(_affine(seg), _affine(ct))  # CT voxel -> label-map voxel
    assert not np.allclose(to_seg, np.eye(4))  # the files store the voxels differently
    for index in _corners_and_middle(ct.data.shape):
        world = np.asarray(ct.data_to_world(index))
        seg_index = (to_seg @ np.r_[index, 1.0])[:3]
        np.testing.assert_allclose(seg.data_to_world(seg_index), world, atol=1e-3)
        np.testing.assert_allclose(seg.world_to_data(world), seg_index, atol=1e-3)
        np.testing.assert_allclose(ct.world_to_data(world), index, atol=1e-3)
    np.testing.assert_allclose(seg.extent.world, ct.extent.world, atol=1e-3)
    # and through world coordinates the bone labels sit on bone, the aorta on contrast blood
    for value, low in ((VERTEBRA_T12, 150.0), (AORTA, 100.0)):
        found = np.median(_values_through_world(ct, seg, value))
        assert found > low, (value, found)


def test_nifti_written_by_nibabel_from_the_dicom_geometry_overlays(make_napari_viewer,
                                                                   samples_dir, tmp_path):
    folder, volume, labels, path = _bone_labels_written_flipped(samples_dir, tmp_path)
    viewer = make_napari_viewer()
    ct = _open(viewer, folder)
    lab = _open(viewer, path)
    assert type(lab).__name__ == "Labels"
    assert not np.array_equal(np.asarray(lab.data), labels)  # voxel order differs ...
    rng = np.random.default_rng(0)
    picks = [*_corners_and_middle(labels.shape), *np.argwhere(labels == 1)[::5000],
             *np.argwhere(labels == 2)[::2000], *rng.integers(0, labels.shape, (50, 3))]
    for index in picks:
        world = np.asarray(ct.data_to_world(index))
        there = tuple(np.round(lab.world_to_data(world)).astype(int))
        assert lab.data[there] == labels[tuple(index)], (index, there)  # ... the world agrees
    # what napari shows under the mouse (status bar, picking) agrees too
    index = tuple(np.argwhere(labels == 2)[0])
    world = np.asarray(ct.data_to_world(index))
    viewer.dims.set_point(0, float(world[0]))
    assert lab.get_value(world, world=True) == 2
    assert ct.get_value(world, world=True) == volume.array[index]


@pytest.mark.parametrize("name", ["example_ct.nii.gz", "example_ct_dicom"])
def test_display_is_radiological(make_napari_viewer, samples_dir, name):
    """Axial: down the screen = posterior, right = patient's left; coronal: down = inferior."""
    viewer = make_napari_viewer()
    layer = _open(viewer, samples_dir / CT / name)
    affine = _affine(layer)
    centre = np.asarray(layer.data_to_world([n // 2 for n in layer.data.shape]))

    def patient_direction(world_axis: int) -> np.ndarray:
        """RAS direction of one mm along ``world_axis``, through the layer and its affine."""
        step = np.zeros(3)
        step[world_axis] = 1.0
        voxels = np.asarray(layer.world_to_data(centre + step)) - layer.world_to_data(centre)
        ras = affine[:3, :3] @ voxels
        return ras / np.linalg.norm(ras)

    camera = getattr(viewer, "scene", viewer).camera
    assert tuple(map(str, camera.orientation2d)) == ("down", "right")  # napari's default
    assert tuple(viewer.dims.order) == (0, 1, 2)  # axial: rows = world 1, columns = world 2
    np.testing.assert_allclose(patient_direction(1), (0, -1, 0), atol=1e-6)  # posterior
    np.testing.assert_allclose(patient_direction(2), (-1, 0, 0), atol=1e-6)  # patient left
    viewer.dims.order = (1, 0, 2)  # coronal: rows = world 0
    assert tuple(viewer.dims.displayed) == (0, 2)
    np.testing.assert_allclose(patient_direction(0), (0, 0, -1), atol=1e-6)  # inferior


@pytest.mark.parametrize("image, labels", [("example_ct_sm.nii.gz", "example_seg.nii.gz"),
                                           ("example_ct_dicom", "example_seg_dicom.nii.gz")])
def test_anatomy_lands_where_radiologists_expect_it(make_napari_viewer, samples_dir, image,
                                                   labels):
    viewer = make_napari_viewer()
    ct = _open(viewer, samples_dir / CT / image)
    seg = _open(viewer, samples_dir / CT / labels)
    np.testing.assert_allclose(seg.extent.world, ct.extent.world, atol=1e-3)
    spine, aorta = _centroid_world(seg, VERTEBRA_T12), _centroid_world(seg, AORTA)
    cord = _centroid_world(seg, SPINAL_CORD)
    assert cord[1] > spine[1] > aorta[1]  # axial view: aorta above the spine, cord below it
    assert _centroid_world(seg, LIVER)[2] < _centroid_world(seg, SPLEEN)[2]  # liver on the left
    assert np.median(_values_through_world(ct, seg, VERTEBRA_T12, every=7)) > 100  # bone


def test_nifti_image_and_labels_round_trip_bit_exact(make_napari_viewer, samples_dir, tmp_path):
    from napari.plugins.io import save_layers

    viewer = make_napari_viewer()
    for name in ("example_ct.nii.gz", "example_seg_dicom.nii.gz"):
        source = samples_dir / CT / name
        layer = _open(viewer, source)
        out = tmp_path / f"again_{name}"
        save_layers(str(out), [layer], plugin=PLUGIN)
        before, after = nib.load(str(source)), nib.load(str(out))
        np.testing.assert_array_equal(after.affine, before.affine)
        np.testing.assert_array_equal(np.asarray(after.dataobj), np.asarray(before.dataobj))
        assert after.get_data_dtype() == before.get_data_dtype()
        again = _open(viewer, out)
        np.testing.assert_array_equal(_affine(again), _affine(layer))
        np.testing.assert_array_equal(again.scale, layer.scale)
        np.testing.assert_array_equal(again.translate, layer.translate)


def test_plain_layer_with_negative_scale_saves_and_reopens_in_place(make_napari_viewer,
                                                                    tmp_path):
    """A layer without MedSeg metadata (napari's own button) keeps its placement on disk."""
    from napari.plugins.io import save_layers

    viewer = make_napari_viewer()
    data = np.zeros((4, 5, 6), np.uint8)
    data[1, 2, 3] = 2
    layer = viewer.add_labels(data, scale=(-2.5, 0.8, -0.7), translate=(10, 20, 30))
    out = tmp_path / "plain.nii.gz"
    save_layers(str(out), [layer], plugin=PLUGIN)
    (again,) = viewer.open(str(out), plugin=PLUGIN)
    np.testing.assert_array_equal(again.data, data)
    np.testing.assert_allclose(again.scale, layer.scale)
    np.testing.assert_allclose(again.translate, layer.translate)
    np.testing.assert_allclose(again.data_to_world((1, 2, 3)), layer.data_to_world((1, 2, 3)))


def test_plain_labels_on_a_dicom_series_save_with_its_patient_orientation(make_napari_viewer,
                                                                         samples_dir, tmp_path):
    """napari's own *New labels layer* on a DICOM CT (no MedSeg metadata) saves oriented."""
    from napari.plugins.io import save_layers

    viewer = make_napari_viewer()
    ct = _open(viewer, samples_dir / CT / "example_ct_dicom")
    plain = viewer.add_labels(np.zeros(ct.data.shape, np.uint8), scale=ct.scale,
                              translate=ct.translate)
    plain.data[3, 10:20, 10:20] = 1
    out = tmp_path / "plain_on_dicom.nii.gz"
    save_layers(str(out), [plain], plugin=PLUGIN)
    img = nib.load(str(out))
    assert img.header["sform_code"] > 0
    from napari_medseg.io import read_volume

    back = read_volume(out)
    assert back.has_orientation
    np.testing.assert_allclose(back.affine, _affine(ct), atol=1e-4)


def test_contours_land_on_the_label_in_world_coordinates(make_napari_viewer, plugin_dock,
                                                         tmp_path):
    """Edit dock outlines over a flipped (RAS) volume: every vertex lies on the label's rim."""
    from napari_medseg.io import Volume, write_nifti
    from napari_medseg.ui._layers import add_labels_for_image

    affine = np.diag([-1.5, 2.0, 3.0, 1.0])[:, [2, 1, 0, 3]]  # array z, y, x -> S, A, -R
    affine[:3, 3] = (40.0, -20.0, 10.0)
    image = Volume(np.zeros((6, 20, 24), np.int16), (3.0, 2.0, 1.5), affine, "CT",
                   {"format": "nifti", "sform_code": 1, "qform_code": 1}, "ras")
    viewer = make_napari_viewer()
    img = _open(viewer, write_nifti(image, tmp_path / "ras.nii.gz"))
    assert img.scale[0] < 0 and img.scale[1] < 0  # flipped on screen: the case that matters
    blob = np.zeros(image.shape, np.uint8)
    blob[3, 5:12, 4:9] = 1
    labels = add_labels_for_image(viewer, img, blob)
    widget = plugin_dock(viewer, "EditWidget")
    widget.labels_combo.set_layer(labels)
    widget.set_label(1)
    viewer.dims.set_point(0, float(labels.data_to_world((3, 0, 0))[0]))
    shapes = widget._on_contours()
    assert len(shapes.data) >= 1
    for polygon in shapes.data:
        for vertex in polygon:
            world = np.asarray(shapes.data_to_world(vertex))
            z, y, x = labels.world_to_data(world)
            assert abs(z - 3) < 1e-6
            assert 4.5 - 1e-6 <= y <= 11.5 + 1e-6 and 3.5 - 1e-6 <= x <= 8.5 + 1e-6
            assert min(abs(y - 4.5), abs(y - 11.5), abs(x - 3.5), abs(x - 8.5)) < 0.51


def test_sagittal_acquisition_opens_upright_with_a_warning(make_napari_viewer, tmp_path):
    """napari cannot slice a permuted layer: it keeps its array order, says so, and is
    flipped so that its rows run head to feet (upright in the default view)."""
    from napari.utils.notifications import notification_manager

    from napari_medseg.io import Volume, write_nifti

    # array axis 0 runs left -> right, rows head -> feet, columns front -> back
    affine = np.array([[2.0, 0, 0, -40], [0, 0, -1.0, 60], [0, -1.0, 0, 80], [0, 0, 0, 1]])
    volume = Volume(np.zeros((5, 6, 7), np.int16), (2.0, 1.0, 1.0), affine, "MR",
                    {"format": "nifti", "sform_code": 1, "qform_code": 1}, "sagittal")
    viewer = make_napari_viewer()
    start = len(notification_manager.records)
    layer = _open(viewer, write_nifti(volume, tmp_path / "sagittal.nii.gz"))
    messages = [str(n.message) for n in notification_manager.records[start:]]
    assert any("sagittal or coronal" in m for m in messages), messages
    np.testing.assert_allclose(layer.scale, (-2.0, 1.0, 1.0))
    np.testing.assert_array_equal(_affine(layer), affine)


def test_evaluate_and_train_match_voxels_where_they_lie_in_the_patient(
        make_napari_viewer, qtbot, plugin_dock, samples_dir, tmp_path):
    """A prediction drawn on the DICOM series against a ground truth that another tool saved
    as NIfTI with other axis directions: the same voxels in the patient, so Dice is 1, and the
    Train dock gives the labels in the image's voxel order (before: raw arrays, Dice 0.04)."""
    from napari_medseg.ui._layers import add_labels_for_image

    folder, _volume, labels, path = _bone_labels_written_flipped(samples_dir, tmp_path)
    viewer = make_napari_viewer()
    ct = _open(viewer, folder)
    truth = _open(viewer, path)
    assert not np.array_equal(np.asarray(truth.data), labels)  # stored the other way
    pred = add_labels_for_image(viewer, ct, data=labels.copy(), name="prediction")
    evaluate = plugin_dock(viewer, "Evaluate")
    evaluate.pred_combo.set_layer(pred)
    evaluate.gt_combo.set_layer(truth)
    evaluate.compute_button.click()
    qtbot.waitUntil(lambda: bool(evaluate.results), timeout=60000)
    assert {name: row["dice"] for name, row in evaluate.results.items()} == {
        "label 1": 1.0, "label 2": 1.0}
    n_layers = len(viewer.layers)
    evaluate.diff_button.click()  # a large image: computed in a worker
    qtbot.waitUntil(lambda: len(viewer.layers) > n_layers, timeout=60000)
    errors = viewer.layers[-1]
    assert errors.name == "errors of prediction" and not np.asarray(errors.data).any()
    # the Train dock takes the ground truth in the series' voxel order
    train = plugin_dock(viewer, "Train")
    data = train.data_section
    for i, (image, lab) in enumerate(data._pairs):
        data.pair_list.item(i).setCheckState(
            Qt.Checked if (image.name, lab.name) == (ct.name, truth.name) else Qt.Unchecked)
    case = data.collect_cases("bone").cases[0]
    np.testing.assert_array_equal(case.labels, labels)
