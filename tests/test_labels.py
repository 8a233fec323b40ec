"""One class table and one palette for the whole package (issue 17, item 1)."""

from __future__ import annotations

from napari_medseg.dataset.msd import label_colours
from napari_medseg.labels import PALETTE, ClassTable, class_colour, hex_to_rgb, rgb_to_hex


def test_training_and_dataset_colours_come_from_the_one_palette():
    names = {v: f"c{v}" for v in range(1, 26)}
    colours = label_colours(names)
    for v in names:
        assert colours[v] == hex_to_rgb(PALETTE[(v - 1) % len(PALETTE)])
    assert colours[4] == (0x43, 0x63, 0xD8) and colours[21] == colours[1]  # 20 colours, then again


def test_class_table_round_trips_between_forms():
    table = ClassTable.from_dataset_json({"background": 0, "vessel": 1, "artery": 2})
    assert table.foreground == {1: "vessel", 2: "artery"}
    again = ClassTable.from_card_classes(table.to_card_classes())
    assert again.names == table.names and again.colours == table.colours
    assert ClassTable.from_dataset_json(table.to_dataset_json_labels()).names == table.names
    colors = table.napari_colors()
    assert colors[0] == "transparent" and colors[1] == rgb_to_hex(class_colour(1))
    custom = ClassTable({1: "x"}, {1: (0.0, 1.0, 0.0)})
    assert custom.colour(1) == (0, 255, 0)
