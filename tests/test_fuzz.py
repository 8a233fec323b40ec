"""Every hostile input ends in success or exactly one stderr line with exit 2 (issue 14)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("medseg_fuzz", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["medseg_fuzz"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_byte_mutations_of_real_files_are_clean(fuzz):
    tallies = fuzz.run(40, seed=7, predict=6)
    for door, tally in tallies.items():
        assert tally.tried > 0, door
        assert tally.failures == [], f"{door}: {tally.failures[:5]}"
    assert tallies["info"].success > 0  # some mutations stay readable: the harness reads files


def _one_line_exit_2(fuzz, argv):
    rc, lines = fuzz._cli(argv)
    assert rc == 2 and len(lines) == 1, (rc, lines)
    return lines[0]


def test_a_tiny_file_claiming_a_huge_volume(fuzz, tmp_path):
    """480 bytes that claim 2000x2000x600 float32 voxels: refused from the header."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((2000, 2000, 600))
    hdr.set_data_dtype(np.float32)
    path = tmp_path / "claim.nii"
    path.write_bytes(hdr.binaryblock + b"\0" * (480 - len(hdr.binaryblock)))
    model = fuzz._tiny_model(tmp_path)
    line = _one_line_exit_2(fuzz, ["predict", "--model", str(model), str(path),
                                   "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert "claim.nii" in line and any(w in line for w in ("truncated", "memory", "voxels"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("kind", ["fifo", "devzero", "empty", "folder_of_junk"])
def test_special_files(fuzz, tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "pipe.nii"
        os.mkfifo(path)
    elif kind == "devzero":
        path = Path("/dev/zero")
    elif kind == "empty":
        path = tmp_path / "empty.dcm"
        path.write_bytes(b"")
    else:
        path = tmp_path / "junk"
        path.mkdir()
        (path / "a.dcm").write_bytes(b"\0" * 132)
    _one_line_exit_2(fuzz, ["info", str(path)])


def test_a_240_character_input_name_and_stale_staging_folders(fuzz, tmp_path):
    import time

    from napari_medseg.io import Volume, write_nifti

    model = fuzz._tiny_model(tmp_path)
    name = "c" * 240
    src = write_nifti(Volume(np.random.default_rng(0).normal(size=(16, 16, 16))
                             .astype(np.float32), name="x"), tmp_path / f"{name}.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".tmp-deadbeef"
    stale.mkdir()
    (stale / "half.nii.gz").write_bytes(b"x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    rc, lines = fuzz._cli(["predict", "--model", str(model), str(src), "--out", str(out),
                           "--device", "cpu", "--quiet"])
    assert rc == 0, lines
    assert (out / f"{name}.nii.gz").is_file()
    assert not stale.exists()  # a killed run's staging folder is cleaned up
