"""Infer dock, *Segment folder*: an unreadable picture (and one the model cannot take) is
skipped and named, the other pictures are written and reported, through the real button."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_medseg.models import ModelCard, build_network, plan_network, save_model
from napari_medseg.ui._models import set_models_folder

H, W = 29, 41


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A models folder holding one tiny untrained colour model, "spots"."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    spec = plan_network(2, 3, 2, [(2, 2), (2, 2)], base_channels=4, max_channels=8)
    card = ModelCard(task="Spots", classes=[{"value": v, "name": f"c{v}", "color": [0, 0, 0]}
                                            for v in range(2)],
                     dims=2, in_channels=3, patch_size=[16, 16], network=spec,
                     normalisation=[{"scheme": "zscore"}] * 3,
                     channel_names=["red", "green", "blue"])
    save_model(build_network(spec), card, root / "spots")
    return root


def _photo(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (H, W, 3)).astype(np.uint8)


def test_segment_folder_skips_bad_files_and_reports_the_written(make_napari_viewer, qtbot,
                                                                tmp_path, models_dir,
                                                                monkeypatch, caplog):
    from napari.utils.notifications import notification_manager

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    set_models_folder(models_dir)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_photo(0)).save(src / "a.png")
    Image.fromarray(_photo(1)).save(src / "b.png")
    Image.fromarray(_photo(2)).save(src / "c_truncated.png")
    data = (src / "c_truncated.png").read_bytes()
    (src / "c_truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(_photo(3)[..., 0]).save(src / "d_grey.png")
    Image.fromarray(_photo(4)).save(src / "e.png")  # after the bad ones: still segmented
    out = tmp_path / "out"

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-medseg", "Infer")
    widget.refresh_models()
    widget.model_combo.setCurrentIndex(
        [Path(str(widget.model_combo.itemData(i))).name
         for i in range(widget.model_combo.count())].index("spots"))
    widget.device_combo.setCurrentText("cpu")
    widget.tta_check.setChecked(False)
    widget.input_edit.setText(str(src))
    widget.output_edit.setText(str(out))
    with caplog.at_level("WARNING", logger="napari_medseg"):
        widget.folder_button.click()
        qtbot.waitUntil(lambda: not widget.runner.running, timeout=120_000)
        qtbot.wait(50)

    assert widget.last_event.kind == "finished", widget.last_event.message
    assert sorted(Path(p).name for p in widget.last_written) == ["a.png", "b.png", "e.png"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "e.png"]
    assert [s["skipped"] for s in widget.last_skipped] == ["c_truncated.png", "d_grey.png"]
    status = widget.status_label.text()
    assert status.startswith(f"Wrote 3 label file(s) to {out}. Skipped 2 image(s): "
                             "c_truncated.png, d_grey.png (first reason: Cannot read "
                             "c_truncated.png"), status
    said = [str(n.message) for n in notification_manager.records]
    assert said == [status]  # one notification, the same sentence
    skipped_lines = [r.getMessage() for r in caplog.records if "Skipped" in r.getMessage()]
    assert len(skipped_lines) == 2 and "c_truncated.png" in skipped_lines[0]
    assert "d_grey.png" in skipped_lines[1]
