"""Capacity review: read weeks of metrics from Prometheus, right-size instances, pack them, render."""
