"""Is a freshly trained model usable? A plain-language verdict on a :class:`TrainResult`.

A run whose budget was far too short for its data on this machine still saves a model (the
best one seen), but a model that scored Dice 0.004 after 17 steps must not be announced as
"Model saved, select it in Infer". :func:`training_verdict` tells the docks, the project loop
and the CLI what to say: usable or not, why, and roughly how long this data needs here.

Rules (deliberately simple, stated in the message):

* fewer than :data:`MIN_STEPS` optimisation steps: not usable (no model learns a segmentation
  in a few dozen steps);
* a best validation Dice below :data:`MIN_DICE`: not usable;
* otherwise usable; a validation Dice that is still low (< :data:`WEAK_DICE`) is reported as
  weak, with the same advice.

The time estimate is ``MIN_STEPS`` (or twice the steps done, when more were done) times the
measured seconds per step, so it is in this machine's speed for this data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Steps below which a model is never called usable.
MIN_STEPS = 200
#: Best validation Dice below which a model is not usable.
MIN_DICE = 0.1
#: Best validation Dice below which a usable model is called weak.
WEAK_DICE = 0.5


@dataclass(frozen=True)
class Verdict:
    """What to tell the user about a trained model.

    Attributes
    ----------
    usable : bool
        ``False``: the model has not learnt the task; do not offer it as a result.
    weak : bool
        Usable but with a low validation Dice.
    reason : str
        One sentence: why (steps done, Dice), empty when usable and not weak.
    advice : str
        What to do (e.g. "give it about 6 min on this machine"), empty when not needed.
    needed_s : float or None
        Estimated budget in seconds for a usable model on this machine.
    """

    usable: bool
    weak: bool
    reason: str
    advice: str
    needed_s: float | None

    @property
    def message(self) -> str:
        """``reason`` and ``advice`` as one line."""
        return " ".join(part for part in (self.reason, self.advice) if part)


def format_duration(seconds: float) -> str:
    """``75`` -> ``"75 s"``, ``400`` -> ``"7 min"``, ``5400`` -> ``"1.5 h"``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def training_verdict(result: Any) -> Verdict:
    """Judge a training run from its result.

    Parameters
    ----------
    result : TrainResult or compatible
        Needs ``steps``, ``elapsed_s`` and ``best_metric`` (None without validation).

    Returns
    -------
    Verdict
    """
    steps = int(getattr(result, "steps", 0) or 0)
    elapsed = float(getattr(result, "elapsed_s", 0.0) or 0.0)
    best = getattr(result, "best_metric", None)
    best = None if best is None or not math.isfinite(float(best)) else float(best)
    per_step = elapsed / steps if steps > 0 and elapsed > 0 else None
    target_steps = max(MIN_STEPS, 2 * steps)
    needed = per_step * target_steps if per_step is not None else None
    advice = ""
    if needed is not None:
        advice = (f"This data needs about {format_duration(needed)} on this machine "
                  f"(~{target_steps} steps at {per_step:.2g} s per step): give training a "
                  "longer time budget.")
    dice_text = f"validation Dice {best:.3f}" if best is not None else "no validation Dice"
    if steps < MIN_STEPS:
        return Verdict(False, False, f"The model has not learnt yet: only {steps} training "
                       f"steps in {format_duration(elapsed)} ({dice_text}).", advice, needed)
    if best is not None and best < MIN_DICE:
        return Verdict(False, False, f"The model has not learnt the task: {dice_text} after "
                       f"{steps} steps.", advice, needed)
    if best is not None and best < WEAK_DICE:
        return Verdict(True, True, f"The model is still weak: {dice_text} after {steps} "
                       "steps.", advice, needed)
    return Verdict(True, False, "", "", needed)


__all__ = ["MIN_DICE", "MIN_STEPS", "WEAK_DICE", "Verdict", "format_duration",
           "training_verdict"]
