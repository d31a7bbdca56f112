"""The web demo's API (scratchcnn.apps.web) through FastAPI's test client and a real uvicorn server:
predictions equal scratchcnn.predict's, every bad input gets its JSON error, concurrent requests
get the single-threaded answers."""
from __future__ import annotations

import base64
import builtins
import io
import json
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web demo needs the 'web' extra (in 'dev' too)")
from PIL import Image  # noqa: E402

with warnings.catch_warnings():  # Starlette's notice about the httpx package the test client uses
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from scratchcnn.engine import explain  # noqa: E402
from scratchcnn.data import load_raw  # noqa: E402
from scratchcnn.predict import predict_images  # noqa: E402
from scratchcnn.files.serialization import load_model  # noqa: E402
from scratchcnn.apps.web.app import create_app  # noqa: E402
from scratchcnn.apps.web.service import Limits, load_served  # noqa: E402


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def decode_data_url(url: str) -> Image.Image:
    head, _, data = url.partition(",")
    assert head == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.fixture(scope="module")
def fashion_test():
    """The first 12 Fashion-MNIST test images (uint8 28x28) and labels."""
    _, _, x_test, y_test, names, _, _ = load_raw("fashion", progress=False)
    return x_test[:12], y_test[:12], names


@pytest.fixture(scope="module")
def served(mnist_run, fashion_run):
    models = load_served([fashion_run, mnist_run], backend="cpu")
    for model in models.values():
        model.warm_up()
    return models


@pytest.fixture(scope="module")
def client(served):
    return TestClient(create_app(served))


def test_models_lists_both_with_their_cards(client, fashion_run, mnist_run):
    answer = client.get("/api/models").json()
    assert [m["id"] for m in answer] == ["fashion", "mnist"] and answer[0]["default"]
    metrics = json.loads((fashion_run / "metrics.json").read_text())
    card = answer[0]
    assert card["test_accuracy"] == metrics["test_accuracy"] > 0.6
    assert card["parameters"] == metrics["parameters"] == 225_034
    assert card["input_shape"] == [1, 28, 28] and card["class_names"][9] == "Ankle boot"
    assert "conv2d_0 (Conv2D)" in card["summary"] and card["preset"] == "classic"
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/api/models", "/api/predict", "/api/unit"}
    body = schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert client.get("/docs").status_code == 404  # off: it would load Swagger UI from a CDN


def test_predictions_equal_scratchcnn_predict(client, fashion_run, fashion_test, tmp_path):
    images, _, _ = fashion_test
    paths = []
    for i, pixels in enumerate(images):
        # Some as dark-on-light photos of a different size, to exercise inversion and framing.
        img = Image.fromarray(pixels if i % 2 else 255 - pixels).resize((56 + 8 * i, 56), Image.BILINEAR)
        paths.append(tmp_path / f"item{i}.png")
        img.save(paths[-1])
    model, meta = load_model(fashion_run / "model.npz", backend="cpu")
    expected = predict_images(model, meta, paths, top_k=3)
    for i, (path, want) in enumerate(zip(paths, expected)):
        data = path.read_bytes()
        if i % 3 == 0:
            response = client.post("/api/predict", files={"image": (path.name, data, "image/png")},
                                   data={"model": "fashion", "top_k": "3"})
        else:
            text = base64.b64encode(data).decode()
            body = {"image": text if i % 3 == 1 else "data:image/png;base64," + text, "top_k": 3}
            response = client.post("/api/predict", json=body)
        assert response.status_code == 200, response.text
        got = response.json()
        assert got["inverted"] == want.inverted
        assert [c["name"] for c in got["classes"]] == [name for name, _ in want.top]
        np.testing.assert_allclose([c["probability"] for c in got["classes"]], [p for _, p in want.top],
                                   rtol=1e-5, atol=1e-6)
        assert sum(got["probabilities"]) == pytest.approx(1.0)
        assert got["class"] == want.top[0][0] and "layers" not in got


def test_the_prediction_runs_the_models_plan_not_explain(served, fashion_test, monkeypatch):
    """The answer's probabilities are those of the execution plan in inference mode, exactly what
    ``predict`` and ``evaluate`` compute; explain's layer-by-layer pass is not needed for them."""
    from scratchcnn.engine import inference

    def refuse(*args, **kwargs):
        raise AssertionError("explain ran for a prediction without details")

    monkeypatch.setattr(explain, "trace", refuse)
    monkeypatch.setattr(explain, "trace_with_saliency", refuse)
    entry = served["fashion"]
    data = png_bytes(fashion_test[0][0])
    got = entry.predict(data, Limits(), top_k=3)
    x, _ = entry.prepare(data, Limits())
    with entry.replica() as model:
        expected = inference.probabilities(model, x[None])[0]
    assert got["probabilities"] == [float(p) for p in expected]


def test_details_hold_the_input_maps_and_saliency(client, served, fashion_test):
    pixels = fashion_test[0][0]
    response = client.post("/api/predict", files={"image": ("a.png", png_bytes(pixels), "image/png")},
                           data={"details": "true"})
    got = response.json()
    # The input as the model sees it: a 28x28 test image is only standardised, so it comes back as is.
    np.testing.assert_array_equal(np.asarray(decode_data_url(got["input"]["png"])), pixels)
    layers = {layer["name"]: layer for layer in got["layers"]}
    assert list(layers) == ["conv2d_0", "maxpool2d_0", "conv2d_1", "maxpool2d_1"]
    assert layers["conv2d_0"]["shape"] == [32, 26, 26] and layers["maxpool2d_1"]["shape"] == [64, 5, 5]
    for layer in got["layers"]:
        lay = layer["layout"]
        img = decode_data_url(layer["png"])
        assert img.size == (lay["cols"] * (lay["w"] + lay["gap"]) - lay["gap"],
                            lay["rows"] * (lay["h"] + lay["gap"]) - lay["gap"])
        assert lay["cols"] * lay["rows"] >= layer["shape"][0] and lay["max"] > 0
    # The saliency map is the gradient the framework's backward pass computes for the top class.
    x, _ = served["fashion"].prepare(png_bytes(pixels), Limits())
    with served["fashion"].replica() as model:
        grad, target, _ = explain.saliency(model, x)
    assert got["saliency"]["target"] == target[0] == got["index"]
    assert got["saliency"]["max_abs_gradient"] == pytest.approx(float(np.abs(grad).max()), rel=1e-6)
    heat = decode_data_url(got["saliency"]["png"])
    assert heat.size == (28, 28) and heat.mode == "P"
    levels = np.asarray(heat)
    magnitude = np.abs(grad[0, 0])
    assert levels.max() == 255 and levels.flat[magnitude.argmax()] == 255


def test_unit_breakdown_matches_the_maps(client, served, fashion_test):
    data = base64.b64encode(png_bytes(fashion_test[0][1])).decode()
    conv = client.post("/api/unit", json={"image": data, "layer": "conv2d_1", "channel": 5, "row": 4,
                                          "col": 6}).json()
    assert np.array(conv["patch"]).shape == (32, 3, 3) and conv["input_layer"] == "maxpool2d_0"
    assert conv["sum"] + conv["bias"] == pytest.approx(conv["framework_output"], rel=1e-5, abs=1e-6)
    assert conv["after"][-1][2] == pytest.approx(max(0.0, conv["output"]), rel=1e-5, abs=1e-6)
    pool = client.post("/api/unit", json={"image": data, "layer": "maxpool2d_0", "channel": 3, "row": 6,
                                          "col": 6}).json()
    u, v = pool["winner"]
    largest = max(max(r) for r in pool["window"])
    assert pool["window"][u][v] == pool["output"] == pool["framework_output"] == largest
    errors = [({"layer": "conv2d_7", "channel": 0, "row": 0, "col": 0}, 404, "conv2d_7"),
              ({"layer": "relu_0", "channel": 0, "row": 0, "col": 0}, 422, "not a Conv2D"),
              ({"layer": "conv2d_0", "channel": 32, "row": 0, "col": 0}, 422, "channel 32 out of range"),
              ({"layer": "conv2d_0", "channel": 0, "row": -1, "col": 0}, 422, "greater_than_equal")]
    for fields, status, words in errors:
        response = client.post("/api/unit", json={"image": data, **fields})
        assert response.status_code == status and words in response.text, response.text


def _bomb(side: int) -> bytes:
    """A PNG of side x side black pixels: a few kB that decode to side**2 bytes."""
    return png_bytes(np.zeros((side, side), np.uint8))


def test_bad_input_gets_a_json_error_with_the_right_status(client, served, fashion_test):
    good = png_bytes(fashion_test[0][0])
    b64 = base64.b64encode(good).decode()
    cases = [
        ("empty file", dict(files={"image": ("a.png", b"", "image/png")}), 400, "empty"),
        ("not an image", dict(files={"image": ("a.png", b"hello, world" * 10, "image/png")}), 415, "not an image"),
        ("truncated", dict(files={"image": ("a.png", good[:len(good) // 2], "image/png")}), 400, "truncated"),
        ("unknown model", dict(json={"image": b64, "model": "cifar"}), 404, "unknown model 'cifar'"),
        ("a path as model", dict(json={"image": b64, "model": "/etc/passwd"}), 404, "unknown model"),
        ("no image field", dict(json={"model": "mnist"}), 422, "image"),
        ("not base64", dict(json={"image": "not base64!"}), 422, "base64"),
        ("bad top_k", dict(json={"image": b64, "top_k": 0}), 422, "top_k"),
        ("JSON not an object", dict(json=[1, 2]), 422, "object"),
        ("broken JSON", dict(content=b"{\"image\": ", headers={"content-type": "application/json"}), 422, "JSON"),
        ("no file part", dict(data={"model": "mnist"}, files={"other": ("a", b"x")}), 422, "image"),
        ("plain text", dict(content=b"hello", headers={"content-type": "text/plain"}), 415, "content type"),
        ("bomb", dict(files={"image": ("a.png", _bomb(5001), "image/png")}), 413, "25,000,000 pixels"),
    ]
    for what, request, status, words in cases:
        response = client.post("/api/predict", **request)
        assert response.status_code == status, (what, response.text)
        assert response.headers["content-type"] == "application/json", what
        assert words in str(response.json()["detail"]), (what, response.text)


def test_size_limits_are_configurable(served):
    small = TestClient(create_app(served, Limits(max_bytes=2000, max_pixels=10_000)))
    noise = np.random.default_rng(0).integers(0, 256, (60, 60), dtype=np.uint8)  # ~3.7 kB of PNG
    response = small.post("/api/predict", files={"image": ("a.png", png_bytes(noise), "image/png")})
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    response = small.post("/api/predict", files={"image": ("a.png", _bomb(101), "image/png")})
    assert response.status_code == 413 and "10,000 pixels" in response.json()["detail"]
    # A body over the limit is refused before it is read to the end, with or without Content-Length.
    big = b"x" * 100_000  # the body limit leaves room for base64 (4/3) and a 64 KiB envelope
    response = small.post("/api/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    response = small.post("/api/predict", content=iter([big[:50_000], big[50_000:]]),
                          headers={"content-type": "application/json"})
    assert response.status_code == 413 and "exceeds" in response.json()["detail"]
    assert small.post("/api/predict", files={"image": ("a.png", _bomb(99), "image/png")}).status_code == 200


def test_the_server_opens_no_file_a_client_names(client, monkeypatch, fashion_test):
    opened = []
    real_open, real_image_open = builtins.open, Image.open
    monkeypatch.setattr(builtins, "open", lambda file, *a, **k: opened.append(file) or real_open(file, *a, **k))
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(fp) or real_image_open(fp, *a, **k))
    good = png_bytes(fashion_test[0][0])
    assert client.post("/api/predict", files={"image": ("/etc/passwd", good, "image/png")}).status_code == 200
    assert client.post("/api/predict", json={"image": "/etc/passwd"}).status_code == 422
    assert client.get("/static/..%2F..%2Fserve.py").status_code == 404
    assert client.get("/static/app.js").status_code == 200
    assert opened and all(isinstance(f, io.BytesIO) for f in opened), opened


def test_concurrent_requests_get_the_single_threaded_answers(served, fashion_test, mnist_run):
    """8 threads at once against a real uvicorn server, each with its own image; every answer
    (probabilities and every picture) must equal the one computed alone."""
    import httpx
    import uvicorn

    images = [png_bytes(pixels) for pixels in fashion_test[0][:8]]
    alone = TestClient(create_app(served))

    def ask(http, data):
        response = http.post("/api/predict", files={"image": ("a.png", data, "image/png")},
                             data={"details": "true"})
        assert response.status_code == 200, response.text
        answer = response.json()
        answer.pop("compute_ms")
        return answer

    expected = [ask(alone, data) for data in images]
    assert len({e["saliency"]["png"] for e in expected}) == 8  # eight different answers to tell apart
    server = uvicorn.Server(uvicorn.Config(create_app(served), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        start, results, failures = threading.Barrier(8), {}, []

        def worker(k):
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                    start.wait()
                    results[k] = [ask(http, images[k]) for _ in range(4)]
            except Exception as exc:  # reported below with the thread's number
                failures.append((k, repr(exc)))

        workers = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        server.should_exit = True
        thread.join(10)
    assert not failures, failures
    for k in range(8):
        for answer in results[k]:
            assert answer == expected[k], f"thread {k} got another image's answer"


def test_serve_without_the_extra_says_how_to_install_it(mnist_run):
    code = ("import sys; sys.modules['fastapi'] = None; from scratchcnn.serve import main; "
            f"sys.exit(main(['--model', {str(mnist_run)!r}, '--port', '0']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[web]'" in lines[0], done.stderr


def test_serve_reports_a_bad_model_folder_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "scratchcnn.serve", "--model", str(tmp_path), "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"python -m scratchcnn.serve: error: {tmp_path}: the folder holds no model.npz "
        f"(an unfinished run? finish it with python -m scratchcnn.train --resume {tmp_path})"]


def test_serve_reports_a_taken_port_in_one_line(mnist_run):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "scratchcnn.serve", "--model", str(mnist_run),
                               "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"python -m scratchcnn.serve: error: --host 127.0.0.1 --port {port}: cannot listen there: "
        "Address already in use"]


def test_a_resnets_details_show_each_blocks_maps(tmp_path, fashion_test):
    from scratchcnn.files.serialization import save_model
    from scratchcnn.nn.presets import build_model

    model = build_model("resnet8", (1, 28, 28), 10, seed=0, backend="numpy")
    save_model(tmp_path / "model.npz", model, fashion_test[2], {"mean": 0.29, "std": 0.35, "scale": 255.0},
               dataset="fashion")
    resnet_client = TestClient(create_app(load_served([tmp_path / "model.npz"], backend="numpy")))
    got = resnet_client.post("/api/predict", files={"image": ("a.png", png_bytes(fashion_test[0][0]), "image/png")},
                             data={"details": "true"}).json()
    layers = {layer["name"]: (layer["kind"], layer["shape"]) for layer in got["layers"]}
    assert layers == {"conv2d_0": ("conv", [16, 28, 28]), "residual_0": ("block", [16, 28, 28]),
                      "residual_1": ("block", [32, 14, 14]), "residual_2": ("block", [64, 7, 7])}
    assert got["saliency"]["max_abs_gradient"] > 0
