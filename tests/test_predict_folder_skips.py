"""A folder run skips the images it cannot segment, names them, and writes the others: the core
``predict_folder`` and ``napari-medseg predict`` on a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from napari_medseg.cli import main
from napari_medseg.inference import predict_folder
from napari_medseg.models import ModelCard, build_network, plan_network, save_model

H, W = 29, 41
CPU = ["--device", "cpu", "--threads", "1", "--quiet"]


def make_colour_model(folder: Path) -> Path:
    """A tiny untrained 2-class colour (red, green, blue) model."""
    torch.manual_seed(0)
    spec = plan_network(2, 3, 2, [(2, 2), (2, 2)], base_channels=4, max_channels=8)
    card = ModelCard(task="Spots", classes=[{"value": v, "name": f"c{v}", "color": [0, 0, 0]}
                                            for v in range(2)],
                     dims=2, in_channels=3, patch_size=[16, 16], network=spec,
                     normalisation=[{"scheme": "zscore"}] * 3, channel_names=["red", "green", "blue"])
    return save_model(build_network(spec), card, folder)


def photo(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (H, W, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_colour_model(tmp_path_factory.mktemp("models") / "colour")


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """a.png, b.png (good), c_truncated.png (cut in half), d_grey.png (greyscale), e.png."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name, seed in (("a", 0), ("b", 1), ("e", 2)):
        Image.fromarray(photo(seed)).save(folder / f"{name}.png")
    Image.fromarray(photo(3)).save(folder / "c_truncated.png")
    data = (folder / "c_truncated.png").read_bytes()
    (folder / "c_truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(photo(4)[..., 0]).save(folder / "d_grey.png")
    return folder


def run(gen):
    """(events, return value) of a core job."""
    from napari_medseg.cycle import run_to_end

    events = []
    return events, run_to_end(gen, events.append)


def test_bad_files_are_skipped_named_and_the_rest_written(model, mixed_folder, tmp_path):
    out = tmp_path / "out"
    events, written = run(predict_folder(model, mixed_folder, out, device="cpu"))
    assert [p.name for p in written] == ["a.png", "b.png", "e.png"]  # after the bad ones too
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "e.png"]
    skips = [e for e in events if e.kind == "message" and e.level == "warning"]
    assert [e.result["skipped"] for e in skips] == ["c_truncated.png", "d_grey.png"]
    assert skips[0].message.startswith("Skipped c_truncated.png: Cannot read c_truncated.png")
    assert "greyscale" in skips[1].result["reason"]
    assert all("\n" not in e.message for e in skips)
    steps = [e for e in events if e.kind == "step"]
    assert [Path(e.result[0]).name for e in steps] == ["a.png", "b.png", "e.png"]
    end = events[-1]
    assert end.kind == "finished" and len(end.result) == 3
    assert "Wrote 3 segmentation(s)" in end.message
    assert "skipped 2: c_truncated.png, d_grey.png" in end.message
    assert "Cannot read c_truncated.png" in end.message


def test_a_folder_of_only_bad_files_is_one_error_and_writes_nothing(model, mixed_folder, tmp_path):
    for name in ("a.png", "b.png", "e.png"):
        (mixed_folder / name).unlink()
    out = tmp_path / "out"
    with pytest.raises(ValueError) as err:
        run(predict_folder(model, mixed_folder, out, device="cpu"))
    text = str(err.value)
    assert text.startswith("None of the 2 images could be segmented; the first, c_truncated.png")
    assert "\n" not in text and not out.exists()


def test_cli_prints_the_written_paths_and_one_line_per_skipped_file(model, mixed_folder,
                                                                     tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", "--model", str(model), str(mixed_folder), "--out", str(out), *CPU])
    captured = capsys.readouterr()
    assert code == 1, captured.err  # partly done: the written files are usable
    assert captured.out.splitlines() == [str(out / n) for n in ("a.png", "b.png", "e.png")]
    err = captured.err.strip().splitlines()
    assert err[0].startswith("warning: skipped c_truncated.png: Cannot read c_truncated.png")
    assert err[1].startswith("warning: skipped d_grey.png: ") and "greyscale" in err[1]
    assert err[2] == "warning: 2 of 5 image(s) skipped, the others written"
    assert len(err) == 3 and "Traceback" not in captured.err


def test_label_maps_are_not_segmented_as_images(model, tmp_path, capsys):
    folder = tmp_path / "data"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    Image.fromarray(photo(0)).save(folder / "imagesTr" / "a.png")
    mask = np.zeros((H, W, 3), np.uint8)
    mask[5:15, 5:20] = 1
    Image.fromarray(mask).save(folder / "labelsTr" / "a.png")  # RGB, like a photo: by folder
    code = main(["predict", "--model", str(model), str(folder / "labelsTr" / "a.png"),
                 "--out", str(tmp_path / "out"), *CPU])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "a.png is a label map (it lies in labelsTr/), not an image" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
    # a NIfTI or DICOM SEG that the reader knows to be labels, in a folder: skipped, named
    from napari_medseg.io import Volume, write_nifti

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(photo(1)).save(mixed / "b.png")
    labels = Volume(np.zeros((1, H, W), np.uint8), metadata={"is_labels": True})
    labels.array[0, 3:9, 4:12] = 1
    write_nifti(labels, mixed / "b_seg.nii.gz", labels=True)
    events, written = run(predict_folder(model, mixed, tmp_path / "out2", device="cpu"))
    assert [p.name for p in written] == ["b.png"]
    skips = [e.result for e in events if e.kind == "message" and e.level == "warning"]
    assert skips and skips[0]["skipped"] == "b_seg.nii.gz" and "label map" in skips[0]["reason"]
