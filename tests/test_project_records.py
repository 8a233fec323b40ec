"""Typed project.json records: exact round trip of existing files, lifecycle changes as dict ops."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from napari_medseg.dataset.project import Project, ProjectError
from napari_medseg.dataset.project_records import CaseRecord, ModelRecord
from napari_medseg.io.volume import Volume

T = "2025-03-04T10:11:12+00:00"

#: A project.json in the layout written today (and a few entries of older files: a case with
#: only some keys and one unknown key, a model version without metrics).
EXISTING = f"""{{
  "format_version": 1,
  "name": "Hip",
  "modality": "CT",
  "classes": {{"1": {{"name": "A", "color": "#ff0000"}}, "2": {{"name": "B", "color": "#3cb44b"}}}},
  "slice_axis": 0,
  "created": "{T}",
  "cases": {{
    "case_a": {{"status": "accepted", "source": null, "source_hash": "12904fb8cdc6e27f",
               "fingerprint": "11598f4ae3a74375", "shape": [6, 8, 10], "spacing": [2.0, 0.5, 0.7],
               "channels": 1, "file_ending": ".nii.gz", "affine": null, "annotated_slices": [1, 4],
               "slice_axis": 0, "added": "{T}", "accepted": "{T}"}},
    "MR_head_2": {{"status": "accepted", "source": null, "source_hash": null,
                  "fingerprint": "64b5f66df9dbb9c5", "shape": [6, 8, 10],
                  "spacing": [2.0, 0.5, 0.7], "channels": 1, "file_ending": ".nii.gz",
                  "affine": null, "annotated_slices": null, "slice_axis": 2, "added": "{T}",
                  "accepted": "{T}", "draft_saved": "{T}", "draft_slices": null}},
    "d": {{"status": "draft", "source": null, "source_hash": null,
          "fingerprint": "63f34ddd5e1c2441", "shape": [6, 8, 10], "spacing": [2.0, 0.5, 0.7],
          "channels": 1, "file_ending": ".nii.gz", "affine": null, "annotated_slices": null,
          "slice_axis": 0, "added": "{T}", "draft_saved": "{T}", "draft_slices": [0]}},
    "orphan": {{"status": "unlabelled", "source": null, "source_hash": null,
               "fingerprint": "64b5f66df9dbb9c5", "shape": [6, 8, 10],
               "spacing": [2.0, 0.5, 0.7], "channels": 1, "file_ending": ".nii.gz",
               "affine": null, "annotated_slices": null, "slice_axis": 0, "added": "{T}",
               "recovered": true}},
    "rgb_pic": {{"status": "accepted", "source": null, "source_hash": "441405242680ef10",
                "fingerprint": "2ea420e9b86d919c", "shape": [16, 20], "spacing": [1.0, 1.0],
                "channels": 3, "file_ending": ".png",
                "affine": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0],
                           [0.0, 0.0, 0.0, 1.0]],
                "annotated_slices": null, "slice_axis": 0, "added": "{T}", "accepted": "{T}"}},
    "old": {{"shape": [6, 8, 10], "status": "draft", "slice_axis": 1, "zz": {{"kept": [1]}}}}
  }},
  "models": {{
    "v001": {{"created": "{T}", "parent": null, "metrics": {{"dice": 0.5, "later": 1.0}},
             "training_cases": ["MR_head_2", "case_a"], "annotation_cost": 12, "note": "n"}},
    "v002": {{"created": "{T}", "parent": "v001", "metrics": {{}}, "training_cases": ["c"],
             "annotation_cost": 12, "note": ""}},
    "v003": {{"note": "old", "created": "{T}", "extra": 1, "json_keys": 2}}
  }},
  "current_model": "v002",
  "history": [{{"time": "{T}", "action": "create", "details": {{"name": "Hip"}}}}]
}}
"""


def _dumps(obj) -> str:
    return json.dumps(obj, indent=2)


def test_records_round_trip_existing_project_json_exactly():
    meta = json.loads(EXISTING)
    for entry in meta["cases"].values():
        record = CaseRecord.from_dict(entry)
        assert _dumps(record.to_dict()) == _dumps(entry)  # same keys, values and order
        assert list(record.keys()) == list(entry)
    for entry in meta["models"].values():
        record = ModelRecord.from_dict(entry)
        assert _dumps(record.to_dict()) == _dumps(entry)
    old = CaseRecord.from_dict(meta["cases"]["old"])
    assert old.extra == {"zz": {"kept": [1]}} and old.slice_axis == 1
    assert old.file_ending == ".nii.gz" and old.channels == 1  # defaults of absent keys
    assert not old.has("file_ending") and old.has("zz")
    v3 = ModelRecord.from_dict(meta["models"]["v003"])
    assert v3.metrics == {} and v3.extra == {"extra": 1, "json_keys": 2}
    d = CaseRecord.from_dict(meta["cases"]["d"])
    assert d.status == "draft" and d.draft_slices == [0] and d.has("draft_slices")
    whole = CaseRecord.from_dict(meta["cases"]["MR_head_2"])
    assert whole.draft_slices is None and whole.has("draft_slices")


def test_existing_project_json_opens_and_is_written_back_unchanged(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "project.json").write_text(EXISTING)
    before = json.loads(EXISTING)
    project = Project.open(root)
    assert project.case_ids() == sorted(before["cases"])
    for cid, entry in before["cases"].items():
        assert project.case_info(cid) == entry
        assert _dumps(project.case_record(cid).to_dict()) == _dumps(entry)
    assert project.model_record("v001").annotation_cost == 12
    assert project.model_record("v003").parent is None
    with pytest.raises(ProjectError, match="Model version v9 does not exist"):
        project.model_record("v9")
    assert [m["version"] for m in project.models()] == ["v001", "v002", "v003"]
    assert project.annotated_slices("d") is None  # no draft file on disk: the accepted ones
    project.log("touch")  # a read-modify-write of project.json
    after = json.loads((root / "project.json").read_text())
    for key in before:
        if key != "history":
            assert _dumps(after[key]) == _dumps(before[key]), key
    assert [h["action"] for h in after["history"]] == ["create", "touch"]


def _volume(seed=0, name="a", path=None) -> Volume:
    rng = np.random.default_rng(seed)
    meta = {"path": str(path)} if path else {}
    return Volume(rng.normal(size=(6, 8, 10)).astype(np.float32), (2.0, 0.5, 0.7),
                  np.diag([2.0, 0.5, 0.7, 1.0]), "MR", meta, name)


def test_new_and_changed_records_match_the_dict_operations_they_replace(tmp_path):
    vol = _volume(path=tmp_path / "a.nii.gz")
    record = CaseRecord.for_volume(vol, "unlabelled", 1)
    entry = record.to_dict()
    assert list(entry) == ["status", "source", "source_hash", "fingerprint", "shape", "spacing",
                           "channels", "file_ending", "affine", "annotated_slices",
                           "slice_axis", "added"]
    assert entry["source"] is None and entry["slice_axis"] == 1 and entry["affine"] is None
    # a draft, then accepted: like dict.update + dict.pop
    as_dict = dict(entry, draft_saved=T, draft_slices=[2])
    record = CaseRecord.from_dict(as_dict)
    record.mark_accepted([1, 3], 0)
    as_dict.update(status="accepted", annotated_slices=[1, 3], slice_axis=0, accepted="x")
    as_dict.pop("draft_saved")
    as_dict.pop("draft_slices")
    got = record.to_dict()
    assert list(got) == list(as_dict) and got["annotated_slices"] == [1, 3]
    assert not record.has("draft_slices") and record.draft_slices is None
    with pytest.raises(KeyError):
        record.update(no_such_field=1)
    model = ModelRecord(created=T, parent=None, metrics={"dice": 0.5}, training_cases=["a"],
                        annotation_cost=3, note="")
    assert list(model.to_dict()) == ["created", "parent", "metrics", "training_cases",
                                     "annotation_cost", "note"]


def test_records_written_by_the_project_round_trip(tmp_path):
    project = Project.create(tmp_path / "p", "P", {1: "x"})
    lab = np.zeros((6, 8, 10), np.uint8)
    lab[:, 2:4, 2:5] = 1
    cid = project.add_unlabelled(_volume(path=tmp_path / "a.nii.gz"))
    project.autosave_labels(cid, lab, [2, 1])
    project.accept_case(_volume(seed=1, name="b"), lab, annotated_slices=[0])
    project.autosave_labels("b", lab)
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    project.register_model(model, {"dice": 0.7})
    meta = json.loads((project.root / "project.json").read_text())
    for entry in meta["cases"].values():
        assert _dumps(CaseRecord.from_dict(entry).to_dict()) == _dumps(entry)
    for entry in meta["models"].values():
        assert _dumps(ModelRecord.from_dict(entry).to_dict()) == _dumps(entry)
    assert project.case_record(cid).draft_slices == [1, 2]
    assert project.case_record("b").annotated_slices == [0]
    assert os.path.isdir(project.model_dir())
