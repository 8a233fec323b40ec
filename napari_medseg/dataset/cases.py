"""In-memory training cases: :class:`Case`, :class:`Dataset` and :class:`DatasetError`.

A training case is a :class:`Case`: the image :class:`~napari_medseg.io.volume.Volume` (plus optional
extra channels), an integer label array on the same grid, and optionally a boolean
``annotated`` mask and a boolean ``roi`` mask. Voxels whose label is
:data:`~napari_medseg.events.IGNORE_LABEL` (255) or whose ``annotated`` value is False were not
annotated by anyone: they add nothing to the loss (sparse annotation, nnU-Net's "ignore label").
Voxels outside ``roi`` (a fixed field of view, e.g. the circular aperture of a fundus camera, read
from ``masksTr/``) add nothing to the loss either, and metrics leave them out too.

Reading and writing cases as dataset folders is :mod:`napari_medseg.dataset.msd`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.volume import Volume


class DatasetError(ValueError):
    """A dataset folder or in-memory case list cannot be used for training."""


@dataclass
class Case:
    """One training (or validation) case held in memory.

    Parameters
    ----------
    case_id : str
        Identifier (file name without extension for MSD cases).
    image : Volume
        The image, ``(Z, Y, X)`` or ``(Y, X)``, with spacing (mm) and affine.
    labels : np.ndarray or None
        Integer labels on the image grid; ``IGNORE_LABEL`` (255) marks unannotated voxels.
        None for unlabelled cases (inference only).
    annotated : np.ndarray or None
        Optional boolean mask, same shape: False = nobody annotated this voxel (e.g. only a few
        slices were drawn). Combined with ``labels`` by :meth:`training_labels`.
    extra_channels : tuple of Volume
        Further input channels (e.g. T2 next to T1) on the same grid.
    roi : np.ndarray or None
        Optional boolean region-of-interest mask, same shape: True = inside the field of view
        (e.g. the circular aperture of a fundus camera, ``masksTr/CASE.png``). Voxels outside
        are excluded from the loss (:meth:`training_labels`) and must be excluded from metrics
        (:meth:`metric_mask`). Unlike ``annotated`` it is not a gap in the annotation but a
        part of the picture that holds no anatomy; predictions outside it are meaningless.
    """

    case_id: str
    image: Volume
    labels: np.ndarray | None = None
    annotated: np.ndarray | None = None
    extra_channels: tuple[Volume, ...] = field(default_factory=tuple)
    roi: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.image, Volume):
            self.image = Volume(np.asarray(self.image))
        if self.image.rgb or any(ch.rgb for ch in self.extra_channels):
            # A colour picture is three input channels (Volume.channel_volumes).
            split = [c for v in (self.image, *self.extra_channels) for c in v.channel_volumes()]
            self.image, self.extra_channels = split[0], tuple(split[1:])
        shape = self.image.shape
        for extra in self.extra_channels:
            if extra.shape != shape:
                raise DatasetError(
                    f"Case {self.case_id}: channel shape {extra.shape} differs from image shape {shape}."
                )
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.shape != shape:
                raise DatasetError(
                    f"Case {self.case_id}: label shape {labels.shape} differs from image shape {shape}."
                )
            if labels.dtype.kind == "f":
                if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
                    raise DatasetError(f"Case {self.case_id}: labels must be whole numbers.")
            if labels.size and (labels.min() < 0 or labels.max() > IGNORE_LABEL):
                raise DatasetError(
                    f"Case {self.case_id}: label values must lie in 0..{IGNORE_LABEL}, "
                    f"got {labels.min()}..{labels.max()}."
                )
            self.labels = labels.astype(np.uint8, copy=False)
        if self.annotated is not None:
            self.annotated = self._mask_on_grid(self.annotated, "annotated-voxel")
        if self.roi is not None:
            roi = self._mask_on_grid(self.roi, "region-of-interest")
            if not roi.any():
                raise DatasetError(f"Case {self.case_id}: the region-of-interest mask is empty.")
            self.roi = roi

    def _mask_on_grid(self, mask: np.ndarray, what: str) -> np.ndarray:
        """``mask`` as a bool array, refused unless it has the image's shape."""
        out = np.asarray(mask, dtype=bool)
        if out.shape != self.image.shape:
            raise DatasetError(
                f"Case {self.case_id}: {what} mask shape {out.shape} differs "
                f"from image shape {self.image.shape}."
            )
        return out

    @property
    def channels(self) -> list[Volume]:
        """All input channels, the image first."""
        return [self.image, *self.extra_channels]

    def training_labels(self) -> np.ndarray:
        """Labels with every unannotated voxel and every voxel outside ``roi`` set to
        ``IGNORE_LABEL`` (uint8, image shape): what the loss sees."""
        out = self.stored_labels()
        if self.roi is None:
            return out
        out = out.copy() if out is self.labels else out
        out[~self.roi] = IGNORE_LABEL
        return out

    def stored_labels(self) -> np.ndarray:
        """Labels as a label file stores them: unannotated voxels ``IGNORE_LABEL``, the
        region of interest not applied (it is kept in its own mask file)."""
        if self.labels is None:
            raise DatasetError(f"Case {self.case_id} has no labels.")
        if self.annotated is None:
            return self.labels
        out = self.labels.copy()
        out[~self.annotated] = IGNORE_LABEL
        return out

    def metric_mask(self) -> np.ndarray | None:
        """Boolean mask of the voxels metrics count (the ``roi``), or None for all voxels."""
        return self.roi

    def annotated_fraction(self) -> float:
        """Fraction of the voxels inside the region of interest (all voxels when there is none)
        that carry a real annotation (0..1)."""
        valid = self.training_labels() != IGNORE_LABEL
        if self.roi is None:
            return float(np.mean(valid))
        return float(valid[self.roi].mean())


@dataclass
class Dataset:
    """A set of labelled cases plus what the labels mean.

    Attributes
    ----------
    cases : list of Case
    label_names : dict
        ``{label value: name}``, background (0) included.
    modality : str
        Modality of the first channel (``"CT"``, ``"MR"`` ...), used to choose normalisation.
    channel_names : list of str
    name : str
        Task name (model cards record it so a model from another task is recognised).
    root : str or None
        Folder the dataset was read from.
    """

    cases: list[Case]
    label_names: dict[int, str]
    modality: str = "unknown"
    channel_names: list[str] = field(default_factory=lambda: ["image"])
    name: str = "dataset"
    root: str | None = None

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]

    @property
    def num_classes(self) -> int:
        """Number of output classes = highest label value + 1."""
        return max(self.label_names) + 1

    def subset(self, case_ids: Sequence[str]) -> Dataset:
        """The cases with these ids (same order as given)."""
        by_id = {c.case_id: c for c in self.cases}
        missing = [cid for cid in case_ids if cid not in by_id]
        if missing:
            raise DatasetError(f"Unknown case ids: {', '.join(missing[:5])}")
        return Dataset([by_id[c] for c in case_ids], dict(self.label_names), self.modality,
                       list(self.channel_names), self.name, self.root)

