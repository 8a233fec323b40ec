"""Inference: predict() on the input grid, TTA, 2D models, post-processing, folders, errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_medseg.inference import (
    keep_largest_component,
    list_input_images,
    load_model,
    predict,
    predict_folder,
    predict_volume,
    resolve_device,
)
from napari_medseg.io import Volume, read_nifti, write_nifti
from napari_medseg.models import ModelCard, ModelLoadError, build_network, plan_network, save_model
from napari_medseg.models.engine import count_windows


def _model_dir(tmp_path, dims=3, in_channels=1, spacing=(1.0, 1.0, 1.0), name="m", classes=3):
    torch.manual_seed(0)
    spec = plan_network(dims, in_channels, classes, [(2,) * dims, (2,) * dims], base_channels=4,
                        max_channels=8)
    card = ModelCard(
        task="Blobs",
        classes=[{"value": v, "name": f"c{v}", "color": [0, 0, 0]} for v in range(classes)],
        dims=dims, in_channels=in_channels, patch_size=[16] * dims, network=spec,
        normalisation=[{"scheme": "zscore"}] * in_channels,
        spacing=list(spacing) if dims == 3 else [None, *spacing[-2:]],
    )
    return save_model(build_network(spec), card, tmp_path / name)


def _volume(shape=(20, 24, 18), spacing=(2.0, 1.0, 1.0)):
    rng = np.random.default_rng(0)
    affine = np.array([[0, 0, -spacing[2], 10.0], [0, spacing[1], 0, -5.0],
                       [spacing[0], 0, 0, 3.0], [0, 0, 0, 1]])
    return Volume(rng.normal(size=shape).astype(np.float32), spacing, affine, "MR", name="vol")


def test_predict_returns_labels_on_the_input_grid(tmp_path):
    model_dir = _model_dir(tmp_path)
    vol = _volume()  # spacing differs from the model's: resampled there and back
    events = list(predict(model_dir, vol, device="cpu"))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finished" and "step" in kinds
    assert set(kinds[1:-1]) <= {"step", "message"}
    result = events[-1].result
    assert result.labels.shape == vol.shape and result.labels.dtype == np.uint8
    assert result.probabilities.shape == (3, *vol.shape)
    np.testing.assert_allclose(result.probabilities.sum(0), 1.0, atol=1e-4)
    assert result.entropy.shape == vol.shape and 0 <= result.entropy.min() <= result.entropy.max() <= 1
    np.testing.assert_array_equal(result.labels, result.probabilities.argmax(0))
    out = result.to_volume(vol)
    np.testing.assert_array_equal(out.affine, vol.affine)
    assert out.spacing == vol.spacing


def test_tta_runs_all_mirror_passes_and_stays_normalised(tmp_path):
    model = load_model(_model_dir(tmp_path))
    vol = _volume(spacing=(1.0, 1.0, 1.0))
    events = list(predict(model, vol, tta=True, device="cpu"))
    steps = [e for e in events if e.kind == "step"]
    # a report after each of the 8 mirror passes (the last one as "all windows done")
    assert len(steps) >= 8 and steps[-1].step == steps[-1].total == events[0].total
    assert events[0].total == 8 * count_windows((20, 24, 18), (16, 16, 16))
    res = events[-1].result
    np.testing.assert_allclose(res.probabilities.sum(0), 1.0, atol=1e-4)
    plain = predict_volume(model, vol, device="cpu")
    assert not np.allclose(plain.probabilities, res.probabilities)
    light = predict_volume(model, vol, device="cpu", return_probabilities=False)
    assert light.probabilities is None and light.entropy is None


def test_predict_cancel_between_passes(tmp_path):
    model = load_model(_model_dir(tmp_path))
    events = list(predict(model, _volume(), tta=True, device="cpu", should_stop=lambda: True))
    assert events[-1].kind == "cancelled"


@pytest.mark.parametrize(("shape", "roi", "overlap"), [
    ((20, 24, 18), (16, 16, 16), 0.25), ((7, 40, 41), (16, 16, 16), 0.5), ((16, 16), (16, 16), 0.25),
    ((100, 3), (32, 8), 0.0),
])
def test_count_windows_matches_monai(shape, roi, overlap):
    from monai.inferers import sliding_window_inference

    calls = []

    def net(x):
        calls.append(x.shape[0])
        return x

    sliding_window_inference(torch.zeros(2, 1, *shape), roi, 3, net, overlap=overlap)
    assert sum(calls) == 2 * count_windows(shape, roi, overlap)


class _SlowNet(torch.nn.Module):
    """Stands in for a big network on a big CT: every batch of windows takes ``delay_s``."""

    def __init__(self, net, delay_s=0.2):
        super().__init__()
        self.net = net
        self.delay_s = delay_s

    def forward(self, x):
        time.sleep(self.delay_s)
        return self.net(x)


def test_cancelling_inference_in_its_process_ends_within_2_s(tmp_path):
    """Through the job runner, as the Infer dock runs it: one pass of 36 windows takes 11 s
    here; cancel used to wait for the end of the pass (20.8 s on a large CT, then a kill)."""
    from napari_medseg.jobs import ProcessJob

    model, card = load_model(_model_dir(tmp_path))
    vol = _volume(shape=(40, 48, 40), spacing=(1.0, 1.0, 1.0))
    job = ProcessJob(predict, (_SlowNet(model, 0.3), card), vol, device="cpu",
                     sw_batch_size=1, what="Segmentation")
    events, t_cancel = [], None
    for ev in job.events():
        events.append(ev)
        if ev.kind == "step" and t_cancel is None:
            t_cancel = time.perf_counter()
            job.cancel()
    assert t_cancel is not None and time.perf_counter() - t_cancel < 2.0
    assert events[-1].kind == "cancelled" and "forcibly" not in events[-1].message
    assert not job.is_alive()


def test_predict_reports_windows_and_eta_and_cancels_within_a_batch(tmp_path):
    model, card = load_model(_model_dir(tmp_path))
    vol = _volume(shape=(40, 48, 40), spacing=(1.0, 1.0, 1.0))  # 3 x 4 x 3 windows of 16
    total = count_windows(vol.shape, (16, 16, 16))
    stop = threading.Event()
    events, t_cancel = [], None
    for ev in predict((_SlowNet(model), card), vol, device="cpu", sw_batch_size=2,
                      should_stop=stop):
        events.append(ev)
        if ev.kind == "step" and ev.step and t_cancel is None:
            t_cancel = time.perf_counter()
            stop.set()
    assert time.perf_counter() - t_cancel < 1.5  # not after all 36 windows (3.6 s)
    assert events[0].kind == "start" and events[0].total == total == 36
    step = next(e for e in events if e.kind == "step")
    assert 0 < step.step < total and step.total == total and step.eta_s > 0
    assert f"{step.step}/{total} windows" in step.message
    assert events[-1].kind == "cancelled"


def test_2d_model_on_3d_and_2d_inputs(tmp_path):
    model = load_model(_model_dir(tmp_path, dims=2))
    vol = _volume(shape=(5, 20, 18))
    res = predict_volume(model, vol, device="cpu", tta=True)
    assert res.labels.shape == (5, 20, 18)
    flat = Volume(np.random.default_rng(0).random((20, 18)).astype(np.float32), (1.0, 1.0))
    assert predict_volume(model, flat, device="cpu").labels.shape == (20, 18)


def test_input_that_does_not_fit_the_model(tmp_path):
    two_channel = _model_dir(tmp_path, in_channels=2, name="two")
    with pytest.raises(ModelLoadError, match="expects 2 image channel"):
        predict_volume(two_channel, _volume(), device="cpu")
    res = predict_volume(two_channel, [_volume(), _volume()], device="cpu")
    assert res.labels.shape == _volume().shape
    mr_model = _model_dir(tmp_path, name="mr")
    card_path = mr_model / "model_card.json"
    card_path.write_text(card_path.read_text().replace('"modality": "unknown"', '"modality": "MR"'))
    ct = _volume()
    ct.modality = "CT"
    with pytest.raises(ModelLoadError, match="trained on MR images; this image is CT"):
        predict_volume(mr_model, ct, device="cpu")
    three_d = _model_dir(tmp_path, name="three")
    flat = Volume(np.zeros((20, 18), np.float32), (1.0, 1.0))
    with pytest.raises(ModelLoadError, match="needs a 3D volume"):
        predict_volume(three_d, flat, device="cpu")


def test_argmax_classes_matches_torch():
    from napari_medseg.inference.predict import argmax_classes

    probs = torch.rand(4, 6, 7, 8)
    probs[:, 0, 0, 0] = 0.5  # a tie: the first class wins, as in torch.argmax
    out = argmax_classes(probs)
    assert out.dtype == torch.uint8
    assert torch.equal(out.long(), torch.argmax(probs, 0))


def test_keep_largest_component():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[7:9, 7:9, 7:9] = 1
    labels[5, 5, 5] = 2
    out = keep_largest_component(labels)
    assert (out == 1).sum() == 27 and (out == 2).sum() == 1
    assert (labels == 1).sum() == 35  # input untouched


def test_predict_folder_writes_same_geometry(tmp_path):
    model_dir = _model_dir(tmp_path)
    inp = tmp_path / "in"
    inp.mkdir()
    vols = [_volume(shape=(12, 14, 10 + i)) for i in range(2)]
    for i, v in enumerate(vols):
        write_nifti(v, inp / f"case{i}.nii.gz")
    write_nifti(vols[0], inp / "plain.nii")
    out = tmp_path / "out"
    written = []
    gen = predict_folder(model_dir, inp, out, device="cpu")
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            written = stop.value
            break
    assert sorted(p.name for p in written) == ["case0.nii.gz", "case1.nii.gz", "plain.nii.gz"]
    assert sorted(p.name for p in out.iterdir()) == ["case0.nii.gz", "case1.nii.gz", "plain.nii.gz"]
    for i, v in enumerate(vols):
        back = read_nifti(out / f"case{i}.nii.gz")
        assert back.shape == v.shape
        np.testing.assert_allclose(back.affine, v.affine, atol=1e-5)
    with pytest.raises(ValueError, match="overwrite its input"):
        list(predict_folder(model_dir, out, out, device="cpu"))
    with pytest.raises(ValueError, match="No NIfTI"):
        list_input_images(tmp_path / "m")


def test_predict_dicom_series_folder(tmp_path, samples_dir):
    import shutil

    from napari_medseg.io import list_dicom_series, read_volume

    series = min((s for s in list_dicom_series(samples_dir / "mr_dicom_hippocrop") if s.is_image),
                 key=lambda s: s.n_slices)
    series_dir = tmp_path / "one_series"
    series_dir.mkdir()
    for f in series.files:
        shutil.copy(f, series_dir / Path(f).name)
    assert list_input_images(series_dir) == [series_dir]
    out = tmp_path / "out"
    list(predict_folder(_model_dir(tmp_path), series_dir, out, device="cpu"))
    written = out / f"{series_dir.name}.nii.gz"
    src, back = read_volume(series_dir), read_nifti(written)
    assert back.shape == src.shape
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-4)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="Unknown device"):
        resolve_device("tpu")


def test_tta_follows_the_mirror_axes_of_the_card(tmp_path):
    import json

    model_dir = _model_dir(tmp_path)
    card_path = model_dir / "model_card.json"
    card = json.loads(card_path.read_text())
    card["mirror_axes"] = [2]
    card_path.write_text(json.dumps(card))
    vol = _volume(spacing=(1.0, 1.0, 1.0))
    events = list(predict(model_dir, vol, tta=True, device="cpu"))
    assert sum(e.kind == "step" for e in events) == 2  # plain + mirrored left-right
    net, loaded = load_model(model_dir)
    expected = predict_volume((net, loaded), vol, device="cpu").probabilities
    flipped = Volume(vol.array[:, :, ::-1].copy(), vol.spacing, vol.affine, "MR")
    mirrored = predict_volume((net, loaded), flipped, device="cpu").probabilities[..., ::-1]
    np.testing.assert_allclose(events[-1].result.probabilities, (expected + mirrored) / 2,
                               atol=1e-5)
    card["mirror_axes"] = []
    card_path.write_text(json.dumps(card))
    assert sum(e.kind == "step" for e in predict(model_dir, vol, tta=True, device="cpu")) == 1
    card["mirror_axes"] = [3]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="invalid mirror_axes"):
        load_model(model_dir)


class _ThresholdOracle(torch.nn.Module):
    """An oracle 'network': class 1 where the normalised image is above ``level``."""

    def __init__(self, level=0.0):
        super().__init__()
        self.level = float(level)

    def forward(self, x):
        fg = (x[:, :1] > self.level).float() * 20 - 10
        return torch.cat([-fg, fg], dim=1)


def test_a_structure_lands_where_it_is_after_resampling_and_sliding_windows(tmp_path):
    """Independent oracle: a thresholding 'network' on an anisotropic volume resampled to the
    model's 1 mm grid (75 x 48 x 40 voxels, many 16^3 windows) and back must give back the
    bright block voxel for voxel except at its faces - a flip, a shift by a window or a wrong
    resampling scale would fail this."""
    _, card = load_model(_model_dir(tmp_path, classes=2))
    shape, spacing = (30, 60, 50), (2.5, 0.8, 0.8)
    image = np.full(shape, -5.0, np.float32)
    block = np.zeros(shape, bool)
    block[4:13, 35:55, 6:21] = True  # off-centre on every axis
    image[block] = 5.0
    vol = Volume(image, spacing, np.diag([*spacing, 1.0]), "MR", name="oracle")
    # the card normalises per volume (z-score): threshold half-way between block and background
    level = (0.0 - image.mean()) / image.std()
    result = predict_volume((_ThresholdOracle(level), card), vol, device="cpu", tta=False,
                            return_probabilities=False)
    got = result.labels == 1
    assert got.shape == shape
    dice = 2 * np.count_nonzero(got & block) / (got.sum() + block.sum())
    assert dice > 0.97, dice
    np.testing.assert_allclose(np.argwhere(got).mean(0), np.argwhere(block).mean(0), atol=0.5)
    assert not got[block.sum(axis=(1, 2)) == 0].any()  # nothing on slices without the block


def test_windows_per_batch_grows_for_small_windows_only():
    from napari_medseg.models.engine import windows_per_batch

    assert windows_per_batch((128, 128)) == 8  # 2D photo patches: 8 per forward pass
    assert windows_per_batch((16, 16)) == 16  # capped
    assert windows_per_batch((40, 56, 40)) == 4  # 3D patches keep 4
    assert windows_per_batch((64, 128, 128)) == 4


def test_window_batch_does_not_change_the_result(tmp_path):
    """The default (batch by window size) and one window per pass give the same labels."""
    model = _model_dir(tmp_path, dims=2, spacing=(1.0, 1.0))
    rng = np.random.default_rng(3)
    pic = Volume(rng.normal(size=(70, 90)).astype(np.float32), spacing=(1.0, 1.0), name="p")
    auto = predict_volume(model, pic, device="cpu")
    one = predict_volume(model, pic, device="cpu", sw_batch_size=1)
    np.testing.assert_allclose(auto.probabilities, one.probabilities, atol=1e-5)
    np.testing.assert_array_equal(auto.labels, one.labels)


def test_channels_last_only_where_it_pays():
    """oneDNN: 3D U-Nets run faster channels-last on a CPU, 2D ones only in bfloat16."""
    from napari_medseg.models.engine import channels_last_pays

    assert channels_last_pays("cpu", 3)
    assert not channels_last_pays("cpu", 2)
    assert channels_last_pays("cpu", 2, torch.bfloat16)
    assert not channels_last_pays("cuda", 3, torch.float16)
