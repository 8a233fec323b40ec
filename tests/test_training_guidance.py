"""Training with click guidance channels: loss falls, card records it, predict without clicks."""

from __future__ import annotations

import numpy as np
import torch

from napari_medseg.inference import load_model, predict_volume
from napari_medseg.interactive import guidance_channels, refine_with_clicks
from napari_medseg.interactive.guidance import guidance_spec
from napari_medseg.io.volume import Volume
from napari_medseg.training import TrainConfig, train


def _cases(n=4, shape=(24, 24, 24)):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        g = np.meshgrid(*[np.arange(s) - s / 2 + rng.integers(-3, 4) for s in shape],
                        indexing="ij")
        ball = sum(x * x for x in g) <= 36
        lab = np.zeros(shape, np.uint8)
        lab[ball & (g[2] < 0)] = 1
        lab[ball & (g[2] >= 0)] = 2
        img = (ball * 1.0 + 0.3 * rng.standard_normal(shape)).astype(np.float32)
        out.append((Volume(img, spacing=(2.0, 1.0, 1.0), modality="MR"), lab))
    return out


def test_guided_training_card_predict_and_refine(tmp_path):
    torch.manual_seed(0)
    cfg = TrainConfig(max_epochs=3, steps_per_epoch=8, device="cpu", base_channels=4,
                      max_channels=16, guidance=guidance_spec(3.0), val_fraction=0.25,
                      augmentation="none", ema_decay=None)
    losses, result = [], None
    for ev in train(cfg, _cases(), tmp_path / "m"):
        if ev.kind == "step":
            losses.append(ev.loss)
        if ev.kind == "finished":
            result = ev.result
    assert result is not None and result.model_dir
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    net, card = load_model(tmp_path / "m")
    assert card.guidance["type"] == "clicks" and guidance_channels(card) == 4
    assert card.network["in_channels"] == 1 + 4 and card.in_channels == 1
    vol, lab = _cases(1)[0]
    auto = predict_volume((net, card), vol, device="cpu", return_probabilities=False).labels
    assert auto.shape == lab.shape
    patch = refine_with_clicks(net, card, vol, auto, 1, [((12, 12, 8), True)])
    if patch is not None:
        out = auto.copy()
        patch.apply(out)
        assert ((out == 2) == (auto == 2)).all()
