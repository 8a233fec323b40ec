"""Label classes: the ignore value, the one palette and the class table, for the whole package.

Every place that colours or names a class (training, model cards, dataset.json, DICOM SEG /
RTSTRUCT, NRRD segments, projects and the napari docks) takes its colours from
:data:`PALETTE` through :func:`class_colour`, so a prediction is coloured like the annotation it
was trained on. :class:`ClassTable` converts between the forms classes take on disk and screen.

Pure core: no napari, no Qt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
