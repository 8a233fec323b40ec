"""Two processes changing one project never lose each other's entries (issue 14, item 1)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from napari_medseg.dataset.project import Project
from napari_medseg.io.volume import Volume


def _run_parallel(code: str, n: int = 2) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(n)]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()[-2000:]


def test_two_processes_logging_keep_every_entry(tmp_path):
    Project.create(tmp_path / "p", "t", {1: "organ"})
    _run_parallel(f"""
        import sys
        from napari_medseg.dataset.project import Project
        p = Project.open({str(tmp_path / 'p')!r})
        for k in range(40):
            p.log("note", worker=int(sys.argv[1]), k=k)
    """)
    history = Project.open(tmp_path / "p").history()
    notes = [(h["details"]["worker"], h["details"]["k"]) for h in history if h["action"] == "note"]
    assert sorted(notes) == sorted((w, k) for w in range(2) for k in range(40))


def test_two_processes_adding_images_register_every_case(tmp_path):
    Project.create(tmp_path / "p", "t", {1: "organ"})
    _run_parallel(f"""
        import sys
        import numpy as np
        from napari_medseg.dataset.project import Project
        from napari_medseg.io.volume import Volume
        w = int(sys.argv[1])
        p = Project.open({str(tmp_path / 'p')!r})
        for k in range(8):
            rng = np.random.default_rng(100 * w + k)
            p.add_unlabelled(Volume(rng.normal(size=(4, 8, 8)).astype("float32"), name="scan"))
    """)
    project = Project.open(tmp_path / "p")
    files = sorted(f.name for f in (tmp_path / "p" / "imagesTs").glob("*.nii.gz"))
    assert len(files) == 16
    assert sorted(f"{c}.nii.gz" for c in project.unlabelled_ids()) == files


def test_open_registers_an_image_whose_entry_was_lost(tmp_path):
    project = Project.create(tmp_path / "p", "t", {1: "organ"})
    cid = project.add_unlabelled(Volume(np.zeros((4, 8, 8), np.float32), name="scan"))
    # a process killed after writing the image but before registering it
    (tmp_path / "p" / "imagesTs" / f"{cid}.nii.gz").rename(
        tmp_path / "p" / "imagesTs" / "orphan.nii.gz")
    reopened = Project.open(tmp_path / "p")
    assert "orphan" in reopened.unlabelled_ids()
    assert reopened.case_info("orphan")["recovered"] is True


def test_project_keeps_patient_identifiers_out(tmp_path):
    """Folder names of DICOM series often hold patient ids: none reaches the project's files."""
    project = Project.create(tmp_path / "p", "t", {1: "organ"})
    volume = Volume(np.zeros((4, 8, 8), np.float32), name="PGBM-002_HippoCrop",
                    metadata={"format": "dicom", "path": "/data/PGBM-002_HippoCrop/series1"})
    cid = project.add_unlabelled(volume)
    assert cid == "case_001"
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1, 2:4, 2:4] = 1
    project.accept_case(volume, labels, case_id=cid)
    for path in (tmp_path / "p").rglob("*"):
        assert "PGBM" not in path.name
        if path.is_file() and path.suffix == ".json":
            assert "PGBM" not in path.read_text(), path
    assert project.find_case(volume) == cid  # still recognised (by the source path's hash)
