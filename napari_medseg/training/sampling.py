"""Patch sampling with foreground oversampling (nnU-Net style).

Cases are held preprocessed in memory as ``image (C, *spatial)`` float32 and ``labels (*spatial)``
uint8. A 2D sampler draws slices along axis 0 of 3D volumes.

On 2D pictures (``(C, Y, X)`` images) two more rules apply. Half of the foreground-centred
patches are centred on a pixel of the class's *border* (a foreground pixel next to another
class), so a lesion that fills much of the picture is seen with its edge, not only from inside;
thin structures such as vessels are nearly all border and keep being sampled as before.
Random (not foreground-centred) patches are centred on an annotated pixel when part of the
picture is not annotated (e.g. outside a fundus photo's field of view), so no step is spent on
pixels that add nothing to the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_medseg.events import IGNORE_LABEL


class PatchSampler:
    """Draw training patches, a fraction of them centred on annotated foreground.

    Parameters
    ----------
    images : sequence of np.ndarray
        ``(C, Z, Y, X)`` (or ``(C, Y, X)``) float32 per case.
    labels : sequence of np.ndarray
        Matching ``(Z, Y, X)`` uint8 labels (``IGNORE_LABEL`` = unannotated).
    patch_size : sequence of int
        Patch shape: 3 values (3D) or 2 values (2D, slices along axis 0 of 3D volumes).
    foreground_fraction : float
        Probability that a patch is centred on a random voxel of a random foreground class
        present in the case (otherwise a uniformly random position).
    max_points_per_class : int
        Foreground voxel positions remembered per class and case.
    border_fraction : float
        2D pictures: share of foreground-centred patches centred on a class border pixel.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        patch_size: Sequence[int],
        foreground_fraction: float = 0.33,
        max_points_per_class: int = 10000,
        seed: int | None = 0,
        border_fraction: float = 0.5,
    ) -> None:
        if not images:
            raise ValueError("No training cases to sample from.")
        self.images = list(images)
        self.labels = list(labels)
        self.patch = tuple(int(p) for p in patch_size)
        self.slice_mode = len(self.patch) == self.images[0].ndim - 2
        self.foreground_fraction = float(foreground_fraction)
        self.rng = np.random.default_rng(seed)
        self.picture_mode = len(self.patch) == 2 and self.images[0].ndim == 3
        self.border_fraction = float(border_fraction) if self.picture_mode else 0.0
        self.fg_points: list[dict[int, np.ndarray]] = []
        self.border_points: list[dict[int, np.ndarray]] = []
        self.annotated_points: list[np.ndarray | None] = []
        self.annotated_slices: list[np.ndarray | None] = []
        for lab in self.labels:
            points, borders = {}, {}
            for value in np.unique(lab):
                if value == 0 or value == IGNORE_LABEL:
                    continue
                mask = lab == value
                points[int(value)] = self._subsample(np.argwhere(mask), max_points_per_class)
                if self.picture_mode:
                    edge = self._border(mask)
                    if edge.any():
                        borders[int(value)] = self._subsample(np.argwhere(edge),
                                                              max_points_per_class)
            self.fg_points.append(points)
            self.border_points.append(borders)
            annotated = None
            if self.picture_mode:
                known = lab != IGNORE_LABEL
                if known.any() and known.mean() < 0.9:
                    annotated = self._subsample(np.argwhere(known), 4 * max_points_per_class)
            self.annotated_points.append(annotated)
            if self.slice_mode:
                annotated = np.flatnonzero((lab != IGNORE_LABEL).reshape(lab.shape[0], -1).any(1))
                self.annotated_slices.append(annotated if annotated.size else None)

    def _subsample(self, coords: np.ndarray, n: int) -> np.ndarray:
        if len(coords) > n:
            coords = coords[self.rng.choice(len(coords), n, replace=False)]
        return coords

    @staticmethod
    def _border(mask: np.ndarray) -> np.ndarray:
        """Pixels of ``mask`` with a 4-neighbour outside it (the picture's edge does not count)."""
        from scipy import ndimage

        return mask & ~ndimage.binary_erosion(mask, border_value=1)

    def _start(self, size: int, patch: int, centre: int | None) -> int:
        low, high = min(0, size - patch), max(0, size - patch)
        if centre is None:
            return int(self.rng.integers(low, high + 1))
        start = centre - int(self.rng.integers(0, patch))
        return int(np.clip(start, low, high))

    @staticmethod
    def _crop(array: np.ndarray, starts: Sequence[int], patch: Sequence[int], fill) -> np.ndarray:
        """Crop ``array[..., start:start+patch]`` on the trailing axes, padding with ``fill``."""
        lead = array.shape[: array.ndim - len(patch)]
        out = np.full((*lead, *patch), fill, dtype=array.dtype)
        src, dst = [Ellipsis], [Ellipsis]
        for start, p, n in zip(starts, patch, array.shape[-len(patch):], strict=True):
            a, b = max(start, 0), min(start + p, n)
            src.append(slice(a, b))
            dst.append(slice(a - start, b - start))
        out[tuple(dst)] = array[tuple(src)]
        return out

    def sample_one(self, force_foreground: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One patch: ``image (C, *patch)`` float32 and ``labels (*patch)`` uint8."""
        i = int(self.rng.integers(len(self.images)))
        image, lab, points = self.images[i], self.labels[i], self.fg_points[i]
        fg = force_foreground if force_foreground is not None else (
            self.rng.random() < self.foreground_fraction)
        centre = None
        if fg and points:
            value = list(points)[int(self.rng.integers(len(points)))]
            pool = points[value]
            borders = self.border_points[i]
            if value in borders and self.rng.random() < self.border_fraction:
                pool = borders[value]
            centre = pool[int(self.rng.integers(len(pool)))]
        elif self.picture_mode and self.annotated_points[i] is not None:
            known = self.annotated_points[i]
            centre = known[int(self.rng.integers(len(known)))]
        spatial = lab.shape
        if self.slice_mode:
            if centre is not None:
                z = int(centre[0])
            elif self.annotated_slices[i] is not None:
                z = int(self.rng.choice(self.annotated_slices[i]))
            else:
                z = int(self.rng.integers(spatial[0]))
            image, lab = image[:, z], lab[z]
            spatial, centre = spatial[1:], (None if centre is None else centre[1:])
        starts = [self._start(n, p, None if centre is None else int(c))
                  for n, p, c in zip(spatial, self.patch, centre if centre is not None
                                     else [None] * len(spatial), strict=True)]
        return self._crop(image, starts, self.patch, 0.0), self._crop(lab, starts, self.patch, 0)

    def sample_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``(B, C, *patch)`` float32 and ``(B, *patch)`` int64 (as torch tensors).

        At least one patch in every batch (the last third, rounded up) is foreground-centred.
        """
        n_forced = int(np.ceil(batch_size * self.foreground_fraction)) if self.foreground_fraction > 0 else 0
        pairs = [self.sample_one(True if b >= batch_size - n_forced else False)
                 for b in range(batch_size)]
        images = torch.from_numpy(np.stack([p[0] for p in pairs]))
        labels = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        return images, labels
