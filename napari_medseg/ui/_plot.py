"""Live training plot for the Train dock: loss (left axis) and validation Dice (right axis).

A small matplotlib ``FigureCanvasQTAgg`` styled like the napari theme. Points are added from
the main thread (in ``thread_worker`` callbacks); redraws are throttled with ``draw_idle`` so a
fast training loop cannot flood the event loop.
"""

from __future__ import annotations

import time
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

LOSS_COLOR = "#5ab4f0"
DICE_COLOR = "#f5a623"


def _theme_colors(theme_id: str | None) -> tuple[str, str, str]:
    """(background, text, grid) colours of a napari theme; dark defaults if unknown."""
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(theme_id or "dark")
        return theme.background.as_hex(), theme.text.as_hex(), theme.primary.as_hex()
    except Exception:  # noqa: BLE001 - a custom/unknown theme must not break the dock
        return "#23242b", "#f0f1f2", "#424a54"


class TrainingPlot(QWidget):
    """Training loss per step (thin) and per epoch (thick), validation Dice per epoch.

    Parameters
    ----------
    theme : str, optional
        napari theme id (``viewer.theme``) used for colours.
    min_redraw_s : float
        Minimum seconds between two redraws while points stream in.
    """

    def __init__(self, theme: str | None = None, min_redraw_s: float = 3.0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.min_redraw_s = float(min_redraw_s)
        self._last_draw = 0.0
        bg, fg, grid = _theme_colors(theme)
        # Fixed pixel margins instead of constrained layout: a redraw costs ~15 ms instead of
        # ~60-100 ms on a small CPU-only machine (it runs on the GUI thread).
        self.figure = Figure(figsize=(3.2, 2.0), dpi=100, facecolor=bg)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.mpl_connect("resize_event", self._fit_margins)
        self.canvas.setMinimumHeight(170)
        self.canvas.setMaximumHeight(240)
        self.canvas.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)

        ax = self.figure.add_subplot(111)
        ax2 = ax.twinx()
        self.loss_axes, self.dice_axes = ax, ax2
        for a in (ax, ax2):
            a.set_facecolor(bg)
            a.tick_params(colors=fg, labelsize=7)
            for spine in a.spines.values():
                spine.set_color(grid)
        self._grid_style = {"color": grid, "linewidth": 0.5, "alpha": 0.6}
        ax.grid(True, **self._grid_style)
        ax.set_xlabel("epoch", color=fg, fontsize=8)
        ax.set_ylabel("training loss", color=LOSS_COLOR, fontsize=8)
        ax2.set_ylabel("validation Dice", color=DICE_COLOR, fontsize=8)
        ax2.set_ylim(0.0, 1.0)
        (self._step_line,) = ax.plot([], [], color=LOSS_COLOR, linewidth=0.7, alpha=0.45)
        (self._epoch_line,) = ax.plot([], [], color=LOSS_COLOR, linewidth=1.8, marker="o",
                                      markersize=3, label="loss")
        (self._dice_line,) = ax2.plot([], [], color=DICE_COLOR, linewidth=1.8, marker="s",
                                      markersize=3, label="val Dice")
        self._text = ax.text(0.5, 0.5, "Start training to see the loss and Dice curves",
                             transform=ax.transAxes, ha="center", va="center", color=fg,
                             fontsize=8, alpha=0.8)
        self._fit_margins()
        self.clear()

    def _fit_margins(self, event: Any = None) -> None:
        """Keep room for tick labels and axis titles whatever the dock size (pixels)."""
        w, h = self.figure.bbox.width, self.figure.bbox.height
        if w < 50 or h < 50:
            return
        self.figure.subplots_adjust(left=min(46 / w, 0.4), right=1 - min(44 / w, 0.4),
                                    bottom=min(38 / h, 0.4), top=1 - min(8 / h, 0.2))

    # -- data ----------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget all points (new training run)."""
        self.step_x: list[float] = []
        self.step_loss: list[float] = []
        self.epoch_x: list[float] = []
        self.epoch_loss: list[float] = []
        self.dice_x: list[float] = []
        self.dice: list[float] = []
        self._text.set_visible(True)
        self._show_axes(False)
        self._update_lines()
        self.canvas.draw_idle()

    def _show_axes(self, on: bool) -> None:
        """Axes, ticks and titles only once there is something to read on them."""
        for a in (self.loss_axes, self.dice_axes):
            a.xaxis.set_visible(on)
            a.yaxis.set_visible(on)
            for spine in a.spines.values():
                spine.set_visible(on)
        if on:
            self.loss_axes.grid(True, **self._grid_style)
        else:
            self.loss_axes.grid(False)

    def add_step(self, epoch_position: float, loss: float) -> None:
        """Add a training-step loss at a fractional epoch position (e.g. 2.35)."""
        self.step_x.append(float(epoch_position))
        self.step_loss.append(float(loss))
        self._maybe_redraw()

    def add_epoch(self, epoch: float, loss: float | None, dice: float | None) -> None:
        """Add the end-of-epoch mean loss and validation Dice (either may be None).

        ``epoch`` is the position on the step axis where the epoch ended (steps done /
        steps per epoch), so validation points sit where they were measured.
        """
        if loss is not None:
            self.epoch_x.append(float(epoch))
            self.epoch_loss.append(float(loss))
        if dice is not None:
            self.dice_x.append(float(epoch))
            self.dice.append(float(dice))
        self._maybe_redraw(force=True)

    # -- drawing -------------------------------------------------------------------------
    def _maybe_redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_draw >= self.min_redraw_s:
            self._last_draw = now
            self.redraw()

    def _update_lines(self) -> None:
        self._step_line.set_data(self.step_x, self.step_loss)
        self._epoch_line.set_data(self.epoch_x, self.epoch_loss)
        self._dice_line.set_data(self.dice_x, self.dice)

    def redraw(self) -> None:
        """Rescale the axes to the data and schedule a repaint."""
        self._update_lines()
        has_data = bool(self.step_x or self.epoch_x or self.dice_x)
        self._text.set_visible(not has_data)
        self._show_axes(has_data)
        if has_data:
            xs = self.step_x + self.epoch_x + self.dice_x
            self.loss_axes.set_xlim(min(0.0, min(xs)), max(1.0, max(xs)) * 1.02)
            losses = self.step_loss + self.epoch_loss
            if losses:
                lo, hi = min(losses), max(losses)
                pad = 0.05 * (hi - lo) if hi > lo else 0.1 * abs(hi) + 1e-3
                self.loss_axes.set_ylim(lo - pad, hi + pad)
        self.canvas.draw_idle()

    def summary(self) -> dict[str, Any]:
        """Numbers shown (for tests and the status line)."""
        return {"steps": len(self.step_x), "epochs": len(self.epoch_x),
                "best_dice": max(self.dice) if self.dice else None}
