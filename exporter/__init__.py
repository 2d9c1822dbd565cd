"""mig-exporter: per-slice activity and memory of MIG-partitioned NVIDIA GPUs for Prometheus."""

__version__ = "0.1.0"
