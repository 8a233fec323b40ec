"""``train()``: the training generator (plan -> preprocess -> optimise -> validate -> save)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_medseg.events import Event
from napari_medseg.interactive.guidance import (
    ZeroGuidance,
    add_guidance_channels,
    channels_per_class,
    guidance_channels,
)
from napari_medseg.models.card import (
    CARD_FILE,
    ModelCard,
    ModelFolderBusyError,
    _atomic_write_bytes,
    model_folder_lock,
    read_card,
    save_model,
)
from napari_medseg.models.engine import (
    autocast_dtype,
    channels_last_format,
    channels_last_pays,
    resolve_device,
)
from napari_medseg.models.factory import (
    build_network,
    count_parameters,
    load_matching_weights,
)
from napari_medseg.training.augment import (
    AugmentationConfig,
    augment_batch,
    resolve_preset,
)
from napari_medseg.training.config import TrainConfig, TrainResult, default_learning_rate
from napari_medseg.training.ddp import DistributedContext
from napari_medseg.training.losses import SegmentationLoss
from napari_medseg.training.planning import (
    DatasetLike,
    StopFlag,
    _Cancelled,
    _Plan,
    _plan,
)
from napari_medseg.training.sampling import PatchSampler
from napari_medseg.training.validation import (
    estimate_validation_s,
    validate,
    validation_pixels,
)

#: Consecutive NaN/inf steps after which training stops with an error (updates are skipped).
MAX_NONFINITE_STEPS = 50
#: Under a time budget, the last validation is paid for (training stops early to leave it
#: time) only when it costs at most this share of the time left after preparation; a dearer
#: one (whole photographs on a CPU, a short budget) is skipped and training uses the time.
MAX_VALIDATION_SHARE = 0.5
#: A validation is skipped when it would end the run more than this share past its budget.
BUDGET_TOLERANCE = 0.03

class _WeightAverage:
    """Exponential moving average of a model's weights (a copy of the model).

    The decay ramps up as ``(1 + step) / (10 + step)`` so that early in a run (and in short
    fine-tuning runs) the average follows the weights closely, then settles at ``decay``.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        import copy

        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        weight = 1.0 - min(self.decay, (1.0 + step) / (10.0 + step))
        for avg, cur in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(cur.detach(), weight)
        for avg, cur in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(cur)


def _stop_callable(should_stop: StopFlag) -> Callable[[], bool]:
    if should_stop is None:
        return lambda: False
    if hasattr(should_stop, "is_set"):
        return should_stop.is_set
    if callable(should_stop):
        return should_stop
    raise TypeError("should_stop must be a callable or a threading.Event")


def _write_card(model_dir: Path, card: ModelCard) -> None:
    import json

    text = json.dumps(card.to_dict(), indent=2, default=float).encode()
    _atomic_write_bytes(model_dir / CARD_FILE, lambda fh: fh.write(text))


def train(
    config: TrainConfig,
    dataset: DatasetLike,
    out_dir: str | os.PathLike,
    init_model: str | os.PathLike | None = None,
    should_stop: StopFlag = None,
) -> Generator[Event, None, TrainResult]:
    """Train (or fine-tune) a segmentation network; a generator of progress events.

    Parameters
    ----------
    config : TrainConfig
    dataset : path, Dataset, or list of Case / (image Volume, labels[, annotated mask])
        An MSD / nnU-Net folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``) or in-memory
        cases; label ``IGNORE_LABEL`` (255) and False in an annotated mask mark voxels nobody
        annotated, which add nothing to the loss.
    out_dir : path
        Model directory; the best model so far (by validation mean Dice; the latest without
        validation cases) is written there atomically after each improving epoch.
    init_model : path, optional
        Model directory to fine-tune from (its plan is reused; the output layer is re-initialised
        when the class count differs).
    should_stop : callable or threading.Event, optional
        Checked before every step; cancelling (or calling ``close()`` on the generator) keeps the
        last best model in ``out_dir`` untouched.

    Yields
    ------
    Event
        ``start``, ``message``, ``step`` (loss, ETA), ``epoch`` (mean loss, validation metrics),
        then ``finished`` or ``cancelled`` with the :class:`TrainResult`. Invalid input yields an
        ``error`` event and then raises the ``ValueError`` (e.g. :class:`DatasetError`).

    Returns
    -------
    TrainResult
    """
    t0 = time.perf_counter()
    stop_requested = _stop_callable(should_stop)
    out = Path(out_dir)
    try:
        device = resolve_device(config.device)
        dist = DistributedContext.from_env(device)
    except ValueError as exc:
        yield Event("error", message=str(exc), level="error")
        raise
    device = dist.device
    try:
        seed = 0 if config.seed is None else int(config.seed)
        try:
            plan = _plan(config, dataset, init_model, seed, stop_requested, device=device,
                         measure=not dist.enabled, t0=t0)
        except _Cancelled:
            result = TrainResult(status="cancelled", model_dir=None, best_metric=None,
                                 best_epoch=None, epochs=0, steps=0,
                                 elapsed_s=time.perf_counter() - t0, stop_reason="cancelled",
                                 history=[])
            yield Event("cancelled", result=result,
                        message="Training cancelled before any model was saved.")
            return result
        except ValueError as exc:
            yield Event("error", message=str(exc), level="error")
            raise
        if dist.is_main:
            try:
                with model_folder_lock(out):  # a second training into `out` is refused
                    result = yield from _run(config, plan, out, device, dist, seed,
                                             stop_requested, t0)
            except ModelFolderBusyError as exc:
                yield Event("error", message=str(exc), level="error")
                raise
        else:
            result = yield from _run(config, plan, out, device, dist, seed, stop_requested, t0)
        return result
    finally:
        dist.close()


def _run(config, plan: _Plan, out: Path, device, dist: DistributedContext, seed: int,
         stop_requested, t0: float) -> Generator[Event, None, TrainResult]:
    card = plan.card
    dims, patch = card.dims, tuple(card.patch_size)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    model = build_network(card.network).to(device)
    amp_dtype = autocast_dtype(device, config.amp)
    channels_last = channels_last_pays(device, dims, amp_dtype)
    if channels_last:  # oneDNN: same results, faster steps (3D; 2D in bfloat16)
        model = model.to(memory_format=channels_last_format(dims))
    messages = list(plan.messages)
    if plan.init_state is not None:
        _, skipped = load_matching_weights(model, plan.init_state)
        if skipped:
            messages.append(f"Re-initialised {len(skipped)} tensor(s) of the output layer for "
                            "the new classes.")
    net = dist.wrap(model)
    fine_tuning = plan.init_state is not None
    lr = config.learning_rate or default_learning_rate(config.optimizer, plan.pictures,
                                                       fine_tuning)
    why = "" if config.learning_rate or config.optimizer != "adamw" else (
        " for 2D pictures" if plan.pictures else " for fine-tuning" if fine_tuning else "")
    messages.append(f"{'AdamW' if config.optimizer == 'adamw' else 'SGD'}, peak learning rate "
                    f"{lr:g}{why}.")
    if config.optimizer == "adamw":
        # fused kernel: one pass over all parameters (PyTorch's CPU default is a Python loop)
        fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=config.weight_decay,
                                **fused)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.99, nesterov=True,
                              weight_decay=config.weight_decay)
    use_amp = bool(config.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = SegmentationLoss(config.loss)
    # exponential moving average of the weights: what is validated and saved
    ema = _WeightAverage(model, config.ema_decay) if config.ema_decay else None
    kept = ema.model if ema is not None else model
    sampler = PatchSampler([plan.images[c] for c in plan.train_ids],
                           [plan.labels[c] for c in plan.train_ids], patch,
                           config.foreground_fraction, seed=seed + 1000 * dist.rank)
    aug_name = resolve_preset(config.augmentation, len(plan.train_ids))
    aug = AugmentationConfig.preset(aug_name)
    if aug is not None and plan.pictures:
        aug = aug.for_pictures(colour=card.in_channels == 3)
    if aug is not None and card.mirror_axes is not None:
        aug = replace(aug, flip_axes=tuple(card.mirror_axes))
    try:
        gen = torch.Generator(device=device)
    except RuntimeError:
        gen = None
    if gen is not None:
        gen.manual_seed(seed + 1000 * dist.rank)
    bad_steps = 0  # consecutive steps with a non-finite loss or gradient
    guidance = card.guidance
    click_rng = np.random.default_rng(seed + 7919 * (dist.rank + 1))
    # validation (and predict) see a guided model with zero click maps: the automatic result
    validated = ZeroGuidance(kept, guidance_channels(card)) if guidance else kept
    val_images = [plan.images[c] for c in plan.val_ids]
    val_labels = [plan.labels[c] for c in plan.val_ids]
    val_pixels = validation_pixels(val_images, patch, dims, config.val_overlap)
    label_names = plan.dataset.label_names
    total_steps = config.max_epochs * config.steps_per_epoch
    budget = config.time_budget_s
    yield Event(
        "start", step=0, total=total_steps,
        message=(f"Training a {dims}D {card.network['architecture']} "
                 f"({count_parameters(model) / 1e6:.2f} M parameters, patch {patch}) on "
                 f"{len(plan.train_ids)} case(s) with {aug_name} augmentation, validating on "
                 f"{len(plan.val_ids)}, device {device}"
                 + (" (bfloat16)" if amp_dtype is torch.bfloat16 else "")
                 + (f", {dist.world_size} processes" if dist.enabled else "")),
    )
    for message in messages:
        yield Event("message", message=message)
    step, epoch = 0, 0
    best, best_epoch, since_best = -math.inf, None, 0
    history: list[dict[str, Any]] = []
    step_time, val_time = 0.0, 0.0
    last_validated = time.perf_counter()
    saved = False
    said_skip = False  # "validation skipped" said once per run
    status, reason = "finished", "max_epochs"
    current_lr = lr

    elapsed = 0.0  # agreed between ranks, so every rank uses the same learning rate

    def progress() -> float:
        p = step / total_steps
        if budget:
            p = max(p, elapsed / budget)
        return min(p, 1.0)

    def validation_cost() -> float:
        # seconds the next validation takes: measured once one ran, before that estimated
        # from the validation images' windows and the training steps' speed
        if val_time:
            return val_time
        return estimate_validation_s(val_pixels, patch, step_time, plan.batch_size)

    def reserve_for_validation() -> float:
        # time kept free at the end of a budget for the last validation, if it is worth it
        cost = validation_cost()
        if budget and cost > MAX_VALIDATION_SHARE * max(budget - prepared_s, 0.0):
            return 0.0  # it would eat most of the run: train instead, skip it at the end
        return 1.2 * cost

    def predict_for_clicks(inputs: torch.Tensor) -> torch.Tensor:
        # the network's own prediction (no gradient; the unwrapped module, so that DDP's
        # gradient bookkeeping is untouched) where simulated clicks go to its errors
        if channels_last:
            inputs = inputs.contiguous(memory_format=channels_last_format(dims))
        with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype,
                                             enabled=amp_dtype is not None):
            return model(inputs).argmax(1)

    prepared_s = time.perf_counter() - t0  # reading, normalising, planning, building
    while epoch < config.max_epochs:
        net.train()
        losses: list[float] = []
        flag = 0
        for _ in range(config.steps_per_epoch):
            local = 0
            now = time.perf_counter() - t0
            if stop_requested():
                local = 2
            elif budget and now + reserve_for_validation() + step_time > budget:
                local = 1
            agreed = dist.agree_max([float(local), now])
            flag, elapsed = int(agreed[0]), agreed[1]
            if flag:
                break
            ts = time.perf_counter()
            p = progress()
            wf = config.warmup_fraction
            factor = max(p / wf, 0.02) if p < wf else (1 - (p - wf) / (1 - wf)) ** 0.9
            current_lr = lr * max(factor, 0.0)
            for group in opt.param_groups:
                group["lr"] = current_lr
            x, y = sampler.sample_batch(plan.batch_size)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x, y = augment_batch(x, y, aug, gen)
            if guidance:
                # clicks in the network's own errors only once it predicts something
                own = float(guidance.get("p_own_errors", 0.6)) if p > 0.15 else 0.0
                x = add_guidance_channels(
                    x, y, click_rng, card.num_classes,
                    p_no_click=float(guidance.get("p_no_click", 0.3)),
                    max_clicks=int(guidance.get("max_clicks", 5)),
                    spacing=None if card.spacing is None else
                    [1.0 if s is None else s for s in card.spacing][-dims:],
                    radius_mm=float(guidance["radius_mm"]),
                    predict=predict_for_clicks if own > 0 else None, p_own_errors=own,
                    p_class=float(guidance.get("p_class", 0.6)),
                    per_class=channels_per_class(guidance))
            if channels_last:
                x = x.contiguous(memory_format=channels_last_format(dims))
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = net(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), 12.0)
            if not torch.isfinite(grad_norm):
                # a NaN/inf loss or gradient (identical on every rank after the all-reduce):
                # skip the update so the weights stay finite; give up if it keeps happening
                opt.zero_grad(set_to_none=True)
                scaler.update()
                bad_steps += 1
                if bad_steps >= MAX_NONFINITE_STEPS:
                    message = (f"Training diverged: the loss was not a number for {bad_steps} "
                               "steps in a row. Check the images for extreme values or lower "
                               "the learning rate.")
                    yield Event("error", message=message, level="error")
                    raise ValueError(message)
                continue
            bad_steps = 0
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(model, step)
            step += 1
            losses.append(float(loss.detach()))
            dt = time.perf_counter() - ts
            step_time = dt if step_time == 0 else 0.9 * step_time + 0.1 * dt
            eta = step_time * (total_steps - step)
            if budget:
                eta = min(eta, max(budget - (time.perf_counter() - t0), 0.0))
            yield Event("step", step=step, total=total_steps, epoch=epoch + 1,
                        loss=losses[-1], eta_s=eta)
        if flag == 2:
            status, reason = "cancelled", "cancelled"
            break
        if not losses and bad_steps:
            message = (f"Training diverged: the loss was not a number in all {bad_steps} steps "
                       "of an epoch. Check the images for extreme values or lower the learning "
                       "rate.")
            yield Event("error", message=message, level="error")
            raise ValueError(message)
        if not losses:
            reason = "time_budget"
            break
        epoch += 1
        metrics: dict[str, float] = {}
        improved = 0.0
        validation_cancelled = False
        validate_now = (epoch == 1 or flag == 1 or progress() >= config.dense_validation_from
                        or epoch % max(config.early_validation_every, 1) == 0
                        or epoch == config.max_epochs)
        if plan.pictures and budget and not (epoch == 1 or flag == 1
                                             or epoch == config.max_epochs):
            # sliding windows over whole pictures cost many training steps: under a budget,
            # validate only late in the run and at most ~10 % of the time
            validate_now = (progress() >= config.dense_validation_from
                            and time.perf_counter() - last_validated >= 9 * validation_cost())
        if dist.is_main:
            cost = validation_cost()
            left = budget - (time.perf_counter() - t0) if budget else math.inf
            if budget and val_images and validate_now and cost > left + BUDGET_TOLERANCE * budget:
                # the budget cannot pay for it: keep the time, say so once
                validate_now = False
                improved = float(best == -math.inf)  # none validated yet: keep the latest
                if not said_skip:
                    said_skip = True
                    kept_text = ("the best model so far is kept" if best > -math.inf else
                                 "the latest weights are saved without a validation Dice")
                    yield Event("message", level="warning", message=(
                        f"Validation skipped: scoring {len(val_images)} held-out image(s) "
                        f"would take about {cost:.0f} s and the time budget has "
                        f"{max(left, 0.0):.0f} s left; {kept_text}."))
            elif val_images and not validate_now:
                improved = 0.0
            elif val_images:
                tv = time.perf_counter()
                scores = validate(validated, val_images, val_labels, patch, dims, label_names,
                                  device,
                                  config.val_overlap, config.amp, should_stop=stop_requested)
                if scores is None:  # cancelled: nothing is saved
                    validation_cancelled = True
                else:
                    metrics = scores
                    val_time = time.perf_counter() - tv
                    last_validated = time.perf_counter()
                    improved = float(metrics["dice_mean"] > best)
            else:
                improved = 1.0
        # rank 0 decides; every rank follows (early stopping must stop all ranks together)
        improved_f, validated_f = dist.broadcast_values([improved, float(validate_now)])
        improved, validate_now = improved_f > 0, validated_f > 0
        if validation_cancelled and not dist.enabled:
            status, reason = "cancelled", "cancelled"
            break  # (several processes: the next step's stop check ends them all together)
        entry = {"epoch": epoch, "step": step, "loss": float(np.mean(losses)), "lr": current_lr,
                 "time_s": round(time.perf_counter() - t0, 2), **metrics}
        history.append(entry)
        message = ""
        if not validate_now and val_images and not improved:
            pass  # no validation this epoch: neither better nor worse
        elif improved:
            since_best = 0
            best_epoch = epoch
            if metrics:
                best = metrics["dice_mean"]
                message = f"new best validation Dice {best:.4f}"
            if dist.is_main:
                save_model(kept, replace(card, metrics_history=list(history),
                                          best_metric=None if best == -math.inf else best,
                                          best_epoch=best_epoch), out)
            saved = True
        else:
            since_best += 1
        yield Event("epoch", step=step, total=total_steps, epoch=epoch, loss=entry["loss"],
                    metrics=metrics, message=message)
        if flag == 1:
            reason = "time_budget"
            break
        patience = config.early_stopping_patience
        if patience and since_best >= patience:
            reason = "early_stopping"
            yield Event("message", message=f"Early stopping: no improvement for {patience} "
                                           "validations.")
            break

    result = TrainResult(
        status=status,
        model_dir=str(out) if saved else None,
        best_metric=None if best == -math.inf else best,
        best_epoch=best_epoch,
        epochs=epoch,
        steps=step,
        elapsed_s=time.perf_counter() - t0,
        stop_reason=reason,
        history=history,
    )
    if status == "cancelled":
        yield Event("cancelled", step=step, total=total_steps, epoch=epoch, result=result,
                    message="Training cancelled; the best model so far is kept."
                    if saved else "Training cancelled before any model was saved.")
        return result
    if saved and dist.is_main:
        final = read_card(out)
        final.metrics_history = history
        final.train_config = dict(final.train_config, stop_reason=reason, steps=step,
                                  world_size=dist.world_size)
        _write_card(out, final)
    if step == 0 and reason == "time_budget" and budget:
        message = budget_used_by_preparation(budget, prepared_s)
    else:
        message = (f"Training finished ({reason}); best validation Dice "
                   + (f"{result.best_metric:.4f} at epoch {best_epoch}"
                      if result.best_metric is not None else "n/a"))
    yield Event("finished", step=step, total=total_steps, epoch=epoch, result=result,
                message=message)
    return result


def budget_used_by_preparation(budget_s: float, prepared_s: float) -> str:
    """The sentence for a run whose time budget ran out before its first training step:
    how long preparing took, and a budget (whole minutes) that leaves time to learn."""
    enough_min = max(1, math.ceil((2.0 * prepared_s + 30.0) / 60.0))
    return (f"No model was saved: the {_duration(budget_s)} time budget ran out while preparing "
            f"the data and the plan ({_duration(prepared_s)} on this machine), before any "
            f"training step. Give a budget of at least {enough_min} min.")


def _duration(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"
