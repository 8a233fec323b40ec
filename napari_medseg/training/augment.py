"""Cheap, vectorised data augmentation on whole batches of torch tensors.

Everything runs on the training device, per sample with its own random parameters: one
``grid_sample`` call covers rotation and scaling (only for the samples that drew them), mirror
flips (along every axis, or only the ones :func:`plan_mirror_axes` chose), and intensity changes (brightness, contrast, gamma, Gaussian noise).
2D pictures add (:meth:`AugmentationConfig.for_pictures`) per-channel colour jitter, Gaussian
blur and speckle-like multiplicative noise, and colour photographs rotate by any angle.
Labels follow the spatial transforms with nearest-neighbour sampling, so ``IGNORE_LABEL`` stays
exact; voxels pulled in from outside the patch become background.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from napari_medseg.events import IGNORE_LABEL


@dataclass
class AugmentationConfig:
    """Probabilities (per sample) and ranges of each augmentation.

    Angles in degrees; ``scale`` > 1 magnifies the image.
    """

    p_rotate: float = 0.2
    max_angle_deg: float = 30.0
    p_scale: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    p_flip: float = 0.5
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    p_noise: float = 0.1
    noise_std_max: float = 0.3
    flip_axes: tuple[int, ...] | None = None
    """Spatial axes (0-based, array order) that may be mirrored; None = every axis."""
    p_channel_jitter: float = 0.0
    """Per-channel colour jitter: each channel scaled and shifted on its own (colour casts)."""
    channel_scale_range: tuple[float, float] = (0.85, 1.15)
    channel_shift_max: float = 0.2
    """Largest per-channel shift, in units of the (normalised) channel's standard deviation."""
    p_blur: float = 0.0
    blur_sigma_range: tuple[float, float] = (0.5, 1.25)
    """Gaussian blur sigma (pixels), drawn per sample (out-of-focus or low-resolution cameras)."""
    pad_label: int | None = None
    """Label of pixels that rotation/scaling pulls in from outside the patch: None =
    background (0), or e.g. ``IGNORE_LABEL`` so they add nothing to the loss."""
    p_speckle: float = 0.0
    speckle_std_max: float = 0.25
    """Multiplicative noise ``1 + std * N(0, 1)`` on the intensity above the patch minimum
    (ultrasound speckle)."""

    @classmethod
    def preset(cls, name: str, n_cases: int | None = None) -> AugmentationConfig | None:
        """A named preset; None means no augmentation.

        ``"strong"`` (alias ``"default"``): rotation (±30°), scaling (0.7-1.4), flips and
        intensity changes. ``"medium"``: small rotations (±15°) and scaling (0.85-1.18), flips,
        mild intensity changes. ``"light"``: flips and mild intensity changes. ``"none"``.
        ``"auto"``: strong below :data:`AUTO_LIGHT_FROM_CASES` training cases, medium from
        there on (with many cases the data varies enough by itself for the large
        deformations, but without any the network starts to overfit half-way through a
        10-minute run: measured in BENCHMARKS.md at 5 and 180 cases).
        """
        name = resolve_preset(name, n_cases)
        if name == "none":
            return None
        if name == "light":
            return cls(p_rotate=0.0, p_scale=0.0, p_gamma=0.15, p_noise=0.05)
        if name == "medium":
            return cls(p_rotate=0.2, max_angle_deg=15.0, p_scale=0.2, scale_range=(0.85, 1.18),
                       p_gamma=0.15, p_noise=0.05)
        return cls()

    def for_pictures(self, colour: bool) -> AugmentationConfig:
        """This preset adapted to native 2D pictures (photographs, ultrasound, X-ray).

        Adds per-channel colour jitter (colour pictures), Gaussian blur and speckle noise; a
        colour photograph (fundus, dermoscopy, endoscopy: no "up" in the picture) rotates by
        any angle, more often. Presets without rotation keep none.
        """
        rotate = self.p_rotate > 0
        return replace(
            self,
            p_rotate=max(self.p_rotate, 0.5 if colour else 0.25) if rotate else 0.0,
            max_angle_deg=180.0 if colour and rotate else self.max_angle_deg,
            p_scale=max(self.p_scale, 0.25) if self.p_scale > 0 else 0.0,
            p_channel_jitter=0.3 if colour else 0.0,
            p_blur=0.1,
            p_speckle=0.0 if colour else 0.15,
            pad_label=IGNORE_LABEL,
        )


PRESETS = ("auto", "strong", "medium", "light", "none")
AUTO_LIGHT_FROM_CASES = 60
"""``augmentation="auto"`` switches from the strong to the medium preset at this many cases."""


def resolve_preset(name: str, n_cases: int | None = None) -> str:
    """The concrete preset (strong, medium, light, none) ``name`` means for ``n_cases`` cases."""
    if name == "auto":
        return "medium" if (n_cases or 0) >= AUTO_LIGHT_FROM_CASES else "strong"
    if name == "default":
        return "strong"
    if name not in PRESETS:
        raise ValueError(f"Unknown augmentation preset {name!r} ({', '.join(PRESETS)}).")
    return name


def _rotation_matrices(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(B, 3, 3)`` from angles ``(B, 3)`` (radians) about the three axes."""
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1)
    return rx.view(-1, 3, 3) @ ry.view(-1, 3, 3) @ rz.view(-1, 3, 3)


def _uniform(n: int, low: float, high: float, device, generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device, generator=generator)


def augment_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: AugmentationConfig | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly augment a batch.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, *spatial)`` float, 2 or 3 spatial axes (normalised intensities).
    labels : torch.Tensor
        ``(B, *spatial)`` integer.
    config : AugmentationConfig or None
        None = return the inputs unchanged.
    generator : torch.Generator, optional
        Random source on the inputs' device (for reproducibility).

    Returns
    -------
    images, labels : torch.Tensor
        Same shapes and dtypes.
    """
    if config is None:
        return images, labels
    b, dims, dev = images.shape[0], images.ndim - 2, images.device
    spatial = images.shape[2:]

    def draw(p: float) -> torch.Tensor:
        return torch.rand(b, device=dev, generator=generator) < p

    # --- rotation + scaling in one resampling ------------------------------------------
    rot, scl = draw(config.p_rotate), draw(config.p_scale)
    if bool((rot | scl).any()):
        max_a = math.radians(config.max_angle_deg)
        if dims == 3:
            angles = _uniform(b * 3, -max_a, max_a, dev, generator).view(b, 3)
            matrices = _rotation_matrices(angles * rot[:, None])
        else:
            a = _uniform(b, -max_a, max_a, dev, generator) * rot
            c, s = torch.cos(a), torch.sin(a)
            matrices = torch.stack([c, -s, s, c], 1).view(b, 2, 2)
        lo, hi = config.scale_range
        scale = torch.exp(_uniform(b, math.log(lo), math.log(hi), dev, generator))
        scale = torch.where(scl, scale, torch.ones_like(scale))
        # grid coordinates are (x, y[, z]) = reversed array axes, normalised to [-1, 1];
        # conjugate with the half-sizes so rotations are isotropic in voxel space
        half = torch.tensor([n / 2.0 for n in reversed(spatial)], device=dev, dtype=images.dtype)
        theta = (matrices / scale[:, None, None]) * (half[None, None, :] / half[None, :, None])
        theta = torch.cat([theta, torch.zeros(b, dims, 1, device=dev, dtype=images.dtype)], 2)
        changed = torch.nonzero(rot | scl).flatten()  # resample only the samples that drew
        grid = F.affine_grid(theta[changed], [len(changed), *images.shape[1:]],
                             align_corners=False)
        images = images.clone()
        images[changed] = F.grid_sample(images[changed], grid, mode="bilinear",
                                        padding_mode="zeros", align_corners=False)
        shift = 0 if config.pad_label is None else 1  # 0 after the shift = pulled in from outside
        lab = F.grid_sample((labels[changed, None] + shift).to(images.dtype), grid,
                            mode="nearest", padding_mode="zeros", align_corners=False)
        lab = lab[:, 0].round().to(labels.dtype)
        if shift:
            lab = torch.where(lab == 0, torch.full_like(lab, config.pad_label + 1), lab) - 1
        labels = labels.clone()
        labels[changed] = lab

    # --- mirror flips per axis -----------------------------------------------------------
    for axis in range(dims) if config.flip_axes is None else config.flip_axes:
        flip = draw(config.p_flip)
        if bool(flip.any()):
            idx = torch.nonzero(flip).flatten()
            images, labels = images.clone(), labels.clone()
            images[idx] = images[idx].flip(2 + axis)
            labels[idx] = labels[idx].flip(1 + axis)

    # --- intensities ---------------------------------------------------------------------
    shape = (b, *[1] * (dims + 1))
    bright = draw(config.p_brightness)
    if bool(bright.any()):
        factor = _uniform(b, *config.brightness_range, dev, generator)
        images = images * torch.where(bright, factor, torch.ones_like(factor)).view(shape)
    contrast = draw(config.p_contrast)
    if bool(contrast.any()):
        factor = torch.where(contrast, _uniform(b, *config.contrast_range, dev, generator),
                             torch.ones(b, device=dev)).view(shape)
        mean = images.mean(dim=tuple(range(1, images.ndim)), keepdim=True)
        lo = images.amin(dim=tuple(range(1, images.ndim)), keepdim=True)
        hi = images.amax(dim=tuple(range(1, images.ndim)), keepdim=True)
        images = torch.minimum(torch.maximum((images - mean) * factor + mean, lo), hi)
    gamma = draw(config.p_gamma)
    if bool(gamma.any()):
        g = torch.exp(_uniform(b, math.log(config.gamma_range[0]), math.log(config.gamma_range[1]),
                               dev, generator))
        g = torch.where(gamma, g, torch.ones_like(g)).view(shape)
        lo = images.amin(dim=tuple(range(1, images.ndim)), keepdim=True)
        hi = images.amax(dim=tuple(range(1, images.ndim)), keepdim=True)
        rng = (hi - lo).clamp_min(1e-6)
        images = ((images - lo) / rng).clamp(0, 1).pow(g) * rng + lo
    # (the picture-only augmentations draw nothing when off: 3D runs stay as they were)
    jitter = draw(config.p_channel_jitter) if config.p_channel_jitter > 0 else None
    if jitter is not None and bool(jitter.any()):
        c = images.shape[1]
        cshape = (b, c, *[1] * dims)
        on = jitter.view(b, 1).expand(b, c)
        scale = _uniform(b * c, *config.channel_scale_range, dev, generator).view(b, c)
        shift = _uniform(b * c, -config.channel_shift_max, config.channel_shift_max, dev,
                         generator).view(b, c)
        scale = torch.where(on, scale, torch.ones_like(scale)).view(cshape)
        shift = torch.where(on, shift, torch.zeros_like(shift)).view(cshape)
        images = images * scale + shift
    blur = draw(config.p_blur) if config.p_blur > 0 else None
    if blur is not None and bool(blur.any()):
        images = _gaussian_blur(images, blur, config.blur_sigma_range, generator)
    speckle = draw(config.p_speckle) if config.p_speckle > 0 else None
    if speckle is not None and bool(speckle.any()):
        idx = torch.nonzero(speckle).flatten()
        sub = images[idx]
        std = _uniform(len(idx), 0.0, config.speckle_std_max, dev, generator)
        lo = sub.amin(dim=tuple(range(1, sub.ndim)), keepdim=True)
        factor = 1.0 + torch.randn(sub.shape, device=dev, generator=generator) * std.view(
            -1, *[1] * (dims + 1))
        images = images.clone()
        images[idx] = lo + (sub - lo) * factor.clamp_min(0.0)
    noise = draw(config.p_noise)
    if bool(noise.any()):
        std = _uniform(b, 0.0, config.noise_std_max, dev, generator) * noise
        images = images + torch.randn(images.shape, device=dev, generator=generator) * std.view(shape)
    return images, labels


def _gaussian_blur(images: torch.Tensor, chosen: torch.Tensor, sigma_range: tuple[float, float],
                   generator: torch.Generator | None) -> torch.Tensor:
    """Blur the ``chosen`` samples of a ``(B, C, *spatial)`` batch, each with its own sigma.

    Separable: one depth-wise 1D convolution per spatial axis over the chosen samples only.
    """
    idx = torch.nonzero(chosen).flatten()
    sub = images[idx]
    n, c, dims = sub.shape[0], sub.shape[1], sub.ndim - 2
    sigma = _uniform(n, *sigma_range, images.device, generator)
    radius = max(1, int(math.ceil(3 * sigma_range[1])))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*C, K)
    out = sub.reshape(1, n * c, *sub.shape[2:])
    conv = F.conv2d if dims == 2 else F.conv3d
    for axis in range(dims):
        shape = [n * c, 1] + [1] * dims
        shape[2 + axis] = 2 * radius + 1
        pad = [0] * (2 * dims)
        pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = radius
        out = conv(F.pad(out, pad, mode="replicate"), kernel.view(shape), groups=n * c)
    images = images.clone()
    images[idx] = out.reshape(sub.shape)
    return images


MIRROR_MODES = ("auto", "all", "left-right", "none")
"""Values of ``TrainConfig.mirror`` (CLI ``--mirror``)."""

_SIDED_NAME = re.compile(r"(?i)(^|[^a-z])(left|right|l|r)([^a-z]|$)")


def left_right_axis(affine: np.ndarray, min_cosine: float = 0.8) -> int | None:
    """The array axis of a 3D volume that runs along the patient's left-right axis.

    ``affine`` maps array indices ``(a0, a1, a2)`` to RAS world coordinates (see
    :mod:`napari_medseg.io.volume`); world x is left-right. None when no axis points within
    ~37 degrees (``min_cosine``) of it (an oblique or unknown orientation).
    """
    a = np.asarray(affine, dtype=float)[:3, :3]
    norms = np.linalg.norm(a, axis=0)
    if not np.all(np.isfinite(a)) or np.any(norms == 0):
        return None
    cosines = np.abs(a[0] / norms)
    axis = int(np.argmax(cosines))
    return axis if cosines[axis] >= min_cosine else None


def plan_mirror_axes(
    mode: str,
    dims: int,
    affines: Sequence[np.ndarray | None],
    image_ndim: int,
    label_names: dict[int, str] | None = None,
    greyscale_pictures: bool = False,
) -> tuple[tuple[int, ...], str]:
    """Which network axes training mirrors (and mirror TTA averages over).

    Parameters
    ----------
    mode : str
        ``"all"``: every spatial axis (nnU-Net's default). ``"none"``. ``"left-right"``: only
        the axis that runs left-right in the images (read from their affines), the one mirror
        image anatomy allows: flipping along anterior-posterior or head-foot shows the model
        anatomy that never occurs (on the 180-case hippocampus benchmark it trains to a better
        model without test-time augmentation, BENCHMARKS.md). ``"auto"``: ``"left-right"`` for
        3D images whose orientation says where left-right is; no mirroring when a class name
        says left or right (a mirrored left structure would be labelled left while it looks
        right); for 2D images, only left-right (the columns) when they are greyscale
        pictures, every axis otherwise.
    dims : int
        The network's spatial dimensions (2 = slice-wise model on axes 1, 2 of 3D volumes).
    affines : sequence of (4, 4) arrays or None
        Training images' affines (array index -> RAS mm); None for an image whose file does
        not state the patient orientation (:attr:`~napari_medseg.io.Volume.has_orientation`).
    image_ndim : int
        2 or 3, the images' dimensionality.
    label_names : dict, optional
        ``{value: name}``.
    greyscale_pictures : bool
        Native 2D greyscale pictures (ultrasound, X-ray, mammography): their top is the top
        (the transducer, the apex of the lungs), so ``"auto"`` and ``"left-right"`` mirror only
        the columns; an upside-down B-mode image puts the acoustic shadows above the lesions
        and the deep dark tissue where the skin is (on synthetic ultrasound, mirroring both
        axes left false positives in the dark fat and deep layers after a short run). Colour
        photographs (fundus, dermoscopy, endoscopy) have no up and mirror along both axes.

    Returns
    -------
    axes, reason : tuple of int, str
        Network spatial axes (0-based) and a sentence for the training log.
    """
    if mode not in MIRROR_MODES:
        raise ValueError(f"Unknown mirror mode {mode!r} ({', '.join(MIRROR_MODES)}).")
    every = tuple(range(dims))
    if mode == "all":
        return every, "mirroring along every axis"
    if mode == "none":
        return (), "no mirroring"
    sided = sorted(n for v, n in (label_names or {}).items() if v != 0 and _SIDED_NAME.search(n))
    if mode == "auto" and sided:
        return (), f"no mirroring (class names say left/right: {', '.join(sided[:3])})"
    if image_ndim != 3 and greyscale_pictures and dims == 2:
        return (1,), ("mirroring only left-right (greyscale 2D pictures such as ultrasound or "
                      "X-ray keep their top at the top)")
    if image_ndim != 3:
        return every, "mirroring along every axis (2D images carry no patient orientation)"
    found = {None if a is None else left_right_axis(a) for a in affines}
    if len(found) != 1 or None in found:
        return every, ("mirroring along every axis (the images do not agree on, or do not say, "
                       "which axis is left-right)")
    lr = found.pop()
    if dims == 3:
        return (lr,), f"mirroring only left-right (array axis {lr})"
    if lr == 0:
        return (), "no mirroring (left-right runs across the slices)"
    return (lr - 1,), f"mirroring only left-right (slice axis {lr - 1})"
