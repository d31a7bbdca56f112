"""``python -m scratchcnn.serve``: a web page to draw or upload an image and see how a trained model sees it.

The page shows the top classes, the input as the model sees it, every convolution's
feature maps, a saliency map, the model's card, and how one number of a feature map
is computed. The API (``/api/models``, ``/api/predict``, ``/api/unit``) is described by
``/openapi.json`` (OpenAPI 3.1; FastAPI's ``/docs`` page is off, since it loads Swagger UI from
a CDN and is blank offline). Needs the ``web`` extra: ``pip install -e '.[web]'``.

Examples
--------
    python -m scratchcnn.serve --model runs/mnist-20261130-120000 --model runs/fashion-20261130-121500
    python -m scratchcnn.serve --model runs/fashion-20261130-121500/model.npz --port 8080
"""
from __future__ import annotations

import asyncio
import socket
import sys

import kernels
from scratchcnn.apps import cli
from scratchcnn.errors import ConfigError

__all__ = ["build_parser", "server_config", "main", "MAX_REPLICAS"]

PROG = "python -m scratchcnn.serve"
INSTALL = "pip install -e '.[web]'"
# Each replica is a full copy of every model, and more copies than cores only queue: 64 is far past
# any machine this serves on, and bounds the memory a typo (--replicas 100000) would take.
MAX_REPLICAS = 64
BAD_REQUEST = ("the request is not valid HTTP/1.1 (a malformed request line or header, such as a "
               "Content-Length that is not a number)")


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROG, description="Serve a web page and a JSON API that classify drawn or "
                           "uploaded images with trained models and show their feature maps and saliency.")
    p.add_argument("--model", type=cli.path, action="append", required=True, metavar="RUN_DIR|MODEL.npz",
                   help="a run folder (uses its model.npz and metrics.json) or a model file; repeat to serve "
                        "several (the first is the default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    p.add_argument("--backend", choices=sorted(kernels.BACKENDS),
                   help="kernel backend (default: $SCRATCHCNN_BACKEND, else the fastest available)")
    p.add_argument("--replicas", type=cli.int_between(1, MAX_REPLICAS), default=1,
                   help="copies of each model, so that this many requests compute at once (default: 1, "
                        f"at most {MAX_REPLICAS})")
    p.add_argument("--max-image-mb", type=cli.positive_float, default=4.0,
                   help="largest accepted image file, MiB (default: 4); larger ones get 413")
    p.add_argument("--max-megapixels", type=cli.positive_float, default=25.0,
                   help="largest accepted image once decoded, millions of pixels (default: 25)")
    return p


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"{PROG}: error: --port {args.port}: expected 0..65535", file=sys.stderr)
        return cli.EXIT_USAGE
    try:
        import fastapi  # noqa: F401  (the web extra: imported here so the rest of scratchcnn runs without it)
        import python_multipart  # noqa: F401
        import uvicorn
    except ImportError as exc:
        print(f"{PROG}: error: the web demo needs the 'web' extra ({exc.name or exc} is missing); "
              f"install it with: {INSTALL}", file=sys.stderr)
        return cli.EXIT_ERROR

    from scratchcnn.apps.web.app import create_app
    from scratchcnn.apps.web.service import Limits, load_served

    sock = _listen(args.host, args.port)  # first: a taken port fails before the models load
    models = load_served(args.model, backend=args.backend, replicas=args.replicas)
    for served in models.values():
        served.warm_up()
    app = create_app(models, Limits(max_bytes=int(args.max_image_mb * 2**20),
                                    max_pixels=int(args.max_megapixels * 1e6)))
    server = uvicorn.Server(server_config(app))
    names = ", ".join(f"{m.id} ({m.card['file']})" for m in models.values())
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"
    _run(server, sock, lambda: print(f"serving {names} on {url} (API: {url}openapi.json); Ctrl-C stops",
                                     flush=True))
    return 0


def server_config(app, **kwargs):
    """uvicorn's configuration for ``app``: warnings only, and a request that is not valid HTTP
    (``Content-Length: abc``) answered with JSON 400 like every other error, not plain text."""
    import json

    import h11
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JSONErrors(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"detail": BAD_REQUEST}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                          h11.Data(data=body), h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return uvicorn.Config(app, log_level="warning", http=JSONErrors, **kwargs)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port), bound here so that a taken port is one clear line.

    Raises
    ------
    ConfigError
        If the address does not resolve or cannot be bound (in use, not this machine's).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(f"--host {host} --port {port}: cannot listen there: {exc.strerror or exc}") from None
    return sock


def _run(server, sock, announce) -> None:
    """Serve on ``sock`` until Ctrl-C or SIGTERM, calling ``announce`` once uvicorn has started."""

    async def serve():
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            announce()
        await task

    asyncio.run(serve())


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 stopped, 1 error, 2 usage)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
