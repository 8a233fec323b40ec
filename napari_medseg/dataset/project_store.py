"""Storage of a project folder on disk: the lock, ``project.json`` and atomic case files.

:class:`ProjectStore` holds the parsed ``project.json`` of one project and changes it only as a
locked read-modify-write (:meth:`ProjectStore.update`): re-read from disk, apply the change, write
back atomically, all under a :class:`ProjectLock` held across threads and processes.
:func:`read_project_meta` reads and checks the file. Case images and labels are written with
:func:`atomic_write_volume` (``.nii.gz`` or lossless ``.png``, see :func:`case_file_ending`);
:func:`remove_stale_partials` cleans up what a killed process left behind and
:func:`orphan_case_files` finds case files that ``project.json`` never registered.

The layout of the folder is described in :mod:`napari_medseg.dataset.project`.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from napari_medseg.io.atomic import (
    atomic_output,
    atomic_write_json,
    fsync_dir,
    read_json_object,
    remove_stale_temps,
)
from napari_medseg.io.volume import Volume

PROJECT_FILE = "project.json"
FORMAT_VERSION = 1
_PARTIAL_TAG = ".partial"

#: Case status values in ``project.json``.
STATUS_UNLABELLED, STATUS_DRAFT, STATUS_ACCEPTED = "unlabelled", "draft", "accepted"

#: Sub-folders of a project, made on create and open.
PROJECT_FOLDERS = ("imagesTr", "labelsTr", "imagesTs", "drafts", "models")

#: File suffixes of case images and labels inside a project.
_CASE_SUFFIXES = (".nii.gz", ".png")


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


def remove_stale_partials(root: Path, older_than_s: float = 60.0) -> int:
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



def _case_id_of_file(path: Path) -> str | None:
    if path.name.startswith("."):
        return None
    for sfx in _CASE_SUFFIXES:
        if path.name.endswith(sfx):
            return path.name[: -len(sfx)]
    return None


def orphan_case_files(root: Path, known: Iterable[str]) -> list[tuple[str, Path, str]]:
    """Case images in ``imagesTs`` / ``imagesTr`` whose ids are not in ``known``.

    Returns ``(case id, image path, status)`` triples: an image in ``imagesTr`` counts as
    accepted only when its labels are in ``labelsTr`` too, else as unlabelled.
    """
    known = set(known)
    orphans = []
    for sub, status in (("imagesTs", STATUS_UNLABELLED), ("imagesTr", STATUS_ACCEPTED)):
        for path in sorted((root / sub).iterdir()):
            cid = _case_id_of_file(path)
            if cid is None or cid in known:
                continue
            if status == STATUS_ACCEPTED and not any(
                    (root / "labelsTr" / (cid + sfx)).is_file() for sfx in _CASE_SUFFIXES):
                status_here = STATUS_UNLABELLED
            else:
                status_here = status
            orphans.append((cid, path, status_here))
    return orphans


# --------------------------------------------------------------------------------------------
# the lock and project.json


def _os_reason(exc: OSError) -> str:
    """A few words for why a file operation failed ("read-only", "permission denied")."""
    import errno

    reasons = {errno.EROFS: "it is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.ENOSPC: "the disk is full",
               errno.ENOENT: "it no longer exists"}
    return reasons.get(exc.errno, exc.strerror or type(exc).__name__)


class ProjectLock:
    """Re-entrant lock on a project folder, held across threads *and* processes.

    A thread lock serialises this process; an advisory file lock (``PROJECT/.project.lock``,
    `filelock <https://py-filelock.readthedocs.io>`_) serialises processes, so two programs
    doing read-modify-write on ``project.json`` never lose each other's changes.
    """

    def __init__(self, root: Path, timeout_s: float = 60.0) -> None:
        from filelock import FileLock

        self._root = Path(root)
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
        except OSError as exc:  # a read-only folder or disk, no permission, a vanished mount
            self._thread_lock.release()
            raise ProjectError(f"Cannot write to the project folder {self._root} "
                               f"({_os_reason(exc)}); nothing was changed.") from exc
        except BaseException:
            self._thread_lock.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                self._file_lock.release()
        finally:
            self._thread_lock.release()


def read_project_meta(root: Path) -> dict[str, Any]:
    """``PROJECT/project.json`` parsed, missing top-level keys filled in, types checked.

    Raises
    ------
    ProjectError
        Not valid JSON, not a project file, or a top-level entry of the wrong type.
    """
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


class ProjectStore:
    """The ``project.json`` of one project folder, changed only by locked read-modify-write.

    Parameters
    ----------
    root : Path
        The project folder.
    meta : dict
        ``project.json`` as last read or written (:attr:`meta`).
    """

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = Path(root)
        self.meta = meta
        self.lock = ProjectLock(self.root)

    @property
    def path(self) -> Path:
        """``PROJECT/project.json``."""
        return self.root / PROJECT_FILE

    def read(self) -> dict[str, Any]:
        """``project.json`` as it is on disk now (:attr:`meta` is left alone)."""
        return read_project_meta(self.root)

    def write(self) -> None:
        """Write :attr:`meta` to ``project.json`` atomically (a new project)."""
        atomic_write_json(self.path, self.meta)

    def reload(self) -> None:
        """Re-read ``project.json`` (changes made by another process)."""
        with self.lock:
            self.meta = read_project_meta(self.root)

    def update(self, change: Callable[[dict[str, Any]], Any], action: str | None = None,
               details: dict[str, Any] | None = None) -> Any:
        """Read-modify-write ``project.json`` atomically; optionally append a history entry.

        Parameters
        ----------
        change : callable
            Called with the freshly read ``project.json`` dict, changes it in place; what it
            returns is returned.
        action : str, optional
            Name of the history entry ``{"time", "action", "details"}`` to append.
        details : dict, optional
            Its details.
        """
        with self.lock:
            meta = read_project_meta(self.root)
            result = change(meta)
            if action:
                meta["history"].append({"time": _now(), "action": action,
                                        "details": dict(details or {})})
            atomic_write_json(self.path, meta)
            self.meta = meta
            return result


__all__ = [
    "FORMAT_VERSION",
    "PROJECT_FILE",
    "PROJECT_FOLDERS",
    "STATUS_ACCEPTED",
    "STATUS_DRAFT",
    "STATUS_UNLABELLED",
    "ProjectError",
    "ProjectLock",
    "ProjectStore",
    "atomic_write_volume",
    "case_file_ending",
    "orphan_case_files",
    "read_project_meta",
    "remove_stale_partials",
]
