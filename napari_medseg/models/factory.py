"""Network factory: MONAI UNet / DynUNet, 2D and 3D, sized from the data.

The plan follows nnU-Net's idea: pool each axis while its feature map stays at least
``min_feature_size`` voxels, round the patch size up to a multiple of the total pooling, and
give the network one level per pooling step. The architecture description is a plain dict
(:func:`plan_network`) stored in the model card, so a model directory rebuilds its network
without unpickling anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

ARCHITECTURES = ("unet", "dynunet")
ACTIVATIONS = ("leakyrelu", "prelu")
_ACT_LAYERS = {
    "leakyrelu": ("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
    "prelu": "PRELU",
}


def plan_patch_size(
    median_shape: Sequence[float],
    max_voxels: int | None = None,
    min_feature_size: int = 4,
    max_pools: int = 5,
) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Patch size and per-level strides for a typical image shape.

    Parameters
    ----------
    median_shape : sequence of float
        Typical image shape (voxels, after resampling), 2 or 3 axes.
    max_voxels : int, optional
        Upper bound on the patch volume (voxels); larger shapes are shrunk.
    min_feature_size : int
        Smallest feature-map size (voxels) allowed along an axis at the bottleneck.
    max_pools : int
        Maximum number of poolings per axis.

    Returns
    -------
    patch_size : tuple of int
        Each axis a multiple of ``2 ** pools_on_that_axis``.
    strides : list of tuple of int
        One entry per down-sampling level, ``2`` where that axis is pooled, else ``1``.
    """
    shape = np.maximum(np.asarray(median_shape, dtype=float), 1.0)
    while True:
        pools = []
        for n in shape:
            k = 0
            while k < max_pools and n / 2 ** (k + 1) >= min_feature_size:
                k += 1
            pools.append(k)
        patch = tuple(int(np.ceil(n / 2**k) * 2**k) for n, k in zip(shape, pools, strict=True))
        if max_voxels is None or int(np.prod(patch)) <= max_voxels or shape.max() <= 8:
            break
        shape[int(np.argmax(shape))] *= 0.9
    levels = max(pools)
    strides = [tuple(2 if level < k else 1 for k in pools) for level in range(levels)]
    return patch, strides


#: Optimisation steps a time-budgeted 2D plan aims for at least (see :func:`plan_2d_patch`).
MIN_2D_STEPS = 1500
#: Candidate sides (pixels) of square 2D training patches.
PATCH_SIDES_2D = (128, 160, 192, 224, 256, 320, 384, 448, 512)


def plan_2d_patch(
    image_shape: Sequence[float],
    pixels_per_s: float | None,
    train_time_s: float | None,
    min_steps: int = MIN_2D_STEPS,
    batch_range: tuple[int, int] = (8, 16),
    preferred_batch: int = 8,
    max_voxels: int = 512 * 512,
    min_side: float | None = None,
    min_context_steps: int = MIN_2D_STEPS // 5,
) -> tuple[tuple[int, ...], list[tuple[int, ...]], int, int | None]:
    """Patch size, strides and batch for 2D training fitted to the images and the time budget.

    The cost of a training step grows with the pixels it processes (``batch x patch``), so a
    budget buys a fixed number of pixels. The plan takes the largest patch (up to the whole
    image, at most ``max_voxels``) for which ``preferred_batch`` patches per step still give
    at least ``min_steps`` steps; when the whole image fits that way, the batch grows (up to
    ``batch_range[1]``) while the steps stay above ``min_steps``. When even the smallest patch
    gives fewer steps, the batch shrinks towards ``batch_range[0]``. Images are never
    downsampled: small patches keep thin structures (vessels a few pixels wide) at full
    resolution.

    Parameters
    ----------
    image_shape : sequence of float
        Typical (median) image shape ``(Y, X)``, pixels.
    pixels_per_s : float or None
        Measured training throughput (patch pixels per second, batch included); None = no
        time budget: the whole image (as :func:`plan_patch_size`) with ``preferred_batch``
        patches of at most 128 Ki pixels, else 2.
    train_time_s : float or None
        Seconds available for optimisation steps.
    min_side : float, optional
        Patch side (pixels) the objects need to be seen whole with some context (large
        lesions): the patch grows to it even at fewer steps, as long as the budget still buys
        ``min_context_steps`` (on synthetic ultrasound, 117 steps of 192x192 patches learnt
        the lesions far better than 310 steps of 128x128 ones; but on a float32-only CPU
        234 steps of 320x320 patches gave Dice 0.61 and 578 of 192x192 0.64, hence at least
        300 planned steps: the plan's timing is cautious, runs do about 1.4-1.7x the steps
        planned).

    Returns
    -------
    patch_size, strides, batch_size, expected_steps
        ``expected_steps`` is None without a budget.
    """
    whole, whole_strides = plan_patch_size(image_shape, max_voxels)
    if not pixels_per_s or not train_time_s:
        batch = preferred_batch if int(np.prod(whole)) <= 128 * 1024 else 2
        return whole, whole_strides, batch, None
    budget_px = float(pixels_per_s) * float(train_time_s)
    lo_b, hi_b = batch_range
    candidates = []
    for side in PATCH_SIDES_2D:
        want = [min(side, n) for n in image_shape]
        patch, strides = plan_patch_size(want)
        if int(np.prod(patch)) > max_voxels:
            break
        if not candidates or patch != candidates[-1][0]:
            candidates.append((patch, strides))
        if all(p >= n for p, n in zip(patch, image_shape, strict=True)):
            break  # covers the whole image
    covers = all(w >= n for w, n in zip(whole, image_shape, strict=True))
    if covers and tuple(candidates[-1][0]) != tuple(whole) and \
            np.prod(whole) > np.prod(candidates[-1][0]):
        candidates.append((whole, whole_strides))  # the whole image, between two sides

    def steps(patch, batch) -> float:
        return budget_px / (batch * float(np.prod(patch)))

    fitting = [c for c in candidates if steps(c[0], preferred_batch) >= min_steps]
    if not fitting:  # even the smallest patch is too slow: fewer patches per step
        patch, strides = candidates[0]
        batch = preferred_batch
        while batch > lo_b and steps(patch, batch) < min_steps:
            batch //= 2
        batch = max(batch, lo_b)
    else:
        patch, strides = fitting[-1]
        batch = preferred_batch
    if min_side and min(patch) < min(min_side, *image_shape):
        # large objects: grow the patch to hold them (fewer steps, at least min_context_steps)
        wide = [c for c in candidates if min(c[0]) >= min(min_side, *image_shape)]
        affordable = [c for c in candidates if min(c[0]) > min(patch)
                      and steps(c[0], batch) >= min_context_steps]
        if wide and steps(wide[0][0], batch) >= min_context_steps:
            patch, strides = wide[0]
        elif affordable:
            patch, strides = affordable[-1]
    if fitting and (patch, strides) == fitting[-1]:
        if fitting[-1] is candidates[-1]:
            # the whole image (or the largest patch) fits: spend the rest on the batch
            while batch * 2 <= hi_b and steps(patch, batch * 2) >= min_steps:
                batch *= 2
    return tuple(int(p) for p in patch), strides, int(batch), int(steps(patch, batch))


def plan_network(
    dims: int,
    in_channels: int,
    out_channels: int,
    strides: Sequence[Sequence[int]],
    architecture: str = "unet",
    base_channels: int = 16,
    max_channels: int = 256,
    deep_supervision: bool = False,
    res_units: int = 2,
    activation: str = "leakyrelu",
) -> dict[str, Any]:
    """JSON-friendly description of a network (kept in the model card).

    Parameters
    ----------
    dims : int
        2 or 3 spatial dimensions.
    in_channels, out_channels : int
        Image channels and classes (background included).
    strides : sequence of sequence of int
        Per-level strides from :func:`plan_patch_size`.
    architecture : str
        ``"unet"`` (MONAI ``UNet`` with residual units: strided convolutions, fast on CPU) or
        ``"dynunet"`` (MONAI ``DynUNet``, nnU-Net's layout: two convolutions at full resolution,
        optional deep supervision; best on a GPU).
    base_channels, max_channels : int
        Feature maps at the first level, doubled per level up to ``max_channels``.
    deep_supervision : bool
        DynUNet only.
    res_units : int
        Residual units per level of the ``"unet"`` architecture (0 = plain convolutions).
    activation : str
        ``"leakyrelu"`` (slope 0.01, nnU-Net's choice; ~10 % faster training steps on CPU than
        MONAI's default) or ``"prelu"`` (MONAI ``UNet``'s default, what model cards written
        before this option used). DynUNet always uses leaky ReLU.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; choose one of {ACTIVATIONS}.")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {architecture!r}; choose one of {ARCHITECTURES}.")
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims}.")
    strides = [[int(s) for s in level] for level in strides]
    if not strides:
        strides = [[2] * dims]
    if any(len(level) != dims for level in strides):
        raise ValueError(f"every stride entry needs {dims} values, got {strides}")
    filters = [min(base_channels * 2**i, max_channels) for i in range(len(strides) + 1)]
    return {
        "architecture": architecture,
        "dims": dims,
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "filters": filters,
        "strides": strides,
        "deep_supervision": bool(deep_supervision and architecture == "dynunet"),
        "res_units": int(res_units),
        "activation": activation,
    }


def build_network(spec: dict[str, Any]) -> torch.nn.Module:
    """Build the ``torch.nn.Module`` described by :func:`plan_network`."""
    from monai.networks.nets import DynUNet, UNet

    arch = spec["architecture"]
    dims, cin, cout = spec["dims"], spec["in_channels"], spec["out_channels"]
    filters, strides = list(spec["filters"]), [tuple(s) for s in spec["strides"]]
    if arch == "unet":
        return UNet(
            spatial_dims=dims,
            in_channels=cin,
            out_channels=cout,
            channels=filters,
            strides=strides,
            num_res_units=int(spec.get("res_units", 2)),  # cards written before: 2
            norm=("instance", {"affine": True}),
            act=_ACT_LAYERS[spec.get("activation", "prelu")],  # cards written before: PReLU
        )
    if arch == "dynunet":
        levels = len(strides)
        return DynUNet(
            spatial_dims=dims,
            in_channels=cin,
            out_channels=cout,
            kernel_size=[3] * (levels + 1),
            strides=[1, *strides],
            upsample_kernel_size=strides,
            filters=filters,
            norm_name=("INSTANCE", {"affine": True}),
            act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
            deep_supervision=spec.get("deep_supervision", False),
            deep_supr_num=max(1, min(2, levels - 1)),
            res_block=False,
        )
    raise ValueError(f"Unknown architecture {arch!r}; choose one of {ARCHITECTURES}.")


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_matching_weights(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor]
) -> tuple[list[str], list[str]]:
    """Copy every tensor whose name and shape match; leave the rest freshly initialised.

    Used for fine-tuning to a new label set: the output head (class count) differs, everything
    else transfers.

    Returns
    -------
    loaded, skipped : list of str
        Parameter names copied / left at their new initialisation.
    """
    own = model.state_dict()
    loaded, skipped = [], []
    for name, tensor in own.items():
        src = state_dict.get(name)
        if src is not None and tuple(src.shape) == tuple(tensor.shape):
            own[name] = src.to(tensor.dtype)
            loaded.append(name)
        else:
            skipped.append(name)
    model.load_state_dict(own)
    return loaded, skipped
