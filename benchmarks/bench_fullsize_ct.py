"""Full-size CT (issue 15): a 512 x 512 x 400 DICOM series read and segmented on the CPU.

Builds the series once (a synthetic chest CT phantom resampled to 0.8 x 0.8 x 1.5 mm, 400
axial int16 slices written with pydicom) and measures, each in a fresh process for peak memory:

* reading it with napari-medseg (``read_dicom_series``) vs SimpleITK's ``ImageSeriesReader``
  on the same files (goal: at most 1.5x SimpleITK's time);
* predicting it with a 3D model whose spacing is 1.5 mm (so resampling is included): time and
  peak memory (resident set size).

    python benchmarks/bench_fullsize_ct.py --write
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_series(folder: Path, shape=(400, 512, 512), spacing=(1.5, 0.8, 0.8)) -> Path:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    from napari_medseg.phantom import make_chest_ct_phantom
    from napari_medseg.preprocess import resample_to_shape

    image, _ = make_chest_ct_phantom(seed=0)
    big = np.asarray(resample_to_shape(image.array.astype(np.float32), shape, order=1))
    big = big.astype(np.int16)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.InstanceNumber, ds.SeriesNumber = "CT", k + 1, 1
        ds.PatientName, ds.PatientID = "Phantom^Chest", "PHANTOM"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-204.8, -204.8, spacing[0] * k]
        ds.PixelSpacing = [spacing[1], spacing[2]]
        ds.SliceThickness = spacing[0]
        ds.Rows, ds.Columns = shape[1], shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = big[shape[0] - 1 - k].tobytes()  # array axis 0 runs head to feet
        ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)
    return folder


def _child(code: str) -> dict:
    wrapper = textwrap.dedent("""
        import json, resource, time
        t0 = time.perf_counter()
    """) + textwrap.dedent(code) + textwrap.dedent("""
        out["seconds"] = round(time.perf_counter() - t0, 2)
        out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="build the series here and keep it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="medseg-ct512-") as tmp:
        folder = args.keep or Path(tmp) / "ct"
        t0 = time.perf_counter()
        if not (folder / "0000.dcm").exists():
            build_series(folder)
        print(f"series written in {time.perf_counter() - t0:.0f} s: {folder}")
        ours = _child(f"""
            from napari_medseg.io import read_dicom_series
            t0 = time.perf_counter()
            v = read_dicom_series({str(folder)!r})
            out = {{"read_s": round(time.perf_counter() - t0, 2), "shape": list(v.shape)}}
        """)
        sitk = _child(f"""
            import SimpleITK as sitk
            t0 = time.perf_counter()
            r = sitk.ImageSeriesReader()
            r.SetFileNames(r.GetGDCMSeriesFileNames({str(folder)!r}))
            img = r.Execute()
            out = {{"read_s": round(time.perf_counter() - t0, 2), "shape": list(img.GetSize())[::-1]}}
        """)
        predict = _child(f"""
            import torch
            torch.set_num_threads(2)
            from napari_medseg.io import read_dicom_series
            from napari_medseg.inference import predict_volume
            from napari_medseg.models import ModelCard, build_network, plan_network, plan_patch_size
            _, strides = plan_patch_size((64, 128, 128))
            spec = plan_network(3, 1, 2, strides, base_channels=16, max_channels=256)
            card = ModelCard(task="Lungs", classes=[{{"value": 0, "name": "background", "color": [0, 0, 0]}},
                             {{"value": 1, "name": "lung", "color": [230, 25, 75]}}], dims=3,
                             in_channels=1, patch_size=[64, 128, 128], network=spec,
                             normalisation=[{{"scheme": "ct", "clip_low": -1000.0, "clip_high": 400.0,
                                              "mean": -500.0, "std": 400.0}}],
                             spacing=[1.5, 1.5, 1.5], modality="CT")
            v = read_dicom_series({str(folder)!r})
            t0 = time.perf_counter()
            res = predict_volume((build_network(spec).eval(), card), v, device="cpu",
                                 return_probabilities=False)
            out = {{"predict_s": round(time.perf_counter() - t0, 2), "shape": list(res.labels.shape)}}
        """)
    ratio = ours["read_s"] / max(sitk["read_s"], 1e-6)
    rows = [
        "| step | time (s) | peak memory (GB) | note |",
        "|---|---:|---:|---|",
        f"| read 512x512x400 DICOM series, napari-medseg | {ours['read_s']} | {ours['peak_rss_gb']} | "
        f"{ratio:.2f}x SimpleITK (goal <= 1.5x) |",
        f"| read the same files, SimpleITK ImageSeriesReader | {sitk['read_s']} | "
        f"{sitk['peak_rss_gb']} | |",
        f"| predict it (3D U-Net, 16 base channels, model spacing 1.5 mm: resampling included) | "
        f"{predict['predict_s']} | {predict['peak_rss_gb']} | read + predict in one process |",
    ]
    text = "\n".join(rows)
    print(text)
    if args.write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _report import write_section

        write_section("Full-size CT: a 512x512x400 DICOM series (issue 15)", (
            "`python benchmarks/bench_fullsize_ct.py --write` (2-core CPU, uncompressed int16 "
            "slices from the chest phantom resampled to 0.8 x 0.8 x 1.5 mm; each step in a fresh "
            "process, peak = resident set size):\n\n" + text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
