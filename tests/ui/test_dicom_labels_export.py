"""Labels drawn on a DICOM series save as DICOM SEG and RTSTRUCT from File > Save (issue 15)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("highdicom")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dicom_factory import write_ct_series  # noqa: E402
from ui_helpers import PLUGIN


def _labels_on_series(viewer, folder):
    from napari_medseg.ui._layers import add_labels_for_image

    (image,) = viewer.open(str(folder), plugin=PLUGIN)
    data = np.zeros(image.data.shape, np.uint8)
    data[2:6, 8:20, 8:20] = 1
    data[3:5, 22:28, 4:10] = 2
    labels = add_labels_for_image(viewer, image, data, name="organs",
                                  classes={1: {"name": "liver", "color": "#e6194b"},
                                           2: {"name": "kidney", "color": "#3cb44b"}})
    return image, labels, data


@pytest.mark.parametrize("suffix", [".seg.dcm", ".rtstruct.dcm"])
def test_save_labels_as_dicom_seg_and_rtstruct(make_napari_viewer, tmp_path, suffix):
    from napari.plugins.io import save_layers

    from napari_medseg.io import read_volume

    folder = write_ct_series(tmp_path / "ct")
    viewer = make_napari_viewer()
    _image, labels, data = _labels_on_series(viewer, folder)
    out = folder / f"organs{suffix}"  # beside its series: it reads back on that grid
    save_layers(str(out), [labels], plugin=PLUGIN)
    back = read_volume(out)
    assert back.shape == data.shape
    names = {str(v) for v in back.metadata["label_names"].values()}
    assert {"liver", "kidney"} <= names
    for value, name in ((1, "liver"), (2, "kidney")):
        key = next(k for k, v in back.metadata["label_names"].items() if v == name)
        got = back.array == int(key)
        want = data == value
        dice = 2 * (got & want).sum() / (got.sum() + want.sum())
        assert dice > (0.999 if suffix == ".seg.dcm" else 0.9), (name, dice)
    import pydicom

    ds = pydicom.dcmread(out)  # painted by hand: recorded so
    kinds = ({s.SegmentAlgorithmType for s in ds.SegmentSequence} if suffix == ".seg.dcm"
             else {r.ROIGenerationAlgorithm for r in ds.StructureSetROISequence})
    assert kinds == {"MANUAL"}


def test_labels_not_on_dicom_cannot_be_saved_as_seg(make_napari_viewer, tmp_path):
    from napari.plugins.io import save_layers

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((4, 8, 8), np.uint8))
    from napari_medseg._writer import write_labels_dicom_seg

    with pytest.raises(ValueError, match="not drawn on a DICOM series"):
        write_labels_dicom_seg(str(tmp_path / "x.seg.dcm"), layer.data, layer.as_layer_data_tuple()[1])
    try:
        save_layers(str(tmp_path / "y.seg.dcm"), [layer], plugin=PLUGIN)
    except Exception as exc:  # noqa: BLE001 - napari may pass the error on; one line
        assert "not drawn on a DICOM series" in str(exc)
    assert not list(tmp_path.glob("*.dcm"))  # nothing written


@pytest.mark.parametrize("suffix", [".seg.nrrd", ".nrrd", ".mha"])
def test_save_labels_as_nrrd_and_metaimage(make_napari_viewer, tmp_path, suffix):
    """File > Save of a Labels layer as NRRD / MetaImage: the values, the image's geometry in
    patient space and (NRRD) the class names, as the README promises."""
    from napari.plugins.io import save_layers

    from napari_medseg.io import read_volume

    folder = write_ct_series(tmp_path / "ct")
    viewer = make_napari_viewer()
    _image, labels, data = _labels_on_series(viewer, folder)
    out = tmp_path / f"organs{suffix}"
    assert save_layers(str(out), [labels], plugin=PLUGIN) == [str(out)]
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, data)
    np.testing.assert_allclose(back.affine, read_volume(folder).affine, atol=1e-4)
    if suffix != ".mha":
        assert {"liver", "kidney"} <= {str(v) for v in back.metadata["label_names"].values()}
