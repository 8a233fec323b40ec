"""Training: the ``train()`` event generator, losses, patch sampling, augmentation, DDP."""

from napari_medseg.training.augment import AugmentationConfig, augment_batch
from napari_medseg.training.config import TrainConfig, TrainResult
from napari_medseg.training.ddp import DistributedContext
from napari_medseg.training.loop import train, validate
from napari_medseg.training.losses import LOSSES, SegmentationLoss
from napari_medseg.training.sampling import PatchSampler

__all__ = [
    "LOSSES",
    "AugmentationConfig",
    "DistributedContext",
    "PatchSampler",
    "SegmentationLoss",
    "TrainConfig",
    "TrainResult",
    "augment_batch",
    "train",
    "validate",
]
