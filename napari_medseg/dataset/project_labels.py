"""Labels of a project's cases: accepting (sparse) labels as training cases, autosaved drafts,
reading labels back, and the annotation cost.

:class:`ProjectLabels` is mixed into :class:`~napari_medseg.dataset.project.Project`; its methods
are documented there as the project's own. :func:`sparse_labels` turns labels drawn on a few
slices into the stored form: every voxel outside the annotated slices becomes
:data:`~napari_medseg.events.IGNORE_LABEL`, which training ignores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.dataset.msd import Case, read_image
from napari_medseg.dataset.project_records import CaseRecord
from napari_medseg.dataset.project_store import (
    STATUS_ACCEPTED,
    STATUS_DRAFT,
    STATUS_UNLABELLED,
    ProjectError,
    ProjectLock,
    _fsync_dir,
    _now,
    atomic_write_volume,
    case_file_ending,
)
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.volume import Volume


def sparse_labels(labels: np.ndarray, annotated_slices: Sequence[int] | None,
                  slice_axis: int = 0) -> np.ndarray:
    """Labels with every voxel outside ``annotated_slices`` set to IGNORE_LABEL (uint8 copy).

    Parameters
    ----------
    labels : np.ndarray
        Integer labels ``(Z, Y, X)`` (values 0..254).
    annotated_slices : sequence of int or None
        Indices along ``slice_axis`` that were annotated; None = the whole volume.
    slice_axis : int
        Array axis the slices are taken along.
    """
    labels = np.asarray(labels)
    out = labels.astype(np.uint8, copy=True)
    if annotated_slices is None:
        return out
    n = labels.shape[slice_axis]
    keep = np.zeros(n, dtype=bool)
    for s in annotated_slices:
        s = int(s)
        if not 0 <= s < n:
            raise ProjectError(
                f"Annotated slice {s} does not exist: the image has {n} slices along axis "
                f"{slice_axis}."
            )
        keep[s] = True
    shape = [1] * labels.ndim
    shape[slice_axis] = n
    out[~np.broadcast_to(keep.reshape(shape), labels.shape)] = IGNORE_LABEL
    return out



class ProjectLabels:
    """The labelling part of :class:`~napari_medseg.dataset.project.Project`."""

    root: Path
    _meta: dict[str, Any]
    _lock: ProjectLock

    if TYPE_CHECKING:
        classes: dict[int, dict[str, str]]
        modality: str
        slice_axis: int

        def _update(self, change: Callable[[dict[str, Any]], Any], action: str | None = None,
                    details: dict[str, Any] | None = None) -> Any: ...

        def reload(self) -> None: ...

        def accepted_ids(self) -> list[str]: ...

        def case_info(self, case_id: str) -> dict[str, Any]: ...

        def image_path(self, case_id: str) -> Path: ...

        def label_path(self, case_id: str) -> Path: ...

        def draft_path(self, case_id: str) -> Path: ...

        def load_image(self, case_id: str) -> Volume: ...

        def find_case(self, image: Volume | str | os.PathLike) -> str | None: ...

        def add_unlabelled(self, image: Volume | str | os.PathLike,
                           case_id: str | None = None) -> str: ...

        def _resolve_case(self, image: Volume, case_id: str | None) -> tuple[str, bool]: ...

        def _check_image(self, image: Volume, case_id: str) -> None: ...

        def _write_dataset_json(self) -> None: ...

    def accept_case(
        self,
        image: Volume,
        labels: np.ndarray,
        annotated_slices: Sequence[int] | None = None,
        case_id: str | None = None,
        slice_axis: int | None = None,
    ) -> str:
        """Store an image and its (corrected) labels as a training case.

        Parameters
        ----------
        image : Volume
            The 3D image ``(Z, Y, X)`` the labels were drawn on.
        labels : np.ndarray
            Integer labels, same shape, values 0..254 (255 = not annotated is kept as such).
        annotated_slices : sequence of int, optional
            Sparse case: only these slices (along ``slice_axis``) were annotated; every other
            voxel is stored as IGNORE_LABEL and ignored by training. None = whole volume.
        case_id : str, optional
            Reuse / choose the id; default: the matching existing case or a new id from the name.
        slice_axis : int, optional
            Axis of ``annotated_slices`` (default: the project's).

        Returns
        -------
        str
            The case id.

        Raises
        ------
        ProjectError
            Shape mismatch, labels outside 0..255, class values the project does not define,
            or an empty annotation.
        """
        if not isinstance(image, Volume):
            raise ProjectError("accept_case needs the image as a Volume (with its geometry).")
        labels = np.asarray(labels)
        if labels.shape != image.shape:
            raise ProjectError(
                f"The labels (shape {labels.shape}) do not match the image {image.name} "
                f"(shape {image.shape})."
            )
        if labels.dtype.kind == "f" and np.any(labels != np.round(labels)):
            raise ProjectError("Labels must be whole numbers (class values).")
        if labels.size and (labels.min() < 0 or labels.max() > IGNORE_LABEL):
            raise ProjectError(f"Label values must lie in 0..{IGNORE_LABEL}.")
        axis = self.slice_axis if slice_axis is None else int(slice_axis)
        if axis not in range(image.ndim):
            raise ProjectError(f"slice_axis {axis} does not exist for a {image.ndim}D image.")
        stored = sparse_labels(labels, annotated_slices, axis)
        present = set(np.unique(stored).tolist()) - {0, IGNORE_LABEL}
        unknown = sorted(present - set(self.classes))
        if unknown:
            known = ", ".join(f"{k}={v['name']}" for k, v in self.classes.items())
            raise ProjectError(
                f"The labels contain value(s) {unknown} that the project's classes do not define "
                f"({known})."
            )
        if np.all(stored == IGNORE_LABEL):
            raise ProjectError("Nothing is annotated: mark at least one slice as annotated.")
        with self._lock:  # one step across processes (ids, files, registry)
            self.reload()
            return self._accept_locked(image, stored, annotated_slices, case_id, axis)

    def _accept_locked(self, image: Volume, stored: np.ndarray,
                       annotated_slices: Sequence[int] | None, case_id: str | None,
                       axis: int) -> str:
        cid, is_new = self._resolve_case(image, case_id)
        self._check_image(image, cid)
        old = self._meta["cases"].get(cid)
        ending = (old or {}).get("file_ending") or case_file_ending(image)
        image_dst = self.root / "imagesTr" / f"{cid}{ending}"
        pool_image = self.root / "imagesTs" / f"{cid}{ending}"
        if pool_image.is_file() and not image_dst.exists():
            os.replace(pool_image, image_dst)
            _fsync_dir(image_dst.parent)
        elif not image_dst.exists():
            atomic_write_volume(image, image_dst, labels=False)
        atomic_write_volume(image.with_array(stored), self.root / "labelsTr" / f"{cid}{ending}",
                            labels=True)
        slices = None if annotated_slices is None else sorted({int(s) for s in annotated_slices})
        record = (CaseRecord.from_dict(old) if old
                  else CaseRecord.for_volume(image, STATUS_ACCEPTED, self.slice_axis))
        record.mark_accepted(slices, axis)
        entry = record.to_dict()

        def change(meta: dict[str, Any]) -> None:
            meta["cases"][cid] = entry

        n_fg = int(np.count_nonzero((stored != 0) & (stored != IGNORE_LABEL)))
        self._update(change, "accept", {
            "case": cid, "annotated_slices": None if slices is None else len(slices),
            "foreground_voxels": n_fg, "new": is_new})
        draft = self.draft_path(cid)
        if draft.exists():
            draft.unlink()
        if pool_image.exists() and image_dst.exists():
            pool_image.unlink()
        self._write_dataset_json()
        return cid

    def autosave_labels(
        self,
        case_id: str | None,
        labels: np.ndarray,
        annotated_slices: Sequence[int] | None = None,
        image: Volume | None = None,
    ) -> str:
        """Save work-in-progress labels of a case (crash-safe; restored by :meth:`load_labels`).

        Parameters
        ----------
        case_id : str or None
            The case; None = find or add it from ``image``.
        labels : np.ndarray
            Current labels, image shape (0 = background / not drawn).
        annotated_slices : sequence of int, optional
            Slices marked as annotated so far (kept with the draft).
        image : Volume, optional
            Needed when the case is not in the project yet (it is added to the pool).

        Returns
        -------
        str
            The case id.
        """
        labels = np.asarray(labels)
        if labels.size and (labels.min() < 0 or labels.max() > IGNORE_LABEL):
            raise ProjectError(f"Label values must lie in 0..{IGNORE_LABEL - 1} to be saved in a "
                               "project.")
        if case_id is None or case_id not in self._meta["cases"]:
            if image is None:
                raise ProjectError(
                    f"Case {case_id!r} is not in the project; pass the image to add it."
                )
            if case_id is None:
                case_id = self.find_case(image)
            if case_id is None or case_id not in self._meta["cases"]:
                case_id = self.add_unlabelled(image, case_id)
        info = self._meta["cases"][case_id]
        labels = np.asarray(labels)
        if list(labels.shape) != list(info["shape"]):
            raise ProjectError(
                f"The labels (shape {labels.shape}) do not match case {case_id} "
                f"(shape {tuple(info['shape'])})."
            )
        reference = image if image is not None else self._geometry_volume(case_id, labels)
        atomic_write_volume(reference.with_array(labels.astype(np.uint8, copy=False)),
                            self.draft_path(case_id), labels=True)
        slices = None if annotated_slices is None else sorted({int(s) for s in annotated_slices})

        def change(meta: dict[str, Any]) -> None:
            entry = meta["cases"][case_id]
            entry["draft_saved"] = _now()
            entry["draft_slices"] = slices
            if entry["status"] == STATUS_UNLABELLED:
                entry["status"] = STATUS_DRAFT

        self._update(change)
        return case_id

    def _geometry_volume(self, case_id: str, labels: np.ndarray) -> Volume:
        """A Volume with the case's stored geometry (read from the header only)."""
        from napari_medseg.io.nifti import nifti_header_summary

        path = self.image_path(case_id)
        if not path.name.endswith(".nii.gz"):
            image = read_image(path)
            return Volume(labels, image.spacing, image.affine, self.modality, {}, case_id)
        summary = nifti_header_summary(path)
        return Volume(labels, tuple(summary["spacing"]), np.asarray(summary["affine"]),
                      self.modality, {}, case_id)

    def has_draft(self, case_id: str) -> bool:
        return self.draft_path(case_id).is_file()

    def load_labels(self, case_id: str, keep_ignore: bool = False) -> np.ndarray | None:
        """The latest labels of a case: the autosaved draft if any, else the accepted labels.

        Parameters
        ----------
        case_id : str
        keep_ignore : bool
            False (default): IGNORE_LABEL voxels come back as 0 (ready to show and edit; the
            annotated slices are in :meth:`annotated_slices`). True: as stored.

        Returns
        -------
        np.ndarray or None
            uint8 labels ``(Z, Y, X)``; None when the case has neither draft nor labels.
        """
        self.case_info(case_id)
        for path in (self.draft_path(case_id), self.label_path(case_id)):
            if path.is_file():
                from napari_medseg.io.nifti import read_nifti

                if path.name.endswith(".png"):
                    from PIL import Image

                    with Image.open(path) as im:
                        array = np.asarray(im).astype(np.uint8)
                else:
                    array = np.asarray(read_nifti(path, as_labels=True).array).astype(np.uint8)
                if not keep_ignore:
                    array[array == IGNORE_LABEL] = 0
                return array
        return None

    def annotated_slices(self, case_id: str) -> list[int] | None:
        """Annotated slice indices of the latest labels (draft first); None = whole volume."""
        info = self.case_info(case_id)
        if self.has_draft(case_id) and "draft_slices" in info:
            return info["draft_slices"]
        return info.get("annotated_slices")

    def training_cases(self, case_ids: Sequence[str] | None = None) -> list[Case]:
        """Accepted cases as in-memory :class:`~napari_medseg.dataset.msd.Case` objects."""
        out = []
        for cid in case_ids if case_ids is not None else self.accepted_ids():
            if self.case_info(cid)["status"] != STATUS_ACCEPTED:
                raise ProjectError(f"Case {cid} is not accepted yet.")
            image = self.load_image(cid)
            labels = self.load_labels(cid, keep_ignore=True)
            out.append(Case(cid, image, labels))
        return out

    def annotation_cost(self) -> int:
        """Number of annotated slices over accepted cases (a fully annotated case counts all
        its slices along its slice axis)."""
        total = 0
        for cid in self.accepted_ids():
            info = self._meta["cases"][cid]
            slices = info.get("annotated_slices")
            if slices is not None:
                total += len(slices)
            elif len(info["shape"]) == 2:
                total += 1  # a 2D image is one slice
            else:
                total += int(info["shape"][info["slice_axis"]])
        return total


__all__ = ["ProjectLabels", "sparse_labels"]
