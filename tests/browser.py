"""A real headless browser for the tests (Debian's chromium, installed by
``scripts/chromium.sh``): open an HTML page, take a screenshot, collect the console.

``FACTORFLOW_TEST_BROWSER`` names the browser (``make test`` sets it); without it the path
is asked of the script. Missing, the test is skipped, or fails under ``CI=true`` (CI must
run it), like the PostgreSQL tests.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BROWSER_VAR = "FACTORFLOW_TEST_BROWSER"


def browser_path() -> str:
    """The headless browser's executable; skips (fails under CI=true) without one."""
    path = os.environ.get(BROWSER_VAR, "").strip()
    if not path:
        found = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh"), "path"],
                               capture_output=True, text=True, check=False)
        path = found.stdout.strip() if found.returncode == 0 else ""
    if not path:
        how = 'install one with `eval "$(bash scripts/chromium.sh)"`'
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true but no headless browser: CI must run the browser test, {how}",
                        pytrace=False)
        pytest.skip(f"the browser test needs chromium ({how})")
    return path


@dataclass(frozen=True)
class Rendered:
    """What the browser made of a page: the screenshot (H, W, channels; floats in 0..1) and
    the console messages it logged (errors, warnings, logs alike)."""

    screenshot: np.ndarray
    console: list[str]

    def ink(self) -> float:
        """Share of pixels that differ from the page's most common colour (0: blank)."""
        rgb = np.round(self.screenshot[..., :3] * 255).astype(np.int64)
        flat = rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]
        values, counts = np.unique(flat, return_counts=True)
        return float(1.0 - counts.max() / flat.size)

    def colours(self) -> int:
        """Distinct colours in the screenshot (a page of text alone has few; charts many)."""
        rgb = np.round(self.screenshot[..., :3] * 255).astype(np.int64)
        return len(np.unique(rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]))


_CONSOLE = re.compile(r":CONSOLE[:(]\d+\)?\]\s*(.*)")


def render(page: Path, workdir: Path, width: int = 1200, height: int = 3000,
           timeout: float = 90) -> Rendered:
    """Open ``page`` in the headless browser (a fresh profile under ``workdir``, no network
    needed) and return its screenshot and console."""
    from matplotlib.image import imread

    shot = workdir / f"{page.stem}.png"
    out = subprocess.run(
        [browser_path(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={workdir / 'profile'}", f"--window-size={width},{height}",
         f"--screenshot={shot}", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=timeout, check=False)
    assert shot.exists(), f"the browser made no screenshot (exit {out.returncode}):\n" \
                          f"{out.stderr[-2000:]}"
    console = [m.group(1) for line in out.stderr.splitlines()
               if (m := _CONSOLE.search(line))]
    return Rendered(imread(shot), console)
