"""The napari-medseg command line, run as a real subprocess (exit codes, stderr, outputs)."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_medseg.dataset import Case, write_msd_dataset
from napari_medseg.io import Volume, read_nifti, write_nifti

TINY = ["--patch-size", "16", "16", "16", "--base-channels", "4", "--steps-per-epoch", "3",
        "--device", "cpu", "--threads", "1"]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=240, cwd=cwd)


def _case(i: int) -> Case:
    rng = np.random.default_rng(i)
    z, y, x = np.indices((16, 16, 16))
    c = rng.integers(5, 11, 3)
    r2 = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2
    labels = (r2 < 20).astype(np.uint8) + (r2 < 5)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (4.0, -2.0, 7.0)
    return Case(f"blob_{i:03d}", Volume((labels + rng.normal(0, 0.3, labels.shape)).astype(np.float32),
                                        (1.0, 1.0, 1.0), affine), labels)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "Task09_Blobs"
    return write_msd_dataset([_case(i) for i in range(4)], root,
                             {0: "background", 1: "outer", 2: "core"}, name="Blobs", modality="MRI")


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_model") / "model"
    proc = cli("train", dataset, "--out", out, "--max-epochs", "2", "--seed", "1",
               "--val-fraction", "0.25", *TINY)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_info_json_and_bad_path(dataset, tmp_path):
    proc = cli("info", dataset / "imagesTr" / "blob_000.nii.gz")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert {"shape", "spacing", "affine", "modality", "series"} <= set(info)
    assert info["shape"] == [16, 16, 16]
    bad = cli("info", tmp_path / "missing.nii.gz")
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "not found" in bad.stderr


def test_info_dicom_folder_lists_series(samples_dir):
    proc = cli("info", samples_dir / "mr_dicom_hippocrop")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert len(info["series"]) >= 2 and all("uid" in s for s in info["series"])


def test_train_writes_model_and_reports(trained):
    out, proc = trained
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["epochs"] == 2
    assert (out / "model.pt").is_file() and (out / "model_card.json").is_file()
    card = json.loads((out / "model_card.json").read_text())
    assert card["task"] == "Blobs" and [c["name"] for c in card["classes"]] == ["background", "outer", "core"]
    assert "train" in proc.stderr  # progress bar on stderr


def test_predict_file_and_folder_then_evaluate(trained, dataset, tmp_path):
    model, _ = trained
    out = tmp_path / "pred"
    proc = cli("predict", "--model", model, dataset / "imagesTr", "--out", out, "--tta", "--quiet")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"blob_{i:03d}.nii.gz" for i in range(4)]
    for name in names:
        src, dst = read_nifti(dataset / "imagesTr" / name), read_nifti(out / name)
        assert dst.shape == src.shape
        np.testing.assert_allclose(dst.affine, src.affine)
    single = tmp_path / "single"
    proc = cli("predict", "--model", model, dataset / "imagesTr" / "blob_001.nii.gz", "--out", single)
    assert proc.returncode == 0 and (single / "blob_001.nii.gz").is_file()
    csv_path = tmp_path / "metrics.csv"
    proc = cli("evaluate", out, dataset / "labelsTr", "--csv", csv_path)
    assert proc.returncode == 0, proc.stderr
    assert "outer" in proc.stdout and "core" in proc.stdout and "mean Dice" in proc.stdout
    assert csv_path.read_text().count("\n") == 1 + 4 * 2


def test_train_errors_exit_2_and_write_nothing(dataset, tmp_path):
    broken = tmp_path / "broken"
    write_msd_dataset([_case(i) for i in range(2)], broken, {0: "bg", 1: "a", 2: "b"})
    (broken / "dataset.json").unlink()
    proc = cli("train", broken, "--out", tmp_path / "m1", "--max-epochs", "1", *TINY)
    assert proc.returncode == 2 and "dataset.json" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "m1").exists()

    mismatch = tmp_path / "mismatch"
    write_msd_dataset([_case(i) for i in range(2)], mismatch, {0: "bg", 1: "a", 2: "b"})
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 12), np.uint8), np.eye(4)),
             str(mismatch / "labelsTr" / "blob_001.nii.gz"))
    proc = cli("train", mismatch, "--out", tmp_path / "m2", "--max-epochs", "1", *TINY)
    assert proc.returncode == 2 and "shape" in proc.stderr and "blob_001" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "m2").exists()


def test_predict_errors_exit_2_and_write_nothing(trained, dataset, tmp_path):
    model, _ = trained
    out = tmp_path / "out"
    two = tmp_path / "two_channel.nii.gz"
    write_nifti(Volume(np.zeros((16, 16, 16), np.float32)), two)
    card = json.loads((model / "model_card.json").read_text())
    other = tmp_path / "other_model"
    other.mkdir()
    (other / "model.pt").write_bytes((model / "model.pt").read_bytes())
    card["in_channels"] = 2
    (other / "model_card.json").write_text(json.dumps(card))
    proc = cli("predict", "--model", other, two, "--out", out)
    assert proc.returncode == 2 and "channel" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
    proc = cli("predict", "--model", tmp_path / "nope", two, "--out", out)
    assert proc.returncode == 2 and "not found" in proc.stderr and not out.exists()
    # fine-tuning a 3D model as a 2D one: a model from a different task
    proc = cli("train", dataset, "--out", tmp_path / "m3", "--init", model, "--dims", "2",
               "--max-epochs", "1", *TINY)
    assert proc.returncode == 2 and "different task" in proc.stderr
    assert not (tmp_path / "m3").exists()


def test_train_progress_is_the_share_of_the_run_its_budget_allows():
    from types import SimpleNamespace

    from napari_medseg.cli import _run_fraction

    # 20 s into a 40 s budget with a step cap of 50 000: half done, not 0.2 %
    step = SimpleNamespace(step=100, total=50_000, eta_s=20.0)
    assert _run_fraction(20.0, step) == pytest.approx(0.5)
    # without a time left, the steps say it
    assert _run_fraction(5.0, SimpleNamespace(step=25, total=100, eta_s=None)) == 0.25


def test_os_errors_name_the_place_the_user_gave_not_a_temporary_file():
    import errno

    from napari_medseg.cli import _one_line

    exc = PermissionError(errno.EACCES, "Permission denied", "out/.tmp-4f9a")
    assert _one_line(exc) == "out: permission denied"
    moved = IsADirectoryError(errno.EISDIR, "Is a directory", ".tmp-f5e1", None, "metrics")
    assert _one_line(moved) == "metrics: is a directory"
    assert _one_line(ValueError("plain\ntext")) == "plain text"


def test_export_to_a_suffix_of_the_other_format_is_refused(trained, tmp_path):
    from napari_medseg.export import export_model

    with pytest.raises(ValueError, match=r"suffix \.onnx names the other format; use \.pt"):
        export_model(trained, "torchscript", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_predict_chooses_a_series_or_a_channel_when_told(trained, tmp_path, samples_dir):
    import shutil

    import nibabel as nib

    from napari_medseg.io import read_volumes

    model, _ = trained
    mixed = tmp_path / "mixed"
    for sub in ("PGBM-002_HippoCrop", "PGBM-006_HippoCrop"):
        shutil.copytree(samples_dir / "mr_dicom_hippocrop" / sub, mixed / sub)
    proc = cli("predict", mixed, "--model", model, "--out", tmp_path / "o1", "--quiet")
    assert proc.returncode == 2 and "give --series UID" in proc.stderr, proc.stderr
    uid = read_volumes(mixed)[1].metadata["series_uid"]
    proc = cli("predict", mixed, "--model", model, "--out", tmp_path / "o2", "--series", uid,
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    # named after the folder and the series, so another series of it does not overwrite it
    assert (tmp_path / "o2" / f"mixed_{uid.replace('.', '')[-8:]}.nii.gz").is_file()
    four_d = tmp_path / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((16, 16, 16, 2)).astype(np.float32),
                             np.eye(4)), four_d)
    proc = cli("predict", four_d, "--model", model, "--out", tmp_path / "o3", "--quiet")
    assert proc.returncode == 2 and "choose one with --channel 0..1" in proc.stderr, proc.stderr
    proc = cli("predict", four_d, "--model", model, "--out", tmp_path / "o3", "--channel", "1",
               "--quiet")
    assert proc.returncode == 0 and (tmp_path / "o3" / "four_d.nii.gz").is_file(), proc.stderr


def test_small_option_and_path_mistakes_are_one_line(tmp_path, capsys):
    from napari_medseg.cli import main

    assert main(["suggest", str(tmp_path), "--top", "0"]) == 2
    assert "--top must be at least 1, not 0" in capsys.readouterr().err
    f = tmp_path / "a.nii.gz"
    f.write_bytes(b"x")
    assert main(["evaluate", str(f), str(tmp_path)]) == 2
    assert "a.nii.gz is a file; give two folders" in capsys.readouterr().err


def test_train_on_a_project_registers_the_model_as_its_next_version(tmp_path):
    from napari_medseg.dataset.project import Project

    project = Project.create(tmp_path / "proj", "Blobs", {1: "outer", 2: "inner"}, "MR")
    for i in range(2):
        case = _case(i)
        project.accept_case(case.image, case.labels)
    project.add_unlabelled(_case(2).image, "pool_1")
    proc = cli("train", project.root, "--out", tmp_path / "m1", "--max-epochs", "1", *TINY)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "registered in project Blobs as v001 (now its current model)" in proc.stderr
    again = Project.open(project.root)
    assert again.current_model == "v001"
    assert (again.model_dir("v001") / "model.pt").is_file()
    assert (tmp_path / "m1" / "model.pt").is_file()  # --out keeps its copy
    proc = cli("suggest", project.root)
    assert proc.returncode == 0 and "no model yet" not in proc.stderr


def test_train_does_not_silently_replace_a_model_of_another_task(dataset, tmp_path):
    import json

    from test_predict_folder_skips import make_colour_model

    other = make_colour_model(tmp_path / "spots")  # task "Spots", 2D colour
    before = (other / "model.pt").read_bytes()
    proc = cli("train", dataset, "--out", other, "--max-epochs", "1", *TINY)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "holds a model of another task (Spots, 2D)" in line and "--overwrite" in line
    assert (other / "model.pt").read_bytes() == before  # untouched
    proc = cli("train", dataset, "--out", other, "--max-epochs", "1", "--overwrite", *TINY)
    assert proc.returncode == 0, proc.stderr[-1500:]
    card = json.loads((other / "model_card.json").read_text())
    assert card["task"] != "Spots"
