"""Network planning, building, and safe model directories (model.pt + model_card.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_medseg.models import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelLoadError,
    build_network,
    file_sha256,
    load_matching_weights,
    load_model,
    plan_network,
    plan_patch_size,
    read_card,
    save_model,
)


def test_plan_patch_size_hippocampus_like():
    patch, strides = plan_patch_size((35, 50, 36))
    assert patch == (40, 56, 40)
    assert strides == [(2, 2, 2)] * 3


def test_plan_patch_size_anisotropic_and_capped():
    patch, strides = plan_patch_size((6, 200, 180))
    assert patch == (6, 224, 192)  # the thin axis is never pooled, the others 5 times
    assert strides == [(1, 2, 2)] * 5
    capped, _ = plan_patch_size((300, 300, 300), max_voxels=64**3)
    assert np.prod(capped) <= 64**3 * 1.2


@pytest.mark.parametrize("arch", ["unet", "dynunet"])
@pytest.mark.parametrize("dims", [2, 3])
def test_build_network_output_shape(arch, dims):
    patch, strides = plan_patch_size((16,) * dims)
    spec = plan_network(dims, 2, 4, strides, arch, base_channels=4, max_channels=16)
    net = build_network(spec).eval()
    with torch.no_grad():
        out = net(torch.zeros(1, 2, *patch))
    assert out.shape == (1, 4, *patch)
    json.dumps(spec)  # stays JSON


def test_plan_network_rejects_bad_input():
    with pytest.raises(ValueError, match="architecture"):
        plan_network(3, 1, 2, [(2, 2, 2)], "resnet")
    with pytest.raises(ValueError, match="3 values"):
        plan_network(3, 1, 2, [(2, 2)])


def test_activation_choice_and_cards_written_before_it():
    _, strides = plan_patch_size((16, 16, 16))
    spec = plan_network(3, 1, 3, strides, base_channels=4, max_channels=16)
    assert spec["activation"] == "leakyrelu"
    acts = {type(m).__name__ for m in build_network(spec).modules()}
    assert "LeakyReLU" in acts and "PReLU" not in acts
    # a card from before the option has no "activation" key: its weights include PReLU slopes
    old = {k: v for k, v in spec.items() if k != "activation"}
    old_net = build_network(old)
    assert "PReLU" in {type(m).__name__ for m in old_net.modules()}
    assert any(k.endswith(".A.weight") for k in old_net.state_dict())
    prelu = build_network(plan_network(3, 1, 3, strides, base_channels=4, max_channels=16,
                                       activation="prelu"))
    assert set(prelu.state_dict()) == set(old_net.state_dict())
    with pytest.raises(ValueError, match="activation"):
        plan_network(3, 1, 3, strides, activation="gelu")


def _tiny_model(tmp_path, classes=3, dims=3, name="m", in_channels=1):
    _, strides = plan_patch_size((16,) * dims)
    spec = plan_network(dims, in_channels, classes, strides, base_channels=4, max_channels=16)
    net = build_network(spec)
    card = ModelCard(
        task="Blobs",
        classes=[{"value": v, "name": f"c{v}", "color": [v, v, v]} for v in range(classes)],
        dims=dims, in_channels=in_channels, patch_size=[16] * dims, network=spec,
        normalisation=[{"scheme": "zscore"}] * in_channels, spacing=[1.0] * dims,
    )
    return save_model(net, card, tmp_path / name), net, card


def test_save_and_load_round_trip(tmp_path):
    model_dir, net, card = _tiny_model(tmp_path)
    assert (model_dir / WEIGHTS_FILE).is_file() and (model_dir / CARD_FILE).is_file()
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    loaded, card2 = load_model(model_dir)
    assert not loaded.training
    x = torch.randn(1, 1, 16, 16, 16)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    assert card2.num_classes == 3 and card2.label_names[1] == "c1"
    assert card2.model_id == card.model_id and card2.package_version
    meta = json.loads((model_dir / CARD_FILE).read_text())
    for key in ("classes", "dims", "patch_size", "spacing", "normalisation", "training_cases",
                "metrics_history", "version", "parent_version", "created", "package_version"):
        assert key in meta


def test_load_refuses_pickled_objects(tmp_path):
    model_dir, _, _ = _tiny_model(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, model_dir / WEIGHTS_FILE)
    with pytest.raises(ModelLoadError, match="does not match its model card"):
        load_model(model_dir)  # the checksum catches a swapped file first
    # an attacker who also edits the card's checksum still cannot run code
    meta = json.loads((model_dir / CARD_FILE).read_text())
    meta["weights_sha256"] = file_sha256(model_dir / WEIGHTS_FILE)
    (model_dir / CARD_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="is damaged or not a napari-medseg model's weights") as err:
        load_model(model_dir)
    assert len(str(err.value)) < 250 and "weights_only" not in str(err.value)  # one short line


def test_model_from_a_different_task(tmp_path):
    model_dir, _, _ = _tiny_model(tmp_path)
    with pytest.raises(ModelLoadError, match="predicts 3 classes; this task has 5"):
        load_model(model_dir, num_classes=5)
    with pytest.raises(ModelLoadError, match="3D model; this task needs 2D"):
        load_model(model_dir, dims=2)
    with pytest.raises(ModelLoadError, match="expects 1 image channel"):
        load_model(model_dir, in_channels=2)
    # card says 5 classes but the weights have 3: refuse instead of a silent mix-up
    meta = json.loads((model_dir / CARD_FILE).read_text())
    meta["network"]["out_channels"] = 5
    (model_dir / CARD_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model(model_dir)


def test_missing_and_broken_model_dirs(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="not a napari-medseg model"):
        read_card(tmp_path / "empty")
    (tmp_path / "empty" / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        read_card(tmp_path / "empty")
    (tmp_path / "empty" / CARD_FILE).write_text(json.dumps({"task": "x"}))
    with pytest.raises(ModelLoadError, match="lacks"):
        read_card(tmp_path / "empty")


def test_head_reinitialised_for_new_classes(tmp_path):
    model_dir, net, _ = _tiny_model(tmp_path, classes=3)
    _, strides = plan_patch_size((16, 16, 16))
    new = build_network(plan_network(3, 1, 5, strides, base_channels=4, max_channels=16))
    loaded, skipped = load_matching_weights(new, torch.load(model_dir / WEIGHTS_FILE, weights_only=True))
    assert skipped and len(loaded) > len(skipped)
    name = loaded[0]
    torch.testing.assert_close(new.state_dict()[name], net.state_dict()[name])
