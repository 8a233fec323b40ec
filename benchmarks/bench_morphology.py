"""Closing time vs radius: napari-medseg's mm morphology against scikit-image.

Volume: 120 x 256 x 256 voxels at 2.5 x 0.8 x 0.8 mm (a CT-like grid) holding one label shaped
like an organ with irregular outline, holes and vessels (a smoothed random field inside an
ellipsoid, ~14 % of the volume). For every radius the script times

* ``close_label(labels, 1, r, spacing)`` (``method="auto"``: bounding box + run decomposition or
  distance transform), best of ``--repeat`` runs;
* the same with ``method="edt"`` forced (the distance-transform formulation);
* ``skimage.morphology.binary_closing(labels == 1, ellipsoid_footprint(r, spacing))`` once,
  and checks that the results are identical voxel for voxel.

Usage::

    python benchmarks/bench_morphology.py            # full run (skimage takes minutes)
    python benchmarks/bench_morphology.py --quick    # skimage only up to 10 mm
    python benchmarks/bench_morphology.py --write BENCHMARKS.md

Results go to stdout and, with ``--write``, into the ``## Morphology (issue 4)`` section of the
given Markdown file (other sections are left alone).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_medseg.editing import close_label, ellipsoid_footprint
from napari_medseg.editing._structuring import EDT_THREADS, _pick

SHAPE = (120, 256, 256)
SPACING = (2.5, 0.8, 0.8)
RADII = (1, 2, 3, 5, 8, 10, 12, 15)
SECTION = "## Morphology (issue 4)"


def make_labels(shape=SHAPE, seed: int = 0) -> np.ndarray:
    """An organ-like label: smoothed noise thresholded inside an ellipsoid (uint8, label 1)."""
    rng = np.random.default_rng(seed)
    coarse = tuple(max(1, n // 4) for n in shape)
    noise = ndi.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), 2)
    field = ndi.zoom(noise, [n / c for n, c in zip(shape, coarse, strict=True)], order=1)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    ell = sum(((g - n / 2) / (0.42 * n)) ** 2 for g, n in zip(grids, shape, strict=True)) < 1
    return ((field > 0.0) & ell).astype(np.uint8)


def skimage_closing(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    from skimage import morphology

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if hasattr(morphology, "binary_closing"):
            return morphology.binary_closing(mask, footprint)
    # scikit-image >= 0.28: the same operation via scipy (what binary_closing did)
    dil = ndi.binary_dilation(mask, structure=footprint, border_value=0)
    return ndi.binary_erosion(dil, structure=footprint, border_value=1)


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run(radii, quick: bool, repeat: int, skimage_max: float | None) -> list[dict]:
    labels = make_labels()
    mask = labels == 1
    rows = []
    for r in radii:
        fp = ellipsoid_footprint(r, SPACING)
        method = _pick("auto", fp, 3)
        t_ours, ours = best_time(lambda r=r: close_label(labels, 1, r, SPACING), repeat)
        t_edt, ours_edt = best_time(
            lambda r=r: close_label(labels, 1, r, SPACING, method="edt"), max(1, repeat - 1))
        row = {"radius": r, "footprint": fp.shape, "voxels": int(fp.sum()), "method": method,
               "ours": t_ours, "edt": t_edt, "skimage": None, "identical": None}
        limit = 10.0 if quick else skimage_max
        if limit is None or r <= limit:
            t0 = time.perf_counter()
            ref = skimage_closing(mask, fp)
            row["skimage"] = time.perf_counter() - t0
            row["identical"] = bool(np.array_equal(ours == 1, ref)
                                    and np.array_equal(ours_edt == 1, ref))
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    sk = row["skimage"]
    sk_s = f"{sk:8.2f}" if sk is not None else " skipped"
    speed = f"{sk / row['ours']:7.1f}x" if sk is not None else "      -"
    ident = {True: "yes", False: "NO", None: "-"}[row["identical"]]
    fp = "x".join(str(k) for k in row["footprint"])
    return (f"| {row['radius']:>4} | {fp:>9} | {row['voxels']:>6} | {row['method']:>5} | "
            f"{row['ours']:8.3f} | {row['edt']:8.3f} | {sk_s} | {speed} | {ident:>9} |")


HEADER = (
    "| r (mm) | footprint | voxels | auto method | ours (s) | ours, edt forced (s) "
    "| skimage (s) | speed-up | identical |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def machine_info() -> str:
    try:
        load = os.getloadavg()
        load_s = f"load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at start"
    except OSError:
        load_s = "load average unknown"
    from importlib.metadata import version

    import scipy
    import skimage

    return (f"{platform.node() or 'host'}: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPU cores, {load_s}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, scipy {scipy.__version__}, scikit-image "
            f"{skimage.__version__}, edt {version('edt')} "
            f"({EDT_THREADS} threads)")


def markdown(rows: list[dict], info: str, quick: bool, note: str) -> str:
    labels = make_labels()
    fraction = float(labels.mean())
    box = " x ".join(f"{b.start}:{b.stop}" for b in ndi.find_objects(labels)[0])
    today = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        f"`python benchmarks/bench_morphology.py{' --quick' if quick else ''}` — {today}.",
        f"Machine: {info}.",
        "",
        f"Binary closing of one organ-like label ({fraction:.0%} of the volume, bounding box "
        f"{box}) in a 120 x 256 x 256 volume "
        "at 2.5 x 0.8 x 0.8 mm, radius in mm = ellipsoid footprint in voxels. `ours` = "
        "`close_label(..., method=\"auto\")` (label's bounding box + footprint margin, run "
        "decomposition on bit-packed rows or distance transform, chosen by a cost estimate), best "
        "of the repeats; `edt forced` = the distance-transform formulation (`edt` package); "
        "`skimage` = `skimage.morphology.binary_closing(mask, footprint)` with the same footprint, "
        "one run. `identical` = both of our results equal scikit-image's voxel for voxel.",
        "",
        HEADER,
        *[format_row(r) for r in rows],
        "",
        "Reading: scikit-image's cost grows with the footprint volume (~r^3); the run "
        "decomposition grows with the number of runs (~r^2) on bit-packed data and stays well "
        "under a second, and the distance transform's cost is flat in r (but higher than the runs "
        "at these radii), so `auto` picks the runs here and switches to the distance transform "
        "only for much larger footprints (around 40 mm at this spacing; cost model in "
        "`napari_medseg/editing/_structuring.py`). Both methods are checked against "
        "scikit-image above and in `tests/test_editing_morphology.py`.",
        "",
    ]
    if note:
        lines += [note, ""]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace (or append) our section in a Markdown file, leaving other sections as they are."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _m: text, old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip scikit-image above 10 mm")
    ap.add_argument("--radii", type=float, nargs="+", default=list(RADII))
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours per radius (best kept)")
    ap.add_argument("--skimage-max", type=float, default=None,
                    help="largest radius (mm) timed with scikit-image (default: all)")
    ap.add_argument("--write", type=Path, default=None, help="Markdown file to update")
    ap.add_argument("--note", default="", help="free text added under the table")
    args = ap.parse_args(argv)
    info = machine_info()
    print(info)
    print(HEADER)
    rows = run([float(r) if r % 1 else int(r) for r in args.radii], args.quick, args.repeat,
               args.skimage_max)
    if args.write is not None:
        note = args.note
        try:
            load = os.getloadavg()
            note = (note + " " if note else "") + (
                f"Load average at the end: {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} "
                f"(shared machine: other jobs were running, timings are indicative).")
        except OSError:
            pass
        write_section(args.write, markdown(rows, info, args.quick, note))
        print(f"wrote {args.write}")
    bad = [r["radius"] for r in rows if r["identical"] is False]
    if bad:
        print(f"results differ from scikit-image at radii {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
