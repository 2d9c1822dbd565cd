"""The DCGM source: `source` talks to the host engine through DCGM's Python bindings; `mapping` is pure."""
