"""The web demo in a real browser: Debian's chromium driven by playwright against
``python -m scratchcnn.serve`` on a free port of 127.0.0.1.

Draws digits with mouse strokes and checks the class the page shows, uploads a
Fashion-MNIST test image as a PNG and checks its label, and checks that the feature
maps, the saliency map and the breakdown of one unit appear, and that the page never shows
the answer to an older input (it marks on ``#top`` which request its answer belongs to). With
``SCRATCHCNN_SCREENSHOT=path.png`` it also saves a screenshot there (how the README's
picture is made).
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web demo needs the 'web' extra (in 'dev' too)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright ('dev' extra)")
from PIL import Image  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; playwright cannot download browsers here

# Strokes on the 280x280 canvas, in canvas pixels, drawn the way a person would.
DIGITS = {
    "1": [[(150, 45), (148, 140), (145, 235)]],
    "0": [[(140 + 60 * math.sin(2 * math.pi * t / 40), 140 - 90 * math.cos(2 * math.pi * t / 40))
           for t in range(41)]],
    "7": [[(75, 60), (205, 60), (165, 140), (125, 235)]],
}


@pytest.fixture(scope="module")
def server(mnist_run, fashion_run):
    """``python -m scratchcnn.serve`` with both models on a free port; yields its address."""
    proc = subprocess.Popen([sys.executable, "-m", "scratchcnn.serve", "--model", str(mnist_run),
                             "--model", str(fashion_run), "--port", "0", "--backend", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
        assert found, f"the server did not start: {line}{proc.stdout.read() if proc.poll() is not None else ''}"
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def page(server):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium), "
                    "as .ci/run does")
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start; a container's small
        # /dev/shm would crash it, hence --disable-dev-shm-usage.
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.wait_for_selector("#model option", state="attached")
        yield page
        browser.close()


def settle(page, source="drawing"):
    """Wait until the page shows the answer to its newest change, and check that this answer is for
    ``source`` ("drawing" or "file:NAME"): #top's data-seq and data-source say which request it answers."""
    try:
        page.wait_for_function("""(source) => document.body.dataset.busy === "0"
            && (!document.querySelector("#error").hidden || document.querySelector("#top").dataset.source === source)""",
                               arg=source, timeout=30_000)
    except sync_api.TimeoutError:
        pass  # the assertion below says what the page shows instead
    shown = page.evaluate("""() => ({ ...document.querySelector("#top").dataset, newest: document.body.dataset.seq,
                                      busy: document.body.dataset.busy, error: document.querySelector("#error").textContent })""")
    assert shown["busy"] == "0" and shown.get("source") == source and shown.get("seq") == shown["newest"], (
        f"waited for the answer to the {source}, the page shows {shown}")
    return shown


def draw(page, strokes, brush=20, scale=1.0, shift=(0, 0)):
    """Clear the canvas and draw ``strokes`` (scaled, then shifted, in canvas pixels) with the mouse."""
    page.click("#clear")
    page.locator("#brush").fill(str(brush))
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + shift[0] + scale * x, box["y"] + shift[1] + scale * y) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=4)
        page.mouse.up()
    settle(page)


def test_drawn_digits_are_recognised(page):
    assert page.is_visible("#model-chooser")
    assert page.input_value("#model") == "mnist"
    # Large and centred, then small, thin and in the bottom-right corner: the preprocessing crops
    # and frames a drawing as MNIST's digits were, so both must read the same.
    for digit, strokes in DIGITS.items():
        for brush, scale, shift in [(20, 1.0, (0, 0)), (12, 0.55, (110, 110))]:
            draw(page, strokes, brush, scale, shift)
            shown = page.get_attribute("#top", "data-class")
            assert shown == digit, f"drew {digit} (scale {scale}), the page shows {shown}: {page.inner_text('#bars')}"
        assert page.locator("#bars li").count() == 5
        assert page.is_hidden("#error")


def test_feature_maps_saliency_and_one_unit_appear(page, mnist_run):
    draw(page, DIGITS["7"])
    assert page.locator("#layers .layer img").count() == 4
    sizes = page.eval_on_selector_all("#layers .layer img", "imgs => imgs.map(i => [i.naturalWidth, i.complete])")
    assert all(width > 0 and complete for width, complete in sizes), sizes
    assert page.eval_on_selector("#saliency-img", "i => i.naturalWidth") == 28
    assert page.eval_on_selector("#input-img", "i => i.naturalWidth") == 28
    assert "saliency for \u201c7\u201d" in page.inner_text("#saliency-caption")
    assert "classic" in page.inner_text("#card-facts") and "mnist" in page.inner_text("#card-facts")
    # Click conv2d_0's channel 0 at row 10, column 12 (the grid: 8 maps of 26 + 1 gap pixels across, scaled up).
    grid = page.locator('.grid[data-layer="conv2d_0"] img')
    scale = grid.bounding_box()["width"] / (8 * 27 - 1)
    grid.click(position={"x": (12 + 0.5) * scale, "y": (10 + 0.5) * scale})
    page.wait_for_function("document.body.dataset.unit === 'conv2d_0:0:10:12'")
    text = page.inner_text("#unit-body")
    assert "conv2d_0, channel 0, row 10, column 12" in text and "ReLU" in text
    assert page.locator("#unit-body .channel").count() == 1  # one input channel: 3x3 patch, kernel, products
    assert page.locator("#unit-body .channel td").count() == 27
    assert page.is_visible("#patch-box")
    pool = page.locator('.grid[data-layer="maxpool2d_1"] img')
    scale = pool.bounding_box()["width"] / (8 * 6 - 1)
    pool.click(position={"x": (6 + 2.5) * scale, "y": (6 + 1.5) * scale})  # channel 9, row 1, column 2
    page.wait_for_function("document.body.dataset.unit === 'maxpool2d_1:9:1:2'")
    assert page.locator("#unit-body td.win").count() == 1


def test_uploaded_fashion_image_gets_its_label(page, tmp_path):
    from scratchcnn.data import load_raw

    _, _, x_test, y_test, names, _, _ = load_raw("fashion", progress=False)
    index = 2  # a trouser: the easiest class, which a 1-epoch model gets right
    path = tmp_path / "trouser.png"
    Image.fromarray(x_test[index]).save(path)
    page.select_option("#model", "fashion")  # re-classifies the drawing on the canvas with this model
    page.set_input_files("#file", str(path))
    shown = settle(page, "file:trouser.png")  # not the drawing's answer, which may come back later
    assert shown["model"] == "fashion" and shown["class"] == names[y_test[index]] == "Trouser"
    assert "fashion" in page.inner_text("#card-facts")
    # The page shows the very pixels of the file as the model's input (28x28: only standardised).
    shown = page.eval_on_selector("#input-img", "i => i.src")
    import base64
    import io

    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(shown.split(",", 1)[1]))))
    np.testing.assert_array_equal(pixels, x_test[index])
    # Drag and drop: another trouser (test image 3), dropped on the canvas as a file.
    buffer = io.BytesIO()
    Image.fromarray(x_test[3]).save(buffer, "PNG")
    dropped = page.evaluate_handle(
        """(b64) => { const data = new DataTransfer();
                      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                      data.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
                      return data; }""", base64.b64encode(buffer.getvalue()).decode())
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": dropped})
    shown = settle(page, "file:dropped.png")
    assert y_test[3] == y_test[index] and shown["class"] == "Trouser"
    shown = page.eval_on_selector("#input-img", "i => i.src")
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(shown.split(",", 1)[1]))))
    np.testing.assert_array_equal(pixels, x_test[3])
    target = os.environ.get("SCRATCHCNN_SCREENSHOT")
    shot = Path(target) if target else tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1400


def test_an_answer_to_an_older_input_is_never_shown(page, tmp_path):
    """Choosing a model re-classifies the drawing; a file chosen right after must not get that answer,
    even when it comes back while the file still decodes. Both are held here, as a busy machine may hold
    them: the drawing's request until the upload has begun, the decoding until that answer is back."""
    from scratchcnn.data import load_raw

    _, _, x_test, y_test, names, _, _ = load_raw("fashion", progress=False)
    path = tmp_path / "held.png"
    Image.fromarray(x_test[2]).save(path)
    page.select_option("#model", "mnist")
    draw(page, DIGITS["7"])
    page.evaluate("""() => { const decode = window.createImageBitmap;
        const held = new Promise((release) => { window.releaseDecoding = release; });
        window.createImageBitmap = (file) => held.then(() => { window.createImageBitmap = decode; return decode(file); }); }""")
    requests = []
    page.route("**/api/predict", lambda route: requests.append(route))
    page.select_option("#model", "fashion")
    for _ in range(1500):  # up to 30 s for the page to ask about the drawing with the new model
        if requests:
            break
        page.wait_for_timeout(20)
    assert len(requests) == 1, "choosing a model did not re-classify the drawing"
    page.set_input_files("#file", str(path))
    requests[0].continue_()
    page.unroute("**/api/predict")
    assert requests[0].request.response().finished() is None  # the drawing's answer is back, the file not decoded
    page.wait_for_timeout(300)  # time for the page to handle that answer (dropping it leaves no mark to wait for)
    still = page.evaluate("""() => ({ busy: document.body.dataset.busy, ...document.querySelector("#top").dataset })""")
    assert still["busy"] == "1" and still.get("source") == "drawing" and still.get("model") == "mnist", (
        f"the upload is pending, yet the page shows {still}")  # the drawing's fashion answer was dropped
    page.evaluate("window.releaseDecoding()")
    shown = settle(page, "file:held.png")
    assert shown["model"] == "fashion" and shown["class"] == names[y_test[2]] == "Trouser"
    assert len(requests) == 1  # the upload's request went straight through
