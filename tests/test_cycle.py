"""Correct-and-retrain loop: versions advance, warm start, new-case scoring, cancel, benchmark CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_medseg.cycle import (
    RetrainResult,
    default_retrain_config,
    dice_metrics,
    retrain,
    run_to_end,
)
from napari_medseg.dataset.msd import Case, read_image
from napari_medseg.dataset.project import Project, ProjectError
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.inference import predict_volume

REPO = Path(__file__).resolve().parents[1]
NAMES = {0: "background", 1: "Anterior", 2: "Posterior"}


def test_dice_metrics_ignores_unannotated_voxels():
    ref = np.array([[1, 1, IGNORE_LABEL, IGNORE_LABEL], [2, 2, 0, 0]], np.uint8)
    pred = np.array([[1, 1, 2, 2], [2, 0, 0, 0]], np.uint8)
    m = dice_metrics([pred], [ref], NAMES)
    assert m["dice/Anterior"] == pytest.approx(1.0)  # the 2s under IGNORE do not count
    assert m["dice/Posterior"] == pytest.approx(2 * 1 / (1 + 2))
    assert m["dice_mean"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert dice_metrics([], [], NAMES) == {}
    # a case with nothing annotated is no evidence: it does not count as a perfect score
    blank = np.full_like(ref, IGNORE_LABEL)
    assert dice_metrics([pred, pred], [ref, blank], NAMES) == m
    # training's validation aggregates the same way (one Dice aggregation)
    from napari_medseg.metrics import annotated_dice, mean_dice_metrics

    assert annotated_dice(pred, blank, [1, 2]) is None
    assert mean_dice_metrics([annotated_dice(pred, ref, [1, 2]), None], NAMES) == m
    with pytest.raises(ValueError, match="differs"):
        dice_metrics([pred[:1]], [ref], NAMES)


def _case(paths, slices=None):
    image_path, label_path = paths
    image = read_image(image_path)
    image.modality = "MR"
    labels = np.asarray(read_image(label_path).array).astype(np.uint8)
    return image, labels, slices


def _tiny_config(project, **kw):
    # step-limited (not time-limited) so the test is deterministic and short on any machine
    return default_retrain_config(project, 60.0, dims=2, max_epochs=1, steps_per_epoch=3,
                                  batch_size=4, base_channels=8, device="cpu", **kw)


@pytest.fixture
def project(tmp_path):
    return Project.create(tmp_path / "proj", "Hippocampus", {1: "Anterior", 2: "Posterior"}, "MR")


def test_retrain_rounds_advance_versions(project, hippo_cases):
    cases = hippo_cases(4)
    image, labels, _ = _case(cases[0])
    project.accept_case(image, labels, annotated_slices=[10, 15, 20])
    image2, labels2, _ = _case(cases[1])
    project.accept_case(image2, labels2)
    val_image, val_labels, _ = _case(cases[3])
    val = [Case("val", val_image, val_labels)]

    events = []
    result = run_to_end(retrain(project, config=_tiny_config(project), val_cases=val),
                        events.append)
    assert isinstance(result, RetrainResult)
    assert result.version == "v001" and result.parent is None
    assert project.current_model == "v001"
    # the recorded score is the truth: v001's prediction of the held-out case, counted here
    pred = predict_volume(project.model_dir("v001"), val_image, device="cpu").labels
    truth = np.asarray(val_labels)
    counted = [2 * np.sum((pred == c) & (truth == c)) / (np.sum(pred == c) + np.sum(truth == c))
               for c in (1, 2)]
    assert result.metrics["dice/Anterior"] == pytest.approx(counted[0], abs=1e-6)
    assert result.metrics["dice_mean"] == pytest.approx(np.mean(counted), abs=1e-6)
    assert events[0].kind == "start" and events[-1].kind == "finished"
    assert any(e.kind == "step" for e in events)
    assert (project.model_dir("v001") / "model.pt").is_file()
    assert sorted(result.training_cases) == project.accepted_ids()

    # round 2: a new case is accepted; v001 is scored on it first, then v002 warm-starts
    image3, labels3, _ = _case(cases[2])
    project.accept_case(image3, labels3, annotated_slices=[12, 18])
    result2 = run_to_end(retrain(project, config=_tiny_config(project)))
    assert result2.version == "v002" and result2.parent == "v001"
    assert "new_cases/dice_mean" in result2.previous_new_case_metrics
    models = {m["version"]: m for m in project.models()}
    assert "new_cases/dice_mean" in models["v001"]["metrics"]
    assert models["v002"]["parent"] == "v001"
    assert len(models["v002"]["training_cases"]) == 3
    assert project.current_model == "v002"
    # the project folder holds the accepted cases as a valid MSD dataset
    assert len(list((project.root / "labelsTr").glob("*.nii.gz"))) == 3
    # no temporary training folders are left behind
    assert [p.name for p in (project.root / "models").iterdir()] == ["v001", "v002"]


def test_retrain_uses_runner_and_can_be_cancelled(project, hippo_cases):
    image, labels, _ = _case(hippo_cases(1)[0])
    project.accept_case(image, labels, annotated_slices=[15])
    calls = []

    def runner(fn, *args, **kwargs):
        calls.append(kwargs)
        return (yield from fn(*args, **kwargs))

    result = run_to_end(retrain(project, config=_tiny_config(project), runner=runner,
                                should_stop=lambda: True))
    assert calls and calls[0]["dataset"] == str(project.root)
    assert result.status == "cancelled" and result.version is None
    assert project.models() == [] and project.current_model is None
    assert [p.name for p in (project.root / "models").iterdir()] == []


def test_cancel_after_a_saved_epoch_changes_nothing(project, hippo_cases):
    image, labels, _ = _case(hippo_cases(1)[0])
    project.accept_case(image, labels, annotated_slices=[15, 20])
    checks = []

    def stop_later() -> bool:  # let two epochs of 2 steps save a model, then cancel
        checks.append(1)
        return len(checks) > 5

    cfg = default_retrain_config(project, 60.0, dims=2, max_epochs=10, steps_per_epoch=2,
                                 batch_size=2, base_channels=4, device="cpu")
    events = []
    result = run_to_end(retrain(project, config=cfg, should_stop=stop_later), events.append)
    assert any(e.kind == "epoch" for e in events)  # a model had been saved
    assert result.status == "cancelled" and result.version is None
    assert events[-1].kind == "cancelled"
    assert project.models() == [] and project.current_model is None
    assert [p.name for p in (project.root / "models").iterdir()] == []
    assert project.history()[-1]["action"] == "retrain_cancelled"


def test_retrain_needs_accepted_cases(project):
    with pytest.raises(ProjectError, match="Accept at least one"):
        run_to_end(retrain(project, time_budget_s=5))


def test_failed_training_changes_nothing(project, hippo_cases):
    image, labels, _ = _case(hippo_cases(1)[0])
    project.accept_case(image, labels, annotated_slices=[15])

    def broken_runner(fn, *args, **kwargs):
        from napari_medseg.events import Event

        yield Event("error", message="The training process ran out of memory.", level="error")

    with pytest.raises(ProjectError, match="out of memory"):
        run_to_end(retrain(project, config=_tiny_config(project), runner=broken_runner))
    assert project.models() == []
    assert [p.name for p in (project.root / "models").iterdir()] == []


def test_benchmark_cli_quick_ends_with_contract_line(hippo_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "loop.py"), "--data", str(hippo_dir), "--quick",
         "--retrain-budget-s", "10", "--dims", "2", "--no-tta", "--threads", "1",
         "--out", str(tmp_path / "bench")],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                          "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"final_dice=(\d\.\d{4}) corrected_slices=(\d+) rounds=(\d+)", last)
    assert match, last
    # the corrected model segments (measured 0.73 with a 10 s budget; untrained ~0)
    assert float(match.group(1)) >= 0.4
    assert int(match.group(2)) == 8 and int(match.group(3)) == 1
    bench = Project.open(tmp_path / "bench")
    assert [m["version"] for m in bench.models()] == ["v001", "v002"]
    assert bench.annotation_cost() == 8


def test_cli_train_works_on_a_project_folder(project, hippo_cases, tmp_path, capsys):
    """`napari-medseg train PROJECT_DIR` reads the project as an MSD dataset (sparse cases too)."""
    from napari_medseg.cli import main
    from napari_medseg.models.card import read_card

    image, labels, _ = _case(hippo_cases(1)[0])
    project.accept_case(image, labels, annotated_slices=[10, 20])
    project.add_unlabelled(_case(hippo_cases(2)[1])[0])  # pool images are not training cases
    status = main(["train", str(project.root), "--out", str(tmp_path / "model"), "--max-epochs",
                   "1", "--steps-per-epoch", "2", "--val-fraction", "0", "--base-channels", "4",
                   "--device", "cpu", "--quiet"])
    assert status == 0, capsys.readouterr()
    card = read_card(tmp_path / "model")
    assert card.training_cases == ["hippocampus_001"]
    assert card.label_names == {0: "background", 1: "Anterior", 2: "Posterior"}


def test_benchmark_runs_on_another_msd_dataset(tmp_path):
    """Synthetic two-channel CT-like task without a split file: the contract line still comes."""
    from napari_medseg.dataset.msd import write_msd_dataset
    from napari_medseg.io.volume import Volume

    rng = np.random.default_rng(0)
    cases = []
    zz, yy, xx = np.mgrid[:16, :20, :20]
    for i in range(8):
        centre = rng.uniform(7, 12, 3)
        ball = ((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) < 16
        image = (ball * 200.0 + rng.normal(0, 20, ball.shape) - 100).astype(np.float32)
        cases.append(Case(f"case_{i:02d}", Volume(image, modality="CT"), ball.astype(np.uint8),
                          extra_channels=(Volume(image * 0.5, modality="CT"),)))
    data = write_msd_dataset(cases, tmp_path / "Task99_Ball", {0: "background", 1: "ball"},
                             name="Ball", modality="CT")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "loop.py"), "--data", str(data), "--quick",
         "--retrain-budget-s", "15", "--dims", "2", "--threads", "1"],
        capture_output=True, text=True, timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    assert "uses the first" in proc.stdout  # two channels: the first one is used
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"final_dice=\d\.\d{4} corrected_slices=\d+ rounds=1", last), last


def test_a_model_that_learnt_too_little_does_not_replace_a_usable_one(project, hippo_cases):
    from types import SimpleNamespace

    from napari_medseg.training.verdict import MIN_STEPS

    image, labels, _ = _case(hippo_cases(1)[0])
    project.accept_case(image, labels)
    runs = []

    def fake_runner(steps):
        def runner(fn, cfg, *, out_dir, **kwargs):  # a training run that saved a model
            Path(out_dir).mkdir(parents=True)
            (Path(out_dir) / "model.pt").write_bytes(b"weights %d" % len(runs))
            runs.append(steps)
            return SimpleNamespace(steps=steps, elapsed_s=steps * 0.5, best_metric=0.8,
                                   best_epoch=None, history=[])
            yield  # a generator
        return runner

    first = run_to_end(retrain(project, config=_tiny_config(project),
                               runner=fake_runner(MIN_STEPS * 3)))
    assert first.version == "v001" and first.made_current and project.current_model == "v001"
    short = run_to_end(retrain(project, config=_tiny_config(project), runner=fake_runner(12)))
    assert short.version == "v002" and not short.made_current
    assert project.current_model == "v001"  # the usable model stays in use
    models = {m["version"]: m for m in project.models()}
    assert models["v002"]["metrics"]["usable"] == 0.0 and models["v001"]["metrics"]["usable"] == 1.0
    assert Project.open(project.root).current_model == "v001"
    project.set_current_model("v002")  # the user can still choose it
    again = run_to_end(retrain(project, config=_tiny_config(project), runner=fake_runner(12)))
    assert again.made_current and project.current_model == "v003"  # nothing usable to keep
