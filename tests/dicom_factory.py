"""Synthetic DICOM files for tests (a small axial CT series with full UIDs)."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SHAPE = (8, 32, 32)


def write_ct_series(folder, shape=SHAPE, spacing=(2.5, 0.8, 0.7), reverse_files=True):
    """A small axial CT series; files named in reverse slice order to test sorting."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    for k in range(shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^P", "P1", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber = "", "CT", 3
        ds.InstanceNumber = k + 1
        ds.Manufacturer = "test"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -20.0, 30.0 + spacing[0] * k]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.Rows, ds.Columns = shape[1], shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelData = rng.integers(-100, 100, shape[1:], dtype=np.int16).tobytes()
        name = f"{shape[0] - k:03d}.dcm" if reverse_files else f"{k:03d}.dcm"
        ds.save_as(folder / name, enforce_file_format=True)
    return folder


def write_nifti_flipped(volume, labels: np.ndarray, path):
    """Write ``labels`` (on ``volume``'s grid) with nibabel, with NIfTI axes i and k reversed:
    the same voxels in the patient, stored as another tool might store them."""
    import nibabel as nib

    data = np.asarray(labels).T[::-1, :, ::-1]  # nibabel order (i, j, k), i and k flipped
    affine = volume.nifti_affine()
    for axis in (0, 2):
        affine[:3, 3] += affine[:3, axis] * (data.shape[axis] - 1)
        affine[:3, axis] *= -1
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return path
