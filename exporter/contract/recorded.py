"""Series recorded by the shipped Prometheus rules (deploy/prometheus/mig-exporter.rules.yml).

Names follow Prometheus' `level:metric:operations` convention. Dashboards and the capacity review
read them by these names; the rules generator writes them.
"""

from __future__ import annotations

# Whole-GPU activity for capacity math: the compute-slice-weighted sum of the GPU instances' activity / 7.
GPU_ACTIVITY_SLICE_WEIGHTED = "instance_gpu:mig_gr_engine_active_ratio:slice_weighted"
# Each GPU instance's activity averaged over the last hour.
INSTANCE_ACTIVITY_AVG1H = "instance_gpu_gi:mig_instance_gr_engine_active_ratio:avg1h"
