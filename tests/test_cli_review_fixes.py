"""CLI defects found by a review, each pinned by a test: DICOM beside NIfTI in a predict folder,
per-series output names and stale probability maps, ``info`` on truncated / NaN files, the
message for an ``--out`` that is a file, the specificity column of ``evaluate``, pydicom's
character-set warnings, the mode of an exported bundle folder and the ``--overlap`` help."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from dicom_factory import SHAPE, write_ct_series

from napari_medseg.cli import _one_line, _user_warning, main
from napari_medseg.inference import list_input_images, predict_folder
from napari_medseg.inference.predict import series_tag
from napari_medseg.io import Volume, read_nifti, read_volumes, write_nifti
from napari_medseg.models import ModelCard, build_network, plan_network, save_model

CPU = ["--device", "cpu", "--threads", "1", "--quiet"]


def cli(*args):
    """The command as a user runs it (a fresh process: warnings and exit status as they are)."""
    return subprocess.run([sys.executable, "-m", "napari_medseg.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=240)


def make_grey_model(folder: Path) -> Path:
    """A tiny untrained 3D model of one greyscale channel and 2 classes."""
    torch.manual_seed(0)
    spec = plan_network(3, 1, 2, [(2, 2, 2), (2, 2, 2)], base_channels=4, max_channels=8)
    card = ModelCard(task="Blobs", classes=[{"value": v, "name": f"c{v}", "color": [0, 0, 0]}
                                            for v in range(2)],
                     dims=3, in_channels=1, patch_size=[16, 16, 16], network=spec,
                     normalisation=[{"scheme": "zscore"}])
    return save_model(build_network(spec), card, folder)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_grey_model(tmp_path_factory.mktemp("models") / "grey")


def _nifti(path: Path, shape=SHAPE) -> Path:
    rng = np.random.default_rng(0)
    write_nifti(Volume(rng.normal(0, 1, shape).astype(np.float32)), path)
    return path


def _lines(text: str) -> list[str]:
    return [ln for ln in text.strip().splitlines() if ln.strip()]


# 1. a folder of NIfTI files and a DICOM series -------------------------------------------------


@pytest.mark.parametrize("suffix", [".dcm", ""])
def test_dicom_slices_beside_nifti_files_are_predicted_as_one_more_image(model, tmp_path,
                                                                          capsys, suffix):
    folder = tmp_path / "scans"
    write_ct_series(folder)
    if not suffix:  # slices without a suffix, as many PACS exports name them
        for f in folder.glob("*.dcm"):
            f.rename(f.with_suffix(""))
    _nifti(folder / "a.nii.gz")
    assert list_input_images(folder) == [folder / "a.nii.gz", folder]
    out = tmp_path / "out"
    code = main(["predict", "--model", str(model), str(folder), "--out", str(out), *CPU])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.splitlines() == [str(out / "a.nii.gz"), str(out / "scans.nii.gz")]
    assert read_nifti(out / "scans.nii.gz").shape == SHAPE  # the series, on its own grid
    assert "Traceback" not in captured.err


def test_a_folder_with_several_series_beside_nifti_says_which_option_chooses(model, tmp_path,
                                                                            capsys):
    folder = tmp_path / "scans"
    write_ct_series(folder / "s1")
    write_ct_series(folder / "s2")
    for f in (folder / "s1").iterdir():  # DICOM slices at the top of the folder too
        shutil.move(f, folder / f"s1_{f.name}")
    (folder / "s1").rmdir()
    _nifti(folder / "a.nii.gz")
    out = tmp_path / "out"
    code = main(["predict", "--model", str(model), str(folder), "--out", str(out), *CPU])
    captured = capsys.readouterr()
    assert code == 1  # partly done, as for any skipped input
    assert captured.out.splitlines() == [str(out / "a.nii.gz")]
    err = _lines(captured.err)
    assert err[0].startswith("warning: skipped scans/ (DICOM): ")
    assert "2 image series" in err[0] and err[0].endswith(
        "give --series UID (`napari-medseg info FOLDER` lists them).")
    assert err[1] == "warning: 1 of 2 image(s) skipped, the others written" and len(err) == 2


# 2. one output per series; no stale probability maps ----------------------------------------


def test_each_series_of_a_folder_gets_its_own_output_and_old_maps_go(model, tmp_path, capsys):
    folder = tmp_path / "study"
    write_ct_series(folder / "s1")
    write_ct_series(folder / "s2")
    first, second = (v.metadata["series_uid"] for v in read_volumes(folder))
    out = tmp_path / "out"

    def predict(uid: str, *extra: str) -> list[str]:
        code = main(["predict", "--model", str(model), str(folder), "--out", str(out),
                     "--series", uid, *extra, *CPU])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return [Path(p).name for p in captured.out.splitlines()]

    one, two = f"study_{series_tag(first)}", f"study_{series_tag(second)}"
    assert one != two and series_tag(first) == first.replace(".", "")[-8:]
    assert predict(first, "--probabilities") == [f"{one}.nii.gz", f"{one}_prob_1.nii.gz"]
    before = (out / f"{one}.nii.gz").read_bytes()
    assert predict(second) == [f"{two}.nii.gz"]
    assert (out / f"{one}.nii.gz").read_bytes() == before  # not overwritten by the other series
    # the same series again without probabilities: the maps of the earlier run go
    assert predict(first) == [f"{one}.nii.gz"]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{one}.nii.gz", f"{two}.nii.gz"])


def test_the_series_tag_keeps_the_part_of_a_split_series():
    assert series_tag("1.2.826.0.1.3680043.8.498.46193243091922807973650205619024551805") \
        == "24551805"
    assert series_tag("1.2.3.4567890123#2") == "67890123_2"
    assert series_tag("no-uid-9c1e5a77b2") == "1e5a77b2"


def test_a_new_prediction_removes_the_stale_maps_of_its_stem_only(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _nifti(folder / "case.nii.gz", (8, 16, 16))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("case_prob_1.nii.gz", "case_prob_7.nii.gz", "other_prob_1.nii.gz",
                 "case_probe.nii.gz"):
        (out / name).write_bytes(b"old")
    list(predict_folder(model, folder, out, device="cpu"))
    assert sorted(p.name for p in out.iterdir()) == ["case.nii.gz", "case_probe.nii.gz",
                                                     "other_prob_1.nii.gz"]


def test_an_input_named_like_a_probability_map_of_another_is_refused(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _nifti(folder / "a.nii.gz", (8, 16, 16))
    _nifti(folder / "a_prob_1.nii.gz", (8, 16, 16))
    with pytest.raises(ValueError, match=r"a_prob_1.nii.gz would be taken for a probability map "
                                         r"of a.nii.gz"):
        list(predict_folder(model, folder, tmp_path / "out", device="cpu"))
    assert not (tmp_path / "out").exists()


# 3. info: truncated file, NaN voxels ------------------------------------------------------


def test_info_on_a_truncated_nifti_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "cut.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32),
                             np.eye(4)), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert main(["info", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = _lines(captured.err)
    assert len(err) == 1 and err[0].startswith("napari-medseg info: error: cut.nii.gz is "
                                               "truncated")


@pytest.mark.parametrize("name", ["nan.nii.gz", "nan.nii"])
def test_info_counts_non_finite_voxels_and_still_prints_the_summary(tmp_path, capsys, name):
    array = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    array[0, 0, :3] = np.nan
    array[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / name))
    assert main(["info", str(tmp_path / name)]) == 0
    captured = capsys.readouterr()
    info = json.loads(captured.out)
    assert info["shape"] == [8, 8, 8] and info["non_finite_voxels"] == 4
    err = _lines(captured.err)
    assert err == [f"napari-medseg info: warning: {name}: 4 of 512 voxels are NaN or infinite; "
                   "they are read as the lowest valid value."]
    clean = tmp_path / "clean.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(clean))
    assert main(["info", str(clean)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["warnings"] == []


# 4. --out naming an existing file ----------------------------------------------------------


def test_out_that_is_a_file_names_it_and_says_what_to_do(model, tmp_path, capsys):
    from test_cli import _case

    from napari_medseg.dataset import write_msd_dataset

    taken = tmp_path / "results.txt"
    taken.write_text("keep me")
    image = _nifti(tmp_path / "a.nii.gz", (8, 16, 16))
    dataset = write_msd_dataset([_case(i) for i in range(2)], tmp_path / "Task09_Blobs",
                                {0: "background", 1: "outer", 2: "core"})
    for argv in (["predict", "--model", str(model), str(image), "--out", str(taken), *CPU],
                 ["train", str(dataset), "--out", str(taken), "--max-epochs", "1",
                  "--device", "cpu", "--quiet"]):
        assert main(argv) == 2
        err = _lines(capsys.readouterr().err)
        assert len(err) == 1, err
        assert f"--out {taken} is an existing file, not a folder" in err[0]
        assert "choose another --out" in err[0]
    assert taken.read_text() == "keep me"
    exists = FileExistsError(17, "File exists", str(taken))
    assert _one_line(exists) == (f"{taken} already exists; choose another path, or move "
                                 "results.txt away.")


# 5. evaluate: specificity column -----------------------------------------------------------


def test_evaluate_table_appends_a_specificity_column(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    truth = np.zeros((6, 10, 10), np.uint8)
    truth[2:4, 2:8, 2:8] = 1
    guess = truth.copy()
    guess[2, 0:2, 0:2] = 1  # 4 false positives in 600 - 72 negatives
    for name in ("c1", "c2"):
        write_nifti(Volume(truth), gt / f"{name}.nii.gz", labels=True)
        write_nifti(Volume(guess), pred / f"{name}.nii.gz", labels=True)
    assert main(["evaluate", str(pred), str(gt), "--no-surface"]) == 0
    lines = capsys.readouterr().out.splitlines()
    titles = ["Dice", "Jaccard", "Sens", "Prec", "Spec"]
    assert lines[0] == f"{'class':<16}{'n':>5}" + "".join(f"{t:>18}" for t in titles)
    assert lines[1].endswith(f"{'0.992 ± 0.000':>18}")  # 1 - 4/528
    assert main(["evaluate", str(pred), str(gt)]) == 0  # with the distances: still the last
    titles[4:4] = ["HD95 mm", "ASSD mm"]
    assert capsys.readouterr().out.splitlines()[0] == f"{'class':<16}{'n':>5}" + "".join(
        f"{t:>18}" for t in titles)
    assert main(["evaluate", str(pred), str(gt), "--json", "--no-surface"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["1"]["specificity_mean"] == pytest.approx(1 - 4 / 528)
    assert {"dice_mean", "jaccard_mean", "sensitivity_mean", "precision_mean"} <= set(
        summary["1"])


# 6. pydicom's character-set warnings -------------------------------------------------------


def test_a_misspelt_character_set_is_one_plain_warning_line(tmp_path):
    import warnings

    series = write_ct_series(tmp_path / "ct")
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:5, 8:20, 8:20] = 1
    src = tmp_path / "labels.nii.gz"
    write_nifti(read_volumes(series)[0].with_array(labels, "labels"), src, labels=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own remarks while the files are made
        for f in series.iterdir():
            ds = pydicom.dcmread(f)
            ds.SpecificCharacterSet = "ISO-IR 100"  # the usual misspelling of ISO_IR 100
            ds.save_as(f)
    proc = cli("convert", src, tmp_path / "labels.rtstruct.dcm", "--reference", series)
    assert proc.returncode == 0, proc.stderr
    err = _lines(proc.stderr)
    assert err == ["napari-medseg convert: warning: the DICOM files give their character set "
                   "as 'ISO-IR 100', which is not a DICOM name; their text (names, "
                   "descriptions) was read as ISO_IR 100"]


def test_pydicom_remarks_on_header_spelling_are_not_shown(samples_dir, tmp_path):
    data = samples_dir / "ct_dicom_seg_dcmqi"
    labels = tmp_path / "liver.nii.gz"
    assert cli("convert", data / "liver.dcm", labels).returncode == 0
    # the series' PatientName "JANCT000" has one component: pydicom remarks on it when the
    # SEG copies it; nothing the user can or needs to act on
    proc = cli("convert", labels, tmp_path / "liver.seg.dcm", "--reference", data / "ct-3slice")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "liver.seg.dcm").is_file()
    assert "person name" not in proc.stderr and proc.stderr == ""


@pytest.mark.parametrize(("text", "plain"), [
    ("Unknown encoding 'ISO_IR 999' - using default encoding instead",
     "the DICOM files use a character set napari-medseg does not know ('ISO_IR 999'); their "
     "text (names, descriptions) was read as plain ASCII and may show wrong letters"),
    ("Failed to decode byte string with encodings: iso8859 - using replacement characters in "
     "decoded string", "some DICOM text (names, descriptions) does not match the files' "
     "character set; the letters that could not be read are shown as \N{REPLACEMENT CHARACTER}"),
    ('The string "JANCT000" is unlikely to represent the intended person name since it '
     "contains only a single component.", None),
    ("Invalid value for VR CS: 'ISO-IR 100'.", None),
    ("3 contour(s) do not lie on a slice", "3 contour(s) do not lie on a slice"),
])
def test_warnings_in_the_users_words(text, plain):
    assert _user_warning(text) == plain


# 7. exported bundle folder mode ------------------------------------------------------------


def test_an_exported_bundle_folder_has_the_usual_mode(model, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        bundle = tmp_path / "bundle"
        assert main(["export", "--model", str(model), "--format", "monai-bundle",
                     str(bundle)]) == 0
    finally:
        os.umask(old)
    out = capsys.readouterr().out
    assert out.startswith(f"Exported {model} as monai-bundle: {bundle}")
    from napari_medseg.export import bundle_not_runnable
    from napari_medseg.models.card import read_card

    hint = ("Run it: python -m monai.bundle run" if bundle_not_runnable(read_card(model)) is None
            else "Not runnable with monai.bundle run (")
    assert out.splitlines()[1].startswith(hint)
    for folder in (bundle, bundle / "configs", bundle / "models"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


# 8. --overlap help -------------------------------------------------------------------------


def test_overlap_help_states_the_range_the_check_accepts(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0 <= overlap < 1" in text and "(0-1)" not in text
    assert main(["predict", "--model", "m", "in", "--out", "o", "--overlap", "1"]) == 2
    assert "--overlap must be in [0, 1), not 1" in capsys.readouterr().err
