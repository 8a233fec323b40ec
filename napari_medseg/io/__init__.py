"""Medical image input/output: NIfTI, DICOM and pictures into :class:`Volume`, labels back.

Pure core: numpy, nibabel, pydicom (and scipy for tilted CT), Pillow and tifffile (PNG, JPEG,
TIFF, BMP, GIF; 2D labels back to PNG/TIFF); never napari or Qt.
Every problem with an input raises :class:`MedsegIOError` (a ``ValueError``) with a message for
the user; notable-but-readable oddities become :class:`MedsegIOWarning` and are also kept in
``volume.metadata["warnings"]``.
"""

from napari_medseg.io.dicom import (
    DicomSeriesInfo,
    folder_has_dicom,
    has_dicom_preamble,
    is_dicom_path,
    list_dicom_series,
    read_dicom,
    read_dicom_series,
)
from napari_medseg.io.errors import (
    DICOM_CODECS_EXTRA,
    MedsegIOError,
    MedsegIOWarning,
    MissingDecoderError,
    MultipleChannelsError,
    MultipleSeriesError,
)
from napari_medseg.io.info import describe_path, read_volume, read_volumes, sample_data_dir
from napari_medseg.io.nifti import (
    is_nifti_path,
    label_dtype,
    looks_like_label_map,
    read_nifti,
    save_labels,
    write_nifti,
)
from napari_medseg.io.picture import (
    PICTURE_SUFFIXES,
    describe_picture,
    is_picture_path,
    read_picture,
    write_picture,
    write_probability_png,
)
from napari_medseg.io.volume import Volume, affine_from_nifti, affine_to_nifti
from napari_medseg.io.windowing import (
    CT_WINDOW_PRESETS,
    auto_contrast_limits,
    default_contrast_limits,
    preset_contrast_limits,
    window_to_contrast_limits,
)

__all__ = [
    "CT_WINDOW_PRESETS",
    "DICOM_CODECS_EXTRA",
    "DicomSeriesInfo",
    "MedsegIOError",
    "MedsegIOWarning",
    "MissingDecoderError",
    "MultipleChannelsError",
    "MultipleSeriesError",
    "PICTURE_SUFFIXES",
    "Volume",
    "affine_from_nifti",
    "affine_to_nifti",
    "auto_contrast_limits",
    "default_contrast_limits",
    "describe_path",
    "describe_picture",
    "folder_has_dicom",
    "has_dicom_preamble",
    "is_dicom_path",
    "is_nifti_path",
    "is_picture_path",
    "label_dtype",
    "looks_like_label_map",
    "list_dicom_series",
    "preset_contrast_limits",
    "read_dicom",
    "read_dicom_series",
    "read_nifti",
    "read_picture",
    "read_volume",
    "read_volumes",
    "sample_data_dir",
    "save_labels",
    "window_to_contrast_limits",
    "write_nifti",
    "write_picture",
    "write_probability_png",
]
