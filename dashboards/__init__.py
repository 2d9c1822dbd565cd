"""Grafana dashboards and Grafana-managed alert rules for mig-exporter, written with grafanalib.

`python -m dashboards.build` regenerates the checked-in JSON and provisioning YAML.
"""
