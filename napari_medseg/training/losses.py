"""Segmentation losses that ignore unannotated voxels (``IGNORE_LABEL``).

MONAI's ``DiceCELoss`` has no ignore index for its Dice part, so the losses here mask both
terms explicitly: voxels labelled ``ignore_index`` get zero weight in cross-entropy, focal and the
soft Dice/Jaccard sums. Dice is a *batch* Dice over the foreground classes (nnU-Net's choice,
stable with small structures); a class absent from the whole batch's annotated voxels is left out
of the Dice mean (cross-entropy still penalises false positives there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from napari_medseg.events import IGNORE_LABEL

LOSSES = ("dice_ce", "dice", "jaccard", "ce", "focal", "dice_focal")


class SegmentationLoss(torch.nn.Module):
    """Masked Dice / Jaccard / cross-entropy / focal loss and their sums.

    Parameters
    ----------
    kind : str
        One of :data:`LOSSES`; ``"dice_ce"`` (default) = soft Dice + cross-entropy.
    ignore_index : int
        Label value excluded from every term.
    smooth : float
        Additive smoothing of the soft Dice / Jaccard ratio.
    focal_gamma : float
        Focusing parameter of the focal loss.
    deep_supervision_weights : sequence of float, optional
        Weights for stacked deep-supervision outputs ``(B, heads, C, ...)``; halved per head by
        default.

    Call with ``logits`` ``(B, C, *spatial)`` (or ``(B, heads, C, *spatial)``) and integer
    ``target`` ``(B, *spatial)`` or ``(B, 1, *spatial)``.
    """

    def __init__(
        self,
        kind: str = "dice_ce",
        ignore_index: int = IGNORE_LABEL,
        smooth: float = 1e-5,
        focal_gamma: float = 2.0,
        deep_supervision_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"Unknown loss {kind!r}; choose one of {', '.join(LOSSES)}.")
        self.kind = kind
        self.ignore_index = ignore_index
        self.smooth = smooth
        self.focal_gamma = focal_gamma
        self.ds_weights = deep_supervision_weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == logits.ndim:  # (B, 1, *spatial)
            target = target[:, 0]
        if logits.ndim == target.ndim + 2:  # deep supervision: (B, heads, C, *spatial)
            heads = logits.shape[1]
            weights = list(self.ds_weights or [0.5**i for i in range(heads)])[:heads]
            total = sum(weights)
            return sum(w / total * self._single(logits[:, i], target)
                       for i, w in enumerate(weights))
        return self._single(logits, target)

    def _single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        target = target.long()
        valid = target != self.ignore_index
        n_valid = valid.sum()
        if n_valid == 0:  # nothing annotated in this batch: no signal, keep the graph
            return logits.sum() * 0.0
        dense = bool(n_valid == valid.numel())  # no ignored voxel: skip every mask product
        clean = target if dense else torch.where(valid, target, torch.zeros_like(target))
        # one log-softmax feeds cross-entropy, focal and (through exp) the soft overlap terms
        logp = F.log_softmax(logits, dim=1)
        loss = logits.new_zeros(())
        if self.kind in ("dice_ce", "ce"):
            loss = loss + F.nll_loss(logp, target, ignore_index=self.ignore_index)
        if self.kind in ("focal", "dice_focal"):
            logp_t = logp.gather(1, clean.unsqueeze(1)).squeeze(1)
            focal = -((1.0 - logp_t.exp()) ** self.focal_gamma) * logp_t
            loss = loss + (focal if dense else focal * valid).sum() / n_valid
        if self.kind in ("dice_ce", "dice", "jaccard", "dice_focal"):
            loss = loss + self._overlap_loss(logp.exp(), clean, None if dense else valid)
        return loss

    def _overlap_loss(self, probs: torch.Tensor, clean: torch.Tensor,
                      valid: torch.Tensor | None) -> torch.Tensor:
        """Batch soft Dice / Jaccard over the foreground classes.

        Per class: intersection = sum of the predicted probability of the true class over the
        voxels of that class (a gather and an index-add, no one-hot volume), predicted sum =
        sum of the class probability, ground-truth sum = voxel count. ``valid`` (None = all)
        masks unannotated voxels out of all three.
        """
        num_classes = probs.shape[1]
        reduce_dims = [0, *range(2, probs.ndim)]
        p_true = probs.gather(1, clean.unsqueeze(1)).squeeze(1)
        if valid is None:
            psum = probs.sum(reduce_dims)
            counted = clean.reshape(-1)
        else:
            p_true = p_true * valid
            psum = (probs * valid.unsqueeze(1)).sum(reduce_dims)
            counted = clean[valid]
        inter = probs.new_zeros(num_classes).index_add(0, clean.reshape(-1), p_true.reshape(-1))
        gsum = torch.bincount(counted, minlength=num_classes)[:num_classes].to(probs.dtype)
        if self.kind == "jaccard":
            score = (inter + self.smooth) / (psum + gsum - inter + self.smooth)
        else:
            score = (2 * inter + self.smooth) / (psum + gsum + self.smooth)
        fg = slice(1, None) if num_classes > 1 else slice(0, None)
        present = gsum[fg] > 0
        if not present.any():
            return probs.new_zeros(())
        return 1.0 - score[fg][present].mean()
