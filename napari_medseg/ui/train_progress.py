"""The Train dock's live progress: the status line, the loss / validation-Dice curves, and the
texts made from the training child's events (each step, each epoch, the end of the run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from napari_medseg.events import Event
from napari_medseg.ui._controls import hint
from napari_medseg.ui._plot import TrainingPlot


def _mean_dice(metrics: dict[str, float] | None) -> float | None:
    """Mean validation Dice from an epoch event's metrics (several naming styles accepted)."""
    if not metrics:
        return None
    for key in ("dice_mean", "mean_dice", "dice", "val_dice"):
        if metrics.get(key) is not None:
            return float(metrics[key])
    per_class = [float(v) for k, v in metrics.items() if k.lower().startswith("dice") and
                 v is not None]
    return float(np.mean(per_class)) if per_class else None


def _format_duration(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def outcome(ev: Event, result: Any) -> tuple[str, str]:
    """The status text of a finished run and how to notify it (``"info"``, ``"warning"`` or
    ``"error"``): saved / not usable yet / weak, cancelled (best model so far kept), failed."""
    model_dir = getattr(result, "model_dir", None)
    saved = model_dir is not None and Path(model_dir).is_dir()
    if ev.kind == "finished":
        from napari_medseg.training.verdict import training_verdict

        best = getattr(result, "best_metric", None)
        score = f" (best validation Dice {best:.3f})" if best is not None else ""
        verdict = training_verdict(result)
        if not saved:
            if getattr(result, "steps", None) == 0 and ev.message:
                return ev.message, "warning"  # the core says why no step ran (e.g. budget)
            return "Training finished but no model was saved.", "warning"
        if not verdict.usable:
            return f"Model {Path(model_dir).name} is not usable yet. {verdict.message}", "warning"
        if verdict.weak:
            return f"Model saved: {Path(model_dir).name}{score}. {verdict.message}", "warning"
        return f"Model saved: {Path(model_dir).name}{score}. Select it in Infer.", "info"
    if ev.kind == "cancelled":
        text = "Training cancelled; earlier models are unchanged."
        if saved:
            text += f" The best model so far was saved as {Path(model_dir).name}."
        return text, "info"
    return ev.message, "error"


class TrainProgress(QWidget):
    """Status line (``status_label``), live curves (``plot``) and the note that training runs
    apart from the viewer. :meth:`begin` starts a run, :meth:`on_event` follows it."""

    def __init__(self, theme: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        self.status_label = QLabel("Ready.")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        v.addWidget(self.status_label)
        self.plot = TrainingPlot(theme=theme)
        v.addWidget(self.plot)
        v.addWidget(hint("Training runs in a separate process: keep annotating while it runs. "
                         "Your layers are copied, never changed."))
        self._steps_per_epoch = 1
        self._best_dice: float | None = None

    def begin(self, steps_per_epoch: int, text: str) -> None:
        """A new run: empty curves, no best Dice yet, ``text`` on the status line."""
        self.plot.clear()
        self._steps_per_epoch = max(int(steps_per_epoch), 1)
        self._best_dice = None
        self.status_label.setText(text)

    def on_event(self, ev: Event) -> None:
        """Curves and status line from one event of the training child."""
        if ev.kind == "step":
            if ev.loss is not None and ev.step is not None:
                self.plot.add_step(ev.step / self._steps_per_epoch, ev.loss)
            parts = [f"Step {ev.step}"]
            if ev.epoch is not None:
                parts.append(f"epoch {ev.epoch}")
            if ev.loss is not None:
                parts.append(f"loss {ev.loss:.3f}")
            if self._best_dice is not None:
                parts.append(f"best val Dice {self._best_dice:.3f}")
            if ev.eta_s is not None:
                parts.append(f"~{_format_duration(ev.eta_s)} left")
            self.status_label.setText(" · ".join(parts))
        elif ev.kind == "epoch":
            dice = _mean_dice(ev.metrics)
            if dice is not None:
                self._best_dice = dice if self._best_dice is None else max(self._best_dice, dice)
            if ev.epoch is not None:
                # place it where it was measured on the step axis (a short last epoch ends
                # before its whole number)
                position = (ev.step / self._steps_per_epoch if ev.step and self._steps_per_epoch
                            else ev.epoch)
                self.plot.add_epoch(position, ev.loss, dice)
        elif ev.kind == "message":
            if ev.level == "warning":
                from napari.utils.notifications import show_warning

                show_warning(ev.message)
            elif ev.message:
                self.status_label.setText(ev.message)
        elif ev.kind == "start" and ev.message:
            self.status_label.setText(ev.message)
