"""``python -m scratchcnn.serve``: a web page to draw or upload an image and see how a trained model sees it.

The page shows the top classes, the input as the model sees it, every convolution's
feature maps, a saliency map, the model's card, and how one number of a feature map
is computed. The API (``/api/models``, ``/api/predict``, ``/api/unit``) is documented
at ``/docs``. Needs the ``web`` extra: ``pip install -e '.[web]'``.

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

__all__ = ["build_parser", "main"]

PROG = "python -m scratchcnn.serve"
INSTALL = "pip install -e '.[web]'"


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROG, description="Serve a web page and a JSON API that classify drawn or "
                           "uploaded images with trained models and show their feature maps and saliency.")
    p.add_argument("--model", action="append", required=True, metavar="RUN_DIR|MODEL.npz",
                   help="a run folder (uses its model.npz and metrics.json) or a model file; repeat to serve "
                        "several (the first is the default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    p.add_argument("--backend", choices=sorted(kernels.BACKENDS),
                   help="kernel backend (default: $SCRATCHCNN_BACKEND, else the fastest available)")
    p.add_argument("--replicas", type=cli.positive_int, default=1,
                   help="copies of each model, so that this many requests compute at once (default: 1)")
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
    config = uvicorn.Config(app, log_level="warning")
    server = uvicorn.Server(config)
    names = ", ".join(f"{m.id} ({m.card['file']})" for m in models.values())
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"
    _run(server, sock, lambda: print(f"serving {names} on {url} (API: {url}docs); Ctrl-C stops", flush=True))
    return 0


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
