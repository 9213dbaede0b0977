"""Screenshots of ``vislab app`` for the documentation: ``docs/images/app_digits.png`` and ``app_stereo.png``.

    python docs/make_app_screenshots.py [--out docs/images] [--chromium /usr/bin/chromium]

Starts the app on a free port of 127.0.0.1 (the shipped weights, default settings), drives it in headless
Chromium with Playwright (draws a digit, predicts; picks the Motorcycle example), and saves each tab as a
palette PNG (small enough to commit). Needs the ``app`` extra, ``playwright`` and a system Chromium.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

from vislab.app import browser
from vislab.app.server import build_app, start


def save_small(png: bytes, path: Path, width: int = 960, colours: int = 128) -> Path:
    """A screenshot reduced to ``width`` pixels and a palette: a page's flat colours survive, and the file is
    small enough to commit (a full-size RGB screenshot of the Stereo tab is ~1.5 MB)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    parser.add_argument("--chromium", default=browser.find_chromium(), help="Chromium executable")
    args = parser.parse_args(argv)
    if not args.chromium:
        print("error: no Chromium found (apt-get install chromium, or pass --chromium PATH)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    demo = build_app(device="cpu")
    url = start(demo, "127.0.0.1", 0)
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=args.chromium, headless=True)
            page = chromium.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            browser.draw_strokes(page, browser.SEVEN)
            print("cnn reads", browser.predict_drawing(page, model_index=1))
            print("wrote", save_small(page.screenshot(full_page=True), args.out / "app_digits.png"))
            browser.open_stereo_tab(page)
            page.click("#example-motorcycle")
            browser.wait_for_disparities(page)
            page.locator("#error-sgbm img").first.wait_for(timeout=browser.TIMEOUT_MS)
            print(page.locator("#stereo-status").inner_text())
            print("wrote", save_small(page.screenshot(full_page=True), args.out / "app_stereo.png"))
            chromium.close()
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
