"""The baseline: an exporter built the common way, from the same synthetic source.

prometheus-client Gauges in the global registry, set in a loop from the simulator every interval;
prometheus-client's own `start_http_server` serves them, running `generate_latest` on every scrape.
Same metric families and labels as mig-exporter's native names, so both expose the same series.

    python bench/baseline.py --scenario FILE --port PORT [--interval 1]
"""

from __future__ import annotations

import argparse
import threading
import time

from prometheus_client import Gauge, start_http_server

from exporter.model import ACTIVITY_FIELDS, Entity, Field
from exporter.sources.synthetic.scenario import load
from exporter.sources.synthetic.simulator import Simulator

GPU = ["gpu", "uuid"]
INSTANCE = ["gpu", "gi", "profile"]
COMPUTE = ["gpu", "gi", "ci", "profile"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()

    sim = Simulator(load(args.scenario))
    gpu_info = Gauge("mig_gpu_info", "GPU identity", [*GPU, "model", "driver_version", "mig_mode"])
    gpu_fields = {
        Field.MEMORY_TOTAL: Gauge("mig_gpu_memory_total_bytes", "Total memory", GPU),
        Field.MEMORY_USED: Gauge("mig_gpu_memory_used_bytes", "Used memory", GPU),
        Field.POWER: Gauge("mig_gpu_power_watts", "Power", GPU),
        Field.TEMPERATURE: Gauge("mig_gpu_temperature_celsius", "Temperature", GPU),
    }
    inst_info = Gauge(
        "mig_instance_info", "GPU instance", ["gpu", "uuid", "gi", "profile", "placement_start", "placement_size"]
    )
    inst_compute = Gauge("mig_instance_compute_slices", "Compute slices", INSTANCE)
    inst_memory = Gauge("mig_instance_memory_slices", "Memory slices", INSTANCE)
    inst_fields = {f: Gauge(f"mig_instance_{f.value}_ratio", f.value, INSTANCE) for f in ACTIVITY_FIELDS}
    inst_fields[Field.MEMORY_USED] = Gauge("mig_instance_memory_used_bytes", "Used memory", INSTANCE)
    inst_fields[Field.MEMORY_TOTAL] = Gauge("mig_instance_memory_total_bytes", "Memory", INSTANCE)
    ci_labels = [*COMPUTE[:3], "profile", "ci_profile", "mig_uuid"]
    ci_info = Gauge("mig_compute_instance_info", "Compute instance", ci_labels)
    ci_fields = {f: Gauge(f"mig_compute_instance_{f.value}_ratio", f.value, COMPUTE) for f in ACTIVITY_FIELDS}

    def update() -> None:
        topology = sim.topology()
        now = time.time()
        for gpu in topology.gpus:
            sample = sim.sample(gpu.index, now)
            labels = [str(gpu.index), gpu.uuid]
            gpu_info.labels(*labels, gpu.model, gpu.driver_version, gpu.mig_mode).set(1)
            for fld, gauge in gpu_fields.items():
                value = sample.get(Entity(gpu.index), fld)
                if value is not None:
                    gauge.labels(*labels).set(value)
            for inst in gpu.instances:
                key = [str(gpu.index), str(inst.gi), inst.profile]
                placement = [str(inst.placement_start), str(inst.placement_size)]
                inst_info.labels(str(gpu.index), gpu.uuid, str(inst.gi), inst.profile, *placement).set(1)
                inst_compute.labels(*key).set(inst.compute_slices)
                inst_memory.labels(*key).set(inst.memory_slices)
                for fld, gauge in inst_fields.items():
                    value = sample.get(Entity(gpu.index, inst.gi), fld)
                    if value is not None:
                        gauge.labels(*key).set(value)
                for ci in inst.compute_instances:
                    ci_key = [str(gpu.index), str(inst.gi), str(ci.ci), inst.profile]
                    ci_info.labels(*ci_key[:3], inst.profile, ci.profile, ci.mig_uuid).set(1)
                    for fld, gauge in ci_fields.items():
                        value = sample.get(Entity(gpu.index, inst.gi, ci.ci), fld)
                        if value is not None:
                            gauge.labels(*ci_key).set(value)

    def loop() -> None:
        next_tick = time.monotonic()
        while True:
            update()
            next_tick += args.interval
            time.sleep(max(0.0, next_tick - time.monotonic()))

    update()
    threading.Thread(target=loop, daemon=True, name="sampler").start()
    start_http_server(args.port, addr="127.0.0.1")
    threading.Event().wait()


if __name__ == "__main__":
    main()
