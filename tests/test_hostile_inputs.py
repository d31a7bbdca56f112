"""Hardening, second round (issue 25; docs/reliable-runs.md, "What is guaranteed"): model files and images
whose declared work is huge, outputs that are not the user's to replace, over-long paths, NaN results,
FIFOs, escape codes, and the web server's answers to client mistakes. Memory is measured in a child
process (``getrusage(RUSAGE_CHILDREN)`` of a wrapper that runs only that command), with sizes kept small
enough that each case runs in seconds; the figures at full size are in docs/reliable-runs.md."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scratchcnn import evaluate, export, predict, train
from scratchcnn.data.cifar import read_records
from scratchcnn.errors import DataError, ModelFileError
from scratchcnn.files.serialization import MODEL_FORMAT, load_model, read_archive, write_archive
from tests.test_cli import files_of, one_error_line

DIGITS = ["--dataset", "digits", "--train-limit", "300", "--epochs", "1", "--no-progress"]
PREDICT = "python -m scratchcnn.predict: error: "
EVALUATE = "python -m scratchcnn.evaluate: error: "
EXPORT = "python -m scratchcnn.export: error: "
LONG = "x" * 300  # a path component longer than NAME_MAX (255 bytes)

# Runs a command in a child and reports that child's peak resident memory: the wrapper itself
# starts no other child, so RUSAGE_CHILDREN is the command's alone.
PEAK = textwrap.dedent("""
    import json, resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=240)
    print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr,
                      "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
""")


def peak(*argv) -> dict:
    """Run ``python -m`` ``argv`` in a fresh process; its exit code, output and peak memory (MB)."""
    done = subprocess.run([sys.executable, "-c", PEAK, sys.executable, "-m", *map(str, argv)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("digits") / "run"
    assert train.main(DIGITS + ["--out", str(run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory) -> Path:
    return png(tmp_path_factory.mktemp("img") / "digit.png", np.kron(np.eye(8, dtype=np.uint8) * 255, np.ones((4, 4),
                                                                                                           np.uint8)))


@pytest.fixture(scope="module")
def baseline_mb(digits_run, digit_png) -> float:
    """Peak memory of predict on one small image: imports, the model and the kernels."""
    result = peak("scratchcnn.predict", "--model", digits_run, digit_png)
    assert result["rc"] == 0, result["err"]
    return result["peak_mb"]


def crafted(src: Path, dst: Path, edit_meta=None, extra=None) -> Path:
    """A copy of a model file with its JSON edited and ``extra`` arrays added, compressed (zeros: to nothing)."""
    meta, arrays = read_archive(src, MODEL_FORMAT)
    if edit_meta:
        edit_meta(meta)
    np.savez_compressed(dst, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays, **(extra or {}))
    return dst


def assert_one_line(result: dict, prog: str, words: str) -> None:
    assert result["rc"] == 1, result
    lines = result["err"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prog) and words in lines[0], result["err"]


# ----------------------------------------------------------------------------- 1, 2: a model file's declared work

def test_case_1_a_model_file_listing_thousands_of_layers_is_refused_before_they_are_built(
        digits_run, digit_png, tmp_path, baseline_mb):
    relus = [{"class": "ReLU", "config": {}}] * 3000
    path = crafted(digits_run / "model.npz", tmp_path / "layers.npz",
                   lambda m: m["architecture"].update(layers=relus + m["architecture"]["layers"]))
    assert path.stat().st_size - (digits_run / "model.npz").stat().st_size < 100_000  # the JSON of 3,000 ReLUs
    for tool in (("scratchcnn.predict", "--model", path, digit_png), ("scratchcnn.evaluate", path)):
        result = peak(*tool)
        assert_one_line(result, f"python -m {tool[0]}: error: ",
                        f"{path}: the architecture lists 3,011 layers, more than the 1,000 allowed")
        assert result["peak_mb"] < baseline_mb + 30, result["peak_mb"]


def test_case_1_activations_unfolded_inputs_and_flops_are_budgeted(digits_run, tmp_path):
    def model(input_shape, layers):
        return lambda m: m["architecture"].update(input_shape=input_shape, layers=layers)

    relu = {"class": "ReLU", "config": {}}
    conv = {"class": "Conv2D", "config": {"in_channels": 8, "out_channels": 1, "kernel_size": [9, 9]}}
    wide = {"class": "Conv2D", "config": {"in_channels": 512, "out_channels": 512, "kernel_size": [3, 3],
                                          "padding": 1}}
    # Refused from the JSON alone: the file holds no arrays at all.
    for name, edit, message in (
            ("activations", model([1, 300, 300], [relu] * 900), "one image's activations reach 81,090,000"),
            ("unfolded", model([8, 400, 400], [conv]), "unfolded input (im2col) reaches 99,574,272 elements"),
            ("flops", model([512, 32, 32], [wide] * 25), "a forward pass takes 120,795,955,200 FLOPs per image"),
    ):
        meta, _ = read_archive(digits_run / "model.npz", MODEL_FORMAT)
        edit(meta)
        path = write_archive(tmp_path / f"{name}.npz", meta, {})
        with pytest.raises(ModelFileError, match=re.escape(message)):
            load_model(path, backend="numpy")


def test_case_2_arrays_outside_the_parameters_are_refused_unread(digits_run, digit_png, tmp_path, baseline_mb):
    zeros = {f"extra/{i}": np.zeros(5_000_000, np.float64) for i in range(4)}  # 160 MB that compress to 0.2 MB
    path = crafted(digits_run / "model.npz", tmp_path / "extra.npz", extra=zeros)
    assert path.stat().st_size - (digits_run / "model.npz").stat().st_size < 1_000_000
    for tool in (("scratchcnn.predict", "--model", path, digit_png), ("scratchcnn.evaluate", path),
                 ("scratchcnn.export", path, tmp_path / "out.onnx")):
        result = peak(*tool)
        assert_one_line(result, f"python -m {tool[0]}: error: ",
                        f"{path}: member 'extra/0' is not part of a scratchcnn-model file")
        assert result["peak_mb"] < baseline_mb + 30, (tool[0], result["peak_mb"])


def test_case_2_the_budget_counts_bytes_and_every_array_must_be_declared(digits_run, tmp_path):
    meta, arrays = read_archive(digits_run / "model.npz", MODEL_FORMAT)
    doubled = {k: v.astype(np.float64) for k, v in arrays.items()}  # elements within the cap, bytes twice it
    path = write_archive(tmp_path / "f64.npz", meta, doubled)
    os.environ["SCRATCHCNN_MAX_PARAMETERS"] = str(sum(v.size for v in arrays.values()))
    try:
        with pytest.raises(ModelFileError, match=r"the arrays hold [\d,]+ bytes, more than the"):
            load_model(path, backend="numpy")
    finally:
        del os.environ["SCRATCHCNN_MAX_PARAMETERS"]
    spare = write_archive(tmp_path / "spare.npz", meta, {**arrays, "param/dense_9.W": np.zeros(10, np.float32)})
    with pytest.raises(ModelFileError, match=r"unexpected \['dense_9.W'\]"):
        load_model(spare, backend="numpy")


# ----------------------------------------------------------------------------- 3: images whose size costs memory

def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG signature and IHDR declaring width x height 8-bit grey, and one tiny IDAT: the size is
    read from the header, so nothing of that size need exist."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_case_3_a_strip_image_and_a_large_one_take_bounded_memory(digits_run, digit_png, tmp_path, baseline_mb):
    strip = png(tmp_path / "strip.png", np.full((1, 8000), 255, np.uint8))  # padded to a square: 8000x8000
    strip.write_bytes(strip.read_bytes())
    large = png(tmp_path / "large.png", np.zeros((4000, 4000), np.uint8))
    for image in (strip, large):
        result = peak("scratchcnn.predict", "--model", digits_run, image, digit_png)
        assert result["rc"] == 0 and result["err"] == "", result
        assert result["out"].count("  1. ") == 2
        # 4000x4000 is 16 MB decoded (64 MB as float32); the 8000-pixel strip 256 MB once padded.
        assert result["peak_mb"] < baseline_mb + 40, (image.name, result["peak_mb"], baseline_mb)


def test_case_3_a_decompression_bomb_is_one_line_and_the_next_image_is_read(digits_run, digit_png, tmp_path):
    bomb = png_header_only(tmp_path / "bomb.png", 13000, 13000)  # Pillow warns above 89,478,485 pixels
    result = peak("scratchcnn.predict", "--model", digits_run, bomb, digit_png)
    assert result["rc"] == 1 and result["out"].count("  1. ") == 1, result
    assert result["err"].splitlines() == [
        f"{PREDICT}{bomb}: the image is 13000x13000 pixels (169,000,000), more than the 89,478,485 this reads"]


# ----------------------------------------------------------------------------- 4, 5: nothing of the user's overwritten

def test_case_4_export_never_replaces_the_model_a_device_or_a_file_without_force(digits_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    model = (run_dir / "model.npz").read_bytes()
    for target in (run_dir / "model.npz", run_dir / "." / "model.npz"):
        for force in ([], ["--force"]):
            assert export.main([str(run_dir), str(target), *force]) == 1
            assert "is the model being exported; choose another output file" in one_error_line(
                capsys.readouterr().err, EXPORT)
    assert (run_dir / "model.npz").read_bytes() == model
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for force in ([], ["--force"]):
        assert export.main([str(run_dir), str(fifo), *force]) == 1
        assert f"{fifo} exists and is a FIFO, not a regular file; refusing to replace it" in one_error_line(
            capsys.readouterr().err, EXPORT)
    assert fifo.is_fifo()
    mine = tmp_path / "mine.onnx"
    mine.write_text("my notes")
    assert export.main([str(run_dir), str(mine)]) == 1
    assert f"{mine} already exists; pass --force to replace it" in one_error_line(capsys.readouterr().err, EXPORT)
    assert mine.read_text() == "my notes"
    assert export.main([str(run_dir), str(mine), "--force"]) == 0
    assert mine.read_bytes()[:2] != b"my"


def test_case_5_out_into_a_folder_of_the_users_own_files_is_refused(digits_run, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "history.csv").write_text("my history")
    (mine / "curves.png").write_bytes(b"my curves")
    before = files_of(mine)
    assert train.main(DIGITS + ["--out", str(mine)]) == 1
    assert (f"--out {mine}: the folder already holds curves.png, history.csv, which this run would overwrite; "
            "choose another --out (or pass --force)") in one_error_line(capsys.readouterr().err)
    assert evaluate.main([str(digits_run), "--out", str(mine), "--no-progress"]) == 1
    assert (f"--out {mine}: the folder already holds curves.png, history.csv, which this evaluation would "
            "overwrite") in one_error_line(capsys.readouterr().err, EVALUATE)
    assert files_of(mine) == before
    assert evaluate.main([str(digits_run), "--out", str(mine), "--no-progress", "--force"]) == 0
    assert (mine / "history.csv").read_text() != "my history"
    capsys.readouterr()
    assert evaluate.main([str(digits_run), "--out", str(mine), "--no-progress"]) == 0  # its own reports: replaced


# ----------------------------------------------------------------------------- 6: CIFAR batch sizes

def test_case_6_a_cifar_batch_of_the_wrong_size_is_refused_before_reading(tmp_path):
    sparse = tmp_path / "data_batch_1.bin"
    with open(sparse, "wb") as f:
        f.truncate(2**40)  # 1 TB, sparse: reading it whole fails with MemoryError
    for records in (10000, None):
        with pytest.raises(DataError, match=r"data_batch_1.bin: 1,099,511,627,776 bytes is not a whole number of "
                                            r"3073-byte records \(357,797,470 records and 2466 bytes over"):
            read_records(sparse, records=records)
    with open(sparse, "r+b") as f:
        f.truncate(3073 * 70_000)  # 215 MB of whole records, sparse
    with pytest.raises(DataError, match="70000 records, expected 10000"):
        read_records(sparse, records=10000)
    with pytest.raises(DataError, match="70,000 records, more than the 60,000 of all of CIFAR-10"):
        read_records(sparse)
    code = (f"import resource; from scratchcnn.data.cifar import read_records\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"try: read_records({str(sparse)!r}, records=10000)\nexcept Exception as exc: print(exc)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    message, added_mb = done.stdout.splitlines()
    assert "70000 records, expected 10000" in message and float(added_mb) < 20, done  # reading: +215 MB


# ----------------------------------------------------------------------------- 7: over-long path components

def exit_code(main, argv) -> int:
    """A tool's exit code, whether it returns it or argparse exits with a usage error."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_case_7_path_components_over_255_bytes_are_one_line(digits_run, digit_png, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    reason = "File name too long (ENAMETOOLONG: a path component is longer than 255 bytes)"
    for argv in (DIGITS + ["--out", LONG], DIGITS + ["--out", f"runs/{LONG}/run"], ["--resume", LONG],
                 DIGITS + ["--data-dir", LONG, "--out", "r"], DIGITS + ["--init-from", LONG, "--out", "r"]):
        assert exit_code(train.main, argv) == 2
        assert reason in one_error_line(capsys.readouterr().err)
    assert exit_code(predict.main, ["--model", LONG, str(digit_png)]) == 2
    assert reason in one_error_line(capsys.readouterr().err, PREDICT)
    for argv in ([LONG], [str(digits_run), "--out", LONG], [str(digits_run), "--data-dir", LONG]):
        assert exit_code(evaluate.main, argv + ["--no-progress"]) == 2
        assert reason in one_error_line(capsys.readouterr().err, EVALUATE)
    assert exit_code(export.main, [str(digits_run), f"{LONG}.onnx"]) == 2
    assert reason in one_error_line(capsys.readouterr().err, EXPORT)
    assert predict.main(["--model", str(digits_run), LONG + ".png", str(digit_png)]) == 1  # an image: read the next
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "File name too long" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    done = subprocess.run([sys.executable, "-m", "scratchcnn.serve", "--model", LONG, "--port", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and reason in one_error_line(done.stderr, "python -m scratchcnn.serve: error: ")


# ----------------------------------------------------------------------------- 9: NaN is never a result

def tiff_with_nan(path: Path) -> Path:
    pixels = np.zeros((28, 28), np.float32)
    pixels[5:20, 10:15] = 1.0
    pixels[3, 3] = np.nan
    Image.fromarray(pixels, "F").save(path)
    return path


def test_case_9_a_nan_pixel_and_overflowing_weights_are_one_line(digits_run, digit_png, tmp_path, capsys):
    nan_tiff = tiff_with_nan(tmp_path / "nan.tif")
    assert predict.main(["--model", str(digits_run), str(nan_tiff), str(digit_png)]) == 1
    out, err = capsys.readouterr()
    assert one_error_line(err, PREDICT) == f"{PREDICT}{nan_tiff}: the image holds NaN pixels (1 of 784)\n"
    assert out.count("  1. ") == 1
    huge = crafted(digits_run / "model.npz", tmp_path / "huge.npz")
    meta, arrays = read_archive(huge, MODEL_FORMAT)
    write_archive(huge, meta, {k: (v * np.float32(1e30) if k.endswith(".W") else v) for k, v in arrays.items()})
    assert evaluate.main([str(huge), "--out", str(tmp_path / "eval"), "--no-progress"]) == 1
    assert (f"{huge}: the model's outputs are not finite (test loss nan): its weights overflow float32"
            in one_error_line(capsys.readouterr().err, EVALUATE))
    assert not (tmp_path / "eval" / "metrics.json").exists()
    assert predict.main(["--model", str(huge), str(digit_png)]) == 1
    assert (f"{huge}: the model's outputs are not finite for {digit_png}: its weights overflow float32"
            in one_error_line(capsys.readouterr().err, PREDICT))


# ----------------------------------------------------------------------------- 11: smaller ones

def test_case_11_a_fifo_among_the_images_is_one_line_and_the_next_is_read(digits_run, digit_png, tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "scratchcnn.predict", "--model", str(digits_run), str(fifo),
                           str(tmp_path), str(digit_png)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout.count("  1. ") == 1, done
    assert done.stderr.splitlines() == [f"{PREDICT}{fifo}: not a regular file (a FIFO); give an image file",
                                        f"{PREDICT}{tmp_path}: is a folder, not an image file"]


def test_case_11_class_names_with_escape_codes_are_printed_escaped(digits_run, digit_png, tmp_path, capsys):
    names = ["\x1b[2J\x1b[31mred", "two\nlines", "tab\there", *[f"c{i}" for i in range(3, 10)]]
    path = crafted(digits_run / "model.npz", tmp_path / "names.npz", lambda m: m.update(class_names=names))
    assert predict.main(["--model", str(path), "--top-k", "10", str(digit_png)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\t" not in out and len(out.splitlines()) == 11
    assert "\\x1b[2J\\x1b[31mred" in out and "two\\nlines" in out and "tab\\there" in out


def test_case_11_a_symlink_loop_as_out_is_named(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert train.main(DIGITS + ["--out", str(loop)]) == 1
    assert (f"run folder {loop} is a symbolic link that loops (it leads back to itself); choose another path"
            in one_error_line(capsys.readouterr().err))
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere" / "x")
    assert train.main(DIGITS + ["--out", str(dangling)]) == 1
    assert (f"run folder {dangling} is a symbolic link to {tmp_path / 'nowhere' / 'x'}, which does not exist"
            in one_error_line(capsys.readouterr().err))


def test_case_11_serve_replicas_has_an_upper_bound(digits_run, capsys):
    from scratchcnn import serve

    with pytest.raises(SystemExit) as info:
        serve.main(["--model", str(digits_run), "--replicas", "1000", "--port", "0"])
    assert info.value.code == 2
    assert "argument --replicas: expected an integer from 1 to 64, got 1000" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 8, 11: the web server

fastapi = pytest.importorskip("fastapi", reason="the web demo needs the 'web' extra (in 'dev' too)")


@pytest.fixture(scope="module")
def web(digits_run):
    import warnings

    from scratchcnn.apps.web.app import create_app
    from scratchcnn.apps.web.service import load_served

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    app = create_app(load_served([digits_run], backend="numpy"))
    return app, TestClient(app, raise_server_exceptions=False)


def test_case_8_client_mistakes_are_json_4xx_never_500(web, tmp_path):
    _, client = web
    nan_tiff = tiff_with_nan(tmp_path / "nan.tif").read_bytes()
    strip = io.BytesIO()
    Image.fromarray(np.full((1, 20000), 255, np.uint8)).save(strip, "PNG")
    bomb = png_header_only(tmp_path / "bomb.png", 13000, 13000).read_bytes()
    cases = [
        ("NaN TIFF", dict(files={"image": ("a.tif", nan_tiff, "image/tiff")}), 400, "NaN pixels"),
        ("deep JSON", dict(content=b"[" * 100_000 + b"]" * 100_000, headers={"content-type": "application/json"}),
         422, "nested too deeply"),
        ("deep object", dict(content=b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                             headers={"content-type": "application/json"}), 422, "nested too deeply"),
        ("bomb", dict(files={"image": ("a.png", bomb, "image/png")}), 413, "pixels"),
    ]
    for what, request, status, words in cases:
        response = client.post("/api/predict", **request)
        assert response.status_code == status, (what, response.text)
        assert words in str(response.json()["detail"]), (what, response.text)
    response = client.post("/api/predict", files={"image": ("a.png", strip.getvalue(), "image/png")})
    assert response.status_code == 200, response.text


def test_case_8_a_malformed_content_length_gets_json_400_from_the_real_server(web):
    import uvicorn

    from scratchcnn.serve import server_config

    app, _ = web
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            thread.join(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: abc\r\n\r\n{}")
            reply = b""
            while chunk := conn.recv(65536):
                reply += chunk
    finally:
        server.should_exit = True
        thread.join(10)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply
    assert b"content-type: application/json" in head.lower(), reply
    assert "Content-Length" in json.loads(body)["detail"]


def test_case_11_favicon_and_offline_api_docs(web):
    _, client = web
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(icon.content)).format == "ICO"
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404  # CDN pages: off
    assert 'href="/openapi.json"' in client.get("/").text
    assert client.get("/openapi.json").json()["info"]["title"] == "scratchcnn demo"
