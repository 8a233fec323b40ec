"""Settings that persist between napari sessions (last folders, device, widget defaults).

Stored with Qt's ``QSettings`` in an INI file in the user's configuration folder
(``~/.config/napari-medseg/napari-medseg.ini`` on Linux). Set the environment variable
``NAPARI_MEDSEG_SETTINGS`` to another INI path (tests do, so they never touch real settings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from qtpy.QtCore import QSettings

T = TypeVar("T")

ORGANISATION = "napari-medseg"
APPLICATION = "napari-medseg"
ENV_VAR = "NAPARI_MEDSEG_SETTINGS"


def settings() -> QSettings:
    """The plugin's ``QSettings`` (INI format; path from ``NAPARI_MEDSEG_SETTINGS`` if set)."""
    override = os.environ.get(ENV_VAR)
    if override:
        return QSettings(override, QSettings.IniFormat)
    return QSettings(QSettings.IniFormat, QSettings.UserScope, ORGANISATION, APPLICATION)


def get_setting(key: str, default: T) -> T:
    """Value stored under ``key`` converted to the type of ``default`` (``default`` if absent
    or not convertible)."""
    value = settings().value(key, None)
    if value is None:
        return default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")  # type: ignore[return-value]
            return bool(value)  # type: ignore[return-value]
        if isinstance(default, (int, float, str)):
            return type(default)(value)  # type: ignore[return-value]
    except (TypeError, ValueError):
        return default
    return value  # type: ignore[no-any-return]


def set_setting(key: str, value: Any) -> None:
    """Store ``value`` (str, number or bool) under ``key`` and write it to disk."""
    s = settings()
    s.setValue(key, value)
    s.sync()


def last_folder(kind: str = "open") -> str:
    """The folder last used for ``kind`` (e.g. ``"open"``, ``"save"``, ``"csv"``), or home."""
    folder = get_setting(f"folders/{kind}", "")
    if folder and Path(folder).is_dir():
        return folder
    return str(Path.home())


def remember_folder(path: str | os.PathLike[str], kind: str = "open") -> None:
    """Remember the folder of ``path`` (or ``path`` itself when it is a folder) for ``kind``."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    set_setting(f"folders/{kind}", str(folder))
