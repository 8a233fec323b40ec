"""Networks (MONAI UNet / DynUNet, 2D and 3D) and trustworthy model directories."""

from napari_medseg.models.card import (
    CARD_FILE,
    WEIGHTS_FILE,
    ModelCard,
    ModelLoadError,
    check_card_compatible,
    file_sha256,
    load_model,
    read_card,
    save_model,
    write_card,
)
from napari_medseg.models.factory import (
    build_network,
    count_parameters,
    load_matching_weights,
    plan_network,
    plan_patch_size,
)

__all__ = [
    "CARD_FILE",
    "WEIGHTS_FILE",
    "ModelCard",
    "ModelLoadError",
    "build_network",
    "check_card_compatible",
    "count_parameters",
    "file_sha256",
    "load_matching_weights",
    "load_model",
    "plan_network",
    "plan_patch_size",
    "read_card",
    "save_model",
    "write_card",
]
