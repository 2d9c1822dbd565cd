"""A fake kubelet: the pod-resources v1 `List` served by grpc.aio on a unix socket, in its own thread.

Its own thread and event loop let both async tests and real `serve` processes talk to it.
`hang` makes List never answer; `stop` removes the socket (as a kubelet restart does) and
`start` brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import grpc

from exporter.kubernetes import api_pb2, api_pb2_grpc
from exporter.model import Topology


@dataclass(frozen=True)
class FakePod:
    """One pod with one container per (container name, resource, device IDs)."""

    namespace: str
    name: str
    containers: tuple[tuple[str, str, tuple[str, ...]], ...]

    def message(self) -> api_pb2.PodResources:
        return api_pb2.PodResources(
            name=self.name,
            namespace=self.namespace,
            containers=[
                api_pb2.ContainerResources(
                    name=container, devices=[api_pb2.ContainerDevices(resource_name=resource, device_ids=ids)]
                )
                for container, resource, ids in self.containers
            ],
        )


def short_socket_dir() -> str:
    """A fresh folder with a short path (unix socket paths are limited to about 107 bytes)."""
    return tempfile.mkdtemp(prefix="kubelet-", dir="/tmp")


class FakeKubelet(api_pb2_grpc.PodResourcesListerServicer):  # type: ignore[misc]
    """Serves `pods` from List on `socket_path` until stopped."""

    def __init__(self, socket_path: str, pods: Iterable[FakePod] = ()) -> None:
        self.socket_path = socket_path
        self.pods = tuple(pods)
        self.hang = False
        self.fail: grpc.StatusCode | None = None
        self.calls = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-kubelet", daemon=True)
        self._thread.start()
        self._server: grpc.aio.Server | None = None
        self._release: asyncio.Event | None = None

    async def List(self, request: Any, context: Any) -> api_pb2.ListPodResourcesResponse:  # noqa: N802 - the RPC's name
        self.calls += 1
        if self.hang:
            assert self._release is not None
            await self._release.wait()
        if self.fail is not None:
            await context.abort(self.fail, "fake kubelet failure")
        return api_pb2.ListPodResourcesResponse(pod_resources=[pod.message() for pod in self.pods])

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=10)

    async def _start(self) -> None:
        self._release = asyncio.Event()
        self._server = grpc.aio.server()
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix://{self.socket_path}")
        await self._server.start()

    async def _stop(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    def start(self) -> FakeKubelet:
        self._run(self._start())
        return self

    def stop(self) -> None:
        """Stop serving and remove the socket file."""
        self._run(self._stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        shutil.rmtree(os.path.dirname(self.socket_path), ignore_errors=True)

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def dgx_pods(topology: Topology) -> tuple[FakePod, ...]:
    """Pods holding the dgx-h100 scenario's devices in every form a device plugin reports them.

    GPU 0's seven 1g slices are one inference pod each (MIG UUIDs, mixed strategy); GPU 1 GI 1
    holds a training pod; GPU 5 GI 2 is time-sliced between two pods (`::N` suffixes); GPU 3
    GI 1 is named the GKE way; GPU 6 GI 1 the pre-R470 way; GPU 7 (MIG off) is a whole-GPU job.
    A NIC and a device of another node are listed too and must be ignored.
    """
    gpus = {g.index: g for g in topology.gpus}

    def mig(gpu: int, gi: int, ci: int = 0) -> str:
        inst = gpus[gpu].instance(gi)
        assert inst is not None
        return next(c.mig_uuid for c in inst.compute_instances if c.ci == ci)

    pods = [
        FakePod("serving", f"infer-{gi}", (("server", "nvidia.com/mig-1g.10gb", (mig(0, gi),)),)) for gi in range(1, 8)
    ]
    pods += [
        FakePod(
            "research",
            "train-a",
            (("trainer", "nvidia.com/mig-3g.40gb", (mig(1, 1),)), ("sidecar", "example.com/nic", ("eth1",))),
        ),
        FakePod("notebooks", "alice", (("jupyter", "nvidia.com/mig-2g.20gb.shared", (mig(5, 2) + "::0",)),)),
        FakePod("notebooks", "bob", (("jupyter", "nvidia.com/mig-2g.20gb.shared", (mig(5, 2) + "::3",)),)),
        FakePod("gke", "batch", (("worker", "nvidia.com/gpu", ("nvidia3/gi1",)),)),
        FakePod("legacy", "old", (("main", "nvidia.com/mig-2g.20gb", (f"MIG-{gpus[6].uuid}/1/0",)),)),
        FakePod("training", "llm", (("trainer", "nvidia.com/gpu", (gpus[7].uuid,)),)),
        FakePod("elsewhere", "ghost", (("main", "nvidia.com/gpu", ("MIG-00000000-0000-0000-0000-000000000000",)),)),
    ]
    return tuple(pods)


# (gpu, gi, ci, namespace, pod, container) that dgx_pods must produce; "" where gi/ci do not apply.
DGX_POD_INFO = {
    *((str(0), str(gi), "0", "serving", f"infer-{gi}", "server") for gi in range(1, 8)),
    ("1", "1", "0", "research", "train-a", "trainer"),
    ("5", "2", "0", "notebooks", "alice", "jupyter"),
    ("5", "2", "0", "notebooks", "bob", "jupyter"),
    ("3", "1", "0", "gke", "batch", "worker"),
    ("6", "1", "0", "legacy", "old", "main"),
    ("7", "", "", "training", "llm", "trainer"),
}
