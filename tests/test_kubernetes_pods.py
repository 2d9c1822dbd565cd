"""Pod attribution: device-ID forms, the kubelet client and refresher against a fake kubelet, the
rendered series, and scrapes that never wait on the kubelet."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from exporter.cli.main import build_parser, main
from exporter.cli.settings import resolve
from exporter.exposition.dcgm import dcgm_families
from exporter.exposition.health import exporter_families
from exporter.exposition.native import native_families
from exporter.exposition.pods import dcgm_holder_key, pod_families, with_pod_labels
from exporter.exposition.publish import Exposition
from exporter.exposition.render import Renderer
from exporter.http.server import build_app
from exporter.kubernetes.attribution import Allocation, Holder, PodAttribution, is_gpu_resource
from exporter.kubernetes.podresources import PodResourcesClient
from exporter.kubernetes.refresher import PodAttributionRefresher
from exporter.model import Entity, Snapshot
from exporter.sampler import Sampler
from exporter.sources.synthetic.simulator import Simulator
from exporter.sources.synthetic.source import SyntheticSource
from tests.support.kubelet import DGX_POD_INFO, FakeKubelet, dgx_pods, short_socket_dir
from tests.support.snapshots import fixed_snapshot

ClientFactory = Callable[..., Awaitable[TestClient]]  # type: ignore[type-arg]
Labels = dict[str, str]


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return fixed_snapshot("dgx-h100")


@pytest.fixture
def socket_path() -> Iterator[str]:
    folder = short_socket_dir()
    yield os.path.join(folder, "kubelet.sock")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def kubelet(socket_path: str, snapshot: Snapshot) -> Iterator[FakeKubelet]:
    with FakeKubelet(socket_path, dgx_pods(snapshot.topology)) as fake:
        yield fake


def series(text: str, name: str) -> list[Labels]:
    """The label sets of every sample called `name` in an exposition."""
    return [s.labels for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


def pod_info(text: str) -> set[tuple[str, ...]]:
    keys = ("gpu", "gi", "ci", "namespace", "pod", "container")
    return {tuple(labels[k] for k in keys) for labels in series(text, "mig_instance_pod_info")}


def holder(pod: str) -> Holder:
    return Holder("ns", pod, "main")


def test_pod_device_id_forms_resolve_to_entities(snapshot: Snapshot) -> None:
    """MIG UUIDs (::N), GPU UUIDs, GKE nvidia<i>[/gi<id>][/vgpuN] and legacy MIG-GPU-<uuid>/gi/ci name their entity."""
    topology = snapshot.topology
    gpu4 = topology.gpu(4)
    gpu7 = topology.gpu(7)
    assert gpu4 is not None and gpu7 is not None
    cis = gpu4.instances[0].compute_instances
    allocations = (
        Allocation("nvidia.com/mig-1c.7g.80gb", cis[1].mig_uuid + "::5", holder("a")),
        Allocation("nvidia.com/gpu", gpu7.uuid, holder("b")),
        Allocation("nvidia.com/gpu", "nvidia4/gi1", holder("c")),
        Allocation("nvidia.com/gpu", f"MIG-{gpu4.uuid}/1/2", holder("d")),
        Allocation("nvidia.com/gpu", f"MIG-{gpu4.uuid}/1/9", holder("unknown ci")),
        Allocation("nvidia.com/gpu", "nvidia4/gi6", holder("unknown gi")),
        Allocation("nvidia.com/gpu", "nvidia4/gi1/vgpu3", holder("e")),
        Allocation("nvidia.com/gpu", "nvidia7/vgpu0", holder("f")),
        Allocation("nvidia.com/gpu", "nvidia9", holder("no such gpu")),
        Allocation("nvidia.com/gpu", "GPU-not-on-this-node", holder("elsewhere")),
    )
    resolved = PodAttribution(allocations).resolve(topology)
    assert resolved == {
        Entity(4, 1, 0): (holder("c"), holder("e")),
        Entity(4, 1, 1): (holder("a"), holder("c"), holder("e")),
        Entity(4, 1, 2): (holder("c"), holder("d"), holder("e")),
        Entity(7): (holder("b"), holder("f")),
    }


def test_pod_resources_of_nvidia_plugins_only() -> None:
    """NVIDIA's resources (including .shared renames) count; other extended resources do not."""
    assert all(map(is_gpu_resource, ["nvidia.com/gpu", "nvidia.com/mig-3g.40gb", "nvidia.com/gpu.shared"]))
    assert not any(map(is_gpu_resource, ["example.com/nic", "cpu", "amd.com/gpu", "gpu"]))


async def test_kubelet_client_lists_gpu_devices(kubelet: FakeKubelet, socket_path: str) -> None:
    """List over the unix socket returns each container's GPU devices, dropping other resources."""
    client = PodResourcesClient(socket_path)
    try:
        attribution = await client.list(timeout=5)
    finally:
        await client.close()
    assert Allocation("nvidia.com/gpu", "nvidia3/gi1", Holder("gke", "batch", "worker")) in attribution.allocations
    assert all(a.resource.startswith("nvidia.com/") for a in attribution.allocations)
    assert len(attribution.allocations) == 14


async def test_pod_info_series_for_dgx_scenario(kubelet: FakeKubelet, socket_path: str, snapshot: Snapshot) -> None:
    """After one refresh, the exposition has one mig_instance_pod_info per container and device, and kubelet_up 1."""
    refresher = PodAttributionRefresher(socket_path, interval=1)
    await refresher.refresh()
    await refresher.close()
    text = Renderer((native_families, exporter_families, pod_families(refresher))).render(snapshot).decode()
    assert pod_info(text) == DGX_POD_INFO
    assert "mig_exporter_kubelet_up 1.0" in text
    # Without --pod-labels the instance series are untouched.
    assert all("pod" not in labels for labels in series(text, "mig_instance_gr_engine_active_ratio"))


async def test_pod_labels_on_instance_series(kubelet: FakeKubelet, socket_path: str, snapshot: Snapshot) -> None:
    """--pod-labels adds namespace/pod/container to held entities' series, one series per entity (shared: joined)."""
    refresher = PodAttributionRefresher(socket_path, interval=1)
    await refresher.refresh()
    await refresher.close()
    plain = Renderer((native_families,)).render(snapshot).decode()
    text = Renderer((with_pod_labels(native_families, refresher), pod_families(refresher))).render(snapshot).decode()
    by_key = {(s["gpu"], s["gi"]): s for s in series(text, "mig_instance_gr_engine_active_ratio")}
    assert len(by_key) == len(series(plain, "mig_instance_gr_engine_active_ratio"))
    assert by_key[("1", "1")] == {
        "gpu": "1",
        "gi": "1",
        "profile": "3g.40gb",
        "namespace": "research",
        "pod": "train-a",
        "container": "trainer",
    }
    assert (by_key[("5", "2")]["namespace"], by_key[("5", "2")]["pod"]) == ("notebooks,notebooks", "alice,bob")
    assert "pod" not in by_key[("1", "2")]  # the idle 3g nobody holds
    ci_series = {(s["gpu"], s["gi"], s["ci"]): s for s in series(text, "mig_compute_instance_gr_engine_active_ratio")}
    assert ci_series[("0", "3", "0")]["pod"] == "infer-3"
    whole_gpu = series(text, "mig_gpu_gr_engine_active_ratio")
    assert [s.get("pod") for s in whole_gpu] == ["llm"]
    assert all("pod" not in s for s in series(text, "mig_gpu_power_watts") if s["gpu"] != "7")
    assert pod_info(text) == DGX_POD_INFO


async def test_dcgm_names_carry_pod_labels_with_attribution_on(
    kubelet: FakeKubelet, socket_path: str, snapshot: Snapshot
) -> None:
    """With attribution on, dcgm-exporter's series of held GPU instances and GPUs get namespace, pod and container."""
    refresher = PodAttributionRefresher(socket_path, interval=1)
    await refresher.refresh()
    await refresher.close()
    dcgm = with_pod_labels(dcgm_families(), refresher, ("DCGM_FI_",), dcgm_holder_key)
    text = Renderer((dcgm,)).render(snapshot).decode()
    fb = {(s["gpu"], s.get("GPU_I_ID", "")): s for s in series(text, "DCGM_FI_DEV_FB_USED")}
    assert len(fb) == 25  # still one series per GPU instance (and GPU 7)
    assert (fb[("1", "1")]["namespace"], fb[("1", "1")]["pod"], fb[("1", "1")]["container"]) == (
        "research",
        "train-a",
        "trainer",
    )
    assert fb[("0", "3")]["pod"] == "infer-3" and fb[("7", "")]["pod"] == "llm"
    assert (fb[("5", "2")]["namespace"], fb[("5", "2")]["pod"]) == ("notebooks,notebooks", "alice,bob")
    assert "pod" not in fb[("1", "2")]  # the idle 3g nobody holds
    power = {s["gpu"]: s for s in series(text, "DCGM_FI_DEV_POWER_USAGE")}
    assert power["7"]["pod"] == "llm" and "pod" not in power["0"]  # a whole GPU is held only by a whole-GPU pod


async def test_kubelet_socket_missing_vanishing_and_returning(
    socket_path: str, snapshot: Snapshot, caplog: pytest.LogCaptureFixture
) -> None:
    """No socket: off with one log line however often it looks; a socket that appears, vanishes, returns is followed."""
    caplog.set_level(logging.INFO, logger="exporter.kubernetes")
    refresher = PodAttributionRefresher(socket_path, interval=1)
    for _ in range(3):
        await refresher.refresh()
    assert refresher.kubelet_up is None and refresher.attribution == PodAttribution()
    assert len(caplog.records) == 1 and "not found" in caplog.records[0].getMessage()
    kubelet = FakeKubelet(socket_path, dgx_pods(snapshot.topology)).start()
    try:
        await refresher.refresh()
        assert refresher.kubelet_up is True and len(refresher.attribution.allocations) == 14
        kubelet.stop()
        await refresher.refresh()
        await refresher.refresh()
        assert refresher.kubelet_up is None and refresher.attribution == PodAttribution()
        assert sum("vanished" in r.getMessage() for r in caplog.records) == 1
        kubelet.pods = kubelet.pods[:1]
        kubelet.start()
        await refresher.refresh()
        assert refresher.kubelet_up is True and len(refresher.attribution.allocations) == 1
    finally:
        await refresher.close()
        kubelet.close()


async def test_kubelet_errors_keep_last_answer_for_a_while(kubelet: FakeKubelet, socket_path: str) -> None:
    """A failing List sets kubelet_up 0 and keeps the last attribution for keep_for seconds, then drops it."""
    now = [0.0]
    refresher = PodAttributionRefresher(socket_path, interval=1, keep_for=30, clock=lambda: now[0])
    await refresher.refresh()
    kubelet.fail = grpc.StatusCode.UNAVAILABLE
    now[0] = 20
    await refresher.refresh()
    assert refresher.kubelet_up is False and len(refresher.attribution.allocations) == 14
    now[0] = 31
    await refresher.refresh()
    assert refresher.kubelet_up is False and refresher.attribution == PodAttribution()
    kubelet.fail = None
    await refresher.refresh()
    await refresher.close()
    assert refresher.kubelet_up is True and len(refresher.attribution.allocations) == 14


async def test_hung_kubelet_never_slows_scrapes(
    aiohttp_client: ClientFactory, kubelet: FakeKubelet, socket_path: str, dgx: Simulator
) -> None:
    """While List never answers, scrapes stay fast; after the deadline kubelet_up reads 0 and sampling goes on."""
    kubelet.hang = True
    refresher = PodAttributionRefresher(socket_path, interval=0.2, timeout=1.5)
    sampler = Sampler(SyntheticSource(dgx), interval=0.2)
    exposition = Exposition((native_families, exporter_families, pod_families(refresher)))
    client = await aiohttp_client(build_app(sampler, exposition, refresher))
    await asyncio.sleep(0.3)
    assert kubelet.calls >= 1  # the refresher is waiting on the hung List now
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        response = await client.get("/metrics")
        await response.read()
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    # Loose on purpose (2 shared cores): a scrape waiting on the hung call would take the 1.5 s deadline.
    assert max(latencies) < 1.0, latencies
    await asyncio.sleep(1.5)
    text = await (await client.get("/metrics")).text()
    assert "mig_exporter_kubelet_up 0.0" in text
    assert refresher.attribution == PodAttribution()


def test_kubernetes_flags_from_flags_env_and_file(tmp_path: Path) -> None:
    """--pod-labels works bare or with a value, from the environment and a YAML boolean; defaults as documented."""
    parse = build_parser().parse_args
    defaults = resolve(vars(parse(["serve"])), environ={})
    assert (defaults.kubelet_socket, defaults.kubelet_interval, defaults.pod_labels) == (
        "/var/lib/kubelet/pod-resources/kubelet.sock",
        10.0,
        False,
    )
    assert resolve(vars(parse(["serve", "--pod-labels", "--interval", "2"])), environ={}).pod_labels is True
    assert (
        resolve(vars(parse(["serve", "--pod-labels=false"])), environ={"MIG_EXPORTER_POD_LABELS": "yes"}).pod_labels
        is False
    )
    assert resolve(vars(parse(["serve"])), environ={"MIG_EXPORTER_POD_LABELS": "yes"}).pod_labels is True
    config = tmp_path / "config.yaml"
    config.write_text("pod_labels: true\nkubelet_socket: ''\nkubelet_interval: 30\n")
    from_file = resolve(vars(parse(["serve", "--config", str(config)])), environ={})
    assert (from_file.pod_labels, from_file.kubelet_socket, from_file.kubelet_interval) == (True, "", 30.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pod-labels=maybe"], "--pod-labels: invalid value 'maybe': expected true or false"),
        (["--kubelet-interval", "0"], "--kubelet-interval: invalid value '0': must be between 0.05 and 3600 seconds"),
    ],
)
def test_bad_kubernetes_flags_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad kubelet or pod-labels value ends with exit code 2 and one line naming the flag."""
    assert main(["serve", *args]) == 2
    assert capsys.readouterr().err.strip() == f"mig-exporter: error: {message}"


# The kubelet's field numbers (k8s.io/kubelet/pkg/apis/podresources/v1/api.proto) for the fields we read.
KUBELET_FIELDS = {
    "ListPodResourcesResponse": {"pod_resources": 1},
    "PodResources": {"name": 1, "namespace": 2, "containers": 3},
    "ContainerResources": {"name": 1, "devices": 2},
    "ContainerDevices": {"resource_name": 1, "device_ids": 2},
}


def test_kubelet_proto_matches_the_kubelet_and_the_generated_module(tmp_path: Path) -> None:
    """api.proto keeps the kubelet's package, method and field numbers, and api_pb2 is generated from it."""
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    from exporter.kubernetes import api_pb2

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "api.pb"
    assert protoc.main(["protoc", f"-I{root}", f"--descriptor_set_out={out}", "exporter/kubernetes/api.proto"]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    for message in fresh.message_type:
        for field in message.field:
            field.ClearField("json_name")  # derived from the name; CopyToProto leaves it out
    checked_in = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(checked_in)
    assert checked_in == fresh, "api_pb2*.py are stale: run the command in exporter/kubernetes/api.proto"
    assert fresh.package == "v1" and fresh.service[0].name == "PodResourcesLister"
    assert [m.name for m in fresh.service[0].method] == ["List"]
    fields = {m.name: {f.name: f.number for f in m.field} for m in fresh.message_type if m.field}
    assert fields == KUBELET_FIELDS


async def test_kubelet_stale_socket_fails_fast(socket_path: str) -> None:
    """A socket file nobody listens on (a crashed kubelet) reads kubelet_up 0 at once, not after the deadline."""
    import socket

    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(socket_path)
    refresher = PodAttributionRefresher(socket_path, interval=1, timeout=5)
    started = time.perf_counter()
    await refresher.refresh()
    await refresher.close()
    assert refresher.kubelet_up is False
    assert time.perf_counter() - started < 4  # loose: well under the 5 s deadline it would otherwise wait


def test_whole_gpu_and_mig_holders_on_one_gpu_resolve() -> None:
    """A GPU listed whole and one of its MIG devices listed too (a misconfigured plugin) resolve without error."""
    snapshot = fixed_snapshot("dgx-h100")
    gpu, _, ci = next(snapshot.topology.iter_compute_instances())
    holders = (Holder("a", "whole", "c"), Holder("b", "slice", "c"))
    attribution = PodAttribution(
        (Allocation("nvidia.com/gpu", gpu.uuid, holders[0]), Allocation("nvidia.com/gpu", ci.mig_uuid, holders[1]))
    )
    resolved = attribution.resolve(snapshot.topology)
    assert list(resolved.items()) == [(Entity(gpu.index), holders[:1]), (Entity(gpu.index, ci.gi, ci.ci), holders[1:])]


def test_grpc_is_imported_only_once_a_kubelet_socket_exists(tmp_path: Path) -> None:
    """serve on a node without a kubelet never loads grpc (13 MB); a socket that appears loads it."""
    code = f"""
import asyncio, socket, sys
from exporter.cli import main, serve
from exporter.kubernetes.refresher import PodAttributionRefresher
path = {str(tmp_path / "kubelet.sock")!r}
refresher = PodAttributionRefresher(path, interval=1)
asyncio.run(refresher.refresh())
print("grpc" in sys.modules)
socket.socket(socket.AF_UNIX).bind(path)
asyncio.run(refresher.refresh())
asyncio.run(refresher.close())
print("grpc" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]
