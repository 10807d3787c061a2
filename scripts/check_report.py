"""Render an HTML report in headless Chromium and check the screenshot is not blank.

    python scripts/check_report.py REPORT.html [--out SHOT.png] [--chromium /usr/bin/chromium]

Exit status: 0 when the page rendered with content (enough non-background pixels, more than a
few colours), 1 when the screenshot is blank or missing, 2 when no Chromium is found. The browser
runs with a throw-away profile, no network services and no GPU.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium binary: ``explicit``, /usr/bin/chromium, or one on PATH; None if none."""
    for cand in ([explicit] if explicit else []) + ["/usr/bin/chromium", "chromium", "chromium-browser",
                                                     "google-chrome"]:
        path = shutil.which(cand) if cand else None
        if path:
            return path
    return None


def screenshot(html: Path, out: Path, chromium: str, size=(1200, 2000), timeout: float = 90) -> None:
    """``chromium --headless --screenshot=out file://html`` with a temporary profile."""
    with tempfile.TemporaryDirectory(prefix="adatok-chromium-") as profile:
        cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
               f"--window-size={size[0]},{size[1]}", html.resolve().as_uri()]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False)


def blank_stats(png: Path) -> dict:
    """``content``: fraction of pixels differing from the most common (background) colour by more
    than 24 levels; ``colours``: distinct colours (quantised to 32 levels a channel)."""
    a = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    flat = a.reshape(-1, 3)
    values, counts = np.unique(flat, axis=0, return_counts=True)
    background = values[counts.argmax()]
    content = float((np.abs(flat - background).max(axis=1) > 24).mean())
    colours = len(np.unique(flat // 32, axis=0))
    return {"content": content, "colours": colours, "size": list(a.shape[:2])}


def check(html: Path, out: Path, chromium: str, min_content: float = 0.02, min_colours: int = 8) -> tuple[bool, dict]:
    if out.exists():
        out.unlink()
    screenshot(html, out, chromium)
    if not out.exists() or out.stat().st_size == 0:
        return False, {"error": "no screenshot written"}
    stats = blank_stats(out)
    return stats["content"] >= min_content and stats["colours"] >= min_colours, stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", type=Path)
    ap.add_argument("--out", type=Path, help="screenshot file (default: next to the report, report.png)")
    ap.add_argument("--chromium", help="Chromium binary (default: /usr/bin/chromium or one on PATH)")
    args = ap.parse_args(argv)
    if not args.html.is_file():
        print(f"check_report: {args.html}: no such file", file=sys.stderr)
        return 1
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("check_report: no Chromium found (pass --chromium PATH)", file=sys.stderr)
        return 2
    out = args.out or args.html.with_suffix(".png")
    ok, stats = check(args.html, out, chromium)
    print(f"{'ok' if ok else 'BLANK'}: {out} {stats}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
