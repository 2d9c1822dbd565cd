"""Grafana dashboards (grafanalib), Grafana-managed alert rules and the Prometheus rules for mig-exporter.

`python -m dashboards.build` regenerates the checked-in JSON and YAML from these sources and the
metric contract (exporter.contract).
"""
