"""Label classes: the ignore value, the one palette and the class table, for the whole package.

Every place that colours or names a class (training, model cards, dataset.json, DICOM SEG /
RTSTRUCT, NRRD segments, projects and the napari docks) takes its colours from
:data:`PALETTE` through :func:`class_colour`, so a prediction is coloured like the annotation it
was trained on. :class:`ClassTable` converts between the forms classes take on disk and screen.

Pure core: no napari, no Qt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Label value marking voxels nobody annotated: ignored by the loss and by validation.
IGNORE_LABEL = 255

#: Class colours for label values 1, 2, ... (value v takes ``PALETTE[(v - 1) % 20]``): twenty
#: distinct colours (Sasha Trubetskoy's list), easy to tell apart on greyscale scans.
PALETTE: tuple[str, ...] = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
    "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8",
    "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075", "#a9a9a9",
)


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """``"#e6194b"`` -> ``(230, 25, 75)``."""
    text = colour.lstrip("#")
    if len(text) != 6:
        raise ValueError(f"Not a #rrggbb colour: {colour!r}")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def rgb_to_hex(rgb: Any) -> str:
    """``(230, 25, 75)`` (0-255) or ``(0.9, 0.1, 0.29)`` (0-1) -> ``"#e6194b"``."""
    vals = [float(c) for c in list(rgb)[:3]]
    if max(vals, default=0.0) <= 1.0:
        vals = [c * 255.0 for c in vals]
    return "#" + "".join(f"{int(round(min(max(c, 0.0), 255.0))):02x}" for c in vals)


def class_colour(value: int) -> tuple[int, int, int]:
    """Default RGB colour (0-255) of label ``value`` (>= 1) from :data:`PALETTE`."""
    if int(value) < 1:
        raise ValueError("Background (0) has no class colour.")
    return hex_to_rgb(PALETTE[(int(value) - 1) % len(PALETTE)])


def class_colour_hex(value: int) -> str:
    """Default ``#rrggbb`` colour of label ``value`` (>= 1)."""
    return PALETTE[(int(value) - 1) % len(PALETTE)]


@dataclass
class ClassTable:
    """Label classes: ``{value: name}`` with a colour each (value 0 = background, no colour).

    Examples
    --------
    >>> table = ClassTable.from_names({1: "anterior", 2: "posterior"})
    >>> table.colour(1)
    (230, 25, 75)
    >>> table.to_dataset_json_labels()
    {'0': 'background', '1': 'anterior', '2': 'posterior'}
    """

    names: dict[int, str]
    colours: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.names = {int(k): str(v) for k, v in self.names.items()}
        self.names.setdefault(0, "background")
        given = {int(k): hex_to_rgb(v) if isinstance(v, str) else hex_to_rgb(rgb_to_hex(v))
                 for k, v in (self.colours or {}).items()}
        self.colours = {v: given.get(v) or class_colour(v) for v in self.names if v != 0}

    @classmethod
    def from_names(cls, names: Mapping[Any, str]) -> ClassTable:
        return cls({int(k): str(v) for k, v in names.items()})

    @classmethod
    def from_card_classes(cls, classes: list[dict[str, Any]]) -> ClassTable:
        """From a model card's ``[{"value", "name", "color"}]``."""
        return cls({int(c["value"]): str(c["name"]) for c in classes},
                   {int(c["value"]): c["color"] for c in classes
                    if int(c["value"]) != 0 and c.get("color") is not None})

    @classmethod
    def from_dataset_json(cls, labels: Mapping[str, Any]) -> ClassTable:
        """From dataset.json ``labels``: MSD ``{"1": "name"}`` or nnU-Net v2 ``{"name": 1}``."""
        names: dict[int, str] = {}
        for k, v in labels.items():
            if str(k).lstrip("-").isdigit():
                names[int(k)] = str(v)
            else:
                names[int(v)] = str(k)
        return cls(names)

    @property
    def foreground(self) -> dict[int, str]:
        return {v: n for v, n in sorted(self.names.items()) if v != 0}

    def colour(self, value: int) -> tuple[int, int, int]:
        return self.colours.get(int(value)) or class_colour(value)

    def to_card_classes(self) -> list[dict[str, Any]]:
        """Model card ``classes``: background first, colours as RGB 0-255 lists."""
        return [{"value": v, "name": n, "color": [0, 0, 0] if v == 0 else list(self.colour(v))}
                for v, n in sorted(self.names.items())]

    def to_dataset_json_labels(self) -> dict[str, str]:
        """MSD-style ``labels`` (``{"0": "background", "1": ...}``)."""
        return {str(v): n for v, n in sorted(self.names.items())}

    def napari_colors(self) -> dict[int | None, Any]:
        """A ``DirectLabelColormap`` colour dict: background transparent, unknown values magenta."""
        out: dict[int | None, Any] = {0: "transparent", None: "#ff00ff"}
        out.update({v: rgb_to_hex(self.colour(v)) for v in self.foreground})
        return out


def normalise_classes(classes: Mapping[Any, Any] | None) -> dict[int, dict[str, str]]:
    """Class table with ``int`` keys and ``name``/``color`` entries.

    Accepts JSON-loaded tables (string keys), bare names (``{1: "liver"}``) and entries
    without colour. Value 0 (background) is dropped.

    Raises
    ------
    ValueError
        If a key is not a whole number in 1..65535.
    """
    out: dict[int, dict[str, str]] = {}
    for key, entry in dict(classes or {}).items():
        try:
            value = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"class value {key!r} is not a whole number") from None
        if value == 0:
            continue
        if not 0 < value < 65536:
            raise ValueError(f"class value {value} must be between 1 and 65535")
        if isinstance(entry, str):
            entry = {"name": entry}
        entry = dict(entry or {})
        out[value] = {
            "name": str(entry.get("name") or f"label {value}"),
            "color": str(entry.get("color") or class_colour_hex(value)),
        }
    return dict(sorted(out.items()))


def classes_sidecar_path(labels_path: str | Path) -> Path:
    """``x.nii.gz`` -> ``x.classes.json`` (class table saved next to a labels file)."""
    p = Path(labels_path)
    name = p.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(f"{name}.classes.json")


def write_classes_sidecar(labels_path: str | Path, classes: Mapping[Any, Any]) -> Path:
    """Write the class table as JSON next to ``labels_path``; returns the JSON path."""
    table = normalise_classes(classes)
    out = classes_sidecar_path(labels_path)
    payload = {"labels": {str(k): v for k, v in table.items()}}
    out.write_text(json.dumps(payload, indent=2))
    return out


def read_classes_sidecar(labels_path: str | Path) -> dict[int, dict[str, str]] | None:
    """Class table from the JSON sidecar of ``labels_path`` (``None`` if absent or unreadable)."""
    p = classes_sidecar_path(labels_path)
    if not p.is_file():
        return None
    try:
        payload = json.loads(p.read_text())
        return normalise_classes(payload.get("labels", payload))
    except (OSError, ValueError, AttributeError):
        return None


def classes_for_labels_file(
    labels_path: str | os.PathLike[str],
) -> dict[int, dict[str, str]] | None:
    """Class names for a labels file: its ``.classes.json`` sidecar, else the MSD
    ``dataset.json`` one folder up (``labels: {"1": "Anterior", ...}``)."""
    p = Path(labels_path)
    table = read_classes_sidecar(p)
    if table:
        return table
    for folder in (p.parent, p.parent.parent):
        ds = folder / "dataset.json"
        if ds.is_file():
            try:
                labels = json.loads(ds.read_text()).get("labels") or {}
                if labels and all(str(k).isdigit() for k in labels):
                    return normalise_classes(labels)
                # nnU-Net v2 style: {"background": 0, "Anterior": 1}
                return normalise_classes({int(v): k for k, v in labels.items()}) or None
            except (OSError, ValueError, TypeError, AttributeError):
                return None
    return None
