"""Shared fixtures: where the real data lives (../shared/data beside the checkout)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
HIPPO = SHARED_DATA / "Task04_Hippocampus"
SAMPLES = SHARED_DATA / "samples"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set MEDSEG_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the read-only shared data folder."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def hippo_dir() -> Path:
    """MSD Task04 hippocampus dataset (imagesTr/, labelsTr/, dataset.json)."""
    return _require(HIPPO)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """CT / MR / DICOM samples."""
    return _require(SAMPLES)


@pytest.fixture(scope="session")
def hippo_split(hippo_dir: Path) -> dict:
    """The fixed train/val split of case ids: ``{"train": [...], "val": [...]}``."""
    split = json.loads((hippo_dir / "splits_suggested.json").read_text())
    return split[0] if isinstance(split, list) else split


@pytest.fixture
def hippo_cases(hippo_dir: Path):
    """Return a function giving (image_path, label_path) for the first n training cases."""

    def pick(n: int = 3) -> list[tuple[Path, Path]]:
        images = sorted((hippo_dir / "imagesTr").glob("*.nii.gz"))[:n]
        return [(p, hippo_dir / "labelsTr" / p.name) for p in images]

    return pick
