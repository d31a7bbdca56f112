"""Take the README's screenshot of the web demo: serve run folders, draw a 7, click a feature-map pixel.

Uses the same browser as the tests (Debian's chromium through playwright).

Example
-------
    python tools/web_screenshot.py --model runs/mnist --model runs/fashion --out docs/images/web-demo.png
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys

from playwright.sync_api import sync_playwright

SEVEN = [(75, 60), (205, 60), (165, 140), (125, 235)]  # canvas pixels, as in tests/test_serve_browser.py


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", required=True, help="run folders, the MNIST one first")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--width", type=int, default=1400)
    args = p.parse_args()
    cmd = [sys.executable, "-m", "scratchcnn.serve", "--port", "0"]
    for model in args.model:
        cmd += ["--model", model]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
        if not url:
            sys.exit(f"web_screenshot.py: the server did not start: {line}")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": args.width, "height": 900}, device_scale_factor=1)
            page.goto(url.group(1))
            page.wait_for_selector("#model option", state="attached")
            box = page.locator("#canvas").bounding_box()
            page.mouse.move(box["x"] + SEVEN[0][0], box["y"] + SEVEN[0][1])
            page.mouse.down()
            for x, y in SEVEN[1:]:
                page.mouse.move(box["x"] + x, box["y"] + y, steps=6)
            page.mouse.up()
            page.wait_for_selector('body[data-busy="0"]')
            grid = page.locator('.grid[data-layer="conv2d_0"] img')
            scale = grid.bounding_box()["width"] / (8 * 27 - 1)
            # Channel 2 (third map of the first row), row 6, column 16: on the 7's top bar.
            grid.click(position={"x": (2 * 27 + 16 + 0.5) * scale, "y": (6 + 0.5) * scale})
            page.wait_for_function("(document.body.dataset.unit || '').startsWith('conv2d_0')")
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
