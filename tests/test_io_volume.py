"""Volume placement in napari's world (`Volume.napari_geometry`): one rule for every reader."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_medseg.io import Volume
from napari_medseg.io.volume import NAPARI_WORLD_FROM_RAS, nearest_world_axes

ORIENTED = {"format": "nifti", "sform_code": 1, "qform_code": 1}
SHAPE = (5, 6, 7)
SPACING = (2.5, 0.8, 0.7)


def _layer_world(geometry: dict, index) -> np.ndarray:
    """World position napari gives voxel ``index`` of a layer with this scale/translate."""
    return np.asarray(geometry["scale"]) * np.asarray(index, float) + geometry["translate"]


def _patient_world(volume: Volume, index) -> np.ndarray:
    """The same position from the affine: patient RAS mm, then the napari world axes."""
    pad = (0,) * (3 - volume.ndim) + tuple(index)
    ras = (volume.affine @ np.r_[pad, 1.0])[:3]
    return (NAPARI_WORLD_FROM_RAS @ ras)[3 - volume.ndim:]


def _axial_affine(signs, origin=(12.0, -30.0, 41.5)) -> np.ndarray:
    """Axial grid (array z, y, x along S, A, R) with each axis flipped by ``signs``."""
    affine = np.zeros((4, 4))
    for a, (row, s) in enumerate(zip((2, 1, 0), signs, strict=True)):
        affine[row, a] = s * SPACING[a]
    affine[:3, 3] = origin
    affine[3, 3] = 1.0
    return affine


def _corners_and_middle(shape) -> list[tuple[int, ...]]:
    corners = itertools.product(*((0, n - 1) for n in shape))
    return [*corners, tuple(n // 2 for n in shape)]


@pytest.mark.parametrize("signs", list(itertools.product((1, -1), repeat=3)))
def test_axis_aligned_volumes_are_placed_exactly_whatever_their_voxel_order(signs) -> None:
    volume = Volume(np.zeros(SHAPE, np.int16), SPACING, _axial_affine(signs), "CT", ORIENTED)
    geometry = volume.napari_geometry()
    assert geometry["aligned"] and geometry["world_axes"] == (0, 1, 2)
    assert np.allclose(np.abs(geometry["scale"]), SPACING)
    for index in _corners_and_middle(SHAPE):
        np.testing.assert_allclose(_layer_world(geometry, index), _patient_world(volume, index),
                                   atol=1e-9)


def test_radiological_display_directions() -> None:
    """World axis 0 runs to the feet, 1 to the back (down on screen), 2 to the patient's left
    (right on screen): a RAS NIfTI grid has all three scales negative, an LPS DICOM grid only
    the slice axis."""
    ras = Volume(np.zeros(SHAPE), SPACING, _axial_affine((1, 1, 1)), "CT", ORIENTED)
    assert all(s < 0 for s in ras.napari_geometry()["scale"])
    lps = Volume(np.zeros(SHAPE), SPACING, _axial_affine((1, -1, -1)), "CT", {"format": "dicom"})
    assert np.sign(lps.napari_geometry()["scale"]).tolist() == [-1, 1, 1]
    np.testing.assert_array_equal(NAPARI_WORLD_FROM_RAS @ [0, 0, 1], [-1, 0, 0])  # S: up
    np.testing.assert_array_equal(NAPARI_WORLD_FROM_RAS @ [0, 1, 0], [0, -1, 0])  # A: up
    np.testing.assert_array_equal(NAPARI_WORLD_FROM_RAS @ [1, 0, 0], [0, 0, -1])  # R: left
    assert np.linalg.det(NAPARI_WORLD_FROM_RAS) == 1.0  # right-handed: 3D is not mirrored


def test_same_grid_in_two_voxel_orders_overlays() -> None:
    """A NIfTI written from a DICOM series by another tool (rows flipped) lands on it."""
    dicom = Volume(np.zeros(SHAPE), SPACING, _axial_affine((1, -1, -1)), "CT", {"format": "dicom"})
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1.0, SHAPE[1] - 1  # array row j -> n-1-j
    nifti = Volume(np.zeros(SHAPE), SPACING, dicom.affine @ flip, "CT", ORIENTED)
    g_dicom, g_nifti = dicom.napari_geometry(), nifti.napari_geometry()
    for z, y, x in _corners_and_middle(SHAPE):
        np.testing.assert_allclose(_layer_world(g_dicom, (z, y, x)),
                                   _layer_world(g_nifti, (z, SHAPE[1] - 1 - y, x)), atol=1e-9)


@pytest.mark.parametrize("signs", [(1, -1, -1), (-1, 1, 1), (1, 1, -1)])
@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_on_grid_of_reorders_the_same_voxels_onto_another_voxel_order(signs, order) -> None:
    # oracle: each voxel's value is its own world position, so a wrong mapping shows
    image = Volume(np.zeros(SHAPE), SPACING, _axial_affine((1, -1, -1)), "CT", {"format": "dicom"})
    perm = np.zeros((4, 4))
    perm[3, 3] = 1.0
    moved_shape = tuple(SHAPE[a] for a in order)
    for new_axis, old_axis in enumerate(order):  # new index along new_axis = old index (signed)
        s = signs[new_axis]
        perm[old_axis, new_axis] = s
        perm[old_axis, 3] = 0 if s > 0 else moved_shape[new_axis] - 1
    labels_affine = image.affine @ perm
    idx = np.indices(moved_shape).reshape(3, -1)
    world = (labels_affine @ np.vstack([idx, np.ones(idx.shape[1])]))[:3]
    code = np.round(world[0] * 1e4 + world[1] * 1e2 + world[2], 3).reshape(moved_shape)
    labels = Volume(code, tuple(SPACING[a] for a in order), labels_affine, "CT", ORIENTED)
    out = labels.on_grid_of(image)
    assert out.shape == SHAPE
    ref_idx = np.indices(SHAPE).reshape(3, -1)
    ref_world = (image.affine @ np.vstack([ref_idx, np.ones(ref_idx.shape[1])]))[:3]
    expected = np.round(ref_world[0] * 1e4 + ref_world[1] * 1e2 + ref_world[2], 3)
    np.testing.assert_allclose(out.reshape(-1), expected, atol=1e-6)


def test_on_grid_of_refuses_grids_that_are_not_the_same_voxels() -> None:
    image = Volume(np.zeros(SHAPE), SPACING, _axial_affine((1, -1, -1)))
    shifted = image.affine.copy()
    shifted[0, 3] += 0.35  # a third of a voxel along x
    with pytest.raises(ValueError, match="not on the same grid"):
        Volume(np.zeros(SHAPE), SPACING, shifted).on_grid_of(image)
    with pytest.raises(ValueError, match="not on the same grid"):  # same shape, other spacing
        Volume(np.zeros(SHAPE), (2.5, 0.8, 0.8)).on_grid_of(Volume(np.zeros(SHAPE), SPACING))
    with pytest.raises(ValueError, match="not on the same grid"):  # other extent
        Volume(np.zeros((5, 6, 8)), SPACING).on_grid_of(Volume(np.zeros(SHAPE), SPACING))
    flat = Volume(np.arange(6.0).reshape(2, 3), (0.5, 0.5))
    np.testing.assert_array_equal(flat.on_grid_of(Volume(np.zeros((2, 3)), (0.5, 0.5))),
                                  flat.array)


def test_volume_without_orientation_keeps_its_own_scale_and_translate() -> None:
    plain = Volume(np.zeros(SHAPE), SPACING)
    assert plain.napari_geometry()["scale"] == SPACING  # positive, as before
    assert plain.napari_geometry()["translate"] == (0.0, 0.0, 0.0)
    # a plain napari layer with a negative scale, rebuilt as a Volume (ui fallback), gives back
    # the layer's own scale and translate
    affine = np.diag([-2.5, 0.8, -0.7, 1.0])
    affine[:3, 3] = (10.0, -20.0, 30.0)
    flipped = Volume(np.zeros(SHAPE), SPACING, affine)
    assert flipped.napari_geometry()["scale"] == (-2.5, 0.8, -0.7)
    assert flipped.napari_geometry()["translate"] == (10.0, -20.0, 30.0)
    picture = Volume(np.zeros((4, 6)), (0.5, 0.25))
    assert picture.napari_geometry()["scale"] == (0.5, 0.25)


def test_oblique_volume_uses_the_nearest_axis_aligned_frame() -> None:
    angle = np.radians(11.0)
    tilt = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                     [0, np.sin(angle), np.cos(angle)]])
    affine = _axial_affine((1, -1, -1))
    affine[:3, :3] = tilt @ affine[:3, :3]
    volume = Volume(np.zeros(SHAPE), SPACING, affine, "MR", {"format": "dicom"})
    geometry = volume.napari_geometry()
    assert geometry["aligned"] and np.sign(geometry["scale"]).tolist() == [-1, 1, 1]
    np.testing.assert_allclose(_layer_world(geometry, (0, 0, 0)), _patient_world(volume, (0, 0, 0)))


def test_sagittal_acquisition_keeps_array_order_and_is_shown_upright() -> None:
    # array axis 0 runs left -> right, rows run head -> feet, columns front -> back
    affine = np.array([[2.0, 0, 0, -40], [0, 0, -1.0, 60], [0, -1.0, 0, 80], [0, 0, 0, 1]])
    volume = Volume(np.zeros(SHAPE), (2.0, 1.0, 1.0), affine, "MR", ORIENTED)
    geometry = volume.napari_geometry()
    assert geometry["world_axes"] == (2, 0, 1) and not geometry["aligned"]
    # each axis runs toward left / inferior / posterior, so rows go down the screen to the feet
    assert geometry["scale"] == (-2.0, 1.0, 1.0)
    np.testing.assert_allclose(geometry["translate"],
                               (NAPARI_WORLD_FROM_RAS @ affine[:3, 3])[[2, 0, 1]])


def test_oriented_2d_slice_uses_the_in_plane_world_axes() -> None:
    affine = _axial_affine((1, 1, 1))  # RAS axial slice: rows anterior, columns right
    volume = Volume(np.zeros((6, 7)), SPACING[1:], affine, "CT", ORIENTED)
    geometry = volume.napari_geometry()
    assert geometry["aligned"] and geometry["world_axes"] == (1, 2)
    assert geometry["scale"] == (-0.8, -0.7)
    np.testing.assert_allclose(_layer_world(geometry, (5, 6)), _patient_world(volume, (5, 6)))


def test_nearest_world_axes_is_one_to_one() -> None:
    assert nearest_world_axes(np.diag([1.0, -1.0, 1.0])) == (0, 1, 2)
    assert nearest_world_axes(np.array([[0.0, 0, 2], [0, -1, 0], [3, 0, 0]])) == (2, 1, 0)
    # two columns equally close to world axis 0: still a permutation
    steps = np.array([[1.0, 1.0, 0], [1.0, -1.0, 0], [0, 0, 1.0]])
    assert sorted(nearest_world_axes(steps)) == [0, 1, 2]
