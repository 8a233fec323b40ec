"""Full-size CT (issue 15): a 512 x 512 x 400 DICOM series read and segmented on the CPU.

Builds the series once (a synthetic chest CT phantom resampled to 0.8 x 0.8 x 1.5 mm, 400
axial slices written with pydicom as scanners store them: 12-bit unsigned values with
RescaleIntercept -1024) and measures, each in a fresh process for peak memory:

* reading it with napari-medseg (``read_dicom_series``) vs SimpleITK's ``ImageSeriesReader``
  on the same files (goal: at most 1.5x SimpleITK's time), uncompressed and - with
  ``--jpeg2000`` - the same slices JPEG 2000 lossless compressed (pydicom's encoder with
  pylibjpeg-openjpeg; decoded by pylibjpeg-openjpeg here, by GDCM in SimpleITK);
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
    # stored as most scanners do: unsigned values with RescaleIntercept -1024 (HU = value - 1024)
    big = np.clip(big + 1024, 0, 65535).astype(np.uint16)
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
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = big[shape[0] - 1 - k].tobytes()  # array axis 0 runs head to feet
        ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)
    return folder


def compress_series(src: Path, dst: Path) -> Path:
    """The same series with every slice JPEG 2000 lossless compressed."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.compress(JPEG2000Lossless)
        ds.save_as(dst / f.name, enforce_file_format=True)
    return dst


def _warm(folder: Path) -> None:
    """Read every file once so that both readers find them in the page cache (this VM's
    memory reclaimer drops cold file pages within seconds: without this, whichever reader ran
    second was measured on a warm cache and the first on the disk)."""
    for f in folder.iterdir():
        f.read_bytes()


def _read_both(folder: Path, repeats: int = 2) -> tuple[dict, dict]:
    """Each reader ``repeats`` times in fresh processes on a warm cache, alternating; the
    fastest run of each."""
    runs: dict[str, list[dict]] = {"ours": [], "sitk": []}
    for _ in range(repeats):
        for name in ("ours", "sitk"):
            _warm(folder)
            runs[name].append(_read_once(folder, name))
    best = {k: min(v, key=lambda r: r["read_s"]) for k, v in runs.items()}
    for k, v in runs.items():
        best[k]["all_s"] = [r["read_s"] for r in v]
    return best["ours"], best["sitk"]


def _read_once(folder: Path, reader: str) -> dict:
    if reader == "ours":
        return _child(f"""
        from napari_medseg.io import read_dicom_series
        t0 = time.perf_counter()
        v = read_dicom_series({str(folder)!r})
        out = {{"read_s": round(time.perf_counter() - t0, 2), "shape": list(v.shape)}}
    """)
    return _child(f"""
        import SimpleITK as sitk
        t0 = time.perf_counter()
        r = sitk.ImageSeriesReader()
        r.SetFileNames(r.GetGDCMSeriesFileNames({str(folder)!r}))
        img = r.Execute()
        out = {{"read_s": round(time.perf_counter() - t0, 2), "shape": list(img.GetSize())[::-1]}}
    """)


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
    ap.add_argument("--jpeg2000", action="store_true",
                    help="also read a JPEG 2000 lossless copy of the series")
    ap.add_argument("--no-predict", action="store_true", help="only the read timings")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="medseg-ct512-") as tmp:
        folder = args.keep or Path(tmp) / "ct"
        t0 = time.perf_counter()
        if not (folder / "0000.dcm").exists():
            build_series(folder)
        print(f"series written in {time.perf_counter() - t0:.0f} s: {folder}")
        ours, sitk = _read_both(folder)
        j2k = None
        if args.jpeg2000:
            t0 = time.perf_counter()
            compressed = folder.parent / (folder.name + "-j2k")
            if not (compressed / "0000.dcm").exists():
                compress_series(folder, compressed)
            print(f"JPEG 2000 copy written in {time.perf_counter() - t0:.0f} s: {compressed}")
            j2k = _read_both(compressed)
        predict = None if args.no_predict else _child(f"""
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
    ]
    if j2k is not None:
        jo, js = j2k
        rows += [
            f"| read the JPEG 2000 lossless copy, napari-medseg | {jo['read_s']} | "
            f"{jo['peak_rss_gb']} | {jo['read_s'] / max(js['read_s'], 1e-6):.2f}x SimpleITK |",
            f"| read the JPEG 2000 lossless copy, SimpleITK | {js['read_s']} | "
            f"{js['peak_rss_gb']} | |",
        ]
    if predict is not None:
        rows.append(
            f"| predict it (3D U-Net, 16 base channels, model spacing 1.5 mm: resampling "
            f"included) | {predict['predict_s']} | {predict['peak_rss_gb']} | read + predict "
            "in one process |")
    text = "\n".join(rows)
    print(text)
    if args.write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _report import write_section

        write_section("Full-size CT: a 512x512x400 DICOM series (issue 15)", (
            f"`python benchmarks/bench_fullsize_ct.py --write{' --jpeg2000' if args.jpeg2000 else ''}` "
            "(2-core CPU; 400 slices of 512x512 from the chest phantom resampled to 0.8 x 0.8 x "
            "1.5 mm, stored as 12-bit unsigned values with RescaleIntercept -1024 as scanners "
            "do; each read twice per reader in fresh processes on a warm page cache, "
            "alternating, the faster run shown; peak = resident set size of that process):\n\n"
            + text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
