"""Active learning: which image, and which slices, should the annotator correct next?

The model's own uncertainty points at the work that helps it most. Two measures, both per voxel
in ``[0, 1]``:

* **normalised entropy** of the predicted class probabilities, ``H(p) / log(C)``
  (0 = certain, 1 = uniform over the ``C`` classes);
* **disagreement between test-time-augmentation passes** (e.g. mirrored predictions):
  ``1 - (votes for the majority class) / (number of passes)``, rescaled to ``[0, 1]``.

An image is scored by the mean uncertainty over the voxels that matter (by default the region
where the model predicts or hesitates about foreground, so a large background does not dilute
the score); slices are scored by their mean uncertainty and picked greedily with a minimum gap,
because two neighbouring slices teach the model nearly the same thing.

Pure numpy; the model call is the caller's (see :func:`rank_cases`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "normalised_entropy",
    "tta_disagreement",
    "uncertainty_region",
    "image_uncertainty",
    "rank_images",
    "rank_cases",
    "slice_uncertainty",
    "rank_slices",
    "uncertainty_from_prediction",
]


def normalised_entropy(probabilities: np.ndarray, class_axis: int = 0) -> np.ndarray:
    """Per-voxel entropy of class probabilities divided by ``log(C)`` (values in ``[0, 1]``).

    Parameters
    ----------
    probabilities : np.ndarray
        ``(C, Z, Y, X)`` (or any shape with the classes on ``class_axis``); rows need not be
        exactly normalised (they are renormalised), negative values are not allowed.

    Returns
    -------
    np.ndarray
        float32 array without the class axis.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim < 2:
        raise ValueError("probabilities need a class axis and at least one spatial axis")
    n_classes = p.shape[class_axis]
    if n_classes < 2:
        raise ValueError("entropy needs probabilities for at least 2 classes")
    if np.any(p < 0) or not np.all(np.isfinite(p)):
        raise ValueError("probabilities must be finite and non-negative")
    total = p.sum(axis=class_axis, keepdims=True)
    p = p / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    h = -terms.sum(axis=class_axis) / np.log(n_classes)
    return np.clip(h, 0.0, 1.0).astype(np.float32)


def tta_disagreement(passes: Sequence[np.ndarray], class_axis: int = 0) -> np.ndarray:
    """Per-voxel disagreement between prediction passes (values in ``[0, 1]``).

    Parameters
    ----------
    passes : sequence of np.ndarray
        Probabilities ``(C, Z, Y, X)`` from each pass (e.g. each mirrored TTA prediction,
        mapped back to the original orientation), or integer label maps ``(Z, Y, X)``
        (then ``class_axis`` is ignored).

    Returns
    -------
    np.ndarray
        float32: 0 where all passes vote the same class, 1 where the votes are spread as
        evenly as possible.
    """
    passes = [np.asarray(p) for p in passes]
    if len(passes) < 2:
        raise ValueError("disagreement needs at least two prediction passes")
    shapes = {p.shape for p in passes}
    if len(shapes) != 1:
        raise ValueError(f"all passes must have the same shape, got {sorted(shapes)}")
    if passes[0].dtype.kind == "f":
        votes = np.stack([np.argmax(p, axis=class_axis) for p in passes])
        n_classes = passes[0].shape[class_axis]
    else:
        votes = np.stack(passes).astype(np.int64)
        n_classes = int(votes.max()) + 1
    n = len(passes)
    counts = np.stack([(votes == c).sum(axis=0) for c in range(max(n_classes, 2))])
    majority = counts.max(axis=0) / n
    lowest_majority = 1.0 / min(n, max(n_classes, 2))
    return np.clip((1.0 - majority) / (1.0 - lowest_majority), 0.0, 1.0).astype(np.float32)


def uncertainty_region(uncertainty: np.ndarray, labels: np.ndarray | None = None,
                       threshold: float = 0.05, margin_vox: int = 2) -> np.ndarray:
    """Voxels that matter for scoring: predicted foreground or uncertain, plus a margin.

    Parameters
    ----------
    uncertainty : np.ndarray
        Per-voxel uncertainty in ``[0, 1]``.
    labels : np.ndarray, optional
        Predicted labels (non-zero = foreground), same shape.
    threshold : float
        Voxels above it count as uncertain.
    margin_vox : int
        Dilation of the region, in voxels.

    Returns
    -------
    np.ndarray of bool
        The region; the whole image when it would be empty.
    """
    u = np.asarray(uncertainty)
    region = u > threshold
    if labels is not None:
        region |= np.asarray(labels) != 0
    if margin_vox > 0 and region.any():
        region = ndimage.binary_dilation(region, iterations=int(margin_vox))
    if not region.any():
        region = np.ones(u.shape, dtype=bool)
    return region


def image_uncertainty(uncertainty: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Score of one image: mean uncertainty over ``mask`` (default: all voxels)."""
    u = np.asarray(uncertainty, dtype=np.float64)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != u.shape:
            raise ValueError(f"mask shape {mask.shape} differs from uncertainty shape {u.shape}")
        if not mask.any():
            return 0.0
        u = u[mask]
    return float(u.mean()) if u.size else 0.0


def rank_images(scores: Mapping[str, float] | Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """``[(case id, score)]`` sorted most uncertain first (ties: by id, for a stable order)."""
    items = list(scores.items()) if isinstance(scores, Mapping) else list(scores)
    return sorted(((str(k), float(v)) for k, v in items), key=lambda kv: (-kv[1], kv[0]))


def uncertainty_from_prediction(prediction: Any) -> np.ndarray:
    """Per-voxel uncertainty from a prediction result.

    Accepts an object with an ``entropy`` attribute (used as is), with ``probabilities``
    (``(C, Z, Y, X)``, normalised entropy is computed), or a bare probability array.
    """
    entropy = getattr(prediction, "entropy", None)
    if entropy is not None:
        return np.asarray(entropy, dtype=np.float32)
    probabilities = getattr(prediction, "probabilities", None)
    if probabilities is None:
        if isinstance(prediction, np.ndarray):
            probabilities = prediction
        else:
            raise ValueError("the prediction carries neither entropy nor probabilities")
    return normalised_entropy(probabilities)


def rank_cases(
    case_ids: Sequence[str],
    uncertainty_of: Callable[[str], tuple[np.ndarray, np.ndarray | None] | np.ndarray],
    focus: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[tuple[str, float]]:
    """Score and rank unlabelled cases by model uncertainty, most informative first.

    Parameters
    ----------
    case_ids : sequence of str
        The pool (e.g. :meth:`Project.unlabelled_ids`).
    uncertainty_of : callable
        ``case_id -> uncertainty map`` or ``-> (uncertainty map, predicted labels)``; the caller
        runs the model (with or without TTA).
    focus : bool
        Score over :func:`uncertainty_region` (predicted or uncertain foreground) instead of the
        whole image.
    progress : callable, optional
        ``progress(done, total, case_id)`` after each case.
    """
    scores = {}
    for i, cid in enumerate(case_ids):
        out = uncertainty_of(cid)
        u, labels = out if isinstance(out, tuple) else (out, None)
        mask = uncertainty_region(u, labels) if focus else None
        scores[cid] = image_uncertainty(u, mask)
        if progress is not None:
            progress(i + 1, len(case_ids), cid)
    return rank_images(scores)


def slice_uncertainty(uncertainty: np.ndarray, axis: int = 0,
                      mask: np.ndarray | None = None) -> np.ndarray:
    """Mean uncertainty of each slice along ``axis``.

    With ``mask``, each slice's score is the sum over its masked voxels divided by the mean
    number of masked voxels per non-empty slice, so a slice with a large uncertain region ranks
    above a slice with a tiny but equally uncertain one (it costs the same to correct and
    teaches more).

    Returns
    -------
    np.ndarray
        float64, one score per slice (length ``uncertainty.shape[axis]``).
    """
    u = np.moveaxis(np.asarray(uncertainty, dtype=np.float64), axis, 0)
    flat = u.reshape(u.shape[0], -1)
    if mask is None:
        return flat.mean(axis=1)
    m = np.moveaxis(np.asarray(mask, dtype=bool), axis, 0).reshape(u.shape[0], -1)
    sums = (flat * m).sum(axis=1)
    counts = m.sum(axis=1)
    norm = counts[counts > 0].mean() if np.any(counts > 0) else 1.0
    return sums / norm


def rank_slices(
    scores: np.ndarray,
    n: int | None = None,
    exclude: Iterable[int] = (),
    min_gap: int = 1,
) -> list[int]:
    """Greedy pick of the highest-scoring slices, at least ``min_gap`` apart.

    Parameters
    ----------
    scores : np.ndarray
        One score per slice (e.g. :func:`slice_uncertainty` or a per-slice error).
    n : int, optional
        How many to return (default: as many as the gap allows).
    exclude : iterable of int
        Slices already annotated; never returned, and other picks keep ``min_gap`` from them
        too.
    min_gap : int
        Minimum index distance between picked slices (1 = neighbours allowed).

    Returns
    -------
    list of int
        Slice indices, best first. Slices with score 0 or less are not picked.
    """
    scores = np.asarray(scores, dtype=np.float64)
    taken = sorted({int(s) for s in exclude})
    blocked = np.zeros(scores.size, dtype=bool)
    gap = max(int(min_gap), 1)
    for s in taken:
        if 0 <= s < scores.size:
            blocked[max(0, s - gap + 1): s + gap] = True
    picks: list[int] = []
    for idx in np.argsort(-scores, kind="stable"):
        if n is not None and len(picks) >= n:
            break
        if blocked[idx] or scores[idx] <= 0:
            continue
        picks.append(int(idx))
        blocked[max(0, idx - gap + 1): idx + gap] = True
    return picks


# --------------------------------------------------------------------------------------------
# jobs: what to annotate next in a project (the Project dock runs these in a child process;
# ``napari-medseg suggest PROJECT`` prints them)


def suggest_cases(project_dir: str, device: str = "auto", keep: int = 1,
                  should_stop: Callable[[], bool] | None = None):
    """Rank a project's pool by the current model's uncertainty; a generator of events.

    Parameters
    ----------
    project_dir : str
        Project folder (:class:`~napari_medseg.dataset.project.Project`).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    keep : int
        How many of the top cases keep their prediction (labels and entropy) in the result.
    should_stop : callable, optional
        Checked between cases.

    Yields
    ------
    Event
        ``"start"``, one ``"step"`` per pool case, ``"finished"``/``"cancelled"``.

    Returns
    -------
    dict
        ``ranking`` (list of (case id, score), most informative first; without a model the pool
        in its order with score 0), ``model`` (version or None) and ``predictions``
        ``{case id: (labels uint8, entropy float32)}`` for the top ``keep`` cases.
    """
    from napari_medseg.dataset.project import Project
    from napari_medseg.events import Event

    project = Project.open(project_dir)
    pool = project.unlabelled_ids()
    if not pool:
        raise ValueError("The pool is empty: add images to the project first.")
    model_dir = project.model_dir()
    if model_dir is None:
        yield Event("finished", message=f"No model yet: {pool[0]} comes first.")
        return {"ranking": [(c, 0.0) for c in pool], "model": None, "predictions": {}}
    from napari_medseg.inference import load_model, predict_volume, resolve_device

    model = load_model(model_dir, device=resolve_device(device))
    yield Event("start", total=len(pool), message=f"Ranking {len(pool)} pool image(s)…")
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scores: dict[str, float] = {}
    for i, cid in enumerate(pool, start=1):
        if should_stop is not None and should_stop():
            yield Event("cancelled", message="Ranking cancelled.")
            return None
        res = predict_volume(model, project.load_image(cid), return_probabilities=False,
                             return_entropy=True)
        labels = np.asarray(res.labels, dtype=np.uint8)
        outputs[cid] = (labels, res.entropy)
        scores[cid] = image_uncertainty(res.entropy, uncertainty_region(res.entropy, labels))
        yield Event("step", step=i, total=len(pool), message=f"{i}/{len(pool)} ranked ({cid})")
    ranking = rank_images(scores)
    top = [cid for cid, _ in ranking[:max(int(keep), 0)]]
    result = {"ranking": ranking, "model": project.current_model,
              "predictions": {cid: outputs[cid] for cid in top}}
    yield Event("finished", result=result, message="Most informative: " + ", ".join(
        f"{c} ({s:.3f})" for c, s in ranking[:5]))
    return result


def suggest_slices(model_dir: str, volume: Any, axis: int = 0, n: int = 5,
                   exclude: Iterable[int] = (), min_gap: int = 2, entropy: np.ndarray | None = None,
                   device: str = "auto", should_stop: Callable[[], bool] | None = None,
                   exclude_axis: int | None = None):
    """The most uncertain slices of one image along ``axis``; a generator of events.

    ``exclude`` (slices already annotated) are indices along ``exclude_axis`` (default:
    ``axis``); marks along another axis say nothing about these slices and are ignored.

    Returns
    -------
    dict
        ``slices`` (indices, most uncertain first, at least ``min_gap`` apart, ``exclude`` left
        out) and ``entropy`` (the model's normalised entropy map, reusable next time).
    """
    from napari_medseg.events import Event

    if entropy is None:
        from napari_medseg.inference import predict_volume

        yield Event("message", message="Segmenting to find uncertain slices…")
        entropy = predict_volume(model_dir, volume, return_probabilities=False,
                                 return_entropy=True, device=device).entropy
    if should_stop is not None and should_stop():
        yield Event("cancelled", message="Cancelled.")
        return None
    if exclude_axis is not None and int(exclude_axis) != int(axis):
        exclude = ()
    scores = slice_uncertainty(entropy, axis, uncertainty_region(entropy))
    slices = rank_slices(scores, n=n, exclude=exclude or (), min_gap=min_gap)
    result = {"slices": slices, "entropy": entropy}
    yield Event("finished", result=result,
                message="Most uncertain slices: " + ", ".join(map(str, slices)))
    return result
