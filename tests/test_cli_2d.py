"""``napari-medseg predict`` / ``info`` on 2D and colour pictures, through ``cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_medseg.cli import main
from napari_medseg.io import Volume, read_nifti, write_nifti
from napari_medseg.models import ModelCard, build_network, plan_network, save_model

CPU = ["--device", "cpu", "--threads", "1", "--quiet"]
H, W = 37, 53  # not square: width and height cannot be swapped unnoticed


def make_model(folder: Path, in_channels: int = 3, dims: int = 2) -> Path:
    """A tiny untrained 3-class model; 3 channels = colour (red, green, blue)."""
    torch.manual_seed(0)
    spec = plan_network(dims, in_channels, 3, [(2,) * dims, (2,) * dims], base_channels=4,
                        max_channels=8)
    card = ModelCard(
        task="Spots", classes=[{"value": v, "name": f"c{v}", "color": [0, 0, 0]} for v in range(3)],
        dims=dims, in_channels=in_channels, patch_size=[16] * dims, network=spec,
        normalisation=[{"scheme": "zscore"}] * in_channels,
        channel_names=["red", "green", "blue"] if in_channels == 3 else ["image"],
    )
    return save_model(build_network(spec), card, folder)


def rgb_picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.indices((H, W))
    img = rng.integers(0, 60, (H, W, 3))
    img[(y - 18) ** 2 + (x - 30) ** 2 < 80] += np.array([180, 40, 90])
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli2d")
    return {"colour": make_model(root / "colour"),
            "grey": make_model(root / "grey", in_channels=1),
            "grey3d": make_model(root / "grey3d", in_channels=1, dims=3)}


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in" / "fundus_01.png"
    path.parent.mkdir()
    Image.fromarray(rgb_picture()).save(path)
    return path


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(code, out, err):
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-medseg predict: error: "), err
    return lines[0]


def test_predict_picture_writes_png(models, photo, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "predict", "--model", models["colour"], photo, "--out", out,
                            *CPU)
    assert code == 0, err
    assert stdout.splitlines() == [str(out / "fundus_01.png")]
    with Image.open(out / "fundus_01.png") as im:
        assert im.size == (W, H) and im.mode == "L"
        assert set(np.unique(np.asarray(im))) <= {0, 1, 2}


def test_predict_format_nifti_and_probabilities(models, photo, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = cli(capsys, "predict", "--model", models["colour"], photo.parent,
                            "--out", out, "--format", "nifti", *CPU)
    assert code == 0, err
    assert stdout.splitlines() == [str(out / "fundus_01.nii.gz")]
    assert read_nifti(out / "fundus_01.nii.gz").shape == (H, W)
    probs = tmp_path / "probs"
    code, stdout, err = cli(capsys, "predict", "--model", models["colour"], photo, "--out", probs,
                            "--probabilities", *CPU)
    assert code == 0, err
    assert [p.split("/")[-1] for p in stdout.splitlines()] == [
        "fundus_01.png", "fundus_01_prob_1.png", "fundus_01_prob_2.png"]
    with Image.open(probs / "fundus_01_prob_1.png") as im:
        assert im.mode.startswith("I;16") and im.size == (W, H)
    code, stdout, err = cli(capsys, "predict", "--model", models["colour"], photo, "--out",
                            tmp_path / "p2", "--probabilities-format", "nifti", *CPU)
    assert code == 0, err
    assert [p.split("/")[-1] for p in stdout.splitlines()] == [
        "fundus_01.png", "fundus_01_prob_1.nii.gz", "fundus_01_prob_2.nii.gz"]


def test_channel_mismatch_is_one_line_and_writes_nothing(models, photo, tmp_path, capsys):
    grey = tmp_path / "grey" / "xray.png"
    grey.parent.mkdir()
    Image.fromarray(rgb_picture()[..., 0]).save(grey)
    out = tmp_path / "out"
    line = one_error_line(*cli(capsys, "predict", "--model", models["colour"], grey,
                               "--out", out, *CPU))
    assert "trained on colour (red, green, blue) images; this image is greyscale" in line
    assert not out.exists()
    line = one_error_line(*cli(capsys, "predict", "--model", models["grey"], photo,
                               "--out", out, *CPU))
    assert "trained on greyscale images; this image is in colour" in line
    assert not out.exists()


def test_3d_model_on_picture_and_3d_input_as_png(models, photo, tmp_path, capsys):
    out = tmp_path / "out"
    grey = tmp_path / "grey.png"
    Image.fromarray(rgb_picture()[..., 2]).save(grey)
    line = one_error_line(*cli(capsys, "predict", "--model", models["grey3d"], grey,
                               "--out", out, *CPU))
    assert "needs a 3D volume" in line and "2D picture" in line and not out.exists()
    scan = tmp_path / "scan.nii.gz"
    write_nifti(Volume(np.zeros((4, 20, 18), np.float32), name="scan"), scan)
    line = one_error_line(*cli(capsys, "predict", "--model", models["grey"], scan, "--out", out,
                               "--format", "png", *CPU))
    assert "PNG format holds 2D images only" in line and "nifti" in line and not out.exists()


def test_unknown_format_and_unreadable_picture(models, photo, tmp_path, capsys):
    out = tmp_path / "out"
    line = one_error_line(*cli(capsys, "predict", "--model", models["colour"], photo,
                               "--out", out, "--format", "bmp", *CPU))
    assert "Unknown output format 'bmp'; choose one of: auto, nifti, png, tif" in line
    assert not out.exists()
    bad = tmp_path / "bad" / "cut.jpg"
    bad.parent.mkdir()
    Image.fromarray(rgb_picture()).save(bad)
    bad.write_bytes(bad.read_bytes()[:200])
    line = one_error_line(*cli(capsys, "predict", "--model", models["colour"], bad.parent,
                               "--out", out, *CPU))
    assert "Cannot read cut.jpg" in line and not out.exists()


def test_help_lists_formats(capsys):
    with pytest.raises(SystemExit) as done:
        main(["predict", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--format FORMAT" in text and "nifti, png, tif" in text and "--probabilities" in text


def test_info_on_a_photo(photo, capsys):
    code, stdout, err = cli(capsys, "info", photo)
    assert code == 0, err
    info = json.loads(stdout)
    assert info["shape"] == [H, W] and info["rgb"] is True and info["n_channels"] == 3
    assert info["format"] == "png"


def test_train_that_ends_before_its_first_step_fails_and_leaves_no_folder(capsys, tmp_path):
    root = tmp_path / "ds"
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rgb_picture()).save(root / "imagesTr" / f"c{i}_0000.png")
        mask = (rgb_picture()[..., 0] > 150).astype(np.uint8)
        Image.fromarray(mask).save(root / "labelsTr" / f"c{i}.png")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "spot": 1},
        "numTraining": 3, "file_ending": ".png"}))
    out = tmp_path / "model"
    code, stdout, err = cli(capsys, "train", root, "--out", out, "--time-budget-s", "0.001",
                            "--quiet")
    assert code == 2 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-medseg train: error: no model was "
                                                   "written"), err
    assert not out.exists()  # no empty folder that looks like a model
