"""Model export: TorchScript, ONNX, MONAI bundle (napari_medseg.export)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_medseg.export import card_path_for, export_model, import_monai_bundle
from napari_medseg.models import (
    ModelCard,
    ModelLoadError,
    build_network,
    load_model,
    plan_network,
    plan_patch_size,
    save_model,
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    _, strides = plan_patch_size((16, 16, 16))
    spec = plan_network(3, 1, 3, strides, base_channels=4, max_channels=16)
    net = build_network(spec)
    card = ModelCard(task="Blobs", dims=3, in_channels=1, patch_size=[16, 16, 16], network=spec,
                     classes=[{"value": v, "name": f"c{v}", "color": [v, v, v]} for v in range(3)],
                     normalisation=[{"scheme": "zscore"}], spacing=[1.0, 1.0, 1.0])
    return save_model(net, card, tmp_path_factory.mktemp("model") / "m")


def _reference(model_dir, x, probabilities=False):
    net, _ = load_model(model_dir)
    with torch.no_grad():
        out = net(x)
    return (torch.softmax(out, dim=1) if probabilities else out).numpy()


def test_torchscript(tmp_path, tiny_model):
    out = export_model(tiny_model, "torchscript", tmp_path / "model.pt")
    loaded = torch.jit.load(str(out))
    x = torch.randn(2, 1, 32, 16, 24)  # another batch and spatial size than the traced patch
    with torch.no_grad():
        got = loaded(x).numpy()
    np.testing.assert_allclose(got, _reference(tiny_model, x), atol=1e-5)
    card = json.loads(card_path_for(out).read_text())
    assert card["task"] == "Blobs" and card["export"]["format"] == "torchscript"
    assert card["export"]["output"]["name"] == "logits"
    assert card["export"]["sliding_window"]["roi_size"] == [16, 16, 16]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_onnx_matches_torch(tmp_path, tiny_model):
    ort = pytest.importorskip("onnxruntime")
    out = export_model(tiny_model, "onnx", tmp_path / "model.onnx", probabilities=True)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    x = torch.randn(1, 1, 24, 32, 16)  # dynamic spatial axes
    got = session.run(None, {"image": x.numpy()})[0]
    expected = _reference(tiny_model, x, probabilities=True)
    assert np.max(np.abs(got - expected)) <= 1e-4
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    assert json.loads(card_path_for(out).read_text())["export"]["format"] == "onnx"


def test_monai_bundle(tmp_path, tiny_model):
    from monai.bundle import ConfigParser

    out = export_model(tiny_model, "monai-bundle", tmp_path / "bundle")
    for rel in ("configs/metadata.json", "configs/inference.json", "models/model.pt",
                "docs/README.md"):
        assert (out / rel).is_file(), rel
    meta = json.loads((out / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 3
    parser = ConfigParser()
    parser.read_config(out / "configs" / "inference.json")
    parser.read_meta(out / "configs" / "metadata.json")
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(out / "models" / "model.pt", weights_only=True), strict=True)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        got = net.eval()(x).numpy()
    np.testing.assert_allclose(got, _reference(tiny_model, x), atol=1e-6)
    assert parser.get_parsed_content("inferer").roi_size == [16, 16, 16]
    from monai.bundle import verify_net_in_out  # MONAI's own check of the declared shapes

    verify_net_in_out(net_id="network_def", meta_file=str(out / "configs" / "metadata.json"),
                      config_file=str(out / "configs" / "inference.json"), device="cpu")
    back = import_monai_bundle(out, tmp_path / "imported")
    np.testing.assert_allclose(_reference(back, x), got, atol=1e-6)


def test_export_errors(tmp_path, tiny_model):
    with pytest.raises(ValueError, match="Unknown export format") as err:
        export_model(tiny_model, "tflite", tmp_path / "m.tflite")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelLoadError, match="not a napari-medseg model"):
        export_model(tmp_path, "onnx", tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="does not exist"):
        export_model(tiny_model, "torchscript", tmp_path / "nope" / "m.pt")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="not an empty folder"):
        export_model(tiny_model, "monai-bundle", tmp_path / "full")
    with pytest.raises(ModelLoadError, match="not a MONAI bundle"):
        import_monai_bundle(tmp_path / "full", tmp_path / "m2")
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m2").exists()


def test_exports_reproduce_predict(tmp_path, tiny_model):
    """The recipe in the exported card (prepare, Gaussian sliding window, softmax) = predict."""
    ort = pytest.importorskip("onnxruntime")
    from monai.inferers import sliding_window_inference

    from napari_medseg.inference.predict import predict_volume
    from napari_medseg.io import Volume
    from napari_medseg.preprocess import NormalisationParams, prepare_image

    rng = np.random.default_rng(1)
    volume = Volume(rng.normal(100, 20, (20, 28, 24)).astype(np.float32), (1.0, 1.0, 1.0))
    result = predict_volume(tiny_model, volume, device="cpu")
    card = json.loads(card_path_for(export_model(tiny_model, "torchscript",
                                                 tmp_path / "m.pt")).read_text())
    onnx_file = export_model(tiny_model, "onnx", tmp_path / "m.onnx")
    params = [NormalisationParams.from_dict(d) for d in card["normalisation"]]
    image = torch.from_numpy(prepare_image([volume.array], volume.spacing, params, None))[None]
    window = card["export"]["sliding_window"]
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    runners = {
        "torchscript": torch.jit.load(str(tmp_path / "m.pt")),
        "onnx": lambda t: torch.from_numpy(session.run(None, {"image": t.numpy()})[0]),
    }
    for name, run in runners.items():
        with torch.no_grad():
            logits = sliding_window_inference(
                image, window["roi_size"], 4, run, overlap=window["overlap"],
                mode=window["mode"], padding_mode=window["padding_mode"], cval=window["cval"])
        probs = torch.softmax(logits, dim=1)[0].numpy()
        assert np.max(np.abs(probs - result.probabilities)) <= 1e-4, name
        np.testing.assert_array_equal(probs.argmax(0), result.labels, err_msg=name)


def test_an_export_never_replaces_the_card_of_another(tmp_path, tiny_model):
    first = export_model(tiny_model, "torchscript", tmp_path / "model.pt")
    card = card_path_for(first)
    assert card.name == "model.model_card.json"
    text = card.read_text()
    second = export_model(tiny_model, "onnx", tmp_path / "model.onnx")
    assert card.read_text() == text  # the TorchScript file's card is kept
    assert card_path_for(second).name == "model.onnx.model_card.json"
    assert json.loads(card_path_for(second).read_text())["export"]["file"] == "model.onnx"
    export_model(tiny_model, "torchscript", first)  # the same file again: its own card
    assert card_path_for(first) == card
    assert json.loads(card.read_text())["export"]["file"] == "model.pt"


_OUTSIDE = r'''
"""Another tool: the exports run from their files and card alone, without napari_medseg."""
import json, sys
import nibabel as nib, numpy as np, torch
from monai.bundle import ConfigParser
from monai.inferers import sliding_window_inference

folder = sys.argv[1]
exp = json.load(open(f"{folder}/m.model_card.json"))["export"]
img = nib.load(f"{folder}/case.nii.gz")
assert np.allclose(img.header.get_zooms(), exp["input"]["spacing_mm"])  # no resampling here
x = np.asarray(img.dataobj, dtype=np.float32).T  # nibabel (i, j, k) -> Z, Y, X, as said
assert exp["input"]["normalisation"][0]["scheme"] == "zscore"
x = (x - x.mean(dtype=np.float64)) / max(x.std(dtype=np.float64), 1e-8)
image = torch.from_numpy(x.astype(np.float32))[None, None]
w = exp["sliding_window"]
runners = {"torchscript": torch.jit.load(f"{folder}/m.pt")}
try:
    import onnxruntime as ort
except ImportError:
    pass
else:
    session = ort.InferenceSession(f"{folder}/m.onnx", providers=["CPUExecutionProvider"])
    runners["onnx"] = lambda t: torch.from_numpy(session.run(None, {"image": t.numpy()})[0])
labels = {}
with torch.no_grad():
    for name, run in runners.items():
        logits = sliding_window_inference(image, w["roi_size"], 4, run, overlap=w["overlap"],
                                          mode=w["mode"], padding_mode=w["padding_mode"],
                                          cval=w["cval"])
        labels[name] = torch.softmax(logits, 1)[0].argmax(0).numpy().T.tolist()
    parser = ConfigParser()  # the bundle's network and weights, parsed by MONAI
    parser.read_config(f"{folder}/bundle/configs/inference.json")
    parser["device"] = "cpu"
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(f"{folder}/bundle/models/model.pt", weights_only=True))
    logits = parser.get_parsed_content("inferer")(image, net.eval())
    labels["monai-bundle network"] = torch.softmax(logits, 1)[0].argmax(0).numpy().T.tolist()
print(json.dumps({"napari_medseg": "napari_medseg" in sys.modules, "labels": labels}))
'''


def test_exports_run_without_napari_medseg_give_predicts_labels(tmp_path, tiny_model):
    """TorchScript (plain torch), ONNX (onnxruntime) and the MONAI bundle (its inferer and
    post-processing, parsed by MONAI) in a process that never imports napari_medseg, from the
    exported card's recipe alone: the labels `napari-medseg predict` writes."""
    import subprocess
    import sys

    import nibabel as nib

    from napari_medseg.cli import main

    rng = np.random.default_rng(3)
    image = rng.normal(100, 20, (22, 26, 20)).astype(np.float32)  # nibabel (i, j, k)
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 1.0, 1.0])), tmp_path / "case.nii.gz")
    assert main(["predict", "--model", str(tiny_model), str(tmp_path / "case.nii.gz"),
                 "--out", str(tmp_path / "pred"), "--device", "cpu", "--quiet"]) == 0
    predicted = np.asarray(nib.load(tmp_path / "pred" / "case.nii.gz").dataobj).astype(int)
    assert len(np.unique(predicted)) > 1  # something to agree on
    for fmt, name in (("torchscript", "m.pt"), ("onnx", "m.onnx"), ("monai-bundle", "bundle")):
        if fmt != "onnx" or _has("onnx"):
            export_model(tiny_model, fmt, tmp_path / name)
    (tmp_path / "outside.py").write_text(_OUTSIDE)
    proc = subprocess.run([sys.executable, str(tmp_path / "outside.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["napari_medseg"] is False
    assert {"torchscript", "monai-bundle network"} <= set(result["labels"])
    for fmt, labels in result["labels"].items():
        np.testing.assert_array_equal(np.asarray(labels), predicted, err_msg=fmt)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _bundle_run(bundle, scans, out):
    """``python -m monai.bundle run`` as a MONAI user types it (no napari_medseg involved)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file",
         str(bundle / "configs" / "inference.json"), "--bundle_root", str(bundle),
         "--dataset_dir", str(scans), "--output_dir", str(out), "--device", "$'cpu'"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _blob(shape=(20, 28, 24), seed=0):
    z, y, x = np.indices(shape)
    blob = ((z - 10) ** 2 + ((y - 14) / 1.3) ** 2 + (x - 12) ** 2) < 40
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 30, shape) + 200 * blob).astype(np.float32), blob.astype(np.uint8)


@pytest.mark.parametrize(("voxel", "modality", "agree"), [
    ((1.0, 1.0, 1.0), "MR", 1.0),    # the model's grid: no resampling, the same labels
    ((0.9, 1.1, 1.0), "CT", 0.98),   # resampled both ways (MONAI's grid vs napari-medseg's)
])
def test_monai_bundle_run_segments_a_folder_as_predict_does(tmp_path, voxel, modality, agree):
    """The exported bundle holds the whole pipeline (load, normalise, resample, sliding window,
    back to the scan's grid, save): ``monai.bundle run`` writes predict's labels."""
    pytest.importorskip("ignite")
    pytest.importorskip("fire")
    import nibabel as nib

    from napari_medseg.cli import main
    from napari_medseg.dataset import Case
    from napari_medseg.io import Volume
    from napari_medseg.training import TrainConfig, train

    cases = [Case(f"b{i}", Volume(_blob(seed=i)[0], (1.0, 1.0, 1.0), modality=modality),
                  _blob(seed=i)[1]) for i in range(2)]
    config = TrainConfig(max_epochs=1, steps_per_epoch=25, patch_size=(16, 16, 16),
                         batch_size=2, base_channels=4, max_channels=16, val_fraction=0.0,
                         augmentation="none", device="cpu", seed=0, modality=modality,
                         label_names={0: "background", 1: "blob"})
    for _ in train(config, cases, tmp_path / "m"):
        pass
    model = tmp_path / "m"
    scheme = json.loads((model / "model_card.json").read_text())["normalisation"][0]["scheme"]
    assert scheme == ("ct" if modality == "CT" else "zscore")
    scans = tmp_path / "scans"
    scans.mkdir()
    image, _ = _blob(seed=5)
    affine = np.diag([-voxel[2], voxel[1], voxel[0], 1.0])  # nibabel (i, j, k) = X, Y, Z
    affine[:3, 3] = (10.0, -5.0, 3.0)
    nib.save(nib.Nifti1Image(image.T, affine), scans / "case.nii.gz")
    assert main(["predict", "--model", str(model), str(scans / "case.nii.gz"), "--out",
                 str(tmp_path / "pred"), "--device", "cpu", "--quiet"]) == 0
    ours = nib.load(tmp_path / "pred" / "case.nii.gz")
    bundle = export_model(model, "monai-bundle", tmp_path / "bundle")
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert "run" in inference and "monai.bundle run" in inference["napari_medseg"]["note"]
    _bundle_run(bundle, scans, tmp_path / "out")
    theirs = nib.load(tmp_path / "out" / "case_seg.nii.gz")
    got = np.squeeze(np.asarray(theirs.dataobj)).astype(int)
    expected = np.asarray(ours.dataobj).astype(int)
    assert got.shape == expected.shape
    np.testing.assert_allclose(theirs.affine, ours.affine, atol=1e-4)
    assert 0.01 < expected.mean() < 0.5  # the model found the blob: boundaries to agree on
    assert np.mean(got == expected) >= agree


def test_a_2d_model_bundle_says_it_cannot_be_run(tmp_path):
    _, strides = plan_patch_size((32, 32))
    spec = plan_network(2, 3, 2, strides, base_channels=4, max_channels=16)
    card = ModelCard(task="Vessels", dims=2, in_channels=3, patch_size=[32, 32], network=spec,
                     classes=[{"value": 0, "name": "background", "color": [0, 0, 0]},
                              {"value": 1, "name": "vessel", "color": [255, 0, 0]}],
                     normalisation=[{"scheme": "zscore", "region": "fov"}] * 3)
    model = save_model(build_network(spec), card, tmp_path / "m")
    bundle = export_model(model, "monai-bundle", tmp_path / "bundle")
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert "run" not in inference
    assert "not runnable" in inference["napari_medseg"]["note"]
    assert "cannot run this model (a 2D model" in (bundle / "docs" / "README.md").read_text()
