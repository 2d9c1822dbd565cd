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
