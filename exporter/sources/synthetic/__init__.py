"""A simulated MIG node: workload patterns, scenario files, the simulator and its source."""
