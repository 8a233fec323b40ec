"""Native 2D training on pictures: budget-fitted plans, picture sampling/augmentation, FOV
normalisation, ignored pixels, colour model cards, and a few real steps on CHASE_DB1 crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_medseg.dataset import Case
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io import Volume
from napari_medseg.models.factory import plan_2d_patch, plan_network, plan_patch_size
from napari_medseg.preprocess import (
    NormalisationParams,
    field_of_view_mask,
    fit_normalisation,
    prepare_image,
)
from napari_medseg.training import (
    AugmentationConfig,
    PatchSampler,
    SegmentationLoss,
    TrainConfig,
    augment_batch,
    train,
)
from napari_medseg.training.planning import _as_dataset, _measure_pixels_per_s, _plan

CHASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "CHASE_DB1"


def _fundus_like(shape=(96, 100), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 (Y, X, 3) with a dark border around a bright disc, vessel-like labels)."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape)
    cy, cx = shape[0] / 2, shape[1] / 2
    disc = (y - cy) ** 2 + (x - cx) ** 2 < (0.45 * min(shape)) ** 2
    vessels = (np.abs(np.sin(x / 7.0) * 10 + cy - y) < 1.5) & disc
    rgb = np.zeros((*shape, 3), np.float32)
    rgb[disc] = (180, 90, 40)
    rgb[vessels] *= 0.6
    rgb += rng.normal(0, 6, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), vessels.astype(np.uint8)


def _rgb_case(case_id: str, shape=(96, 100), seed=0) -> Case:
    rgb, vessels = _fundus_like(shape, seed)
    return Case(case_id, Volume(rgb, name=case_id, rgb=True), vessels)


# ------------------------------------------------------------------------------ planning


def test_plan_large_rgb_picture_on_a_cpu_budget_uses_small_patches():
    cases = [_rgb_case(f"p{i}", (960, 999), i) for i in range(2)]
    config = TrainConfig(time_budget_s=600, device="cpu", val_fraction=0.5,
                         label_names={0: "background", 1: "vessel"})
    plan = _plan(config, cases, None, 0, device=torch.device("cpu"), measure=False)
    card = plan.card
    assert card.dims == 2 and card.in_channels == 3
    assert all(p <= 256 for p in card.patch_size) and len(card.patch_size) == 2
    assert plan.batch_size >= 4
    assert card.spacing is None  # pictures on one grid: never resampled
    assert [n["region"] for n in card.normalisation] == ["fov"] * 3
    assert card.channel_names == ["red", "green", "blue"]
    assert any("2D plan for 600 s" in m for m in plan.messages)
    # colour photographs of thin vessels: local contrast equalised (recorded in the card)
    assert [n["local_contrast"] for n in card.normalisation] == [True] * 3
    assert any("CLAHE" in m for m in plan.messages)


def test_local_contrast_only_for_colour_photographs_of_thin_structures():
    config = TrainConfig(time_budget_s=60, device="cpu", val_fraction=0.5,
                         label_names={0: "background", 1: "vessel"})
    grey = []
    for i in range(2):
        rgb, vessels = _fundus_like((96, 100), i)
        grey.append(Case(f"g{i}", Volume(rgb[..., 1].astype(np.float32), name=f"g{i}"),
                         vessels))
    plan = _plan(config, grey, None, 0, device=torch.device("cpu"), measure=False)
    assert [n["local_contrast"] for n in plan.card.normalisation] == [False]
    blobs = [_rgb_case(f"b{i}", seed=i) for i in range(2)]
    for case in blobs:  # a large round lesion instead of vessels
        yy, xx = np.indices(case.labels.shape)
        case.labels[:] = ((yy - 48) ** 2 + (xx - 50) ** 2 < 30**2).astype(np.uint8)
    plan = _plan(config, blobs, None, 0, device=torch.device("cpu"), measure=False)
    assert not any(n["local_contrast"] for n in plan.card.normalisation)
    forced = TrainConfig(time_budget_s=60, device="cpu", val_fraction=0.5, local_contrast="on",
                         label_names={0: "background", 1: "vessel"})
    plan = _plan(forced, grey, None, 0, device=torch.device("cpu"), measure=False)
    assert [n["local_contrast"] for n in plan.card.normalisation] == [True]
    with pytest.raises(ValueError, match="local_contrast"):
        TrainConfig(local_contrast="yes")


@pytest.mark.parametrize("pixels_per_s", [2e5, 1e6, 2e6])
def test_plan_2d_patch_many_steps_of_small_patches_when_time_is_short(pixels_per_s):
    patch, strides, batch, steps = plan_2d_patch((960, 999), pixels_per_s, 480)
    assert max(patch) <= 256 and 8 <= batch <= 16
    assert len(strides) >= 3 and all(p % 2 ** len(strides) == 0 for p in patch)
    if max(patch) > 128:  # not the smallest patch: the budget buys the steps planned
        assert steps >= 1500


def test_plan_2d_whole_small_picture_with_a_long_budget():
    cases = [_rgb_case(f"s{i}", (64, 64), i) for i in range(3)]
    config = TrainConfig(time_budget_s=3600, device="cpu", val_fraction=0.34,
                         label_names={0: "background", 1: "vessel"})
    plan = _plan(config, cases, None, 0, device=torch.device("cpu"), measure=False)
    assert plan.card.patch_size == [64, 64]
    assert plan.batch_size >= 8
    # and a GPU-sized throughput trains whole 480x544 ultrasound pictures
    patch, _, batch, _ = plan_2d_patch((480, 544), 3e7, 500)
    assert patch == (480, 544) and batch >= 8
    # without a budget: the whole image as before (at most 512 x 512)
    assert plan_2d_patch((480, 544), None, None)[0] == (480, 544)


def test_throughput_timing_is_positive_and_quick():
    _, strides = plan_patch_size((32, 32))
    spec = plan_network(2, 3, 2, strides, base_channels=4, max_channels=8)
    rate = _measure_pixels_per_s(spec, (32, 32), 2, torch.device("cpu"), amp=False, steps=1,
                                 warmup=1)
    assert np.isfinite(rate) and rate > 0


def test_3d_plan_of_a_hippocampus_like_volume_is_unchanged():
    rng = np.random.default_rng(0)
    cases = []
    for i in range(3):
        lab = np.zeros((35, 50, 36), np.uint8)
        lab[10:20, 15:30, 10:20] = 1
        lab[20:25, 15:30, 10:20] = 2
        img = (lab * 50 + rng.normal(100, 10, lab.shape)).astype(np.float32)
        cases.append(Case(f"h{i}", Volume(img, (1.0, 1.0, 1.0), modality="MR"), lab))
    for budget in (None, 600):
        config = TrainConfig(time_budget_s=budget, device="cpu", val_fraction=0.34,
                             label_names={0: "background", 1: "Anterior", 2: "Posterior"})
        plan = _plan(config, cases, None, 0, device=torch.device("cpu"))
        card = plan.card
        patch, strides = plan_patch_size((35, 50, 36), config.max_patch_voxels)
        assert card.dims == 3 and card.patch_size == [40, 56, 40] == list(patch)
        assert plan.batch_size == 4 and card.spacing == [1.0, 1.0, 1.0]
        assert card.network == plan_network(3, 1, 3, strides)
        assert [n["scheme"] for n in card.normalisation] == ["zscore"]
        assert [n["region"] for n in card.normalisation] == ["all"]
        assert not any("2D plan" in m for m in plan.messages)


# ------------------------------------------------------------------------------ normalisation


def test_picture_normalisation_is_per_channel_inside_the_field_of_view():
    rgb, _ = _fundus_like((120, 128))
    channels = [rgb[..., c] for c in range(3)]
    fov = field_of_view_mask(channels)
    y, x = np.indices(rgb.shape[:2])
    disc = (y - 60) ** 2 + (x - 64) ** 2 < (0.45 * 120) ** 2
    assert fov is not None and np.mean(fov == disc) > 0.98
    params = [fit_normalisation([c], "unknown", field_of_view=True) for c in channels]
    assert all(p.region == "fov" for p in params)
    out = prepare_image(channels, (1.0, 1.0), params)
    for c in range(3):  # each channel z-scored on its own, over the disc
        assert abs(float(out[c][fov].mean())) < 1e-3
        assert abs(float(out[c][fov].std()) - 1) < 1e-3
    # a picture without a dark border: every pixel counts; old cards read as "all"
    assert field_of_view_mask([np.random.default_rng(0).random((40, 40))]) is None
    assert NormalisationParams.from_dict({"scheme": "zscore"}).region == "all"
    with pytest.raises(ValueError, match="region"):
        NormalisationParams(region="lesion")


# ------------------------------------------------------------------------------ loss


def test_ignored_pixels_contribute_nothing_to_the_loss():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 16, 16, generator=gen)
    target = torch.randint(0, 3, (2, 16, 16), generator=gen)
    target[:, :5] = IGNORE_LABEL  # e.g. outside the field of view
    target[1, :, :3] = IGNORE_LABEL
    ignored = target == IGNORE_LABEL
    other = logits.clone()
    other[ignored.unsqueeze(1).expand_as(other)] = torch.randn(
        int(ignored.sum()) * 3, generator=gen) * 50
    for kind in ("dice_ce", "dice", "ce", "focal", "jaccard", "dice_focal"):
        fn = SegmentationLoss(kind)
        a = logits.clone().requires_grad_(True)
        loss = fn(a, target)
        loss.backward()
        assert torch.equal(loss.detach(), fn(other, target))  # exact: bit for bit
        assert bool((a.grad.permute(0, 2, 3, 1)[ignored] == 0).all())
        assert bool((a.grad.permute(0, 2, 3, 1)[~ignored] != 0).any())
    # Case.annotated = False is the same as label 255
    rgb, vessels = _fundus_like()
    fov = field_of_view_mask([rgb[..., c] for c in range(3)])
    case = Case("c", Volume(rgb, rgb=True), vessels, fov)
    assert bool((case.training_labels()[~fov] == IGNORE_LABEL).all())


# ------------------------------------------------------------------------------ sampling


def test_picture_sampler_centres_random_patches_inside_the_annotated_region():
    lab = np.full((200, 200), IGNORE_LABEL, np.uint8)
    lab[150:190, 10:50] = 0
    lab[160:170, 20:30] = 1
    img = np.random.default_rng(0).normal(size=(3, 200, 200)).astype(np.float32)
    sampler = PatchSampler([img], [lab], (32, 32), foreground_fraction=0.0, seed=0)
    _, y = sampler.sample_batch(16)
    assert bool((y != IGNORE_LABEL).any(dim=(1, 2)).all())


def test_picture_sampler_shows_large_lesions_with_their_border():
    lab = np.zeros((256, 256), np.uint8)
    lab[16:240, 16:240] = 1  # a lesion filling most of the picture
    img = lab[None].astype(np.float32)
    sampler = PatchSampler([img], [lab], (48, 48), foreground_fraction=1.0, seed=0,
                           border_fraction=1.0)
    _, y = sampler.sample_batch(12)
    both = [(y[b] == 0).any() and (y[b] == 1).any() for b in range(12)]
    assert all(both)
    assert sampler.border_points[0][1].shape[1] == 2
    # thin vessel-like labels: almost every foreground pixel is border, so sampled as before
    thin = np.zeros((64, 64), np.uint8)
    thin[:, 30:32] = 1
    s2 = PatchSampler([thin[None].astype(np.float32)], [thin], (16, 16), 1.0, seed=0)
    assert len(s2.border_points[0][1]) == len(s2.fg_points[0][1])


# ------------------------------------------------------------------------------ augmentation


def test_colour_augmentation_keeps_shapes_dtypes_and_label_alignment():
    gen = torch.Generator().manual_seed(0)
    lab = torch.zeros(6, 64, 64, dtype=torch.int64)
    lab[:, 20:44, 10:30] = 1
    lab[:, 40:50, 35:60] = 1
    x = torch.stack([lab * 4.0, lab * -2.0, lab * 1.0], 1) + 0.05 * torch.randn(6, 3, 64, 64)
    cfg = AugmentationConfig.preset("strong").for_pictures(colour=True)
    assert cfg.max_angle_deg == 180 and cfg.p_channel_jitter > 0 and cfg.pad_label == IGNORE_LABEL
    # spatial transforms only: the picture and its labels move together
    spatial = AugmentationConfig(p_rotate=1.0, max_angle_deg=180.0, p_scale=1.0, p_flip=0.5,
                                 p_brightness=0, p_contrast=0, p_gamma=0, p_noise=0,
                                 pad_label=IGNORE_LABEL)
    xa, ya = augment_batch(x, lab, spatial, gen)
    assert xa.shape == x.shape and ya.shape == lab.shape and ya.dtype == lab.dtype
    known = ya != IGNORE_LABEL
    agree = ((xa[:, 0] > 2.0) == (ya == 1))[known].float().mean()
    assert float(agree) > 0.97
    assert bool((~known).any())  # rotated-in corners are ignored, not called background
    # everything on, colour and greyscale variants
    full = AugmentationConfig(p_rotate=1, p_scale=1, p_brightness=1, p_contrast=1, p_gamma=1,
                              p_noise=1, p_channel_jitter=1, p_blur=1, p_speckle=1)
    for colour in (True, False):
        xb, yb = augment_batch(x if colour else x[:, :1], lab,
                               full if colour else cfg.for_pictures(False), gen)
        assert xb.dtype == torch.float32 and torch.isfinite(xb).all()
        assert xb.shape[1] == (3 if colour else 1) and yb.shape == lab.shape
        assert set(torch.unique(yb).tolist()) <= {0, 1, IGNORE_LABEL}
    # per-channel jitter changes channels differently
    jit = AugmentationConfig(p_rotate=0, p_scale=0, p_flip=0, p_brightness=0, p_contrast=0,
                             p_gamma=0, p_noise=0, p_channel_jitter=1.0)
    xj, yj = augment_batch(x, lab, jit, gen)
    assert torch.equal(yj, lab)
    ratios = (xj[:, 0] / x[:, 0])[lab == 1].mean(), (xj[:, 2] / x[:, 2])[lab == 1].mean()
    assert abs(float(ratios[0] - ratios[1])) > 1e-4


# ------------------------------------------------------------------------------ end to end


def test_in_memory_colour_cases_name_their_channels():
    ds = _as_dataset([_rgb_case("a"), _rgb_case("b", seed=1)], TrainConfig())
    assert ds.channel_names == ["red", "green", "blue"]
    grey = _as_dataset([(Volume(np.zeros((8, 8), np.float32)), np.zeros((8, 8), np.uint8))],
                       TrainConfig())
    assert grey.channel_names == ["image"]


def _chase_crops(n: int = 3, size: int = 192) -> list[Case]:
    from PIL import Image

    cases = []
    for i in range(1, n + 1):
        cid = f"Image_{i:02d}L"
        rgb = np.asarray(Image.open(CHASE / "images" / f"{cid}.jpg").convert("RGB"))
        mask = np.asarray(Image.open(CHASE / "masks" / f"{cid}_1stHO.png")) > 0
        y0, x0 = rgb.shape[0] // 2 - size // 2, rgb.shape[1] // 2 - size // 2
        crop = (slice(y0, y0 + size), slice(x0, x0 + size))
        cases.append(Case(cid, Volume(np.ascontiguousarray(rgb[crop]), name=cid, rgb=True),
                          mask[crop].astype(np.uint8)))
    return cases


@pytest.mark.skipif(not (CHASE / "images").is_dir(), reason="CHASE_DB1 not in shared data")
def test_a_few_steps_on_chase_db1_crops_lower_the_loss_and_write_a_colour_card(tmp_path):
    from napari_medseg.inference.predict import predict_volume
    from napari_medseg.models import read_card

    torch.set_num_threads(1)
    cases = _chase_crops()
    config = TrainConfig(dims=2, patch_size=(96, 96), batch_size=4, steps_per_epoch=20,
                         max_epochs=2, base_channels=8, max_channels=32, device="cpu",
                         val_fraction=0.34, seed=0, learning_rate=1e-2, amp=False,
                         label_names={0: "background", 1: "vessel"}, task_name="CHASE crops")
    gen = train(config, cases, tmp_path / "model")
    losses = []
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
        if event.kind == "step":
            losses.append(event.loss)
    assert result.status == "finished" and len(losses) == 40
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    card = read_card(tmp_path / "model")
    assert card.in_channels == 3 and card.channel_names == ["red", "green", "blue"]
    assert card.dims == 2 and [n["region"] for n in card.normalisation] == ["fov"] * 3
    assert card.mirror_axes == [0, 1]  # a colour photograph has no up
    rgb = Volume(np.stack([c.array for c in cases[0].channels], -1), rgb=True)
    pred = predict_volume(tmp_path / "model", rgb, device="cpu")
    assert pred.labels.shape == (192, 192)


def test_large_lesions_get_patches_that_hold_them_thin_vessels_do_not():
    from napari_medseg.training.planning import _object_extent

    y, x = np.indices((240, 272))
    lesions = [(((y - 120) / 70) ** 2 + ((x - 130 - k) / 90) ** 2 < 1).astype(np.uint8)
               for k in range(4)]
    extent = _object_extent(lesions)
    assert extent is not None and 170 <= extent <= 190
    _, vessels = _fundus_like((200, 200))
    assert _object_extent([vessels]) is None
    # short CPU budget: 128x128 by steps alone; the lesions make it grow (fewer steps)
    small, _, batch, steps = plan_2d_patch((480, 544), 7e5, 200)
    grown, _, batch2, steps2 = plan_2d_patch((480, 544), 7e5, 200, min_side=extent)
    # a float32-only CPU (the synthetic-ultrasound benchmark's timing there): a patch between
    # 128 and the lesions' size that still buys 300 steps (320x320 would give 164)
    slow, _, _, steps_slow = plan_2d_patch((480, 544), 4.9e5, 224, min_side=286.0)
    assert slow == (192, 192) and steps_slow >= 300
    assert small == (128, 128) and min(grown) >= extent and steps2 >= 300
    assert batch2 == batch and steps2 < steps
    # but never below the affordable number of steps
    capped, _, _, steps3 = plan_2d_patch((480, 544), 7e5, 30, min_side=extent)
    assert min(capped) < extent and (steps3 >= 300 or capped == (128, 128))


def _lesion_case(case_id: str, seed: int, shape=(64, 72)) -> Case:
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape)
    lesion = (((y - 32) / 14) ** 2 + ((x - 36) / 18) ** 2 < 1).astype(np.uint8)
    grey = (120 + rng.normal(0, 10, shape) - 60 * lesion).clip(0, 255).astype(np.uint8)
    return Case(case_id, Volume(grey, name=case_id), lesion)


@pytest.mark.parametrize(("kind", "n", "held"), [
    ("vessels", 20, 1),    # thin structures, a small set: 1 in 20 (CHASE_DB1)
    ("lesions", 20, 4),    # objects: the default 1 in 5, never a single picture
    ("lesions", 300, 25),  # a large set: capped, the rest train
])
def test_picture_validation_split_fits_the_structures_and_the_set_size(kind, n, held):
    if kind == "vessels":
        cases = [_rgb_case(f"p{i:03d}", (48, 50), i) for i in range(n)]
    else:
        cases = [_lesion_case(f"p{i:03d}", i) for i in range(n)]
    config = TrainConfig(device="cpu", max_epochs=1,
                         label_names={0: "background", 1: "structure"})
    plan = _plan(config, cases, None, 0, device=torch.device("cpu"), measure=False)
    assert len(plan.val_ids) == held and len(plan.train_ids) == n - held
    assert any(f"{n} pictures: {held} held out for validation" in m for m in plan.messages)
    # a fraction the user chose is kept as given
    chosen = TrainConfig(device="cpu", max_epochs=1, val_fraction=0.5,
                         label_names={0: "background", 1: "structure"})
    assert len(_plan(chosen, cases, None, 0, device=torch.device("cpu"),
                     measure=False).val_ids) == n // 2


def _colourless_case(case_id: str, seed: int) -> Case:
    grey_case = _lesion_case(case_id, seed)
    rgb = np.repeat(grey_case.image.array[..., None], 3, axis=2)
    return Case(case_id, Volume(rgb, name=case_id, rgb=True), grey_case.labels)


def test_greyscale_pictures_stored_as_rgb_train_a_one_channel_model(tmp_path):
    from napari_medseg.inference import predict_volume
    from napari_medseg.models.card import read_card

    cases = [_colourless_case(f"u{i}", i) for i in range(3)]
    ds = _as_dataset(cases, TrainConfig())
    assert ds.channel_names == ["image"] and ds.cases[0].image.array.ndim == 2
    assert ds.cases[0].image.name == "u0"
    # one picture in colour: all stay colour (three channels)
    rgb, _ = _fundus_like((64, 72))
    mixed = [*cases, Case("c", Volume(rgb, name="c", rgb=True), cases[0].labels)]
    assert _as_dataset(mixed, TrainConfig()).channel_names == ["red", "green", "blue"]
    config = TrainConfig(max_epochs=1, steps_per_epoch=2, patch_size=(32, 32), device="cpu",
                         label_names={0: "background", 1: "lesion"})
    gen = train(config, cases, tmp_path / "m")
    messages = [ev.message for ev in gen]
    assert any("trained as one greyscale channel" in m for m in messages)
    assert read_card(tmp_path / "m").in_channels == 1
    # greyscale pictures (ultrasound) keep their top at the top: mirrored left-right only
    assert read_card(tmp_path / "m").mirror_axes == [1]
    # the model takes the picture stored either way
    grey = _lesion_case("g", 7).image
    for image in (grey, Volume(np.repeat(grey.array[..., None], 3, 2), name="rgb", rgb=True)):
        out = predict_volume(tmp_path / "m", image)
        assert out.labels.shape == (64, 72)


def test_pictures_train_at_a_gentler_default_learning_rate(tmp_path):
    from napari_medseg.training.config import default_learning_rate

    assert default_learning_rate("adamw") == 5e-3
    assert default_learning_rate("adamw", fine_tuning=True) == 2e-3
    assert default_learning_rate("adamw", pictures=True) == 1e-3
    assert default_learning_rate("adamw", pictures=True, fine_tuning=True) == 1e-3
    assert default_learning_rate("sgd", pictures=True) == 1e-2
    cases = [_lesion_case(f"l{i}", i) for i in range(3)]
    config = TrainConfig(max_epochs=1, steps_per_epoch=3, patch_size=(32, 32), device="cpu",
                         warmup_fraction=0.0, label_names={0: "background", 1: "lesion"})
    gen = train(config, cases, tmp_path / "m")
    messages = []
    while True:
        try:
            messages.append(next(gen).message)
        except StopIteration as stop:
            result = stop.value
            break
    assert "AdamW, peak learning rate 0.001 for 2D pictures." in messages
    assert 0 < result.history[0]["lr"] <= 1e-3
    # a rate the user chose is used as given
    chosen = TrainConfig(max_epochs=1, steps_per_epoch=1, patch_size=(32, 32), device="cpu",
                         learning_rate=3e-4, label_names={0: "background", 1: "lesion"})
    assert "AdamW, peak learning rate 0.0003." in [e.message for e in train(chosen, cases,
                                                                              tmp_path / "c")]
