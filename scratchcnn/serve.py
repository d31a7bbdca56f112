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

import sys

import kernels
from scratchcnn import cli

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

    from scratchcnn.web.app import create_app
    from scratchcnn.web.service import Limits, load_served

    models = load_served(args.model, backend=args.backend, replicas=args.replicas)
    for served in models.values():
        served.warm_up()
    app = create_app(models, Limits(max_bytes=int(args.max_image_mb * 2**20),
                                    max_pixels=int(args.max_megapixels * 1e6)))
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    names = ", ".join(f"{m.id} ({m.card['file']})" for m in models.values())

    def announce():
        # Printed once the socket listens, with the real port (--port 0 asks the OS for one).
        port = server.servers[0].sockets[0].getsockname()[1] if server.servers else args.port
        host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        print(f"serving {names} on http://{host}:{port}/ (API: http://{host}:{port}/docs); Ctrl-C stops",
              flush=True)

    _run(server, announce)
    return 0


def _run(server, announce) -> None:
    """Run uvicorn until Ctrl-C or SIGTERM, calling ``announce`` once it listens."""
    import asyncio

    async def serve():
        task = asyncio.create_task(server.serve())
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
