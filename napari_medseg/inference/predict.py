"""``predict()``: sliding-window inference back on the input's own grid, plus folder batches."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from napari_medseg.events import Event
from napari_medseg.interactive.guidance import ZeroGuidance, guidance_channels
from napari_medseg.io.picture import PICTURE_SUFFIXES
from napari_medseg.io.volume import RGB_CHANNEL_NAMES, Volume
from napari_medseg.models.card import ModelCard, ModelLoadError, load_model
from napari_medseg.models.engine import (
    channels_last_format,
    channels_last_pays,
    resolve_device,
    sliding_window_with_progress,
)
from napari_medseg.preprocess import NormalisationParams, prepare_image, resample_to_shape

ModelLike = str | os.PathLike | tuple[torch.nn.Module, ModelCard]
StopFlag = Callable[[], bool] | None


@dataclass
class PredictionResult:
    """Output of :func:`predict`, on the input volume's grid.

    Attributes
    ----------
    labels : np.ndarray
        uint8 class per voxel, same shape as the input (``(Z, Y, X)`` or ``(Y, X)``).
    probabilities : np.ndarray or None
        float32 ``(C, *shape)`` softmax probabilities (classes in card order).
    entropy : np.ndarray or None
        float32 ``(*shape)`` normalised entropy in [0, 1] (1 = maximally uncertain).
    card : ModelCard
        The model that produced it.
    spacing, affine
        Geometry of the input (so the labels save with the image's affine).
    elapsed_s : float
        Wall-clock seconds.
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    entropy: np.ndarray | None
    card: ModelCard
    spacing: tuple[float, ...]
    affine: np.ndarray
    elapsed_s: float = 0.0

    def to_volume(self, reference: Volume | None = None, name: str | None = None) -> Volume:
        """The labels as a :class:`Volume` with the input's geometry."""
        if reference is not None:
            return reference.with_array(self.labels, name or f"{reference.name}_labels")
        return Volume(self.labels, self.spacing, self.affine, name=name or "prediction")


def argmax_classes(probs: torch.Tensor) -> torch.Tensor:
    """Index of the largest value along axis 0 of ``(C, *spatial)``, as uint8 (first on ties).

    Same result as ``torch.argmax(probs, 0)`` but one pass per class over contiguous memory,
    several times faster on CPU for large volumes.
    """
    if probs.shape[0] > 255:
        return torch.argmax(probs, dim=0).to(torch.int32)
    labels = torch.zeros(probs.shape[1:], dtype=torch.uint8)
    best = probs[0].clone()
    for c in range(1, probs.shape[0]):
        better = probs[c] > best
        labels.masked_fill_(better, c)
        torch.maximum(best, probs[c], out=best)
    return labels


def keep_largest_component(labels: np.ndarray, classes: Sequence[int] | None = None) -> np.ndarray:
    """Keep only the largest connected component of each class (others become background).

    Connectivity: face neighbours (6 in 3D, 4 in 2D). Returns a new array.
    """
    out = np.array(labels, copy=True)
    values = classes if classes is not None else [int(v) for v in np.unique(labels) if v != 0]
    for value in values:
        mask = labels == value
        components, n = ndimage.label(mask)
        if n > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            out[mask & (components != int(np.argmax(sizes)))] = 0
    return out


def _as_model(model: ModelLike, device: torch.device) -> tuple[torch.nn.Module, ModelCard]:
    if isinstance(model, tuple):
        net, card = model
        return net.to(device).eval(), card
    return load_model(model, device=device)


def _channels(volume: Volume | Sequence[Volume]) -> list[Volume]:
    given = [volume] if isinstance(volume, Volume) else list(volume)
    channels = [c for v in given for c in v.channel_volumes()]  # colour = 3 channels
    if not channels:
        raise ValueError("No image given to predict on.")
    shape = channels[0].shape
    for ch in channels[1:]:
        if ch.shape != shape:
            raise ValueError(f"Input channels have different shapes: {shape} and {ch.shape}.")
    return channels


def _given(volume: Volume | Sequence[Volume] | None) -> list[Volume]:
    return [] if volume is None else [volume] if isinstance(volume, Volume) else list(volume)


def fit_colourless(card: ModelCard, volume: Volume | Sequence[Volume]) -> Volume | list[Volume]:
    """A greyscale picture stored as RGB (red = green = blue, as many ultrasound exports and
    screenshots are) is one greyscale channel for a model of one greyscale channel, as it was
    when the training data held such pictures; anything else is returned as given.
    """
    given = _given(volume)
    return given[0].for_channels(card.in_channels) if len(given) == 1 else volume


def is_colour_model(card: ModelCard) -> bool:
    """Whether the model was trained on colour pictures (3 channels: red, green, blue).

    The channel names may be spelled as the dataset's ``dataset.json`` gave them: ``red,
    green, blue`` (napari-medseg's), ``R, G, B`` (nnU-Net's natural-image examples) in any
    case. A 3-channel card without three channel names of its own (older cards) counts as
    colour.
    """
    names = tuple(str(n).strip().lower() for n in card.channel_names)
    return card.in_channels == 3 and (names in _COLOUR_NAMES or len(names) != 3)


#: Spellings of a colour picture's channel names (lower case).
_COLOUR_NAMES = {tuple(RGB_CHANNEL_NAMES), ("r", "g", "b")}


#: Modalities whose mismatch means "another task" (a CT model on MR is refused).
_KNOWN_MODALITIES = {"CT", "MR", "PT", "US", "XA"}


def check_fits(card: ModelCard, volume: Volume | Sequence[Volume]) -> list[str]:
    """The one policy on whether a model can segment an image (CLI, API and docks alike).

    Parameters
    ----------
    card : ModelCard
    volume : Volume or sequence of Volume
        The input: one Volume (a colour picture counts as its 3 channels) or one per channel.

    Returns
    -------
    list of str
        Concerns that do not stop the prediction (none today; kept for the docks' status).

    Raises
    ------
    ModelLoadError
        Channels (count, colour vs greyscale), dimensionality (a 3D model on a 2D image) or a
        known modality that differs from the training data's (a CT model on MR), in one sentence.
    """
    volume = fit_colourless(card, volume)
    channels = _channels(volume)
    if len(channels) != card.in_channels:
        raise ModelLoadError(channel_mismatch_message(card, volume, len(channels)))
    ref = channels[0]
    if card.modality in _KNOWN_MODALITIES and ref.modality in _KNOWN_MODALITIES \
            and card.modality != ref.modality:
        raise ModelLoadError(
            f"The model {card.describe()} was trained on {card.modality} images; this image is "
            f"{ref.modality}. It belongs to a different task."
        )
    if card.dims == 3 and ref.ndim != 3:
        what = "picture" if any(v.rgb for v in _given(volume)) or (
            ref.metadata or {}).get("picture") else "image"
        raise ModelLoadError(
            f"The 3D model '{card.task}' v{card.version} needs a 3D volume; the input is a 2D {what} "
            f"({'×'.join(str(n) for n in ref.shape)} pixels). Use a 2D model for it.")
    return []


def channel_mismatch_message(card: ModelCard, volume: Volume | Sequence[Volume] | None,
                             n_channels: int) -> str:
    """One plain sentence saying why the input's channels do not fit the model.

    Parameters
    ----------
    card : ModelCard
        The model.
    volume : Volume or sequence of Volume or None
        The input as given (a colour Volume or greyscale channels), if known.
    n_channels : int
        Input channels it gives the model.
    """
    given = _given(volume)
    colour_input = any(v.rgb for v in given)
    model = f"The model {card.describe()}"
    rgb = ", ".join(RGB_CHANNEL_NAMES)
    if is_colour_model(card) and n_channels == 1:
        return (f"{model} was trained on colour ({rgb}) images; this image is greyscale. "
                "Use a model trained on greyscale images.")
    if card.in_channels == 1 and colour_input and len(given) == 1:
        return (f"{model} was trained on greyscale images; this image is in colour ({rgb}). "
                "Use a model trained on colour images.")
    return (f"{model} expects {card.in_channels} image channel(s) "
            f"({', '.join(card.channel_names)}); the input has {n_channels}.")


def _target_spacing(card: ModelCard, spacing: Sequence[float]) -> tuple[float, ...] | None:
    if card.spacing is None:
        return None
    target = list(card.spacing)[-len(spacing):]
    return tuple(float(s if t is None else t) for s, t in zip(spacing, target, strict=True))


def predict(
    model: ModelLike,
    volume: Volume | Sequence[Volume],
    tta: bool = False,
    device: str | torch.device = "auto",
    return_probabilities: bool = True,
    return_entropy: bool | None = None,
    keep_largest: bool = False,
    overlap: float = 0.25,
    sw_batch_size: int | None = None,
    should_stop: StopFlag = None,
) -> Generator[Event, None, PredictionResult | None]:
    """Segment a volume; yields progress events, returns a :class:`PredictionResult`.

    The image is normalised as the model card says, resampled to the model's spacing,
    segmented with Gaussian-blended sliding windows (MONAI ``sliding_window_inference``,
    optionally averaged over mirror flips) and the probabilities are resampled back to the input
    grid before the arg-max, so labels share the input's shape and affine.

    Parameters
    ----------
    model : path or (torch.nn.Module, ModelCard)
        A model directory or an already loaded model (see :func:`~napari_medseg.models.load_model`).
    volume : Volume or sequence of Volume
        The image (one Volume per input channel). 2D models run slice by slice along axis 0.
    tta : bool
        Mirror test-time augmentation over the axes the model was trained to see mirrored
        (its card's ``mirror_axes``: 2 passes for left-right only; every axis, 8 passes in 3D
        and 4 in 2D, for older models).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    return_probabilities, return_entropy : bool
        Include ``(C, ...)`` probabilities / the entropy map (default: as probabilities).
    keep_largest : bool
        Keep only the largest connected component per class.
    overlap, sw_batch_size
        Sliding-window overlap fraction and windows per forward pass (None: by the window
        size, :func:`~napari_medseg.models.engine.windows_per_batch`).
    should_stop : callable or threading.Event, optional
        Checked before every batch of windows and between the steps after them; when true a
        ``"cancelled"`` event is yielded and None returned (within about one batch of windows).

    Yields
    ------
    Event
        ``"start"`` (``total`` = sliding windows over all passes), ``"step"`` about twice a
        second while the windows run (``step`` = windows done, ``total``, ``eta_s`` = seconds
        left, ``message`` = "120/480 windows"), ``"message"`` for the steps after the windows,
        then ``"finished"`` (with the result) or ``"cancelled"``.

    Raises
    ------
    ModelLoadError, ValueError
        Broken model, or an input that does not fit it (channels, dimensionality).
    """
    if return_entropy is None:
        return_entropy = return_probabilities
    stop = should_stop.is_set if hasattr(should_stop, "is_set") else should_stop
    t0 = time.perf_counter()
    dev = resolve_device(device)
    net, card = _as_model(model, dev)
    extra = guidance_channels(card)
    if extra:  # a click-guided model without clicks: zero guidance = automatic segmentation
        net = ZeroGuidance(net, extra)
    if channels_last_pays(dev, card.dims):  # float32 here: 3D only (same results, faster)
        net = net.to(memory_format=channels_last_format(card.dims))
    volume = fit_colourless(card, volume)
    channels = _channels(volume)
    check_fits(card, volume)
    ref = channels[0]
    spacing = ref.spacing
    target = _target_spacing(card, spacing)
    params = [NormalisationParams.from_dict(d) for d in card.normalisation]
    if target is not None:  # refuse a huge resampled image before allocating it
        from napari_medseg.io.errors import check_allocation

        resampled = [max(1, round(n * s / t)) for n, s, t in zip(ref.shape, spacing, target,
                                                                   strict=True)]
        check_allocation(resampled, 4, f"{ref.name or 'The image'} resampled to the model's "
                         f"{tuple(round(t, 3) for t in target)} mm grid",
                         copies=len(channels) + 2 * card.num_classes)
    fov: np.ndarray | None | bool = True  # prepare_image finds it (when its channels need it)
    if ref.ndim == 2 and any(p.region == "fov" for p in params):
        # one mask for the statistics and for clearing the dark surround afterwards
        from napari_medseg.preprocess import field_of_view_mask

        fov = field_of_view_mask([c.array for c in channels])
    image = prepare_image([c.array for c in channels], spacing, params, target, fov=fov)
    tensor = torch.from_numpy(image)
    if card.dims == 3:
        tensor = tensor[None]  # (1, C, Z, Y, X)
    else:
        tensor = tensor[None] if ref.ndim == 2 else tensor.permute(1, 0, 2, 3)  # (N, C, Y, X)
    tensor = tensor.contiguous().to(dev)
    windows = sliding_window_with_progress(
        net, tensor, card.patch_size[-card.dims:], tta, overlap, sw_batch_size,
        amp=dev.type == "cuda", mirror_axes=card.mirror_axes, should_stop=stop)
    try:
        probs = yield from _window_events(windows,
                                          f"Segmenting {ref.name} with {card.describe()}")
    finally:
        windows.close()  # stops the sliding-window thread if this generator is closed early
    if probs is None or _stopped(stop):
        yield Event("cancelled", message="Prediction cancelled.")
        return None
    yield Event("message", message="Resampling the result to the image grid…")
    if card.dims == 3:
        probs = probs[0]  # (C, Z, Y, X)
    else:
        probs = probs.permute(1, 0, 2, 3)  # (C, N, Y, X)
        if ref.ndim == 2:
            probs = probs[:, 0]
    probs = probs.float().cpu()
    probs = resample_to_shape(probs, ref.shape, order=1)
    if _stopped(stop):
        yield Event("cancelled", message="Prediction cancelled.")
        return None
    labels = argmax_classes(probs).numpy()
    if ref.ndim == 2 and any(p.region == "fov" for p in params):
        # a photograph's dark surround (fundus camera, ultrasound sector) holds no anatomy
        if isinstance(fov, np.ndarray) and fov.shape == labels.shape:
            labels[~fov] = 0
    if keep_largest:
        labels = keep_largest_component(labels)
    entropy = None
    if return_entropy and not _stopped(stop):
        p = probs.clamp_min(1e-8)
        entropy = (-(p * p.log()).sum(0) / np.log(max(probs.shape[0], 2))).numpy().astype(np.float32)
    result = PredictionResult(
        labels=labels,
        probabilities=probs.numpy().astype(np.float32, copy=False) if return_probabilities else None,
        entropy=entropy,
        card=card,
        spacing=tuple(spacing),
        affine=ref.affine.copy(),
        elapsed_s=time.perf_counter() - t0,
    )
    if _stopped(stop):
        yield Event("cancelled", message="Prediction cancelled.")
        return None
    yield Event("finished", result=result,
                message=f"Segmented {ref.name} in {result.elapsed_s:.1f} s")
    return result


def _stopped(stop: Callable[[], bool] | None) -> bool:
    return stop is not None and bool(stop())


def _window_events(windows: Generator, description: str
                   ) -> Generator[Event, None, torch.Tensor | None]:
    """Turn :func:`sliding_window_with_progress` reports into ``start`` / ``step`` events."""
    plan = next(windows)
    yield Event("start", step=0, total=plan.total, message=description)
    while True:
        try:
            progress = next(windows)
        except StopIteration as end:
            return end.value
        yield Event("step", step=progress.done, total=progress.total, eta_s=progress.eta_s,
                    message=f"{progress.done}/{progress.total} windows")


def predict_volume(model: ModelLike, volume: Volume | Sequence[Volume], **kwargs
                   ) -> PredictionResult | None:
    """Run :func:`predict` to the end and return its :class:`PredictionResult` (None when
    ``should_stop`` cancelled it)."""
    gen = predict(model, volume, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


#: Picture files a folder prediction picks up (besides NIfTI), lower case: every picture the
#: readers take but GIF (masks, not photographs).
PICTURE_INPUT_SUFFIXES = tuple(s for s in PICTURE_SUFFIXES if s != ".gif")
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_DICOM_INPUT_SUFFIXES = (".dcm", ".dicom", ".ima")
_STRIPPED_SUFFIXES = (*_NIFTI_SUFFIXES, *PICTURE_INPUT_SUFFIXES, ".gif", *_DICOM_INPUT_SUFFIXES)


def output_stem(path: str | os.PathLike, series_uid: str | None = None) -> str:
    """Name of an input without its image suffix: ``case.nii.gz`` -> ``case``,
    ``photo.JPG`` -> ``photo``; a DICOM folder keeps its name, followed by the last 8 letters
    and digits of ``series_uid`` when one series of it was chosen (``PGBM-002`` ->
    ``PGBM-002_46185462``, a part ``<uid>#2`` of a split series adds ``_2``), so the series of
    one folder do not overwrite each other. The nnU-Net channel suffix of the first channel
    goes too (``case_0000.png`` -> ``case``), so predictions pair with ``labelsTr/case.png``
    as nnU-Net writes them."""
    name = Path(path).name
    if Path(path).is_dir():
        return f"{name}_{series_tag(series_uid)}" if series_uid else name
    lower = name.lower()
    for suffix in _STRIPPED_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    if name.endswith("_0000") and len(name) > 5:
        name = name[:-5]
    return name


def series_tag(series_uid: str) -> str:
    """Short file-name tag of a DICOM series key or UID: its last 8 letters and digits (the
    part of a UID that differs between series), plus ``_<n>`` for part ``#n`` of a split
    series."""
    uid, _, part = str(series_uid).partition("#")
    tail = re.sub(r"[^0-9A-Za-z]", "", uid)[-8:] or "series"
    part = re.sub(r"[^0-9A-Za-z]", "", part)
    return f"{tail}_{part}" if part else tail


def _is_dicom_file(path: Path) -> bool:
    from napari_medseg.io import has_dicom_preamble

    return path.suffix.lower() in _DICOM_INPUT_SUFFIXES or has_dicom_preamble(path)


def list_input_images(input_path: str | os.PathLike) -> list[Path]:
    """Images to segment: a file; every NIfTI (``.nii``, ``.nii.gz``) and picture (PNG, JPEG,
    TIFF, BMP) file in a folder; or a DICOM folder.

    A folder without NIfTI or picture files but with DICOM files is one input (its single
    image series). A folder holding both gives its NIfTI and picture files and, last, the
    folder itself: its DICOM files (``.dcm`` or without a suffix) are one more input, the
    series they form, never dropped silently.
    """
    from napari_medseg.io import folder_has_dicom

    path = Path(input_path)
    if path.is_file():
        return [path]
    if path.is_dir():
        entries = sorted(p for p in path.iterdir()
                         if p.is_file() and not p.name.startswith("."))
        files = [p for p in entries
                 if p.name.lower().endswith((*_NIFTI_SUFFIXES, *PICTURE_INPUT_SUFFIXES))]
        if files:
            chosen = set(files)
            if any(_is_dicom_file(p) for p in entries if p not in chosen):
                files.append(path)  # the folder's DICOM series, one more input
            return files
        if folder_has_dicom(path):
            return [path]
        raise ValueError(f"No NIfTI images (.nii, .nii.gz), pictures (.png, .jpg, .tif, .bmp, .ppm) "
                         f"or DICOM files in {path}.")
    raise ValueError(f"Input not found: {path}")


def check_single_file_channels(card: ModelCard) -> None:
    """Raise unless one input file can feed the model: 1 channel (greyscale) or colour.

    Raises
    ------
    ModelLoadError
        The model needs several co-registered images per case (e.g. T1 + T2), which one file
        does not hold.
    """
    if card.in_channels != 1 and not is_colour_model(card):
        raise ModelLoadError(
            f"The model {card.describe()} expects {card.in_channels} image channel(s) "
            f"({', '.join(card.channel_names)}); each input file holds 1 (greyscale) or 3 "
            "(colour: red, green, blue)."
        )


def predict_folder(
    model: ModelLike,
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    tta: bool = False,
    device: str | torch.device = "auto",
    keep_largest: bool = False,
    should_stop: StopFlag = None,
    output_format: str = "auto",
    probabilities: bool | str = False,
    series_uid: str | None = None,
    channel: int | None = None,
    **kwargs,
) -> Generator[Event, None, list[Path]]:
    """Segment a file, every NIfTI image / picture in a folder, or a DICOM series into ``out_dir``.

    Outputs are named after the input without its suffix: ``<name>.nii.gz`` for volumes (a
    DICOM folder gives ``<folder name>.nii.gz``, or ``<folder name>_<series tag>.nii.gz`` for
    the series ``series_uid`` chooses: see :func:`output_stem`) and ``<name>.png`` for 2D
    pictures (PNG, JPEG, TIFF, BMP, 2D DICOM), unless ``output_format`` says otherwise (see
    :mod:`napari_medseg.inference.outputs`). The DICOM files of a folder that also holds NIfTI
    or picture files are one more input (see :func:`list_input_images`), named
    ``<folder name>/ (DICOM)`` when skipped.

    Parameters
    ----------
    model, input_path, out_dir
        Model directory (or loaded model), input file or folder, output folder.
    tta, device, keep_largest, should_stop, **kwargs
        As for :func:`predict`.
    output_format : str
        ``"auto"`` (PNG for 2D pictures, NIfTI otherwise) or a registered format name
        (``"nifti"``, ``"png"``, ``"tif"`` ...).
    probabilities : bool or str
        Also write per-class probability maps (True: in the output format; or a format name).
    series_uid, channel : optional
        Which image series of a DICOM folder holding several, which channel / time point of
        a 4D NIfTI (see :func:`~napari_medseg.io.read_volume`).

    Each output has the input's shape and geometry and is written atomically (temp + rename).
    An input that cannot be segmented (unreadable, or it does not fit the model: channels,
    dimensionality, format) is skipped and the others still run: each skipped input yields one
    ``"message"`` event (``level="warning"``, ``result={"skipped": name, "reason": text}``,
    plus ``"choose": "series"`` / ``"channel"`` when it holds several of them,
    ``message="Skipped <name>: <reason>"``) and the ``"finished"`` message names the skipped
    ones. When nothing could be written, the (first) reason is raised instead, so a single
    input fails exactly as it would alone. Problems of the output folder itself stop the run.
    Yields one ``"step"`` per segmented image (``result``: the paths it wrote); returns all
    written paths.

    Raises
    ------
    ValueError
        No input could be segmented (one input: its own error; several: how many, and the
        first reason), or inputs and outputs clash.
    """
    from napari_medseg.dataset.msd import read_image
    from napari_medseg.inference.outputs import (
        get_output_format,
        is_probability_name,
        label_path,
        resolve_output_format,
        write_prediction,
    )

    stop = should_stop.is_set if hasattr(should_stop, "is_set") else should_stop
    files = list_input_images(input_path)
    auto = str(output_format).lower() == "auto"
    candidates = ["png", "nifti"] if auto else [get_output_format(output_format).name]
    if probabilities and probabilities is not True:
        get_output_format(str(probabilities))
    dev = resolve_device(device)
    loaded = _as_model(model, dev)
    check_single_file_channels(loaded[1])
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"The output folder {out} is an existing file; choose another folder.")
    stems: dict[str, Path] = {}
    for src in files:
        stem = output_stem(src, series_uid)
        if stem in stems:
            raise ValueError(f"{_input_name(stems[stem])} and {_input_name(src)} would both be "
                             f"written as {stem}.*; rename one of them.")
        stems[stem] = src
        for name in candidates:
            if label_path(out, stem, name).resolve() == src.resolve():
                raise ValueError(f"The output {label_path(out, stem, name)} would overwrite its "
                                 "input; choose another --out.")
    for stem, src in stems.items():  # "a_prob_1" would be taken for a probability map of "a"
        owner = next((o for o in stems if is_probability_name(stem, o)), None)
        if owner is not None:
            raise ValueError(f"The output of {_input_name(src)} would be taken for a "
                             f"probability map of {_input_name(stems[owner])} ({stem} = "
                             f"{owner}_prob_<class>); rename one of them.")
    yield Event("start", step=0, total=len(files),
                message=f"Segmenting {len(files)} image(s) with {loaded[1].describe()}")
    written: list[Path] = []
    skipped: list[tuple[str, Exception]] = []
    t0 = time.perf_counter()
    for i, (stem, src) in enumerate(stems.items(), start=1):
        if stop is not None and stop():
            yield Event("cancelled", step=i - 1, total=len(files), result=[str(p) for p in written],
                        message="Prediction cancelled.")
            return written
        try:
            volume = _read_input(read_image, src, series_uid, channel)
            fmt = resolve_output_format(output_format, volume, src)  # e.g. a 3D volume as PNG
            result = predict_volume(loaded, volume, tta=tta, device=dev,
                                    return_probabilities=bool(probabilities),
                                    return_entropy=False, keep_largest=keep_largest,
                                    should_stop=stop, **kwargs)
        except (ValueError, OSError) as exc:  # this input only: say so, go on with the others
            name = _input_name(src) if len(stems) > 1 else src.name
            skipped.append((name, exc))
            reason = _one_line(exc)
            item = {"skipped": name, "reason": reason}
            choose = _what_to_choose(exc)
            if choose:
                item["choose"] = choose  # what the caller may let the user pick (its option)
            yield Event("message", step=i, total=len(files), level="warning", result=item,
                        message=f"Skipped {name}: {reason}")
            continue
        if result is None:  # cancelled inside this image
            yield Event("cancelled", step=i - 1, total=len(files),
                        result=[str(p) for p in written], message="Prediction cancelled.")
            return written
        paths = write_prediction(result, volume, out, stem, fmt.name, probabilities, source=src)
        written.extend(paths)
        elapsed = time.perf_counter() - t0
        yield Event("step", step=i, total=len(files), eta_s=elapsed / i * (len(files) - i),
                    message=f"{src.name} -> {paths[0].name}", result=[str(p) for p in paths])
    if skipped and len(skipped) == len(stems):
        name, first = skipped[0]
        if len(stems) == 1:
            raise first  # one input: its own error, as when it was the only file
        raise ValueError(f"None of the {len(stems)} images could be segmented; the first, "
                         f"{name}: {_one_line(first)}") from first
    message = f"Wrote {len(stems) - len(skipped)} segmentation(s) to {out}"
    if skipped:
        message += (f"; skipped {len(skipped)}: {', '.join(n for n, _ in skipped)} "
                    f"(first reason: {_one_line(skipped[0][1])})")
    yield Event("finished", step=len(files), total=len(files), result=[str(p) for p in written],
                message=message)
    return written


def _input_name(src: Path) -> str:
    """How a folder run names an input: the file name; a folder's DICOM files beside its
    other images as ``<folder>/ (DICOM)``."""
    return f"{src.name}/ (DICOM)" if src.is_dir() else src.name


def _what_to_choose(exc: BaseException) -> str | None:
    """``"series"`` or ``"channel"`` when ``exc`` says the input holds several of them."""
    from napari_medseg.io.errors import MultipleChannelsError, MultipleSeriesError

    if isinstance(exc, MultipleSeriesError):
        return "series"
    if isinstance(exc, MultipleChannelsError):
        return "channel"
    return None


def _read_input(read_image: Callable[..., Volume], src: Path, series_uid: str | None,
                channel: int | None) -> Volume:
    """Read one input of a folder run; a reader error names the file."""
    try:
        volume = read_image(src, series_uid=series_uid, channel=channel)
    except ValueError as exc:
        if src.name in str(exc):
            raise  # the reader's message already names the file
        raise ValueError(f"Cannot read {src.name}: {exc}") from exc
    kind = _label_map_kind(volume, src)
    if kind:
        raise ValueError(f"{src.name} is {kind}, not an image to segment: give the image it "
                         "was drawn on.")
    return volume


#: Folders that hold label maps in dataset layouts (MSD, nnU-Net).
_LABEL_FOLDERS = ("labelstr", "labelsts", "labelsva")


def _label_map_kind(volume: Volume, src: Path) -> str:
    """What kind of label map ``volume`` is ("a DICOM SEG", "a label map" ...), or "" for an
    image: segmenting a label map as if it were intensities gives nonsense silently."""
    meta = volume.metadata or {}
    if meta.get("format") == "dicom-seg":
        return "a DICOM SEG"
    if meta.get("format") == "rtstruct":
        return "an RTSTRUCT"
    if meta.get("is_labels") is True and np.asarray(volume.array).any():
        return "a label map"  # (a blank image also "looks like" labels: left to the model)
    if src.parent.name.lower() in _LABEL_FOLDERS:
        return f"a label map (it lies in {src.parent.name}/)"
    return ""


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (its first line; the error's type when empty)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
