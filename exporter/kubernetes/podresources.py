"""A client of the kubelet pod-resources API v1 (`PodResourcesLister.List`) over its unix socket.

Imports grpc (about 13 MB resident), so the refresher imports this module only once a socket exists.
"""

from __future__ import annotations

import grpc

from exporter.kubernetes import api_pb2, api_pb2_grpc
from exporter.kubernetes.attribution import Allocation, Holder, KubeletError, PodAttribution, is_gpu_resource

# A node with hundreds of pods can answer with more than gRPC's default 4 MiB.
_MAX_MESSAGE_BYTES = 16 * 2**20


class PodResourcesClient:
    """One gRPC channel to the kubelet; `list` returns the GPU devices allocated to containers."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._channel = grpc.aio.insecure_channel(
            f"unix://{socket_path}",
            options=[("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)],
        )
        self._stub = api_pb2_grpc.PodResourcesListerStub(self._channel)  # type: ignore[no-untyped-call] # generated

    async def list(self, timeout: float) -> PodAttribution:
        """Call List with a deadline; raises KubeletError with the gRPC status (DEADLINE_EXCEEDED, UNAVAILABLE, ...)."""
        try:
            response: api_pb2.ListPodResourcesResponse = await self._stub.List(
                api_pb2.ListPodResourcesRequest(), timeout=timeout, wait_for_ready=False
            )
        except grpc.aio.AioRpcError as exc:
            raise KubeletError(f"{exc.code().name}: {exc.details()}") from exc
        return attribution_from(response)

    async def close(self) -> None:
        await self._channel.close(grace=None)


def attribution_from(response: api_pb2.ListPodResourcesResponse) -> PodAttribution:
    """The GPU allocations in a List response; other resources (CPUs, NICs, ...) are dropped."""
    return PodAttribution(
        tuple(
            Allocation(devices.resource_name, device_id, Holder(pod.namespace, pod.name, container.name))
            for pod in response.pod_resources
            for container in pod.containers
            for devices in container.devices
            if is_gpu_resource(devices.resource_name)
            for device_id in devices.device_ids
        )
    )
