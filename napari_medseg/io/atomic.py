"""Atomic file output: the one way napari-medseg writes a file.

A file is written under a short hidden temporary name in its final folder (``.tmp-<8 hex>``
plus the final suffix, so libraries that choose the format from the suffix still work),
flushed to disk (``fsync``), given ordinary permissions (``0666 & ~umask``: a shared folder
stays readable to colleagues, where ``mkstemp``'s 0600 would not) and renamed over the final
name with :func:`os.replace`, which is atomic on POSIX and Windows; the folder entry is then
flushed too. A process killed at any moment leaves the previous file intact and at worst a
hidden temp file, which :func:`remove_stale_temps` deletes later. The temp name is short, so a
final name near the file-system limit (255 bytes) never fails because of its temp name.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Prefix of every temporary file (hidden).
TEMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder entry (a rename) to disk where the OS allows it."""
    if os.name != "posix":
        return
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _suffix_of(path: Path) -> str:
    name = path.name.lower()
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return path.name[-len(double):]
    return path.suffix


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager yielding a temporary path to write; on success it becomes ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_output(out) as tmp:
    ...     _ = tmp.write_text("hello")
    >>> out.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}{_suffix_of(path)}"
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write a file atomically through ``write(binary_file_handle)``."""
    with atomic_output(path) as tmp:
        with open(tmp, "xb") as fh:
            write(fh)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (NaN written as ``null``-free JSON errors)."""
    dumps_kwargs.setdefault("indent", 2)
    return atomic_write_bytes(path, (json.dumps(obj, **dumps_kwargs) + "\n").encode())


def remove_stale_temps(folder: str | os.PathLike, older_than_s: float = 600.0) -> int:
    """Delete temp files (and staging folders) a killed process left in ``folder``; returns
    how many."""
    import shutil

    removed, now = 0, time.time()
    for p in Path(folder).glob(f"{TEMP_PREFIX}*"):
        try:
            if now - p.stat().st_mtime <= older_than_s:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def read_json_object(path: str | os.PathLike, error: type[Exception], what: str) -> dict:
    """Read a JSON file that must hold an object; any problem is ``error`` with one sentence.

    Parameters
    ----------
    path : path-like
    error : exception class
        Raised (``ModelLoadError``, ``DatasetError``, ``ProjectError`` ...) for an unreadable
        file, invalid JSON, nesting too deep to parse, or anything but a JSON object.
    what : str
        How the message names the file, e.g. ``"dataset.json in /data/Task04"``.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise error(f"{what} is nested too deeply to be read.") from exc
    if not isinstance(data, dict):
        raise error(f"{what} must be a JSON object, not a {type(data).__name__}.")
    return data
