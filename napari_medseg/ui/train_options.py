"""The Train dock's run options: time budget, maximum epochs and device.

:class:`TrainOptions` is a form of magicgui value widgets (a ``FloatSpinBox``, a ``SpinBox``
and a ``ComboBox``, embedded through ``.native``), with a label beside the device naming the
processor it resolves to. :func:`device_description` probes that processor
once per session, in a child process, so the viewer's process never creates a CUDA context.
"""

from __future__ import annotations

import threading
from typing import Any

from magicgui.widgets import ComboBox, FloatSpinBox, SpinBox
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QWidget

from napari_medseg.jobs import ProcessJob, describe_device
from napari_medseg.ui._settings import get_setting, set_setting

DEVICES = ("auto", "cpu", "cuda", "mps")
#: Device descriptions probed in this session (probing imports torch in a child process).
_DEVICE_TEXT: dict[str, str] = {}
_PROBING: set[str] = set()
_PROBE_LOCK = threading.Lock()


def device_description(device: str) -> str | None:
    """Text for the processor ``device`` resolves to, or None while it is being probed.

    The first call per device starts the probe: :func:`~napari_medseg.jobs.describe_device`
    in a child process (so the viewer's process never creates a CUDA context), driven by a
    daemon thread that touches no Qt object (so it may outlive any widget safely).
    """
    with _PROBE_LOCK:
        if device in _DEVICE_TEXT:
            return _DEVICE_TEXT[device]
        if device in _PROBING:
            return None
        _PROBING.add(device)

    def probe() -> None:
        text = "unknown (device check failed)"
        try:
            job = ProcessJob(describe_device, device, stop_kwarg=None, what="Device check",
                             nice=0)
            for _ev in job.events():
                pass
            if isinstance(job.result, str):
                text = job.result
        finally:
            with _PROBE_LOCK:
                _DEVICE_TEXT[device] = text
                _PROBING.discard(device)

    threading.Thread(target=probe, name=f"medseg-device-probe-{device}", daemon=True).start()
    return None


def _fit_spin_width(box: Any, longest: str) -> None:
    """Never cut a spin box's value or unit: room for its longest text plus the arrows."""
    box.setMinimumWidth(box.fontMetrics().horizontalAdvance(longest + " ") + 36)


#: Shortest time budget offered (minutes): preparing the images and timing the network take
#: tens of seconds on a CPU, so a shorter budget would end before the first training step.
MIN_BUDGET_MIN = 1.0


class TrainOptions(QWidget):
    """The run options form: ``budget`` (minutes), ``epochs`` and ``device`` (magicgui value
    widgets, each with its ``label``), and ``device_label`` naming the processor.

    The widgets start from the saved settings (``train/time_budget_min``,
    ``train/max_epochs``, ``device``); :meth:`remember` stores the current values back. The
    rows are a ``QFormLayout``: a magicgui ``Container`` sizes its label column with the
    application font, not the larger one napari's stylesheet sets, so its rows would not line
    up with the dock's other forms.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.budget = FloatSpinBox(
            label="Time budget",
            value=max(float(get_setting("train/time_budget_min", 10.0)), MIN_BUDGET_MIN),
            min=MIN_BUDGET_MIN, max=24 * 60.0, step=1.0,
            tooltip="Wall-clock limit for training, preparation included (at least "
                    f"{MIN_BUDGET_MIN:g} min: reading the images and planning take part of "
                    "it); the learning-rate schedule follows it")
        self.budget.native.setDecimals(1)
        self.budget.native.setSuffix(" min")
        _fit_spin_width(self.budget.native, f"{24 * 60.0:.1f} min")
        self.epochs = SpinBox(
            label="Max epochs", value=int(get_setting("train/max_epochs", 200)), min=1,
            max=100000, tooltip="Stop after this many epochs even if time is left")
        _fit_spin_width(self.epochs.native, "100000")
        device = str(get_setting("device", "auto"))
        self.device = ComboBox(
            label="Device", choices=DEVICES, value=device if device in DEVICES else "auto",
            tooltip="auto = NVIDIA GPU (mixed precision) if present, else Apple GPU, else CPU")
        self.device_label = QLabel("detecting…")
        self.device_label.setToolTip(
            "The processor training will run on. GPUs train in mixed precision; 'bfloat16' means "
            "this CPU has hardware support for the same (about 1.5x faster training).")

        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow(self.budget.label, self.budget.native)
        form.addRow(self.epochs.label, self.epochs.native)
        row = QHBoxLayout()
        row.addWidget(self.device.native)
        row.addWidget(self.device_label, 1)
        form.addRow(self.device.label, row)

        self._device_timer = QTimer(self)
        self._device_timer.setInterval(250)
        self._device_timer.timeout.connect(self._poll_device)
        self.device.changed.connect(self.probe_device)

    def values(self) -> dict[str, Any]:
        """The :class:`~napari_medseg.training.config.TrainConfig` fields this form sets."""
        return {"max_epochs": int(self.epochs.value),
                "time_budget_s": float(self.budget.value) * 60.0,
                "device": str(self.device.value)}

    def remember(self) -> None:
        """Store the values for the next session."""
        set_setting("train/time_budget_min", float(self.budget.value))
        set_setting("train/max_epochs", int(self.epochs.value))
        set_setting("device", str(self.device.value))

    def set_running(self, running: bool) -> None:
        for w in (self.budget, self.epochs, self.device):
            w.enabled = not running

    # ------------------------------------------------------------------ device
    def probe_device(self, *_: Any) -> None:
        """Show which processor training will use (probed once per session, in a child)."""
        text = device_description(str(self.device.value))
        self.device_label.setText(text or "detecting…")
        if text is None and not self._device_timer.isActive():
            self._device_timer.start()

    def _poll_device(self) -> None:
        text = device_description(str(self.device.value))
        if text is not None:
            self._device_timer.stop()
            self.device_label.setText(text)
