"""Defaults that flags, manifests, docs and tests share: ports, hosts, intervals, the kubelet socket."""

from __future__ import annotations

EXPORTER_PORT = 9401  # registered for mig-exporter-style GPU exporters; the container, Service and unit use it
LISTEN = f"0.0.0.0:{EXPORTER_PORT}"
JOB = "mig-exporter"  # the scrape job name the shipped alert rules and examples assume

DCGM_PORT = 5555  # nv-hostengine's default TCP port
DCGM_HOST = f"localhost:{DCGM_PORT}"

INTERVAL_SECONDS = 1.0  # between samples
DISCOVERY_INTERVAL_SECONDS = 60.0  # between MIG layout discoveries (also after any not-found error)

KUBELET_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
KUBELET_INTERVAL_SECONDS = 10.0  # between kubelet pod-resources List calls

HTTP_IDLE_TIMEOUT_SECONDS = 120.0
# Client connections at once. A node has a few scrapers, each holding one; over HTTPS each connection holds
# about 280 KB of TLS buffers (600 KB with a scrape it does not read), so the limit also bounds memory.
HTTP_MAX_CONNECTIONS = 128
