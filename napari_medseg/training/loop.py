"""``train()``: the training generator (plan -> preprocess -> optimise -> validate -> save)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_medseg.dataset.msd import (
    Case,
    Dataset,
    DatasetError,
    label_colours,
    load_msd_dataset,
    split_case_ids,
)
from napari_medseg.events import IGNORE_LABEL, Event
from napari_medseg.inference.engine import (
    autocast_dtype,
    channels_last_format,
    resolve_device,
    sliding_window_probabilities,
)
from napari_medseg.interactive.guidance import (
    ZeroGuidance,
    add_guidance_channels,
    channels_per_class,
    guidance_channels,
)
from napari_medseg.io.volume import Volume
from napari_medseg.metrics import dice
from napari_medseg.models.card import (
    CARD_FILE,
    ModelCard,
    ModelFolderBusyError,
    ModelLoadError,
    _atomic_write_bytes,
    model_folder_lock,
    read_card,
    save_model,
)
from napari_medseg.models.factory import (
    build_network,
    count_parameters,
    load_matching_weights,
    plan_2d_patch,
    plan_network,
    plan_patch_size,
)
from napari_medseg.preprocess import (
    NormalisationParams,
    fit_normalisation,
    median_spacing,
    prepare_image,
    prepare_labels,
)
from napari_medseg.training.augment import (
    AugmentationConfig,
    augment_batch,
    plan_mirror_axes,
    resolve_preset,
)
from napari_medseg.training.config import TrainConfig, TrainResult
from napari_medseg.training.ddp import DistributedContext
from napari_medseg.training.losses import SegmentationLoss
from napari_medseg.training.sampling import PatchSampler

DatasetLike = str | os.PathLike | Dataset | Sequence[Case] | Sequence[tuple[Volume, np.ndarray]]
StopFlag = Callable[[], bool] | Any | None

_MAX_2D_PATCH_VOXELS = 512 * 512


@dataclass
class _Plan:
    dataset: Dataset
    train_ids: list[str]
    val_ids: list[str]
    card: ModelCard
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    init_state: dict[str, torch.Tensor] | None = None
    messages: list[str] = field(default_factory=list)
    batch_size: int = 2
    pictures: bool = False
    """Native 2D pictures (photographs, ultrasound): picture augmentation, lean validation."""


def _as_dataset(dataset: DatasetLike, config: TrainConfig) -> Dataset:
    if isinstance(dataset, (str, os.PathLike)):
        return load_msd_dataset(dataset)
    if isinstance(dataset, Dataset):
        return dataset
    items = list(dataset)
    if not items:
        raise DatasetError("No training cases were given.")
    cases = []
    for i, item in enumerate(items):
        if isinstance(item, Case):
            cases.append(item)
        else:
            image, labels = item[0], item[1]
            annotated = item[2] if len(item) > 2 else None
            cases.append(Case(f"case_{i:03d}", image if isinstance(image, Volume) else Volume(image),
                              labels, annotated))
    for case in cases:
        if case.labels is None:
            raise DatasetError(f"Case {case.case_id} has no labels to learn from.")
    names = config.label_names
    if names is None:
        top = max(int(c.labels[c.labels != IGNORE_LABEL].max(initial=0)) for c in cases)
        names = {0: "background", **{v: f"label {v}" for v in range(1, max(top, 1) + 1)}}
    names = {int(k): str(v) for k, v in names.items()}
    names.setdefault(0, "background")
    modality = config.modality or cases[0].image.modality
    # a colour picture's channels are named red, green, blue (Volume.channel_volumes)
    channel_names = [ch.channel_names[0] for ch in cases[0].channels]
    return Dataset(cases, dict(sorted(names.items())), modality, channel_names,
                   config.task_name or "napari-medseg task")


def _check_labels(ds: Dataset) -> None:
    top = max(ds.label_names)
    any_annotated = False
    for case in ds.cases:
        lab = case.training_labels()
        valid = lab[lab != IGNORE_LABEL]
        any_annotated |= valid.size > 0
        if valid.size and int(valid.max()) > top:
            raise DatasetError(
                f"Case {case.case_id} contains label {int(valid.max())} but only labels up to "
                f"{top} are named."
            )
        if len(case.channels) != len(ds.cases[0].channels):
            raise DatasetError(f"Case {case.case_id} has a different number of image channels.")
    if not any_annotated:
        raise DatasetError("No case contains annotated voxels.")


def _resolved_target(spacing: Sequence[float], target: Sequence[float | None] | None):
    if target is None:
        return None
    target = list(target)[-len(spacing):]
    return tuple(float(s if t is None else t) for s, t in zip(spacing, target, strict=True))


def _mirror_plan(mode: str, dims: int, cases: Sequence[Case], ndim: int, ds: Dataset,
                 messages: list[str]) -> list[int]:
    affines = [c.image.affine if c.image.has_orientation else None for c in cases]
    axes, why = plan_mirror_axes(mode, dims, affines, ndim, ds.label_names)
    messages.append(f"Mirror augmentation (and test-time augmentation): {why}.")
    return list(axes)


class _Cancelled(Exception):
    """The user cancelled while the data were being prepared."""


def _is_picture_dataset(cases: Sequence[Case]) -> bool:
    """2D pictures (photographs, ultrasound, X-ray): native 2D images or single-slice volumes."""
    return all(c.image.ndim == 2 or c.image.shape[0] == 1 for c in cases)


def _thin_structures(labels: Sequence[np.ndarray], max_cases: int = 8) -> bool:
    """Whether the foreground is thin (vessel-like): a 2-pixel erosion removes 30 % of it or more.

    (Retinal vessels of CHASE_DB1 keep about half, breast lesions over 90 %.)
    """
    from scipy import ndimage

    kept, total = 0, 0
    for lab in list(labels)[:max_cases]:
        fg = (lab > 0) & (lab != IGNORE_LABEL)
        if fg.ndim == 3:
            fg = fg.reshape(-1, *fg.shape[-2:])
            eroded = np.stack([ndimage.binary_erosion(s, iterations=2) for s in fg])
        else:
            eroded = ndimage.binary_erosion(fg, iterations=2)
        kept += int(eroded.sum())
        total += int(fg.sum())
    return total > 0 and kept < 0.7 * total


#: A 2D patch side should be at least this many times the typical extent of a (non-thin) object.
_CONTEXT_FACTOR_2D = 1.0


def _object_extent(labels: Sequence[np.ndarray], max_cases: int = 32) -> float | None:
    """Typical extent (pixels) of the foreground objects of 2D labels, None for thin ones.

    The 75th percentile over connected foreground regions of the longer side of their
    bounding box; specks under 16 pixels are left out. Thin (vessel-like) foreground has no
    useful extent (one tree spans the picture) and gives None.
    """
    from scipy import ndimage

    labels = [lab.reshape(-1, *lab.shape[-2:]) for lab in list(labels)[:max_cases]]
    if _thin_structures(labels):
        return None
    extents = []
    for stack in labels:
        for lab in stack:
            fg = (lab > 0) & (lab != IGNORE_LABEL)
            if not fg.any():
                continue
            comp, n = ndimage.label(fg)
            sizes = np.bincount(comp.ravel(), minlength=n + 1)
            for k, box in enumerate(ndimage.find_objects(comp), start=1):
                if box is not None and sizes[k] >= 16:
                    extents.append(max(sl.stop - sl.start for sl in box))
    return float(np.percentile(extents, 75)) if extents else None


def _picture_target_spacing(cases: Sequence[Case], thin: bool) -> list[float] | None:
    """Target spacing of 2D pictures: none when they share a grid (or say no spacing), else the
    median, or the finest spacing when the structures are thin (never downsample vessels)."""
    spacings = np.array([c.image.spacing[-2:] for c in cases], dtype=float)
    if np.allclose(spacings, spacings[0], rtol=1e-3):
        return None
    return [float(v) for v in (spacings.min(0) if thin else np.median(spacings, 0))]


def _plan(config: TrainConfig, dataset: DatasetLike, init_model, rank_seed: int,
          stop_requested: Callable[[], bool] = lambda: False,
          device: torch.device | None = None, measure: bool = True,
          t0: float | None = None) -> _Plan:
    """Fingerprint the data and choose the plan (spacing, normalisation, patch, network, batch).

    ``device`` and ``measure``: 2D plans under a time budget time a few training steps there
    (``measure=False``: a nominal throughput for the device instead). ``t0`` is the start of
    the run (what the budget counts from).
    """
    t0 = time.perf_counter() if t0 is None else t0
    device = torch.device("cpu") if device is None else device
    ds = _as_dataset(dataset, config)
    _check_labels(ds)
    messages: list[str] = []
    ids = ds.case_ids
    if len(set(ids)) != len(ids):
        raise DatasetError("Case ids must be unique.")
    if config.val_case_ids is not None:
        unknown = sorted(set(config.val_case_ids) - set(ids))
        if unknown:
            raise DatasetError(f"Validation cases not in the dataset: {', '.join(unknown[:5])}")
        val_ids = sorted(set(config.val_case_ids))
        train_ids = [c for c in ids if c not in set(val_ids)]
    else:
        fraction = config.val_fraction
        if fraction == DEFAULT_VAL_FRACTION and ds.cases[0].image.ndim == 2 \
                and len(ids) < SMALL_2D_DATASET:
            # a small set of pictures: every photo counts for training (measured on CHASE_DB1,
            # 19 + 1 beat 16 + 4); one held-out picture still picks the checkpoint
            fraction = SMALL_2D_VAL_FRACTION
            messages.append(f"{len(ids)} pictures: {max(1, round(len(ids) * fraction))} held "
                            "out for validation, the rest train.")
        train_ids, val_ids = split_case_ids(ids, fraction, config.seed or 0)
    if not train_ids:
        raise DatasetError("No training cases left after the validation split.")
    by_id = {c.case_id: c for c in ds.cases}
    empty = [c for c in val_ids if by_id[c].labels is not None
             and not np.any(by_id[c].training_labels() != IGNORE_LABEL)]
    if empty:  # all-ignore cases would score Dice 1.0 and freeze the checkpoint at epoch 1
        val_ids = [c for c in val_ids if c not in set(empty)]
        messages.append(
            f"Validation case(s) {', '.join(empty[:5])} hold no annotated voxels and do not "
            "count in validation." + ("" if val_ids else " No annotated validation case is "
                                      "left: the latest model is kept at every epoch."))
    ndim = ds.cases[0].image.ndim
    n_channels = len(ds.cases[0].channels)
    num_classes = ds.num_classes
    train_cases = [c for c in ds.cases if c.case_id in set(train_ids)]

    init_state = None
    parent: ModelCard | None = None
    if init_model is not None:
        parent = read_card(init_model)
        if config.dims is not None and parent.dims != config.dims:
            raise ModelLoadError(
                f"The starting model {parent.describe()} is {parent.dims}D, but {config.dims}D "
                "training was requested: it comes from a different task."
            )
        if parent.in_channels != n_channels:
            raise ModelLoadError(
                f"The starting model {parent.describe()} expects {parent.in_channels} image "
                f"channel(s); these images have {n_channels}."
            )
        if parent.dims == 3 and ndim != 3:
            raise ModelLoadError(f"The starting model {parent.describe()} is 3D; the images are 2D.")
        try:
            init_state = torch.load(Path(init_model) / "model.pt", map_location="cpu",
                                    weights_only=True)
        except Exception as exc:
            raise ModelLoadError(f"Cannot load the starting model's weights: {exc}") from exc
        dims = parent.dims
        target = parent.spacing
        norm = [NormalisationParams.from_dict(d) for d in parent.normalisation]
        known = {"CT", "MR", "PT", "US", "XA"}
        if parent.modality in known and ds.modality in known and parent.modality != ds.modality:
            messages.append(
                f"Warning: the starting model was trained on {parent.modality} images and these "
                f"are {ds.modality}; its {parent.modality} intensity normalisation is kept, so "
                "fine-tuning may go badly. Train from scratch for another modality.")
        patch = tuple(parent.patch_size)
        network = dict(parent.network, out_channels=num_classes)
        if (parent.guidance is None) != (config.guidance is None):
            raise ModelLoadError(
                f"The starting model {parent.describe()} "
                + ("has no click guidance channels" if parent.guidance is None else
                   "takes click guidance channels")
                + "; train it " + ("with" if parent.guidance is not None else "without")
                + " click guidance, or start afresh.")
        mirror_axes = parent.mirror_axes  # None (older models): every axis, as they learnt
        if config.mirror != "auto":
            mirror_axes = _mirror_plan(config.mirror, dims, train_cases, ndim, ds, messages)
        if parent.num_classes != num_classes or parent.label_names != ds.label_names:
            messages.append(
                f"Fine-tuning {parent.describe()} to {num_classes - 1} new label(s): the output "
                "layer starts afresh." if parent.num_classes != num_classes else
                f"Fine-tuning {parent.describe()} (label names differ)."
            )
        else:
            messages.append(f"Fine-tuning {parent.describe()}.")
    else:
        shapes = np.array([c.image.shape for c in train_cases])
        dims = config.dims or (3 if ndim == 3 and np.median(shapes[:, 0]) >= 8 else 2)
        if dims == 3 and ndim != 3:
            raise DatasetError("3D training needs 3D volumes; these images are 2D.")
        pictures = dims == 2 and _is_picture_dataset(train_cases)
        if config.target_spacing is not None:
            target = list(config.target_spacing)
        elif pictures:
            thin = _thin_structures([c.training_labels() for c in train_cases])
            planned_target = _picture_target_spacing(train_cases, thin)
            target = None if planned_target is None else (
                [None] * (ndim - 2) + planned_target)
            messages.append(
                "2D pictures on one pixel grid: no resampling." if target is None else
                f"2D pictures of different pixel sizes: resampled to {planned_target} "
                + ("(the finest: thin structures are never downsampled)." if thin
                   else "(the median)."))
        else:
            target = list(median_spacing([c.image.spacing for c in train_cases]))
        if target is not None and dims == 2 and ndim == 3:
            target[0] = None  # slice-wise model: never resample across slices
        norm = []
        for ch in range(n_channels):
            fg = [(lab > 0) & (lab != IGNORE_LABEL)
                  for lab in (c.training_labels() for c in train_cases)]
            norm.append(fit_normalisation([c.channels[ch].array for c in train_cases],
                                          ds.modality, fg, seed=rank_seed,
                                          field_of_view=pictures))
        patch = None
        network = None
        mirror_axes = _mirror_plan(config.mirror, dims, train_cases, ndim, ds, messages)

    planned_batch: int | None = None
    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for case in ds.cases:
        if stop_requested():  # preparing many cases takes seconds
            raise _Cancelled
        tgt = _resolved_target(case.image.spacing, target)
        images[case.case_id] = prepare_image([c.array for c in case.channels], case.image.spacing,
                                             norm, tgt)
        labels[case.case_id] = prepare_labels(case.training_labels(), case.image.spacing, tgt)

    if network is None:
        if config.patch_size is not None:
            if len(config.patch_size) != dims:
                raise ValueError(f"A {dims}D patch size needs {dims} values, got {config.patch_size}.")
            planned, strides = plan_patch_size(config.patch_size)
            if tuple(planned) != tuple(config.patch_size):
                messages.append(f"Patch size rounded up to {planned} to fit the network's pooling.")
        elif dims == 2:
            median_shape = np.median([labels[c].shape[-dims:] for c in train_ids], axis=0)
            extent = _object_extent([labels[c] for c in train_ids])
            planned, strides, planned_batch, why = _plan_2d(
                config, median_shape, n_channels, num_classes, device, measure, t0,
                None if extent is None else _CONTEXT_FACTOR_2D * extent)
            messages.append(why)
        else:
            median_shape = np.median([labels[c].shape[-dims:] for c in train_ids], axis=0)
            planned, strides = plan_patch_size(median_shape, config.max_patch_voxels)
        patch = tuple(int(p) for p in planned)
        guided = channels_per_class(config.guidance) * (num_classes - 1) \
            if config.guidance else 0  # click maps (and previous masks) per class
        network = plan_network(dims, n_channels + guided, num_classes, strides,
                               config.architecture,
                               config.base_channels, config.max_channels, config.deep_supervision,
                               config.res_units, config.activation)
    batch_size = config.batch_size or planned_batch or default_batch_size(patch)
    colours = label_colours(ds.label_names)
    channel_names = list(ds.channel_names)
    if len(channel_names) != n_channels:  # e.g. one name in dataset.json for an RGB file
        channel_names = [ch.channel_names[0] for ch in ds.cases[0].channels]
    card = ModelCard(
        task=ds.name,
        classes=[{"value": v, "name": n, "color": list(colours.get(v, (0, 0, 0)))}
                 for v, n in ds.label_names.items()],
        dims=dims,
        in_channels=n_channels,
        patch_size=list(patch),
        network=network,
        normalisation=[p.to_dict() for p in norm],
        spacing=None if target is None else [None if t is None else float(t) for t in target],
        channel_names=channel_names,
        mirror_axes=mirror_axes,
        guidance=dict(config.guidance) if config.guidance else None,
        modality=ds.modality,
        training_cases=list(train_ids),
        validation_cases=list(val_ids),
        version=(parent.version + 1) if parent else 1,
        parent_version=parent.version if parent else None,
        parent_id=parent.model_id if parent else None,
        train_config=dict(config.to_dict(), batch_size=batch_size),
    )
    pictures = dims == 2 and all(c.image.ndim == 2 for c in ds.cases)
    return _Plan(ds, list(train_ids), list(val_ids), card, images, labels, init_state, messages,
                 batch_size, pictures)


#: Share of a 2D run's remaining budget planned for optimisation steps (the rest: validation,
#: saving, and the sampling/augmentation the throughput timing leaves out).
_TRAIN_SHARE_2D = 0.8
#: Step time / timed forward-backward time: patch sampling, augmentation, EMA, logging.
_STEP_OVERHEAD_2D = 1.15
#: Pixels per second assumed when the throughput is not timed (several processes).
_NOMINAL_PIXELS_PER_S = {"cpu": 1.0e6, "cuda": 3.0e7, "mps": 5.0e6}


def _measure_pixels_per_s(network: dict, patch: Sequence[int], batch: int,
                          device: torch.device, amp: bool, steps: int = 2,
                          warmup: int = 2) -> float:
    """Training throughput (patch pixels per second) of a network: a few timed steps.

    ``warmup`` steps (kernel selection, allocations: the first steps on a CPU are 2-3 times
    slower), then the fastest of ``steps`` timed forward/backward/update steps on random data
    (the least disturbed by other work on the machine); the network is thrown away afterwards.
    """
    dims = len(patch)
    model = build_network(network).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=channels_last_format(dims))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = SegmentationLoss("dice_ce")
    amp_dtype = autocast_dtype(device, amp)
    cpu_state = torch.random.get_rng_state()
    x = torch.randn(batch, network["in_channels"], *patch, device=device)
    y = torch.randint(0, network["out_channels"], (batch, *patch), device=device)
    torch.random.set_rng_state(cpu_state)  # the timing leaves the run's random stream alone
    if device.type == "cpu":
        x = x.contiguous(memory_format=channels_last_format(dims))
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ts = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - ts)
    return batch * float(np.prod(patch)) / max(float(np.min(times)), 1e-6)


def _plan_2d(config: TrainConfig, median_shape: Sequence[float], n_channels: int,
             num_classes: int, device: torch.device, measure: bool, t0: float,
             min_side: float | None = None,
             ) -> tuple[tuple[int, ...], list[tuple[int, ...]], int | None, str]:
    """Patch, strides, batch (None = the config's or the default) and a log line for 2D models.

    Without a time budget: the whole image (at most 512x512), as before. With one: the
    throughput of this network on this device is timed, and :func:`plan_2d_patch` fits patch
    and batch so that the budget buys at least ``MIN_2D_STEPS`` steps (small patches of a
    large picture on a CPU, whole small pictures or whole images on a GPU). ``min_side``
    (pixels; large objects such as lesions) makes the patch grow to hold them with context.
    """
    budget = config.time_budget_s
    shape = tuple(int(round(n)) for n in median_shape)
    if not budget:
        patch, strides, _, _ = plan_2d_patch(median_shape, None, None,
                                             max_voxels=_MAX_2D_PATCH_VOXELS)
        return patch, strides, None, f"2D plan: whole images {patch} (no time budget)."
    ref_patch, ref_strides = plan_patch_size([min(128, n) for n in median_shape])
    batch = config.batch_size or 8
    spec = plan_network(2, n_channels, num_classes, ref_strides, config.architecture,
                        config.base_channels, config.max_channels, config.deep_supervision,
                        config.res_units, config.activation)
    if measure:
        rate = _measure_pixels_per_s(spec, ref_patch, batch, device, config.amp)
        how = "timed"
    else:
        rate = _NOMINAL_PIXELS_PER_S.get(device.type, 1.0e6)
        how = "assumed"
    rate /= _STEP_OVERHEAD_2D
    left = max(budget - (time.perf_counter() - t0), 0.0) * _TRAIN_SHARE_2D
    if config.batch_size:  # the batch is given: only the patch is planned for it
        patch, strides, _, steps = plan_2d_patch(
            median_shape, rate, left, batch_range=(config.batch_size, config.batch_size),
            preferred_batch=config.batch_size, max_voxels=_MAX_2D_PATCH_VOXELS,
            min_side=min_side)
        planned_batch = None
    else:
        lo, hi = (8, 16) if device.type == "cpu" else (8, 32)
        patch, strides, planned_batch, steps = plan_2d_patch(
            median_shape, rate, left, batch_range=(lo, hi), max_voxels=_MAX_2D_PATCH_VOXELS,
            min_side=min_side)
    whole = "the whole image" if all(p >= n for p, n in zip(patch, shape, strict=True)) \
        else f"patches of images {shape}"
    return patch, strides, planned_batch, (
        f"2D plan for {budget:g} s on {device.type}: {patch[0]}x{patch[1]} ({whole}), batch "
        f"{planned_batch or config.batch_size}, about {steps} steps ({how} "
        f"{rate * _STEP_OVERHEAD_2D / 1e6:.2f} M pixels/s"
        + (f"; objects about {min_side / _CONTEXT_FACTOR_2D:.0f} px across" if min_side else "")
        + ").")


SMALL_PATCH_VOXELS = 128 * 1024


#: Consecutive NaN/inf steps after which training stops with an error (updates are skipped).
MAX_NONFINITE_STEPS = 50

#: TrainConfig's default validation share, and what small 2D picture sets use instead.
DEFAULT_VAL_FRACTION = 0.2
SMALL_2D_DATASET, SMALL_2D_VAL_FRACTION = 40, 0.05


def default_batch_size(patch_size: Sequence[int]) -> int:
    """Patches per step when the config leaves it open: 4 for small patches, else 2.

    Small patches leave the CPU's (or GPU's) cores half idle at batch 2; on the 2-core VM a
    batch of 4 40x56x40 patches trains ~25 % more samples per second (BENCHMARKS.md).
    """
    return 4 if int(np.prod(patch_size)) <= SMALL_PATCH_VOXELS else 2


def _to_network_input(image: np.ndarray, dims: int) -> torch.Tensor:
    """(C, *S) array -> (1, C, Z, Y, X) for 3D models, (Z, C, Y, X) slices for 2D models."""
    t = torch.from_numpy(image)
    if dims == 3:
        return t[None]
    return t[None] if t.ndim == 3 else t.permute(1, 0, 2, 3).contiguous()


def validate(
    model: torch.nn.Module,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    patch_size: Sequence[int],
    dims: int,
    label_names: dict[int, str],
    device: torch.device,
    overlap: float = 0.25,
    amp: bool = False,
    batch_size: int = 8,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float] | None:
    """Mean Dice per foreground class over validation cases (annotated voxels only).

    ``batch_size`` cases no larger than one window are evaluated per forward pass (0 = one
    sliding-window run per case; same result). ``should_stop`` is checked before every batch
    of cases and every batch of sliding windows: validation of many or large cases takes
    seconds, and a cancel must not wait for it.

    Returns ``{"dice_mean": ..., "dice/<class name>": ...}``, or None when ``should_stop``
    became true.
    """
    was_training = model.training
    model.eval()
    per_class: dict[int, list[float]] = {v: [] for v in label_names if v != 0}
    preds: dict[int, np.ndarray] = {}
    patch = tuple(int(p) for p in patch_size)
    # 3D cases no larger than one window: pad symmetrically (as MONAI's sliding window does)
    # and run them in batches, far cheaper than one forward pass per case on a CPU
    small = [i for i, im in enumerate(images)
             if dims == 3 and batch_size > 0
             and all(n <= p for n, p in zip(im.shape[1:], patch, strict=True))]
    for start in range(0, len(small), max(batch_size, 1)):
        if should_stop is not None and should_stop():
            model.train(was_training)
            return None
        chunk = small[start:start + batch_size]
        batch, crops = [], []
        for i in chunk:
            pads, crop = [], []
            for n, p in zip(images[i].shape[1:], patch, strict=True):
                lo = (p - n) // 2
                pads.append((lo, p - n - lo))
                crop.append(slice(lo, lo + n))
            batch.append(np.pad(images[i], [(0, 0), *pads]))
            crops.append(tuple(crop))
        x = torch.from_numpy(np.stack(batch)).to(device)
        dtype = autocast_dtype(device, amp)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype,
                                                    enabled=dtype is not None):
            logits = model(x)
        out = torch.argmax(logits, dim=1).cpu().numpy().astype(np.uint8)
        for k, i in enumerate(chunk):
            preds[i] = out[k][crops[k]]
    for i, (image, lab) in enumerate(zip(images, labels, strict=True)):
        if i in preds:
            pred = preds[i]
        else:
            x = _to_network_input(image, dims).to(device)
            probs = sliding_window_probabilities(model, x, patch_size, overlap=overlap, amp=amp,
                                                 should_stop=should_stop)
            if probs is None:
                model.train(was_training)
                return None
            pred = torch.argmax(probs, dim=1).cpu().numpy().astype(np.uint8)
            pred = pred[0] if dims == 3 or lab.ndim == 2 else pred
        valid = lab != IGNORE_LABEL
        if not valid.any():
            continue  # nothing annotated: no evidence either way
        for v in per_class:
            per_class[v].append(dice(pred[valid] == v, lab[valid] == v))
    model.train(was_training)
    out = {f"dice/{label_names[v]}": float(np.mean(s)) if s else 0.0
           for v, s in per_class.items()}
    out["dice_mean"] = float(np.mean([np.mean(s) if s else 0.0 for s in per_class.values()]))
    return out


class _WeightAverage:
    """Exponential moving average of a model's weights (a copy of the model).

    The decay ramps up as ``(1 + step) / (10 + step)`` so that early in a run (and in short
    fine-tuning runs) the average follows the weights closely, then settles at ``decay``.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        import copy

        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        weight = 1.0 - min(self.decay, (1.0 + step) / (10.0 + step))
        for avg, cur in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(cur.detach(), weight)
        for avg, cur in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(cur)


def _stop_callable(should_stop: StopFlag) -> Callable[[], bool]:
    if should_stop is None:
        return lambda: False
    if hasattr(should_stop, "is_set"):
        return should_stop.is_set
    if callable(should_stop):
        return should_stop
    raise TypeError("should_stop must be a callable or a threading.Event")


def _write_card(model_dir: Path, card: ModelCard) -> None:
    import json

    text = json.dumps(card.to_dict(), indent=2, default=float).encode()
    _atomic_write_bytes(model_dir / CARD_FILE, lambda fh: fh.write(text))


def train(
    config: TrainConfig,
    dataset: DatasetLike,
    out_dir: str | os.PathLike,
    init_model: str | os.PathLike | None = None,
    should_stop: StopFlag = None,
) -> Generator[Event, None, TrainResult]:
    """Train (or fine-tune) a segmentation network; a generator of progress events.

    Parameters
    ----------
    config : TrainConfig
    dataset : path, Dataset, or list of Case / (image Volume, labels[, annotated mask])
        An MSD / nnU-Net folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``) or in-memory
        cases; label ``IGNORE_LABEL`` (255) and False in an annotated mask mark voxels nobody
        annotated, which add nothing to the loss.
    out_dir : path
        Model directory; the best model so far (by validation mean Dice; the latest without
        validation cases) is written there atomically after each improving epoch.
    init_model : path, optional
        Model directory to fine-tune from (its plan is reused; the output layer is re-initialised
        when the class count differs).
    should_stop : callable or threading.Event, optional
        Checked before every step; cancelling (or calling ``close()`` on the generator) keeps the
        last best model in ``out_dir`` untouched.

    Yields
    ------
    Event
        ``start``, ``message``, ``step`` (loss, ETA), ``epoch`` (mean loss, validation metrics),
        then ``finished`` or ``cancelled`` with the :class:`TrainResult`. Invalid input yields an
        ``error`` event and then raises the ``ValueError`` (e.g. :class:`DatasetError`).

    Returns
    -------
    TrainResult
    """
    t0 = time.perf_counter()
    stop_requested = _stop_callable(should_stop)
    out = Path(out_dir)
    try:
        device = resolve_device(config.device)
        dist = DistributedContext.from_env(device)
    except ValueError as exc:
        yield Event("error", message=str(exc), level="error")
        raise
    device = dist.device
    try:
        seed = 0 if config.seed is None else int(config.seed)
        try:
            plan = _plan(config, dataset, init_model, seed, stop_requested, device=device,
                         measure=not dist.enabled, t0=t0)
        except _Cancelled:
            result = TrainResult(status="cancelled", model_dir=None, best_metric=None,
                                 best_epoch=None, epochs=0, steps=0,
                                 elapsed_s=time.perf_counter() - t0, stop_reason="cancelled",
                                 history=[])
            yield Event("cancelled", result=result,
                        message="Training cancelled before any model was saved.")
            return result
        except ValueError as exc:
            yield Event("error", message=str(exc), level="error")
            raise
        if dist.is_main:
            try:
                with model_folder_lock(out):  # a second training into `out` is refused
                    result = yield from _run(config, plan, out, device, dist, seed,
                                             stop_requested, t0)
            except ModelFolderBusyError as exc:
                yield Event("error", message=str(exc), level="error")
                raise
        else:
            result = yield from _run(config, plan, out, device, dist, seed, stop_requested, t0)
        return result
    finally:
        dist.close()


def _run(config, plan: _Plan, out: Path, device, dist: DistributedContext, seed: int,
         stop_requested, t0: float) -> Generator[Event, None, TrainResult]:
    card = plan.card
    dims, patch = card.dims, tuple(card.patch_size)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    model = build_network(card.network).to(device)
    if device.type == "cpu":
        # oneDNN convolutions are faster on channels-last tensors (same results, ~20 %)
        model = model.to(memory_format=channels_last_format(dims))
    messages = list(plan.messages)
    if plan.init_state is not None:
        _, skipped = load_matching_weights(model, plan.init_state)
        if skipped:
            messages.append(f"Re-initialised {len(skipped)} tensor(s) of the output layer for "
                            "the new classes.")
    net = dist.wrap(model)
    if config.learning_rate:
        lr = config.learning_rate
    elif config.optimizer == "adamw":
        lr = 2e-3 if plan.init_state is not None else 5e-3  # gentler when fine-tuning
    else:
        lr = 1e-2
    if config.optimizer == "adamw":
        # fused kernel: one pass over all parameters (PyTorch's CPU default is a Python loop)
        fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=config.weight_decay,
                                **fused)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.99, nesterov=True,
                              weight_decay=config.weight_decay)
    use_amp = bool(config.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    amp_dtype = autocast_dtype(device, config.amp)
    loss_fn = SegmentationLoss(config.loss)
    # exponential moving average of the weights: what is validated and saved
    ema = _WeightAverage(model, config.ema_decay) if config.ema_decay else None
    kept = ema.model if ema is not None else model
    sampler = PatchSampler([plan.images[c] for c in plan.train_ids],
                           [plan.labels[c] for c in plan.train_ids], patch,
                           config.foreground_fraction, seed=seed + 1000 * dist.rank)
    aug_name = resolve_preset(config.augmentation, len(plan.train_ids))
    aug = AugmentationConfig.preset(aug_name)
    if aug is not None and plan.pictures:
        aug = aug.for_pictures(colour=card.in_channels == 3)
    if aug is not None and card.mirror_axes is not None:
        aug = replace(aug, flip_axes=tuple(card.mirror_axes))
    try:
        gen = torch.Generator(device=device)
    except RuntimeError:
        gen = None
    if gen is not None:
        gen.manual_seed(seed + 1000 * dist.rank)
    bad_steps = 0  # consecutive steps with a non-finite loss or gradient
    guidance = card.guidance
    click_rng = np.random.default_rng(seed + 7919 * (dist.rank + 1))
    # validation (and predict) see a guided model with zero click maps: the automatic result
    validated = ZeroGuidance(kept, guidance_channels(card)) if guidance else kept
    val_images = [plan.images[c] for c in plan.val_ids]
    val_labels = [plan.labels[c] for c in plan.val_ids]
    label_names = plan.dataset.label_names
    total_steps = config.max_epochs * config.steps_per_epoch
    budget = config.time_budget_s
    yield Event(
        "start", step=0, total=total_steps,
        message=(f"Training a {dims}D {card.network['architecture']} "
                 f"({count_parameters(model) / 1e6:.2f} M parameters, patch {patch}) on "
                 f"{len(plan.train_ids)} case(s) with {aug_name} augmentation, validating on "
                 f"{len(plan.val_ids)}, device {device}"
                 + (" (bfloat16)" if amp_dtype is torch.bfloat16 else "")
                 + (f", {dist.world_size} processes" if dist.enabled else "")),
    )
    for message in messages:
        yield Event("message", message=message)
    step, epoch = 0, 0
    best, best_epoch, since_best = -math.inf, None, 0
    history: list[dict[str, Any]] = []
    step_time, val_time = 0.0, 0.0
    last_validated = time.perf_counter()
    saved = False
    status, reason = "finished", "max_epochs"
    current_lr = lr

    elapsed = 0.0  # agreed between ranks, so every rank uses the same learning rate

    def progress() -> float:
        p = step / total_steps
        if budget:
            p = max(p, elapsed / budget)
        return min(p, 1.0)

    def predict_for_clicks(inputs: torch.Tensor) -> torch.Tensor:
        # the network's own prediction (no gradient; the unwrapped module, so that DDP's
        # gradient bookkeeping is untouched) where simulated clicks go to its errors
        if device.type == "cpu":
            inputs = inputs.contiguous(memory_format=channels_last_format(dims))
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype,
                                             enabled=amp_dtype is not None):
            return model(inputs).argmax(1)

    while epoch < config.max_epochs:
        net.train()
        losses: list[float] = []
        flag = 0
        for _ in range(config.steps_per_epoch):
            local = 0
            now = time.perf_counter() - t0
            if stop_requested():
                local = 2
            elif budget and now + 1.2 * val_time + step_time > budget:
                local = 1
            agreed = dist.agree_max([float(local), now])
            flag, elapsed = int(agreed[0]), agreed[1]
            if flag:
                break
            ts = time.perf_counter()
            p = progress()
            wf = config.warmup_fraction
            factor = max(p / wf, 0.02) if p < wf else (1 - (p - wf) / (1 - wf)) ** 0.9
            current_lr = lr * max(factor, 0.0)
            for group in opt.param_groups:
                group["lr"] = current_lr
            x, y = sampler.sample_batch(plan.batch_size)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x, y = augment_batch(x, y, aug, gen)
            if guidance:
                # clicks in the network's own errors only once it predicts something
                own = float(guidance.get("p_own_errors", 0.6)) if p > 0.15 else 0.0
                x = add_guidance_channels(
                    x, y, click_rng, card.num_classes,
                    p_no_click=float(guidance.get("p_no_click", 0.3)),
                    max_clicks=int(guidance.get("max_clicks", 5)),
                    spacing=None if card.spacing is None else
                    [1.0 if s is None else s for s in card.spacing][-dims:],
                    radius_mm=float(guidance["radius_mm"]),
                    predict=predict_for_clicks if own > 0 else None, p_own_errors=own,
                    p_class=float(guidance.get("p_class", 0.6)),
                    per_class=channels_per_class(guidance))
            if device.type == "cpu":
                x = x.contiguous(memory_format=channels_last_format(dims))
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = net(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
            if not torch.isfinite(grad_norm):
                # a NaN/inf loss or gradient (identical on every rank after the all-reduce):
                # skip the update so the weights stay finite; give up if it keeps happening
                opt.zero_grad(set_to_none=True)
                scaler.update()
                bad_steps += 1
                if bad_steps >= MAX_NONFINITE_STEPS:
                    message = (f"Training diverged: the loss was not a number for {bad_steps} "
                               "steps in a row. Check the images for extreme values or lower "
                               "the learning rate.")
                    yield Event("error", message=message, level="error")
                    raise ValueError(message)
                continue
            bad_steps = 0
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(model, step)
            step += 1
            losses.append(float(loss.detach()))
            dt = time.perf_counter() - ts
            step_time = dt if step_time == 0 else 0.9 * step_time + 0.1 * dt
            eta = step_time * (total_steps - step)
            if budget:
                eta = min(eta, max(budget - (time.perf_counter() - t0), 0.0))
            yield Event("step", step=step, total=total_steps, epoch=epoch + 1,
                        loss=losses[-1], eta_s=eta)
        if flag == 2:
            status, reason = "cancelled", "cancelled"
            break
        if not losses and bad_steps:
            message = (f"Training diverged: the loss was not a number in all {bad_steps} steps "
                       "of an epoch. Check the images for extreme values or lower the learning "
                       "rate.")
            yield Event("error", message=message, level="error")
            raise ValueError(message)
        if not losses:
            reason = "time_budget"
            break
        epoch += 1
        metrics: dict[str, float] = {}
        improved = 0.0
        validation_cancelled = False
        validate_now = (epoch == 1 or flag == 1 or progress() >= config.dense_validation_from
                        or epoch % max(config.early_validation_every, 1) == 0
                        or epoch == config.max_epochs)
        if plan.pictures and budget and not (epoch == 1 or flag == 1
                                             or epoch == config.max_epochs):
            # sliding windows over whole pictures cost many training steps: under a budget,
            # validate only late in the run and at most ~10 % of the time
            validate_now = (progress() >= config.dense_validation_from
                            and time.perf_counter() - last_validated >= 9 * val_time)
        if dist.is_main:
            if val_images and not validate_now:
                improved = 0.0
            elif val_images:
                tv = time.perf_counter()
                scores = validate(validated, val_images, val_labels, patch, dims, label_names,
                                  device,
                                  config.val_overlap, config.amp, should_stop=stop_requested)
                if scores is None:  # cancelled: nothing is saved
                    validation_cancelled = True
                else:
                    metrics = scores
                    val_time = time.perf_counter() - tv
                    last_validated = time.perf_counter()
                    improved = float(metrics["dice_mean"] > best)
            else:
                improved = 1.0
        # rank 0 decides; every rank follows (early stopping must stop all ranks together)
        improved_f, validated_f = dist.broadcast_values([improved, float(validate_now)])
        improved, validate_now = improved_f > 0, validated_f > 0
        if validation_cancelled and not dist.enabled:
            status, reason = "cancelled", "cancelled"
            break  # (several processes: the next step's stop check ends them all together)
        entry = {"epoch": epoch, "step": step, "loss": float(np.mean(losses)), "lr": current_lr,
                 "time_s": round(time.perf_counter() - t0, 2), **metrics}
        history.append(entry)
        message = ""
        if not validate_now and val_images:
            pass  # no validation this epoch: neither better nor worse
        elif improved:
            since_best = 0
            best_epoch = epoch
            if metrics:
                best = metrics["dice_mean"]
                message = f"new best validation Dice {best:.4f}"
            if dist.is_main:
                save_model(kept, replace(card, metrics_history=list(history),
                                          best_metric=None if best == -math.inf else best,
                                          best_epoch=best_epoch), out)
            saved = True
        else:
            since_best += 1
        yield Event("epoch", step=step, total=total_steps, epoch=epoch, loss=entry["loss"],
                    metrics=metrics, message=message)
        if flag == 1:
            reason = "time_budget"
            break
        patience = config.early_stopping_patience
        if patience and since_best >= patience:
            reason = "early_stopping"
            yield Event("message", message=f"Early stopping: no improvement for {patience} "
                                           "validations.")
            break

    result = TrainResult(
        status=status,
        model_dir=str(out) if saved else None,
        best_metric=None if best == -math.inf else best,
        best_epoch=best_epoch,
        epochs=epoch,
        steps=step,
        elapsed_s=time.perf_counter() - t0,
        stop_reason=reason,
        history=history,
    )
    if status == "cancelled":
        yield Event("cancelled", step=step, total=total_steps, epoch=epoch, result=result,
                    message="Training cancelled; the best model so far is kept."
                    if saved else "Training cancelled before any model was saved.")
        return result
    if saved and dist.is_main:
        final = read_card(out)
        final.metrics_history = history
        final.train_config = dict(final.train_config, stop_reason=reason, steps=step,
                                  world_size=dist.world_size)
        _write_card(out, final)
    yield Event("finished", step=step, total=total_steps, epoch=epoch, result=result,
                message=f"Training finished ({reason}); best validation Dice "
                        + (f"{result.best_metric:.4f} at epoch {best_epoch}"
                           if result.best_metric is not None else "n/a"))
    return result
