"""Exceptions raised by :mod:`napari_medseg.io`, with messages meant for the person at the screen.

Every problem with an input file or folder (missing, unreadable, corrupt, not an image, needs a
decoder that is not installed, ambiguous choice of series or channel) is raised as a
:class:`MedsegIOError`, a ``ValueError`` whose message is one plain sentence. The napari reader
turns it into a notification and the CLI prints it on one line; no traceback reaches the user.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Name of the optional dependency group that installs DICOM pixel decoders.
DICOM_CODECS_EXTRA = "napari-medseg[dicom-codecs]"


class MedsegIOError(ValueError):
    """A medical image could not be read or written; the message says why, in one line.

    Newlines in the message (e.g. from a library's error text) are folded into spaces.
    """

    def __init__(self, message: str, *args: Any) -> None:
        super().__init__(one_line(message), *args)


def one_line(text: object) -> str:
    """``text`` with all runs of whitespace (newlines, tabs) collapsed into single spaces."""
    return " ".join(str(text).split())


class MultipleSeriesError(MedsegIOError):
    """A DICOM folder holds several image series and none was chosen.

    Attributes
    ----------
    series : list of DicomSeriesInfo
        The image series found, so a GUI can let the user pick one
        (pass its ``key`` or ``series_uid`` as ``series_uid=`` to the reader).
    """

    def __init__(self, message: str, series: list[Any]) -> None:
        super().__init__(message)
        self.series = list(series)


class MissingDecoderError(MedsegIOError):
    """Compressed DICOM pixel data and no installed decoder for its transfer syntax."""


class MedsegIOWarning(UserWarning):
    """A file was read, but something about it deserves attention (gap between slices, NaNs ...).

    The same text is kept in ``volume.metadata["warnings"]`` so the GUI can show it later.
    """


def check_readable(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` after checking it exists and may be read.

    Raises
    ------
    MedsegIOError
        When the path does not exist, or the current user may not read it.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise MedsegIOError(f"File or folder not found: {p}")
    if not os.access(p, os.R_OK) or (p.is_dir() and not os.access(p, os.X_OK)):
        raise MedsegIOError(f"Permission denied: cannot read {p}")
    return p
