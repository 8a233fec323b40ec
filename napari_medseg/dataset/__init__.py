"""Datasets for training: the MSD / nnU-Net folder layout (NIfTI, or PNG/JPEG/TIFF pictures as
nnU-Net v2's natural-image layout, with optional ``masksTr/`` field-of-view masks) and in-memory
(sparse) cases. :mod:`napari_medseg.dataset.fundus` adds fundus field-of-view masks and
CHASE_DB1."""

from napari_medseg.dataset.fundus import chase_db1_dataset, fundus_fov_mask
from napari_medseg.dataset.msd import (
    FILE_ENDINGS,
    PICTURE_SUFFIXES,
    ROI_FOLDER,
    Case,
    Dataset,
    DatasetError,
    dataset_file_ending,
    label_colours,
    label_names_from_json,
    list_msd_cases,
    load_msd_dataset,
    picture_label_values,
    read_dataset_json,
    read_image,
    read_label_image,
    read_roi_mask,
    read_splits,
    split_case_ids,
    write_labels,
    write_msd_dataset,
)

__all__ = [
    "FILE_ENDINGS",
    "PICTURE_SUFFIXES",
    "ROI_FOLDER",
    "Case",
    "Dataset",
    "DatasetError",
    "chase_db1_dataset",
    "dataset_file_ending",
    "fundus_fov_mask",
    "label_colours",
    "label_names_from_json",
    "list_msd_cases",
    "load_msd_dataset",
    "picture_label_values",
    "read_dataset_json",
    "read_image",
    "read_label_image",
    "read_roi_mask",
    "read_splits",
    "split_case_ids",
    "write_labels",
    "write_msd_dataset",
]
