"""predict --format nrrd | mha | dicom-seg | rtstruct, info on those files, export (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("highdicom")
pytest.importorskip("SimpleITK")

from dicom_factory import write_ct_series  # noqa: E402

from napari_medseg.cli import main  # noqa: E402
from napari_medseg.io import read_volume  # noqa: E402
from napari_medseg.models import (  # noqa: E402
    ModelCard,
    build_network,
    plan_network,
    plan_patch_size,
    save_model,
)


class _Threshold(torch.nn.Module):
    """An oracle 'network': class 1 where the (normalised) input is above 0."""

    def forward(self, x):
        fg = (x[:, :1] > 0).float() * 20 - 10
        return torch.cat([-fg, fg], dim=1)


@pytest.fixture
def oracle_model(tmp_path):
    _, strides = plan_patch_size((8, 16, 16))
    spec = plan_network(3, 1, 2, strides, base_channels=4, max_channels=8)
    card = ModelCard(task="Blob", classes=[{"value": 0, "name": "background", "color": [0, 0, 0]},
                                           {"value": 1, "name": "blob", "color": [255, 0, 0]}],
                     dims=3, in_channels=1, patch_size=[8, 16, 16], network=spec,
                     normalisation=[{"scheme": "zscore", "mean": 0.0, "std": 1.0}], modality="CT")
    return save_model(build_network(spec), card, tmp_path / "model"), card


def _predict(model_dir, src, out, fmt, monkeypatch=None):
    return main(["predict", "--model", str(model_dir), str(src), "--out", str(out),
                 "--format", fmt, "--device", "cpu", "--quiet"])


@pytest.mark.parametrize("fmt,suffix", [("nrrd", ".nrrd"), ("mha", ".mha"),
                                        ("dicom-seg", ".seg.dcm"),
                                        ("rtstruct", ".rtstruct.dcm")])
def test_predict_writes_clinical_formats_that_read_back(tmp_path, oracle_model, fmt, suffix,
                                                          monkeypatch):
    model_dir, _ = oracle_model
    series = write_ct_series(tmp_path / "ct")
    import importlib

    predict_module = importlib.import_module("napari_medseg.inference.predict")

    real = predict_module._as_model
    monkeypatch.setattr(predict_module, "_as_model",
                        lambda m, dev: (_Threshold(), real(m, dev)[1]))
    assert _predict(model_dir, series, tmp_path / "nii", "nifti") == 0
    (nii,) = (tmp_path / "nii").glob("*.nii.gz")
    reference = read_volume(nii).array
    assert reference.any() and not reference.all()
    assert _predict(model_dir, series, tmp_path / fmt, fmt) == 0
    (written,) = (tmp_path / fmt).glob(f"*{suffix}")
    back = read_volume(written)
    assert back.shape == reference.shape
    if fmt == "rtstruct":  # contours approximate the voxels
        a, b = back.array > 0, reference > 0
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9
    else:
        np.testing.assert_array_equal(back.array > 0, reference > 0)
    assert main(["info", str(written)]) == 0


def test_dicom_seg_needs_a_dicom_input(tmp_path, oracle_model, capsys):
    model_dir, _ = oracle_model
    from napari_medseg.io import Volume, write_nifti

    nii = write_nifti(Volume(np.random.default_rng(0).normal(size=(8, 16, 16)).astype("float32"),
                             name="x"), tmp_path / "x.nii.gz")
    assert _predict(model_dir, nii, tmp_path / "out", "dicom-seg") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DICOM" in err[0]


@pytest.mark.parametrize("fmt,name", [("torchscript", "m.pt"), ("onnx", "m.onnx")])
def test_export_command(tmp_path, oracle_model, fmt, name, capsys):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    model_dir, card = oracle_model
    out = tmp_path / name
    assert main(["export", "--model", str(model_dir), "--format", fmt, str(out)]) == 0
    assert out.is_file()
    assert "Exported" in capsys.readouterr().out
    meta = json.loads(next(tmp_path.glob("*.model_card.json")).read_text())
    assert meta["task"] == "Blob"
