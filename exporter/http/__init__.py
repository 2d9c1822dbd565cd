"""The HTTP face: `server` (the aiohttp app: /metrics, /healthz, /readyz), `landing` (the page at /), `webconfig`."""
