"""The ``napari-medseg`` command line: ``info``, ``train``, ``predict``, ``evaluate``.

Every user-facing problem (bad path, unreadable file, dataset layout, model that does not fit)
ends with one line on stderr and exit status 2; outputs are written atomically, so a failed or
interrupted run leaves nothing half-written. Progress bars go to stderr, results to stdout.

Multi-process training: ``torchrun --nproc_per_node 2 $(which napari-medseg) train DATASET --out M``
(gloo on CPU, NCCL on GPUs); only rank 0 prints and writes the model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and (exc.filename or exc.filename2):
        # "[Errno 13] Permission denied: 'out/.tmp-4f9a'" -> "out: permission denied": the
        # place the user named, never the hidden temporary file written first
        from napari_medseg.io.atomic import TEMP_PREFIX

        where = Path(str(exc.filename2 or exc.filename))
        if where.name.startswith((TEMP_PREFIX, ".tmp")):
            where = where.parent
        if isinstance(exc, FileExistsError):  # which file, and what to do about it
            return f"{where} already exists; choose another path, or move {where.name} away."
        return f"{where}: {exc.strerror[:1].lower()}{exc.strerror[1:]}"
    text = " ".join(str(exc).split())
    return text or exc.__class__.__name__


def _finite(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None, so the printed JSON is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _dumps(obj: Any, **kwargs: Any) -> str:
    """JSON text of a summary: numpy values converted, NaN/inf written as null."""
    return json.dumps(_finite(json.loads(json.dumps(obj, default=_json_default))),
                      allow_nan=False, **kwargs)


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
    except ImportError:  # pragma: no cover
        pass
    return str(value)


#: pydicom's remarks on a DICOM file's character set, in the user's words (pattern, text).
_CHARSET_WARNINGS = (
    (re.compile(r"Incorrect value for Specific Character Set '(.*?)' - assuming '(.*?)'"),
     "the DICOM files give their character set as '{0}', which is not a DICOM name; their "
     "text (names, descriptions) was read as {1}"),
    (re.compile(r"Unknown encoding '(.*?)' - using default encoding"),
     "the DICOM files use a character set napari-medseg does not know ('{0}'); their text "
     "(names, descriptions) was read as plain ASCII and may show wrong letters"),
    (re.compile(r"Failed to decode byte string with encoding|Found unknown escape sequence"),
     "some DICOM text (names, descriptions) does not match the files' character set; the "
     "letters that could not be read are shown as \N{REPLACEMENT CHARACTER}"),
    (re.compile(r"for Specific Character Set does not allow code extensions|cannot be used as "
                r"code extension"),
     "the DICOM files list character sets that cannot be combined; the first one was used "
     "for their text"),
    (re.compile(r"Failed to encode value with encodings"),
     "some text could not be written in the DICOM files' character set; the letters it "
     "lacks were replaced"),
)
#: pydicom's remarks on how a header value is spelt: nothing a user can or needs to act on.
_HEADER_NOISE = re.compile(r"unlikely to represent the intended person name|^Invalid value "
                           r"for VR |exceeds the maximum length of")


def _user_warning(text: str) -> str | None:
    """A warning as the user sees it: pydicom's character-set remarks become one plain line,
    its remarks on the spelling of header values are left out (None); others as they are."""
    for pattern, plain in _CHARSET_WARNINGS:
        found = pattern.search(text)
        if found:
            return plain.format(*found.groups())
    if _HEADER_NOISE.search(text):
        return None
    return text


# --------------------------------------------------------------------------------------------
# info


def cmd_info(args: argparse.Namespace) -> int:
    import warnings

    from napari_medseg.io.info import describe_path

    info = describe_path(args.path, phi=args.phi, check_voxels=True)
    print(_dumps(info, indent=2))
    if info.get("non_finite_voxels"):  # also said on stderr: a NaN image is easy to miss
        text = next((w for w in info.get("warnings", []) if "NaN or infinite" in w), None)
        if text:
            warnings.warn(text, UserWarning, stacklevel=1)
    return 0


# --------------------------------------------------------------------------------------------
# option checks (one line, exit 2, before any work)

#: Largest training patch the command line accepts (voxels): 256^3.
MAX_PATCH_VOXELS = 2**24


def _check_options(args: argparse.Namespace) -> None:
    """Refuse impossible option values with one line naming the option (raises ValueError)."""
    def at_least(name: str, minimum: int) -> None:
        value = getattr(args, name.lstrip("-").replace("-", "_"), None)
        if value is not None and value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, not {value}.")

    def number(name: str, lo: float, hi: float | None = None, open_lo: bool = False,
               open_hi: bool = False) -> None:
        value = getattr(args, name.lstrip("-").replace("-", "_"), None)
        if value is None:
            return
        if not math.isfinite(value) or (value <= lo if open_lo else value < lo) or (
                hi is not None and (value >= hi if open_hi else value > hi)):
            left = "(" if open_lo else "["
            right = ")" if open_hi else "]"
            span = f"{left}{lo:g}, {hi:g}{right}" if hi is not None else f"above {lo:g}"
            raise ValueError(f"{name} must be {'in ' if hi is not None else ''}{span}, "
                             f"not {value:g}.")

    at_least("--threads", 1)
    if args.command == "suggest":
        at_least("--top", 1)
    if args.command == "predict":
        at_least("--channel", 0)
    if args.command == "train":
        for name in ("--max-epochs", "--steps-per-epoch", "--batch-size", "--early-stopping"):
            at_least(name, 1)
        at_least("--fold", 0)
        at_least("--base-channels", 2)
        if args.base_channels > 512:
            raise ValueError(f"--base-channels must be at most 512, not {args.base_channels}.")
        number("--time-budget-s", 0, open_lo=True)
        number("--lr", 0, open_lo=True)
        number("--val-fraction", 0, 1, open_hi=True)
        if args.patch_size is not None:
            patch = list(args.patch_size)
            if len(patch) not in (2, 3):
                raise ValueError(f"--patch-size takes 2 or 3 numbers (voxels), got {len(patch)}.")
            if min(patch) < 4:
                raise ValueError(f"--patch-size {' '.join(map(str, patch))}: every side must be "
                                 "at least 4 voxels.")
            if math.prod(patch) > MAX_PATCH_VOXELS:
                raise ValueError(
                    f"--patch-size {' '.join(map(str, patch))} is {math.prod(patch):,} voxels, "
                    f"more than the {MAX_PATCH_VOXELS:,} (256^3) a training patch may have; "
                    "choose a smaller patch.")
    if args.command == "predict":
        number("--overlap", 0, 1, open_hi=True)


# --------------------------------------------------------------------------------------------
# train


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _run_fraction(elapsed_s: float, event: Any) -> float:
    """Share of a training run done at a step event: from its time left (``eta_s``, which
    the time budget bounds) when known, else from its step count."""
    if event.eta_s is not None and elapsed_s + event.eta_s > 0:
        return min(1.0, elapsed_s / (elapsed_s + event.eta_s))
    return min(1.0, event.step / event.total) if event.total else 0.0


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_medseg.dataset.msd import read_dataset_json, read_splits
    from napari_medseg.training import TrainConfig, train

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    _refuse_file_as_out(args.out, "train writes the model's files into it")
    meta = read_dataset_json(args.dataset)  # fail fast with a clear message
    _refuse_other_task(args, str(meta.get("name") or ""))
    val_ids = None
    if args.split_file:
        _, val_ids = read_splits(args.split_file, args.fold)
    options: dict[str, Any] = {
        "dims": args.dims,
        "patch_size": tuple(args.patch_size) if args.patch_size else None,
        "batch_size": args.batch_size,
        "max_epochs": args.max_epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "time_budget_s": args.time_budget_s,
        "val_fraction": args.val_fraction,
        "val_case_ids": val_ids,
        "seed": args.seed,
        "device": args.device,
        "loss": args.loss,
        "optimizer": args.optimizer,
        "learning_rate": args.lr,
        "early_stopping_patience": args.early_stopping,
        "augmentation": args.augmentation,
        "mirror": args.mirror,
        "local_contrast": args.local_contrast,
        "architecture": args.architecture,
        "base_channels": args.base_channels,
    }
    config = TrainConfig(**options)
    main = _is_main_process()
    quiet = args.quiet or not main
    bar = None
    result = None
    started_run = time.time()
    gen = train(config, args.dataset, args.out, init_model=args.init)
    try:
        for event in gen:
            if event.kind == "start":
                # the bar shows the share of the run done (time budget or steps, whichever
                # ends it first), so its time left is the run's, not that of the step cap
                bar = tqdm(total=100, desc="train", file=sys.stderr, disable=quiet,
                           dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                           "{elapsed}<{remaining}{postfix}")
                started = time.perf_counter()
                if not quiet:
                    tqdm.write(event.message, file=sys.stderr)
            elif event.kind == "step" and bar is not None:
                done = _run_fraction(time.perf_counter() - started, event)
                bar.update(max(0.0, 100.0 * done - bar.n))
                bar.set_postfix(step=event.step, epoch=event.epoch, loss=f"{event.loss:.3f}",
                                refresh=False)
            elif event.kind == "epoch" and not quiet:
                dice = event.metrics.get("dice_mean")
                text = f"epoch {event.epoch}: loss {event.loss:.4f}"
                if dice is not None:
                    text += f", val Dice {dice:.4f}"
                if event.message:
                    text += f" ({event.message})"
                tqdm.write(text, file=sys.stderr)
            elif event.kind == "message" and not quiet:
                tqdm.write(event.message, file=sys.stderr)
            elif event.kind in ("finished", "cancelled"):
                result = event.result
    except KeyboardInterrupt:
        gen.close()
        if bar is not None:
            bar.close()
        from napari_medseg.models.card import CARD_FILE

        card = Path(args.out) / CARD_FILE
        saved = card.is_file() and card.stat().st_mtime >= started_run
        print("napari-medseg train: interrupted; " + (
            f"the best model so far is kept in {args.out}" if saved else
            "no model of this run was saved yet" + (
                f" ({args.out} holds the model it had before)" if card.is_file() else "")),
            file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    if main and result is not None and getattr(result, "status", "") == "finished" \
            and getattr(result, "model_dir", None) is None:
        print(f"napari-medseg train: error: no model was written: training stopped after "
              f"{result.steps} steps in {result.elapsed_s:.0f} s, before a model could be "
              "saved; give it a longer --time-budget-s.", file=sys.stderr)
        return 2
    if main and result is not None and getattr(result, "status", "") == "finished":
        from napari_medseg.training.verdict import training_verdict

        verdict = training_verdict(result)
        if not verdict.usable or verdict.weak:
            print(f"napari-medseg train: warning: {verdict.message}", file=sys.stderr)
        _register_in_project(args, result, verdict.usable)
    if main and result is not None:
        summary = {k: getattr(result, k) for k in ("status", "model_dir", "best_metric",
                                                   "best_epoch", "epochs", "steps",
                                                   "stop_reason")}
        summary["elapsed_s"] = round(result.elapsed_s, 1)
        print(_dumps(summary))
    return 0


def _refuse_file_as_out(out: str, writes: str) -> None:
    """``--out`` naming an existing file where a folder is written: one line saying so and
    what to do (no flag replaces a file by a folder)."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is an existing file, not a folder ({writes}); choose "
                         "another --out: a new folder or an existing one.")


def _refuse_other_task(args: argparse.Namespace, task: str) -> None:
    """``--out`` holding a model of another task is not silently replaced (``--overwrite``)."""
    from napari_medseg.models.card import CARD_FILE, read_card

    out = Path(args.out)
    if args.overwrite or not (out / CARD_FILE).is_file():
        return
    if args.init and Path(args.init).resolve() == out.resolve():
        return
    try:
        card = read_card(out)
    except (OSError, ValueError):
        return  # not readable as a model: training writes a new one
    if task and card.task and card.task != task:
        raise ValueError(f"{out} holds a model of another task ({card.task}, {card.dims}D); "
                         "choose another --out, or add --overwrite to replace it.")


def _register_in_project(args: argparse.Namespace, result: Any, usable: bool) -> None:
    """Training on a project folder registers the model as the project's next version (the one
    ``suggest`` and the Project dock use), as a retraining from the dock does; a model that
    learnt too little does not replace a usable current one."""
    from napari_medseg.dataset.project import Project

    if getattr(result, "model_dir", None) is None or not Project.is_project(args.dataset):
        return
    project = Project.open(args.dataset)
    current = project.current_model
    parent = None
    if args.init and current and Path(args.init).resolve() == project.model_dir(current).resolve():
        parent = current
    records = {m["version"]: m for m in project.models()}
    current_usable = current is not None and (
        (records.get(current, {}).get("metrics") or {}).get("usable", 1.0) != 0.0)
    metrics = {"usable": 1.0 if usable else 0.0}
    if result.best_metric is not None:
        metrics["dice_mean"] = float(result.best_metric)
    version = project.register_model(result.model_dir, metrics, parent=parent,
                                     make_current=usable or not current_usable,
                                     note="napari-medseg train")
    now = project.current_model == version
    print(f"napari-medseg train: registered in project {project.name} as {version}"
          + (" (now its current model)" if now else f" ({current} stays its current model)"),
          file=sys.stderr)


# --------------------------------------------------------------------------------------------
# predict


def cmd_suggest(args: argparse.Namespace) -> int:
    from napari_medseg.active import suggest_cases

    gen = suggest_cases(args.project, device=args.device, keep=0)
    result = None
    try:
        while True:
            event = next(gen)
            if event.kind == "step" and not args.quiet:
                print(event.message, file=sys.stderr)
    except StopIteration as stop:
        result = stop.value
    if not result:
        raise ValueError("the ranking was cancelled")
    if result["model"] is None:
        print("no model yet: the pool in the order it was added", file=sys.stderr)
    for cid, score in result["ranking"][: args.top]:
        print(f"{cid}\t{score:.4f}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from napari_medseg.export import card_path_for, export_model

    out = export_model(args.model, args.format, args.out, probabilities=args.probabilities)
    print(f"Exported {args.model} as {args.format}: {out}")
    if args.format != "monai-bundle":
        print(f"Model card: {card_path_for(out)}")
    else:
        from napari_medseg.export import bundle_not_runnable
        from napari_medseg.models.card import read_card

        why_not = bundle_not_runnable(read_card(args.model))
        print(f"Run it: python -m monai.bundle run --config_file {out}/configs/inference.json "
              f"--bundle_root {out} --dataset_dir SCANS --output_dir OUT"
              if why_not is None else
              f"Not runnable with monai.bundle run ({why_not}): see {out}/docs/README.md")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from napari_medseg.io.convert import convert_labels
    from napari_medseg.io.errors import MultipleSeriesError

    try:
        written = convert_labels(args.labels, args.out, args.reference, series_uid=args.series,
                                 classes=args.classes, algorithm_type=args.algorithm)
    except MultipleSeriesError as exc:
        raise ValueError(f"{_one_line(exc).rstrip('.')}: give --series UID "
                         "(`napari-medseg info FOLDER` lists them).") from exc
    for path in written:
        print(path)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_medseg.inference import (
        list_input_images,
        load_model,
        predict_folder,
        resolve_device,
    )
    from napari_medseg.inference.outputs import get_output_format
    from napari_medseg.inference.predict import check_single_file_channels

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.format.lower() != "auto":
        get_output_format(args.format)  # an unknown format fails before any work
    probabilities: bool | str = False
    if args.probabilities_format:
        get_output_format(args.probabilities_format)
        probabilities = args.probabilities_format
    elif args.probabilities:
        probabilities = True
    files = list_input_images(args.input)
    _refuse_file_as_out(args.out, "predict writes one label file per image into it")
    device = resolve_device(args.device)
    loaded = load_model(args.model, device=device)
    check_single_file_channels(loaded[1])  # e.g. a T1 + T2 model: one file holds one image
    from napari_medseg.io.errors import MultipleChannelsError, MultipleSeriesError

    written = []
    skipped: list[dict[str, str]] = []  # inputs that could not be segmented (the others were)
    with tqdm(total=len(files), desc="predict", unit="image", file=sys.stderr,
              disable=args.quiet, dynamic_ncols=True, delay=0.5) as bar:
        try:
            for event in predict_folder(loaded, args.input, args.out, tta=args.tta,
                                        device=device, keep_largest=args.keep_largest,
                                        overlap=args.overlap, output_format=args.format,
                                        probabilities=probabilities, series_uid=args.series,
                                        channel=args.channel):
                if event.kind == "step":
                    bar.update(1)
                elif event.kind == "message" and isinstance(event.result, dict) and (
                        "skipped" in event.result):
                    bar.update(1)
                    skipped.append(event.result)
                elif event.kind == "finished":
                    written = event.result
        except MultipleSeriesError as exc:  # say how to choose, in this command's words
            raise ValueError(f"{_one_line(exc).rstrip('.')}: give --series UID "
                             "(`napari-medseg info FOLDER` lists them).") from exc
        except MultipleChannelsError as exc:
            text = _one_line(exc).split("; choose one")[0]
            raise ValueError(f"{text}; choose one with --channel 0..{exc.n_channels - 1}."
                             ) from exc
    for path in written:
        print(path)
    for item in skipped:  # one line each, after the progress bar; stdout keeps only paths
        print(f"warning: skipped {item['skipped']}: {_how_to_choose(item)}", file=sys.stderr)
    if skipped:
        print(f"warning: {len(skipped)} of {len(files)} image(s) skipped, the others written",
              file=sys.stderr)
        return 1
    return 0


def _how_to_choose(item: dict[str, str]) -> str:
    """A skipped input's reason, naming the option that chooses its series or channel."""
    reason = item["reason"]
    if item.get("choose") == "series":
        return (f"{reason.rstrip('.')}: give --series UID (`napari-medseg info FOLDER` lists "
                "them).")
    if item.get("choose") == "channel":
        return reason.replace("choose one with channel=", "choose one with --channel ")
    return reason


# --------------------------------------------------------------------------------------------
# evaluate


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_medseg.dataset.evaluation import evaluate_folders

    result = evaluate_folders(args.pred_dir, args.gt_dir, csv_path=args.csv,
                              surface=not args.no_surface)
    summary = result["summary"]
    notes = []  # said on stderr in both output modes
    for name in _absent_from_truth(result["cases"]):
        notes.append(f"warning: class {name} is in no ground-truth case, only in the "
                     "predictions (its Dice is 0): a model of another task, or other label "
                     "values?")
    if result["missing_predictions"]:
        notes.append(f"warning: {len(result['missing_predictions'])} ground-truth case(s) had "
                     "no prediction and were skipped")
    if args.csv:
        notes.append(f"per-case metrics written to {args.csv}")
    if args.json:
        print(_dumps(summary, indent=2))
        for line in notes:
            print(line, file=sys.stderr)
        return 0
    columns = [("dice", "Dice"), ("jaccard", "Jaccard"), ("sensitivity", "Sens"),
               ("precision", "Prec")]
    if not args.no_surface:
        unit = result.get("distance_unit", "mm")
        columns += [("hd95", f"HD95 {unit}"), ("assd", f"ASSD {unit}")]
    columns.append(("specificity", "Spec"))  # appended: the columns before it keep their places
    rows = [(name, entry, [_summary_cell(entry, key) for key, _ in columns])
            for name, entry in summary.items()]
    # 18 characters a column, wider where a cell says how many cases it leaves out
    widths = [max([18, *(len(cells[i]) + 2 for _, _, cells in rows)])
              for i in range(len(columns))]
    print(f"{'class':<16}{'n':>5}" + "".join(
        f"{title:>{w}}" for (_, title), w in zip(columns, widths, strict=True)))
    for name, entry, cells in rows:
        print(f"{name:<16}{entry['n']:>5}" + "".join(
            f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    for line in _undefined_footnotes(result, columns):
        print(line)
    dices = [entry["dice_mean"] for entry in summary.values()]
    if dices:
        print(f"mean Dice over {len(dices)} class(es): {sum(dices) / len(dices):.4f} "
              f"({len(result['cases'])} case(s))")
    for line in notes:
        print(line, file=sys.stderr)
    return 0


#: Why a summary leaves a metric's case out, in the table's footnotes.
_UNDEFINED_WHY = {
    "sensitivity": "ground truth empty: sensitivity undefined without positives",
    "distance": "class in only one of the two masks: distance inf",
}


def _summary_cell(entry: dict, key: str) -> str:
    """``mean ± std`` of one metric, with the number of cases left out (``(1 inf)``)."""
    cell = _fmt(entry.get(f"{key}_mean")) + " ± " + _fmt(entry.get(f"{key}_std"))
    left_out = int(entry.get(f"{key}_n_undefined") or 0)
    if left_out:
        cell += f" ({left_out} {'n/a' if key == 'sensitivity' else 'inf'})"
    return cell


def _undefined_footnotes(result: dict, columns: list[tuple[str, str]]) -> list[str]:
    """One line per class and reason naming the cases left out of a mean (no line when none)."""
    from napari_medseg.metrics import undefined_cases

    px = result.get("distance_unit") == "px"
    lines = []
    for name, entry in result["summary"].items():
        groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        for key, title in columns:
            if not entry.get(f"{key}_n_undefined"):
                continue
            metric = f"{key}_px" if px and key in ("hd95", "assd") else key
            cases = tuple(undefined_cases(result["cases"], name, metric))
            why = "sensitivity" if key == "sensitivity" else "distance"
            groups.setdefault((why, cases), []).append(title)
        for (why, cases), titles in groups.items():
            shown = ", ".join(cases[:6]) + (f", ... ({len(cases)} in all)" if len(cases) > 6
                                            else "")
            lines.append(f"note: class {name}, {', '.join(titles)}: mean ± std over "
                         f"{entry['n'] - len(cases)} of {entry['n']} case(s); left out "
                         f"({_UNDEFINED_WHY[why]}): {shown}")
    return lines


def _absent_from_truth(cases: dict) -> list[str]:
    """Classes scored in ``evaluate_folders``' cases whose ground truth is empty everywhere."""
    totals: dict[str, float] = {}
    for rows in cases.values():
        for name, row in rows.items():
            truth = row.get("volume_gt_ml", row.get("area_gt_px"))
            if isinstance(truth, (int, float)):
                totals[name] = totals.get(name, 0.0) + float(truth)
    return [name for name, total in totals.items() if total == 0]


# --------------------------------------------------------------------------------------------


class _KnownFormats:
    """The registered output formats, looked up only when ``--help`` is shown (so building the
    parser does not import torch)."""

    def __str__(self) -> str:
        from napari_medseg.inference.outputs import output_formats

        return ", ".join(output_formats())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="napari-medseg",
        description="Medical image segmentation: inspect images, train, predict and evaluate.",
    )
    from napari_medseg import __version__

    parser.add_argument("--version", action="version", version=f"napari-medseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="print a JSON summary of an image file or DICOM folder")
    p.add_argument("path")
    p.add_argument("--phi", action="store_true",
                   help="also print the DICOM patient identifiers (PatientID); left out by "
                        "default so the summary can be shared")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train or fine-tune a model on an MSD / project folder")
    p.add_argument("dataset", help="folder with dataset.json, imagesTr/, labelsTr/")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a model of another task that --out already holds")
    p.add_argument("--time-budget-s", type=float, default=None, help="wall-clock limit (s)")
    p.add_argument("--max-epochs", type=int, default=1000)
    p.add_argument("--steps-per-epoch", type=int, default=50,
                   help="optimisation steps between validations")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--dims", type=int, choices=[2, 3], default=None)
    p.add_argument("--init", default=None, help="model directory to fine-tune from")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--split-file", default=None,
                   help="nnU-Net splits JSON; its 'val' list of --fold is the validation set")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patch-size", type=int, nargs="+", default=None)
    p.add_argument("--batch-size", type=int, default=None,
                   help="patches per step (default: 4 for small patches, else 2)")
    p.add_argument("--loss", default="dice_ce",
                   choices=["dice_ce", "dice", "jaccard", "ce", "focal", "dice_focal"])
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--early-stopping", type=int, default=None, metavar="N",
                   help="stop after N validations without improvement")
    p.add_argument("--augmentation", default="auto",
                   choices=["auto", "strong", "medium", "light", "none"],
                   help="auto: strong (rotation, scaling, flips, intensity) below 60 training "
                        "cases, medium (small rotations and scaling, flips, mild intensity) "
                        "from there on; light: flips and mild intensity only")
    p.add_argument("--mirror", default="auto", choices=["auto", "left-right", "all", "none"],
                   help="mirror augmentation (and --tta at prediction) axes; auto: only "
                        "left-right for 3D images with a known orientation, none when class "
                        "names say left/right, only left-right for greyscale 2D pictures "
                        "(ultrasound, X-ray), every axis for colour photographs")
    p.add_argument("--local-contrast", default="auto", choices=["auto", "on", "off"],
                   help="local contrast equalisation (CLAHE) of 2D pictures before "
                        "normalisation; auto: colour photographs with thin structures "
                        "(retinal vessels)")
    p.add_argument("--architecture", default="unet", choices=["unet", "dynunet"])
    p.add_argument("--base-channels", type=int, default=16)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="segment an image file (NIfTI, DICOM, PNG, JPEG, TIFF, "
                                       "BMP), every image in a folder, or a DICOM series folder")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("input", help="image file, folder of NIfTI files and/or pictures, or DICOM "
                                 "series folder")
    p.add_argument("--out", required=True,
                   help="output folder (<name>.nii.gz per volume, <name>.png per 2D picture)")
    fmt = p.add_argument(
        "--format", default="auto", metavar="FORMAT",
        help="how to write the labels: auto (PNG for a 2D picture or 2D DICOM input, NIfTI "
             "otherwise; the default) or one of: %(known)s")
    fmt.known = _KnownFormats()
    p.add_argument("--probabilities", action="store_true",
                   help="also write one probability map per foreground class, "
                        "<name>_prob_<value>: 16-bit PNG (0-65535 = 0-1) for PNG/TIFF output, "
                        "float32 NIfTI for NIfTI output")
    p.add_argument("--probabilities-format", default=None, metavar="FORMAT",
                   help="write the probability maps in this format instead (e.g. nifti); "
                        "implies --probabilities")
    p.add_argument("--tta", action="store_true",
                   help="mirror test-time augmentation (over the axes the model was trained "
                        "to see mirrored)")
    p.add_argument("--keep-largest", action="store_true",
                   help="keep the largest connected component per class")
    p.add_argument("--overlap", type=float, default=0.25,
                   help="sliding-window overlap, a fraction: 0 <= overlap < 1 (default 0.25)")
    p.add_argument("--series", default=None, metavar="UID",
                   help="the series to segment when a DICOM folder holds several (its "
                        "SeriesInstanceUID or key, as `napari-medseg info FOLDER` lists them)")
    p.add_argument("--channel", type=int, default=None, metavar="N",
                   help="the channel / time point to segment of a 4D NIfTI image")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("suggest", help="rank a project's unlabelled images by the current "
                                       "model's uncertainty (what to annotate next)")
    p.add_argument("project", help="project folder")
    p.add_argument("--top", type=int, default=10, help="how many cases to list")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_suggest)

    p = sub.add_parser("export", help="export a model for use without napari (TorchScript, "
                                      "ONNX, MONAI bundle)")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--format", required=True, choices=["torchscript", "onnx", "monai-bundle"])
    p.add_argument("--probabilities", action="store_true",
                   help="include the softmax (default: logits, as predict blends them)")
    p.add_argument("out", help="output file (.pt / .onnx) or bundle folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "convert", help="write a label map in another format (DICOM SEG, RTSTRUCT, NRRD, MHA, "
                        "NIfTI, PNG/TIFF), on the grid of the image it belongs to")
    p.add_argument("labels", help="label file (NIfTI, NRRD, MHA, PNG/TIFF, DICOM SEG, RTSTRUCT)")
    p.add_argument("out", help="output file; its ending chooses the format: .seg.dcm, "
                               ".rtstruct.dcm, .nrrd, .seg.nrrd, .mha, .nii.gz, .png, .tif")
    p.add_argument("--reference", default=None,
                   help="the image the labels belong to (the DICOM series folder for .seg.dcm "
                        "and .rtstruct.dcm); the labels are placed where their voxels lie in "
                        "the patient")
    p.add_argument("--series", default=None, metavar="UID",
                   help="series of the reference folder, when it holds several")
    p.add_argument("--classes", default=None, metavar="JSON",
                   help="class table ({value: name}, a .classes.json or dataset.json); default: "
                        "the labels file's own names, its .classes.json or dataset.json")
    p.add_argument("--algorithm", default="automatic",
                   choices=["automatic", "semiautomatic", "manual"],
                   help="how the labels were made, recorded in DICOM SEG / RTSTRUCT (default: "
                        "automatic, a model's output; manual: drawn by hand)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("evaluate", help="Dice, Jaccard, HD95 ... of predictions vs ground truth")
    p.add_argument("pred_dir")
    p.add_argument("gt_dir")
    p.add_argument("--csv", default=None, help="write per-case metrics to this CSV file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-surface", action="store_true", help="skip HD95 / ASSD (faster)")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"napari-medseg {args.command}"
    # Warnings are held back and printed one per line after a success; after an error the
    # user sees the one error line only.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        try:
            _check_options(args)
            status = int(args.func(args) or 0)
        except (ValueError, OSError) as exc:  # user-facing problems: one line, exit 2
            print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
        except MemoryError:
            print(f"{prefix}: error: not enough memory for this input; crop or downsample it, "
                  "or use a larger machine.", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"{prefix}: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # noqa: BLE001 - never a traceback dump for a user
            if os.environ.get("NAPARI_MEDSEG_DEBUG"):
                raise
            print(f"{prefix}: error: {type(exc).__name__}: {_one_line(exc)} (an internal "
                  "problem: set NAPARI_MEDSEG_DEBUG=1 for the details and report it)",
                  file=sys.stderr)
            return EXIT_USAGE
    seen = set()
    for w in caught:
        text = _user_warning(_one_line(w.message))
        if text and text not in seen and issubclass(w.category, UserWarning):
            seen.add(text)
            print(f"{prefix}: warning: {text}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
