# mig-exporter container image: the exporter with NVML (nvidia-ml-py) and pod attribution (grpcio).
#
#   docker build -t mig-exporter:0.1.0 .
#   docker run -d --name mig-exporter --runtime=nvidia --gpus all -e NVIDIA_MIG_MONITOR_DEVICES=all \
#     --cap-add SYS_ADMIN --user 0 -p 9401:9401 mig-exporter:0.1.0 serve --source nvml
#
# The image runs as an unprivileged user (uid 10001) by default, which is enough for NVML on GPUs
# without MIG and for the DCGM source talking to a host engine. Monitoring every MIG instance of a GPU
# (not only those handed to this container) needs NVIDIA_MIG_MONITOR_DEVICES=all, which NVIDIA's
# runtime grants only to containers with CAP_SYS_ADMIN, and an added capability is effective only for
# root: hence `--cap-add SYS_ADMIN --user 0` above, and the same in deploy/kubernetes/daemonset.yaml
# (which drops every other capability). The driver libraries come from the host through the runtime.
# DCGM's Python bindings are not on PyPI: for `--source dcgm`, build FROM an image that ships DCGM.
#
# Layers: the dependencies are installed from pyproject.toml alone, before the code is copied, so a
# change to the code rebuilds only the last, small layer. VERSION and REVISION label the image
# (tests/test_packaging.py checks VERSION against exporter/__init__.py).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/mig-exporter
COPY pyproject.toml ./
# The runtime dependencies and the nvml extra, as pyproject.toml declares them (Python 3.11 reads TOML).
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['nvml']))" > requirements.txt \
    && /opt/mig-exporter/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY README.md LICENSE ./
COPY exporter ./exporter
RUN /opt/mig-exporter/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mig-exporter" \
      org.opencontainers.image.description="Prometheus exporter for NVIDIA MIG: per-slice activity and memory, idle-slice alerts, partition planning" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mig-exporter
COPY --from=build /opt/mig-exporter /opt/mig-exporter
ENV PATH=/opt/mig-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
USER 10001:10001
EXPOSE 9401
# /healthz where serve listens (MIG_EXPORTER_LISTEN, TLS from MIG_EXPORTER_WEB_CONFIG): `mig-exporter healthcheck`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["mig-exporter", "healthcheck"]
ENTRYPOINT ["mig-exporter"]
CMD ["serve"]
