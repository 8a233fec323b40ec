"""What ``project.json`` records: typed case and model-version records, the class table, identities.

A case entry (``project.json["cases"][CASE]``) is a :class:`CaseRecord`, a model version
(``project.json["models"]["v001"]``) a :class:`ModelRecord`. Both convert from and to the JSON
dicts exactly: :meth:`~CaseRecord.from_dict` keeps the keys in their stored order, keeps keys it
does not know (``extra``) and remembers which keys were absent, so ``to_dict(from_dict(d)) == d``
key for key and in the same order, and project files written by any earlier version open and are
written back unchanged. Records made in code (:meth:`CaseRecord.for_volume`, the constructor)
write the keys a new entry has always had.

A case is identified again by the hash of the path it was added from (:func:`source_path_hash`)
or by a fingerprint of its voxels (:func:`content_fingerprint`); :func:`safe_case_id` makes file
names. :func:`normalise_classes` checks and completes the class table (``project.json["classes"]``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from napari_medseg.dataset.project_store import (
    STATUS_ACCEPTED,
    STATUS_UNLABELLED,
    ProjectError,
    _now,
    case_file_ending,
)
from napari_medseg.events import IGNORE_LABEL
from napari_medseg.io.volume import Volume

_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")
_NOT_JSON = {"json": False}

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


# --------------------------------------------------------------------------------------------
# the class table


def normalise_classes(classes: Mapping[Any, Any]) -> dict[int, dict[str, str]]:
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


# --------------------------------------------------------------------------------------------
# records


class _JsonRecord:
    """Exact conversion between a dataclass and a JSON object (see the module docstring).

    Subclasses are dataclasses whose fields are the known JSON keys, in the order a new entry
    writes them, followed by ``extra`` (unknown keys) and ``json_keys`` (the keys present, in
    order; None = :attr:`NEW_KEYS`), both marked ``metadata={"json": False}``.
    """

    #: Keys of an entry made in code, in the order they are written.
    NEW_KEYS: ClassVar[tuple[str, ...]] = ()
    extra: dict[str, Any]
    json_keys: tuple[str, ...] | None

    @classmethod
    def json_fields(cls) -> tuple[str, ...]:
        """Names of the fields that are JSON keys."""
        return tuple(f.name for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                     if f.metadata.get("json", True))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The record of a JSON object as stored (values are taken as they are, not copied)."""
        names = set(cls.json_fields())
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**known, extra=extra, json_keys=tuple(data))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the stored keys in their order, then keys added since."""
        names = set(self.json_fields())
        out: dict[str, Any] = {}
        for key in self.keys():
            if key in names:
                out[key] = getattr(self, key)
            elif key in self.extra:
                out[key] = self.extra[key]
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    def keys(self) -> tuple[str, ...]:
        """The JSON keys this record has, in order."""
        return self.NEW_KEYS if self.json_keys is None else self.json_keys

    def has(self, key: str) -> bool:
        """True when ``key`` is stored (a field left at its default because absent is not)."""
        return key in self.keys() or key in self.extra

    def update(self, **values: Any) -> None:
        """Set fields like :meth:`dict.update`: keys not stored yet are added at the end."""
        names = set(self.json_fields())
        keys = list(self.keys())
        for key, value in values.items():
            if key not in names:
                raise KeyError(f"{type(self).__name__} has no field {key!r}")
            setattr(self, key, value)
            if key not in keys:
                keys.append(key)
        self.json_keys = tuple(keys)

    def discard(self, *keys: str) -> None:
        """Remove keys like ``dict.pop(key, None)``; their fields go back to the default."""
        defaults = {f.name: f for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for key in keys:
            f = defaults.get(key)
            if f is not None and f.metadata.get("json", True):
                value = f.default_factory() if f.default_factory is not dataclasses.MISSING \
                    else f.default
                setattr(self, key, value)
            else:
                self.extra.pop(key, None)
        self.json_keys = tuple(k for k in self.keys() if k not in keys)


@dataclass
class CaseRecord(_JsonRecord):
    """One case of a project (``project.json["cases"][CASE]``).

    Attributes
    ----------
    status : str
        ``"unlabelled"``, ``"draft"`` or ``"accepted"``.
    source : None
        Always None: the source path is never stored (folder names often hold patient ids).
    source_hash : str or None
        :func:`source_path_hash` of the file it was added from.
    fingerprint : str or None
        :func:`content_fingerprint` of the image.
    shape, spacing : list
        Image shape ``(Z, Y, X)`` or ``(Y, X)`` and voxel spacing (mm).
    channels : int
        1 (greyscale) or 3 (colour picture).
    file_ending : str
        ``".nii.gz"`` or ``".png"`` (:func:`~napari_medseg.dataset.project_store.case_file_ending`).
    affine : list or None
        Geometry of a ``.png`` case (PNG cannot hold it); None for NIfTI.
    annotated_slices : list of int or None
        Annotated slices of the accepted labels along ``slice_axis``; None = whole image.
    slice_axis : int
        Array axis of the annotated slices.
    added, accepted, draft_saved : str or None
        ISO times (UTC) of adding, accepting and the last autosave.
    draft_slices : list of int or None
        Annotated slices of the draft (stored only while there is a draft).
    recovered : bool
        Registered on open from a file ``project.json`` did not know.
    extra : dict
        Keys this version does not know, kept as they are.
    json_keys : tuple of str or None
        Keys present, in stored order (None: those of a new entry).
    """

    NEW_KEYS: ClassVar[tuple[str, ...]] = (
        "status", "source", "source_hash", "fingerprint", "shape", "spacing", "channels",
        "file_ending", "affine", "annotated_slices", "slice_axis", "added")

    status: str = STATUS_UNLABELLED
    source: str | None = None
    source_hash: str | None = None
    fingerprint: str | None = None
    shape: list[int] = field(default_factory=list)
    spacing: list[float] | None = None
    channels: int = 1
    file_ending: str = ".nii.gz"
    affine: list[list[float]] | None = None
    annotated_slices: list[int] | None = None
    slice_axis: int = 0
    added: str | None = None
    accepted: str | None = None
    draft_saved: str | None = None
    draft_slices: list[int] | None = None
    recovered: bool = False
    extra: dict[str, Any] = field(default_factory=dict, metadata=_NOT_JSON)
    json_keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False,
                                              metadata=_NOT_JSON)

    @classmethod
    def for_volume(cls, volume: Volume, status: str, slice_axis: int) -> CaseRecord:
        """The entry of a new case holding ``volume`` (added now)."""
        path = _source_path(volume)
        ending = case_file_ending(volume)
        return cls(
            status=status,
            source=None,  # never the path: folder names often hold patient ids
            source_hash=source_path_hash(path) if path else None,
            fingerprint=content_fingerprint(volume.array),
            shape=list(volume.shape),
            spacing=list(volume.spacing),
            channels=volume.n_channels,
            file_ending=ending,
            affine=volume.affine.tolist() if ending == ".png" else None,
            annotated_slices=None,
            slice_axis=slice_axis,
            added=_now(),
        )

    def mark_accepted(self, annotated_slices: Sequence[int] | None, slice_axis: int) -> None:
        """Accepted now with these (sorted) annotated slices; the draft keys are removed."""
        self.update(status=STATUS_ACCEPTED, annotated_slices=annotated_slices,
                    slice_axis=slice_axis, accepted=_now())
        self.discard("draft_saved", "draft_slices")


@dataclass
class ModelRecord(_JsonRecord):
    """One model version of a project (``project.json["models"]["v001"]``).

    The version name and folder are the key and ``models/VERSION``, not stored in the record.

    Attributes
    ----------
    created : str or None
        ISO time (UTC) of registration.
    parent : str or None
        Version it was fine-tuned from.
    metrics : dict
        Validation metrics (finite floats).
    training_cases : list of str
        Case ids it was trained on.
    annotation_cost : int or None
        Annotated slices of the project's accepted cases when it was registered.
    note : str
        Free text.
    extra, json_keys
        As in :class:`CaseRecord`.
    """

    NEW_KEYS: ClassVar[tuple[str, ...]] = (
        "created", "parent", "metrics", "training_cases", "annotation_cost", "note")

    created: str | None = None
    parent: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    training_cases: list[str] = field(default_factory=list)
    annotation_cost: int | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict, metadata=_NOT_JSON)
    json_keys: tuple[str, ...] | None = field(default=None, repr=False, compare=False,
                                              metadata=_NOT_JSON)


__all__ = [
    "CaseRecord",
    "ModelRecord",
    "content_fingerprint",
    "normalise_classes",
    "safe_case_id",
    "source_path_hash",
]
