"""Inference: sliding-window prediction with Gaussian blending and mirror TTA."""

from napari_medseg.inference.predict import (
    PredictionResult,
    keep_largest_component,
    list_input_images,
    predict,
    predict_folder,
    predict_volume,
)
from napari_medseg.models.card import load_model
from napari_medseg.models.engine import resolve_device, sliding_window_probabilities

__all__ = [
    "PredictionResult",
    "keep_largest_component",
    "list_input_images",
    "load_model",
    "predict",
    "predict_folder",
    "predict_volume",
    "resolve_device",
    "sliding_window_probabilities",
]
