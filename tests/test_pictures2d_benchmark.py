"""benchmarks/pictures2d.py: the fixed split and one tiny run end to end (synthetic ultrasound)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def test_fixed_split_every_nth_from_the_end():
    from pictures2d import fixed_split

    train, test = fixed_split([f"c{i}" for i in range(10)], 5)
    assert test == ["c4", "c9"]
    assert train == [f"c{i}" for i in range(10) if i not in (4, 9)]


def test_tiny_synthetic_ultrasound_run(tmp_path):
    out = tmp_path / "us.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "pictures2d.py"), "--synthetic-ultrasound", "6",
         "--shape", "64", "72", "--budget", "10", "--test-every", "3", "--threads", "1",
         "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["n_train"] == 4 and res["n_test"] == 2, proc.stdout[-2000:]
    for key in ("ours", "baseline"):
        row = res[key]["summary"]["lesion"]
        assert res[key]["steps"] > 0, (key, proc.stdout[-2000:])
        assert 0.0 <= row["dice"] <= 1.0 and set(res[key]["per_case"]) == {"US_002", "US_005"}
    assert "ours: lesion dice=" in proc.stdout and "baseline: lesion dice=" in proc.stdout
