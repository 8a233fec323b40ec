"""Training plans: from a config, the data and a parent model to a frozen :class:`_Plan`.

Everything :func:`~napari_medseg.training.loop.train` decides before the first step: the data
set and its split, 2D or 3D, target spacing, patch and batch size (2D: timed on this machine),
network, normalisation, mirror axes, the parent card's compatibility checks, and the
preprocessed images and labels.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
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
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.interactive.guidance import (
    channels_per_class,
)
from napari_medseg.io.volume import RGB_CHANNEL_NAMES, Volume
from napari_medseg.models.card import (
    ModelCard,
    ModelLoadError,
    read_card,
)
from napari_medseg.models.engine import (
    autocast_dtype,
    channels_last_format,
    channels_last_pays,
)
from napari_medseg.models.factory import (
    build_network,
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
    plan_mirror_axes,
)
from napari_medseg.training.config import TrainConfig
from napari_medseg.training.losses import SegmentationLoss

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


def _is_colourless_case(case: Case) -> bool:
    """Whether the case's only input is a picture stored as RGB with red = green = blue."""
    chans = case.channels
    return (len(chans) == 3
            and [ch.metadata.get("channel_name") for ch in chans] == list(RGB_CHANNEL_NAMES)
            and np.array_equal(chans[0].array, chans[1].array)
            and np.array_equal(chans[0].array, chans[2].array))


def _grey_case(case: Case) -> Case:
    """The case with its colourless RGB picture as one greyscale channel."""
    red = case.image
    meta = {k: v for k, v in red.metadata.items() if k != "channel_name"}
    name = red.name.removesuffix(f" [{RGB_CHANNEL_NAMES[0]}]")
    grey = Volume(np.ascontiguousarray(red.array), red.spacing, red.affine.copy(), red.modality,
                  meta, name)
    return replace(case, image=grey, extra_channels=())


def _as_dataset(dataset: DatasetLike, config: TrainConfig,
                grey_colourless: bool = True, messages: list[str] | None = None) -> Dataset:
    """The dataset to train on.

    In-memory pictures that are all greyscale stored as RGB (red = green = blue, as many
    ultrasound exports are; napari shows them as RGB layers) train a model of one greyscale
    channel, as a dataset folder whose ``dataset.json`` names one channel does, so that the
    model also takes pictures stored as greyscale (``grey_colourless=False``: keep three).
    """
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
    if grey_colourless and all(_is_colourless_case(c) for c in cases):
        cases = [_grey_case(c) for c in cases]
        if messages is not None:
            messages.append("Greyscale pictures stored as RGB (red = green = blue): trained as "
                            "one greyscale channel.")
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
    any_annotated = any_foreground = False
    for case in ds.cases:
        lab = case.training_labels()
        valid = lab[lab != IGNORE_LABEL]
        any_annotated |= valid.size > 0
        any_foreground |= bool(valid.size) and bool(valid.max() > 0)
        if valid.size and int(valid.max()) > top:
            raise DatasetError(
                f"Case {case.case_id} contains label {int(valid.max())} but only labels up to "
                f"{top} are named."
            )
        if len(case.channels) != len(ds.cases[0].channels):
            raise DatasetError(f"Case {case.case_id} has a different number of image channels.")
        first = ds.cases[0]
        if case.image.ndim != first.image.ndim:
            raise DatasetError(
                f"Case {case.case_id} is {case.image.ndim}D ({'x'.join(map(str, case.image.shape))})"
                f" but case {first.case_id} is {first.image.ndim}D: a dataset holds either "
                "volumes or 2D images, not both.")
    if not any_annotated:
        raise DatasetError("No case contains annotated voxels.")
    if not any_foreground:
        raise DatasetError(
            f"Every annotated voxel of the {len(ds.cases)} case(s) is background (0): there is "
            "nothing to learn; annotate at least one structure.")


def _resolved_target(spacing: Sequence[float], target: Sequence[float | None] | None):
    if target is None:
        return None
    target = list(target)[-len(spacing):]
    return tuple(float(s if t is None else t) for s, t in zip(spacing, target, strict=True))


def _mirror_plan(mode: str, dims: int, cases: Sequence[Case], ndim: int, ds: Dataset,
                 messages: list[str]) -> list[int]:
    affines = [c.image.affine if c.image.has_orientation else None for c in cases]
    greyscale = dims == 2 and _is_picture_dataset(cases) and len(ds.channel_names) == 1
    axes, why = plan_mirror_axes(mode, dims, affines, ndim, ds.label_names,
                                 greyscale_pictures=greyscale)
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


def _local_contrast_plan(mode: str, pictures: bool, n_channels: int, cases: Sequence[Any],
                         messages: list[str]) -> bool:
    """Whether 2D pictures get local contrast equalisation (``TrainConfig.local_contrast``)."""
    if not pictures or mode == "off":
        return False
    if mode == "on":
        return True
    if n_channels >= 3 and _thin_structures([c.training_labels() for c in cases]):
        messages.append("Colour photographs with thin structures: local contrast equalised "
                        "(CLAHE) before normalisation.")
        return True
    return False


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
    # fine-tuning a model of three channels keeps colourless pictures in three
    keep_colour = init_model is not None and read_card(init_model).in_channels == 3
    messages: list[str] = []
    ds = _as_dataset(dataset, config, grey_colourless=not keep_colour, messages=messages)
    _check_labels(ds)
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
        if fraction == DEFAULT_VAL_FRACTION and ds.cases[0].image.ndim == 2:
            fraction = _picture_val_fraction(ds, messages)
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
                "2D pictures of one pixel size: no resampling." if target is None else
                f"2D pictures of different pixel sizes: resampled to {planned_target} "
                + ("(the finest: thin structures are never downsampled)." if thin
                   else "(the median)."))
        else:
            target = list(median_spacing([c.image.spacing for c in train_cases]))
        if target is not None and dims == 2 and ndim == 3:
            target[0] = None  # slice-wise model: never resample across slices
        local = _local_contrast_plan(config.local_contrast, pictures, n_channels, train_cases,
                                     messages)
        norm = []
        for ch in range(n_channels):
            fg = [(lab > 0) & (lab != IGNORE_LABEL)
                  for lab in (c.training_labels() for c in train_cases)]
            norm.append(fit_normalisation([c.channels[ch].array for c in train_cases],
                                          ds.modality, fg, seed=rank_seed,
                                          field_of_view=pictures, local_contrast=local))
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
                          device: torch.device, amp: bool, steps: int = 4,
                          warmup: int = 3) -> float:
    """Training throughput (patch pixels per second) of a network: a few timed steps.

    ``warmup`` steps (kernel selection, allocations: the first steps on a CPU are 2-3 times
    slower), then the fastest of ``steps`` timed forward/backward/update steps on random data
    (the least disturbed by other work on the machine); the network is thrown away afterwards.
    Two timed steps after two warm-up ones once gave 0.87 M pixels/s on CHASE_DB1 where the
    run then trained at about 1.4 (1741 steps planned, 3306 done); in one warm process the
    same timing ranged 1.17-1.54. Four of each cost under a second more and make the plan
    less sensitive to one slow step.
    """
    dims = len(patch)
    model = build_network(network).to(device)
    amp_dtype = autocast_dtype(device, amp)
    channels_last = channels_last_pays(device, dims, amp_dtype)  # as the run will train
    if channels_last:
        model = model.to(memory_format=channels_last_format(dims))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = SegmentationLoss("dice_ce")
    cpu_state = torch.random.get_rng_state()
    x = torch.randn(batch, network["in_channels"], *patch, device=device)
    y = torch.randint(0, network["out_channels"], (batch, *patch), device=device)
    torch.random.set_rng_state(cpu_state)  # the timing leaves the run's random stream alone
    if channels_last:
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
    spent = time.perf_counter() - t0
    if measure and spent < budget:
        rate = _measure_pixels_per_s(spec, ref_patch, batch, device, config.amp)
        how = "timed"
    else:  # several processes, or no time left to time steps
        rate = _NOMINAL_PIXELS_PER_S.get(device.type, 1.0e6)
        how = "assumed"
    rate /= _STEP_OVERHEAD_2D
    spent = time.perf_counter() - t0
    left = max(budget - spent, 0.0) * _TRAIN_SHARE_2D
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
    if not steps:  # nothing left for training steps
        return patch, strides, planned_batch, (
            f"2D plan for {budget:g} s on {device.type}: the budget is used up by preparation "
            f"({spent:.0f} s reading and normalising the images and planning); no training "
            "step fits in it.")
    return patch, strides, planned_batch, (
        f"2D plan for {budget:g} s on {device.type}: {patch[0]}x{patch[1]} ({whole}), batch "
        f"{planned_batch or config.batch_size}, about {steps} steps ({how} "
        f"{rate * _STEP_OVERHEAD_2D / 1e6:.2f} M pixels/s"
        + (f"; objects about {min_side / _CONTEXT_FACTOR_2D:.0f} px across" if min_side else "")
        + ").")


SMALL_PATCH_VOXELS = 128 * 1024


#: TrainConfig's default validation share, and what small 2D picture sets of thin structures
#: use instead.
DEFAULT_VAL_FRACTION = 0.2
SMALL_2D_DATASET, SMALL_2D_VAL_FRACTION = 40, 0.05
#: Most pictures held out by the default split: enough to pick the checkpoint; more would
#: only take training pictures away and make every validation (whole pictures, sliding
#: windows) cost more of a time budget.
MAX_2D_VAL_PICTURES = 25


def _picture_val_fraction(ds: Dataset, messages: list[str]) -> float:
    """Validation share of a 2D picture dataset under the default ``val_fraction``.

    Thin structures (vessels) in a small set: 1 in 20, every photo counts for training
    (measured on CHASE_DB1: 19 + 1 beat 16 + 4; one photo holds tens of thousands of vessel
    pixels). Objects such as lesions keep the default 1 in 5 (one held-out picture, perhaps
    a normal one, would score 0 or 1 and pick the checkpoint by chance), capped at
    :data:`MAX_2D_VAL_PICTURES`.
    """
    n = len(ds.cases)
    labelled = [c.training_labels() for c in ds.cases if c.labels is not None]
    if n < SMALL_2D_DATASET and _thin_structures(labelled):
        fraction = SMALL_2D_VAL_FRACTION
    else:
        fraction = min(DEFAULT_VAL_FRACTION, (MAX_2D_VAL_PICTURES + 0.25) / max(n, 1))
    if n >= 2:
        held = max(1, round(n * fraction))
        messages.append(f"{n} pictures: {held} held out for validation, the rest train.")
    return fraction


def default_batch_size(patch_size: Sequence[int]) -> int:
    """Patches per step when the config leaves it open: 4 for small patches, else 2.

    Small patches leave the CPU's (or GPU's) cores half idle at batch 2; on the 2-core VM a
    batch of 4 40x56x40 patches trains ~25 % more samples per second (BENCHMARKS.md).
    """
    return 4 if int(np.prod(patch_size)) <= SMALL_PATCH_VOXELS else 2
