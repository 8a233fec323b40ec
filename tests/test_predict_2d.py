"""Prediction on 2D pictures writes pictures: formats, registry, colour checks, atomic output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_medseg.inference import PredictionResult, predict_folder, predict_volume
from napari_medseg.inference.outputs import (
    OutputFormat,
    default_output_format,
    get_output_format,
    output_formats,
    register_output_format,
    write_prediction,
)
from napari_medseg.inference.predict import list_input_images, output_stem
from napari_medseg.io import Volume, read_nifti, read_volume, write_nifti
from napari_medseg.models import ModelCard, ModelLoadError, build_network, plan_network, save_model

RGB = ["red", "green", "blue"]
H, W = 37, 53  # not square: width and height cannot be swapped unnoticed


def make_model(folder: Path, in_channels: int = 3, dims: int = 2, classes: int = 3,
               channel_names: list[str] | None = None) -> Path:
    """A tiny untrained model (a few hundred weights) saved with its card."""
    torch.manual_seed(0)
    spec = plan_network(dims, in_channels, classes, [(2,) * dims, (2,) * dims],
                        base_channels=4, max_channels=8)
    card = ModelCard(
        task="Spots",
        classes=[{"value": v, "name": f"c{v}", "color": [0, 0, 0]} for v in range(classes)],
        dims=dims, in_channels=in_channels, patch_size=[16] * dims, network=spec,
        normalisation=[{"scheme": "zscore"}] * in_channels,
        channel_names=channel_names or (RGB if in_channels == 3 else ["image"]),
    )
    return save_model(build_network(spec), card, folder)


def rgb_picture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.indices((H, W))
    spot = ((y - 18) ** 2 + (x - 30) ** 2 < 80)
    img = rng.integers(0, 60, (H, W, 3))
    img[spot] += np.array([180, 40, 90])
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("models") / "colour")


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("models") / "grey", in_channels=1)


@pytest.fixture
def photo(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "photo.png"
    Image.fromarray(rgb_picture()).save(path)
    return path


def run(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_colour_png_gives_png_of_the_same_size_with_class_values(colour_model, photo, tmp_path):
    out = tmp_path / "out"
    written = run(predict_folder(colour_model, photo.parent, out, device="cpu"))
    assert written == [out / "photo.png"]
    assert sorted(p.name for p in out.iterdir()) == ["photo.png"]  # no temp files left
    with Image.open(out / "photo.png") as im:
        assert im.size == (W, H) and im.mode == "L"  # 8-bit greyscale
        back = np.asarray(im)
    assert set(np.unique(back)) <= {0, 1, 2}
    direct = predict_volume(colour_model, read_volume(photo), device="cpu")
    np.testing.assert_array_equal(back, direct.labels)  # the file holds exactly the prediction


def test_colour_model_whose_dataset_named_its_channels_r_g_b(tmp_path, photo):
    # nnU-Net's natural-image examples name the channels "R", "G", "B"
    model = make_model(tmp_path / "rgb_named", channel_names=["R", "G", "B"])
    written = run(predict_folder(model, photo, tmp_path / "out", device="cpu"))
    assert [p.name for p in written] == ["photo.png"]
    assert np.asarray(Image.open(written[0])).shape == (H, W)
    # and a greyscale picture is still refused, in the colour model's words
    Image.fromarray(rgb_picture()[..., 0]).save(tmp_path / "grey.png")
    with pytest.raises(ModelLoadError, match="trained on colour"):
        run(predict_folder(model, tmp_path / "grey.png", tmp_path / "out2", device="cpu"))


def test_format_nifti_gives_nifti_on_the_picture_grid(colour_model, photo, tmp_path):
    out = tmp_path / "out"
    written = run(predict_folder(colour_model, photo, out, device="cpu", output_format="nifti"))
    assert [p.name for p in written] == ["photo.nii.gz"]
    back = read_nifti(out / "photo.nii.gz")
    assert back.shape == (H, W) and back.array.dtype == np.uint8
    direct = predict_volume(colour_model, read_volume(photo), device="cpu")
    np.testing.assert_array_equal(back.array, direct.labels)


def test_probabilities_as_16_bit_png_round_trip(colour_model, photo, tmp_path):
    reference = read_volume(photo)
    result = predict_volume(colour_model, reference, device="cpu")
    paths = write_prediction(result, reference, tmp_path / "out", "photo", probabilities=True)
    assert [p.name for p in paths] == ["photo.png", "photo_prob_1.png", "photo_prob_2.png"]
    for value, path in zip((1, 2), paths[1:], strict=True):
        with Image.open(path) as im:
            assert im.size == (W, H) and im.mode.startswith("I")  # 16-bit
            q = np.asarray(im).astype(np.float64) / 65535.0
        np.testing.assert_allclose(q, result.probabilities[value], atol=1 / 65535)
        assert q.max() > q.min()  # not a constant picture


def test_probabilities_in_another_format(colour_model, photo, tmp_path):
    reference = read_volume(photo)
    result = predict_volume(colour_model, reference, device="cpu")
    paths = write_prediction(result, reference, tmp_path, "photo", probabilities="nifti")
    assert [p.name for p in paths] == ["photo.png", "photo_prob_1.nii.gz", "photo_prob_2.nii.gz"]
    prob = read_nifti(paths[2])
    np.testing.assert_allclose(prob.array, result.probabilities[2], atol=1e-6)
    labels_only = predict_volume(colour_model, reference, device="cpu", return_probabilities=False)
    with pytest.raises(ValueError, match="no probabilities"):
        write_prediction(labels_only, reference, tmp_path / "none", "photo", probabilities=True)
    assert not (tmp_path / "none").exists()


def test_greyscale_picture_with_colour_model_is_a_clear_error(colour_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rgb_picture()[..., 0]).save(folder / "xray.png")
    out = tmp_path / "out"
    with pytest.raises(ModelLoadError) as err:
        run(predict_folder(colour_model, folder, out, device="cpu"))
    text = str(err.value)
    assert "trained on colour (red, green, blue) images; this image is greyscale" in text
    assert "\n" not in text and not out.exists()


def test_colour_picture_with_greyscale_model_is_a_clear_error(grey_model, photo, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ModelLoadError, match="trained on greyscale images; this image is in "
                                             r"colour \(red, green, blue\)"):
        run(predict_folder(grey_model, photo, out, device="cpu"))
    assert not out.exists()


def test_greyscale_picture_stored_as_rgb_is_greyscale_for_a_greyscale_model(grey_model, tmp_path):
    # ultrasound exports and screenshots often store a greyscale picture as RGB (r = g = b);
    # a dataset of one channel takes such files as one channel, so prediction must too
    grey = rgb_picture(3)[..., 0]
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(grey).save(folder / "grey.png")
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(folder / "stored_as_rgb.png")
    assert read_volume(folder / "stored_as_rgb.png").rgb
    out = tmp_path / "out"
    run(predict_folder(grey_model, folder, out, device="cpu"))
    a, b = (np.asarray(Image.open(out / f"{n}.png")) for n in ("grey", "stored_as_rgb"))
    assert a.shape == (H, W)
    np.testing.assert_array_equal(a, b)
    # one channel differs by one grey level: a colour picture, still refused
    tinted = np.stack([grey] * 3, axis=-1)
    tinted[0, 0, 2] ^= 1
    with pytest.raises(ModelLoadError, match="this image is in colour"):
        run(predict_volume(grey_model, Volume(tinted, (1.0, 1.0), rgb=True), device="cpu"))


def test_multichannel_model_cannot_take_single_files(tmp_path, photo):
    t1t2 = make_model(tmp_path / "t1t2", in_channels=2, channel_names=["T1", "T2"])
    with pytest.raises(ModelLoadError, match="each input file holds 1"):
        run(predict_folder(t1t2, photo, tmp_path / "out", device="cpu"))
    assert not (tmp_path / "out").exists()


def test_3d_model_on_a_picture_says_so(tmp_path, photo):
    model = make_model(tmp_path / "m3", in_channels=3, dims=3)
    with pytest.raises(ModelLoadError, match="needs a 3D volume; the input is a 2D picture"):
        run(predict_folder(model, photo, tmp_path / "out", device="cpu"))
    assert not (tmp_path / "out").exists()


def test_3d_input_as_png_is_a_clear_error(grey_model, tmp_path):
    vol = Volume(np.random.default_rng(0).normal(size=(4, 20, 18)).astype(np.float32),
                 (1.0, 1.0, 1.0), name="scan")
    folder = tmp_path / "in"
    folder.mkdir()
    write_nifti(vol, folder / "scan.nii.gz")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="PNG format holds 2D images only; scan is a 3D image"):
        run(predict_folder(grey_model, folder, out, device="cpu", output_format="png"))
    assert not out.exists()
    # auto: a 3D volume still gets NIfTI
    written = run(predict_folder(grey_model, folder, out, device="cpu"))
    assert [p.name for p in written] == ["scan.nii.gz"]
    assert read_nifti(written[0]).shape == (4, 20, 18)
    result = predict_volume(grey_model, vol, device="cpu")
    with pytest.raises(ValueError, match="3D image"):
        write_prediction(result, vol, tmp_path / "direct", "scan", fmt="png")
    assert not (tmp_path / "direct").exists()


def test_unknown_format_lists_the_known_ones(colour_model, photo, tmp_path):
    with pytest.raises(ValueError) as err:
        get_output_format("jpeg2000")
    assert str(err.value) == ("Unknown output format 'jpeg2000'; choose one of: auto, "
                              + ", ".join(output_formats()) + ".")
    assert {"nifti", "png", "tif"} <= set(output_formats())
    assert get_output_format("TIFF").name == "tif" and get_output_format("nii.gz").name == "nifti"
    with pytest.raises(ValueError, match="Unknown output format"):
        run(predict_folder(colour_model, photo, tmp_path / "out", device="cpu",
                           output_format="jpeg2000"))
    assert not (tmp_path / "out").exists()


def _result(labels: np.ndarray, classes: int = 2) -> PredictionResult:
    card = ModelCard(task="t", classes=[{"value": v, "name": f"c{v}", "color": [0, 0, 0]}
                                        for v in range(classes)],
                     dims=2, in_channels=1, patch_size=[16, 16], network={}, normalisation=[])
    return PredictionResult(labels=labels, probabilities=None, entropy=None, card=card,
                            spacing=(1.0, 1.0), affine=np.eye(4))


def test_many_classes_give_a_16_bit_png_and_tif(tmp_path):
    labels = np.zeros((H, W), np.int32)
    labels[3:9, 5:20] = 300
    labels[20:, 30:] = 7
    ref = Volume(np.zeros((H, W), np.float32), (1.0, 1.0), metadata={"picture": True}, name="p")
    [png] = write_prediction(_result(labels, 301), ref, tmp_path, "p")
    with Image.open(png) as im:
        assert png.name == "p.png" and im.mode.startswith("I;16") and im.size == (W, H)
    np.testing.assert_array_equal(read_volume(png).array, labels)
    [tif] = write_prediction(_result(labels, 301), ref, tmp_path, "p", fmt="tif")
    back = read_volume(tif).array
    assert tif.name == "p.tif" and back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)
    small = write_prediction(_result(labels.clip(0, 7).astype(np.uint8), 8), ref, tmp_path, "q",
                             fmt="tif")[0]
    assert read_volume(small).array.dtype == np.uint8


@pytest.mark.parametrize(("volume", "source", "expected"), [
    (Volume(np.zeros((8, 9)), metadata={"picture": True, "format": "png"}), None, "png"),
    (Volume(np.zeros((8, 9, 3), np.uint8), rgb=True), None, "png"),
    (Volume(np.zeros((8, 9)), metadata={"format": "dicom"}), None, "png"),  # X-ray, US frame
    (Volume(np.zeros((8, 9))), "frame.dcm", "png"),
    (Volume(np.zeros((8, 9))), "shot.JPG", "png"),
    (Volume(np.zeros((8, 9)), metadata={"format": "nifti"}), "slice.nii.gz", "nifti"),
    (Volume(np.zeros((3, 8, 9)), metadata={"picture": True, "format": "tiff"}), "s.tif", "nifti"),
    (Volume(np.zeros((3, 8, 9)), metadata={"format": "dicom"}), None, "nifti"),
])
def test_auto_format_table(volume, source, expected):
    assert default_output_format(volume, source) == expected


@pytest.fixture
def fake_format():
    """A format registered by 'another module', removed afterwards."""
    from napari_medseg.inference import outputs

    calls = []

    def write_npy(result, reference, path):
        calls.append(path)
        with open(path, "wb") as fh:
            np.save(fh, result.labels)

    def write_broken(result, reference, path):
        path.write_bytes(b"half a file")
        raise OSError("disk full")

    register_output_format(OutputFormat("npy", ".npy", write_npy, description="numpy"))
    register_output_format(OutputFormat("broken", ".bin", write_broken))
    yield calls
    outputs._FORMATS.pop("npy", None)
    outputs._FORMATS.pop("broken", None)


def test_registry_takes_new_formats_and_failures_leave_nothing(fake_format, tmp_path):
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4) % 2
    ref = Volume(np.zeros((3, 4, 3), np.uint8), rgb=True, name="p")
    [path] = write_prediction(_result(labels), ref, tmp_path / "out", "p", fmt="npy")
    assert path == tmp_path / "out" / "p.npy" and len(fake_format) == 1
    np.testing.assert_array_equal(np.load(path), labels)
    with pytest.raises(ValueError, match="already registered"):
        register_output_format(OutputFormat("npy", ".npy", lambda *a: None))
    with pytest.raises(ValueError, match="cannot store probabilities"):
        write_prediction(_result(labels), ref, tmp_path / "out", "p", fmt="npy",
                         probabilities=True)
    with pytest.raises(OSError, match="disk full"):
        write_prediction(_result(labels), ref, tmp_path / "out", "p", fmt="broken")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.npy"]  # no temp, no .bin
    with pytest.raises(OSError, match="disk full"):
        write_prediction(_result(labels), ref, tmp_path / "new" / "deeper", "p", fmt="broken")
    assert not (tmp_path / "new" / "deeper").exists()  # the folder it made is gone too
    with pytest.raises(ValueError, match="does not match the image"):
        write_prediction(_result(labels.T), ref, tmp_path / "out", "p", fmt="npy")


def test_folder_of_pictures_and_volumes(grey_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    grey = rgb_picture()[..., 1]
    Image.fromarray(grey).save(folder / "a.png")
    Image.fromarray(grey).save(folder / "b.JPG", quality=95)
    Image.fromarray(grey).save(folder / "c.tif")
    Image.fromarray(grey).save(folder / "d.bmp")
    write_nifti(Volume(np.zeros((4, 20, 18), np.float32)), folder / "e.nii.gz")
    (folder / "notes.txt").write_text("not an image")
    assert [p.name for p in list_input_images(folder)] == ["a.png", "b.JPG", "c.tif", "d.bmp",
                                                           "e.nii.gz"]
    out = tmp_path / "out"
    written = run(predict_folder(grey_model, folder, out, device="cpu"))
    assert [p.name for p in written] == ["a.png", "b.png", "c.png", "d.png", "e.nii.gz"]
    for p in written[:4]:
        with Image.open(p) as im:
            assert im.size == (W, H)
    Image.fromarray(grey).save(folder / "a.jpeg")
    with pytest.raises(ValueError, match="a.jpeg and a.png would both be written as a"):
        run(predict_folder(grey_model, folder, tmp_path / "out2", device="cpu"))
    assert not (tmp_path / "out2").exists()
    assert output_stem("x/scan.nii.gz") == "scan" and output_stem("photo.Tiff") == "photo"
    assert output_stem("frame.dcm") == "frame" and output_stem(folder) == "in"


def test_unreadable_picture_is_one_line_and_writes_nothing(grey_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rgb_picture()[..., 0]).save(folder / "cut.png")
    data = (folder / "cut.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    with pytest.raises(ValueError) as err:
        run(predict_folder(grey_model, folder, out, device="cpu"))
    assert str(err.value).startswith("Cannot read cut.png") and "\n" not in str(err.value)
    assert not out.exists()


def test_output_names_drop_the_nnunet_channel_suffix():
    from napari_medseg.inference.predict import output_stem

    assert output_stem("imagesTs/Image_11L_0000.jpg") == "Image_11L"
    assert output_stem("case_0000.nii.gz") == "case"
    assert output_stem("case_0001.nii.gz") == "case_0001"
    assert output_stem("photo.JPG") == "photo"
