"""Training: masked losses, patch sampling, augmentation, the train() generator, cancel, fine-tune."""

from __future__ import annotations

import hashlib
import pickle
import threading
import time

import numpy as np
import pytest
import torch

from napari_medseg.dataset import Case, DatasetError
from napari_medseg.events import IGNORE_LABEL, Event
from napari_medseg.io import Volume
from napari_medseg.models import ModelLoadError, load_model, read_card
from napari_medseg.training import (
    LOSSES,
    AugmentationConfig,
    PatchSampler,
    SegmentationLoss,
    TrainConfig,
    TrainResult,
    augment_batch,
    train,
    validate,
)


def _blob_case(case_id: str, seed: int, shape=(16, 16, 16), classes=2) -> Case:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    c = rng.integers(5, 11, 3)
    r2 = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2
    labels = np.zeros(shape, np.uint8)
    labels[r2 < 20] = 1
    if classes > 1:
        labels[r2 < 5] = 2
    image = labels * 1.0 + rng.normal(0, 0.3, shape)
    return Case(case_id, Volume(image.astype(np.float32), (1.0, 1.0, 1.0), modality="MR"), labels)


def _cases(n=4, classes=2):
    return [_blob_case(f"blob_{i}", i, classes=classes) for i in range(n)]


def _tiny_config(**kw) -> TrainConfig:
    base = dict(patch_size=(16, 16, 16), batch_size=2, steps_per_epoch=4, max_epochs=3,
                base_channels=4, max_channels=16, device="cpu", val_fraction=0.25, seed=0,
                label_names={0: "background", 1: "outer", 2: "core"}, task_name="Blobs")
    base.update(kw)
    return TrainConfig(**base)


def _run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


# ---------------------------------------------------------------------------- losses


@pytest.mark.parametrize("kind", LOSSES)
def test_ignored_voxels_do_not_change_the_loss(kind):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, 8, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8, 8))
    target[:, :4] = IGNORE_LABEL
    loss_fn = SegmentationLoss(kind)
    loss = loss_fn(logits, target)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.all(logits.grad[:, :, :4] == 0)  # no gradient through unannotated voxels
    changed = logits.detach().clone()
    changed[:, :, :4] = torch.randn_like(changed[:, :, :4]) * 10
    assert loss_fn(changed, target) == pytest.approx(float(loss.detach()), rel=1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_losses_match_monai_references(channels_last):
    """Dense labels: our batch Dice / Jaccard / CE equal MONAI's and torch's one-hot formulas."""
    from monai.losses import DiceLoss

    torch.manual_seed(1)
    logits = torch.randn(2, 3, 6, 8, 10)
    if channels_last:  # what the network gives on CPU
        logits = logits.contiguous(memory_format=torch.channels_last_3d)
    target = torch.randint(0, 3, (2, 6, 8, 10))
    kw = dict(include_background=False, to_onehot_y=True, softmax=True, batch=True,
              smooth_nr=1e-5, smooth_dr=1e-5)
    y = target[:, None]
    dice_ref = DiceLoss(**kw)(logits, y)
    jacc_ref = DiceLoss(jaccard=True, squared_pred=False, **kw)(logits, y)
    ce_ref = torch.nn.functional.cross_entropy(logits, target)
    assert float(SegmentationLoss("dice")(logits, target)) == pytest.approx(float(dice_ref), 1e-5)
    assert float(SegmentationLoss("ce")(logits, target)) == pytest.approx(float(ce_ref), 1e-5)
    assert float(SegmentationLoss("dice_ce")(logits, target)) == pytest.approx(
        float(dice_ref + ce_ref), 1e-5)
    assert float(SegmentationLoss("jaccard")(logits, target)) == pytest.approx(
        float(jacc_ref), 1e-4)


def test_loss_edge_cases():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    all_ignored = torch.full((1, 4, 4), IGNORE_LABEL)
    loss = SegmentationLoss()(logits, all_ignored)
    assert float(loss.detach()) == 0.0
    loss.backward()
    target = torch.randint(0, 3, (1, 4, 4))
    perfect = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert float(SegmentationLoss("dice")(perfect, target)) < 1e-3
    assert float(SegmentationLoss("dice")(perfect, target[:, None])) < 1e-3  # (B, 1, ...) target
    deep = torch.stack([perfect, perfect], 1)
    assert float(SegmentationLoss("dice_ce")(deep, target)) < 1e-3
    with pytest.raises(ValueError, match="Unknown loss"):
        SegmentationLoss("hinge")


# ---------------------------------------------------------------------------- sampling, augmentation


def test_patch_sampler_shapes_padding_and_foreground():
    case = _blob_case("a", 0, shape=(10, 20, 12))
    img = case.image.array[None].astype(np.float32)
    sampler = PatchSampler([img], [case.labels], (16, 16, 16), foreground_fraction=1.0, seed=0)
    x, y = sampler.sample_batch(6)
    assert x.shape == (6, 1, 16, 16, 16) and y.shape == (6, 16, 16, 16) and y.dtype == torch.int64
    assert all(int((y[b] > 0).sum()) > 0 for b in range(6))  # every patch centred on foreground
    # 2D: slices of a 3D volume
    s2 = PatchSampler([img], [case.labels], (16, 16), seed=0)
    x2, y2 = s2.sample_batch(3)
    assert x2.shape == (3, 1, 16, 16) and y2.shape == (3, 16, 16)


def test_sampler_2d_prefers_annotated_slices():
    case = _blob_case("a", 0)
    lab = np.full(case.labels.shape, IGNORE_LABEL, np.uint8)
    lab[7] = case.labels[7]
    sampler = PatchSampler([case.image.array[None]], [lab], (16, 16), foreground_fraction=0.0, seed=1)
    for _ in range(5):
        _, y = sampler.sample_batch(2)
        assert bool((y != IGNORE_LABEL).any(dim=(1, 2)).all())


def test_augmentation_keeps_shapes_and_labels():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 12, 16, 20)
    y = torch.randint(0, 3, (4, 12, 16, 20))
    y[:, :2] = IGNORE_LABEL
    cfg = AugmentationConfig(p_rotate=1.0, p_scale=1.0, p_gamma=1.0, p_noise=1.0,
                             p_brightness=1.0, p_contrast=1.0)
    xa, ya = augment_batch(x, y, cfg, gen)
    assert xa.shape == x.shape and ya.shape == y.shape and ya.dtype == y.dtype
    assert set(torch.unique(ya).tolist()) <= {0, 1, 2, IGNORE_LABEL}
    assert not torch.equal(xa, x)
    xb, yb = augment_batch(x, y, None)
    assert xb is x and yb is y
    # flips only: image and labels move together
    img = y.float()[:, None].clone()
    fa, fl = augment_batch(img, y, AugmentationConfig(p_rotate=0, p_scale=0, p_brightness=0,
                                                      p_contrast=0, p_gamma=0, p_noise=0,
                                                      p_flip=1.0), gen)
    assert torch.equal(fa[:, 0].long(), fl)
    x2, y2 = augment_batch(torch.randn(2, 1, 16, 16), torch.zeros(2, 16, 16, dtype=torch.long),
                           AugmentationConfig(p_rotate=1.0, p_scale=1.0), gen)
    assert x2.shape == (2, 1, 16, 16)


# ---------------------------------------------------------------------------- train()


def test_train_generator_events_and_model_dir(tmp_path):
    out = tmp_path / "model"
    events, result = _run(train(_tiny_config(), _cases(), out))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finished"
    assert kinds.count("step") == 12 and kinds.count("epoch") == 3
    epoch = next(e for e in events if e.kind == "epoch")
    assert "dice_mean" in epoch.metrics and "dice/outer" in epoch.metrics
    assert isinstance(result, TrainResult) and result.status == "finished"
    assert result.stop_reason == "max_epochs" and result.steps == 12
    assert events[-1].result is result
    for e in events:  # small and picklable for child processes
        assert isinstance(e, Event)
        pickle.dumps(e)
    net, card = load_model(out)
    assert card.task == "Blobs" and card.num_classes == 3 and card.dims == 3
    assert card.patch_size == [16, 16, 16] and len(card.metrics_history) == 3
    assert len(card.training_cases) == 3 and len(card.validation_cases) == 1
    assert card.version == 1 and card.parent_version is None
    validated = [h["dice_mean"] for h in card.metrics_history if "dice_mean" in h]
    assert len(validated) == 2  # the first and the last epoch (not the sparse-validation middle)
    assert card.best_metric == pytest.approx(max(validated))


def test_training_learns_blobs(tmp_path):
    cfg = _tiny_config(max_epochs=6, steps_per_epoch=6, base_channels=8, learning_rate=1e-2,
                       val_fraction=0.0)
    events, result = _run(train(cfg, _cases(), tmp_path / "m"))
    losses = [e.loss for e in events if e.kind == "epoch"]
    assert losses[-1] < 0.7 * losses[0]
    assert result.model_dir is not None  # without validation the latest model is kept


def test_cancel_keeps_previous_best(tmp_path):
    out = tmp_path / "model"
    stop = threading.Event()
    saved_hash = None
    gen = train(_tiny_config(max_epochs=50), _cases(), out, should_stop=stop)
    events = []
    for event in gen:
        events.append(event)
        if event.kind == "epoch" and event.epoch == 2:
            saved_hash = hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
            card_text = (out / "model_card.json").read_text()
            stop.set()
    assert events[-1].kind == "cancelled"
    assert events[-1].result.status == "cancelled"
    assert hashlib.sha256((out / "model.pt").read_bytes()).hexdigest() == saved_hash
    assert (out / "model_card.json").read_text() == card_text
    load_model(out)


def _ball_case(case_id: str, seed: int, shape) -> Case:
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    r2 = sum((g - n / 2) ** 2 for g, n in zip((z, y, x), shape, strict=True))
    labels = (r2 < (min(shape) / 3) ** 2).astype(np.uint8)
    image = labels + rng.normal(0, 0.3, shape)
    return Case(case_id, Volume(image.astype(np.float32), (1.0, 1.0, 1.0), modality="MR"), labels)


def test_cancel_during_validation_ends_the_job_within_2_s(tmp_path):
    """Cancel through the job runner while a long validation runs (it took 12.7 s: the stop
    flag was only read before training steps)."""
    from napari_medseg.jobs import ProcessJob

    cases = [_ball_case("a", 0, (16, 16, 16)), _ball_case("b", 1, (16, 16, 16)),
             _ball_case("val", 2, (48, 64, 64))]  # ~3500 windows at 80 % overlap: > 5 s
    config = _tiny_config(steps_per_epoch=1, max_epochs=1000, batch_size=1, max_channels=8,
                          val_case_ids=["val"], val_overlap=0.8, augmentation="none",
                          label_names={0: "background", 1: "ball"})
    job = ProcessJob(train, config, dataset=cases, out_dir=str(tmp_path / "model"),
                     what="Training")
    kinds, t_cancel = [], None
    for event in job.events():
        kinds.append(event.kind)
        if event.kind == "step" and t_cancel is None:  # validation of epoch 1 starts now
            t_cancel = time.perf_counter()
            job.cancel()
    assert t_cancel is not None and time.perf_counter() - t_cancel < 2.0
    assert kinds[-1] == "cancelled" and "epoch" not in kinds
    assert not job.is_alive()
    assert not (tmp_path / "model" / "model.pt").exists()


def test_cancel_while_the_data_are_prepared(tmp_path):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 1  # set while the second case is being prepared

    events = list(train(_tiny_config(), _cases(), tmp_path / "model", should_stop=stop))
    assert [e.kind for e in events] == ["cancelled"]
    assert events[-1].result.status == "cancelled" and events[-1].result.steps == 0


def test_generator_close_leaves_model_loadable(tmp_path):
    out = tmp_path / "model"
    gen = train(_tiny_config(max_epochs=50, val_fraction=0.0), _cases(), out,
                should_stop=lambda: False)
    for event in gen:
        if event.kind == "step" and event.step == 6:  # mid-epoch, after one save
            before = (out / "model.pt").read_bytes()
            gen.close()
            break
    assert (out / "model.pt").read_bytes() == before
    load_model(out)


def test_time_budget_and_early_stopping(tmp_path):
    events, result = _run(train(_tiny_config(max_epochs=1000, time_budget_s=4.0), _cases(),
                                tmp_path / "a"))
    assert result.stop_reason == "time_budget" and result.elapsed_s < 8.0
    cfg = _tiny_config(max_epochs=100, early_stopping_patience=2, learning_rate=1e-9,
                       steps_per_epoch=1)
    _, result = _run(train(cfg, _cases(), tmp_path / "b"))
    assert result.stop_reason == "early_stopping" and result.epochs < 100


def test_fine_tune_to_new_label_set(tmp_path):
    parent = tmp_path / "parent"
    _run(train(_tiny_config(max_epochs=1), _cases(), parent))
    child = tmp_path / "child"
    cfg = _tiny_config(max_epochs=1, label_names={0: "background", 1: "blob"})
    events, result = _run(train(cfg, _cases(classes=1), child, init_model=parent))
    text = " ".join(e.message for e in events if e.kind == "message")
    assert "output layer starts afresh" in text and "Re-initialised" in text
    card, parent_card = read_card(child), read_card(parent)
    assert card.num_classes == 2 and card.version == 2 and card.parent_id == parent_card.model_id
    assert card.parent_version == 1


def test_init_from_a_different_task_is_refused(tmp_path):
    parent = tmp_path / "parent2d"
    _run(train(_tiny_config(max_epochs=1, dims=2, patch_size=(16, 16)), _cases(), parent))
    assert read_card(parent).dims == 2
    gen = train(_tiny_config(dims=3), _cases(), tmp_path / "x", init_model=parent)
    first = next(gen)
    assert first.kind == "error" and "different task" in first.message
    with pytest.raises(ModelLoadError):
        next(gen)
    assert not (tmp_path / "x").exists()


def test_sparse_in_memory_cases_train(tmp_path):
    cases = []
    for i, case in enumerate(_cases()):
        annotated = np.zeros(case.image.shape, bool)
        annotated[6:10] = True
        cases.append((case.image, case.labels, annotated) if i % 2 else
                     Case(case.case_id, case.image, case.labels, annotated))
    events, result = _run(train(_tiny_config(max_epochs=1, label_names=None), cases, tmp_path / "m"))
    assert result.status == "finished"
    assert read_card(tmp_path / "m").label_names == {0: "background", 1: "label 1", 2: "label 2"}


def test_bad_training_input(tmp_path):
    with pytest.raises(DatasetError, match="No training cases"):
        _run(train(_tiny_config(), [], tmp_path / "m"))
    unlabelled = [_blob_case("a", 0)]
    unlabelled[0].labels = np.full((16, 16, 16), IGNORE_LABEL, np.uint8)
    with pytest.raises(DatasetError, match="annotated"):
        _run(train(_tiny_config(), unlabelled, tmp_path / "m"))
    with pytest.raises(ValueError, match="dims"):
        TrainConfig(dims=4)
    assert not (tmp_path / "m").exists()


def test_batched_validation_matches_sliding_window():
    torch.manual_seed(0)
    from napari_medseg.models import build_network, plan_network

    net = build_network(plan_network(3, 1, 3, [(2, 2, 2)] * 2, base_channels=4, max_channels=8))
    cases = [_blob_case(f"c{i}", i, shape=(12 + i, 16, 14)) for i in range(3)]
    images = [c.image.array[None].astype(np.float32) for c in cases]
    labels = [c.labels for c in cases]
    names = {0: "background", 1: "outer", 2: "core"}
    args = (net, images, labels, (16, 16, 16), 3, names, torch.device("cpu"))
    batched = validate(*args, batch_size=2)
    single = validate(*args, batch_size=0)
    assert batched == pytest.approx(single)
    assert set(batched) == {"dice_mean", "dice/outer", "dice/core"}


def test_same_seed_same_run(tmp_path):
    cfg = _tiny_config(max_epochs=1, steps_per_epoch=3, val_fraction=0.0, seed=7)
    first = [e.loss for e in _run(train(cfg, _cases(), tmp_path / "a"))[0] if e.kind == "step"]
    second = [e.loss for e in _run(train(cfg, _cases(), tmp_path / "b"))[0] if e.kind == "step"]
    assert first == pytest.approx(second, rel=1e-5)
    other = _tiny_config(max_epochs=1, steps_per_epoch=3, val_fraction=0.0, seed=8)
    third = [e.loss for e in _run(train(other, _cases(), tmp_path / "c"))[0] if e.kind == "step"]
    assert third != pytest.approx(first, rel=1e-5)


def test_dynunet_with_deep_supervision_trains(tmp_path):
    cfg = _tiny_config(max_epochs=1, steps_per_epoch=2, architecture="dynunet",
                       deep_supervision=True)
    events, result = _run(train(cfg, _cases(), tmp_path / "m"))
    assert result.status == "finished"
    net, card = load_model(tmp_path / "m")
    assert card.network["architecture"] == "dynunet" and card.network["deep_supervision"]
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 3, 16, 16, 16)


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Force the CPU bfloat16 detection on or off for one test."""
    from napari_medseg.models.engine import cpu_has_native_bf16

    def force(on: bool):
        monkeypatch.setenv("NAPARI_MEDSEG_CPU_BF16", "1" if on else "0")
        cpu_has_native_bf16.cache_clear()

    yield force
    cpu_has_native_bf16.cache_clear()


def test_mixed_precision_choice(cpu_bf16):
    from napari_medseg.models.engine import autocast_dtype

    cpu_bf16(True)
    assert autocast_dtype("cpu", True) is torch.bfloat16
    assert autocast_dtype("cpu", False) is None
    assert autocast_dtype("cuda", True) is torch.float16
    assert autocast_dtype("mps", True) is None
    cpu_bf16(False)
    assert autocast_dtype("cpu", True) is None


@pytest.mark.parametrize("bf16", [False, True])
def test_training_learns_with_and_without_cpu_bf16(tmp_path, cpu_bf16, bf16):
    cpu_bf16(bf16)
    cfg = _tiny_config(max_epochs=6, steps_per_epoch=6, base_channels=8, learning_rate=1e-2)
    events, result = _run(train(cfg, _cases(), tmp_path / "m"))
    losses = [e.loss for e in events if e.kind == "epoch"]
    assert losses[-1] < 0.7 * losses[0]
    # the saved weights are float32 whatever the compute type, and load for inference
    net, _ = load_model(tmp_path / "m")
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert result.best_metric is not None and result.best_metric > 0.3


def test_augmentation_presets_and_auto_choice():
    from napari_medseg.training.augment import AUTO_LIGHT_FROM_CASES, resolve_preset

    assert resolve_preset("auto", 5) == "strong"
    assert resolve_preset("auto", AUTO_LIGHT_FROM_CASES - 1) == "strong"
    assert resolve_preset("auto", AUTO_LIGHT_FROM_CASES) == "medium"
    assert resolve_preset("default") == "strong"
    strong, light = AugmentationConfig.preset("strong"), AugmentationConfig.preset("light")
    medium = AugmentationConfig.preset("auto", 180)
    assert strong.p_rotate > 0 and strong.p_scale > 0
    assert light.p_rotate == 0 and light.p_scale == 0 and light.p_flip == strong.p_flip
    assert 0 < medium.max_angle_deg < strong.max_angle_deg and medium.p_rotate > 0
    assert strong.scale_range[0] < medium.scale_range[0] < 1 < medium.scale_range[1]
    assert AugmentationConfig.preset("none") is None
    with pytest.raises(ValueError, match="Unknown augmentation preset"):
        TrainConfig(augmentation="heavy")


def test_start_message_names_the_augmentation(tmp_path):
    events, _ = _run(train(_tiny_config(max_epochs=1, steps_per_epoch=1), _cases(), tmp_path / "m"))
    start = next(e for e in events if e.kind == "start")
    assert "strong augmentation" in start.message  # 3 training cases: below the auto threshold


def test_default_batch_size_follows_the_patch(tmp_path):
    from napari_medseg.training.planning import default_batch_size

    assert default_batch_size((40, 56, 40)) == 4  # hippocampus-sized patches
    assert default_batch_size((96, 160, 160)) == 2
    assert default_batch_size((512, 512)) == 2
    cfg = _tiny_config(max_epochs=1, steps_per_epoch=1, batch_size=None)
    _run(train(cfg, _cases(), tmp_path / "auto"))
    assert read_card(tmp_path / "auto").train_config["batch_size"] == 4  # 16^3 patch: small
    _run(train(_tiny_config(max_epochs=1, steps_per_epoch=1, batch_size=3), _cases(),
               tmp_path / "fixed"))
    assert read_card(tmp_path / "fixed").train_config["batch_size"] == 3


def test_weight_average_follows_the_decay_ramp():
    from napari_medseg.training.loop import _WeightAverage

    net = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    ema = _WeightAverage(net, decay=0.9)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net, step=0)  # ramp: decay (1 + 0) / 10 = 0.1, the average mostly follows
    for k, v in ema.model.state_dict().items():
        assert torch.allclose(v, start[k] + 0.9)
    ema.update(net, step=10_000)  # settled: decay 0.9
    for k, v in ema.model.state_dict().items():
        assert torch.allclose(v, 0.9 * (start[k] + 0.9) + 0.1 * (start[k] + 1.0))
    assert all(not p.requires_grad for p in ema.model.parameters())


def test_ema_changes_what_is_saved_not_how_training_goes(tmp_path):
    kw = dict(max_epochs=1, steps_per_epoch=5, val_fraction=0.0, learning_rate=1e-2)
    runs = {}
    for name, decay in (("raw", None), ("ema", 0.9)):
        events, _ = _run(train(_tiny_config(ema_decay=decay, **kw), _cases(), tmp_path / name))
        net, card = load_model(tmp_path / name)
        runs[name] = ([e.loss for e in events if e.kind == "step"], net.state_dict(), card)
    assert runs["raw"][0] == pytest.approx(runs["ema"][0], rel=1e-6)  # same optimisation
    raw_w, ema_w = runs["raw"][1], runs["ema"][1]
    assert any(not torch.allclose(raw_w[k], ema_w[k]) for k in raw_w)  # a different model kept
    assert runs["ema"][2].train_config["ema_decay"] == 0.9
    assert runs["raw"][2].train_config["ema_decay"] is None
    with pytest.raises(ValueError, match="EMA"):
        TrainConfig(ema_decay=1.5)


# ---------------------------------------------------------------------------- mirroring


def _oriented(case: Case, affine: np.ndarray) -> Case:
    """The case as if read from a NIfTI file that states its orientation."""
    img = case.image
    vol = Volume(img.array, img.spacing, affine, img.modality,
                 {"format": "nifti", "sform_code": 1, "qform_code": 1})
    return Case(case.case_id, vol, case.labels)


# NIfTI identity affine (i = x = left-right) seen in array order (Z, Y, X): array axis 2
_RAS_ZYX = np.array([[0, 0, 1.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])


def test_plan_mirror_axes_reads_left_right_from_the_affine():
    from napari_medseg.training.augment import left_right_axis, plan_mirror_axes

    assert left_right_axis(_RAS_ZYX) == 2
    assert left_right_axis(np.diag([2.0, 1.0, 1.0, 1.0])) == 0
    tilted = np.eye(4)
    tilted[:3, :3] = [[0.5, 0.5, 0.7], [0.5, 0.5, -0.7], [0.7, -0.7, 0.0]]
    assert left_right_axis(tilted) is None  # oblique: no axis within ~37 degrees of x
    names = {0: "background", 1: "Anterior", 2: "Posterior"}
    assert plan_mirror_axes("auto", 3, [_RAS_ZYX] * 3, 3, names)[0] == (2,)
    assert plan_mirror_axes("left-right", 3, [_RAS_ZYX], 3, names)[0] == (2,)
    # a slice-wise model sees array axes 1 and 2 as its axes 0 and 1
    assert plan_mirror_axes("auto", 2, [_RAS_ZYX], 3, names)[0] == (1,)
    assert plan_mirror_axes("auto", 2, [np.diag([1.0, 1, 1, 1])], 3, names)[0] == ()  # sagittal
    # unknown or disagreeing orientations, 2D images: every axis (as before)
    assert plan_mirror_axes("auto", 3, [_RAS_ZYX, None], 3, names)[0] == (0, 1, 2)
    assert plan_mirror_axes("auto", 3, [_RAS_ZYX, np.eye(4)], 3, names)[0] == (0, 1, 2)
    assert plan_mirror_axes("auto", 2, [np.eye(4)], 2, names)[0] == (0, 1)
    # greyscale 2D pictures (ultrasound, X-ray) keep their top: only the columns mirror
    axes, why = plan_mirror_axes("auto", 2, [None], 2, names, greyscale_pictures=True)
    assert axes == (1,) and "left-right" in why
    assert plan_mirror_axes("left-right", 2, [None], 2, names, greyscale_pictures=True)[0] == (1,)
    assert plan_mirror_axes("all", 2, [None], 2, names, greyscale_pictures=True)[0] == (0, 1)
    # class names that say left/right: a mirrored left kidney would look like a right one
    sided = {0: "background", 1: "kidney_L", 2: "kidney_R"}
    axes, why = plan_mirror_axes("auto", 3, [_RAS_ZYX], 3, sided)
    assert axes == () and "kidney_L" in why
    assert plan_mirror_axes("auto", 3, [_RAS_ZYX], 3, {0: "bg", 1: "Left lung"})[0] == ()
    assert plan_mirror_axes("auto", 3, [_RAS_ZYX], 3, {0: "bg", 1: "liver", 2: "lr"})[0] == (2,)
    assert plan_mirror_axes("all", 3, [_RAS_ZYX], 3, sided)[0] == (0, 1, 2)
    assert plan_mirror_axes("none", 3, [_RAS_ZYX], 3, names)[0] == ()
    with pytest.raises(ValueError, match="Unknown mirror mode"):
        TrainConfig(mirror="sideways")


def test_augmentation_flips_only_the_chosen_axes():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(2 * 6 * 7 * 8).reshape(2, 6, 7, 8) % 251
    x = y.float()[:, None]
    cfg = AugmentationConfig(p_rotate=0, p_scale=0, p_brightness=0, p_contrast=0, p_gamma=0,
                             p_noise=0, p_flip=1.0, flip_axes=(2,))
    xa, ya = augment_batch(x, y, cfg, gen)
    assert torch.equal(ya, y.flip(3)) and torch.equal(xa, x.flip(4))
    xn, yn = augment_batch(x, y, AugmentationConfig(**{**cfg.__dict__, "flip_axes": ()}), gen)
    assert torch.equal(yn, y) and torch.equal(xn, x)


def test_training_records_the_mirror_axes_it_used(tmp_path):
    oriented = [_oriented(c, _RAS_ZYX) for c in _cases()]
    events, _ = _run(train(_tiny_config(max_epochs=1, steps_per_epoch=2), oriented, tmp_path / "a"))
    assert read_card(tmp_path / "a").mirror_axes == [2]
    assert any("only left-right (array axis 2)" in e.message for e in events if e.kind == "message")
    # arrays without a stated orientation are mirrored along every axis, as before
    _run(train(_tiny_config(max_epochs=1, steps_per_epoch=2), _cases(), tmp_path / "b"))
    assert read_card(tmp_path / "b").mirror_axes == [0, 1, 2]
    # fine-tuning keeps the parent's plan; an explicit mode replaces it
    _run(train(_tiny_config(max_epochs=1, steps_per_epoch=2), oriented, tmp_path / "c",
               init_model=tmp_path / "b"))
    assert read_card(tmp_path / "c").mirror_axes == [0, 1, 2]
    _run(train(_tiny_config(max_epochs=1, steps_per_epoch=2, mirror="left-right"), oriented,
               tmp_path / "d", init_model=tmp_path / "b"))
    assert read_card(tmp_path / "d").mirror_axes == [2]
