"""The Infer dock's model export: *Export…* asks for a format and a destination, then
:func:`napari_medseg.export.export_model` writes TorchScript, ONNX or a MONAI bundle (with the
model card beside it) in a child process, driven from a worker thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QInputDialog, QWidget

from napari_medseg.jobs import ProcessJob
from napari_medseg.ui._controls import run_in_worker
from napari_medseg.ui._models import ModelEntry
from napari_medseg.ui._settings import last_folder, remember_folder

#: Export formats offered by Export…: label -> (format name, file suffix or "" = folder).
EXPORT_FORMATS = {"TorchScript (.pt)": ("torchscript", ".pt"), "ONNX (.onnx)": ("onnx", ".onnx"),
                  "MONAI bundle (folder)": ("monai-bundle", "")}


def ask_export_target(parent: QWidget, entry: ModelEntry) -> tuple[str, str] | None:
    """Ask for a format and where to write ``entry``'s model; ``(out, fmt)`` or None."""
    label, ok = QInputDialog.getItem(parent, "Export model", "Format:",
                                     list(EXPORT_FORMATS), 0, False)
    if not ok:
        return None
    fmt, suffix = EXPORT_FORMATS[label]
    start = str(Path(last_folder("export")) / f"{entry.path.name}{suffix}")
    if suffix:
        out, _ = QFileDialog.getSaveFileName(parent, "Export model as", start,
                                             f"{label} (*{suffix})")
    else:
        out = QFileDialog.getExistingDirectory(parent, "Folder for the MONAI bundle",
                                               last_folder("export"))
        out = str(Path(out) / entry.path.name) if out else ""
    if not out:
        return None
    remember_folder(str(Path(out).parent), "export")
    return out, fmt


def start_export(entry: ModelEntry, out: str | Path, fmt: str,
                 report: Callable[[str], None]) -> Any:
    """Export ``entry`` as ``fmt`` to ``out`` in a child process; returns the worker.

    ``report`` receives the status texts (started, done with the path, failed); the finished
    export is also a notification.
    """
    from napari_medseg.export import export_model

    report(f"Exporting {entry.path.name} as {fmt}…")

    def work() -> Any:
        job = ProcessJob(export_model, str(entry.path), fmt, str(out), stop_kwarg=None,
                         what="Export")
        last = None
        for event in job.events():
            last = event
        if last is not None and last.kind == "error":
            raise ValueError(last.message)
        return job.result

    def done(path: Any) -> None:
        from napari.utils.notifications import show_info

        text = f"Exported {entry.path.name} as {fmt}: {path}"
        report(text)
        show_info(text)

    def failed(exc: BaseException) -> None:
        report(f"Export failed: {exc}")

    return run_in_worker(work, on_returned=done, on_errored=failed, action="Export model")
