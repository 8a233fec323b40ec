"""Model directories: ``model.pt`` (a ``state_dict``) + ``model_card.json``.

A model directory is something a user can trust: weights are loaded with
``torch.load(weights_only=True)`` (no arbitrary unpickling) and the network is rebuilt from the
card's plain-JSON description.

Saving is a small journal, so a process killed at any moment leaves a loadable, consistent
model (the old one or the new one, never a card that belongs to other weights):

1. the new weights go to ``model.pt.new`` and the new card, holding their SHA-256
   (``weights_sha256``), to ``model_card.json.new`` (each written to a temp file, fsync'ed,
   renamed);
2. ``model.pt.new`` is renamed over ``model.pt``, then ``model_card.json.new`` over
   ``model_card.json``.

A reader that finds weights whose checksum differs from the card's takes the pending
``model_card.json.new`` when its checksum matches (a save killed between the two renames) and
otherwise refuses the model as damaged. Files are created readable by the group and others
(as the umask allows), so a shared models folder works.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from napari_medseg.io.atomic import (
    atomic_write,
    fsync_dir,
    read_json_object,
    remove_stale_temps,
)
from napari_medseg.models.factory import build_network

WEIGHTS_FILE = "model.pt"
CARD_FILE = "model_card.json"
CARD_FORMAT = "napari-medseg-model/1"
#: Suffix of the files of a save in progress (see the module docstring).
PENDING_SUFFIX = ".new"
_REQUIRED = ("task", "classes", "dims", "in_channels", "patch_size", "network", "normalisation")


class ModelLoadError(ValueError):
    """A model directory is missing, broken, or does not fit the task at hand."""


@dataclass
class ModelCard:
    """Everything needed to use (and judge) a trained model.

    Attributes
    ----------
    task : str
        Dataset / task name the model was trained for.
    classes : list of dict
        ``{"value": int, "name": str, "color": [r, g, b]}`` per class, background included.
    dims : int
        2 (slice-wise) or 3.
    in_channels : int
    channel_names : list of str
    modality : str
    patch_size : list of int
        Training patch / sliding-window size in voxels (array axis order).
    spacing : list of float or None
        Target voxel spacing in mm (array axis order); None = images used as they are.
    normalisation : list of dict
        :class:`~napari_medseg.preprocess.NormalisationParams` per channel.
    network : dict
        :func:`~napari_medseg.models.factory.plan_network` output.
    mirror_axes : list of int or None
        Network spatial axes (0-based) that training mirrored and mirror TTA averages over;
        None (cards written before it) = every axis.
    guidance : dict or None
        Click guidance input channels (``{"type": "clicks", "channels_per_class": 2,
        "radius_mm": r, "kind": "gaussian"}``, see :mod:`napari_medseg.interactive.guidance`):
        the network takes ``in_channels + 2 * (num_classes - 1)`` inputs. None = no guidance
        (every card written before it).
    training_cases, validation_cases : list of str
    metrics_history : list of dict
        One entry per epoch (``epoch``, ``loss``, validation metrics, ``time_s``).
    best_metric : float or None
        Best validation mean Dice (foreground classes).
    best_epoch : int or None
    version : int
        1 for a model trained from scratch, parent version + 1 for a fine-tuned one.
    parent_version, parent_id : optional
        The model this one was fine-tuned from.
    """

    task: str
    classes: list[dict[str, Any]]
    dims: int
    in_channels: int
    patch_size: list[int]
    network: dict[str, Any]
    normalisation: list[dict[str, Any]]
    spacing: list[float] | None = None
    channel_names: list[str] = field(default_factory=lambda: ["image"])
    modality: str = "unknown"
    training_cases: list[str] = field(default_factory=list)
    validation_cases: list[str] = field(default_factory=list)
    metrics_history: list[dict[str, Any]] = field(default_factory=list)
    mirror_axes: list[int] | None = None
    guidance: dict[str, Any] | None = None
    best_metric: float | None = None
    best_epoch: int | None = None
    version: int = 1
    parent_version: int | None = None
    model_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_id: str | None = None
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )
    package_version: str = ""
    torch_version: str = field(default_factory=lambda: torch.__version__)
    monai_version: str = ""
    train_config: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None
    format: str = CARD_FORMAT

    def __post_init__(self) -> None:
        if not self.package_version:
            from napari_medseg import __version__

            self.package_version = __version__
        if not self.monai_version:
            try:
                import monai

                self.monai_version = monai.__version__
            except ImportError:  # pragma: no cover - monai is a hard dependency
                self.monai_version = "unknown"

    @property
    def num_classes(self) -> int:
        """Number of network outputs (highest class value + 1)."""
        return max(int(c["value"]) for c in self.classes) + 1

    @property
    def label_names(self) -> dict[int, str]:
        return {int(c["value"]): str(c["name"]) for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        known = {f.name for f in fields(cls)}
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ModelLoadError(f"model_card.json lacks the entries {', '.join(missing)}.")
        axes = data.get("mirror_axes")
        if axes is not None and (not isinstance(axes, list) or not all(
                isinstance(a, int) and 0 <= a < int(data["dims"]) for a in axes)):
            raise ModelLoadError(f"model_card.json has invalid mirror_axes {axes!r}.")
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        """One line for users: task, classes, dims, version."""
        names = ", ".join(c["name"] for c in self.classes if int(c["value"]) != 0)
        return f"'{self.task}' v{self.version}, {self.dims}D, classes: {names}"


#: Plausible target voxel spacing (mm) of a 3D model card: outside it resampling an image
#: would need absurd memory (0.01 mm turns a brain MR into ~10^11 voxels) or lose the image.
CARD_SPACING_RANGE_MM = (0.05, 50.0)
#: The same for 2D cards, which may come from microscopy pictures (micrometre pixels).
CARD_SPACING_RANGE_2D_MM = (1e-4, 50.0)
#: Largest training patch a card may state (voxels, product of ``patch_size``).
MAX_PATCH_VOXELS = 2**24


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_card_values(data: dict[str, Any], where: str | os.PathLike = "") -> None:
    """Refuse a model card whose entries have the wrong type or an implausible value.

    Checked before anything is built or allocated: ``task`` a string; ``classes`` a list
    of ``{"value": 0..254, "name": non-empty str}`` with distinct values; ``dims`` 2 or 3;
    ``in_channels`` 1..64; ``patch_size`` ``dims`` whole numbers >= 1 (at most
    :data:`MAX_PATCH_VOXELS` voxels); ``network`` a dict (the rest of it is checked against
    the weights on load); ``normalisation`` a list of dicts; ``spacing``
    ``None`` or ``dims`` numbers (or ``None`` per axis) within :data:`CARD_SPACING_RANGE_MM`
    (:data:`CARD_SPACING_RANGE_2D_MM` for 2D cards). :func:`read_card` applies it.

    Raises
    ------
    ModelLoadError
        One line naming the entry and what is wrong with it.
    """
    def bad(what: str) -> ModelLoadError:
        return ModelLoadError(f"{CARD_FILE} in {where} is not a valid model card: {what}."
                              if where else f"{CARD_FILE} is not a valid model card: {what}.")

    if any(k not in data for k in _REQUIRED):
        return  # ModelCard.from_dict names the missing entries

    if not isinstance(data.get("task"), str):
        raise bad("'task' must be a text")
    dims = data.get("dims")
    if not _is_int(dims) or dims not in (2, 3):
        raise bad(f"'dims' must be 2 or 3, not {dims!r:.40}")
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes:
        raise bad("'classes' must be a non-empty list")
    values = []
    for i, c in enumerate(classes):
        if not isinstance(c, dict):
            raise bad(f"class {i + 1} is not a table")
        if not _is_int(c.get("value")) or not 0 <= c["value"] < 255:
            raise bad(f"class {i + 1} has no label value 0..254")
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            raise bad(f"class {c['value']} has no name")
        values.append(c["value"])
    if len(set(values)) != len(values):
        raise bad("two classes share a label value")
    cin = data.get("in_channels")
    if not _is_int(cin) or not 1 <= cin <= 64:
        raise bad(f"'in_channels' must be a whole number 1..64, not {cin!r:.40}")
    patch = data.get("patch_size")
    if (not isinstance(patch, list) or len(patch) != dims
            or not all(_is_int(v) and v >= 1 for v in patch)):
        raise bad(f"'patch_size' must be {dims} whole numbers >= 1")
    if math.prod(patch) > MAX_PATCH_VOXELS:
        raise bad(f"the patch size {patch} is too large ({math.prod(patch):,} voxels)")
    network = data.get("network")
    if not isinstance(network, dict):
        raise bad("'network' must be a table")
    if network.get("dims", dims) not in (2, 3):
        raise bad(f"the network's 'dims' must be 2 or 3, not {network['dims']!r:.20}")
    guidance = data.get("guidance")
    if guidance is not None and (
            not isinstance(guidance, dict) or guidance.get("type") != "clicks"
            or not _is_int(guidance.get("channels_per_class"))
            or not _is_number(guidance.get("radius_mm")) or not guidance["radius_mm"] > 0):
        raise bad("'guidance' must be a click-guidance table (type \"clicks\", "
                  "channels_per_class, radius_mm)")
    norm = data.get("normalisation")
    if not isinstance(norm, list) or not all(isinstance(n, dict) for n in norm):
        raise bad("'normalisation' must be a list of tables")
    spacing = data.get("spacing")
    if spacing is not None:
        lo, hi = CARD_SPACING_RANGE_MM if dims == 3 else CARD_SPACING_RANGE_2D_MM
        if not isinstance(spacing, list) or len(spacing) not in (2, 3) or not all(
                s is None or _is_number(s) for s in spacing):
            raise bad(f"'spacing' must be {dims} numbers (mm) or null")
        if not all(s is None or lo <= s <= hi for s in spacing):
            raise bad(f"the target spacing {spacing} mm is outside {lo:g}..{hi:g} mm, so "
                      "resampling an image to it would be meaningless or need far too much "
                      "memory")
    for key in ("channel_names", "training_cases", "validation_cases", "metrics_history"):
        if key in data and not isinstance(data[key], list):
            raise bad(f"'{key}' must be a list")


def _atomic_write_bytes(path: Path, write) -> None:
    atomic_write(path, write)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _card_bytes(card: ModelCard) -> bytes:
    return json.dumps(card.to_dict(), indent=2, default=float).encode()


def save_model(model_or_state: torch.nn.Module | dict, card: ModelCard, model_dir: str | os.PathLike) -> Path:
    """Write ``model.pt`` and ``model_card.json`` into ``model_dir`` as one atomic change.

    Parameters
    ----------
    model_or_state : torch.nn.Module or dict
        The network (a DDP wrapper is unwrapped) or its ``state_dict``.
    card : ModelCard
        Written with ``weights_sha256`` set to the checksum of these weights (the passed
        object is not changed).
    model_dir : path
        Created if needed; a process killed at any point leaves the previous model or the new
        one, both loadable (module docstring).
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(model_dir)
    if isinstance(model_or_state, torch.nn.Module):
        module = getattr(model_or_state, "module", model_or_state)
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    else:
        state = {k: v.detach().cpu() for k, v in model_or_state.items()}
    weights_new = model_dir / (WEIGHTS_FILE + PENDING_SUFFIX)
    card_new = model_dir / (CARD_FILE + PENDING_SUFFIX)
    def write_weights(fh) -> None:
        try:
            torch.save(state, fh)
        except RuntimeError as exc:  # torch reports a full disk as "unexpected pos ..."
            import shutil

            free = shutil.disk_usage(model_dir).free
            raise OSError(f"Cannot write the model weights into {model_dir} ({free // 1024} KiB "
                          "free on that disk): the previous model is kept.") from exc

    _atomic_write_bytes(weights_new, write_weights)
    stamped = ModelCard.from_dict(dict(card.to_dict(), weights_sha256=file_sha256(weights_new)))
    text = _card_bytes(stamped)
    _atomic_write_bytes(card_new, lambda fh: fh.write(text))
    os.replace(weights_new, model_dir / WEIGHTS_FILE)
    fsync_dir(model_dir)
    os.replace(card_new, model_dir / CARD_FILE)
    fsync_dir(model_dir)
    return model_dir


def write_card(model_dir: str | os.PathLike, card: ModelCard) -> Path:
    """Replace only the card of a model folder (same weights), atomically.

    The card's ``weights_sha256`` is set from the ``model.pt`` on disk when it is missing.
    """
    model_dir = Path(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if card.weights_sha256 is None and weights.is_file():
        card = ModelCard.from_dict(dict(card.to_dict(), weights_sha256=file_sha256(weights)))
    text = _card_bytes(card)
    _atomic_write_bytes(model_dir / CARD_FILE, lambda fh: fh.write(text))
    return model_dir / CARD_FILE


def _parse_card(path: Path, model_dir: Path) -> ModelCard:
    data = read_json_object(path, ModelLoadError, f"{CARD_FILE} in {model_dir}")
    try:
        check_card_values(data, model_dir)
        return ModelCard.from_dict(data)
    except ModelLoadError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"{CARD_FILE} in {model_dir} is not a valid model card: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def _pending_card(model_dir: Path, weights_sha: str) -> ModelCard | None:
    """The card of a save killed between its two renames, when it matches the weights."""
    pending = model_dir / (CARD_FILE + PENDING_SUFFIX)
    if not pending.is_file():
        return None
    try:
        card = _parse_card(pending, model_dir)
    except ModelLoadError:
        return None
    return card if card.weights_sha256 == weights_sha else None


def read_card(model_dir: str | os.PathLike) -> ModelCard:
    """Read ``model_card.json`` from a model directory (clear errors for missing/broken files).

    When a save was interrupted between its two renames, the pending card that belongs to
    the weights on disk is returned instead (see the module docstring).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"Model folder not found: {model_dir}")
    card_path = model_dir / CARD_FILE
    if not card_path.is_file():
        raise ModelLoadError(f"{model_dir} is not a napari-medseg model (no {CARD_FILE}).")
    card = _parse_card(card_path, model_dir)
    weights = model_dir / WEIGHTS_FILE
    if (model_dir / (CARD_FILE + PENDING_SUFFIX)).is_file() and weights.is_file():
        sha = file_sha256(weights)
        if card.weights_sha256 != sha:
            return _pending_card(model_dir, sha) or card
    return card


def check_card_compatible(
    card: ModelCard,
    num_classes: int | None = None,
    dims: int | None = None,
    in_channels: int | None = None,
    label_names: dict[int, str] | None = None,
) -> None:
    """Raise :class:`ModelLoadError` when a model does not fit the task at hand.

    Parameters
    ----------
    num_classes : int, optional
        Expected number of classes (background included).
    dims : int, optional
        Expected dimensionality (2 or 3).
    in_channels : int, optional
        Number of image channels that will be fed.
    label_names : dict, optional
        Expected ``{value: name}``; a different set of names means a different task.
    """
    if dims is not None and card.dims != dims:
        raise ModelLoadError(
            f"The model {card.describe()} is a {card.dims}D model; this task needs {dims}D."
        )
    if in_channels is not None and card.in_channels != in_channels:
        raise ModelLoadError(
            f"The model {card.describe()} expects {card.in_channels} image channel(s) "
            f"({', '.join(card.channel_names)}); the input has {in_channels}."
        )
    if num_classes is not None and card.num_classes != num_classes:
        raise ModelLoadError(
            f"The model {card.describe()} predicts {card.num_classes} classes; this task has "
            f"{num_classes}. It was trained for a different task."
        )
    if label_names is not None:
        theirs = {k: v.lower() for k, v in card.label_names.items() if k != 0}
        ours = {k: v.lower() for k, v in label_names.items() if k != 0}
        if theirs != ours:
            raise ModelLoadError(
                f"The model {card.describe()} was trained for other labels than "
                f"{', '.join(ours.values())}."
            )


def load_model(
    model_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    dims: int | None = None,
    in_channels: int | None = None,
) -> tuple[torch.nn.Module, ModelCard]:
    """Load a model directory safely (``weights_only=True``) and check it fits.

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``device``.
    card : ModelCard

    Raises
    ------
    ModelLoadError
        Missing files, broken card or weights, weights that do not match the card, or a model
        for another task (see :func:`check_card_compatible`).
    """
    card = read_card(model_dir)
    check_card_compatible(card, num_classes, dims, in_channels)
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(f"{model_dir} has a model card but no {WEIGHTS_FILE}.")
    if card.weights_sha256 is not None:
        sha = file_sha256(weights)
        if sha != card.weights_sha256:
            raise ModelLoadError(
                f"{WEIGHTS_FILE} in {model_dir} does not match its model card (checksum "
                f"{sha[:12]}…, card says {card.weights_sha256[:12]}…): the file is damaged or "
                "was replaced; use another model or train again."
            )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ...
        # torch's own text is a paragraph of advice (weights_only=False, "file an issue"):
        # neither is for a user whose file is damaged; its first clause is kept
        why = " ".join(str(exc).split()).split(". ")[0][:120] or type(exc).__name__
        raise ModelLoadError(f"{WEIGHTS_FILE} in {model_dir} is damaged or not a napari-medseg "
                             f"model's weights ({why}); train again or restore it.") from exc
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelLoadError(f"{WEIGHTS_FILE} in {model_dir} does not hold network weights "
                             f"(it holds a {type(state).__name__}, not a table of tensors).")
    try:
        model = build_network(card.network)
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(
            f"The weights in {model_dir} do not match the network its model card describes "
            f"(a model from another task or version?): {str(exc).splitlines()[0]}"
        ) from exc
    model.to(device)
    model.eval()
    return model, card


class ModelFolderBusyError(ValueError):
    """Another training is writing into the same model folder."""


@contextmanager
def model_folder_lock(model_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive, inter-process lock on a model folder while training writes into it.

    A second training into the same folder (another process, or the GUI while the CLI runs) is
    refused at once with :class:`ModelFolderBusyError`, instead of two runs mixing their
    histories and metrics in one model. The lock is an advisory file lock
    (``MODEL_DIR/.training.lock``), released when the holder exits, even if it is killed.
    """
    from filelock import FileLock, Timeout

    model_dir = Path(model_dir)
    created = not model_dir.exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    lock_path = model_dir / ".training.lock"
    lock = FileLock(str(lock_path), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout as exc:
        raise ModelFolderBusyError(
            f"Another training is already writing to {model_dir}: wait for it to finish or "
            "choose another output folder."
        ) from exc
    try:
        yield model_dir
    finally:
        lock.release()
        if created and [p.name for p in model_dir.iterdir()] == [lock_path.name]:
            # nothing was written (e.g. the budget ran out before the first step): leave no
            # empty folder that looks like a model
            try:
                lock_path.unlink()
                model_dir.rmdir()
            except OSError:
                pass
