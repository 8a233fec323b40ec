"""Model versions of a project: registering trained models as ``models/v001``, ``v002`` ..., their
metrics and the current model.

:class:`ProjectModels` is mixed into :class:`~napari_medseg.dataset.project.Project`; its methods
are documented there as the project's own. Each version is a folder (weights + model card,
stamped with the project's version names by :func:`_stamp_model_card`) and a
:class:`~napari_medseg.dataset.project_records.ModelRecord` in ``project.json["models"]``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_medseg.dataset.project_records import ModelRecord
from napari_medseg.dataset.project_store import (
    _PARTIAL_TAG,
    ProjectError,
    ProjectLock,
    _fsync_dir,
    _now,
    read_project_meta,
)
from napari_medseg.io.atomic import atomic_write_json


class ProjectModels:
    """The model-version part of :class:`~napari_medseg.dataset.project.Project`."""

    root: Path
    _meta: dict[str, Any]
    _lock: ProjectLock

    if TYPE_CHECKING:
        name: str
        current_model: str | None

        def _update(self, change: Callable[[dict[str, Any]], Any], action: str | None = None,
                    details: dict[str, Any] | None = None) -> Any: ...

        def reload(self) -> None: ...

        def accepted_ids(self) -> list[str]: ...

        def annotation_cost(self) -> int: ...

    def models(self) -> list[dict[str, Any]]:
        """Model versions, oldest first: ``{"version", "path", "metrics", "parent", ...}``."""
        out = []
        for version, info in sorted(self._meta["models"].items()):
            entry = dict(info)
            entry["version"] = version
            entry["path"] = str(self.root / "models" / version)
            out.append(entry)
        return out

    def model_record(self, version: str) -> ModelRecord:
        """The ``project.json`` entry of a model version as a :class:`ModelRecord` (a copy)."""
        if version not in self._meta["models"]:
            raise ProjectError(f"Model version {version} does not exist in project {self.name}.")
        return ModelRecord.from_dict(json.loads(json.dumps(self._meta["models"][version])))

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
            version = self._next_version(read_project_meta(self.root))
            dst = self.root / "models" / version
            tmp = self.root / "models" / f".{version}.{uuid.uuid4().hex[:8]}{_PARTIAL_TAG}"
            if move:
                shutil.move(str(src), str(tmp))
            else:
                shutil.copytree(src, tmp)
            _stamp_model_card(tmp, version, parent)
            os.replace(tmp, dst)
            _fsync_dir(dst.parent)
            record = ModelRecord(
                created=_now(),
                parent=parent,
                metrics={k: float(v) for k, v in (metrics or {}).items()
                         if isinstance(v, (int, float)) and np.isfinite(v)},
                training_cases=list(training_cases if training_cases is not None
                                    else self.accepted_ids()),
                annotation_cost=self.annotation_cost(),
                note=note,
            )
            entry = record.to_dict()

            def change(meta: dict[str, Any]) -> None:
                meta["models"][version] = entry
                if make_current:
                    meta["current_model"] = version

            self._update(change, "register_model",
                         {"version": version, "parent": parent, "metrics": record.metrics})
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


__all__ = ["ProjectModels"]
