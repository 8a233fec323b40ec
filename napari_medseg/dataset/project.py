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
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.dataset.msd import Case, read_image
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.atomic import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_json,
    fsync_dir,
    read_json_object,
    remove_stale_temps,
)
from napari_medseg.io.volume import Volume

PROJECT_FILE = "project.json"
FORMAT_VERSION = 1
_PARTIAL_TAG = ".partial"
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")

#: Case status values in ``project.json``.
STATUS_UNLABELLED, STATUS_DRAFT, STATUS_ACCEPTED = "unlabelled", "draft", "accepted"


class ProjectError(ValueError):
    """A project folder cannot be created, opened or changed; the message says why."""


# --------------------------------------------------------------------------------------------
# atomic file helpers


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


_fsync_dir = fsync_dir


def atomic_write_volume(volume: Volume, path: str | os.PathLike, *, labels: bool) -> Path:
    """Write a :class:`Volume` as ``.nii.gz`` (or ``.png``) atomically (:mod:`napari_medseg.io.atomic`).

    Parameters
    ----------
    volume : Volume
        Voxels ``(Z, Y, X)`` or ``(Y, X)`` with spacing (mm) and affine; a colour picture for
        ``.png``.
    path : path-like
        Final ``.nii.gz`` or ``.png`` file.
    labels : bool
        Store as an integer label map (uint8 when values fit).
    """
    from napari_medseg.io.nifti import write_nifti

    path = Path(path)
    with atomic_output(path) as tmp:
        if path.name.endswith(".png"):
            _write_png(volume.array, tmp, labels=labels)
        else:
            write_nifti(volume, tmp, labels=labels)
    return path


def _write_png(array: np.ndarray, path: Path, *, labels: bool) -> None:
    """Lossless PNG of a 2D label map, greyscale or colour picture (8 or 16 bit)."""
    from PIL import Image

    array = np.asarray(array)
    if labels:
        array = array.astype(np.uint8 if array.max(initial=0) <= 255 else np.uint16)
    if array.dtype == np.uint16 and array.ndim == 2:
        Image.fromarray(array).save(path, format="PNG")  # 16-bit greyscale ("I;16")
    elif array.dtype == np.uint8 and array.ndim in (2, 3):
        Image.fromarray(array).save(path, format="PNG")
    else:
        raise ProjectError(f"A {array.dtype} image of shape {array.shape} cannot be stored as PNG.")


def case_file_ending(volume: Volume) -> str:
    """How a project stores this image: ``".png"`` for 2D pictures, else ``".nii.gz"``."""
    if volume.ndim == 2 and (
            (volume.rgb and volume.array.dtype == np.uint8)
            or (not volume.rgb and volume.array.dtype in (np.uint8, np.uint16, np.bool_))):
        return ".png"
    return ".nii.gz"


def _remove_stale_partials(root: Path, older_than_s: float = 60.0) -> int:
    """Delete temp files left by a process killed mid-save. Returns how many were removed.

    Also removes training work folders (``models/.training-*``) untouched for a day.
    """
    removed = 0
    now = time.time()
    models = root / "models"
    if models.is_dir():
        for p in models.glob(".training-*"):
            try:
                if p.is_dir() and now - p.stat().st_mtime > 86400:
                    shutil.rmtree(p, ignore_errors=True)
                    removed += 1
            except OSError:
                pass
    for sub in ("", "imagesTr", "labelsTr", "imagesTs", "drafts"):
        folder = root / sub
        if not folder.is_dir():
            continue
        removed += remove_stale_temps(folder, older_than_s)
        for p in folder.glob(f".*{_PARTIAL_TAG}*"):
            try:
                if now - p.stat().st_mtime > older_than_s:
                    p.unlink()
                    removed += 1
            except OSError:
                pass
    return removed


class ProjectLock:
    """Re-entrant lock on a project folder, held across threads *and* processes.

    A thread lock serialises this process; an advisory file lock (``PROJECT/.project.lock``,
    `filelock <https://py-filelock.readthedocs.io>`_) serialises processes, so two programs
    doing read-modify-write on ``project.json`` never lose each other's changes.
    """

    def __init__(self, root: Path, timeout_s: float = 60.0) -> None:
        from filelock import FileLock

        self._thread_lock = threading.RLock()
        self._file_lock = FileLock(str(Path(root) / ".project.lock"), timeout=timeout_s,
                                   thread_local=False)
        self._depth = 0

    def __enter__(self) -> ProjectLock:
        from filelock import Timeout

        self._thread_lock.acquire()
        try:
            if self._depth == 0:
                self._file_lock.acquire()
        except Timeout as exc:
            self._thread_lock.release()
            raise ProjectError("The project is locked by another program (napari-medseg "
                               "open elsewhere?); try again in a moment.") from exc
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                self._file_lock.release()
        finally:
            self._thread_lock.release()


#: File suffixes of case images and labels inside a project.
_CASE_SUFFIXES = (".nii.gz", ".png")


def _case_id_of_file(path: Path) -> str | None:
    if path.name.startswith("."):
        return None
    for sfx in _CASE_SUFFIXES:
        if path.name.endswith(sfx):
            return path.name[: -len(sfx)]
    return None


# --------------------------------------------------------------------------------------------
# identities


def safe_case_id(name: str) -> str:
    """A file-name-safe case id from a display or file name (``"MR head #2"`` -> ``"MR_head_2"``)."""
    for suffix in (".nii.gz", ".nii", ".png"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    cid = _SAFE_ID.sub("_", name).strip("._-")
    return cid or "case"


def source_path_hash(path: str | os.PathLike) -> str:
    """Short hash of the absolute source path of an image (identifies "the same file" again)."""
    resolved = str(Path(path).expanduser().resolve())
    return hashlib.sha1(resolved.encode()).hexdigest()[:16]


def content_fingerprint(array: np.ndarray, max_samples: int = 1_000_000) -> str:
    """Hash of an image's shape, dtype and (a strided sample of) its voxels.

    Finds the same image again after its file was moved or renamed. Voxels are sampled with a
    fixed stride so a 512x512x400 CT costs a few milliseconds.
    """
    a = np.ascontiguousarray(array)
    flat = a.reshape(-1)
    stride = max(1, flat.size // max_samples)
    h = hashlib.sha1()
    h.update(repr((a.shape, str(a.dtype))).encode())
    h.update(np.ascontiguousarray(flat[::stride]).tobytes())
    return h.hexdigest()[:16]


def _source_path(volume: Volume) -> str | None:
    path = (volume.metadata or {}).get("path")
    return str(path) if path else None


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


# --------------------------------------------------------------------------------------------
# the project


class Project:
    """A project folder (see module docstring). Open with :meth:`open`, make with :meth:`create`.

    Every change re-reads ``project.json`` from disk, applies itself and writes it back
    atomically under a lock held across processes (``.project.lock``, :class:`ProjectLock`),
    so a CLI run and the GUI on the same folder do not lose each other's entries.
    """

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = Path(root)
        self._meta = meta
        self._lock = ProjectLock(self.root)

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
        table = _normalise_classes(classes)
        if not table:
            raise ProjectError("A project needs at least one label class (value 1 or above).")
        if slice_axis not in (0, 1, 2):
            raise ProjectError(f"slice_axis must be 0, 1 or 2, got {slice_axis}.")
        for sub in ("imagesTr", "labelsTr", "imagesTs", "drafts", "models"):
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
        atomic_write_json(root / PROJECT_FILE, meta)
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
        meta = cls._read_meta(root)
        _remove_stale_partials(root)
        for sub in ("imagesTr", "labelsTr", "imagesTs", "drafts", "models"):
            (root / sub).mkdir(exist_ok=True)
        project = cls(root, meta)
        project._reconcile()
        return project

    def _reconcile(self) -> list[str]:
        """Register case files on disk that ``project.json`` does not know (a process killed
        between writing an image and registering it). Returns the case ids added."""
        known = set(self._meta["cases"])
        orphans = []
        for sub, status in (("imagesTs", STATUS_UNLABELLED), ("imagesTr", STATUS_ACCEPTED)):
            for path in sorted((self.root / sub).iterdir()):
                cid = _case_id_of_file(path)
                if cid is None or cid in known:
                    continue
                if status == STATUS_ACCEPTED and not any(
                        (self.root / "labelsTr" / (cid + sfx)).is_file() for sfx in _CASE_SUFFIXES):
                    status_here = STATUS_UNLABELLED
                else:
                    status_here = status
                orphans.append((cid, path, status_here))
        if not orphans:
            return []
        entries = {}
        for cid, path, status in orphans:
            try:
                volume = read_image(path)
            except (OSError, ValueError):
                continue  # unreadable leftovers are not cases
            entry = self._case_entry(volume, status)
            entry["source"], entry["source_hash"] = None, None
            entry["recovered"] = True
            entries[cid] = entry
        if entries:
            def change(meta: dict[str, Any]) -> None:
                for cid, entry in entries.items():
                    meta["cases"].setdefault(cid, entry)

            self._update(change, "recover_cases", {"cases": sorted(entries)})
            self._write_dataset_json()
        return sorted(entries)

    @staticmethod
    def _read_meta(root: Path) -> dict[str, Any]:
        meta = read_json_object(root / PROJECT_FILE, ProjectError, str(root / PROJECT_FILE))
        if "classes" not in meta:
            raise ProjectError(f"{root / PROJECT_FILE} is not a napari-medseg project file.")
        for key, default in (("cases", {}), ("models", {}), ("history", []),
                             ("current_model", None), ("slice_axis", 0), ("modality", "unknown")):
            meta.setdefault(key, default)
        expected = {"classes": dict, "cases": dict, "models": dict, "history": list,
                    "modality": str, "current_model": (str, type(None))}
        wrong = [k for k, t in expected.items() if not isinstance(meta[k], t)]
        if not isinstance(meta["slice_axis"], int) or isinstance(meta["slice_axis"], bool) \
                or meta["slice_axis"] not in (0, 1, 2):
            wrong.append("slice_axis")
        if not all(isinstance(c, dict) and isinstance(c.get("shape"), list)
                   for c in meta["cases"].values()) if isinstance(meta["cases"], dict) else False:
            wrong.append("cases")
        if wrong:
            raise ProjectError(f"{root / PROJECT_FILE} is damaged: wrong type of "
                               f"{', '.join(sorted(set(wrong)))}.")
        return meta

    def reload(self) -> None:
        """Re-read ``project.json`` (changes made by another process)."""
        with self._lock:
            self._meta = self._read_meta(self.root)

    def _update(self, change: Callable[[dict[str, Any]], Any], action: str | None = None,
                details: dict[str, Any] | None = None) -> Any:
        """Read-modify-write ``project.json`` atomically; optionally append a history entry."""
        with self._lock:
            meta = self._read_meta(self.root)
            result = change(meta)
            if action:
                meta["history"].append({"time": _now(), "action": action,
                                        "details": dict(details or {})})
            atomic_write_json(self.root / PROJECT_FILE, meta)
            self._meta = meta
            return result

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
        return _normalise_classes(self._meta["classes"])

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
        path = _source_path(volume)
        return {
            "status": status,
            "source": None,  # never the path: folder names often hold patient ids
            "source_hash": source_path_hash(path) if path else None,
            "fingerprint": content_fingerprint(volume.array),
            "shape": list(volume.shape),
            "spacing": list(volume.spacing),
            "channels": volume.n_channels,
            "file_ending": case_file_ending(volume),
            "affine": volume.affine.tolist() if case_file_ending(volume) == ".png" else None,
            "annotated_slices": None,
            "slice_axis": self.slice_axis,
            "added": _now(),
        }

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
        entry = dict(old) if old else self._case_entry(image, STATUS_ACCEPTED)
        entry.update(status=STATUS_ACCEPTED, annotated_slices=slices, slice_axis=axis,
                     accepted=_now())
        entry.pop("draft_saved", None)
        entry.pop("draft_slices", None)

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
    def models(self) -> list[dict[str, Any]]:
        """Model versions, oldest first: ``{"version", "path", "metrics", "parent", ...}``."""
        out = []
        for version, info in sorted(self._meta["models"].items()):
            entry = dict(info)
            entry["version"] = version
            entry["path"] = str(self.root / "models" / version)
            out.append(entry)
        return out

    def model_dir(self, version: str | None = None) -> Path | None:
        """Folder of a model version (default: the current one); None if there is no model."""
        version = version or self.current_model
        if version is None:
            return None
        if version not in self._meta["models"]:
            raise ProjectError(f"Model version {version} does not exist in project {self.name}.")
        return self.root / "models" / version

    def _next_version(self, meta: dict[str, Any]) -> str:
        numbers = [int(v[1:]) for v in meta["models"] if re.fullmatch(r"v\d+", v)]
        existing = {p.name for p in (self.root / "models").iterdir()} if (
            self.root / "models").is_dir() else set()
        n = max(numbers, default=0) + 1
        while f"v{n:03d}" in existing:
            n += 1
        return f"v{n:03d}"

    def register_model(
        self,
        model_dir: str | os.PathLike,
        metrics: Mapping[str, float] | None = None,
        parent: str | None = None,
        *,
        move: bool = False,
        make_current: bool = True,
        note: str = "",
        training_cases: Sequence[str] | None = None,
    ) -> str:
        """Store a trained model as the next version (``models/v001``, ``v002`` ...).

        Parameters
        ----------
        model_dir : path-like
            Folder with the weights and model card written by training.
        metrics : mapping, optional
            Validation metrics of this version (e.g. ``{"dice_mean": 0.86}``).
        parent : str, optional
            Version it was fine-tuned from (default: the current model).
        move : bool
            Move the folder instead of copying it.
        make_current : bool
            Use the new version from now on.
        note : str
            Free text shown in the history.
        training_cases : sequence of str, optional
            Case ids it was trained on (default: all accepted cases).

        Returns
        -------
        str
            The new version name.
        """
        src = Path(model_dir)
        if not src.is_dir():
            raise ProjectError(f"Model folder not found: {src}")
        parent = self.current_model if parent is None else parent
        with self._lock:
            version = self._next_version(self._read_meta(self.root))
            dst = self.root / "models" / version
            tmp = self.root / "models" / f".{version}.{uuid.uuid4().hex[:8]}{_PARTIAL_TAG}"
            if move:
                shutil.move(str(src), str(tmp))
            else:
                shutil.copytree(src, tmp)
            _stamp_model_card(tmp, version, parent)
            os.replace(tmp, dst)
            _fsync_dir(dst.parent)
            entry = {
                "created": _now(),
                "parent": parent,
                "metrics": {k: float(v) for k, v in (metrics or {}).items()
                            if isinstance(v, (int, float)) and np.isfinite(v)},
                "training_cases": list(training_cases if training_cases is not None
                                       else self.accepted_ids()),
                "annotation_cost": self.annotation_cost(),
                "note": note,
            }

            def change(meta: dict[str, Any]) -> None:
                meta["models"][version] = entry
                if make_current:
                    meta["current_model"] = version

            self._update(change, "register_model",
                         {"version": version, "parent": parent, "metrics": entry["metrics"]})
        return version

    def update_model_metrics(self, version: str, metrics: Mapping[str, float]) -> None:
        """Add (or overwrite) metrics of an existing version, e.g. measured later on new cases."""
        clean = {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and np.isfinite(v)}

        def change(meta: dict[str, Any]) -> None:
            if version not in meta["models"]:
                raise ProjectError(f"Model version {version} does not exist in project {self.name}.")
            meta["models"][version].setdefault("metrics", {}).update(clean)

        self._update(change, "measure_model", {"version": version, "metrics": clean})

    def set_current_model(self, version: str | None) -> None:
        """Use ``version`` for prediction and as the start of the next retraining."""
        if version is not None and version not in self._meta["models"]:
            self.reload()
            if version not in self._meta["models"]:
                raise ProjectError(f"Model version {version} does not exist in project {self.name}.")

        def change(meta: dict[str, Any]) -> None:
            meta["current_model"] = version

        self._update(change, "set_current_model", {"version": version})

    def history(self) -> list[dict[str, Any]]:
        """Actions done in this project, oldest first: ``{"time", "action", "details"}``."""
        return json.loads(json.dumps(self._meta["history"]))

    def log(self, action: str, **details: Any) -> None:
        """Append a free entry to the history (e.g. a retraining that was cancelled)."""
        self._update(lambda meta: None, action, details)

    def __repr__(self) -> str:
        return (f"Project({self.name!r}, root={str(self.root)!r}, accepted={len(self.accepted_ids())}, "
                f"pool={len(self.unlabelled_ids())}, model={self.current_model})")


def _normalise_classes(classes: Mapping[Any, Any]) -> dict[int, dict[str, str]]:
    """``{int value: {"name", "color"}}`` for values 1..254 (0 dropped)."""
    from napari_medseg.dataset.msd import DEFAULT_LABEL_COLOURS

    out: dict[int, dict[str, str]] = {}
    for key, entry in dict(classes or {}).items():
        try:
            value = int(key)
        except (TypeError, ValueError):
            raise ProjectError(f"Class value {key!r} is not a whole number.") from None
        if value == 0:
            continue
        if not 0 < value < IGNORE_LABEL:
            raise ProjectError(f"Class value {value} must lie between 1 and {IGNORE_LABEL - 1}.")
        if isinstance(entry, str):
            entry = {"name": entry}
        entry = dict(entry or {})
        r, g, b = DEFAULT_LABEL_COLOURS[(value - 1) % len(DEFAULT_LABEL_COLOURS)]
        out[value] = {"name": str(entry.get("name") or f"label {value}"),
                      "color": str(entry.get("color") or f"#{r:02x}{g:02x}{b:02x}")}
    return dict(sorted(out.items()))


def _stamp_model_card(model_dir: Path, version: str, parent: str | None) -> None:
    """Record the project version name and its parent in the model card JSON(s) of a model.

    The card's own ``version`` (an integer count of fine-tuning generations) is left alone;
    the project's names go to ``project_version`` / ``project_parent_version``.
    """
    for card in sorted(model_dir.glob("*.json")):
        try:
            data = json.loads(card.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict) or not ({"classes", "dims", "format"} & set(data)):
            continue
        data["project_version"] = version
        data["project_parent_version"] = parent
        atomic_write_json(card, data)


__all__ = [
    "Project",
    "ProjectError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_volume",
    "content_fingerprint",
    "safe_case_id",
    "source_path_hash",
    "sparse_labels",
    "STATUS_ACCEPTED",
    "STATUS_DRAFT",
    "STATUS_UNLABELLED",
]
