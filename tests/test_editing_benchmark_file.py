"""The morphology benchmark rewrites only its own section of BENCHMARKS.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_morphology.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_morphology", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_write_section_replaces_only_the_morphology_section(tmp_path):
    bench = load_bench()
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Training (issue 5)\nkeep me\n\n"
                    f"{bench.SECTION}\nold numbers\n\n## Inference\nkeep me too\n")
    bench.write_section(path, f"{bench.SECTION}\n\nnew numbers\n")
    text = path.read_text()
    assert "old numbers" not in text and "new numbers" in text
    assert "## Training (issue 5)\nkeep me" in text and "## Inference\nkeep me too" in text
    assert text.count(bench.SECTION) == 1
    fresh = tmp_path / "new.md"
    bench.write_section(fresh, f"{bench.SECTION}\n\nrow\n")
    assert fresh.read_text().startswith("# Benchmarks\n\n## Morphology (issue 4)")


def test_benchmark_row_format():
    bench = load_bench()
    row = {"radius": 12, "footprint": (9, 31, 31), "voxels": 4557, "method": "rows",
           "ours": 0.2, "edt": 0.9, "skimage": 40.0, "identical": True}
    line = bench.format_row(row)
    assert "200.0x" in line and "yes" in line and "9x31x31" in line
    row.update(skimage=None, identical=None)
    assert "skipped" in bench.format_row(row)
