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
        clean = torch.where(valid, target, torch.zeros_like(target))
        loss = logits.new_zeros(())
        if self.kind in ("dice_ce", "ce"):
            loss = loss + F.cross_entropy(logits, target, ignore_index=self.ignore_index)
        if self.kind in ("focal", "dice_focal"):
            logp = F.log_softmax(logits, dim=1).gather(1, clean.unsqueeze(1)).squeeze(1)
            focal = -((1.0 - logp.exp()) ** self.focal_gamma) * logp
            loss = loss + (focal * valid).sum() / n_valid
        if self.kind in ("dice_ce", "dice", "jaccard", "dice_focal"):
            loss = loss + self._overlap_loss(logits, clean, valid)
        return loss

    def _overlap_loss(self, logits: torch.Tensor, clean: torch.Tensor, valid: torch.Tensor):
        num_classes = logits.shape[1]
        probs = torch.softmax(logits, dim=1)
        mask = valid.unsqueeze(1).to(probs.dtype)
        onehot = F.one_hot(clean, num_classes).movedim(-1, 1).to(probs.dtype) * mask
        probs = probs * mask
        reduce_dims = [0, *range(2, logits.ndim)]
        inter = (probs * onehot).sum(reduce_dims)
        psum = probs.sum(reduce_dims)
        gsum = onehot.sum(reduce_dims)
        if self.kind == "jaccard":
            score = (inter + self.smooth) / (psum + gsum - inter + self.smooth)
        else:
            score = (2 * inter + self.smooth) / (psum + gsum + self.smooth)
        fg = slice(1, None) if num_classes > 1 else slice(0, None)
        present = gsum[fg] > 0
        if not present.any():
            return logits.new_zeros(())
        return 1.0 - score[fg][present].mean()
