"""Series recorded by the shipped Prometheus rules (deploy/prometheus/mig-exporter.rules.yml).

Names follow Prometheus' `level:metric:operations` convention: the labels kept, the source metric, and what
was done to it. Dashboards, alerts and the capacity review read them by these names; the rules generator
(dashboards/prometheus_rules.py) writes them.
"""

from __future__ import annotations

# Whole-GPU activity for capacity math: the compute-slice-weighted sum of the GPU instances' activity / 7.
GPU_ACTIVITY_SLICE_WEIGHTED = "instance_gpu:mig_gr_engine_active_ratio:slice_weighted"
# Each GPU instance's activity averaged over the last hour (a sliding window, evaluated with the default group).
INSTANCE_ACTIVITY_AVG1H = "instance_gpu_gi:mig_instance_gr_engine_active_ratio:avg1h"

# Rollups: one sample per GPU instance every ROLLUP_INTERVAL, summarising the raw samples of the window that
# ends at the evaluation (windows tile time: each raw sample counts in exactly one rollup sample). They keep
# every label of the raw series. The capacity review reads them at --step 5m instead of the raw series, and
# long-range dashboards and alerts can share them: a 30-day panel reads 8,640 rollup samples per instance
# instead of 172,800 raw ones at a 15 s scrape.
ROLLUP_INTERVAL = "5m"
INSTANCE_ACTIVITY_AVG5M = "instance_gpu_gi:mig_instance_gr_engine_active_ratio:avg5m"  # mean of the window
INSTANCE_ACTIVITY_MAX5M = "instance_gpu_gi:mig_instance_gr_engine_active_ratio:max5m"  # maximum of the window
INSTANCE_MEMORY_USED_AVG5M = "instance_gpu_gi:mig_instance_memory_used_bytes:avg5m"
INSTANCE_MEMORY_USED_MAX5M = "instance_gpu_gi:mig_instance_memory_used_bytes:max5m"
ROLLUPS_5M = (INSTANCE_ACTIVITY_AVG5M, INSTANCE_ACTIVITY_MAX5M, INSTANCE_MEMORY_USED_AVG5M, INSTANCE_MEMORY_USED_MAX5M)

# Hourly rollups of the 5m rollups (the same tiling, 12 windows each): what panels and alerts over more than an
# hour read. A 30-day panel reads 720 samples per instance: 17 M for 1,000 dgx-h100 nodes, inside Prometheus'
# default 50 M-sample query limit, where the 5m rollups would read 207 M.
ROLLUP_1H_INTERVAL = "1h"
INSTANCE_ACTIVITY_ROLLUP_AVG1H = "instance_gpu_gi:mig_instance_gr_engine_active_ratio:rollup_avg1h"
INSTANCE_ACTIVITY_ROLLUP_MAX1H = "instance_gpu_gi:mig_instance_gr_engine_active_ratio:rollup_max1h"
INSTANCE_IDLE_ROLLUP_AVG1H = "instance_gpu_gi:mig_instance_idle:rollup_avg1h"  # share of the hour's windows idle
ROLLUPS_1H = (INSTANCE_ACTIVITY_ROLLUP_AVG1H, INSTANCE_ACTIVITY_ROLLUP_MAX1H, INSTANCE_IDLE_ROLLUP_AVG1H)

# Idle capacity, every ROLLUP_INTERVAL from the 5m rollups. A GPU instance is idle in a window when its mean
# activity there is under the idle threshold (the test MigInstanceIdle applies). Each idle GPU instance is
# one of three kinds, in the ALLOCATION label:
ALLOCATION = "allocation"
HELD = "held"  # a pod holds it (mig_instance_pod_info): a team's idle slice
FREE = "free"  # its node reports pod attribution and no pod holds it: free capacity, not anyone's waste
UNATTRIBUTED = "unattributed"  # its node reports no pod attribution (mig_exporter_kubelet_up absent)
ALLOCATIONS = (HELD, FREE, UNATTRIBUTED)
# 1 when idle in the window, 0 when not: one series per GPU instance, with its allocation label.
INSTANCE_IDLE = "instance_gpu_gi:mig_instance_idle:bool5m"
# Per node (label instance), with zeros: a node's count of idle instances, their compute slices in whole GPUs
# (7 compute slices = 1 GPU-equivalent) and their memory.
NODE_IDLE_INSTANCES = "instance:mig_instance_idle:count5m"
NODE_IDLE_GPUS = "instance:mig_instance_idle_gpus:sum5m"
NODE_IDLE_MEMORY = "instance:mig_instance_idle_memory_bytes:sum5m"
# Fleet-wide per profile and allocation: the same three, a handful of series whatever the fleet's size.
PROFILE_IDLE_INSTANCES = "profile_allocation:mig_instance_idle:count5m"
PROFILE_IDLE_GPUS = "profile_allocation:mig_instance_idle_gpus:sum5m"
PROFILE_IDLE_MEMORY = "profile_allocation:mig_instance_idle_memory_bytes:sum5m"
# Fleet-wide per profile: the instances' compute slices and their mean activity (the slice-weighted fleet
# activity is sum(activity * slices) / sum(slices) over the profiles).
PROFILE_COMPUTE_SLICES = "profile:mig_instance_compute_slices:sum5m"
PROFILE_ACTIVITY = "profile:mig_instance_gr_engine_active_ratio:avg5m"
# Per namespace (label namespace): idle GPU-equivalents that pods of the namespace hold. A GPU instance whose
# compute instances are held by several namespaces counts in each.
NAMESPACE_IDLE_GPUS = "namespace:mig_instance_idle_gpus:sum5m"
FLEET_5M = (
    INSTANCE_IDLE,
    NODE_IDLE_INSTANCES,
    NODE_IDLE_GPUS,
    NODE_IDLE_MEMORY,
    PROFILE_IDLE_INSTANCES,
    PROFILE_IDLE_GPUS,
    PROFILE_IDLE_MEMORY,
    PROFILE_COMPUTE_SLICES,
    PROFILE_ACTIVITY,
    NAMESPACE_IDLE_GPUS,
)

# Energy per slice, estimated (see dashboards/prometheus_rules.py `energy_rules` and README "Energy per slice").
# A GPU's idle power is taken as the lowest power it drew in the last day: the 5-minute minima, then their minimum.
GPU_POWER_MIN5M = "instance_gpu:mig_gpu_power_watts:min5m"
GPU_IDLE_POWER = "instance_gpu:mig_gpu_power_watts:idle1d"
# Each GPU instance's estimated share of its GPU's power: the idle power by slices held, the rest by
# slice-weighted activity. An estimate, labelled as such in its name: NVML and DCGM read power per GPU only.
INSTANCE_POWER_ESTIMATE = "instance_gpu_gi:mig_instance_power_watts:estimate"
