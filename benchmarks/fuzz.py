"""Byte-level fuzzing of the readers through the doors users use (issue 14).

Mutations of a real NIfTI file (the shipped hippocampus sample, compressed and uncompressed)
and a real DICOM file (pydicom's CT_small.dcm): random byte flips in the header and the data,
runs of 0x00/0xFF, truncations and insertions. Each mutated file goes through

* ``napari-medseg info FILE`` (in process: exit status and stderr captured),
* the napari reader (``napari_medseg._reader.read_path``, as File > Open calls it),
* optionally ``napari-medseg predict`` with a tiny model (``--predict N`` of them).

Then the hand-made cases of issue 14 (:func:`hand_made`): garbage ``dataset.json`` files
and label files (NaN voxels, another grid, unnamed values) through
``napari-medseg train DATASET --time-budget-s 5`` (door ``train``), garbage model cards and
weights through ``napari-medseg predict`` (door ``cards``) and impossible options (door
``options``). These must all end in exit 2 with one stderr line.

An outcome is *clean* when it is a success, or exit status 2 with exactly one stderr line
(``read_path``: a ``ValueError``/``OSError`` with a one-line message). Anything else — a
traceback, another exit status, several lines — is a failure, listed with its input.

    python benchmarks/fuzz.py --n 1000 --write      # figures into BENCHMARKS.md

The test suite runs a smaller number (tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NIFTI_SAMPLE = ROOT / "sample_data" / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"


def dicom_sample() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm"))


def mutate(data: bytes, rng: random.Random, header_bytes: int) -> bytes:
    """One random mutation of ``data``; header bytes are hit more often than voxels."""
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "flip", "run", "truncate", "insert", "field"])
    span = header_bytes if rng.random() < 0.7 else len(b)
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(min(span, len(b)))
            b[i] = rng.randrange(256)
    elif kind == "run":
        i = rng.randrange(min(span, len(b)))
        n = rng.randint(1, 64)
        b[i:i + n] = bytes([rng.choice([0, 255])]) * len(b[i:i + n])
    elif kind == "truncate":
        del b[rng.randrange(1, len(b)):]
    elif kind == "insert":
        i = rng.randrange(min(span, len(b)))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    else:  # a plausible header field set to an extreme value (sizes, codes, offsets)
        i = rng.randrange(0, min(span, len(b)) - 4) & ~1
        b[i:i + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\x00\x00\xc0\x7f",
                                 b"\x00\x00\x00\x00", b"\xff\xff\xff\xff"])
    return bytes(b)


@dataclass
class Tally:
    tried: int = 0
    clean: int = 0
    success: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, ok: bool, success: bool, what: str) -> None:
        self.tried += 1
        self.clean += ok
        self.success += success and ok
        if not ok:
            self.failures.append(what)


def _cli(argv: list[str]) -> tuple[int, list[str]]:
    from napari_medseg.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = int(exc.code or 0)
        except BaseException as exc:  # noqa: BLE001 - a crash is what we count
            return -1, [f"raised {type(exc).__name__}: {exc}"]
    return rc, [ln for ln in err.getvalue().splitlines() if ln.strip()]


def _check_cli(argv: list[str], tally: Tally, label: str) -> None:
    rc, lines = _cli(argv)
    ok = (rc == 0 and not any("Traceback" in ln for ln in lines)) or (rc == 2 and len(lines) == 1)
    tally.add(ok, rc == 0, f"{label}: exit {rc}, stderr {lines[:3]}")


def _check_reader(path: Path, tally: Tally, label: str) -> None:
    from napari_medseg._reader import read_path

    try:
        read_path(path)
    except (ValueError, OSError) as exc:
        tally.add("\n" not in str(exc) and bool(str(exc)), False, f"{label}: {exc!r}")
    except BaseException as exc:  # noqa: BLE001
        tally.add(False, False, f"{label}: raised {type(exc).__name__}: {exc}")
    else:
        tally.add(True, True, label)


def _tiny_model(folder: Path) -> Path:
    from napari_medseg.models import (
        ModelCard,
        build_network,
        plan_network,
        plan_patch_size,
        save_model,
    )

    _, strides = plan_patch_size((16, 16, 16))
    spec = plan_network(3, 1, 3, strides, base_channels=4, max_channels=8)
    card = ModelCard(task="Hippocampus", classes=[
        {"value": 0, "name": "background", "color": [0, 0, 0]},
        {"value": 1, "name": "anterior", "color": [255, 0, 0]},
        {"value": 2, "name": "posterior", "color": [0, 255, 0]}],
        dims=3, in_channels=1, patch_size=[16, 16, 16], network=spec,
        normalisation=[{"scheme": "zscore", "mean": 0.0, "std": 1.0}], modality="MR")
    return save_model(build_network(spec), card, folder / "model")


HIPPOCAMPUS = ROOT / "sample_data" / "hippocampus"

#: dataset.json replacements: text, or entries merged into the sample's dataset.json.
GARBAGE_DATASET_JSON: dict[str, object] = {
    "list": "[]",
    "number": "5",
    "not json": "{labels",
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "modality 5": {"modality": 5},
    "modality list": {"modality": ["MRI"]},
    "training entry 5": {"training": [5]},
    "training a dict": {"training": {"a": 1}},
    "image 5": {"training": [{"image": 5, "label": "./labelsTr/hippocampus_001.nii.gz"}]},
    "label 5": {"training": [{"image": "./imagesTr/hippocampus_001.nii.gz", "label": 5}]},
    "label name 5": {"labels": {"0": "background", "1": 5}},
    "labels empty": {"labels": {}},
    "file_ending .exe": {"file_ending": ".exe"},
}

#: Model-card edits (a function of the card dict returning None, or the new card text).
GARBAGE_CARDS: dict[str, object] = {
    "deep nesting": lambda c: "[" * 100_000 + "]" * 100_000,
    "class without a name": lambda c: c["classes"][1].pop("name") and None,
    "classes a text": lambda c: c.update(classes="organ"),
    "dims 4": lambda c: c.update(dims=4),
    "spacing 0.01": lambda c: c.update(spacing=[0.01, 0.01, 0.01]),
    "spacing 0": lambda c: c.update(spacing=[0, 0, 0]),
    "patch 4096^3": lambda c: c.update(patch_size=[4096, 4096, 4096]),
    "in_channels -1": lambda c: c.update(in_channels=-1),
    "network a list": lambda c: c.update(network=[1]),
    "card a list": lambda c: "[1, 2]",
}

BAD_TRAIN_OPTIONS = [["--threads", "-1"], ["--base-channels", "0"],
                     ["--patch-size", "4096", "4096", "4096"], ["--time-budget-s", "-5"],
                     ["--max-epochs", "-1"], ["--steps-per-epoch", "0"], ["--batch-size", "0"],
                     ["--lr", "-1"], ["--val-fraction", "2"]]


def _garbage_label_datasets(tmp_path: Path) -> dict[str, Path]:
    """Copies of the sample dataset whose label file is wrong in one way each."""
    import nibabel as nib
    import numpy as np

    out = {}
    for kind in ("NaN label voxels", "labels on a 3x grid", "unnamed label value"):
        root = tmp_path / f"labels-{len(out)}"
        shutil.copytree(HIPPOCAMPUS, root)
        path = root / "labelsTr" / "hippocampus_003.nii.gz"
        img = nib.load(path)
        data = np.asanyarray(img.dataobj).astype(np.float32)
        affine = img.affine.copy()
        if kind == "NaN label voxels":
            data[0, 0, :3] = np.nan
        elif kind == "labels on a 3x grid":
            affine[:3, :3] *= 3
            data = data.astype(np.uint8)
        else:
            data = data.astype(np.uint8)
            data[0, 0, 0] = 7
        nib.save(nib.Nifti1Image(data, affine), path)
        out[kind] = root
    return out


def hand_made(tmp_path: Path, tallies: dict[str, Tally], model: Path | None) -> None:
    """The hand-made cases of issue 14: each must end in exit 2 with one stderr line."""
    import json

    def refused(argv: list[str], tally: Tally, label: str) -> None:
        rc, lines = _cli(argv)
        tally.add(rc == 2 and len(lines) == 1, False, f"{label}: exit {rc}, stderr {lines[:3]}")

    sample = json.loads((HIPPOCAMPUS / "dataset.json").read_text())
    train = ["--time-budget-s", "5", "--device", "cpu", "--threads", "1", "--quiet"]
    for k, (label, change) in enumerate(GARBAGE_DATASET_JSON.items()):
        root = tmp_path / f"dataset-{k}"
        shutil.copytree(HIPPOCAMPUS, root)
        text = change if isinstance(change, str) else json.dumps({**sample, **change})
        (root / "dataset.json").write_text(text)
        refused(["train", str(root), "--out", str(tmp_path / f"model-{k}"), *train],
                tallies["train"], f"dataset.json {label}")
    for label, root in _garbage_label_datasets(tmp_path).items():
        refused(["train", str(root), "--out", str(tmp_path / "model-labels"), *train],
                tallies["train"], label)
    for option in BAD_TRAIN_OPTIONS:
        base = train[2:] if option[0] == "--time-budget-s" else train
        refused(["train", str(HIPPOCAMPUS), "--out", str(tmp_path / "model-options"), *base,
                 *option], tallies["options"], " ".join(option))
    if model is None:
        return
    image = HIPPOCAMPUS / "imagesTr" / "hippocampus_001.nii.gz"
    card = json.loads((model / "model_card.json").read_text())
    for k, (label, change) in enumerate(GARBAGE_CARDS.items()):
        folder = tmp_path / f"card-{k}"
        shutil.copytree(model, folder)
        edited = json.loads(json.dumps(card))
        text = change(edited)  # type: ignore[operator]
        (folder / "model_card.json").write_text(text if isinstance(text, str)
                                                else json.dumps(edited))
        refused(["predict", "--model", str(folder), str(image), "--out",
                 str(tmp_path / f"pred-card-{k}"), "--device", "cpu", "--quiet"],
                tallies["cards"], f"model card {label}")
    import torch

    for label, payload in (("model.pt a list", [1, 2, 3]), ("model.pt a number", 5),
                           ("model.pt of text", "weights")):
        folder = tmp_path / f"weights-{label.replace(' ', '-')}"
        shutil.copytree(model, folder)
        torch.save(payload, folder / "model.pt")
        edited = dict(card, weights_sha256=None)  # as written before checksums
        (folder / "model_card.json").write_text(json.dumps(edited))
        refused(["predict", "--model", str(folder), str(image), "--out",
                 str(tmp_path / "pred-weights"), "--device", "cpu", "--quiet"],
                tallies["cards"], label)
    for option in (["--threads", "-1"], ["--overlap", "1"]):
        refused(["predict", "--model", str(model), str(image), "--out",
                 str(tmp_path / "pred-options"), "--device", "cpu", *option],
                tallies["options"], " ".join(option))


def run(n: int, seed: int = 0, predict: int = 0, verbose: bool = False,
        hand_made_cases: bool = True) -> dict[str, Tally]:
    """Fuzz ``n`` mutations per source; returns tallies per door."""
    import warnings

    warnings.simplefilter("ignore")
    rng = random.Random(seed)
    nifti_gz = NIFTI_SAMPLE.read_bytes()
    sources = {
        "nifti": (gzip.decompress(nifti_gz), ".nii", 352),
        "nifti.gz": (nifti_gz, ".nii.gz", 64),
        "dicom": (dicom_sample().read_bytes(), ".dcm", 1024),
    }
    tallies = {door: Tally() for door in ("info", "reader", "predict", "train", "cards",
                                          "options")}
    with tempfile.TemporaryDirectory(prefix="medseg-fuzz-") as tmp:
        tmp_path = Path(tmp)
        model = _tiny_model(tmp_path) if predict else None
        k = 0
        for name, (data, suffix, header) in sources.items():
            for i in range(n):
                mutated = mutate(data, rng, header)
                if name == "nifti.gz" and rng.random() < 0.5:
                    # mutate inside the gzip stream too, not only the compressed bytes
                    mutated = gzip.compress(mutate(gzip.decompress(nifti_gz), rng, 352))
                path = tmp_path / f"case{k}{suffix}"
                path.write_bytes(mutated)
                label = f"{name} #{i}"
                _check_cli(["info", str(path)], tallies["info"], label)
                _check_reader(path, tallies["reader"], label)
                if model is not None and k % max(1, (3 * n) // predict) == 0:
                    _check_cli(["predict", "--model", str(model), str(path),
                                "--out", str(tmp_path / f"out{k}"), "--device", "cpu"],
                               tallies["predict"], label)
                path.unlink()
                k += 1
        if hand_made_cases:
            hand_made(tmp_path, tallies, model)
    if verbose:
        for door, t in tallies.items():
            for f in t.failures[:20]:
                print(f"FAIL {door}: {f}")
    return tallies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="mutations per source file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predict", type=int, default=30, help="how many inputs also go "
                        "through predict")
    parser.add_argument("--write", action="store_true", help="write the figures to BENCHMARKS.md")
    args = parser.parse_args()
    t0 = time.perf_counter()
    tallies = run(args.n, args.seed, args.predict, verbose=True)
    elapsed = time.perf_counter() - t0
    rows = [f"| {door} | {t.tried} | {t.clean} | {t.success} | {t.tried - t.clean} |"
            for door, t in tallies.items() if t.tried]
    table = "\n".join(["| door | tried | clean | success | failures |", "|---|---|---|---|---|",
                       *rows])
    print(table)
    print(f"elapsed {elapsed:.0f} s")
    if args.write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _report import write_section  # noqa: E402

        write_section("Fuzzing the readers (issue 14)", (
            f"`python benchmarks/fuzz.py --n {args.n} --seed {args.seed} --predict {args.predict}`"
            f" ({elapsed:.0f} s): byte-level mutations (flips, runs, extreme header fields, "
            "truncations, insertions) of the hippocampus NIfTI (raw and gzip) and pydicom's "
            "CT_small.dcm, each through `info`, the napari reader and (a subset) `predict`. "
            "*Clean* = success, or exit 2 with exactly one stderr line.\n\n" + table))
    return 0 if all(t.tried == t.clean for t in tallies.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
