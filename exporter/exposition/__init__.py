"""Snapshot -> metric families -> bytes.

`native` (the metric contract), `health` (the exporter's own families), `dcgm` (dcgm-exporter's names),
`pods` (Kubernetes attribution) build families from a frozen snapshot; `render` turns them into the
bytes a scrape serves.
"""
