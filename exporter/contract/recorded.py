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

# Energy per slice, estimated (see dashboards/prometheus_rules.py `energy_rules` and README "Energy per slice").
# A GPU's idle power is taken as the lowest power it drew in the last day: the 5-minute minima, then their minimum.
GPU_POWER_MIN5M = "instance_gpu:mig_gpu_power_watts:min5m"
GPU_IDLE_POWER = "instance_gpu:mig_gpu_power_watts:idle1d"
# Each GPU instance's estimated share of its GPU's power: the idle power by slices held, the rest by
# slice-weighted activity. An estimate, labelled as such in its name: NVML and DCGM read power per GPU only.
INSTANCE_POWER_ESTIMATE = "instance_gpu_gi:mig_instance_power_watts:estimate"
