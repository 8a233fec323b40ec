"""Datasets for training: the MSD / nnU-Net folder layout and in-memory (sparse) cases."""

from napari_medseg.dataset.msd import (
    Case,
    Dataset,
    DatasetError,
    label_colours,
    label_names_from_json,
    list_msd_cases,
    load_msd_dataset,
    read_dataset_json,
    read_image,
    read_label_image,
    read_splits,
    split_case_ids,
    write_labels,
    write_msd_dataset,
)

__all__ = [
    "Case",
    "Dataset",
    "DatasetError",
    "label_colours",
    "label_names_from_json",
    "list_msd_cases",
    "load_msd_dataset",
    "read_dataset_json",
    "read_image",
    "read_label_image",
    "read_splits",
    "split_case_ids",
    "write_labels",
    "write_msd_dataset",
]
