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


class MultipleChannelsError(MedsegIOError):
    """A 4D image holds several channels or time points and none was chosen.

    Attributes
    ----------
    n_channels : int
        How many there are (pass ``channel=0..n_channels - 1`` to the reader).
    """

    def __init__(self, message: str, n_channels: int) -> None:
        super().__init__(message)
        self.n_channels = int(n_channels)


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


#: Largest image napari-medseg opens, in voxels (about 2 G: a 1300^3 volume).
MAX_VOXELS = 2**31 - 1


def available_memory_bytes() -> int:
    """Memory the system can still give this process (bytes), from /proc/meminfo or psutil."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 16 * 2**30  # unknown: assume a 16 GiB workstation


def check_allocation(shape: tuple[int, ...] | list[int], bytes_per_voxel: float, what: str,
                     copies: float = 1.0) -> None:
    """Refuse, before allocating, an array that cannot fit in memory.

    Parameters
    ----------
    shape : sequence of int
        Array shape the work will allocate.
    bytes_per_voxel : float
        Bytes per element (4 for float32).
    what : str
        What the array is, for the message ("the image of scan.nii.gz").
    copies : float
        Working copies the step needs at the same time.

    Raises
    ------
    MedsegIOError
        One line with the size needed, the memory free, and what to do.
    """
    n = 1
    for s in shape:
        if int(s) < 0:
            raise MedsegIOError(f"{what} has a negative size {tuple(shape)}.")
        n *= int(s)
    if n > MAX_VOXELS:
        raise MedsegIOError(
            f"{what} would have {n:,} voxels (shape {tuple(int(s) for s in shape)}), more than "
            f"napari-medseg handles ({MAX_VOXELS:,}); crop or downsample it first."
        )
    need = n * float(bytes_per_voxel) * float(copies)
    free = available_memory_bytes()
    if need > 0.8 * free:
        raise MedsegIOError(
            f"{what} needs about {need / 2**30:.1f} GiB of memory but only "
            f"{free / 2**30:.1f} GiB is free; crop or downsample it, or use a larger machine."
        )
