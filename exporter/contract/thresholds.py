"""What counts as an idle or under-used MIG slice, and the other limits the alert rules test.

Activity is the GPU instance's graphics-engine activity, 0..1. The landing page, the capacity review,
the dashboards and the alert rules all use these numbers; the dashboard generator takes others as
options, for users who want their own.
"""

from __future__ import annotations

IDLE_RATIO = 0.05  # a slice whose mean activity is below this does no work
UNDERUSED_RATIO = 0.2  # below this (and not idle) a smaller profile would do

IDLE_MEAN_WINDOW = "5m"  # the mean the idle test reads: tolerates a monitoring probe, any real job breaks it
IDLE_FOR = "1h"  # how long a slice stays idle before the alert fires
UNDERUSED_WINDOW = "1d"  # the mean the under-used test reads

MEMORY_NEARLY_FULL_RATIO = 0.95  # used / total of a GPU instance
MEMORY_NEARLY_FULL_FOR = "10m"

STALE_SAMPLE_SECONDS = 120  # a last sample older than this is stale

# Engines round floats differently (VictoriaMetrics keeps about 14 significant digits: 0.04999999999999999
# reads back as 0.05), so every threshold test treats a value within this of the threshold as at it.
THRESHOLD_TOLERANCE = 1e-9

# Capacity review: right-sizing reads the nearest-rank 95th percentile of the per-step mean activity.
RIGHT_SIZING_PERCENTILE = 0.95
# An instance idle at that percentile is reclaimed, unless its use recurs (a time-share candidate then): it has
# active steps on separate days, or on more consecutive days than one job running over midnight would touch.
ONE_OFF_MAX_DAYS = 2

# Alerts that summarise (one per node, one per namespace) instead of one per slice.
NODE_IDLE_GPUS = 1.0  # GPU-equivalents (compute slices / 7) of idle slices on one node ...
NODE_IDLE_FOR = "1d"  # ... held for this long: the node's MIG layout or its workloads need a look
NAMESPACE_IDLE_GPUS = 1.0  # GPU-equivalents of idle slices held by pods of one namespace ...
NAMESPACE_IDLE_FOR = "6h"  # ... for this long: a team holds capacity it does not use
