"""Reading and showing large 2D pictures (issue 18 target: a 4000 x 3000 RGB JPEG in <= 1 s).

What is measured (median of ``--repeats`` runs, after one warm-up)
-----------------------------------------------------------------
``read_picture``   :func:`napari_medseg.io.read_picture` of a 4000 x 3000 RGB JPEG (quality 90,
                   a smooth synthetic photograph with noise), a 4000 x 3000 16-bit greyscale
                   PNG and a 16-bit RGB TIFF of the same size.
``reader``         the npe2 reader (``get_reader(path)(path)``): reading plus the layer tuple.
``describe``       ``describe_path`` (``napari-medseg info``).
``write``          :func:`napari_medseg.io.write_picture` of a 4000 x 3000 label map to PNG and
                   TIFF, and :func:`write_probability_png`.
``napari show``    (only with a display; Xvfb works) ``viewer.open(path, plugin="napari-medseg")``
                   until the canvas has drawn the picture (a canvas screenshot forces the draw),
                   in a viewer that is already up.

Run::

    python benchmarks/bench_2d_io.py
    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/bench_2d_io.py   # + napari

Figures are printed (nothing is written to BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour picture with noise, so a JPEG of it has photo-like entropy."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 4 * np.pi, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 6 * np.pi, width, dtype=np.float32)[None, :]
    base = np.stack([np.sin(x) * np.cos(y), np.sin(x + y), np.cos(x * 0.5 - y)], axis=-1)
    noise = rng.normal(0, 0.08, (height, width, 3)).astype(np.float32)
    return np.clip((base + 1.2 + noise) * 100, 0, 255).astype(np.uint8)


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (imports, file cache)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _napari_show_s(path: Path, repeats: int) -> tuple[float, float] | None:
    """Median seconds (open + draw, of which drawing) of a picture in napari; None if no display.

    Open = ``viewer.open(path, plugin="napari-medseg")`` (read + layer creation); draw = the
    events and a canvas screenshot that follow. Removing the layer between runs is not timed.
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return None
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    try:
        QApplication.processEvents()
        viewer.screenshot(canvas_only=True)  # canvas up before timing
        totals, draws = [], []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            layers = viewer.open(str(path), plugin="napari-medseg")
            t1 = time.perf_counter()
            QApplication.processEvents()
            viewer.screenshot(canvas_only=True)
            t2 = time.perf_counter()
            if i:  # the first run is a warm-up
                totals.append(t2 - t0)
                draws.append(t2 - t1)
            for layer in layers:
                viewer.layers.remove(layer)
            QApplication.processEvents()
        return statistics.median(totals), statistics.median(draws)
    finally:
        viewer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-napari", action="store_true", help="skip the napari timing")
    args = parser.parse_args(argv)

    import tifffile
    from PIL import Image

    from napari_medseg._reader import get_reader
    from napari_medseg.io import (
        MedsegIOWarning,
        describe_path,
        read_picture,
        write_picture,
        write_probability_png,
    )

    warnings.simplefilter("ignore", MedsegIOWarning)
    h, w, n = args.height, args.width, args.repeats
    rows: list[tuple[str, float | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        photo = _photo(h, w)
        jpg = folder / "photo.jpg"
        Image.fromarray(photo).save(jpg, quality=90)
        grey16 = folder / "xray16.png"
        Image.fromarray(photo[..., 0].astype(np.uint16) * 257).save(grey16)
        rgb16 = folder / "rgb16.tif"
        tifffile.imwrite(rgb16, photo.astype(np.uint16) * 257, photometric="rgb")
        labels = (photo[..., 1] > 128).astype(np.uint8) + (photo[..., 2] > 200)
        prob = photo[..., 0] / 255.0

        size = f"{w}x{h}"
        rows.append((f"read_picture JPEG RGB {size} ({jpg.stat().st_size / 1e6:.1f} MB)",
                     _median_s(lambda: read_picture(jpg), n)))
        rows.append((f"read_picture PNG 16-bit grey {size}",
                     _median_s(lambda: read_picture(grey16), n)))
        rows.append((f"read_picture TIFF 16-bit RGB {size}",
                     _median_s(lambda: read_picture(rgb16), n)))
        rows.append(("npe2 reader JPEG RGB (layer tuple)",
                     _median_s(lambda: get_reader(str(jpg))(str(jpg)), n)))
        rows.append(("describe_path JPEG RGB", _median_s(lambda: describe_path(jpg), n)))
        rows.append((f"write_picture PNG labels {size}",
                     _median_s(lambda: write_picture(labels, folder / "l.png"), n)))
        rows.append((f"write_picture TIFF labels {size}",
                     _median_s(lambda: write_picture(labels, folder / "l.tif"), n)))
        rows.append((f"write_probability_png {size}",
                     _median_s(lambda: write_probability_png(prob, folder / "p.png"), n)))
        if not args.no_napari:
            try:
                shown = _napari_show_s(jpg, n)
            except Exception as exc:  # noqa: BLE001 - a benchmark reports, it does not crash
                print(f"napari timing failed: {exc}", file=sys.stderr)
                shown = None
            if shown is None:
                rows.append(("napari open + draw JPEG RGB (no display: skipped)", None))
            else:
                rows.append(("napari open + draw JPEG RGB (total)", shown[0]))
                rows.append(("  of which drawing (events + canvas screenshot)", shown[1]))

    print(f"# bench_2d_io  python {platform.python_version()}  {platform.machine()}  "
          f"cpus={os.cpu_count()}  repeats={n} (median)")
    for label, seconds in rows:
        figure = "     -" if seconds is None else f"{seconds:6.3f} s"
        print(f"{figure}  {label}")
    jpeg_read = rows[0][1]
    print(f"target: read 4000x3000 RGB JPEG <= 1 s: {'met' if jpeg_read <= 1.0 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
