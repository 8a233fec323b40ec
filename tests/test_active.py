"""Active-learning scores: entropy, TTA disagreement, image and slice ranking."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medseg.active import (
    image_uncertainty,
    normalised_entropy,
    rank_cases,
    rank_images,
    rank_slices,
    slice_uncertainty,
    tta_disagreement,
    uncertainty_from_prediction,
    uncertainty_region,
)


def _probs(fg_prob: np.ndarray) -> np.ndarray:
    return np.stack([1 - fg_prob, fg_prob])


def test_entropy_limits():
    certain = _probs(np.zeros((2, 3, 3)))
    assert np.allclose(normalised_entropy(certain), 0)
    uniform = np.full((3, 2, 2, 2), 1 / 3)
    assert np.allclose(normalised_entropy(uniform), 1)
    half = _probs(np.full((1, 2, 2), 0.5))
    assert np.allclose(normalised_entropy(half), 1)
    with pytest.raises(ValueError, match="at least 2 classes"):
        normalised_entropy(np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        normalised_entropy(np.full((2, 2), -1.0))


def test_tta_disagreement():
    a = np.zeros((2, 2), np.uint8)
    b = a.copy()
    b[0, 0] = 1
    d = tta_disagreement([a, a, b, b])
    assert d[0, 0] == pytest.approx(1.0)
    assert d[1, 1] == 0
    probs = [_probs(np.full((2, 2), p)) for p in (0.2, 0.8)]
    assert np.allclose(tta_disagreement(probs), 1.0)
    with pytest.raises(ValueError, match="at least two"):
        tta_disagreement([a])


def test_high_entropy_case_ranks_first():
    rng = np.random.default_rng(0)
    maps = {}
    for cid, level in (("sure", 0.02), ("unsure", 0.4), ("medium", 0.15)):
        fg = np.zeros((8, 16, 16))
        fg[3:5, 6:10, 6:10] = 1 - level  # confident-ish foreground blob
        fg = np.clip(fg + rng.uniform(0, level, fg.shape), 0, 1)
        maps[cid] = _probs(fg)

    def uncertainty_of(cid):
        p = maps[cid]
        return normalised_entropy(p), np.argmax(p, axis=0)

    seen = []
    ranked = rank_cases(list(maps), uncertainty_of, progress=lambda i, n, c: seen.append(c))
    assert [c for c, _ in ranked] == ["unsure", "medium", "sure"]
    assert ranked[0][1] > ranked[1][1] > ranked[2][1]
    assert seen == list(maps)


def test_focus_region_is_not_diluted_by_background():
    u_small = np.zeros((10, 50, 50), np.float32)
    u_small[5, 20:25, 20:25] = 0.8
    u_big = np.zeros((10, 10, 10), np.float32)
    u_big[5, 2:7, 2:7] = 0.5
    whole = image_uncertainty(u_small), image_uncertainty(u_big)
    assert whole[0] < whole[1]  # plain mean: the big background hides the uncertain spot
    focused = (image_uncertainty(u_small, uncertainty_region(u_small)),
               image_uncertainty(u_big, uncertainty_region(u_big)))
    assert focused[0] > focused[1]


def test_rank_images_order_and_ties():
    assert rank_images({"b": 0.5, "a": 0.5, "c": 0.9}) == [("c", 0.9), ("a", 0.5), ("b", 0.5)]


def test_slice_ranking_with_gap_and_exclusions():
    u = np.zeros((10, 4, 4))
    for z, val in ((2, 0.9), (3, 0.85), (7, 0.5), (8, 0.2)):
        u[z] = val
    scores = slice_uncertainty(u, axis=0)
    assert scores.shape == (10,)
    assert rank_slices(scores) == [2, 3, 7, 8]
    assert rank_slices(scores, min_gap=2) == [2, 7]
    assert rank_slices(scores, n=1, exclude=[2]) == [3]
    assert rank_slices(scores, exclude=[2], min_gap=2) == [7]
    # along another axis
    assert rank_slices(slice_uncertainty(np.moveaxis(u, 0, 2), axis=2), n=2) == [2, 3]


def test_slice_uncertainty_with_mask_prefers_large_regions():
    u = np.zeros((3, 10, 10))
    u[0, :2, :2] = 1.0   # tiny, very uncertain
    u[1, :, :5] = 0.6    # large, fairly uncertain
    mask = u > 0
    s = slice_uncertainty(u, 0, mask)
    assert s[1] > s[0] > s[2] == 0


def test_uncertainty_from_prediction_variants():
    class WithEntropy:
        entropy = np.full((2, 2), 0.3)

    class WithProbs:
        entropy = None
        probabilities = _probs(np.full((2, 2), 0.5))

    assert np.allclose(uncertainty_from_prediction(WithEntropy()), 0.3)
    assert np.allclose(uncertainty_from_prediction(WithProbs()), 1.0)
    assert np.allclose(uncertainty_from_prediction(_probs(np.zeros((2, 2)))), 0.0)
    with pytest.raises(ValueError, match="neither"):
        uncertainty_from_prediction(object())


def test_suggest_command_ranks_the_pool(tmp_path, capsys):
    """``napari-medseg suggest PROJECT``: without a model, the pool in its order."""
    import numpy as np

    from napari_medseg.cli import main
    from napari_medseg.dataset.project import Project
    from napari_medseg.io.volume import Volume

    project = Project.create(tmp_path / "p", "t", {1: "organ"})
    ids = [project.add_unlabelled(Volume(np.random.default_rng(s).normal(size=(4, 8, 8))
                                         .astype("float32"), name=f"scan{s}")) for s in range(3)]
    assert main(["suggest", str(tmp_path / "p"), "--quiet"]) == 0
    out = capsys.readouterr()
    assert [line.split("\t")[0] for line in out.out.strip().splitlines()] == ids
    assert "no model yet" in out.err
    assert main(["suggest", str(tmp_path / "nothing")]) == 2


def test_suggest_slices_ignores_marks_made_along_another_axis():
    from napari_medseg.active import suggest_slices
    from napari_medseg.cycle import run_to_end

    entropy = np.zeros((10, 12, 14), np.float32)
    entropy[3] = 0.9  # slice 3 along axis 0 is the most uncertain
    entropy[7] = 0.8

    def best(**kw):
        return run_to_end(suggest_slices("unused", None, axis=0, n=1, min_gap=1,
                                         entropy=entropy, **kw))["slices"]

    assert best() == [3]
    assert best(exclude=[3]) == [7]  # slice 3 is annotated already
    assert best(exclude=[3], exclude_axis=0) == [7]
    assert best(exclude=[3], exclude_axis=2) == [3]  # marks along x say nothing about z slices
