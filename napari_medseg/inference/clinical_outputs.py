"""Prediction outputs in the formats clinics exchange: NRRD, MetaImage, DICOM SEG, RTSTRUCT.

Registered with :func:`~napari_medseg.inference.outputs.register_output_format` on import
(:data:`~napari_medseg.inference.outputs.FORMAT_MODULES` lists this module), so
``napari-medseg predict --format nrrd|mha|dicom-seg|rtstruct`` and
:func:`~napari_medseg.inference.outputs.write_prediction` know them. DICOM SEG and RTSTRUCT
reference the input series, so they need a DICOM input (a one-line error otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari_medseg.inference.outputs import OutputFormat, register_output_format
from napari_medseg.io.volume import Volume

if TYPE_CHECKING:  # pragma: no cover
    from napari_medseg.inference.predict import PredictionResult


def _classes(result: PredictionResult) -> tuple[dict[int, str], dict[int, list[int]]]:
    card = result.card
    names = {int(k): str(v) for k, v in card.label_names.items()}
    colours = {int(c["value"]): [int(round(x)) for x in c.get("color", (128, 128, 128))]
               for c in card.classes}
    return names, colours


def _write_itk(result: PredictionResult, reference: Volume, path: Path) -> None:
    from napari_medseg.io.itk_formats import save_labels_itk

    names, colours = _classes(result)
    save_labels_itk(result.labels, reference, path, names, colours)


def _write_seg(result: PredictionResult, reference: Volume, path: Path) -> None:
    from napari_medseg.io.dicom_seg import write_dicom_seg

    names, colours = _classes(result)
    write_dicom_seg(result.labels, reference, path, names, colours, algorithm_type="AUTOMATIC",
                    algorithm_name=f"napari-medseg {result.card.task} v{result.card.version}")


def _write_rtstruct(result: PredictionResult, reference: Volume, path: Path) -> None:
    from napari_medseg.io.dicom_seg import write_rtstruct

    names, colours = _classes(result)
    write_rtstruct(result.labels, reference, path, names, colours)


for _fmt in (
    OutputFormat("nrrd", ".nrrd", _write_itk, None, (2, 3),
                 "NRRD label map with 3D Slicer segment names"),
    OutputFormat("mha", ".mha", _write_itk, None, (2, 3), "MetaImage label map"),
    OutputFormat("dicom-seg", ".seg.dcm", _write_seg, None, (3,),
                 "DICOM SEG referencing the input series (DICOM input)"),
    OutputFormat("rtstruct", ".rtstruct.dcm", _write_rtstruct, None, (3,),
                 "RT Structure Set on the input series (DICOM input)"),
):
    register_output_format(_fmt, replace=True)
