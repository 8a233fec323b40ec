"""Models that leave napari: TorchScript, ONNX and MONAI bundle exports of a model directory.

An exported network maps a normalised image batch ``(N, C, *spatial)`` (float32, channels and
normalisation as the model card says) to class logits ``(N, classes, *spatial)`` (or, with
``probabilities=True``, to softmax probabilities). :func:`napari_medseg.inference.predict` is
reproduced exactly by: resample to the card's ``spacing`` and normalise
(:func:`napari_medseg.preprocess.prepare_image`), MONAI ``sliding_window_inference`` with
``roi_size`` = the card's patch size, ``overlap=0.25``, ``mode="gaussian"``, constant 0 padding,
then a softmax over axis 1 (logits are blended, not probabilities), resampling back and argmax.
That recipe travels with the export: the model card is written next to it as
``<name>.model_card.json`` with an ``export`` entry saying what the file expects and returns.

* ``"torchscript"``: :func:`torch.jit.trace`; load with ``torch.jit.load(path)``, no
  napari-medseg or MONAI needed. Spatial sizes other than the traced patch work (the networks
  are fully convolutional; each size must be divisible by the network's total stride).
* ``"onnx"``: :func:`torch.onnx.export` with dynamic batch and spatial axes (input ``image``,
  output ``logits``/``probabilities``); run with ``onnxruntime``. When onnxruntime is installed
  the export is checked on a random input (max abs difference to torch <= 1e-4) before it is
  kept.
* ``"monai-bundle"``: a folder in MONAI's bundle layout (``configs/metadata.json``,
  ``configs/inference.json`` with the network as a ``network_def``, a Gaussian
  ``SlidingWindowInferer`` and softmax/argmax post-processing, ``models/model.pt`` state dict,
  ``docs/README.md``) plus the napari-medseg card, so :func:`import_monai_bundle` turns it back
  into a model directory. For a 3D model of one channel (:func:`bundle_not_runnable`) the
  config is the whole pipeline in MONAI transforms (load, normalise, resample, transpose to
  Z, Y, X, sliding window, softmax, invert to the scan's grid, argmax, save) with an evaluator
  and a ``run`` section: ``python -m monai.bundle run --config_file BUNDLE/configs/inference.json
  --bundle_root BUNDLE --dataset_dir SCANS --output_dir OUT`` (pytorch-ignite and fire needed).

Every file is written under a temporary name and moved into place: a failed export leaves
nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_medseg.models.card import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelLoadError,
    load_model,
    save_model,
)

#: What ``export_model(fmt=...)`` accepts.
EXPORT_FORMATS = ("torchscript", "onnx", "monai-bundle")
BUNDLE_CARD = "configs/napari_medseg_model_card.json"
_ONNX_TOLERANCE = 1e-4


#: Sliding-window settings of :func:`napari_medseg.inference.predict` (recorded in exports).
PREDICT_WINDOWS = {"overlap": 0.25, "mode": "gaussian", "padding_mode": "constant", "cval": 0.0,
                   "blend": "logits, softmax after blending"}


class _Exported(torch.nn.Module):
    """The network with one plain tensor output: logits, or softmax probabilities."""

    def __init__(self, network: torch.nn.Module, probabilities: bool) -> None:
        super().__init__()
        self.network = network
        self.probabilities = probabilities

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.network(image)
        if isinstance(out, (list, tuple)):  # deep supervision heads: the first is the output
            out = out[0]
        return torch.softmax(out, dim=1) if self.probabilities else out


def card_path_for(out: str | os.PathLike[str]) -> Path:
    """Where the model card of an exported file goes: ``<stem>.model_card.json`` beside it,
    or ``<file name>.model_card.json`` when the first already describes another file (the
    same model exported as ``m.pt`` and ``m.onnx``: each keeps its own card)."""
    out = Path(out)
    card = out.with_name(f"{out.stem}.model_card.json")
    if card.is_file():
        try:
            described = json.loads(card.read_text()).get("export", {}).get("file")
        except (OSError, ValueError, AttributeError):
            described = None
        if described and described != out.name:
            return out.with_name(f"{out.name}.model_card.json")
    return card


def _example_input(card: ModelCard, shape: tuple[int, ...] | None) -> torch.Tensor:
    spatial = tuple(int(s) for s in (shape or card.patch_size))
    if len(spatial) != card.dims:
        raise ValueError(f"example shape {spatial} has {len(spatial)} axes; the model is "
                         f"{card.dims}D.")
    gen = torch.Generator().manual_seed(0)
    return torch.randn((1, card.in_channels, *spatial), generator=gen)


def _export_info(card: ModelCard, fmt: str, file_name: str, probabilities: bool = False
                 ) -> dict[str, Any]:
    output = "probabilities" if probabilities else "logits"
    return {
        "format": fmt,
        "file": file_name,
        "input": {"name": "image", "layout": "N, C, " + ", ".join("ZYX"[3 - card.dims:]),
                  "dtype": "float32", "channels": list(card.channel_names),
                  "normalisation": card.normalisation, "spacing_mm": card.spacing},
        "output": {"name": output, "layout": "N, classes, spatial",
                   "meaning": ("softmax class probabilities" if probabilities else
                               "class logits: softmax over axis 1 after sliding-window "
                               "blending gives predict's probabilities")
                   + "; labels = argmax over axis 1",
                   "classes": card.classes},
        "patch_size": list(card.patch_size),
        "sliding_window": {"roi_size": list(card.patch_size), **PREDICT_WINDOWS},
        "recipe": ("Axes Z, Y, X are the image array in slice, row, column order (a NIfTI's k, "
                   "j, i: nibabel's array transposed). Normalise each channel as "
                   "'normalisation' says, resample it to spacing_mm with linear interpolation "
                   "(trilinear / bilinear, align_corners=False), run the sliding window, softmax "
                   "over axis 1, resample the probabilities back to the image grid linearly, "
                   "then take the argmax."),
        "torch_version": torch.__version__,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=float))


def _check_out(out: Path, fmt: str) -> None:
    if not out.parent.is_dir():
        raise ValueError(f"Cannot export to {out}: folder {out.parent} does not exist.")
    if fmt == "monai-bundle" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"Cannot export a MONAI bundle to {out}: it exists and is not an empty "
                         "folder; give a new folder (or an empty one) as the output.")
    if fmt != "monai-bundle" and out.is_dir():
        raise ValueError(f"Cannot export to {out}: it is a folder; give a file name.")
    other = {"torchscript": ".onnx", "onnx": ".pt"}.get(fmt)
    if other is not None and out.suffix.lower() == other:
        raise ValueError(f"Cannot export {fmt} to {out.name}: its suffix {other} names the other "
                         "format; use " + (".pt" if fmt == "torchscript" else ".onnx") + ".")
    import tempfile

    try:  # a folder we cannot write to: say so now, not in the exporter's words
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as exc:
        raise ValueError(f"Cannot export to {out}: folder {out.parent} is not writable "
                         f"({(exc.strerror or str(exc)).lower()}).") from exc


def export_model(
    model_dir: str | os.PathLike[str],
    fmt: str,
    out: str | os.PathLike[str],
    *,
    example_shape: tuple[int, ...] | None = None,
    probabilities: bool = False,
    verify: bool = True,
) -> Path:
    """Export a napari-medseg model directory for use without napari.

    Parameters
    ----------
    model_dir : path-like
        A model directory (``model.pt`` + ``model_card.json``).
    fmt : str
        ``"torchscript"``, ``"onnx"`` or ``"monai-bundle"``.
    out : path-like
        The file to write (``.pt``/``.ts`` for TorchScript, ``.onnx``), or the bundle folder
        (created; must be absent or empty).
    example_shape : tuple of int, optional
        Spatial size of the tracing input (default: the card's patch size).
    probabilities : bool
        Export network + softmax (output ``probabilities``) instead of the logits (output
        ``logits``, what ``predict`` blends over sliding windows). TorchScript / ONNX only.
    verify : bool
        ONNX: compare onnxruntime with torch on the example input when onnxruntime is installed.
        TorchScript: reload the file and compare. Raises when they differ by more than 1e-4.

    Returns
    -------
    Path
        The file or folder written; the model card sits beside a file export as
        ``<stem>.model_card.json`` (inside a bundle as ``configs/napari_medseg_model_card.json``).

    Raises
    ------
    ValueError
        Unknown format, not a model folder (:class:`~napari_medseg.models.ModelLoadError`), bad
        destination, or an export that does not reproduce the network.
    """
    fmt = str(fmt).lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}.")
    out = Path(out).expanduser()
    _check_out(out, fmt)
    network, card = load_model(model_dir, device="cpu")
    module = _Exported(network, probabilities).eval()
    output = "probabilities" if probabilities else "logits"
    example = _example_input(card, example_shape)
    if fmt == "monai-bundle":
        return _export_bundle(network, card, out)
    with torch.no_grad():
        expected = module(example)
    tmp = out.with_name(f".{out.name}-{uuid.uuid4().hex[:8]}.tmp")
    card_out = card_path_for(out)
    try:
        if fmt == "torchscript":
            _export_torchscript(module, example, tmp, expected if verify else None)
        else:
            _export_onnx(module, example, tmp, card.dims, output,
                         expected if verify else None)
        _write_json(card_out.with_name(f".{card_out.name}.tmp"), {
            **card.to_dict(), "export": _export_info(card, fmt, out.name, probabilities)})
        os.replace(tmp, out)
        os.replace(card_out.with_name(f".{card_out.name}.tmp"), card_out)
    finally:
        for leftover in (tmp, card_out.with_name(f".{card_out.name}.tmp")):
            if leftover.exists():
                leftover.unlink()
    return out


def _export_torchscript(module: torch.nn.Module, example: torch.Tensor, tmp: Path,
                        expected: torch.Tensor | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit deprecation and tracer notes
        with torch.no_grad():
            traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(tmp))
        if expected is not None:
            with torch.no_grad():
                got = torch.jit.load(str(tmp))(example)
            _compare(got.numpy(), expected.numpy(), "TorchScript")


def _export_onnx(module: torch.nn.Module, example: torch.Tensor, tmp: Path, dims: int,
                 output: str, expected: torch.Tensor | None) -> None:
    axes = {0: "batch", **{2 + i: f"spatial{i}" for i in range(dims)}}
    kwargs: dict[str, Any] = {"input_names": ["image"], "output_names": [output],
                              "opset_version": 18}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # TorchScript-based exporter: seconds, dynamic axes by name
            torch.onnx.export(module, (example,), str(tmp), dynamic_axes={
                "image": axes, output: axes}, dynamo=False, **kwargs)
        except (TypeError, RuntimeError, ImportError):  # torch without it: torch.export path
            dim = torch.export.Dim
            torch.onnx.export(module, (example,), str(tmp), dynamo=True, dynamic_shapes=(
                {a: dim.AUTO for a in axes},), **kwargs)
    if expected is None:
        return
    try:
        import onnxruntime as ort
    except ImportError:
        return
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": example.numpy()})[0]
    _compare(got, expected.numpy(), "ONNX")


def _compare(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else np.inf
    if not diff <= _ONNX_TOLERANCE:
        raise ValueError(f"The {what} export does not reproduce the network (max difference "
                         f"{diff:.2g}); it was not saved.")


# --------------------------------------------------------------------------------------------
# MONAI bundle
# --------------------------------------------------------------------------------------------


def network_def(spec: dict[str, Any]) -> dict[str, Any]:
    """The MONAI bundle ``network_def`` (``_target_`` + arguments) for a card's network spec.

    Mirrors :func:`napari_medseg.models.factory.build_network`; the export test instantiates it
    with MONAI's ``ConfigParser`` and checks the weights load strictly and give the same output.
    """
    from napari_medseg.models.factory import _ACT_LAYERS  # the one activation table

    arch = spec["architecture"]
    dims, cin, cout = spec["dims"], spec["in_channels"], spec["out_channels"]
    filters, strides = list(spec["filters"]), [list(s) for s in spec["strides"]]
    if arch == "unet":
        act = _ACT_LAYERS[spec.get("activation", "prelu")]
        return {
            "_target_": "monai.networks.nets.UNet", "spatial_dims": dims, "in_channels": cin,
            "out_channels": cout, "channels": filters, "strides": strides,
            "num_res_units": int(spec.get("res_units", 2)),
            "norm": ["instance", {"affine": True}],
            "act": list(act) if isinstance(act, tuple) else act,
        }
    if arch == "dynunet":
        levels = len(strides)
        return {
            "_target_": "monai.networks.nets.DynUNet", "spatial_dims": dims, "in_channels": cin,
            "out_channels": cout, "kernel_size": [3] * (levels + 1),
            "strides": [1, *strides], "upsample_kernel_size": strides, "filters": filters,
            "norm_name": ["INSTANCE", {"affine": True}],
            "act_name": ["leakyrelu", {"inplace": True, "negative_slope": 0.01}],
            "deep_supervision": bool(spec.get("deep_supervision", False)),
            "deep_supr_num": max(1, min(2, levels - 1)), "res_block": False,
        }
    raise ValueError(f"Unknown architecture {arch!r}: it cannot be written as a MONAI bundle.")


def _installed_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``packages`` (those not installed are left out)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def _bundle_metadata(card: ModelCard) -> dict[str, Any]:
    import monai

    names = {str(c["value"]): str(c["name"]) for c in card.classes}
    spatial = [int(s) for s in card.patch_size]
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/"
                  "0.8.1/meta_schema_20220324.json",
        "version": f"{card.version}.0.0",
        "changelog": {f"{card.version}.0.0": "exported from napari-medseg"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": _installed_versions(
            ("nibabel", "pytorch-ignite") if bundle_not_runnable(card) is None else ()),
        "name": card.task,
        "task": f"{card.task} segmentation",
        "description": f"napari-medseg model {card.describe()}",
        "authors": "napari-medseg",
        "copyright": "",
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "magnitude", "modality": card.modality,
                "num_channels": card.in_channels, "spatial_shape": spatial, "dtype": "float32",
                "value_range": [], "is_patch_data": True,
                "channel_def": {str(i): n for i, n in enumerate(card.channel_names)},
            }},
            "outputs": {"pred": {
                "type": "image", "format": "segmentation", "num_channels": card.num_classes,
                "spatial_shape": spatial, "dtype": "float32", "value_range": [0, 1],
                "is_patch_data": True, "channel_def": names,
            }},
        },
    }


def bundle_not_runnable(card: ModelCard) -> str | None:
    """Why ``python -m monai.bundle run`` cannot reproduce ``predict`` for this model (None
    when its ``inference.json`` holds the whole pipeline: MONAI transforms for loading,
    normalisation and resampling, the sliding window, inversion back to the image grid and
    saving)."""
    from napari_medseg.interactive.guidance import guidance_channels

    if card.dims != 3:
        return "a 2D model, for pictures or for volumes slice by slice"
    if guidance_channels(card):
        return "a click-guided model, whose click channels are not MONAI transforms"
    if card.in_channels != 1:
        return f"a model of {card.in_channels} input channels, one image file each"
    norm = card.normalisation[0]
    if norm.get("region", "all") not in (None, "all") or norm.get("local_contrast") or \
            norm.get("scheme") not in ("zscore", "ct", "none"):
        return "its normalisation has no MONAI transform"
    return None


def _bundle_preprocessing(card: ModelCard) -> list[dict[str, Any]]:
    """MONAI transforms that do what :func:`napari_medseg.preprocess.prepare_image` does."""
    norm = card.normalisation[0]
    steps: list[dict[str, Any]] = [
        {"_target_": "LoadImaged", "keys": "image", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
    ]
    if norm["scheme"] == "zscore":
        steps.append({"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": False,
                      "channel_wise": True})
    elif norm["scheme"] == "ct":
        low, high = float(norm["clip_low"]), float(norm["clip_high"])
        mean, std = float(norm["mean"]), float(norm["std"])
        steps.append({"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": low,
                      "a_max": high, "b_min": (low - mean) / std, "b_max": (high - mean) / std,
                      "clip": True})
    if card.spacing is not None:
        # the card's spacing is (Z, Y, X); a loaded NIfTI array is (x, y, z); -1 keeps an axis
        pixdim = [-1.0 if s is None else float(s) for s in reversed(list(card.spacing))]
        steps.append({"_target_": "Spacingd", "keys": "image", "pixdim": pixdim,
                      "mode": "bilinear", "align_corners": False})
    # the network sees the array as napari-medseg holds it: (Z, Y, X), nibabel's transposed
    steps.append({"_target_": "Transposed", "keys": "image", "indices": [0, 3, 2, 1]})
    return steps


def _bundle_inference(card: ModelCard) -> dict[str, Any]:
    config: dict[str, Any] = {
        "imports": ["$import glob", "$import os", "$import torch"],
        "bundle_root": ".",
        "dataset_dir": "input",
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": network_def(card.network),
        "network": "$@network_def.to(@device)",
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(card.patch_size),
                    "sw_batch_size": 4, "overlap": PREDICT_WINDOWS["overlap"],
                    "mode": "gaussian", "padding_mode": "constant", "cval": 0.0},
    }
    why_not = bundle_not_runnable(card)
    if why_not is None:
        config.update({
            "datalist": "$sorted(glob.glob(os.path.join(@dataset_dir, '*.nii*')))",
            "preprocessing": {"_target_": "Compose", "transforms": _bundle_preprocessing(card)},
            "dataset": {"_target_": "Dataset", "data": "$[{'image': f} for f in @datalist]",
                        "transform": "@preprocessing"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1,
                           "shuffle": False, "num_workers": 0},
            # softmax of the blended logits, probabilities back to the image grid, argmax
            "postprocessing": {"_target_": "Compose", "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing",
                 "orig_keys": "image", "nearest_interp": False, "to_tensor": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir",
                 "output_postfix": "seg", "output_dtype": "$torch.uint8", "resample": False,
                 "separate_folder": False, "print_log": False}]},
            "handlers": [{"_target_": "CheckpointLoader", "load_path":
                          "$os.path.join(@bundle_root, 'models', 'model.pt')",
                          "load_dict": {"model": "@network"}, "map_location": "@device"}],
            "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                          "val_data_loader": "@dataloader", "network": "@network",
                          "inferer": "@inferer", "postprocessing": "@postprocessing",
                          "val_handlers": "@handlers", "amp": False},
            "run": ["$@evaluator.run()"],
        })
    else:
        config["postprocessing"] = {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True}]}
    config["napari_medseg"] = {
        "spacing_mm": card.spacing, "normalisation": card.normalisation,
        "note": ("`python -m monai.bundle run --config_file configs/inference.json "
                 "--bundle_root BUNDLE --dataset_dir SCANS --output_dir OUT` segments every "
                 "NIfTI file in SCANS (needs pytorch-ignite and fire) into OUT/<name>_seg.nii.gz"
                 if why_not is None else
                 f"not runnable with `monai.bundle run`: {why_not}; resample to spacing_mm "
                 "and normalise as listed before the inferer (see the model card)")}
    return config


def _bundle_usage(card: ModelCard) -> str:
    why_not = bundle_not_runnable(card)
    if why_not is None:
        return ("Segment every NIfTI file of a folder (needs `pip install monai "
                "pytorch-ignite fire nibabel`):\n\n```bash\npython -m monai.bundle run --config_file "
                "BUNDLE/configs/inference.json --bundle_root BUNDLE --dataset_dir SCANS "
                "--output_dir OUT\n```\n\nEach `SCANS/<name>.nii.gz` gives "
                "`OUT/<name>_seg.nii.gz` on the scan's grid (class values as in "
                "`configs/metadata.json`).\n")
    return (f"`monai.bundle run` cannot run this model ({why_not}): resample and normalise "
            "the inputs as `configs/napari_medseg_model_card.json` says, then use the "
            "`inferer` and `postprocessing` of `configs/inference.json`.\n")


def _new_hidden_folder(out: Path) -> Path:
    """A new empty hidden folder beside ``out``, made with ``os.mkdir``: its mode follows the
    umask as any folder the user makes (``tempfile.mkdtemp`` would give 700, which the bundle
    would keep once moved into place)."""
    while True:
        tmp = out.with_name(f".{out.name}-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        return tmp


def _export_bundle(network: torch.nn.Module, card: ModelCard, out: Path) -> Path:
    tmp = _new_hidden_folder(out)
    try:
        (tmp / "configs").mkdir()
        (tmp / "models").mkdir()
        (tmp / "docs").mkdir()
        _write_json(tmp / "configs" / "metadata.json", _bundle_metadata(card))
        _write_json(tmp / "configs" / "inference.json", _bundle_inference(card))
        _write_json(tmp / BUNDLE_CARD, {**card.to_dict(),
                                        "export": _export_info(card, "monai-bundle",
                                                               "models/model.pt")})
        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()},
                   tmp / "models" / "model.pt")
        (tmp / "docs" / "README.md").write_text(
            f"# {card.task}\n\nExported from napari-medseg: {card.describe()}.\n\n"
            "`configs/inference.json` builds the network (`network_def`); `models/model.pt` is "
            "its state dict.\n\n" + _bundle_usage(card))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def import_monai_bundle(bundle_dir: str | os.PathLike[str],
                        model_dir: str | os.PathLike[str]) -> Path:
    """Turn a MONAI bundle written by :func:`export_model` back into a model directory.

    Raises
    ------
    ModelLoadError
        Not a bundle, or a bundle without a napari-medseg card (a foreign bundle's network and
        preprocessing cannot be checked against this package's model format).
    """
    bundle = Path(bundle_dir)
    card_file, weights = bundle / BUNDLE_CARD, bundle / "models" / "model.pt"
    if not (bundle / "configs" / "metadata.json").is_file() or not weights.is_file():
        raise ModelLoadError(f"{bundle} is not a MONAI bundle (no configs/metadata.json or "
                             "models/model.pt).")
    if not card_file.is_file():
        raise ModelLoadError(f"The MONAI bundle {bundle} was not made by napari-medseg (no "
                             f"{BUNDLE_CARD}); it cannot be imported as a model yet.")
    data = json.loads(card_file.read_text())
    data.pop("export", None)
    card = ModelCard.from_dict(data)
    from napari_medseg.models.factory import build_network

    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        build_network(card.network).load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"The weights in {weights} do not match the network of its card: "
                             f"{str(exc).splitlines()[0]}") from exc
    return save_model(state, card, model_dir)


__all__ = ["CARD_FILE", "EXPORT_FORMATS", "WEIGHTS_FILE", "card_path_for", "export_model",
           "import_monai_bundle", "network_def"]
