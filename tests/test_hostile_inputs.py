"""Hostile and unlucky inputs end in a clear error or a warning the user sees (issue 14).

Silently wrong results become errors or warnings: a damaged DICOM slice left out, NaN label
voxels, a label file on another grid, label values ``dataset.json`` does not name, an
implausible DICOM PixelSpacing. Garbage ``dataset.json`` files, model cards, weights and
command-line options end in one stderr line and exit status 2.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from dicom_factory import write_ct_series

from napari_medseg.cli import main
from napari_medseg.dataset.msd import DatasetError, load_msd_dataset, read_dataset_json
from napari_medseg.io import read_volume
from napari_medseg.io.errors import MedsegIOWarning
from napari_medseg.models import ModelCard, build_network, plan_network, save_model
from napari_medseg.models.card import ModelLoadError, load_model, read_card


def _cli(argv: list[str]) -> tuple[int, list[str], str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return rc, [ln for ln in err.getvalue().splitlines() if ln.strip()], out.getvalue()


def _one_error_line(argv: list[str]) -> str:
    rc, lines, _ = _cli(argv)
    assert rc == 2 and len(lines) == 1, (rc, lines)
    assert "Traceback" not in lines[0] and "internal problem" not in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------------
# DICOM


@pytest.mark.parametrize("cut", [60, 200, 400])
def test_a_damaged_last_dicom_slice_is_warned_about(tmp_path: Path, cut: int) -> None:
    folder = write_ct_series(tmp_path / "ct")
    last = folder / "001.dcm"  # files are named in reverse order: 001 is the last slice
    last.write_bytes(last.read_bytes()[:cut])
    with pytest.warns(MedsegIOWarning, match=r"damaged and were left out \(001.dcm\)"):
        volume = read_volume(folder)
    assert volume.shape[0] == 7
    assert any("001.dcm" in w for w in volume.metadata["warnings"])
    rc, _, out = _cli(["info", str(folder)])
    assert rc == 0 and any("001.dcm" in w for w in json.loads(out)["warnings"])


def test_a_folder_with_a_readme_is_not_damaged(tmp_path: Path) -> None:
    folder = write_ct_series(tmp_path / "ct")
    (folder / "README.txt").write_text("scanned on the new CT")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegIOWarning)
        assert read_volume(folder).shape[0] == 8


@pytest.mark.parametrize("value", [[0, 0], [1e6, 1e6], [-0.7, 0.7]])
def test_implausible_pixel_spacing_falls_back_with_a_warning(tmp_path: Path, value) -> None:
    folder = write_ct_series(tmp_path / "ct")
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelSpacing = value
        ds.save_as(f)
    with pytest.warns(MedsegIOWarning, match="not a plausible pixel size"):
        volume = read_volume(folder)
    assert volume.spacing[1:] == (1.0, 1.0)
    assert volume.metadata["spacing_known"] is False
    assert all(np.isfinite(volume.affine).ravel())


# --------------------------------------------------------------------------------------------
# datasets


def _dataset(root: Path, n: int = 2, labels: dict | None = None) -> Path:
    """A tiny MSD dataset: n cases of 12^3 voxels, 1 mm, labels 0/1."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    training = []
    for i in range(n):
        image = rng.normal(size=(12, 12, 12)).astype(np.float32)
        lab = np.zeros((12, 12, 12), np.uint8)
        lab[3:8, 3:8, 3:8] = 1
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / "imagesTr" / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image(lab, np.eye(4)), root / "labelsTr" / f"c{i}.nii.gz")
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    meta = {"name": "tiny", "modality": {"0": "MRI"},
            "labels": labels or {"0": "background", "1": "organ"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_the_tiny_dataset_loads(tmp_path: Path) -> None:
    assert len(load_msd_dataset(_dataset(tmp_path / "d")).cases) == 2


def test_nan_label_voxels_are_an_error(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d")
    lab = np.zeros((12, 12, 12), np.float32)
    lab[3:8, 3:8, 3:8] = 1
    lab[0, 0, :5] = np.nan
    nib.save(nib.Nifti1Image(lab, np.eye(4)), root / "labelsTr" / "c1.nii.gz")
    with pytest.raises(DatasetError, match=r"Case c1: .*c1.nii.gz.* 5 label voxel\(s\) are NaN"):
        load_msd_dataset(root)


def test_labels_on_another_grid_are_an_error(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d")
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[3:8, 3:8, 3:8] = 1
    nib.save(nib.Nifti1Image(lab, np.diag([3.0, 3.0, 3.0, 1.0])),
             root / "labelsTr" / "c0.nii.gz")
    with pytest.raises(DatasetError, match=r"Case c0: .*another grid.*voxel size \(3\.0"):
        load_msd_dataset(root)


def test_labels_with_a_shifted_origin_are_an_error(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d")
    affine = np.eye(4)
    affine[:3, 3] = [5.0, 0, 0]
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[3:8, 3:8, 3:8] = 1
    nib.save(nib.Nifti1Image(lab, affine), root / "labelsTr" / "c0.nii.gz")
    with pytest.raises(DatasetError, match=r"Case c0: .*origin 5\.0 mm"):
        load_msd_dataset(root)


def test_a_tiny_grid_difference_is_accepted(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d")
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[3:8, 3:8, 3:8] = 1
    nib.save(nib.Nifti1Image(lab, np.diag([1.001, 1.0, 0.999, 1.0])),
             root / "labelsTr" / "c0.nii.gz")
    assert len(load_msd_dataset(root).cases) == 2


@pytest.mark.parametrize("value", [2, 7])
def test_a_label_value_dataset_json_does_not_name_is_an_error(tmp_path: Path, value) -> None:
    root = _dataset(tmp_path / "d", labels={"0": "background", "1": "organ", "3": "other"})
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[3:8, 3:8, 3:8] = 1
    lab[0, 0, 0] = value
    lab[1, 1, 1] = 255  # ignore: always allowed
    nib.save(nib.Nifti1Image(lab, np.eye(4)), root / "labelsTr" / "c1.nii.gz")
    with pytest.raises(DatasetError, match=rf"Case c1: c1.nii.gz holds label value\(s\) \{{{value}\}}"):
        load_msd_dataset(root)


def test_ignore_label_is_not_an_unnamed_value(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d")
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[3:8, 3:8, 3:8] = 1
    lab[0] = 255
    nib.save(nib.Nifti1Image(lab, np.eye(4)), root / "labelsTr" / "c1.nii.gz")
    assert len(load_msd_dataset(root).cases) == 2


GARBAGE_DATASET_JSON = {
    "list": "[]",
    "number": "5",
    "modality_5": {"modality": 5},
    "modality_list": {"modality": ["MRI"]},
    "training_5": {"training": [5]},
    "training_dict": {"training": {"a": 1}},
    "image_5": {"training": [{"image": 5, "label": "./labelsTr/c0.nii.gz"}]},
    "label_5": {"training": [{"image": "./imagesTr/c0.nii.gz", "label": 5}]},
    "label_name_5": {"labels": {"0": "background", "1": 5}},
    "deep": "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("kind", sorted(GARBAGE_DATASET_JSON))
def test_garbage_dataset_json_is_one_line(tmp_path: Path, kind: str) -> None:
    root = _dataset(tmp_path / "d")
    change = GARBAGE_DATASET_JSON[kind]
    if isinstance(change, str):
        text = change
    else:
        text = json.dumps({**json.loads((root / "dataset.json").read_text()), **change})
    (root / "dataset.json").write_text(text)
    with pytest.raises(DatasetError):
        read_dataset_json(root)
    line = _one_error_line(["train", str(root), "--out", str(tmp_path / "m"),
                            "--time-budget-s", "5", "--device", "cpu"])
    assert "dataset.json" in line
    assert not (tmp_path / "m" / "model.pt").exists()


# --------------------------------------------------------------------------------------------
# model cards and weights


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model") / "model"
    spec = plan_network(3, 1, 2, [[2, 2, 2]], base_channels=4, max_channels=8)
    card = ModelCard(task="tiny", classes=[{"value": 0, "name": "background", "color": [0, 0, 0]},
                                           {"value": 1, "name": "organ", "color": [255, 0, 0]}],
                     dims=3, in_channels=1, patch_size=[8, 8, 8], network=spec, spacing=[1, 1, 1],
                     normalisation=[{"scheme": "zscore", "mean": 0.0, "std": 1.0}], modality="MR")
    return save_model(build_network(spec), card, folder)


def _edit_card(src: Path, dst: Path, change) -> Path:
    shutil.copytree(src, dst)
    data = json.loads((dst / "model_card.json").read_text())
    text = change(data)
    (dst / "model_card.json").write_text(text if isinstance(text, str) else json.dumps(data))
    return dst


GARBAGE_CARDS = {
    "deep_nesting": (lambda c: "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "deep_nesting_inside": (
        lambda c: json.dumps({**c, "train_config": None}).replace(
            '"train_config": null', '"train_config": ' + "[" * 50_000 + "]" * 50_000),
        "nested too deeply"),
    "class_without_name": (lambda c: c["classes"][1].pop("name") and None, "class 1 has no name"),
    "classes_not_a_list": (lambda c: c.update(classes="organ"), "'classes'"),
    "class_value_text": (lambda c: c["classes"][1].update(value="1"), "class 2 has no label"),
    "dims_4": (lambda c: c.update(dims=4), "'dims' must be 2 or 3"),
    "dims_text": (lambda c: c.update(dims="3"), "'dims' must be 2 or 3"),
    "spacing_0.01": (lambda c: c.update(spacing=[0.01, 0.01, 0.01]), "target spacing"),
    "spacing_0": (lambda c: c.update(spacing=[0, 1, 1]), "target spacing"),
    "spacing_nan": (lambda c: "NaN".join(json.dumps({**c, "spacing": [1, 1, 12345]}).rsplit(
        "12345", 1)), "'spacing'"),
    "patch_text": (lambda c: c.update(patch_size=["x", 8, 8]), "'patch_size'"),
    "patch_huge": (lambda c: c.update(patch_size=[4096, 4096, 4096]), "too large"),
    "in_channels_neg": (lambda c: c.update(in_channels=-1), "'in_channels'"),
    "network_list": (lambda c: c.update(network=[1]), "'network'"),
    "normalisation_text": (lambda c: c.update(normalisation="zscore"), "'normalisation'"),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE_CARDS))
def test_garbage_model_cards_are_refused(tiny_model: Path, tmp_path: Path, kind: str) -> None:
    change, words = GARBAGE_CARDS[kind]
    model = _edit_card(tiny_model, tmp_path / "m", change)
    with pytest.raises(ModelLoadError, match=words.replace("(", r"\(")):
        read_card(model)
    image = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), np.eye(4)), image)
    line = _one_error_line(["predict", "--model", str(model), str(image), "--out",
                            str(tmp_path / "out"), "--device", "cpu"])
    assert "model_card.json" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_weights_holding_a_list_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "m"
    shutil.copytree(tiny_model, model)
    torch.save([1, 2, 3], model / "model.pt")
    _edit = json.loads((model / "model_card.json").read_text())
    _edit["weights_sha256"] = None  # a card without checksum (written by an older version)
    (model / "model_card.json").write_text(json.dumps(_edit))
    with pytest.raises(ModelLoadError, match="does not hold network weights.*list"):
        load_model(model)


def test_the_tiny_model_loads(tiny_model: Path) -> None:
    _, card = load_model(tiny_model)
    assert card.spacing == [1, 1, 1]


# --------------------------------------------------------------------------------------------
# command-line options


BAD_OPTIONS = [
    (["--threads", "-1"], "--threads"),
    (["--threads", "0"], "--threads"),
    (["--base-channels", "0"], "--base-channels"),
    (["--patch-size", "4096", "4096", "4096"], "--patch-size"),
    (["--patch-size", "2", "16", "16"], "--patch-size"),
    (["--patch-size", "16"], "--patch-size"),
    (["--time-budget-s", "-5"], "--time-budget-s"),
    (["--time-budget-s", "nan"], "--time-budget-s"),
    (["--max-epochs", "-1"], "--max-epochs"),
    (["--steps-per-epoch", "0"], "--steps-per-epoch"),
    (["--batch-size", "0"], "--batch-size"),
    (["--early-stopping", "0"], "--early-stopping"),
    (["--lr", "-1"], "--lr"),
    (["--val-fraction", "2"], "--val-fraction"),
    (["--fold", "-1"], "--fold"),
]


@pytest.mark.parametrize("option, name", BAD_OPTIONS, ids=[" ".join(o) for o, _ in BAD_OPTIONS])
def test_bad_train_options_are_one_line(tmp_path: Path, option, name) -> None:
    root = _dataset(tmp_path / "d")
    line = _one_error_line(["train", str(root), "--out", str(tmp_path / "m"), "--device", "cpu",
                            *option])
    assert name in line
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("option, name", [(["--threads", "-1"], "--threads"),
                                          (["--overlap", "1"], "--overlap"),
                                          (["--overlap", "-0.5"], "--overlap")])
def test_bad_predict_options_are_one_line(tiny_model: Path, tmp_path: Path, option, name) -> None:
    image = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), np.eye(4)), image)
    line = _one_error_line(["predict", "--model", str(tiny_model), str(image), "--out",
                            str(tmp_path / "out"), "--device", "cpu", *option])
    assert name in line
