"""Progress events yielded by long-running core jobs (training, inference, batch work).

Long work in the core is a generator of :class:`Event` objects. The GUI drives it with
napari's ``thread_worker`` (or a child process that streams the events back), the CLI with a
progress bar. Events are small, picklable and JSON-friendly: never whole volumes.

Kinds
-----
``"start"``      job begins; ``total`` = planned steps (or None), ``message`` describes the job.
``"step"``       one optimisation / inference step; ``step``, ``total``, ``loss``, ``eta_s``.
``"epoch"``      end of an epoch; ``epoch``, ``loss`` (mean train loss), ``metrics`` (validation,
                 e.g. ``{"dice_mean": 0.81, "dice/Anterior": 0.8}``), ``message`` may say "new best".
``"message"``    free text for the user; ``level`` is "info" or "warning".
``"finished"``   last event; ``result`` holds the job's result object (path, metrics ...).
``"cancelled"``  the job stopped at the user's request; ``result`` holds what was kept.
``"error"``      the job failed; ``message`` is a sentence for a clinician (no traceback).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from napari_medseg.labels import IGNORE_LABEL  # noqa: F401  (re-exported: its first home)

EVENT_KINDS = ("start", "step", "epoch", "message", "finished", "cancelled", "error")


@dataclass
class Event:
    kind: str
    step: int | None = None
    total: int | None = None
    epoch: int | None = None
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    message: str = ""
    level: str = "info"
    result: Any = None

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; expected one of {EVENT_KINDS}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``result`` is dropped unless it is plain data)."""
        d = asdict(self)
        if not isinstance(self.result, (str, int, float, bool, dict, list, type(None))):
            d["result"] = repr(self.result)
        return d

