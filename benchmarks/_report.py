"""Write one benchmark's section of BENCHMARKS.md, leaving the other sections as they are."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(title: str, body: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the ``## title`` section of ``path`` with ``body``."""
    heading = f"## {title}"
    text = f"{heading}\n\n{body.strip()}\n"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _m: text + "\n", old, count=1) if pattern.search(old) \
        else old.rstrip("\n") + "\n\n" + text
    path.write_text(new.rstrip("\n") + "\n")
