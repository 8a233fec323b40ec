"""The models folder shared by the Train and Infer docks (a folder of model directories).

Training saves each new model in ``<models folder>/<name>/`` (``model.pt`` +
``model_card.json``); Infer lists that folder's model directories. The registry *is* the
folder: no global state, a model copied in by hand appears too. The folder is a persisted
setting (default ``~/.napari-medseg/models``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from napari_medseg.ui._settings import get_setting, set_setting

SETTING_KEY = "models/folder"
DEFAULT_MODELS_FOLDER = Path.home() / ".napari-medseg" / "models"


class _ModelEvents(QObject):
    """Emits ``saved(path)`` when a dock widget wrote a new model (Infer refreshes its list) and
    ``current(path)`` when a project's current model changes (Annotate's clicks use it when it
    has click guidance)."""

    saved = Signal(str)
    current = Signal(str)


#: Process-wide notifier: Train emits, Infer listens (a signal, not shared mutable state).
model_events = _ModelEvents()


@dataclass
class ModelEntry:
    """A model directory and what its card says (``card`` is None when unreadable)."""

    path: Path
    card: Any
    error: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    def label(self) -> str:
        """Short text for a model list: name, dims, best validation Dice."""
        if self.card is None:
            return f"{self.name} (unreadable)"
        dice = (f", Dice {self.card.best_metric:.2f}" if self.card.best_metric is not None
                else "")
        return f"{self.name} ({self.card.dims}D{dice})"


def models_folder() -> Path:
    """The folder where trained models are saved and listed."""
    return Path(get_setting(SETTING_KEY, str(DEFAULT_MODELS_FOLDER))).expanduser()


def set_models_folder(folder: str | Path) -> None:
    """Remember ``folder`` as the models folder."""
    set_setting(SETTING_KEY, str(Path(folder).expanduser()))


def read_model_entry(path: str | Path) -> ModelEntry:
    """Read the card of one model directory (errors kept as text, never raised)."""
    from napari_medseg.models.card import read_card

    path = Path(path)
    try:
        return ModelEntry(path, read_card(path))
    except ValueError as exc:
        return ModelEntry(path, None, str(exc))


def list_models(folder: str | Path | None = None) -> list[ModelEntry]:
    """Model directories (folders with a ``model_card.json``) in ``folder``, newest first."""
    from napari_medseg.models.card import CARD_FILE

    root = Path(folder) if folder is not None else models_folder()
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir() if d.is_dir() and (d / CARD_FILE).is_file()]
    dirs.sort(key=lambda d: (d / CARD_FILE).stat().st_mtime, reverse=True)
    return [read_model_entry(d) for d in dirs]


def safe_model_name(name: str) -> str:
    """A folder-safe model name (letters, digits, ``-_.``; spaces become ``-``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip("-.")
    return cleaned or "model"


def unique_model_dir(folder: str | Path, name: str) -> Path:
    """``folder/name``, or ``folder/name-2``, ``-3`` ... so an existing model is never overwritten."""
    root = Path(folder)
    base = safe_model_name(name)
    candidate = root / base
    n = 2
    while candidate.exists():
        candidate = root / f"{base}-{n}"
        n += 1
    return candidate
