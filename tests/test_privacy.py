"""Patient identifiers stay out of everything napari-medseg writes or prints (issue 14).

A DICOM series with a marked patient name, id and birth date goes through the whole cycle —
``info``, a project (add, accept), training, the model card, ``predict`` — and the marks appear
in no file the tool writes and in nothing it prints. ``info --phi`` is the one way to see the
patient id.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_ct_series

from napari_medseg.cli import main
from napari_medseg.dataset.project import Project
from napari_medseg.io import read_volume

NAME, PATIENT_ID, BIRTH_DATE = "ZZMARK^SECRET", "ID-7Q3X", "19010101"
MARKS = ("ZZMARK", "SECRET", PATIENT_ID, BIRTH_DATE)


def _marked_series(folder: Path, seed: int) -> Path:
    """A small CT series (8 x 32 x 32) whose files carry the marked patient identifiers."""
    write_ct_series(folder, shape=(8, 32, 32))
    rng = np.random.default_rng(seed)
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH_DATE
        ds.OtherPatientIDs = PATIENT_ID
        ds.InstitutionName = "ZZMARK hospital"
        pixels = rng.integers(-100, 100, (32, 32)).astype(np.int16)
        pixels[8:20, 8:20] += 400  # a bright block: something to segment
        ds.PixelData = pixels.tobytes()
        ds.save_as(f)
    return folder


def _cli(argv: list[str]) -> tuple[int, str, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def _marks_in(text: str) -> list[str]:
    return [m for m in MARKS if m.lower() in text.lower()]


def test_info_hides_patient_identifiers_unless_asked(tmp_path: Path) -> None:
    folder = _marked_series(tmp_path / "input" / "series_a", 0)
    rc, out, err = _cli(["info", str(folder)])
    assert rc == 0 and json.loads(out)["n_image_series"] == 1
    assert _marks_in(out + err) == []
    assert "patient_id" not in json.loads(out)["series"][0]
    rc, out, _ = _cli(["info", "--phi", str(folder)])
    assert rc == 0 and json.loads(out)["series"][0]["patient_id"] == PATIENT_ID


def test_phi_flag_is_explained_in_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    assert "--phi" in capsys.readouterr().out


def test_patient_marks_reach_no_file_and_no_output(tmp_path: Path) -> None:
    from napari_medseg.training import TrainConfig, train

    inputs = tmp_path / "input"
    folders = [_marked_series(inputs / f"series_{k}", i) for i, k in enumerate("ab")]
    printed = []

    # info
    for folder in folders:
        rc, out, err = _cli(["info", str(folder)])
        assert rc == 0
        printed += [out, err]

    # project: add and accept both series
    project = Project.create(tmp_path / "project", "privacy", {1: "block"}, modality="CT")
    for folder in folders:
        volume = read_volume(folder)
        assert volume.metadata["patient_id"] == PATIENT_ID  # the reader still knows it
        cid = project.add_unlabelled(volume)
        labels = (np.asarray(volume.array) > 200).astype(np.uint8)
        project.accept_case(volume, labels, case_id=cid)

    # train a tiny network on the project, a few steps
    config = TrainConfig(max_epochs=1, steps_per_epoch=2, base_channels=4, max_channels=8,
                         patch_size=(8, 16, 16), batch_size=1, device="cpu", val_fraction=0.5,
                         augmentation="none", early_validation_every=1, amp=False)
    events = list(train(config, project.root, tmp_path / "model"))
    printed += [e.message or "" for e in events]
    assert events[-1].kind == "finished", [e.message for e in events[-3:]]
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["training_cases"] or card["validation_cases"]

    # predict through the command line, NIfTI output
    rc, out, err = _cli(["predict", "--model", str(tmp_path / "model"), str(folders[0]),
                         "--out", str(tmp_path / "pred"), "--device", "cpu", "--quiet"])
    assert rc == 0, err
    printed += [out, err]
    outputs = [Path(line) for line in out.split()]
    assert outputs and all(p.name.endswith(".nii.gz") for p in outputs)

    assert _marks_in("\n".join(printed)) == []
    written = [p for p in tmp_path.rglob("*") if inputs not in p.parents and p != inputs]
    assert len([p for p in written if p.is_file()]) > 5  # project, model and prediction files
    for path in written:
        assert _marks_in(path.name) == [], path
        if path.is_file():
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                import gzip

                data = gzip.decompress(data)
            text = data.decode("latin-1")
            assert _marks_in(text) == [], (path, _marks_in(text))
