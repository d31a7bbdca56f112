"""The FastAPI application of the web demo: the page, ``/api/models``, ``/api/predict``, ``/api/unit``.

Every error is JSON ``{"detail": ...}`` with its status: 400 empty or undecodable
image (NaN pixels too) or a request that is not valid HTTP (``scratchcnn.serve``), 404
unknown model, 413 too large (bytes or pixels), 415 not an image or an unsupported body
type, 422 malformed body or field (JSON nested too deeply too). The server reads only the
files it was started with: no request names a path. The API is described by
``/openapi.json``; FastAPI's ``/docs`` and ``/redoc`` pages are off, since they load their
scripts from a CDN and are blank offline (the one package that ships Swagger UI for Python,
swagger-ui-bundle, holds version 4, which cannot show FastAPI's OpenAPI 3.1). ``/favicon.ico``
is drawn with Pillow at start-up.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
from importlib import resources

import numpy as np
from PIL import Image

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from scratchcnn.apps.web.service import ImageError, Limits, ServedModel

__all__ = ["create_app", "PredictRequest", "UnitRequest"]

# Files of the page, read once at start-up and served from memory under fixed names.
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}


class PredictRequest(BaseModel):
    """JSON body of ``POST /api/predict`` (multipart forms carry the same fields, ``image`` as a file)."""

    image: str = Field(description="the encoded image (PNG, JPEG, ...) in base64, or a data: URL")
    model: str | None = Field(None, description="a model id from GET /api/models (default: the first)")
    top_k: int = Field(5, ge=1, le=1000, description="how many classes to list, most likely first")
    details: bool = Field(False, description="add the input as the model sees it, the feature maps "
                                              "and the saliency map, as PNG data URLs")


class UnitRequest(BaseModel):
    """JSON body of ``POST /api/unit``: one output unit of a conv or max-pool layer, for one image."""

    image: str = Field(description="as for /api/predict")
    model: str | None = None
    layer: str = Field(description='a layer name from the "layers" of a detailed prediction, e.g. "conv2d_0"')
    channel: int = Field(ge=0)
    row: int = Field(ge=0)
    col: int = Field(ge=0)


class BodyLimit:
    """ASGI middleware: answer 413 before a request body larger than ``max_body`` bytes is read
    to its end, whether or not the client sent Content-Length."""

    def __init__(self, app, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            status = 413 if length.isdigit() else 400
            return await _send_error(send, status, f"the request body is {length.decode(errors='replace')} "
                                                   f"bytes; the limit is {self.max_body:,}")
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_body:
                return await _send_error(send, 413,
                                         f"the request body exceeds the limit of {self.max_body:,} bytes")
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def _send_error(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _Problem(Exception):
    def __init__(self, status: int, detail):
        self.status, self.detail = status, detail


def _decode_base64(text: str) -> bytes:
    """A base64 string or ``data:<type>;base64,<data>`` URL -> bytes; 422 if it is neither."""
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if not head.endswith(";base64"):
            raise _Problem(422, "field 'image': a data: URL must be base64-encoded (data:image/png;base64,...)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Problem(422, "field 'image': not valid base64") from None


async def _parse(request: Request, schema):
    """The request's fields as ``schema`` plus the image bytes, from a JSON or multipart body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            raw = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Problem(422, f"the body is not valid JSON: {exc}") from None
        except RecursionError:
            raise _Problem(422, "the JSON body is nested too deeply (a request is an object of a few fields)") from None
        if not isinstance(raw, dict):
            raise _Problem(422, f"the JSON body must be an object, found {type(raw).__name__}")
        fields, data = raw, None
    elif kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=16)
        except Exception as exc:  # python-multipart's errors for a broken body have no common base class
            raise _Problem(422, f"malformed multipart body: {exc}") from None
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise _Problem(422, "field 'image': expected a file part named 'image'")
        data = await upload.read()
        fields = {key: value for key, value in form.items() if key != "image"}
        fields["image"] = ""
    else:
        raise _Problem(415, f"content type {kind or '(none)'!r}: send multipart/form-data or application/json")
    try:
        parsed = schema.model_validate(fields, strict=False)
    except ValidationError as exc:
        raise _Problem(422, json.loads(exc.json(include_url=False, include_input=False))) from None
    return parsed, data if data is not None else _decode_base64(parsed.image)


def favicon() -> bytes:
    """A 32x32 ICO: a 3x3 grid of grey squares on black, the page's feature maps in small."""
    pixels = np.zeros((32, 32), np.uint8)
    for i, level in enumerate((255, 170, 110, 170, 255, 170, 110, 170, 255)):
        top, left = 2 + 10 * (i // 3), 2 + 10 * (i % 3)
        pixels[top:top + 8, left:left + 8] = level
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "ICO", sizes=[(32, 32)])
    return buffer.getvalue()


def create_app(models: dict[str, ServedModel], limits: Limits = Limits()) -> FastAPI:
    """The application serving ``models`` (id -> ServedModel, the first is the default)."""
    if not models:
        raise ValueError("create_app needs at least one model")
    app = FastAPI(title="scratchcnn demo", version="1", docs_url=None, redoc_url=None,
                  description="Classify an image with a scratchcnn model and see how the network sees it.")
    page = resources.files("scratchcnn.apps.web") / "static"
    files = {name: (page / name).read_bytes() for name in ["index.html", *STATIC]}
    icon = favicon()
    default = next(iter(models))

    def pick(ident: str | None) -> ServedModel:
        if ident is None or ident == "":
            return models[default]
        if ident not in models:
            raise _Problem(404, f"unknown model {ident!r}; this server has {', '.join(models)}")
        return models[ident]

    @app.exception_handler(_Problem)
    async def problem(request, exc: _Problem):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(ImageError)
    async def bad_image(request, exc: ImageError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(Exception)
    async def failed(request, exc: Exception):
        # A bug, not the client's fault: still JSON, and nothing about the server's files.
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        return JSONResponse({"detail": json.loads(json.dumps(exc.errors(), default=str))}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return HTMLResponse(files["index.html"])

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon_ico():
        return Response(icon, media_type="image/x-icon")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name not in STATIC:  # a fixed list: a request never names a file to open
            raise _Problem(404, f"no static file {name!r}")
        return Response(files[name], media_type=STATIC[name])

    @app.get("/api/models")
    def list_models():
        """The served models, the default first: id, data set, class names, input shape and card."""
        return [{"id": m.id, "default": m.id == default, **m.card} for m in models.values()]

    body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": PredictRequest.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary"}, "model": {"type": "string"},
            "top_k": {"type": "integer"}, "details": {"type": "boolean"}}}}}}}

    @app.post("/api/predict", openapi_extra=body)
    async def predict(request: Request):
        """Classify one image: the top classes with probabilities, all probabilities, and with
        ``details`` the input as the model sees it, the feature maps and the saliency map."""
        fields, data = await _parse(request, PredictRequest)
        served = pick(fields.model)
        # The answer is already plain JSON types: JSONResponse skips FastAPI's walk over it.
        return JSONResponse(await run_in_threadpool(served.predict, data, limits, fields.top_k, fields.details))

    unit_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": UnitRequest.model_json_schema()}}}}

    @app.post("/api/unit", openapi_extra=unit_body)
    async def unit(request: Request):
        """How one number of a conv layer (after its ReLU) or a max-pool layer is computed."""
        fields, data = await _parse(request, UnitRequest)
        served = pick(fields.model)
        try:
            return JSONResponse(await run_in_threadpool(served.unit, data, limits, fields.layer, fields.channel,
                                                        fields.row, fields.col))
        except KeyError as exc:
            raise _Problem(404, exc.args[0]) from None
        except ValueError as exc:
            raise _Problem(422, str(exc)) from None

    # base64 adds a third to the image, and a multipart or JSON envelope a little more.
    app.add_middleware(BodyLimit, max_body=limits.max_bytes * 4 // 3 + 64 * 1024)
    return app
