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

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN python -m venv /opt/mig-exporter \
    && /opt/mig-exporter/bin/pip install --no-cache-dir --disable-pip-version-check ".[nvml]"

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mig-exporter
COPY --from=build /opt/mig-exporter /opt/mig-exporter
ENV PATH=/opt/mig-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
USER 10001:10001
EXPOSE 9401
ENTRYPOINT ["mig-exporter"]
CMD ["serve"]
