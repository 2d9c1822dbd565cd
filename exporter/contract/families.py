"""Every metric family the exporter serves under its native names: name, type, help and label names.

The exposition builds its families from these; the report, dashboards and rules name series through
them. Label names are lower snake case; identity (UUIDs, models, placements) lives on `*_info` series.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.model import ACTIVITY_FIELDS, Field


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family of the contract."""

    name: str  # for a counter, without the `_total` suffix prometheus-client adds
    help: str
    labels: tuple[str, ...]
    kind: str = "gauge"

    @property
    def series(self) -> str:
        """The name samples carry, as PromQL selects them (`_total` for a counter)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name

    def __str__(self) -> str:
        return self.series


GPU = ("gpu", "uuid")  # every GPU-wide series
INSTANCE = ("gpu", "gi", "profile")  # every GPU-instance series
COMPUTE_INSTANCE = ("gpu", "gi", "ci", "profile")  # every compute-instance series
HOLDER = ("namespace", "pod", "container")  # Kubernetes attribution

SAMPLED_NOTE = "sampled in the background every interval (see mig_exporter_last_sample_timestamp_seconds)"
ACTIVITY_HELP = {
    Field.GR_ENGINE_ACTIVE: "Fraction of time the graphics/compute engine was active",
    Field.SM_ACTIVE: "Fraction of time at least one warp was active on an SM, averaged over SMs",
    Field.SM_OCCUPANCY: "Fraction of resident warps to the SM maximum, averaged over SMs",
    Field.TENSOR_ACTIVE: "Fraction of cycles the tensor pipes were active",
    Field.DRAM_ACTIVE: "Fraction of cycles device memory was busy sending or receiving data",
}

# GPUs
GPU_INFO = Family("mig_gpu_info", "GPU identity; always 1", (*GPU, "model", "driver_version", "mig_mode"))
GPU_MEMORY_TOTAL = Family("mig_gpu_memory_total_bytes", "Total memory of the whole GPU", GPU)
GPU_MEMORY_USED = Family("mig_gpu_memory_used_bytes", "Memory used on the whole GPU", GPU)
GPU_POWER = Family("mig_gpu_power_watts", "Power draw of the whole GPU", GPU)
GPU_TEMPERATURE = Family("mig_gpu_temperature_celsius", "GPU die temperature", GPU)
GPU_ACTIVITY = {
    f: Family(f"mig_gpu_{f.value}_ratio", f"{ACTIVITY_HELP[f]}, whole GPU with MIG disabled; {SAMPLED_NOTE}", GPU)
    for f in ACTIVITY_FIELDS
}
GPU_SM_CLOCK = Family("mig_gpu_sm_clock_hertz", "SM clock of the GPU", GPU)
GPU_MEMORY_CLOCK = Family("mig_gpu_memory_clock_hertz", "Memory clock of the GPU", GPU)
GPU_MEMORY_TEMPERATURE = Family("mig_gpu_memory_temperature_celsius", "GPU memory (HBM) temperature", GPU)
GPU_ENERGY = Family(
    "mig_gpu_energy_joules", "Energy the whole GPU consumed since the driver was loaded", GPU, kind="counter"
)
GPU_PCIE_REPLAYS = Family("mig_gpu_pcie_replays", "PCIe replays (retries) of the GPU", GPU, kind="counter")
GPU_MEMORY_RESERVED = Family("mig_gpu_memory_reserved_bytes", "Memory the driver reserves on the GPU", GPU)
GPU_REMAPPED_ROWS = Family(
    "mig_gpu_remapped_rows",
    "Memory rows remapped, by the kind of error that caused it (correctable, uncorrectable)",
    (*GPU, "kind"),
    kind="counter",
)
GPU_ROW_REMAP_FAILURE = Family(
    "mig_gpu_row_remap_failure", "1 when a memory row remapping failed (the GPU needs service), else 0", GPU
)
GPU_NVLINK = Family(
    "mig_gpu_nvlink_bytes_per_second",
    f"NVLink data received and transmitted over all links; {SAMPLED_NOTE}",
    GPU,
)
GPU_UTILIZATION = Family(
    "mig_gpu_utilization_ratio",
    f"Fraction of time one or more kernels ran, whole GPU with MIG disabled (NVML utilization); {SAMPLED_NOTE}",
    GPU,
)
GPU_MEMORY_COPY_UTILIZATION = Family(
    "mig_gpu_memory_copy_utilization_ratio",
    f"Fraction of time device memory was read or written, whole GPU with MIG disabled; {SAMPLED_NOTE}",
    GPU,
)
GPU_ENCODER_UTILIZATION = Family("mig_gpu_encoder_utilization_ratio", "Fraction of time the video encoders ran", GPU)
GPU_DECODER_UTILIZATION = Family("mig_gpu_decoder_utilization_ratio", "Fraction of time the video decoders ran", GPU)
PCIE_HELP = {
    Field.PCIE_TX_RATE: "PCIe data transmitted (headers and payload)",
    Field.PCIE_RX_RATE: "PCIe data received (headers and payload)",
}
PCIE_NAMES = {Field.PCIE_TX_RATE: "transmit", Field.PCIE_RX_RATE: "receive"}
GPU_PCIE = {
    f: Family(
        f"mig_gpu_pcie_{PCIE_NAMES[f]}_bytes_per_second",
        f"{PCIE_HELP[f]}, whole GPU with MIG disabled; {SAMPLED_NOTE}",
        GPU,
    )
    for f in PCIE_HELP
}

GPU_XID_ERRORS = Family(
    "mig_gpu_xid_errors",
    "XID errors the driver reported since the exporter started, by XID code and the MIG instance that raised it "
    "(gi and ci empty for a GPU-wide XID, ci empty for one raised by a GPU instance); counts survive re-partitions",
    ("gpu", "xid", "gi", "ci"),
    kind="counter",
)

# GPU instances
INSTANCE_INFO = Family(
    "mig_instance_info",
    "MIG GPU instance identity and placement (in memory slices); always 1",
    ("gpu", "uuid", "gi", "profile", "placement_start", "placement_size"),
)
INSTANCE_COMPUTE_SLICES = Family("mig_instance_compute_slices", "Compute slices of the GPU instance (of 7)", INSTANCE)
INSTANCE_MEMORY_SLICES = Family("mig_instance_memory_slices", "Memory slices of the GPU instance (of 8)", INSTANCE)
INSTANCE_ACTIVITY = {
    f: Family(
        f"mig_instance_{f.value}_ratio", f"{ACTIVITY_HELP[f]}, relative to the GPU instance; {SAMPLED_NOTE}", INSTANCE
    )
    for f in ACTIVITY_FIELDS
}
INSTANCE_PCIE = {
    f: Family(
        f"mig_instance_pcie_{PCIE_NAMES[f]}_bytes_per_second",
        f"{PCIE_HELP[f]} by the GPU instance; {SAMPLED_NOTE}",
        INSTANCE,
    )
    for f in PCIE_HELP
}
INSTANCE_MEMORY_USED = Family("mig_instance_memory_used_bytes", "Memory used in the GPU instance", INSTANCE)
INSTANCE_MEMORY_TOTAL = Family("mig_instance_memory_total_bytes", "Memory of the GPU instance", INSTANCE)

# Compute instances (one MIG device each)
COMPUTE_INSTANCE_INFO = Family(
    "mig_compute_instance_info",
    "MIG compute instance (one MIG device) identity; always 1",
    ("gpu", "gi", "ci", "profile", "ci_profile", "mig_uuid"),
)
COMPUTE_INSTANCE_ACTIVITY = {
    f: Family(
        f"mig_compute_instance_{f.value}_ratio",
        f"{ACTIVITY_HELP[f]}, relative to the compute instance; {SAMPLED_NOTE}",
        COMPUTE_INSTANCE,
    )
    for f in ACTIVITY_FIELDS
}

# Kubernetes attribution
INSTANCE_POD_INFO = Family(
    "mig_instance_pod_info",
    "Kubernetes container holding the MIG device (gi and ci empty for a whole GPU); always 1",
    ("gpu", "gi", "ci", *HOLDER),
)
KUBELET_UP = Family("mig_exporter_kubelet_up", "1 when the last kubelet pod-resources List succeeded", ())

# The exporter's own health
BUILD_INFO = Family("mig_exporter_build_info", "mig-exporter version and source; always 1", ("version", "source"))
SOURCE_UP = Family("mig_exporter_source_up", "1 when the last sampling cycle read every GPU", ("source",))
LAST_SAMPLE_TIMESTAMP = Family(
    "mig_exporter_last_sample_timestamp_seconds",
    "Unix time the values in this exposition were sampled; scrapes serve the latest sample",
    (),
)
SAMPLE_DURATION = Family("mig_exporter_sample_duration_seconds", "Duration of the last sampling cycle", ())
ERRORS = Family(
    "mig_exporter_errors", "Errors by stage (discover, sample) and reason", ("stage", "reason"), kind="counter"
)
TOPOLOGY_CHANGES = Family(
    "mig_exporter_topology_changes",
    "GPUs whose MIG layout changed, or that appeared or disappeared, at a discovery (re-partitions; not errors)",
    (),
    kind="counter",
)
FIELD_SUPPORTED = Family(
    "mig_exporter_field_supported",
    "1 when the source reads this field on this GPU; 0 with the reason when it cannot (the series is then absent)",
    ("gpu", "field", "reason"),
)

# Series prefixes of the entity families (GPU, GPU instance, compute instance): pod labels go on these.
ENTITY_PREFIXES = ("mig_gpu_", "mig_instance_", "mig_compute_instance_")
