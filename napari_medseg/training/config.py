"""Training configuration and result: small dataclasses, JSON-friendly."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """Options of :func:`~napari_medseg.training.train`; None means "choose from the data".

    Attributes
    ----------
    dims : int or None
        2 (slice-wise) or 3; default 3 for volumes with at least 8 slices.
    patch_size : tuple of int or None
        Training patch (voxels, array order); default from the median image shape. 2D models
        with a ``time_budget_s`` fit patch and batch to the budget and the device (a few
        steps are timed first): many steps of 128x128-256x256 patches of large pictures on a
        CPU, whole pictures when they are small or the device is fast, and patches that
        hold large objects (lesions) whole even at fewer steps
        (:func:`~napari_medseg.models.factory.plan_2d_patch`).
    target_spacing : tuple of float or None
        Resample to this spacing (mm); default the dataset's median spacing.
    batch_size : int or None
        Patches per step; default 4 for patches of at most 128 Ki voxels (e.g. 40x56x40 or
        256x256), else 2; 2D models under a time budget plan it with the patch (8-16 on a
        CPU, up to 32 on a GPU).
    max_epochs : int
    steps_per_epoch : int
        Optimisation steps between validations.
    time_budget_s : float or None
        Wall-clock limit (s) for the whole call; the learning-rate schedule follows it. On 2D
        pictures it also sizes the plan (see ``patch_size``) and validation (late in the run,
        at most ~10 % of the time).
    val_fraction : float
        Fraction of cases held out for validation (ignored when ``val_case_ids`` is given). With
        the default 0.2, a 2D picture dataset of thin structures (vessels) with fewer than 40
        cases holds out 1 in 20 instead (at least one): every photograph counts for training;
        other picture datasets hold out at most 25 pictures.
    val_case_ids : list of str or None
        Explicit validation cases.
    seed : int or None
    device : str
        ``"auto"`` (CUDA with AMP -> MPS -> CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
    loss : str
        ``"dice_ce"`` (default), ``"dice"``, ``"jaccard"``, ``"ce"``, ``"focal"``, ``"dice_focal"``.
    optimizer : str
        ``"adamw"`` or ``"sgd"`` (nesterov, momentum 0.99).
    learning_rate : float or None
        Peak learning rate; None = :func:`default_learning_rate` (AdamW 5e-3 from scratch,
        2e-3 when fine-tuning, 1e-3 on 2D pictures; SGD 1e-2).
    warmup_fraction : float
        Share of the run with linear learning-rate warm-up; then polynomial decay to zero.
    early_stopping_patience : int or None
        Stop after this many validations without improvement.
    foreground_fraction : float
        Share of patches centred on foreground.
    augmentation : str
        ``"auto"`` (strong for fewer than 60 training cases, medium from there on),
        ``"strong"`` (rotation ±30°, scaling 0.7-1.4, flips, intensity; alias ``"default"``),
        ``"medium"`` (rotation ±15°, scaling 0.85-1.18, flips, mild intensity), ``"light"``
        (flips, mild intensity) or ``"none"``.
    mirror : str
        Which axes mirror augmentation (and mirror TTA at prediction) uses: ``"auto"``
        (default: only left-right in 3D images with a known orientation, none when class names
        say left/right, only left-right for greyscale 2D pictures, every axis for colour
        ones), ``"left-right"``, ``"all"``, ``"none"``. See
        :func:`~napari_medseg.training.augment.plan_mirror_axes`.
    local_contrast : str
        Local contrast equalisation (CLAHE) of 2D pictures before normalisation: ``"auto"``
        (colour photographs with thin structures, e.g. retinal vessels), ``"on"``, ``"off"``.
        Recorded in the model card; prediction applies the same.
    architecture : str
        ``"unet"`` (fast on CPU) or ``"dynunet"`` (nnU-Net layout).
    base_channels, max_channels : int
    deep_supervision : bool
        DynUNet only.
    res_units : int
        Residual units per level of the ``"unet"`` architecture.
    activation : str
        ``"leakyrelu"`` (default) or ``"prelu"`` for the ``"unet"`` architecture.
    ema_decay : float or None
        Validate and save an exponential moving average of the weights with this decay (its
        ramp-up keeps short runs close to the current weights); None or 0 = the weights
        themselves. The average is smoother than the last weights while the learning rate is
        still high (measured in BENCHMARKS.md).
    max_patch_voxels : int
        Upper bound on the automatic patch size.
    early_validation_every : int
        Until ``dense_validation_from`` of the run (by steps or time budget) validate only every
        this many epochs (the best model almost always comes late, with the decayed learning
        rate, and every validation takes time from training); the first epoch and every epoch
        after that point are validated.
    dense_validation_from : float
        Share of the run after which every epoch is validated.
    val_overlap : float
        Sliding-window overlap during validation.
    label_names : dict or None
        ``{value: name}`` for in-memory cases without a dataset.json.
    modality : str or None
        Modality of in-memory cases (``"CT"`` selects CT normalisation).
    task_name : str or None
        Task name for in-memory cases (recorded in the model card).
    amp : bool
        Mixed precision: float16 on CUDA, bfloat16 on CPUs with native bfloat16 (AVX512-BF16 /
        AMX; ``NAPARI_MEDSEG_CPU_BF16=0`` turns it off there). Weights stay float32.
    """

    dims: int | None = None
    patch_size: tuple[int, ...] | None = None
    target_spacing: tuple[float, ...] | None = None
    batch_size: int | None = None
    max_epochs: int = 1000
    steps_per_epoch: int = 50
    time_budget_s: float | None = None
    val_fraction: float = 0.2
    val_case_ids: list[str] | None = None
    seed: int | None = 0
    device: str = "auto"
    loss: str = "dice_ce"
    optimizer: str = "adamw"
    learning_rate: float | None = None
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.03
    early_stopping_patience: int | None = None
    foreground_fraction: float = 0.33
    augmentation: str = "auto"
    mirror: str = "auto"
    local_contrast: str = "auto"
    architecture: str = "unet"
    base_channels: int = 16
    max_channels: int = 256
    deep_supervision: bool = False
    res_units: int = 2
    activation: str = "leakyrelu"
    ema_decay: float | None = 0.999
    max_patch_voxels: int = 128**3
    early_validation_every: int = 3
    dense_validation_from: float = 0.75
    val_overlap: float = 0.25
    label_names: dict[int, str] | None = None
    modality: str | None = None
    task_name: str | None = None
    amp: bool = True
    guidance: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.dims not in (None, 2, 3):
            raise ValueError(f"dims must be 2 or 3, got {self.dims}.")
        if (self.batch_size is not None and self.batch_size < 1) or self.max_epochs < 1 \
                or self.steps_per_epoch < 1:
            raise ValueError("batch size, epochs and steps per epoch must be at least 1.")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError("The time budget must be positive.")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"Validation fraction must be in [0, 1), got {self.val_fraction}.")
        from napari_medseg.training.augment import resolve_preset

        resolve_preset(self.augmentation)  # raises on an unknown preset name
        from napari_medseg.training.augment import MIRROR_MODES

        if self.local_contrast not in ("auto", "on", "off"):
            raise ValueError(f"Unknown local_contrast {self.local_contrast!r} (auto, on, off).")
        if self.mirror not in MIRROR_MODES:
            raise ValueError(f"Unknown mirror mode {self.mirror!r} ({', '.join(MIRROR_MODES)}).")
        from napari_medseg.models.factory import ACTIVATIONS

        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {self.activation!r} "
                             f"({', '.join(ACTIVATIONS)}).")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {self.ema_decay}.")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"Unknown optimizer {self.optimizer!r} (adamw, sgd).")
        if self.base_channels < 2 or self.max_channels < self.base_channels:
            raise ValueError(f"base_channels must be at least 2 and at most max_channels "
                             f"({self.max_channels}), got {self.base_channels}.")
        if self.patch_size is not None:
            self.patch_size = tuple(int(p) for p in self.patch_size)
            if len(self.patch_size) not in (2, 3) or min(self.patch_size) < 4 \
                    or math.prod(self.patch_size) > 2**24:
                raise ValueError(f"patch_size {self.patch_size}: 2 or 3 sides of at least 4 "
                                 "voxels, at most 2^24 voxels in all.")
        if self.target_spacing is not None:
            self.target_spacing = tuple(float(s) for s in self.target_spacing)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["label_names"] is not None:
            d["label_names"] = {str(k): v for k, v in d["label_names"].items()}
        return d


#: Peak AdamW learning rates: volumes (and 2D models of volume slices) from scratch and when
#: fine-tuning, and native 2D pictures either way (measured in BENCHMARKS.md).
ADAMW_LR = 5e-3
ADAMW_LR_FINE_TUNING = 2e-3
ADAMW_LR_PICTURES = 1e-3
SGD_LR = 1e-2


def default_learning_rate(optimizer: str, pictures: bool = False,
                          fine_tuning: bool = False) -> float:
    """Peak learning rate when :attr:`TrainConfig.learning_rate` is None.

    AdamW: 5e-3 from scratch (hippocampus MRI, 3D: better than 2e-3 at a short budget), 2e-3
    when fine-tuning; native 2D pictures (photographs, ultrasound, X-ray) 1e-3 either way,
    as in MONAI's 2D tutorials: with their large patches and a batch Dice, 5e-3 kept a 2D
    U-Net noisy for a whole 5-minute run (synthetic ultrasound Dice 0.80-0.86 with false
    positives in dark tissue, 0.96 at 1e-3). SGD (nesterov): 1e-2.
    """
    if optimizer == "sgd":
        return SGD_LR
    if pictures:
        return ADAMW_LR_PICTURES
    return ADAMW_LR_FINE_TUNING if fine_tuning else ADAMW_LR


@dataclass
class TrainResult:
    """What :func:`~napari_medseg.training.train` returns (also in the final event's ``result``).

    Attributes
    ----------
    status : str
        ``"finished"`` or ``"cancelled"``.
    model_dir : str or None
        Folder holding the best model (None if nothing was saved yet).
    best_metric : float or None
        Best validation mean Dice.
    best_epoch : int or None
    epochs, steps : int
        Completed epochs and optimisation steps.
    elapsed_s : float
    stop_reason : str
        ``"max_epochs"``, ``"time_budget"``, ``"early_stopping"`` or ``"cancelled"``.
    history : list of dict
        Per-epoch loss and validation metrics.
    """

    status: str
    model_dir: str | None
    best_metric: float | None
    best_epoch: int | None
    epochs: int
    steps: int
    elapsed_s: float
    stop_reason: str
    history: list[dict[str, Any]] = field(default_factory=list)
