"""The GUI latency benchmark rewrites only its own sections of BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gui_latency.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gui_latency", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_actions_section_replaces_only_itself(tmp_path, monkeypatch):
    bench = load_bench()
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n{bench.MARK_START}\ntraining rows\n{bench.MARK_END}\n\n"
                    f"{bench.ACTIONS_START}\nold rows\n{bench.ACTIONS_END}\n\n## Other\nkeep\n")
    monkeypatch.setattr(bench, "REPO", tmp_path)
    original = bench.replace_section
    monkeypatch.setattr(bench, "replace_section",
                        lambda lines, start, end, path=path: original(lines, start, end, path))
    stats = {"n": 10, "p50": 1.0, "p95": 2.0, "p99": 60.0, "max": 70.0, "seconds": 1.5}
    args = argparse.Namespace(shape=(8, 16, 16), note="")
    bench.write_actions_section([("k-means", stats), ("idle", dict(stats, p99=1.0))], args, "vm")
    text = path.read_text()
    assert "old rows" not in text and "training rows" in text and "## Other\nkeep" in text
    assert "| k-means | 1.5 | 10 | 1.0 | 2.0 | 60.0 | 70.0 | no |" in text
    assert "| idle | 1.5 | 10 | 1.0 | 2.0 | 1.0 | 70.0 | yes |" in text
    assert text.count(bench.ACTIONS_START) == 1


def test_synthetic_ct_tiles_the_phantom():
    bench = load_bench()
    image, labels = bench.synthetic_ct((50, 32, 32))
    assert image.shape == labels.shape == (50, 32, 32) and image.modality == "CT"
    assert labels.array.max() > 0 and image.array.min() <= -900
