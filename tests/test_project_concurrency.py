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


def test_sigkill_while_saving_never_breaks_the_project(tmp_path):
    """Kill a process writing project.json in a loop at random moments: it always opens."""
    import time

    Project.create(tmp_path / "p", "t", {1: "organ"})
    code = textwrap.dedent(f"""
        import numpy as np
        from napari_medseg.dataset.project import Project
        from napari_medseg.io.volume import Volume
        p = Project.open({str(tmp_path / 'p')!r})
        print("ready", flush=True)
        k = 0
        while True:
            k += 1
            p.log("note", k=k)
            if k % 5 == 0:
                p.add_unlabelled(Volume(np.full((4, 8, 8), k, np.float32), name=f"s{{k}}"))
    """)
    for delay in (0.1, 0.3, 0.6):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.kill()
        proc.wait()
        project = Project.open(tmp_path / "p")  # readable, and files agree with the registry
        files = {f.name[: -len(".nii.gz")] for f in (tmp_path / "p" / "imagesTs").glob("*.nii.gz")
                 if not f.name.startswith(".")}
        assert files <= set(project.unlabelled_ids())


def test_project_json_of_wrong_types_is_one_clear_error(tmp_path):
    import json

    import pytest

    from napari_medseg.dataset.project import ProjectError

    Project.create(tmp_path / "p", "t", {1: "organ"})
    path = tmp_path / "p" / "project.json"
    meta = json.loads(path.read_text())
    for broken in ({**meta, "cases": []}, {**meta, "classes": "organ"}, {**meta, "history": 5},
                   {**meta, "slice_axis": "z"}, [1, 2]):
        path.write_text(json.dumps(broken))
        with pytest.raises(ProjectError):
            Project.open(tmp_path / "p").case_ids()
