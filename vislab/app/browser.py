"""Drive the app's page in a real browser with Playwright: shared by the tests and ``docs/make_app_screenshots.py``.

Playwright is only needed here (``pip install playwright``); the browser is the system's Chromium
(Debian's ``chromium`` package: ``/usr/bin/chromium``), since ``playwright install`` needs the internet.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TIMEOUT_MS = 120_000  # PSMNet on a busy 2-core machine: generous, the waits end as soon as the page is ready


def find_chromium() -> str | None:
    """The system Chromium: ``$VISLAB_CHROMIUM``, else ``chromium`` / ``chromium-browser`` on the PATH."""
    env = os.environ.get("VISLAB_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def outside_requests(urls: list[str], base_url: str) -> list[str]:
    """The network requests among ``urls`` that go anywhere but the app's own host and port."""
    own = urlsplit(base_url).netloc
    return [u for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != own]


def draw_strokes(page: Any, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw on the Digits sketchpad with the mouse; points are fractions (0..1) of the white drawing area."""
    pad = page.locator("#digit-sketchpad")
    pad.locator("canvas").first.wait_for(timeout=TIMEOUT_MS)
    pad.get_by_role("button", name="Brush").first.click()  # the canvas starts with no tool selected
    box = pad.locator("canvas").first.bounding_box()
    # The 280x280 drawing area is a centred square inside the canvas element.
    side = min(box["width"], box["height"]) * 0.8
    x0, y0 = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
    for stroke in strokes:
        (fx, fy), rest = stroke[0], stroke[1:]
        page.mouse.move(x0 + fx * side, y0 + fy * side)
        page.mouse.down()
        for fx, fy in rest:
            page.mouse.move(x0 + fx * side, y0 + fy * side, steps=8)
        page.mouse.up()


ONE = [[(0.52, 0.15), (0.50, 0.50), (0.48, 0.85)]]  # a "1": one slightly slanted vertical stroke
SEVEN = [[(0.25, 0.18), (0.75, 0.18), (0.45, 0.85)]]  # a "7": a bar and a diagonal, one stroke


def predict_drawing(page: Any, model_index: int) -> str:
    """Click Predict and return the digit the ``model_index``-th model box shows once probabilities arrived."""
    page.click("#digit-predict")
    heading = page.locator(f"#digit-probs-{model_index} h2, #digit-probs-{model_index} .output-class").first
    heading.wait_for(timeout=TIMEOUT_MS)
    page.locator(f"#digit-probs-{model_index} .confidence-set, #digit-probs-{model_index} dl").first.wait_for(
        timeout=TIMEOUT_MS)
    return heading.inner_text().strip()


def open_stereo_tab(page: Any) -> None:
    page.get_by_role("tab", name="Stereo").click()
    page.locator("#stereo-predict").wait_for(timeout=TIMEOUT_MS)


def wait_for_disparities(page: Any) -> None:
    """Wait until both disparity images (PSMNet and SGBM) are on the page."""
    for elem in ("#disp-psmnet", "#disp-sgbm"):
        page.locator(f"{elem} img").first.wait_for(state="visible", timeout=TIMEOUT_MS)
