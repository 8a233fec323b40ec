"""A correct-and-retrain project: an MSD-layout folder plus cases, model versions and history.

Layout::

    PROJECT/
      project.json          classes, cases (status, annotated slices), model versions, history
      dataset.json          valid MSD descriptor of the accepted cases (``napari-medseg train PROJECT``)
      imagesTr/CASE.nii.gz  images of accepted cases
      labelsTr/CASE.nii.gz  their labels; unannotated voxels = IGNORE_LABEL (255)
      imagesTs/CASE.nii.gz  images added but not accepted yet (the pool active learning ranks)
      drafts/CASE.nii.gz    autosaved work-in-progress labels (restored when the image is reopened)
      models/v001/ ...      model versions (weights + model card), see :meth:`Project.register_model`

A project holds volumes (3D) or 2D images, not both. 2D pictures (colour photographs, 8/16-bit
greyscale images) are stored losslessly as ``CASE.png`` in the same folders (the nnU-Net v2
natural-image layout; ``dataset.json`` then says ``"file_ending": ".png"``); other 2D images
(floating-point slices) as 2D ``.nii.gz``.

Nothing is ever half-written: every file goes to a temporary name in the same folder, is flushed
to disk (``fsync``) and then moved over the old file with :func:`os.replace`, which is atomic on
POSIX and Windows. A process killed in the middle of a save leaves the previous file intact
(and at worst a hidden ``.*.partial*`` temp file, cleaned up on the next :meth:`Project.open`).

Sparse cases
------------
An accepted case may be annotated on a few slices only. The slice indices (along
``slice_axis``, an array axis of the ``(Z, Y, X)`` volume) are kept in ``project.json`` and every
voxel outside them is stored as :data:`~napari_medseg.events.IGNORE_LABEL` in ``labelsTr``, so
any MSD reader (and training) ignores them instead of taking them as background.

The parts live in their own modules and everything is importable from here:
:mod:`~napari_medseg.dataset.project_store` (lock, ``project.json`` read-modify-write, atomic
case files, stale-file cleanup), :mod:`~napari_medseg.dataset.project_records` (typed case and
model-version records, the class table, case identities),
:mod:`~napari_medseg.dataset.project_labels` (accepting, autosaving and loading labels) and
:mod:`~napari_medseg.dataset.project_models` (model versions).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.dataset.msd import read_image
from napari_medseg.dataset.project_labels import ProjectLabels, sparse_labels
from napari_medseg.dataset.project_models import ProjectModels
from napari_medseg.dataset.project_records import (
    CaseRecord,
    ModelRecord,
    _source_path,
    content_fingerprint,
    normalise_classes,
    safe_case_id,
    source_path_hash,
)
from napari_medseg.dataset.project_store import (
    FORMAT_VERSION,
    PROJECT_FILE,
    PROJECT_FOLDERS,
    STATUS_ACCEPTED,
    STATUS_DRAFT,
    STATUS_UNLABELLED,
    ProjectError,
    ProjectLock,
    ProjectStore,
    _now,
    atomic_write_volume,
    case_file_ending,
    orphan_case_files,
    read_project_meta,
    remove_stale_partials,
)
from napari_medseg.io.atomic import atomic_write_bytes, atomic_write_json
from napari_medseg.io.volume import Volume


class Project(ProjectLabels, ProjectModels):
    """A project folder (see module docstring). Open with :meth:`open`, make with :meth:`create`.

    Every change re-reads ``project.json`` from disk, applies itself and writes it back
    atomically under a lock held across processes (``.project.lock``, :class:`ProjectLock`),
    so a CLI run and the GUI on the same folder do not lose each other's entries
    (:class:`~napari_medseg.dataset.project_store.ProjectStore`). Labelling methods come from
    :class:`~napari_medseg.dataset.project_labels.ProjectLabels`, model versions from
    :class:`~napari_medseg.dataset.project_models.ProjectModels`.
    """

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = Path(root)
        self._store = ProjectStore(self.root, meta)
        self._lock = self._store.lock

    @property
    def _meta(self) -> dict[str, Any]:
        """``project.json`` as last read or written."""
        return self._store.meta

    # -- construction -------------------------------------------------------------------------
    @staticmethod
    def is_project(folder: str | os.PathLike) -> bool:
        """True when ``folder`` holds a ``project.json``."""
        return (Path(folder) / PROJECT_FILE).is_file()

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike,
        name: str,
        classes: Mapping[Any, Any],
        modality: str = "MR",
        slice_axis: int = 0,
    ) -> Project:
        """Create a new, empty project.

        Parameters
        ----------
        folder : path-like
            Empty or not yet existing folder.
        name : str
            Project / task name (written to ``dataset.json``).
        classes : mapping
            ``{label value: {"name": str, "color": "#rrggbb"}}`` (or ``{value: name}``), values 1..254;
            0 is background.
        modality : str
            Image modality of the first (only) channel: ``"MR"``, ``"CT"`` ...; chooses the
            intensity normalisation in training.
        slice_axis : int
            Default array axis (0, 1 or 2) along which sparse cases are annotated slice by slice.

        Raises
        ------
        ProjectError
            Folder not empty / already a project, bad class table.
        """
        root = Path(folder).expanduser()
        if (root / PROJECT_FILE).exists():
            raise ProjectError(f"{root} is already a project; open it instead.")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} is a file, not a folder.")
        if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
            raise ProjectError(f"{root} is not empty; choose a new or empty folder for a project.")
        table = normalise_classes(classes)
        if not table:
            raise ProjectError("A project needs at least one label class (value 1 or above).")
        if slice_axis not in (0, 1, 2):
            raise ProjectError(f"slice_axis must be 0, 1 or 2, got {slice_axis}.")
        for sub in PROJECT_FOLDERS:
            (root / sub).mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "name": str(name) or root.name,
            "modality": str(modality or "unknown"),
            "classes": {str(k): v for k, v in table.items()},
            "slice_axis": int(slice_axis),
            "created": _now(),
            "cases": {},
            "models": {},
            "current_model": None,
            "history": [{"time": _now(), "action": "create", "details": {"name": str(name)}}],
        }
        project = cls(root, meta)
        project._store.write()
        project._write_dataset_json()
        return project

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Project:
        """Open an existing project folder.

        Raises
        ------
        ProjectError
            No ``project.json`` or it is damaged.
        """
        root = Path(folder).expanduser()
        if not (root / PROJECT_FILE).is_file():
            raise ProjectError(
                f"{root} is not a napari-medseg project (no {PROJECT_FILE}); create one first."
            )
        meta = read_project_meta(root)
        remove_stale_partials(root)
        for sub in PROJECT_FOLDERS:
            (root / sub).mkdir(exist_ok=True)
        project = cls(root, meta)
        project._reconcile()
        return project

    def _reconcile(self) -> list[str]:
        """Register case files on disk that ``project.json`` does not know (a process killed
        between writing an image and registering it). Returns the case ids added."""
        orphans = orphan_case_files(self.root, self._meta["cases"])
        if not orphans:
            return []
        entries = {}
        for cid, path, status in orphans:
            try:
                volume = read_image(path)
            except (OSError, ValueError):
                continue  # unreadable leftovers are not cases
            record = CaseRecord.for_volume(volume, status, self.slice_axis)
            record.update(source=None, source_hash=None, recovered=True)
            entries[cid] = record.to_dict()
        if entries:
            def change(meta: dict[str, Any]) -> None:
                for cid, entry in entries.items():
                    meta["cases"].setdefault(cid, entry)

            self._update(change, "recover_cases", {"cases": sorted(entries)})
            self._write_dataset_json()
        return sorted(entries)

    def reload(self) -> None:
        """Re-read ``project.json`` (changes made by another process)."""
        self._store.reload()

    def _update(self, change: Callable[[dict[str, Any]], Any], action: str | None = None,
                details: dict[str, Any] | None = None) -> Any:
        """Read-modify-write ``project.json`` atomically; optionally append a history entry."""
        return self._store.update(change, action, details)

    # -- plain properties ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self._meta.get("name", self.root.name))

    @property
    def modality(self) -> str:
        return str(self._meta.get("modality", "unknown"))

    @property
    def slice_axis(self) -> int:
        """Default array axis for slice-wise (sparse) annotation."""
        return int(self._meta.get("slice_axis", 0))

    @property
    def classes(self) -> dict[int, dict[str, str]]:
        """``{label value: {"name", "color"}}`` (background excluded)."""
        return normalise_classes(self._meta["classes"])

    @property
    def label_names(self) -> dict[int, str]:
        """``{value: name}`` including 0 = background (as training and metrics expect)."""
        return {0: "background", **{k: v["name"] for k, v in self.classes.items()}}

    @property
    def current_model(self) -> str | None:
        """Version name (``"v002"``) of the model in use, or None."""
        return self._meta.get("current_model")

    # -- cases --------------------------------------------------------------------------------
    def case_ids(self, status: str | None = None) -> list[str]:
        """Case ids, sorted; only those with ``status`` when given."""
        cases = self._meta["cases"]
        return sorted(c for c, info in cases.items() if status is None or info["status"] == status)

    def accepted_ids(self) -> list[str]:
        return self.case_ids(STATUS_ACCEPTED)

    def unlabelled_ids(self) -> list[str]:
        """Cases not accepted yet (unlabelled or with a draft only): the active-learning pool."""
        return sorted(c for c, info in self._meta["cases"].items()
                      if info["status"] != STATUS_ACCEPTED)

    def case_info(self, case_id: str) -> dict[str, Any]:
        """The ``project.json`` entry of a case (a copy)."""
        try:
            return json.loads(json.dumps(self._meta["cases"][case_id]))
        except KeyError:
            raise ProjectError(f"Case {case_id!r} is not in project {self.name}.") from None

    def case_record(self, case_id: str) -> CaseRecord:
        """The ``project.json`` entry of a case as a :class:`CaseRecord` (a copy)."""
        return CaseRecord.from_dict(self.case_info(case_id))

    def image_path(self, case_id: str) -> Path:
        """Where the case's image is stored in the project."""
        info = self.case_info(case_id)
        sub = "imagesTr" if info["status"] == STATUS_ACCEPTED else "imagesTs"
        return self.root / sub / f"{case_id}{self._ending(case_id)}"

    def _ending(self, case_id: str) -> str:
        info = self._meta["cases"].get(case_id) or {}
        return str(info.get("file_ending") or ".nii.gz")

    def label_path(self, case_id: str) -> Path:
        return self.root / "labelsTr" / f"{case_id}{self._ending(case_id)}"

    def draft_path(self, case_id: str) -> Path:
        return self.root / "drafts" / f"{case_id}{self._ending(case_id)}"

    @property
    def dims(self) -> int | None:
        """2 or 3 as the cases are (None while the project is empty)."""
        for info in self._meta["cases"].values():
            return len(info["shape"])
        return None

    def load_image(self, case_id: str) -> Volume:
        """The case's image as a :class:`Volume` (with its stored geometry)."""
        path = self.image_path(case_id)
        if not path.is_file():
            raise ProjectError(f"The image of case {case_id} is missing ({path}).")
        volume = read_image(path)
        info = self._meta["cases"][case_id]
        if path.name.endswith(".png") and info.get("affine") is not None:
            # PNG keeps the pixels; the geometry of the original image is in project.json
            volume = Volume(volume.array, tuple(info["spacing"]), np.asarray(info["affine"]),
                            volume.modality, dict(volume.metadata), volume.name, rgb=volume.rgb)
        volume.modality = self.modality if volume.modality == "unknown" else volume.modality
        volume.name = case_id
        return volume

    def find_case(self, image: Volume | str | os.PathLike) -> str | None:
        """The id of the case holding this image, or None.

        Matches, in order: the image file inside this project, the hash of the source path it
        was added from, the content fingerprint (same voxels, file moved or renamed).
        """
        cases = self._meta["cases"]
        if isinstance(image, Volume):
            path = _source_path(image)
            fingerprint = content_fingerprint(image.array)
        else:
            path, fingerprint = str(image), None
        if path:
            p = Path(path).expanduser()
            try:
                inside = p.resolve().parent.parent == self.root.resolve()
            except OSError:
                inside = False
            if inside and safe_case_id(p.name) in cases:
                return safe_case_id(p.name)
            phash = source_path_hash(p)
            for cid, info in cases.items():
                if info.get("source_hash") == phash:
                    return cid
        if fingerprint is not None:
            for cid, info in cases.items():
                if info.get("fingerprint") == fingerprint:
                    return cid
        return None

    def _new_case_id(self, volume: Volume, wanted: str | None) -> str:
        if wanted is None and (volume.metadata or {}).get("format") == "dicom":
            # DICOM names (series descriptions, folder names) often carry patient ids: an
            # opaque id keeps them out of file names, dataset.json and model cards.
            n = 1
            while f"case_{n:03d}" in self._meta["cases"]:
                n += 1
            return f"case_{n:03d}"
        base = safe_case_id(wanted or volume.name or "case")
        cid, n = base, 1
        while cid in self._meta["cases"]:
            n += 1
            cid = f"{base}_{n}"
        return cid

    def _case_entry(self, volume: Volume, status: str) -> dict[str, Any]:
        return CaseRecord.for_volume(volume, status, self.slice_axis).to_dict()

    def _resolve_case(self, image: Volume, case_id: str | None) -> tuple[str, bool]:
        """(case id, is_new) for an image, reusing a matching case when there is one."""
        if case_id is not None and case_id in self._meta["cases"]:
            return case_id, False
        if case_id is None:
            found = self.find_case(image)
            if found is not None:
                return found, False
        return self._new_case_id(image, case_id), True

    def _check_image(self, image: Volume, case_id: str) -> None:
        if image.ndim not in (2, 3):
            raise ProjectError(f"Only 2D and 3D images can be added to a project (got shape "
                               f"{image.shape} for {case_id}).")
        others = [c for c in self._meta["cases"].values()]
        if others:
            dims = len(others[0]["shape"])
            if image.ndim != dims:
                raise ProjectError(
                    f"This project holds {dims}D images; {case_id} is {image.ndim}D. Start "
                    f"another project for {image.ndim}D images.")
            channels = int(others[0].get("channels", 1))
            if image.n_channels != channels:
                kind = {1: "greyscale", 3: "colour"}
                raise ProjectError(
                    f"This project holds {kind.get(channels, channels)} images; {case_id} is "
                    f"{kind.get(image.n_channels, image.n_channels)}.")
        info = self._meta["cases"].get(case_id)
        if info is not None and list(info["shape"]) != list(image.shape):
            raise ProjectError(
                f"Case {case_id} holds an image of shape {tuple(info['shape'])}, not "
                f"{image.shape}; use another case id."
            )

    def add_unlabelled(self, image: Volume | str | os.PathLike,
                       case_id: str | None = None) -> str:
        """Add an image without labels to the pool that active learning ranks.

        Parameters
        ----------
        image : Volume or path
            3D image (a path is read with :func:`napari_medseg.dataset.read_image`).
        case_id : str, optional
            Wanted id; default from the image name. An image already in the project is not
            added twice: its existing id is returned.

        Returns
        -------
        str
            The case id.
        """
        volume = image if isinstance(image, Volume) else read_image(image)
        with self._lock:  # id choice, file and registry entry as one step across processes
            self.reload()
            cid, is_new = self._resolve_case(volume, case_id)
            if not is_new:
                return cid
            self._check_image(volume, cid)
            entry = self._case_entry(volume, STATUS_UNLABELLED)
            atomic_write_volume(volume, self.root / "imagesTs" / f"{cid}{entry['file_ending']}",
                                labels=False)

            def change(meta: dict[str, Any]) -> None:
                meta["cases"][cid] = entry

            self._update(change, "add_unlabelled", {"case": cid})
            self._write_dataset_json()
        return cid

    # -- dataset.json -------------------------------------------------------------------------
    def _write_dataset_json(self) -> None:
        """Rewrite ``dataset.json`` (MSD) from the accepted and pool cases."""
        accepted = self.accepted_ids()
        pool = [c for c in self.unlabelled_ids()
                if (self.root / "imagesTs" / f"{c}{self._ending(c)}").is_file()]
        first = next(iter(self._meta["cases"].values()), {})
        colour = int(first.get("channels", 1)) == 3
        meta = {
            "name": self.name,
            "description": "napari-medseg correct-and-retrain project",
            "tensorImageSize": f"{self.dims or 3}D",
            "modality": ({"0": "red", "1": "green", "2": "blue"} if colour
                         else {"0": self.modality}),
            "labels": {str(k): v for k, v in self.label_names.items()},
            "numTraining": len(accepted),
            "numTest": len(pool),
            "training": [{"image": f"./imagesTr/{c}{self._ending(c)}",
                          "label": f"./labelsTr/{c}{self._ending(c)}"} for c in accepted],
            "test": [f"./imagesTs/{c}{self._ending(c)}" for c in pool],
        }
        if first.get("file_ending", ".nii.gz") != ".nii.gz":
            meta["file_ending"] = first["file_ending"]
        atomic_write_json(self.root / "dataset.json", meta)

    # -- models -------------------------------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        """Actions done in this project, oldest first: ``{"time", "action", "details"}``."""
        return json.loads(json.dumps(self._meta["history"]))

    def log(self, action: str, **details: Any) -> None:
        """Append a free entry to the history (e.g. a retraining that was cancelled)."""
        self._update(lambda meta: None, action, details)

    def __repr__(self) -> str:
        return (f"Project({self.name!r}, root={str(self.root)!r}, accepted={len(self.accepted_ids())}, "
                f"pool={len(self.unlabelled_ids())}, model={self.current_model})")



__all__ = [
    "FORMAT_VERSION",
    "PROJECT_FILE",
    "CaseRecord",
    "ModelRecord",
    "Project",
    "ProjectError",
    "ProjectLock",
    "ProjectStore",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_volume",
    "case_file_ending",
    "content_fingerprint",
    "read_project_meta",
    "safe_case_id",
    "source_path_hash",
    "sparse_labels",
    "STATUS_ACCEPTED",
    "STATUS_DRAFT",
    "STATUS_UNLABELLED",
]
