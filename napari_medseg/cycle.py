"""The correct-and-retrain cycle: fine-tune the project's model on every accepted case.

:func:`retrain` is a generator of :class:`~napari_medseg.events.Event` like ``train()``:

1. before training, the current model is scored on the cases accepted *after* it was trained
   (cases it never saw: an honest measure of how good it was, recorded on that version as
   ``new_cases/dice_mean``);
2. training warm-starts from the current model (a new model from scratch when there is none)
   on all accepted cases, sparse ones included (unannotated voxels are ignored), with a short
   time budget;
3. the result is registered as the next model version with its validation metrics and becomes
   the current model.

A simulated annotator (``benchmarks/loop.py``) uses :func:`correction_errors`,
:func:`choose_corrections` and :func:`simulated_annotator_round`: the model predicts new cases,
the slices (or whole 2D pictures) with the most wrong voxels are "corrected" from the ground
truth and accepted.

The training call itself can run elsewhere: pass ``runner`` (e.g. a function that runs
``train`` in a child process with :class:`napari_medseg.jobs.ProcessJob`); everything that
writes the project happens in the calling process.

Pure core: no Qt, no napari.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.dataset.msd import Case
from napari_medseg.dataset.project import Project, ProjectError
from napari_medseg.events import IGNORE_LABEL, Event
from napari_medseg.metrics import dice_metrics  # the one Dice aggregation (re-exported)

#: Default time budget (s) of one retraining: short, the user is waiting.
DEFAULT_RETRAIN_BUDGET_S = 120.0

Runner = Callable[..., Iterator[Event]]


@dataclass
class RetrainResult:
    """What :func:`retrain` returns (also the ``result`` of its ``finished`` event).

    Attributes
    ----------
    version : str or None
        The new model version (None when training was cancelled before a model was saved).
    parent : str or None
        The version it was fine-tuned from.
    metrics : dict
        Validation metrics of the new version (``dice_mean``, ``dice/<class>`` ...).
    previous_new_case_metrics : dict
        The parent's Dice on the cases accepted after it was trained (empty if none).
    training_cases : list of str
    elapsed_s : float
    status : str
        ``"finished"`` or ``"cancelled"``.
    train_result : Any
        The engine's :class:`~napari_medseg.training.TrainResult`.
    """

    version: str | None
    parent: str | None
    metrics: dict[str, float] = field(default_factory=dict)
    previous_new_case_metrics: dict[str, float] = field(default_factory=dict)
    training_cases: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    status: str = "finished"
    train_result: Any = None
    #: Whether the new version is now the current model (False: it learnt too little to
    #: replace a usable current model, which stays in use).
    made_current: bool = True


def evaluate_model(
    model_dir: str | Path,
    cases: Sequence[Case],
    label_names: Mapping[int, str],
    keep_largest: bool = False,
    device: str = "auto",
    tta: bool = False,
) -> dict[str, float]:
    """Predict every case with a model and score it against the case labels (annotated voxels).

    ``keep_largest`` post-processes, ``tta`` averages mirrored predictions (as in the product's
    inference options).

    Returns the :func:`dice_metrics` dictionary plus ``n_cases``.
    """
    from napari_medseg.inference import load_model, predict_volume, resolve_device

    if not cases:
        return {}
    dev = resolve_device(device)
    model = load_model(model_dir, device=dev)
    preds, refs = [], []
    for case in cases:
        result = predict_volume(model, case.channels, device=dev, tta=tta,
                                return_probabilities=False,
                                return_entropy=False, keep_largest=keep_largest)
        preds.append(result.labels)
        refs.append(case.training_labels())
    metrics = dice_metrics(preds, refs, label_names)
    metrics["n_cases"] = float(len(cases))
    return metrics


def retrain_folder(project_dir: str | Path, **kwargs: Any) -> Generator[Event, None, Any]:
    """:func:`retrain` on the project in ``project_dir``, for child-process jobs (a
    :class:`~napari_medseg.dataset.project.Project` does not pickle; its folder does). The whole
    round runs there: scoring the current model on the newly accepted cases and training."""
    return (yield from retrain(Project.open(project_dir), **kwargs))


def default_retrain_config(project: Project, time_budget_s: float = DEFAULT_RETRAIN_BUDGET_S,
                           **overrides: Any) -> Any:
    """A :class:`~napari_medseg.training.TrainConfig` for a short retraining of ``project``.

    Trains on every accepted case (no validation split: each case cost the annotator time),
    with the project's label names and modality; keyword arguments override any field.
    """
    from napari_medseg.training import TrainConfig

    values: dict[str, Any] = {
        "time_budget_s": float(time_budget_s),
        "val_fraction": 0.0,
        "label_names": dict(project.label_names),
        "modality": project.modality,
        "steps_per_epoch": 25,
    }
    values.update(overrides)
    return TrainConfig(**values)


def _direct_runner(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Generator[Event, None, Any]:
    return (yield from fn(*args, **kwargs))


def retrain(
    project: Project,
    time_budget_s: float = DEFAULT_RETRAIN_BUDGET_S,
    config: Any = None,
    val_cases: Sequence[Case] | None = None,
    runner: Runner | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep_largest: bool = False,
    device: str = "auto",
    from_scratch: bool = False,
    note: str = "",
    tta: bool = False,
) -> Generator[Event, None, RetrainResult]:
    """Fine-tune the project's current model on all accepted cases and register a new version.

    Parameters
    ----------
    project : Project
    time_budget_s : float
        Wall-clock budget of the training part (s); ignored when ``config`` is given.
    config : TrainConfig, optional
        Full control over training (default :func:`default_retrain_config`).
    val_cases : sequence of Case, optional
        Fully labelled cases to measure the new version on (e.g. a fixed validation set); by
        default the engine's own validation result is used when it has one.
    runner : callable, optional
        ``runner(train, config, dataset=..., out_dir=..., init_model=..., should_stop=...)``
        returning an iterator of events whose return value is the engine's result. Default:
        call ``train`` here. The GUI passes a child-process runner.
    should_stop : callable, optional
        Cancel flag, passed to training.
    keep_largest : bool
        Post-process predictions (largest component per class) when measuring.
    device : str
        Device for the measurements done here.
    from_scratch : bool
        Ignore the current model and start a new one.
    note : str
        Text kept with the version.
    tta : bool
        Mirror test-time augmentation when measuring.

    Yields
    ------
    Event
        The engine's events (its ``finished`` is passed on as a ``message``), then one
        ``finished`` (or ``cancelled``) event whose ``result`` is the :class:`RetrainResult`.
    """
    from napari_medseg.training import train

    t0 = time.perf_counter()
    accepted = project.accepted_ids()
    if not accepted:
        raise ProjectError("Accept at least one annotated case before retraining.")
    parent = None if from_scratch else project.current_model
    init_model = project.model_dir(parent) if parent else None
    cfg = config if config is not None else default_retrain_config(project, time_budget_s)
    yield Event("start", message=(
        f"Retraining {'from ' + parent if parent else 'a new model'} on {len(accepted)} "
        f"accepted case(s), budget {cfg.time_budget_s or 0:.0f} s"))

    previous: dict[str, float] = {}
    if parent:
        seen = set(next(m for m in project.models() if m["version"] == parent)["training_cases"])
        new_ids = [c for c in accepted if c not in seen]
        if new_ids:
            yield Event("message", message=f"Scoring {parent} on {len(new_ids)} case(s) it has "
                                           "not seen yet")
            try:
                scores = evaluate_model(init_model, project.training_cases(new_ids),
                                        project.label_names, keep_largest, device, tta)
            except (ValueError, RuntimeError, OSError) as exc:  # scoring is a bonus: go on
                yield Event("message", level="warning",
                            message=f"Could not score {parent} on the new cases: {exc}")
            else:
                previous = {f"new_cases/{k}": v for k, v in scores.items()}
                project.update_model_metrics(parent, previous)

    work = Path(tempfile.mkdtemp(prefix=".training-", dir=project.root / "models"))
    out_dir = work / "model"
    run = runner or _direct_runner
    train_result = None
    status = "finished"
    try:
        events = run(train, cfg, dataset=str(project.root), out_dir=str(out_dir),
                     init_model=None if init_model is None else str(init_model),
                     should_stop=should_stop)
        while True:
            try:
                event = next(events)
            except StopIteration as stop:
                train_result = stop.value if stop.value is not None else train_result
                break
            if event.kind == "finished":
                train_result = event.result if event.result is not None else train_result
                yield Event("message", message=event.message)
                continue
            if event.kind == "cancelled":
                train_result = event.result if event.result is not None else train_result
                status = "cancelled"
                yield Event("message", message=event.message, level="warning")
                continue
            if event.kind == "error":
                raise ProjectError(event.message or "Training failed.")
            if event.kind == "start":
                event = Event("message", message=event.message)
            yield event
        if status == "cancelled" or not (out_dir / "model.pt").is_file():
            # a cancelled retraining changes nothing: its partial model is discarded
            result = RetrainResult(None, parent, {}, previous, accepted,
                                   time.perf_counter() - t0, "cancelled", train_result)
            project.log("retrain_cancelled", parent=parent, cases=len(accepted))
            why = ("Retraining was cancelled" if status == "cancelled" else
                   "Training ended before a model was saved (the time budget is too short "
                   "for one round of steps)")
            yield Event("cancelled", result=result,
                        message=f"{why}; the current model is unchanged.")
            return result
        if val_cases:
            yield Event("message", message=f"Measuring the new model on {len(val_cases)} "
                                           "validation case(s)")
            metrics = evaluate_model(out_dir, val_cases, project.label_names, keep_largest,
                                     device, tta)
        else:
            metrics = _engine_metrics(train_result)
        metrics["train_time_s"] = float(getattr(train_result, "elapsed_s", 0.0) or 0.0)
        metrics["annotated_slices"] = float(project.annotation_cost())
        usable = _usable(train_result)
        metrics["usable"] = 1.0 if usable else 0.0
        # never replace a usable model by one that learnt too little (it stays selectable)
        make_current = usable or parent is None or not _parent_usable(project, parent)
        version = project.register_model(out_dir, metrics, parent=parent, move=True,
                                         note=note, make_current=make_current,
                                         training_cases=accepted)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = RetrainResult(version, parent, metrics, previous, accepted,
                           time.perf_counter() - t0, status, train_result, make_current)
    dice_text = f", validation Dice {metrics['dice_mean']:.3f}" if "dice_mean" in metrics else ""
    kept = "" if make_current else f"; it learnt too little, so {parent} stays in use"
    yield Event("finished", result=result,
                message=f"Model {version} ready{dice_text} ({result.elapsed_s:.0f} s){kept}")
    return result


def _usable(train_result: Any) -> bool:
    """Whether the training run gave a usable model (:func:`training_verdict`)."""
    if train_result is None:
        return True
    from napari_medseg.training.verdict import training_verdict

    try:
        return training_verdict(train_result).usable
    except (AttributeError, TypeError, ValueError):  # a runner's result without the figures
        return True


def _parent_usable(project: Project, parent: str) -> bool:
    """Whether version ``parent`` was judged usable (versions from before the verdict: yes)."""
    for record in project.models():
        if record["version"] == parent:
            return (record.get("metrics") or {}).get("usable", 1.0) != 0.0
    return False


def _engine_metrics(train_result: Any) -> dict[str, float]:
    """Validation metrics of the engine's best epoch (empty without validation cases)."""
    history = list(getattr(train_result, "history", None) or [])
    best_epoch = getattr(train_result, "best_epoch", None)
    for entry in history:
        if entry.get("epoch") == best_epoch and "dice_mean" in entry:
            return {k: float(v) for k, v in entry.items()
                    if k == "dice_mean" or k.startswith("dice/")}
    if history:
        return {"train_loss": float(history[-1].get("loss", float("nan")))}
    return {}


def correction_errors(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Wrong voxels per unit a simulated annotator corrects: per slice along axis 0 of a volume,
    one value for a 2D picture (the whole picture is the unit).

    Parameters
    ----------
    prediction, reference : np.ndarray
        Integer label maps of the same shape, ``(Z, Y, X)`` or ``(Y, X)``.

    Returns
    -------
    np.ndarray of float
        ``(Z,)`` for a volume, ``(1,)`` for a picture.
    """
    pred, ref = np.asarray(prediction), np.asarray(reference)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    wrong = pred != ref
    if wrong.ndim == 2:
        return np.array([float(np.count_nonzero(wrong))])
    return wrong.reshape(wrong.shape[0], -1).sum(axis=1).astype(float)


def choose_corrections(
    errors: Mapping[str, np.ndarray],
    m: int,
    min_gap: int = 2,
    pictures: Sequence[str] = (),
) -> dict[str, list[int] | None]:
    """The ``m`` units (slices, or whole 2D pictures) with the most wrong voxels.

    Parameters
    ----------
    errors : mapping
        ``{case id: correction_errors(...)}``.
    m : int
        How many units to correct.
    min_gap : int
        Corrected slices of one volume are at least this far apart.
    pictures : sequence of str
        Case ids that are 2D pictures: corrected whole, given as ``None``.

    Returns
    -------
    dict
        ``{case id: sorted slice indices}``, or ``{case id: None}`` for a whole picture; ties go
        to the smaller case id and slice. Units without error are not chosen.
    """
    from napari_medseg.active import rank_slices

    whole = set(pictures)
    candidates = []  # (error, case id, slice)
    for cid, err in errors.items():
        err = np.asarray(err, dtype=float)
        picks = [0] if cid in whole else rank_slices(err, min_gap=min_gap)
        candidates += [(float(err[s]), cid, int(s)) for s in picks if err[s] > 0]
    candidates.sort(key=lambda t: (-t[0], t[1], t[2]))
    chosen: dict[str, list[int] | None] = {}
    for _, cid, s in candidates[: max(int(m), 0)]:
        if cid in whole:
            chosen[cid] = None
        else:
            chosen.setdefault(cid, []).append(s)  # type: ignore[union-attr]
    return {cid: (None if v is None else sorted(v)) for cid, v in chosen.items()}


def simulated_annotator_round(
    project: Project,
    cases: Sequence[tuple[str, Any, np.ndarray]],
    m: int,
    *,
    min_gap: int = 2,
    device: str = "cpu",
    tta: bool = False,
    keep_largest: bool = True,
) -> dict[str, list[int] | None]:
    """One round of a simulated annotator: predict, correct the worst units, accept them.

    The project's current model predicts every case; the ``m`` slices (or 2D pictures) with
    the most wrong voxels against the ground truth are "corrected" (the ground truth copied in;
    other slices of a volume stay unannotated) and the cases are accepted into the project.

    Parameters
    ----------
    project : Project
        Holds a current model.
    cases : sequence of (case id, Volume, np.ndarray)
        New cases with their ground truth (2D pictures or volumes sliced along axis 0).
    m : int
        Units to correct.
    min_gap, device, tta, keep_largest
        As :func:`choose_corrections` and the prediction options.

    Returns
    -------
    dict
        What was corrected: ``{case id: slices}`` (``None`` = the whole picture). The cost in
        annotated slices is ``sum(1 if v is None else len(v) for v in result.values())``.
    """
    from napari_medseg.inference import load_model, predict_volume, resolve_device

    if project.current_model is None:
        raise ProjectError("Train a first model before simulating corrections.")
    dev = resolve_device(device)
    model = load_model(project.model_dir(), device=dev)
    errors, pictures, loaded = {}, [], {}
    for cid, image, gt in cases:
        pred = predict_volume(model, image, device=dev, tta=tta, return_probabilities=False,
                              return_entropy=False, keep_largest=keep_largest).labels
        errors[cid] = correction_errors(pred, gt)
        if np.asarray(gt).ndim == 2:
            pictures.append(cid)
        loaded[cid] = (image, gt)
    chosen = choose_corrections(errors, m, min_gap, pictures)
    for cid, slices in chosen.items():
        image, gt = loaded[cid]
        project.accept_case(image, gt, annotated_slices=slices, case_id=cid)
    return chosen


def simulated_click_round(
    project: Project,
    cases: Sequence[tuple[str, Any, np.ndarray]],
    clicks_per_structure: int,
    *,
    device: str = "cpu",
    tta: bool = False,
    keep_largest: bool = True,
) -> dict[str, int]:
    """One round of a simulated annotator who corrects predictions with clicks, then accepts.

    The project's current model predicts every case; for each structure present in the ground
    truth the annotator gives up to ``clicks_per_structure`` clicks by the standard protocol
    (:func:`~napari_medseg.interactive.clicks.next_click`: the centre of the largest error
    region, positive for a missed one), each applied with
    :func:`~napari_medseg.interactive.refine.refine_with_clicks` exactly as the Annotate tab's
    Interactive section does (the model's click guidance channels when its card has them,
    grow-from-seeds otherwise). The corrected prediction is accepted as a fully annotated case:
    it is what the annotator saw and approved, errors left included.

    Returns
    -------
    dict
        ``{case id: clicks given}`` (a click that would change nothing is not given).
    """
    from napari_medseg.inference import load_model, predict_volume, resolve_device
    from napari_medseg.interactive.clicks import next_click
    from napari_medseg.interactive.refine import refine_with_clicks

    if project.current_model is None:
        raise ProjectError("Train a first model before simulating corrections.")
    dev = resolve_device(device)
    net, card = load_model(project.model_dir(), device=dev)
    given: dict[str, int] = {}
    for cid, image, gt in cases:
        gt = np.asarray(gt)
        labels = predict_volume((net, card), image, device=dev, tta=tta,
                                return_probabilities=False, return_entropy=False,
                                keep_largest=keep_largest).labels.copy()
        spacing = tuple(float(s) for s in image.spacing)[-gt.ndim:]
        n = 0
        for label in (int(v) for v in np.unique(gt) if 0 < v < IGNORE_LABEL):
            clicks: list = []
            for _ in range(int(clicks_per_structure)):
                click = next_click(labels == label, gt == label, spacing, clicks)
                if click is None:
                    break
                clicks.append(click)
                n += 1
                patch = refine_with_clicks(net, card, image, labels, label, clicks,
                                           device=dev)
                if patch is not None:
                    patch.apply(labels)
        project.accept_case(image, labels, case_id=cid)
        given[cid] = n
    return given


def run_to_end(events: Iterator[Event], on_event: Callable[[Event], None] | None = None) -> Any:
    """Drive an event generator to its end; returns its return value."""
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)


__all__ = [
    "DEFAULT_RETRAIN_BUDGET_S",
    "RetrainResult",
    "choose_corrections",
    "correction_errors",
    "default_retrain_config",
    "dice_metrics",
    "evaluate_model",
    "retrain",
    "retrain_folder",
    "run_to_end",
    "simulated_annotator_round",
    "simulated_click_round",
]
