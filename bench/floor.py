"""The machine's floor: a bare aiohttp app that serves fixed bytes, measured beside the exporters.

On a small shared machine a request to an idle process waits for the scheduler to wake it, often for
milliseconds. This app does nothing but answer (/metrics: a fixed body of the given size, /healthz:
"ok"), so its latencies, measured in the same window, tell which part of the exporter's is the
machine's and which is the exporter's own.

    python bench/floor.py --port PORT --size BYTES
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--size", type=int, default=10_000, help="bytes of the /metrics body")
    args = parser.parse_args()
    body = os.urandom(args.size)  # incompressible, like a gzipped exposition

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
